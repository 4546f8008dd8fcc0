"""Reproducibility: the same key, data and settings give bitwise-identical results in separate
processes on the same machine (params, optimizer state, history and the checkpoint file's bytes).

What is not promised (docs/errors_and_checkpoints.md): equal bits across machines, CPU models, jax/XLA
versions, devices (CPU vs GPU) or device counts, where XLA may fuse and order float operations
differently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from conftest import REPO

SCRIPT = textwrap.dedent("""
    import hashlib, json, sys
    import jax, numpy as np
    from jaxnet import checkpoint, data, fit, mlp, optim

    def digest(tree):
        return [hashlib.sha256(np.asarray(leaf).tobytes()).hexdigest() for leaf in jax.tree.leaves(tree)]

    def run(seed):
        k_data, k_val, k_init, k_shuffle = jax.random.split(jax.random.key(seed), 4)
        x, y = data.gaussian_blobs(k_data, 64)
        x_val, y_val = data.gaussian_blobs(k_val, 32)
        net = mlp([2, 8, 4, 1], activation="tanh", output_activation="identity")
        _, params = net.init(k_init)
        tx = optim.optimizer("adam", 0.05, plateau=(0.5, 3))
        params, _, state, history = fit(net, params, x, y, loss="sigmoid_binary_crossentropy", optimizer=tx,
                                     epochs=40, batch_size=10, key=k_shuffle, validation_data=(x_val, y_val))
        return params, state, history

    results = {}
    for seed in (0, 1):  # the second seed (same compiled code) shows that the comparison can fail
        params, state, history = run(seed)
        results[seed] = {"params": digest(params), "state": digest(state), "history": digest(history)}
        if seed == 0:
            checkpoint.save(sys.argv[1], params, opt_state=state, config={"seed": seed})
    print(json.dumps(results))
""")


def run_all(paths: list[str]) -> list[dict]:
    """Run the script once per checkpoint path, all at once, each in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, path], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for path in paths]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-2000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    return results


def test_same_key_gives_bitwise_identical_runs_across_processes(tmp_path):
    a, b = str(tmp_path / "a.npz"), str(tmp_path / "b.npz")
    first, second = run_all([a, b])
    assert first == second  # both seeds, every array, bit for bit
    with open(a, "rb") as fa, open(b, "rb") as fb:
        assert fa.read() == fb.read()  # the checkpoint files are byte-identical too
    for part in ("params", "state", "history"):  # another seed changes every part
        assert first["0"][part] != first["1"][part]

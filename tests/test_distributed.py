"""Multi-host data parallelism: two processes on localhost (JAX's CPU collectives, gloo).

The two processes run the real command-line entry (`python -m experiments train_distributed`), each
with one CPU device, and each saves its final params. They must be bitwise identical (each process
ends with a replica of the same all-reduced training), and equal, up to float32 rounding, to a plain
single-process `fit` computed here with the same data, init and shuffle keys.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxnet
from jaxnet import optim, train
from jaxnet import fit

from conftest import REPO

SEED, EPOCHS, BATCH, HIDDEN, LR, N_TRAIN = 0, 2, 64, 32, 0.1, 512


def free_port() -> int:
    """A TCP port that was free a moment ago (bound to port 0, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(out, port):
    """Start both processes; return [(returncode, output)] (killing both on a timeout)."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    procs = []
    for pid in range(2):
        cmd = [sys.executable, "-m", "experiments", "train_distributed", "--coordinator-address",
               f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(pid), "--dataset", "synthetic",
               "--quick", "--seed", str(SEED), "--epochs", str(EPOCHS), "--batch-size", str(BATCH),
               "--hidden", str(HIDDEN), "--learning-rate", str(LR), "--save-all-params", "--out", str(out)]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    results = []
    try:
        for p in procs:
            output, _ = p.communicate(timeout=240)
            results.append((p.returncode, output))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        outputs = [p.communicate()[0] for p in procs]
        pytest.fail("the two processes did not finish within 240 s:\n" + "\n----\n".join(o[-3000:] for o in outputs))
    return results


def test_two_processes_train_identically_and_match_one_process(tmp_path):
    for _attempt in range(2):  # the free port may be taken between probing and binding: retry once
        results = launch(tmp_path, free_port())
        if not any("Address already in use" in out for _, out in results):
            break
    for rc, out in results:
        if rc != 0 and "gloo" in out.lower() and ("not available" in out or "UNIMPLEMENTED" in out):
            pytest.skip(f"this jaxlib has no CPU collectives (gloo): {out[-500:]}")
        assert rc == 0, out[-4000:]
    copies = [np.load(tmp_path / f"params_process{pid}.npz") for pid in range(2)]
    assert sorted(copies[0].files) == sorted(copies[1].files) == ["0/W", "0/b", "2/W", "2/b"]
    for name in copies[0].files:
        np.testing.assert_array_equal(copies[0][name], copies[1][name], err_msg=name)

    # The single-process run, here: same data, same keys, plain fit on one device.
    from experiments.train_distributed import load
    x, labels, _, _ = load("synthetic", SEED, N_TRAIN)
    net = jaxnet.mlp([784, HIDDEN, 10], activation="relu", output_activation="identity")
    init_key, shuffle_key = jax.random.split(jax.random.key(SEED))
    params, _, _, history = fit(net, net.init(init_key)[1], x, labels, loss="softmax_cross_entropy",
                          optimizer=optim.sgd(LR), epochs=EPOCHS, batch_size=BATCH, key=shuffle_key)
    for layer in (0, 2):
        for name in ("W", "b"):
            np.testing.assert_allclose(copies[0][f"{layer}/{name}"], params[layer][name], rtol=0, atol=1e-5)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["devices"] == 2
    np.testing.assert_allclose(metrics["loss"], history["loss"], rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "args, error, match",
    [
        (("localhost", 2, 0), ValueError, "coordinator_address: expected 'host:port'"),
        (("localhost:99999", 2, 0), ValueError, "coordinator_address: expected a port"),
        (("localhost:1234", 0, 0), ValueError, "num_processes: expected an int >= 1"),
        (("localhost:1234", 2, 2), ValueError, r"process_id: expected an int in \[0, 2\)"),
        (("localhost:1234", 2.0, 0), TypeError, "num_processes: expected an int"),
    ],
)
def test_initialize_rejects_bad_arguments_before_touching_jax(args, error, match):
    with pytest.raises(error, match=match):
        train.initialize(*args)


def test_initialize_rejects_unknown_cpu_collectives():
    with pytest.raises(ValueError, match="cpu_collectives: expected one of"):
        train.initialize("localhost:1234", 1, 0, cpu_collectives="nccl")

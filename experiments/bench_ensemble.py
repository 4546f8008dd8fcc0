"""`bench_ensemble`: what one compiled call over many networks buys, and what sharding costs on a CPU.

Measures (wall-clock, compiled programs, best of `--rounds`; compilation reported separately):

1. One XOR network (2-4-1 sigmoid, MSE, SGD, 5000 epochs) with `jaxnet.fit`.
2. 1024 such networks (one key each) in one `jaxnet.ensemble.fit_ensemble` call: the ratio to (1)
   (the issue's target: at most 60x) and the time per network.
3. The numpy reference of the tutorial's algorithm (`jaxnet.reference.train`, float32) on a few of
   those networks, extrapolated linearly to 1024 (the loop has no shared work, so the time per
   network is constant): the speed-up of (2) over it (target: at least 500x).
4. In a child process that shows 4 CPU devices (`--xla_force_host_platform_device_count=4`): the 1024
   networks unsharded vs sharded over the 4 devices, and data-parallel minibatch training of an
   MNIST-shaped network (784-100-10, synthetic data) on 1 vs 4 devices. On a machine with fewer
   cores than devices, the 4 "devices" share the cores: expect no speed-up, only the overhead.

Writes metrics.json; prints a table. `--quick` shrinks everything to a smoke test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from experiments._common import parser, write_metrics

EPOCHS, NETWORKS, REFERENCE_NETWORKS = 5000, 1024, 3


def best_of(fn, rounds: int) -> float:
    """Minimum wall time of `fn()` over `rounds` calls (fn must block until its result is ready)."""
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def xor_benchmarks(epochs: int, networks: int, reference_networks: int, rounds: int) -> dict:
    import jax

    from jaxnet import data, mlp, optim, reference
    from jaxnet.ensemble import fit_ensemble
    from jaxnet.train import fit

    net = mlp([2, 4, 1], activation="sigmoid")
    x, y = data.xor()
    keys = jax.random.split(jax.random.key(0), networks)
    _, params0 = net.init(keys[0])

    def one():
        jax.block_until_ready(fit(net, params0, x, y, loss="mse", optimizer=optim.sgd(1.0), epochs=epochs))

    def many():
        jax.block_until_ready(fit_ensemble(net, x, y, keys=keys, loss="mse", hyperparams={"learning_rate": 1.0},
                                           epochs=epochs))

    t = time.perf_counter()
    one()
    compile_one = time.perf_counter() - t
    t = time.perf_counter()
    many()
    compile_many = time.perf_counter() - t
    t_one, t_many = best_of(one, 5 * rounds), best_of(many, rounds)  # one network is cheap: more rounds

    x_np, y_np = np.asarray(x), np.asarray(y)
    start = time.perf_counter()
    for i in range(reference_networks):
        w, b = reference.from_jaxnet_params(net.init(keys[i])[1])
        reference.train(w, b, x_np, y_np, epochs=epochs, learning_rate=4.0, dtype=np.float32)  # 4.0: = lr 1.0
    t_ref_each = (time.perf_counter() - start) / reference_networks
    return {
        "epochs": epochs, "networks": networks,
        "one_network_s": t_one, "ensemble_s": t_many, "ensemble_over_one": t_many / t_one,
        "ensemble_per_network_ms": 1e3 * t_many / networks,
        "ensemble_per_network_epoch_us": 1e6 * t_many / networks / epochs,
        "one_network_per_epoch_us": 1e6 * t_one / epochs,
        "first_call_one_s (compile + run)": compile_one, "first_call_ensemble_s (compile + init + run)": compile_many,
        "numpy_reference_per_network_s": t_ref_each, "numpy_reference_networks_timed": reference_networks,
        "numpy_reference_extrapolated_s": t_ref_each * networks,
        "speedup_over_numpy": t_ref_each * networks / t_many,
    }


def device_benchmarks(epochs: int, networks: int, rounds: int, mnist_examples: int) -> dict:
    """Run in a process with several devices: ensemble and data parallel, 1 device vs all."""
    import jax

    from jaxnet import data, mlp, optim
    from jaxnet.ensemble import device_mesh, fit_data_parallel, fit_ensemble
    from jaxnet.train import fit

    devices = jax.device_count()
    net = mlp([2, 4, 1], activation="sigmoid")
    x, y = data.xor()
    keys = jax.random.split(jax.random.key(0), networks)
    mesh = device_mesh("ensemble")
    out = {"devices": devices, "cpu_cores": os.cpu_count()}
    for label, m in (("ensemble_1_device_s", None), (f"ensemble_{devices}_devices_s", mesh)):
        def run(m=m):
            jax.block_until_ready(fit_ensemble(net, x, y, keys=keys, loss="mse", hyperparams={"learning_rate": 1.0},
                                               epochs=epochs, mesh=m))
        run()
        out[label] = best_of(run, rounds)

    rng = np.random.default_rng(0)
    xm = rng.random((mnist_examples, 784), dtype=np.float32)
    ym = np.argmax((xm - 0.5) @ rng.standard_normal((784, 10)), axis=1).astype(np.int32)
    mnet = mlp([784, 100, 10], activation="relu", output_activation="identity")
    _, p0 = mnet.init(jax.random.key(1))
    kw = dict(loss="softmax_cross_entropy", optimizer=optim.sgd(0.1), epochs=2, batch_size=128, key=jax.random.key(2))
    for label, fn in (("data_parallel_1_device_s", lambda: fit(mnet, p0, xm, ym, **kw)),
                      (f"data_parallel_{devices}_devices_s", lambda: fit_data_parallel(mnet, p0, xm, ym, **kw))):
        jax.block_until_ready(fn())
        out[label] = best_of(lambda fn=fn: jax.block_until_ready(fn()), rounds)
    out["mnist_shaped"] = {"examples": mnist_examples, "epochs": 2, "batch_size": 128, "network": "784-100-10"}
    return out


def main(argv: list[str] | None = None) -> dict:
    p = parser("bench_ensemble", __doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=None, help="timed rounds per measurement (default 3; 1 with --quick)")
    p.add_argument("--child", action="store_true", help=argparse_suppress())
    args = p.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    epochs, networks = (200, 64) if args.quick else (EPOCHS, NETWORKS)
    mnist_examples = 1024 if args.quick else 10240

    if args.child:  # the 4-device part, printed as JSON for the parent
        print(json.dumps(device_benchmarks(epochs, networks, rounds, mnist_examples)))
        return {}

    results = {"load_average_before": os.getloadavg()}
    print("timing one network, 1024 networks and the numpy reference ...", flush=True)
    results["xor"] = xor_benchmarks(epochs, networks, 1 if args.quick else REFERENCE_NETWORKS, rounds)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    child = [sys.executable, "-m", "experiments", "bench_ensemble", "--child", "--rounds", str(rounds)]
    child += ["--quick"] if args.quick else []
    print("timing 1 vs 4 host devices in a child process ...", flush=True)
    done = subprocess.run(child, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"the 4-device benchmark failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    results["four_host_devices"] = json.loads(done.stdout.strip().splitlines()[-1])
    results["load_average_after"] = os.getloadavg()
    write_metrics(args.out, results)

    r, d = results["xor"], results["four_host_devices"]
    print(f"XOR 2-4-1, {r['epochs']} epochs, compiled, best of {rounds}:")
    print(f"  1 network (fit)                      {r['one_network_s'] * 1e3:10.1f} ms")
    print(f"  {r['networks']} networks (fit_ensemble)          {r['ensemble_s'] * 1e3:10.1f} ms"
          f"   = {r['ensemble_over_one']:.1f}x one network (target <= 60x)")
    print(f"  numpy reference, {r['networks']} networks          {r['numpy_reference_extrapolated_s']:10.1f} s"
          f"    (extrapolated from {r['numpy_reference_networks_timed']}: "
          f"{r['numpy_reference_per_network_s'] * 1e3:.0f} ms each); fit_ensemble is "
          f"{r['speedup_over_numpy']:.0f}x faster (target >= 500x)")
    print(f"{d['devices']} host devices on {d['cpu_cores']} cores (load average before/after: "
          f"{results['load_average_before'][0]:.1f}/{results['load_average_after'][0]:.1f}):")
    for k, v in d.items():
        if k.endswith("_s"):
            print(f"  {k:<32}{v * 1e3:10.1f} ms")
    print(f"wrote {args.out / 'metrics.json'}")
    return {"ensemble_over_one": r["ensemble_over_one"], "speedup_over_numpy": r["speedup_over_numpy"]}


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS

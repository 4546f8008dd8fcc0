"""What sharding costs or buys: W4's ensemble on 1 device against all devices (member axis split),
and W3's first batch size trained data parallel (`fit_data_parallel`) against `fit` on 1 device.

Needs 4 devices. A process that has fewer (a plain CPU run) measures in a child process that fakes 4
CPU devices (`--xla_force_host_platform_device_count=4`); on a machine with fewer cores than
devices the fake devices share the cores, so expect the overhead, not a speed-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jax

import jaxnet
from .harness import Contender, race, ratios, stats
from .workloads import (DATASETS, MODELS, Workload, _init_params, _last_loss,
                                         _params_and_history, ensemble_params)

DEVICES = 4


def run_devices(ensemble: Workload, data_parallel: Workload, key: jax.Array, rounds: int, quick: bool) -> dict:
    """Race the sharded runs against one device, here if this process has DEVICES devices, else in a
    child process (`python -m experiments bench --workloads devices`) that fakes them."""
    if jax.device_count() >= DEVICES:
        return _race_devices(ensemble, data_parallel, key, rounds)
    with tempfile.TemporaryDirectory(prefix="jaxnet-bench-devices-") as out:
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={DEVICES}",
               "JAX_PLATFORMS": "cpu",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                           os.environ.get("PYTHONPATH")]))}
        if not jax.config.jax_enable_compilation_cache:  # --no-compile-cache holds for the child too
            env["JAXNET_COMPILE_CACHE"] = "0"
        package = __package__.split(".")[0]  # experiments, or jaxnet_experiments when installed
        child = [sys.executable, "-m", package, "bench", "--workloads", "devices", "--rounds", str(rounds),
                 "--no-torch", "--out", out, "--networks", str(ensemble.networks),
                 "--batch-sizes", ",".join(map(str, data_parallel.batch_sizes))] + (["--quick"] if quick else [])
        subprocess.run(child, env=env, capture_output=True, text=True, check=True)
        return json.loads((Path(out) / "results.json").read_text())["devices"]


def _race_devices(ensemble: Workload, data_parallel: Workload, key: jax.Array, rounds: int) -> dict:
    from jaxnet.train import device_mesh, fit_data_parallel, fit_ensemble

    k_data, k_init, k_fit = jax.random.split(key, 3)
    x, y = DATASETS[ensemble.dataset](k_data, ensemble)
    net = MODELS[ensemble.model].net(ensemble)
    stacked = ensemble_params(ensemble, net, k_init)

    def members(mesh):
        result = fit_ensemble(net, x, y, params=stacked, loss=ensemble.loss, optimizer="sgd", epochs=ensemble.epochs,
                              hyperparams={"learning_rate": ensemble.learning_rate}, mesh=mesh)
        return _last_loss(_params_and_history(result)[1]["loss"], ensemble.numpy_networks)

    def data(fit, **mesh):
        return _last_loss(_params_and_history(fit(mnet, params, xm, ym, **kw, **mesh))[1]["loss"])

    xm, ym = DATASETS[data_parallel.dataset](k_data, data_parallel)
    mnet = MODELS[data_parallel.model].net(data_parallel)
    params = _init_params(mnet, k_init)
    kw = dict(loss=data_parallel.loss, optimizer=jaxnet.optim.sgd(data_parallel.learning_rate),
              epochs=data_parallel.epochs, batch_size=data_parallel.batch_sizes[0], key=k_fit)
    mesh = device_mesh("devices")
    contenders = [
        Contender("ensemble 1 device", lambda: members(None)),
        Contender(f"ensemble {mesh.size} devices", lambda: members(mesh)),
        Contender("fit 1 device", lambda: data(jaxnet.fit)),
        Contender(f"data parallel {mesh.size} devices", lambda: data(fit_data_parallel, mesh=mesh)),
    ]
    times, losses, _ = race(contenders, rounds)
    return {"title": f"Sharding over {mesh.size} devices ({jax.default_backend()}, {os.cpu_count()} cores): "
                     f"{ensemble.networks} XOR networks; data parallel {data_parallel.architecture} "
                     f"n={data_parallel.n}, batch {data_parallel.batch_sizes[0]}, {data_parallel.epochs} epochs",
            "devices": mesh.size, "cpu_cores": os.cpu_count(),
            "times_s": {name: stats(t) for name, t in times.items()}, "final_loss": losses, "threads": {},
            "ratios": ratios(times, {"ensemble_sharded_over_one_device": (contenders[1].name, contenders[0].name),
                                     "data_parallel_over_fit": (contenders[3].name, contenders[2].name)})}

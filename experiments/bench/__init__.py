"""`bench`: jaxnet against the tutorial's numpy code, a plain JAX loop, `jax.grad` and PyTorch eager.

Workloads (float32, data in `workloads.WORKLOADS`; `--quick` shrinks them to a smoke test):

- w1: XOR, 2-4-1 sigmoid, MSE, full batch, 5000 epochs of SGD.
- w2: the tutorial's two Gaussians, 1000 points, 2-8-4-1 sigmoid, binary cross-entropy, full batch,
  2000 epochs.
- w3: MNIST-shaped random data (60,000 x 784, 10 classes), 784-100-10 ReLU, softmax cross-entropy,
  one shuffled epoch of minibatch SGD at batch 100 and 1000; with the compiled peak memory of one
  epoch (XLA's memory analysis) for jaxnet and the plain loop.
- w4: 1024 XOR networks (w1 each) in one call (`fit_ensemble`; the plain loop is `jax.vmap`ped);
  numpy trains 4 of them one after another and its time is extrapolated linearly.
- w5: the book's SimpleConvNet, one epoch: jaxnet's im2col layers vs lax.conv + jax.grad vs the book's numpy.
- w6: the book's DeepConvNet (chapter 8), one epoch, the same three contenders (the lax.conv one with
  fit's batches and dropout masks; `deep_cnn.py`), with the compiled memory of one training step.
- cold: `import jaxnet` against `import jax, optax`, and W1's first call (trace + compile + run) of
  `fit` against the plain loop's, in fresh interpreters without the compilation cache.
- devices: W4 sharded over 4 devices against 1, and W3 (its first batch size) with
  `fit_data_parallel` against `fit` (4 fake CPU devices in a child process when this process has fewer).
- cache (not in the default list): `python -m experiments all --quick` with the persistent
  compilation cache off, cold (empty) and warm.

Method (`harness.race`): every contender runs once untimed (compilation, caches); then each round runs
every contender once, in a new seeded random order (0.3 s pause after numpy and PyTorch, whose thread
pools spin); each ratio is taken inside a round,
and the tables give the median and the min-max over rounds. Final losses are printed side by side:
contenders that run the same SGD on the same batches agree.

Writes `OUT/results.json` (every time, ratio, target and the machine), `OUT/metrics.json` (the
headline) and `OUT/ratios.png`; prints the tables and whether each target is met; asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time

import jax

from .._common import _jsonable, parser, write_metrics
from . import devices, probes, report
from .harness import SETTLE_S
from .workloads import QUICK, WORKLOADS, available, run_w5, run_w6, run_workload

NAMES = ("w1", "w2", "w3", "w4", "w5", "cold", "devices", "cache", "w6")
DEFAULT = "w1,w2,w3,w4,w5,w6,cold,devices"
QUICK_DEFAULT = "w1,w3,w4,w5,devices"  # the smoke run of tests/test_bench.py (w2 is w1's code; cold is slow)


def build_parser() -> argparse.ArgumentParser:
    """The common experiment options plus --workloads, --rounds, --torch, --batch-sizes, --networks."""
    p = parser("bench", __doc__.splitlines()[0])
    p.add_argument("--workloads", default=None, help=f"comma-separated subset of {','.join(NAMES)} "
                                                     f"(default {DEFAULT}; {QUICK_DEFAULT} with --quick)")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds per workload (default 5; 1 with --quick)")
    p.add_argument("--torch", action=argparse.BooleanOptionalAction, default=None,
                   help="include PyTorch eager (default: when it is installed)")
    p.add_argument("--batch-sizes", default=None,
                   help="w3 batch sizes, comma-separated (default 100,1000; e.g. 1000,8192 on a GPU)")
    p.add_argument("--networks", type=int, default=None, help="w4 ensemble size (default 1024)")
    p.add_argument("--cache-run", default="all --quick",
                   help="the experiments command the cache workload times (default 'all --quick')")
    return p


def load_torch(wanted: bool | None):
    """torch when wanted (None: when installed), else None; prints a note when it is missing."""
    if wanted is False:
        return None
    if importlib.util.find_spec("torch") is None:
        print("note: PyTorch is not installed; its comparison is skipped (pip install torch to include it)")
        return None
    import torch

    return torch


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    workloads = args.workloads or (QUICK_DEFAULT if args.quick else DEFAULT)
    chosen = [w.strip() for w in workloads.split(",") if w.strip()]
    unknown = sorted(set(chosen) - set(NAMES))
    if unknown:
        raise ValueError(f"--workloads: unknown {unknown}; expected a subset of {list(NAMES)}")
    rounds = args.rounds or (1 if args.quick else 5)
    settle = 0.0 if args.quick else SETTLE_S  # a smoke run's times mean nothing
    if rounds < 1:
        raise ValueError(f"--rounds: expected a positive number, got {rounds}")
    sizes = dict(QUICK if args.quick else WORKLOADS)
    if args.batch_sizes:
        sizes["w3"] = sizes["w3"]._replace(batch_sizes=tuple(int(b) for b in args.batch_sizes.split(",")))
    if args.networks:
        sizes["w4"] = sizes["w4"]._replace(networks=args.networks)
    torch = load_torch(args.torch) if {"w1", "w2", "w3"} & set(chosen) else None
    key = jax.random.key(args.seed)
    start = time.perf_counter()

    results = {"machine": report.machine(),
               "config": {"workloads": chosen, "rounds": rounds, "quick": args.quick, "seed": args.seed,
                          "sizes": {name: w._asdict() for name, w in sizes.items()}}}
    if torch is not None:
        results["machine"]["torch"] = {"version": torch.__version__, "threads": torch.get_num_threads()}
    for name in chosen:
        print(f"[bench] {name} ...", flush=True)
        k = jax.random.fold_in(key, NAMES.index(name))
        if name == "cold":
            results[name] = probes.cold_start(1 if args.quick else 3, sizes["w1"].epochs)
            report.print_cold(results[name])
        elif name == "cache":
            results[name] = probes.compile_cache(args.cache_run.split())
            report.print_cache(results[name])
        elif name == "devices":
            results[name] = devices.run_devices(sizes["w4"], sizes["w3"], k, rounds, args.quick)
            report.print_workload(results[name])
        elif name in ("w5", "w6"):
            results[name] = (run_w5 if name == "w5" else run_w6)(sizes[name], rounds, settle=settle)
            report.print_workload(results[name])
        elif not available(sizes[name]):
            print(f"  skipped: no {sizes[name].model!r} model yet (experiments/bench/workloads.py MODELS)")
        else:
            results[name] = run_workload(sizes[name], k, rounds, torch, settle=settle)
            report.print_workload(results[name])
    results["targets"] = report.evaluate(results, report.targets_for(sizes["w3"].batch_sizes))
    results["machine"]["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    results["seconds"] = time.perf_counter() - start
    report.print_targets(results["targets"])

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(_jsonable(results), indent=2) + "\n")
    figure = report.chart(results, args.out / "ratios.png")
    summary = {"targets_met": sum(r["met"] for r in results["targets"]), "targets": len(results["targets"]),
               "seconds": results["seconds"]}
    write_metrics(args.out, {**summary, "medians": {row["target"]: row["median"] for row in results["targets"]}})
    print(f"\nbench: {summary['targets_met']}/{summary['targets']} targets met in {results['seconds']:.0f} s; "
          f"{args.out / 'results.json'}" + (f", {figure}" if figure else ""))
    return summary

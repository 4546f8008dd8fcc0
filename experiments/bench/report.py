"""The benchmark's targets, tables, chart and machine description."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

LABELS = {"numpy": "numpy (tutorial)", "backprop": "jaxnet backprop", "autodiff": "jaxnet autodiff",
          "plain": "plain JAX loop", "plain_nn": "plain loop, jax.nn.sigmoid", "torch": "PyTorch eager",
          "one": "jaxnet, one network"}


class Target(NamedTuple):
    """A goal for one measured figure: `results[where]...[key]` (a per-round statistic or a number)."""

    label: str
    path: tuple[str, ...]
    op: str  # ">=" or "<="
    bound: float


def targets_for(batch_sizes: tuple[int, ...]) -> list[Target]:
    """The targets of issue 14 (and the earlier ones still standing), W3's for each batch size."""
    rows = [Target("W1 speed-up over numpy", ("w1", "ratios", "speedup_vs_numpy"), ">=", 50),
            Target("W2 speed-up over numpy", ("w2", "ratios", "speedup_vs_numpy"), ">=", 6)]
    if 100 in batch_sizes:
        rows.append(Target("W3 speed-up over numpy, batch 100", ("w3", "ratios", "speedup_vs_numpy b100"), ">=", 1.0))
    if 1000 in batch_sizes:
        rows.append(Target("W3 speed-up over PyTorch eager, batch 1000", ("w3", "ratios", "speedup_vs_torch b1000"),
                           ">=", 1.0))
    rows.append(Target("W4 speed-up over the numpy loop (extrapolated)", ("w4", "ratios", "speedup_vs_numpy"), ">=",
                       1000))
    suffixes = [("w1", ""), ("w2", ""), *[("w3", f" b{b}") for b in batch_sizes], ("w4", "")]
    for route in ("backprop", "autodiff"):
        for w, suffix in suffixes:
            rows.append(Target(f"{w.upper()}{suffix} jaxnet {route} / plain JAX loop",
                               (w, "ratios", f"{route}_over_plain{suffix}"), "<=", 1.1))
    for w, suffix in suffixes:
        rows.append(Target(f"{w.upper()}{suffix} backprop / autodiff", (w, "ratios", f"backprop_over_autodiff{suffix}"),
                           "<=", 1.1))
    for b in batch_sizes:
        rows.append(Target(f"W3 b{b} epoch temporaries / dataset (no copy of the data)",
                           ("w3", "memory", f"b{b}", "temp_over_dataset"), "<=", 0.5))
    rows += [Target("W5 jaxnet im2col speed-up over the book's numpy", ("w5", "ratios", "speedup_vs_numpy"), ">=", 5),
             Target("W5 jaxnet im2col / lax.conv + jax.grad", ("w5", "ratios", "backprop_over_lax_conv"), "<=", 1.5),
             Target("W6 DeepConvNet: jaxnet im2col speed-up over the book's numpy",
                    ("w6", "ratios", "speedup_vs_numpy"), ">=", 5),
             Target("W6 DeepConvNet: jaxnet im2col / lax.conv + jax.grad", ("w6", "ratios", "backprop_over_lax_conv"),
                    "<=", 1.5)]
    rows += [Target("W1 first call: fit / plain JAX loop", ("cold", "w1_first_call_ratio"), "<=", 1.3),
             Target("import jaxnet / import jax, optax", ("cold", "import_ratio"), "<=", 1.2)]
    return rows


def _lookup(results: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(results, dict) or key not in results:
            return None
        results = results[key]
    return results


def evaluate(results: dict, targets: list[Target]) -> list[dict]:
    """Each target whose figure was measured, with its median (min-max) and whether the median meets it."""
    rows = []
    for t in targets:
        value = _lookup(results, t.path)
        if value is None:
            continue
        value = value if isinstance(value, dict) else {"median": value, "min": None, "max": None}
        median = value["median"]
        rows.append({"target": t.label, "op": t.op, "bound": t.bound, "median": median, "min": value["min"],
                     "max": value["max"], "met": bool(median >= t.bound if t.op == ">=" else median <= t.bound)})
    if "cold" in results:
        heavy = results["cold"]["heavy_modules_imported_by_jaxnet"]
        rows.append({"target": "import jaxnet loads no matplotlib / scikit-learn", "op": "==", "bound": "none",
                     "median": ", ".join(heavy) or "none", "min": None, "max": None,
                     "met": not ({"matplotlib", "sklearn"} & set(heavy))})
    return rows


def fmt(x) -> str:
    """Three significant digits, or '-' for a missing or non-finite value."""
    return "-" if x is None or not np.isfinite(x) else f"{x:.3g}"


def print_workload(result: dict) -> None:
    """One workload: each contender's seconds and final loss, the ratios, the compiled memory."""
    print(f"\n{result['title']}")
    print(f"  {'contender':<36}{'median s':>10}{'min-max s':>20}{'final loss':>12}")
    for name, t in result["times_s"].items():
        impl, _, batch = name.partition(" ")
        label = f"{LABELS[impl]} {batch}".strip() if impl in LABELS else name
        if name in result["threads"]:
            label += f" [{result['threads'][name]} thr]"
        print(f"  {label:<36}{t['median']:>10.4g}{fmt(t['min']) + '-' + fmt(t['max']):>20}"
              f"{fmt(result['final_loss'].get(name)):>12}")
    print(f"  {'ratio (per round)':<36}{'median':>10}{'min-max':>20}")
    for name, r in result["ratios"].items():
        print(f"  {name:<36}{r['median']:>10.3g}{fmt(r['min']) + '-' + fmt(r['max']):>20}")
    for batch, m in result.get("memory", {}).items():
        if "dataset_bytes" not in m:  # W5: one training step per contender
            print("  compiled memory of one training step: " + "; ".join(
                f"{who} peak {v.get('peak', float('nan')) / 1e6:.1f} MB "
                f"(temporaries {v.get('temp', float('nan')) / 1e6:.1f} MB)"
                for who, v in m.items()))
            continue
        print(f"  compiled memory of one epoch, {batch}: data {m['dataset_bytes'] / 1e6:.1f} MB; "
              + "; ".join(f"{who} temporaries {m[who]['temp'] / 1e6:.1f} MB, total {m[who]['total'] / 1e6:.1f} MB"
                          for who in ("jaxnet", "plain")))


def print_cold(cold: dict) -> None:
    """Import times, the heavy modules `import jaxnet` loaded, and W1's first calls."""
    print("\nCold start (fresh interpreters)")
    for modules, t in cold["import_s"].items():
        print(f"  import {modules:<14}{t['median']:>8.3f} s  ({fmt(t['min'])}-{fmt(t['max'])})")
    heavy = ", ".join(cold["heavy_modules_imported_by_jaxnet"]) or "none"
    print(f"  heavy modules pulled in by `import jaxnet`: {heavy}")
    for c, t in cold["w1_first_call_s"].items():
        events = ", ".join(f"{e} {v['median']:.3f} s" for e, v in cold["w1_compile_events_s"][c].items())
        print(f"  W1 first call, {LABELS[c]}: {t['median']:.3f} s ({fmt(t['min'])}-{fmt(t['max'])}); {events}")


def print_cache(cache: dict) -> None:
    print(f"\nPersistent compilation cache: python -m experiments {cache['command']}")
    for label in ("off", "cold", "warm"):
        print(f"  {label:<5} {cache[label]['wall_s']:8.1f} s wall {cache[label]['cpu_s']:8.1f} s CPU")


def print_targets(rows: list[dict]) -> None:
    """One line per target: goal, measured median and min-max, met or not."""
    print(f"\n{'target':<58}{'goal':>10}{'median':>10}{'min-max':>16}  met")
    for row in rows:
        goal = f"{row['op']} {row['bound']}"
        spread = "" if row["min"] is None else f"{fmt(row['min'])}-{fmt(row['max'])}"
        median = row["median"] if isinstance(row["median"], str) else f"{row['median']:.3g}"
        print(f"{row['target']:<58}{goal:>10}{median:>10}{spread:>16}  {'yes' if row['met'] else 'NO'}")


def chart(results: dict, path: Path) -> Path | None:
    """Left: speed-up over the numpy tutorial code; right: time relative to the plain JAX loop (jaxnet's
    overhead), per workload and batch size, with min-max bars over rounds and the targets."""
    from jaxnet import plot

    overhead = "backprop_over_plain"
    rows = [(f"{w.upper()}{suffix}", w, suffix) for w in ("w1", "w2", "w3", "w4", "w5")
            for suffix in sorted(k[len(overhead):] for k in _lookup(results, (w, "ratios")) or {}
                                 if k.startswith(overhead))]
    if not rows:
        return None
    fig, axes = plot.figure(1, 2, size=(12, 0.6 * len(rows) + 2.2))
    panels = ((axes[0], "speed-up over the numpy tutorial code (x)", True,
               (("speedup_vs_numpy", "jaxnet backprop"), ("autodiff_speedup_vs_numpy", "jaxnet autodiff"),
                ("plain_speedup_vs_numpy", "plain JAX loop"), ("torch_speedup_vs_numpy", "PyTorch eager"))),
              (axes[1], "time / plain JAX loop's time (target <= 1.1)", False,
               (("backprop_over_plain", "jaxnet backprop"), ("autodiff_over_plain", "jaxnet autodiff"))))
    for ax, title, log, series in panels:
        height = 0.8 / len(series)
        for j, (prefix, label) in enumerate(series):
            found = [(i, results[w]["ratios"].get(prefix + suffix)) for i, (_, w, suffix) in enumerate(rows)]
            found = [(i - 0.4 + height * (j + 0.5), r) for i, r in found if r]
            if found:
                ax.barh([y for y, _ in found], [r["median"] for _, r in found], height=height * 0.9, label=label,
                        xerr=[[r["median"] - r["min"] for _, r in found], [r["max"] - r["median"] for _, r in found]],
                        capsize=2)
        ax.set_yticks(range(len(rows)), [r[0] for r in rows])
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.axvline(1.0, color="0.5", lw=0.8)
        if log:
            ax.set_xscale("log")
        else:
            ax.axvline(1.1, color="k", lw=1, ls="--")
        ax.legend(fontsize=7)
    return plot.save(fig, path)


def machine() -> dict:
    """What the numbers were measured on: CPU, devices, versions, BLAS, environment, load."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        cpuinfo = []
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
               platform.processor())
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "jax": jax.__version__, "numpy": np.__version__,
        "devices": [str(d) for d in jax.devices()], "backend": jax.default_backend(),
        "compilation_cache_dir": jax.config.jax_compilation_cache_dir,
        "env": {k: os.environ.get(k)
                for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XLA_FLAGS", "JAX_PLATFORMS")},
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    try:
        import threadpoolctl

        info["blas"] = [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
                        for p in threadpoolctl.threadpool_info()]
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
    return info

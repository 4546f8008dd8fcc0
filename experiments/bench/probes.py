"""Measurements in fresh interpreters: import times, first calls (trace + compile + run), and the
persistent compilation cache of `python -m experiments` (cold, warm, off)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .harness import stats

ROOT = Path(__file__).resolve().parents[2]
HEAVY_MODULES = ("matplotlib", "sklearn", "scipy", "pandas", "torch")

IMPORT_PROBE = (
    "import time; t0 = time.perf_counter(); import {modules}; seconds = time.perf_counter() - t0\n"
    "import json, sys; print(json.dumps({{'seconds': seconds, "
    "'heavy': sorted(m for m in {heavy!r} if m in sys.modules)}}))"
)

FIRST_CALL_PROBE = """
import json, time
from jax import monitoring
from {package}.bench.workloads import first_call_run
run = first_call_run({contender!r}, {epochs})
events = {{}}
def listen(event, seconds, **kwargs):
    name = event.rsplit("/", 1)[-1]
    events[name] = events.get(name, 0.0) + seconds
monitoring.register_event_duration_secs_listener(listen)
cpu, wall = time.process_time(), time.perf_counter()
run()
first, first_cpu = time.perf_counter() - wall, time.process_time() - cpu
wall = time.perf_counter()
run()
print(json.dumps({{"first": first, "first_cpu": first_cpu, "steady": time.perf_counter() - wall, "events": events}}))
"""


def _env(**extra: str) -> dict:
    """This environment, with this checkout importable and no persistent compilation cache (it would
    hide the compile time), plus `extra`."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "JAX_ENABLE_COMPILATION_CACHE": "false", **extra}


def probe(code: str) -> dict:
    """Run `code` in a fresh interpreter and parse the JSON it prints last."""
    done = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def cold_start(repeats: int, epochs: int) -> dict:
    """`import jaxnet` against `import jax, optax` (alternating, `repeats` each), the heavy modules
    `import jaxnet` pulled in, and W1's first call (trace + compile + run) of `fit` and of the plain
    JAX loop (alternating), each minus a steady call, with jax's compile-event durations."""
    imports: dict[str, list[float]] = {"jaxnet": [], "jax, optax": []}
    heavy: set[str] = set()
    calls: dict[str, list[dict]] = {"backprop": [], "plain": []}
    for _ in range(repeats):
        for modules in imports:
            out = probe(IMPORT_PROBE.format(modules=modules, heavy=HEAVY_MODULES))
            imports[modules].append(out["seconds"])
            heavy |= set(out["heavy"]) if modules == "jaxnet" else set()
        for contender in calls:
            code = FIRST_CALL_PROBE.format(package=__package__.split(".")[0], contender=contender, epochs=epochs)
            calls[contender].append(probe(code))
    first = {c: np.asarray([p["first"] for p in probes]) for c, probes in calls.items()}
    return {
        "import_s": {m: stats(t) for m, t in imports.items()},
        "import_ratio": stats(np.asarray(imports["jaxnet"]) / np.asarray(imports["jax, optax"])),
        "heavy_modules_imported_by_jaxnet": sorted(heavy),
        "w1_first_call_s": {c: stats(t) for c, t in first.items()},
        "w1_first_call_cpu_s": {c: stats([p["first_cpu"] for p in probes]) for c, probes in calls.items()},
        "w1_first_call_minus_steady_s": {c: stats([p["first"] - p["steady"] for p in probes])
                                         for c, probes in calls.items()},
        "w1_first_call_ratio": stats(first["backprop"] / first["plain"]),
        "w1_compile_events_s": {c: {e: stats([p["events"].get(e, 0.0) for p in probes])
                                    for e in sorted({e for p in probes for e in p["events"]})}
                                for c, probes in calls.items()},
    }


def compile_cache(command: list[str]) -> dict:
    """`python -m experiments COMMAND` three times in a scratch directory: with the persistent
    compilation cache off, then on with an empty cache (cold: compiles and writes), then on again
    (warm: reads). Wall and CPU seconds (children's user + system) of each."""
    runs = {}
    with tempfile.TemporaryDirectory(prefix="jaxnet-bench-cache-") as scratch:
        settings = {"off": {"JAXNET_COMPILE_CACHE": "0"},
                    "cold": {"JAX_COMPILATION_CACHE_DIR": str(Path(scratch) / "cache")},
                    "warm": {"JAX_COMPILATION_CACHE_DIR": str(Path(scratch) / "cache")}}
        for label, extra in settings.items():
            env = {**_env(**extra), "JAX_ENABLE_COMPILATION_CACHE": "true", "MPLBACKEND": "Agg"}
            before, wall = os.times(), time.perf_counter()
            subprocess.run([sys.executable, "-m", __package__.split(".")[0], *command], cwd=scratch, env=env,
                           capture_output=True, text=True, check=True)
            after = os.times()
            runs[label] = {"wall_s": time.perf_counter() - wall,
                           "cpu_s": (after.children_user - before.children_user)
                           + (after.children_system - before.children_system)}
    return {"command": " ".join(command), **runs,
            "warm_over_off_wall": runs["warm"]["wall_s"] / runs["off"]["wall_s"],
            "warm_over_off_cpu": runs["warm"]["cpu_s"] / runs["off"]["cpu_s"]}

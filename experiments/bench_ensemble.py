"""`bench_ensemble`: the benchmark's ensemble and sharding workloads alone (`bench --workloads w4,devices`).

Kept as a name for `python -m experiments bench_ensemble`; the harness, the workloads and the options
are those of `experiments.bench` (see `python -m experiments bench --help`). Writes runs/bench_ensemble/.
"""

from __future__ import annotations

from experiments import bench


def main(argv: list[str] | None = None) -> dict:
    return bench.main(["--workloads", "w4,devices", "--out", "runs/bench_ensemble", *(argv or [])])

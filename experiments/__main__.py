"""`python -m experiments NAME [options]` runs one experiment; `python -m experiments all` runs the main job."""

from __future__ import annotations

import importlib
import sys
import time

from experiments import ALL, ALL_OPTIONS, EXTRA


def _usage() -> str:
    return ("usage: python -m experiments NAME [options] | all [--quick]\n"
            f"  main job (all): {', '.join(ALL)}\n  also: {', '.join(EXTRA) or '-'}\n"
            "  each NAME accepts --help")


def run_all(argv: list[str]) -> int:
    rows, start = [], time.perf_counter()
    for name in ALL:
        t0 = time.perf_counter()
        print(f"\n=== {name} ===", flush=True)
        summary = importlib.import_module(f"experiments.{name}").main(list(argv) + ALL_OPTIONS.get(name, []))
        rows.append((name, time.perf_counter() - t0, summary or {}))
    total = time.perf_counter() - start
    print("\n=== summary ===")
    print(f"{'experiment':<16}{'seconds':>9}  headline")
    for name, seconds, summary in rows:
        headline = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items())
        print(f"{name:<16}{seconds:>9.1f}  {headline}")
    print(f"{'total':<16}{total:>9.1f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "all":
        return run_all(rest)
    if name not in ALL + EXTRA:
        print(f"unknown experiment {name!r}\n{_usage()}", file=sys.stderr)
        return 2
    importlib.import_module(f"experiments.{name}").main(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m experiments NAME [options]` runs one experiment; `python -m experiments all` runs the main job.

Outputs go to `runs/NAME/` in the current directory unless `--out` says otherwise; the package is
installed with jaxnet, so this runs from any directory.
"""

from __future__ import annotations

import ast
import importlib
import sys
import time
from pathlib import Path

from experiments import ALL, ALL_OPTIONS, EXTRA


def _summary(name: str) -> str:
    """The first line of an experiment's docstring, read without importing it."""
    doc = ast.get_docstring(ast.parse((Path(__file__).parent / f"{name}.py").read_text())) or ""
    return doc.splitlines()[0].split(": ", 1)[-1] if doc else ""


def _usage() -> str:
    lines = ["usage: python -m experiments NAME [options] | all [--quick] [--data-dir DIR]",
             "main job (all), in order:"]
    lines += [f"  {name:<18}{_summary(name)}" for name in ALL]
    lines += ["also runnable by name:"] + [f"  {name:<18}{_summary(name)}" for name in EXTRA]
    lines += ["each NAME accepts --help; outputs go to runs/NAME/ in the current directory (--out DIR)"]
    return "\n".join(lines)


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

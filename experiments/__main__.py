"""`python -m experiments NAME [options]` runs one experiment; `python -m experiments all` runs the main job.

Outputs go to `runs/NAME/` in the current directory unless `--out` says otherwise. From the
repository's root this folder is the package `experiments`; installed (pip), it is `jaxnet_experiments`
with the command `jaxnet-experiments NAME`, which runs from any folder.

The command line (never `import jaxnet`) turns on JAX's persistent compilation cache, so that a second
run of an experiment loads its compiled programs from disk instead of compiling them again: in
`$JAX_COMPILATION_CACHE_DIR` if set, else `$XDG_CACHE_HOME/jaxnet/jax-cache`, else
`~/.cache/jaxnet/jax-cache`. `--no-compile-cache` (anywhere on the line) or `JAXNET_COMPILE_CACHE=0`
turns it off. The cache is trusted code: keep it in a directory only you can write to.

It also runs XLA's CPU backend without its intra-op thread pool (`--xla_cpu_multi_thread_eigen=false`
added to `XLA_FLAGS`, before JAX starts its backend). With the pool, XLA executes a compiled loop body
of more than a handful of kernels by handing the kernels to the pool's threads; for the tutorial's tiny
networks each kernel takes well under a microsecond, so the hand-offs cost more than the work (W1 of
`bench`, XOR with jaxnet's backprop: 2.1 microseconds per epoch with the pool, 1.2 without). MNIST
(W3), the 1024-network ensemble (W4) and the CNN (W5) measured the same either way on the 2-core
machine (docs/benchmarks.md). `--xla-cpu-threads` (anywhere on the line) or `JAXNET_XLA_CPU_THREADS=1`
keeps XLA's default; an `XLA_FLAGS` that already sets `xla_cpu_multi_thread_eigen` is left alone.
`import jaxnet` never changes either setting.
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
import time
from pathlib import Path
from collections.abc import Mapping

from . import ALL, ALL_OPTIONS, EXTRA


def _summary(name: str) -> str:
    """The first line of an experiment's docstring, read without importing it."""
    module = Path(__file__).parent / f"{name}.py"
    if not module.exists():  # a package, e.g. bench/
        module = Path(__file__).parent / name / "__init__.py"
    doc = ast.get_docstring(ast.parse(module.read_text())) or ""
    return doc.splitlines()[0].split(": ", 1)[-1] if doc else ""

NO_CACHE_FLAG = "--no-compile-cache"
CACHE_ENV = "JAXNET_COMPILE_CACHE"
THREADS_FLAG = "--xla-cpu-threads"
THREADS_ENV = "JAXNET_XLA_CPU_THREADS"
SINGLE_THREAD_XLA_FLAG = "--xla_cpu_multi_thread_eigen=false"


def _usage() -> str:
    command = "python -m experiments" if __package__ == "experiments" else "jaxnet-experiments"
    lines = [f"usage: {command} NAME [options] | all [--quick] [--data-dir DIR] [--no-compile-cache] "
             "[--xla-cpu-threads]",
             "main job (all), in order:"]
    lines += [f"  {name:<22}{_summary(name)}" for name in ALL]
    lines += ["also runnable by name:"] + [f"  {name:<22}{_summary(name)}" for name in EXTRA]
    lines += ["each NAME accepts --help; outputs go to runs/NAME/ in the current directory (--out DIR)",
              f"compiled programs are cached in {compile_cache_dir() or '(off)'}; {NO_CACHE_FLAG} or "
              f"{CACHE_ENV}=0 turns the cache off, JAX_COMPILATION_CACHE_DIR moves it",
              f"XLA's CPU thread pool is off ({SINGLE_THREAD_XLA_FLAG}, fastest for small networks); "
              f"{THREADS_FLAG} or {THREADS_ENV}=1 keeps it"]
    return "\n".join(lines)


def compile_cache_dir(environ: Mapping[str, str] = os.environ, disabled: bool = False) -> Path | None:
    """The persistent compilation cache directory of `python -m experiments`, or None when it is off
    (`disabled`, i.e. --no-compile-cache, or JAXNET_COMPILE_CACHE set to 0, false, no or off)."""
    if disabled or environ.get(CACHE_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return None
    if environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(environ["JAX_COMPILATION_CACHE_DIR"])
    base = Path(environ["XDG_CACHE_HOME"]) if environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "jaxnet" / "jax-cache"


def enable_compile_cache(directory: Path | None) -> None:
    """Turn on JAX's persistent compilation cache in `directory` for every compiled program (also the
    small ones: the experiments compile many), or off when `directory` is None (even if JAX's own
    JAX_COMPILATION_CACHE_DIR is set). Call before anything is compiled."""
    import jax

    jax.config.update("jax_enable_compilation_cache", directory is not None)
    if directory is None:
        return
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def xla_flags(environ: Mapping[str, str] = os.environ, threads: bool = False) -> str:
    """`XLA_FLAGS` for `python -m experiments`: the environment's, plus `--xla_cpu_multi_thread_eigen=false`
    unless `threads` (--xla-cpu-threads), JAXNET_XLA_CPU_THREADS is set to 1/true/yes/on, or the
    environment's XLA_FLAGS already set that option."""
    flags = environ.get("XLA_FLAGS", "")
    keep_threads = threads or environ.get(THREADS_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    if keep_threads or "xla_cpu_multi_thread_eigen" in flags:
        return flags
    return f"{flags} {SINGLE_THREAD_XLA_FLAG}".strip()


SUMMARY_WIDTH = 120


def summary_line(name: str, seconds: float, summary: Mapping) -> str:
    """One row of the `all` summary table: the experiment, its seconds and its headline numbers, at most
    SUMMARY_WIDTH characters (a longer headline is cut at a comma and ends with '...')."""
    start = f"{name:<22}{seconds:>9.1f}  "
    items = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()]
    for keep in range(len(items), -1, -1):  # as many items as fit
        line = start + ", ".join(items[:keep]) + ("" if keep == len(items) else ", ..." if keep else "...")
        if len(line) <= SUMMARY_WIDTH:
            return line
    return line[:SUMMARY_WIDTH]


def run_all(argv: list[str]) -> int:
    rows, start = [], time.perf_counter()
    for name in ALL:
        t0 = time.perf_counter()
        print(f"\n=== {name} ===", flush=True)
        summary = importlib.import_module(f"{__package__}.{name}").main(list(argv) + ALL_OPTIONS.get(name, []))
        rows.append((name, time.perf_counter() - t0, summary or {}))
    total = time.perf_counter() - start
    print("\n=== summary ===")
    print(f"{'experiment':<22}{'seconds':>9}  headline")
    for name, seconds, summary in rows:
        print(summary_line(name, seconds, summary))
    print(f"{'total':<22}{total:>9.1f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cache = compile_cache_dir(disabled=NO_CACHE_FLAG in argv)
    # read by JAX when it starts its CPU backend, i.e. at the first computation, after this line
    os.environ["XLA_FLAGS"] = xla_flags(threads=THREADS_FLAG in argv)
    argv = [a for a in argv if a not in (NO_CACHE_FLAG, THREADS_FLAG)]
    enable_compile_cache(cache)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "all":
        return run_all(rest)
    if name not in ALL + EXTRA:
        print(f"unknown experiment {name!r}\n{_usage()}", file=sys.stderr)
        return 2
    importlib.import_module(f"{__package__}.{name}").main(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The one timing harness of the benchmark: every contender of a workload runs once untimed (compilation,
caches), then `rounds` rounds each run every contender once, in a fresh (seeded) random order each round
(no contender always follows the same other), with a short pause after numpy and PyTorch that lets
their thread pools go idle; each ratio is taken inside a round, between runs seconds apart. The
machine may be shared and noisy: these side-by-side ratios, summarised by their median over rounds,
are the figures that count.
"""

from __future__ import annotations

import contextlib
import importlib.util
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np


class Contender(NamedTuple):
    """One implementation of a workload.

    `run()` trains from scratch, blocks until done and returns the final loss (NaN where none is
    comparable). Its times are multiplied by `scale` (numpy's W4 loop times a few networks and is
    extrapolated). `threads(n)`, for numpy and PyTorch, is a context manager limiting the library's
    thread pool to n threads (None: its default); see `race`.
    """

    name: str
    run: Callable[[], float]
    scale: float = 1.0
    threads: Callable[[int | None], contextlib.AbstractContextManager] | None = None


class Race(NamedTuple):
    """A race's result: seconds per round for each contender (times `scale`), each contender's final
    loss from its warm-up run, and the thread setting chosen for each contender with a limiter."""

    times: dict[str, list[float]]
    losses: dict[str, float]
    threads: dict[str, int | str]


# Seconds to wait after a contender with its own thread pool (numpy's BLAS, PyTorch): long enough for
# the pool's spin-waiting worker threads (OpenBLAS spins ~0.1 s after a call) to go to sleep, so that
# they do not take CPU from the next contender. Without it, on the 2-core machine, the contender that
# ran right after numpy was up to 20% slower (W3 at batch 1000).
SETTLE_S = 0.3


def _timed(run: Callable[[], float], limit: contextlib.AbstractContextManager) -> float:
    with limit:  # entering the thread limit is not timed
        start = time.perf_counter()
        run()
        return time.perf_counter() - start


def race(contenders: list[Contender], rounds: int, settle: float = SETTLE_S) -> Race:
    """Warm every contender up once, then time `rounds` rounds, each in a new random order (seeded).

    A contender with a `threads` limiter (numpy's BLAS, PyTorch) is also timed once with its default
    pool and once with one thread after the warm-up, and races with the faster setting: on small
    matrices a pool can cost more than it gains, and on a busy machine spin-waiting pools stall.
    jaxnet and the plain JAX loop run with XLA's defaults (or the XLA_FLAGS of the process).
    `settle`: seconds of pause after each run of a contender with a pool (0 for smoke runs).
    """
    losses, chosen = {}, {}
    for c in contenders:
        if c.threads is None:
            losses[c.name] = c.run()
            continue
        with c.threads(1):
            losses[c.name] = c.run()
        trial = {n: _timed(c.run, c.threads(n)) for n in (None, 1)}
        chosen[c.name] = min(trial, key=trial.get)
        time.sleep(settle)
    times: dict[str, list[float]] = {c.name: [] for c in contenders}
    order = np.random.default_rng(0)  # a fixed seed: the same orders in every run
    for _ in range(rounds):
        for i in order.permutation(len(contenders)):
            c = contenders[i]
            limit = c.threads(chosen[c.name]) if c.threads else contextlib.nullcontext()
            times[c.name].append(_timed(c.run, limit) * c.scale)
            if c.threads is not None:
                time.sleep(settle)
    return Race(times, losses, {name: "default" if n is None else n for name, n in chosen.items()})


def stats(values) -> dict:
    """Median, min and max of per-round values, with the values themselves."""
    values = np.asarray(values, dtype=float)
    return {"median": float(np.median(values)), "min": float(values.min()), "max": float(values.max()),
            "values": values.tolist()}


def ratios(times: dict[str, list[float]], pairs: dict[str, tuple[str, str]]) -> dict[str, dict]:
    """Per-round ratios `times[a][r] / times[b][r]` for each `label: (a, b)` whose contenders both ran."""
    return {label: stats(np.asarray(times[a]) / np.asarray(times[b]))
            for label, (a, b) in pairs.items() if a in times and b in times}


def blas_threads(n: int | None) -> contextlib.AbstractContextManager:
    """Limit numpy's BLAS pool to n threads (threadpoolctl, when installed); None leaves it as is."""
    if n is None or importlib.util.find_spec("threadpoolctl") is None:
        return contextlib.nullcontext()
    import threadpoolctl

    return threadpoolctl.threadpool_limits(limits=n, user_api="blas")


def torch_threads(torch) -> Callable[[int | None], contextlib.AbstractContextManager]:
    """A limiter for PyTorch's intra-op pool: `torch_threads(torch)(1)` runs a block on one thread."""
    default = torch.get_num_threads()

    @contextlib.contextmanager
    def limit(n: int | None):
        torch.set_num_threads(n or default)
        try:
            yield
        finally:
            torch.set_num_threads(default)

    return limit

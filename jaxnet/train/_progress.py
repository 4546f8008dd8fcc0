"""Progress of long runs, reported from inside the compiled program.

The training engine calls `tick_every(every, epochs, bar, t)` in its epoch loop: every `every` epochs
(and after the last) a `jax.debug.callback` hands the number of finished epochs to the host, which
advances a tqdm bar, or prints a plain line when tqdm is not installed. Nothing else crosses to the
host, and no callback is compiled in without a bar.

The bar is named by an integer id passed to the program as a traced value (a new bar never
recompiles it); the bars live in `_BARS`, host-side display state only, which no computation reads.
A bar closes itself when it reaches its total (also when the run was jitted by the caller, whose
door could not wait for it), and `close` closes it early after an error.
"""

from __future__ import annotations

import itertools
import math
import sys
import threading

import jax
import jax.numpy as jnp
import numpy as np

_BARS: dict[int, _Bar] = {}
_IDS = itertools.count(1)
_LOCK = threading.Lock()
TICKS = 50  # callbacks per run with tqdm (a plain line per tick otherwise: PLAIN_TICKS)
PLAIN_TICKS = 10


class _Bar:
    """One progress display: `runs` runs of `epochs` epochs each (fit: one run; fit_ensemble: one per
    chunk of members)."""

    def __init__(self, label: str, epochs: int, runs: int):
        self.label, self.epochs, self.total = label, epochs, epochs * runs
        self.offset = self.done = 0
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=self.total, desc=label, unit="epoch", mininterval=0.2, leave=True)

    def advance(self, done_in_run: int) -> None:
        done = min(self.offset + done_in_run, self.total)
        if done <= self.done:
            return  # callbacks may arrive out of order
        if self.bar is not None:
            self.bar.update(done - self.done)
        else:
            print(f"{self.label}: epoch {done}/{self.total}", file=sys.stderr, flush=True)
        self.done = done
        if done_in_run >= self.epochs:
            self.offset += self.epochs

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def has_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def every(epochs: int) -> int:
    """Epochs between two callbacks: about `TICKS` per run with tqdm, `PLAIN_TICKS` without."""
    return max(1, math.ceil(epochs / (TICKS if has_tqdm() else PLAIN_TICKS)))


def open_bar(label: str, epochs: int, runs: int = 1) -> int:
    """A new bar for `runs` runs of `epochs` epochs; returns its id (pass it to the run)."""
    with _LOCK:
        bar_id = next(_IDS)
        _BARS[bar_id] = _Bar(label, epochs, runs)
    return bar_id


def close(bar_id: int | None) -> None:
    """Close bar `bar_id` if it is still open (idempotent)."""
    if bar_id is None:
        return
    with _LOCK:
        bar = _BARS.pop(bar_id, None)
    if bar is not None:
        bar.close()


def _tick(bar_id, done) -> None:
    bar_id, done = int(np.asarray(bar_id)), int(np.asarray(done))
    with _LOCK:
        bar = _BARS.get(bar_id)
        if bar is None:
            return
        bar.advance(done)
        finished = bar.done >= bar.total
    if finished:
        close(bar_id)


def tick_every(every: int, epochs: int, bar, t) -> None:
    """In the epoch loop (traced): report `t + 1` finished epochs to bar `bar` every `every` epochs and
    after the last one."""
    done = t + 1
    if every == 1:
        jax.debug.callback(_tick, bar, done)
        return
    report = (done % every == 0) | (done == epochs)
    jax.lax.cond(report, lambda: jax.debug.callback(_tick, bar, done), lambda: None)


def bar_operand(bar_id: int | None):
    """The bar id as the run's traced argument (None: no bar)."""
    return None if bar_id is None else jnp.asarray(bar_id, jnp.int32)

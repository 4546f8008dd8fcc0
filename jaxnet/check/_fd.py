"""Finite differences of a loss: coordinate by coordinate, or along random unit directions, with
kinks recognised (see `jaxnet.check._kinks`).

`probe(v, pattern0) -> (loss, changed)` is a compiled function of the flat params v: the loss and the
number of kink-pattern entries that differ from `pattern0` (the pattern at the point checked), so
every evaluation of a stencil also says whether it crossed a kink, at no extra cost.

Central difference with step h of a loss L along a unit vector u (a coordinate e_i or a random
direction), in float64: truncation error h^2/6 |L'''| ~ 1e-12 and rounding error
~ eps_mach |L| / h ~ 1e-10 |L| at h = 1e-6 (Nocedal & Wright, *Numerical Optimization*, 2nd ed., 8.1).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import numpy as np


class CoordinateFD(NamedTuple):
    coords: np.ndarray    # flat indices that got finite differences
    central: np.ndarray   # central differences there
    kink: np.ndarray      # True where a failing coordinate's stencil crossed a kink (or jumps one-sidedly)
    crossed: np.ndarray   # pattern entries that changed along each stencil (0 where none)
    detail: dict          # flat index -> text: the kink crossed, or the nearest kink (failing coordinates)


def _stepper(flat: np.ndarray):
    v = flat.copy()

    def at(fn, i, step, *args):
        # np.asarray waits for each result before v is changed again: on CPU, jax may read a numpy
        # argument in place and asynchronously, so mutating it early would race
        v[i] = flat[i] + step
        try:
            out = fn(v, *args)
            return jax.tree.map(lambda a: np.asarray(a, np.float64), out), v[i] - flat[i]  # the step taken
        finally:
            v[i] = flat[i]
    return at


def coordinate_fd(probe: Callable, outputs: Callable, margins: Callable | None, flat: np.ndarray, grad: np.ndarray,
                  eps: float, max_coords: int, fd_key, rtol: float, atol: float, describe: Callable | None,
                  pattern0) -> CoordinateFD:
    """Central differences of the loss on up to `max_coords` coordinates (a random subset drawn with
    `fd_key` beyond that), compared with `grad` (the jax.grad values).

    A coordinate that fails is a kink when its stencil changed a kink pattern (`probe`'s count), or,
    for layers that declare no kinks, when a one-sided test finds a jump: forward and backward
    one-sided differences of every layer's output and of the loss (`outputs(v)`, one flat vector),
    each Richardson-extrapolated from eps and eps/2, differing by more than a margin of the
    tolerance, their truncation estimate and rounding. `margins(v)` (the flat kink margins) and
    `describe(m0, m_up, m_down)` give the text of the kink crossed or nearest, for failing coordinates.
    """
    n = flat.shape[0]
    if n <= max_coords:
        coords = np.arange(n)
    else:
        fd_key = jax.random.key(0) if fd_key is None else fd_key
        coords = np.sort(np.asarray(jax.random.choice(fd_key, n, (max_coords,), replace=False)))
    at = _stepper(flat)
    central, kink = np.empty(coords.size), np.zeros(coords.size, bool)
    changed, detail = np.zeros(coords.size, np.int64), {}
    y0 = m0 = None
    for j, i in enumerate(coords):
        ((up, c_up), h_up), ((down, c_down), h_down) = at(probe, i, eps, pattern0), at(probe, i, -eps, pattern0)
        central[j] = (up - down) / (h_up - h_down)
        changed[j] = int(c_up + c_down)
        if abs(central[j] - grad[i]) <= atol + rtol * abs(grad[i]):
            continue
        if margins is not None and describe is not None and len(detail) < 64:
            m0 = margins(flat) if m0 is None else m0
            detail[int(i)] = describe(m0, at(margins, i, eps)[0], at(margins, i, -eps)[0])
        if changed[j]:
            kink[j] = True
            continue
        y0 = np.asarray(outputs(flat), np.float64) if y0 is None else y0
        (r1, r2), (l1, l2) = ([(y - y0) / h for y, h in (at(outputs, i, sign * eps), at(outputs, i, sign * eps / 2))]
                              for sign in (1, -1))
        right, left = 2 * r2 - r1, 2 * l2 - l1  # Richardson: error O(eps^2) on a smooth side
        margin = (atol + rtol * np.maximum(np.abs(right), np.abs(left)) + np.abs(r1 - r2) + np.abs(l1 - l2)
                  + 64 * np.finfo(np.float64).eps * np.maximum(np.abs(y0), 1.0) / eps)  # rounding
        kink[j] = bool(np.any(np.abs(right - left) > margin))
    return CoordinateFD(coords, central, kink, changed, detail)


class DirectionFD(NamedTuple):
    leaf: np.ndarray      # the leaf index each direction lives in; -1 for directions over all params
    fd: np.ndarray        # central differences along each direction
    dots: np.ndarray      # (gradients, directions): <g, u> of each gradient given, u the step actually taken / eps
    crossed: np.ndarray   # kink-pattern entries changed along each stencil


def directions(sizes: list[int], count: int, key) -> tuple[np.ndarray, list[np.ndarray]]:
    """`count` random unit directions (normal entries, normalised) inside each leaf of `sizes`, then
    `count` over all params at once: `(leaf index per direction, the flat directions)`."""
    n, offsets = sum(sizes), np.cumsum([0] + list(sizes))
    leaf, dirs = [], []
    key = jax.random.key(0) if key is None else key
    for k, size in enumerate(list(sizes) + [n]):
        if size == 0:
            continue
        draws = np.asarray(jax.random.normal(jax.random.fold_in(key, k), (count, size)), np.float64)
        for u in draws:
            full = np.zeros(n)
            lo = offsets[k] if k < len(sizes) else 0
            full[lo:lo + size] = u / np.linalg.norm(u)
            leaf.append(k if k < len(sizes) else -1)
            dirs.append(full)
    return np.asarray(leaf, np.int64), dirs


def direction_fd(probe: Callable, flat: np.ndarray, dirs: list[np.ndarray], leaf: np.ndarray, eps: float,
                 pattern0, grads: list[np.ndarray]) -> DirectionFD:
    """Central differences (L(v + eps u) - L(v - eps u)) / 2 eps along each unit direction u, and
    <g, u> for each flat gradient g in `grads`, with u the step actually taken ((v + eps u) - (v - eps u)
    after rounding, over 2 eps), so that the rounding of v + eps u does not count as an error."""
    fd, changed = np.empty(len(dirs)), np.zeros(len(dirs), np.int64)
    dots = np.empty((len(grads), len(dirs)))
    for j, u in enumerate(dirs):
        v_up, v_down = flat + eps * u, flat - eps * u
        up, c_up = (np.asarray(a, np.float64) for a in probe(v_up, pattern0))
        down, c_down = (np.asarray(a, np.float64) for a in probe(v_down, pattern0))
        fd[j] = (up - down) / (2 * eps)
        changed[j] = int(c_up + c_down)
        step = (v_up - v_down) / (2 * eps)
        dots[:, j] = [float(np.dot(g, step)) for g in grads]
    return DirectionFD(leaf, fd, dots, changed)

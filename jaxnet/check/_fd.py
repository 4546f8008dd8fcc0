"""Finite differences of a loss: coordinate by coordinate, or along random unit directions, with
kinks recognised (see `jaxnet.check._kinks`).

`loss(v)` is a compiled function of the flat params v, and `crossed(v)` the number of kink-pattern
entries at v that differ from the pattern at the point checked; a stencil whose central difference
fails is evaluated again with `crossed` at both ends (the passing ones, nearly all, need not be).

Central difference with step h of a loss L along a unit vector u (a coordinate e_i or a random
direction), in float64: truncation error h^2/6 |L'''| ~ 1e-12 and rounding error
~ eps_mach |L| / h ~ 1e-10 |L| at h = 1e-6 (Nocedal & Wright, *Numerical Optimization*, 2nd ed., 8.1).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxnet.check import _kinks
from jaxnet.check._common import compare
from jaxnet.grad import l2_penalty


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


def coordinate_fd(loss: Callable, crossed: Callable, outputs: Callable, margins: Callable | None, flat: np.ndarray,
                  grad: np.ndarray, eps: float, max_coords: int, fd_key, rtol: float, atol: float,
                  describe: Callable | None) -> CoordinateFD:
    """Central differences of the loss on up to `max_coords` coordinates (a random subset drawn with
    `fd_key` beyond that), compared with `grad` (the jax.grad values).

    A coordinate that fails is a kink when its stencil changed a kink pattern (`crossed`), or,
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
        (up, h_up), (down, h_down) = at(loss, i, eps), at(loss, i, -eps)
        central[j] = (up - down) / (h_up - h_down)
        if abs(central[j] - grad[i]) <= atol + rtol * abs(grad[i]):
            continue
        changed[j] = int(at(crossed, i, eps)[0] + at(crossed, i, -eps)[0])
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


def directions_in(sizes: list[int], count: int, key) -> tuple[np.ndarray, list[np.ndarray]]:
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


def direction_fd(loss: Callable, crossed: Callable, flat: np.ndarray, dirs: list[np.ndarray], leaf: np.ndarray,
                 eps: float, grads: list[np.ndarray], rtol: float, atol: float) -> DirectionFD:
    """Central differences (L(v + eps u) - L(v - eps u)) / 2 eps along each unit direction u, and
    <g, u> for each flat gradient g in `grads`, with u the step actually taken ((v + eps u) - (v - eps u)
    after rounding, over 2 eps), so that the rounding of v + eps u does not count as an error. Where
    the difference disagrees with <grads[0], u> (rtol, atol), `crossed` is counted at both ends."""
    fd, changed = np.empty(len(dirs)), np.zeros(len(dirs), np.int64)
    dots = np.empty((len(grads), len(dirs)))
    for j, u in enumerate(dirs):
        v_up, v_down = flat + eps * u, flat - eps * u
        fd[j] = (float(loss(v_up)) - float(loss(v_down))) / (2 * eps)
        step = (v_up - v_down) / (2 * eps)
        dots[:, j] = [float(np.dot(g, step)) for g in grads]
        if abs(fd[j] - dots[0, j]) > atol + rtol * abs(dots[0, j]):
            changed[j] = int(crossed(v_up)) + int(crossed(v_down))
    return DirectionFD(leaf, fd, dots, changed)


class Results(NamedTuple):
    """Finite-difference results of either mode, turned into `LeafCheck`s by `leaf`."""

    mode: str
    sizes: list
    auto: np.ndarray
    hand: np.ndarray
    res: Any
    route_label: str = ""

    def leaf(self, k, path, shape, route_cmp, note, fd_rtol, fd_atol) -> tuple:
        """The fields of `LeafCheck` for leaf k (-1: the directions over all params)."""
        offsets = np.cumsum([0] + self.sizes)
        if self.mode == "coordinates":
            r = self.res
            lo, hi = offsets[k], offsets[k + 1]
            in_leaf = (r.coords >= lo) & (r.coords < hi)
            good, idx = in_leaf & ~r.kink, r.coords
            fd_cmp = compare(r.central[good], self.auto[idx[good]], fd_rtol, fd_atol)
            # NaN where shapes differ: fails
            route_fd = compare(self.hand[idx[good]], r.central[good], fd_rtol, fd_atol)
            unravel = lambda i: tuple(int(j) for j in np.unravel_index(i - lo, shape))  # noqa: E731
            bad = good & (np.abs(r.central - self.auto[idx]) > fd_atol + fd_rtol * np.abs(self.auto[idx]))
            failing = tuple((unravel(i), float(c), float(self.auto[i]), float(self.hand[i]), r.detail.get(int(i), ""))
                            for i, c in zip(idx[bad][:5], r.central[bad][:5]))
            kinks = tuple(unravel(i) for i in idx[in_leaf & r.kink])
            notes = tuple(f"{path}[{', '.join(map(str, unravel(i)))}] crosses {r.detail[int(i)]}"
                          for i in idx[in_leaf & r.kink][:3] if r.detail.get(int(i)))
            checked = int(in_leaf.sum())
        else:
            r = self.res
            in_leaf = r.leaf == k
            number = np.cumsum(in_leaf) - 1
            ref, route = r.dots[0], r.dots[1]
            bad_all = np.abs(r.fd - ref) > fd_atol + fd_rtol * np.abs(ref)
            kink = bad_all & (r.crossed > 0)
            good = in_leaf & ~kink
            fd_cmp = compare(r.fd[good], ref[good], fd_rtol, fd_atol)
            route_fd = compare(route[good], r.fd[good], fd_rtol, fd_atol)
            bad = good & bad_all
            failing = tuple(((int(number[j]),), float(r.fd[j]), float(ref[j]), float(route[j]), "")
                            for j in np.flatnonzero(bad)[:5])
            kinks = tuple((int(number[j]),) for j in np.flatnonzero(in_leaf & kink))
            notes, checked = (), int(in_leaf.sum())
        return (path, tuple(shape), route_cmp, fd_cmp, checked, kinks, route_cmp.passed and fd_cmp.passed, note,
                failing, route_fd, notes)


def _unravel(v, spec):
    """The params tree from the flat vector v: `spec` = (treedef, shapes), static (hashable), so the
    compiled functions below are shared by every check of a network of the same shapes."""
    treedef, shapes = spec
    leaves, offset = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        leaves.append(v[offset:offset + size].reshape(shape))
        offset += size
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _total(net, loss_fn, weight_decay, spec, v, out, y):
    value = loss_fn.value(out, y)
    return value if weight_decay is None else value + l2_penalty(net, _unravel(v, spec), weight_decay)


_STATIC = ("net", "loss_fn", "train", "weight_decay", "spec")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _loss(v, x, y, state, key, *, net, loss_fn, train, weight_decay, spec):
    """The loss at the flat params v."""
    out = net.apply(_unravel(v, spec), x, state=state, key=key, train=train)
    return _total(net, loss_fn, weight_decay, spec, v, out, y)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _crossed(v, pattern0, x, state, key, *, net, loss_fn, train, weight_decay, spec):
    """How many kink-pattern entries at the flat params v differ from pattern0."""
    pattern = _kinks.forward_with_kinks(net, _unravel(v, spec), x, state=state, key=key, train=train)[1]
    return _kinks.crossed(pattern0, pattern)


@functools.partial(jax.jit, static_argnames=_STATIC + ("which",))
def _kink_vectors(v, x, state, key, *, net, loss_fn, train, weight_decay, spec, which):
    """The flat kink patterns (which=1) or margins (which=2) at v."""
    return _kinks.forward_with_kinks(net, _unravel(v, spec), x, state=state, key=key, train=train)[which]


@functools.partial(jax.jit, static_argnames=_STATIC)
def _outputs(v, x, y, state, key, *, net, loss_fn, train, weight_decay, spec):
    """Every layer's output and the loss as one flat vector, for the one-sided kink test."""
    outs = net.forward(_unravel(v, spec), x, state=state, key=key, train=train)[1:]
    total = _total(net, loss_fn, weight_decay, spec, v, outs[-1], y)
    return jnp.concatenate([jnp.ravel(o) for o in outs] + [jnp.ravel(total)])


def network_fd(net, p64, x64, y64, loss_fn, s64, key, train, weight_decay, auto, hand, mode, eps, max_fd_coords,
               fd_key, fd_rtol, fd_atol, directions) -> Results:
    """Finite differences of the network's loss at p64 in either mode, with kinks recognised."""
    flat, _ = ravel_pytree(p64)
    leaves, treedef = jax.tree_util.tree_flatten(p64)
    spec = (treedef, tuple(tuple(np.shape(a)) for a in leaves))
    static = dict(net=net, loss_fn=loss_fn, train=train, weight_decay=weight_decay, spec=spec)
    sizes = [int(np.size(a)) for a in leaves]
    auto_flat = np.asarray(ravel_pytree(auto)[0])
    try:
        hand_flat = np.asarray(ravel_pytree(jax.tree.map(lambda h: jnp.asarray(h, jnp.float64), hand))[0])
        if hand_flat.shape != auto_flat.shape:
            raise ValueError
    except (ValueError, TypeError):
        hand_flat = np.full_like(auto_flat, np.nan)
    loss = lambda v: _loss(v, x64, y64, s64, key, **static)  # noqa: E731
    margins = lambda v: _kink_vectors(v, x64, s64, key, which=2, **static)  # noqa: E731
    outputs = lambda v: _outputs(v, x64, y64, s64, key, **static)  # noqa: E731
    pattern0 = _kink_vectors(flat, x64, s64, key, which=1, **static)
    crossed = lambda v: _crossed(v, pattern0, x64, s64, key, **static)  # noqa: E731
    flat = np.asarray(flat)
    if mode == "coordinates":
        sites = _kinks.kink_sites(net, p64, x64, state=s64, key=key, train=train)
        describe = lambda m0, up, down: _kinks.nearest_kink(sites, m0, up, down, eps)  # noqa: E731
        res = coordinate_fd(loss, crossed, outputs, margins, flat, auto_flat, eps, max_fd_coords, fd_key, fd_rtol,
                            fd_atol, describe)
    else:
        leaf, dirs = directions_in(sizes, directions, fd_key)
        res = direction_fd(loss, crossed, flat, dirs, leaf, eps, [auto_flat, hand_flat], fd_rtol, fd_atol)
    return Results(mode, sizes, auto_flat, hand_flat, res)

"""Gradient checks: hand-derived backprop vs `jax.grad` vs central finite differences, in float64.

`gradcheck` is a tool users call, not only a test: it runs the three routes on the same params and
data (cast to float64 whatever the caller's dtype) and returns a report that prints as a table.

Tolerances (per element, as `numpy.isclose`: |a - b| <= atol + rtol |b|, b the `jax.grad` value):

- backprop vs jax.grad: rtol 1e-10, atol 1e-12. Both are exact up to float64 rounding.
- finite differences vs jax.grad: rtol 1e-6, atol 1e-8. Central differences with step eps = 1e-6
  have truncation error O(eps^2) and rounding error O(1e-16 |L| / eps) ~ 1e-10 |L|.

Source: Deep Learning from Scratch 4.4 (numerical gradient) and 5.7.3 (gradient check).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxnet import losses as losses_lib
from jaxnet._checks import check_data, check_key, check_positive
from jaxnet.network import Network, autodiff, backprop


class LeafCheck(NamedTuple):
    """Errors of one parameter leaf: hand vs jax.grad and finite differences vs jax.grad."""

    path: str
    shape: tuple[int, ...]
    backprop_abs: float
    backprop_rel: float
    fd_abs: float
    fd_rel: float
    fd_checked: int
    passed: bool


class GradcheckReport(NamedTuple):
    """Result of `gradcheck`; `str(report)` is a readable table, `report.passed` the verdict."""

    loss: float
    leaves: tuple[LeafCheck, ...]
    passed: bool
    tolerances: dict

    def __str__(self) -> str:
        t = self.tolerances
        lines = [
            f"gradcheck (float64): loss = {self.loss:.12g}",
            f"  backprop vs jax.grad: rtol {t['rtol']:g}, atol {t['atol']:g};"
            f" finite differences (eps {t['eps']:g}) vs jax.grad: rtol {t['fd_rtol']:g}, atol {t['fd_atol']:g}",
            f"  {'leaf':<14}{'shape':<12}{'bp max abs':>12}{'bp max rel':>12}{'fd max abs':>12}{'fd max rel':>12}"
            f"{'fd coords':>10}  ok",
        ]
        for leaf in self.leaves:
            lines.append(
                f"  {leaf.path:<14}{str(leaf.shape):<12}{leaf.backprop_abs:>12.2e}{leaf.backprop_rel:>12.2e}"
                f"{leaf.fd_abs:>12.2e}{leaf.fd_rel:>12.2e}{leaf.fd_checked:>10d}  {'yes' if leaf.passed else 'NO'}"
            )
        lines.append("  PASSED" if self.passed else "  FAILED")
        return "\n".join(lines)


def _to64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)
                        else jnp.asarray(a), tree)


def _errors(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> tuple[float, float, bool]:
    diff = np.abs(a - b)
    scale = np.maximum(np.abs(a), np.abs(b))
    rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
    ok = bool(np.all(diff <= atol + rtol * np.abs(b)))
    return (float(diff.max(initial=0.0)), float(rel.max(initial=0.0)), ok)


def gradcheck(
    net: Network,
    params: Any,
    x: jax.Array,
    y: jax.Array,
    loss: str | losses_lib.Loss,
    *,
    grad_fn: Callable | None = None,
    eps: float = 1e-6,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    fd_rtol: float = 1e-6,
    fd_atol: float = 1e-8,
    max_fd_coords: int = 4096,
    key: jax.Array | None = None,
) -> GradcheckReport:
    """Compare the hand-derived gradient, `jax.grad` and central finite differences, in float64.

    Args:
        net, params: the network and its params (any float dtype; cast to float64 here).
        x: inputs (batch, *input_shape). y: targets for `loss`.
        loss: loss name or `jaxnet.losses.Loss`.
        grad_fn: the route under test, `grad_fn(net, params, x, y, loss) -> (loss, grads)`; default
            `jaxnet.backprop`. Pass your own to check it (e.g. a deliberately wrong one).
        eps: finite-difference step. rtol, atol, fd_rtol, fd_atol: tolerances (module docstring).
        max_fd_coords: at most this many parameter coordinates get finite differences (2 loss
            evaluations each); beyond it a random subset drawn with `key` (default key 0) is checked.

    Returns:
        A `GradcheckReport`: per leaf the max absolute and relative error of each route against
        `jax.grad` and a pass flag; `passed` is True when every leaf passes.

    Raises:
        ValueError / TypeError: params that do not fit `net`, x or y of the wrong shape or dtype,
            non-finite data, a non-positive eps or tolerance, or a bad max_fd_coords, naming the argument.
    """
    loss_fn = losses_lib.get(loss)
    x, y = check_data(net, params, x, y, loss_fn)
    check_positive("eps", eps)
    for arg_name, value in (("rtol", rtol), ("atol", atol), ("fd_rtol", fd_rtol), ("fd_atol", fd_atol)):
        check_positive(arg_name, value, allow_zero=True)
    check_positive("max_fd_coords", max_fd_coords, integer=True)
    if grad_fn is not None and not callable(grad_fn):
        raise TypeError(f"grad_fn: expected a callable (net, params, x, y, loss) -> (loss, grads), "
                        f"got {type(grad_fn).__name__}")
    if key is not None:
        check_key("key", key, single=True)
    with jax.enable_x64(True):
        p64, x64, y64 = _to64(params), _to64(x), _to64(y)
        if grad_fn is None:
            (loss_value, hand), (_, auto) = _both_routes(net, p64, x64, y64, loss_fn)
        else:
            loss_value, hand = grad_fn(net, p64, x64, y64, loss_fn)
            _, auto = jax.jit(autodiff, static_argnums=(0, 4))(net, p64, x64, y64, loss_fn)
        flat, unravel = ravel_pytree(p64)
        loss_at = jax.jit(lambda v: loss_fn.value(net.apply(unravel(v), x64), y64))
        fd = _finite_differences(loss_at, np.asarray(flat), eps, max_fd_coords, key)
        fd_flat, checked = np.full(flat.shape, np.nan), fd[0]
        fd_flat[checked] = fd[1]
        leaves = []
        offset = 0
        paths = jax.tree_util.tree_flatten_with_path(auto)[0]
        hand_leaves = jax.tree.leaves(hand)
        if len(hand_leaves) != len(paths):
            raise ValueError(f"grad_fn: returned {len(hand_leaves)} gradient leaves, params have {len(paths)}")
        all_ok = True
        for (path, a), h in zip(paths, hand_leaves):
            a, h = np.asarray(a), np.asarray(h)
            if h.shape != a.shape:
                bp = (float("inf"), float("inf"), False)
            else:
                bp = _errors(h, a, rtol, atol)
            size = a.size
            sel = checked[(checked >= offset) & (checked < offset + size)]
            fd_leaf = _errors(fd_flat[sel], a.reshape(-1)[sel - offset], fd_rtol, fd_atol)
            offset += size
            ok = bp[2] and fd_leaf[2]
            all_ok &= ok
            leaves.append(LeafCheck(jax.tree_util.keystr(path), a.shape, bp[0], bp[1], fd_leaf[0], fd_leaf[1],
                                    int(sel.size), ok))
    tolerances = {"rtol": rtol, "atol": atol, "eps": eps, "fd_rtol": fd_rtol, "fd_atol": fd_atol}
    return GradcheckReport(float(loss_value), tuple(leaves), all_ok, tolerances)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _both_routes(net, params, x, y, loss_fn):
    return backprop(net, params, x, y, loss_fn), autodiff(net, params, x, y, loss_fn)


def _finite_differences(f, flat: np.ndarray, eps: float, max_coords: int, key):
    """Central differences (f(v + eps e_i) - f(v - eps e_i)) / 2 eps on up to max_coords coordinates.

    One compiled `f`, called twice per coordinate from a host loop (cheaper to compile than a
    vmapped batch of perturbations, and linear in memory)."""
    n = flat.shape[0]
    if n <= max_coords:
        coords = np.arange(n)
    else:
        key = jax.random.key(0) if key is None else key
        coords = np.sort(np.asarray(jax.random.choice(key, n, (max_coords,), replace=False)))
    values = np.empty(coords.size)
    v = flat.copy()
    for j, i in enumerate(coords):
        # float() waits for each result before v is changed again: on CPU, jax may read a numpy
        # argument in place and asynchronously, so mutating it early would race
        v[i] = hi = flat[i] + eps
        up = float(f(v))
        v[i] = lo = flat[i] - eps
        down = float(f(v))
        v[i] = flat[i]
        values[j] = (up - down) / (hi - lo)  # the step actually taken
    return coords, values

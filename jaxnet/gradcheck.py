"""Gradient checks: a network's gradient route against `jax.grad` and finite differences, and one
layer's hand-written `backward` against `jax.vjp` of its `apply`.

`gradcheck(net, params, x, y, loss, ...)` is a tool users call, not only a test. It checks

- the route under test (`grad='backprop'`, the hand-derived delta recursion, by default; or
  'autodiff', or your own function): its *loss value* against an independent evaluation
  `loss(net.apply(params, x, ...), y)` in float64, and its gradients against `jax.grad` in float64;
- `jax.grad` against central finite differences, in float64.

It takes the network's `state` (BatchNorm's running statistics), the dropout `key` and the mode
`train`. Finite differences are valid in both modes: with a fixed key the dropout mask is fixed, and
BatchNorm's training output is a smooth function of params given the batch.

`check_layer(layer, x, ...)` compares one layer's `backward` with `jax.vjp` of its `apply` (float64,
a random dy), and names the layer, the argument and both shapes when `backward` returns a gradient of
the wrong structure, shape or dtype.

Tolerances, per element as `numpy.isclose`: |a - b| <= atol + rtol |b|, b the float64 reference:

| comparison                                        | precision='float64'     | precision='float32'   |
|---------------------------------------------------|-------------------------|-----------------------|
| the route's loss value and gradients vs reference | rtol 1e-10, atol 1e-12  | rtol 1e-4, atol 1e-5  |
| finite differences vs jax.grad (both float64)     | eps 1e-6, rtol 1e-6, atol 1e-8 (either mode)    |

In float64 the route and `jax.grad` are exact up to rounding (~1e-16 per operation). Central
differences with step eps have truncation error O(eps^2) ~ 1e-12 and rounding error
~1e-16 |L| / eps ~ 1e-10 |L|. With `precision='float32'` only the route under test runs in float32
(params, x, y and state cast to float32); float32 rounding (2^-24 ~ 6e-8 per operation, growing with
the number of summed terms) limits its agreement with the float64 reference to ~1e-6..1e-5. Finite
differences stay in float64, from the same (float32-valued) params: float32 central differences
cannot get below ~1e-3 relative error at any step size. The report says, per leaf, which rule
passed: 'rel' (|a - b| <= rtol |b| everywhere), 'abs' (|a - b| <= atol everywhere) or 'abs+rel'
(only the sum of both bounds holds).

Kinks. Where a layer's output is not differentiable in a coordinate (a ReLU whose pre-activation is
exactly 0) the gradient is a convention (jaxnet and `jax.nn.relu` use relu'(0) = 0) and central
differences cannot check it: they average the two one-sided slopes; where the loss stays smooth but
only once differentiable their error is O(eps) instead of O(eps^2); and where several kinks meet (zero
inputs and zero biases through two leaky ReLUs) the chain rule's value need not be a derivative of
the loss even where one exists (Kakade & Lee, "Provably correct automatic subdifferentiation",
NeurIPS 2018). A coordinate whose central difference fails is therefore examined again: forward and
backward one-sided differences of every layer's output and of the loss, each Richardson-extrapolated
from the steps eps and eps/2, with a margin of the tolerance, their truncation error (estimated from
the two steps) and rounding. When any of them jumps (the one-sided derivatives differ by more than
the margin) the coordinate is reported as a kink, not as an error. Elsewhere every layer is smooth
in that coordinate, and a central difference that disagrees with `jax.grad` is an error. The route
is still compared with `jax.grad` at kinks, so both must use the same convention there. A kink nearer
to the point than about eps/4 is found; one further away (but nearer than eps) may be reported as an
error.

Source: Deep Learning from Scratch 4.4 (numerical gradient) and 5.7.3 (gradient check); Nocedal &
Wright, *Numerical Optimization*, 2nd ed., 8.1 (finite-difference errors); Richardson extrapolation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxnet import losses as losses_lib
from jaxnet.validate import _compare_tree, as_float_array, check_data, check_key, check_positive, layer_shapes
from jaxnet.grad import autodiff, l2_penalty
from jaxnet.grad import route as gradient_fn  # noqa: I001
from jaxnet.nn.network import Network
from jaxnet.nn._layer import Layer
from jaxnet.nn.network import _check_backward

__all__ = ["gradcheck", "check_layer", "GradcheckReport", "LayerCheckReport", "LeafCheck", "Comparison"]

ROUTE_TOLERANCES = {"float64": (1e-10, 1e-12), "float32": (1e-4, 1e-5)}  # (rtol, atol)


class Comparison(NamedTuple):
    """Errors of values `a` against a reference `b` (arrays of the same shape).

    `max_abs` = max |a - b|; `max_rel` = max |a - b| / max(|a|, |b|); `rule`: 'rel' when |a - b| <= rtol |b|
    everywhere, else 'abs' when |a - b| <= atol everywhere, else 'abs+rel' when
    |a - b| <= atol + rtol |b| everywhere, else '-' (failed); 'n/a' when nothing was compared.
    """

    max_abs: float
    max_rel: float
    rule: str
    passed: bool


def _compare(a, b, rtol: float, atol: float) -> Comparison:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.size == 0:
        return Comparison(0.0, 0.0, "n/a", True)
    diff = np.abs(a - b)
    scale = np.maximum(np.abs(a), np.abs(b))
    rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
    if np.all(diff <= rtol * np.abs(b)):
        rule = "rel"
    elif np.all(diff <= atol):
        rule = "abs"
    elif np.all(diff <= atol + rtol * np.abs(b)):
        rule = "abs+rel"
    else:
        rule = "-"
    return Comparison(float(np.max(diff)), float(np.max(rel)), rule, rule != "-")


class LeafCheck(NamedTuple):
    """One parameter leaf: the route vs `jax.grad`, and finite differences vs `jax.grad`.

    `fd` excludes the kink coordinates; `fd_checked` counts the coordinates that got finite
    differences (kinks included); `kinks` holds the index of each kink within the leaf; `note`
    explains a leaf that could not be compared (e.g. a gradient of the wrong shape).
    """

    path: str
    shape: tuple[int, ...]
    route: Comparison
    fd: Comparison
    fd_checked: int
    kinks: tuple[tuple[int, ...], ...]
    passed: bool
    note: str = ""


def _row(name: str, shape, c: Comparison) -> str:
    return f"{name:<18}{str(tuple(shape)):<12}{c.max_abs:>10.2e}{c.max_rel:>10.2e} {c.rule:<8}"


class GradcheckReport(NamedTuple):
    """Result of `gradcheck`; `str(report)` is a readable table, `report.passed` the verdict.

    `loss` is the independent float64 evaluation of the loss, `route_loss` the value the route under
    test returned, `loss_check` their comparison; `kinks` lists the kink coordinates by name.
    """

    loss: float
    route_loss: float
    loss_check: Comparison
    leaves: tuple[LeafCheck, ...]
    passed: bool
    route: str
    precision: str
    train: bool
    tolerances: dict

    @property
    def kinks(self) -> list[str]:
        """The kink coordinates, e.g. `["[0]['b'][1]"]`."""
        return [f"{leaf.path}[{', '.join(map(str, index))}]" for leaf in self.leaves for index in leaf.kinks]

    def __str__(self) -> str:
        t = self.tolerances
        mode = "training mode (train=True)" if self.train else "evaluation mode (train=False)"
        verdict = "ok" if self.loss_check.passed else "WRONG"
        lines = [
            f"gradcheck of {self.route} ({self.precision}) against jax.grad and finite differences (float64), {mode}",
            f"  loss: {self.route} returned {self.route_loss:.12g}; independent float64 evaluation "
            f"{self.loss:.12g}: {verdict}",
            f"  route vs reference: rtol {t['rtol']:g}, atol {t['atol']:g}; finite differences (eps {t['eps']:g}) vs "
            f"jax.grad: rtol {t['fd_rtol']:g}, atol {t['fd_atol']:g}",
            f"  {'leaf':<18}{'shape':<12}{'route abs':>10}{'route rel':>10} {'rule':<8}{'fd abs':>10}{'fd rel':>10} "
            f"{'rule':<8}{'fd coords':>9}{'kinks':>6}  ok",
        ]
        for leaf in self.leaves:
            fd = leaf.fd
            lines.append(f"  {_row(leaf.path, leaf.shape, leaf.route)}"
                         f"{fd.max_abs:>10.2e}{fd.max_rel:>10.2e} {fd.rule:<8}"
                         f"{leaf.fd_checked:>9d}{len(leaf.kinks):>6d}  {'yes' if leaf.passed else 'NO'}"
                         + (f"  ({leaf.note})" if leaf.note else ""))
        kinks = self.kinks
        if kinks:
            shown = ", ".join(kinks[:12]) + (f", ... ({len(kinks)} in all)" if len(kinks) > 12 else "")
            lines.append("  kinks (a layer output is not differentiable there, so finite differences cannot check "
                         f"these; not errors): {shown}")
        lines.append("  PASSED" if self.passed else "  FAILED" + ("" if self.loss_check.passed else " (loss value)"))
        return "\n".join(lines)


def _cast(tree, dtype):
    """Floating leaves of `tree` cast to `dtype`; other leaves (integer labels, PRNG keys) unchanged."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)
                        else a, jax.tree.map(jnp.asarray, tree))


def _precision(precision: Any) -> str:
    try:
        name = jnp.dtype(precision).name
    except TypeError:
        name = None
    if name not in ROUTE_TOLERANCES:
        raise ValueError("precision: expected 'float64' or 'float32' (or jnp.float64 / jnp.float32), "
                         f"got {precision!r}")
    return name


def _route(grad: Any) -> tuple[Callable, str, bool]:
    """The route under test, its label, and whether it is one of jaxnet's (then it is jitted)."""
    grad = "backprop" if grad is None else grad
    label = grad if isinstance(grad, str) else getattr(grad, "__name__", "grad")
    return gradient_fn(grad), label, isinstance(grad, str)


@functools.partial(jax.jit, static_argnames=("route", "net", "loss_fn", "train"))
def _jitted_route(route, net, params, x, y, loss_fn, state, key, train, weight_decay=None):
    return route(net, params, x, y, loss_fn, state=state, key=key, train=train, weight_decay=weight_decay)


def _objective(net, params, x, y, loss_fn, state, key, train, weight_decay):
    """The loss `fit` trains: the loss of the network's output, plus the L2 term when weight_decay is set."""
    value = loss_fn.value(net.apply(params, x, state=state, key=key, train=train), y)
    return value if weight_decay is None else value + l2_penalty(net, params, weight_decay)


_loss_value = jax.jit(_objective, static_argnames=("net", "loss_fn", "train"))


def gradcheck(
    net: Network,
    params: Any,
    x: jax.Array,
    y: jax.Array,
    loss: str | losses_lib.Loss,
    *,
    state: Any = None,
    key: jax.Array | None = None,
    train: bool = False,
    grad: str | Callable | None = None,
    precision: Any = "float64",
    eps: float = 1e-6,
    rtol: float | None = None,
    atol: float | None = None,
    fd_rtol: float = 1e-6,
    fd_atol: float = 1e-8,
    max_fd_coords: int = 4096,
    fd_key: jax.Array | None = None,
    weight_decay: float | None = None,
) -> GradcheckReport:
    """Check a gradient route's loss value and gradients against float64 references (module docstring).

    Args:
        net, params: the network and its params (any float dtype; cast as `precision` says).
        x: inputs (batch, *input_shape). y: targets for `loss`.
        loss: loss name or `jaxnet.losses.Loss`.
        state: the network's state (`net.init_state(...)`; BatchNorm's running statistics, needed in
            evaluation mode). key: the PRNG key of training mode's randomness (dropout masks); the
            same key gives the same mask in every evaluation, so finite differences are valid.
        train: check the training-mode function (batch statistics, dropout) instead of evaluation.
        grad: the route under test: 'backprop' (default, the hand-derived delta recursion),
            'autodiff', or a callable `(net, params, x, y, loss, *, state, key, train) -> (loss, grads)`.
        precision: 'float64' (default) or 'float32' (or the dtypes): the precision the route under test
            runs in, which sets the default rtol and atol. References are always float64.
        eps: finite-difference step. rtol, atol: route vs reference (loss value and gradients; defaults
            by precision). fd_rtol, fd_atol: finite differences vs jax.grad.
        max_fd_coords: at most this many parameter coordinates get finite differences (2 loss
            evaluations each, 4 more for a coordinate that fails); beyond it a random subset drawn with
            `fd_key` (default `jax.random.key(0)`) is checked.
        weight_decay: check the loss with the book's L2 term `0.5 * weight_decay * sum(W**2)` over the
            weights (as `fit(..., weight_decay=)` trains it); passed to the route, and added to every
            reference (`jax.grad`, finite differences, the loss value).

    Returns:
        A `GradcheckReport`: the route's loss value and the independent one; per leaf the max absolute
        and relative error of the route against `jax.grad` and of finite differences against
        `jax.grad`, the rule that passed, the kink coordinates, and a pass flag. `passed` is True when
        the loss value and every leaf pass.

    A host-side tool (it loops over coordinates and returns Python floats): call it eagerly, not
    inside `jax.jit`/`vmap`/`grad`.

    Raises:
        ValueError / TypeError, naming the argument: params, state or data that do not fit `net`;
            non-finite data; `train=True` without a key for a network with dropout; a key batch; a
            non-positive eps or tolerance; an unknown route or precision; a route that does not
            return `(loss, grads)` with the params' structure.
    """
    loss_fn = losses_lib.get(loss)
    x, y = check_data(net, params, x, y, loss_fn)
    route, label, named = _route(grad)
    precision = _precision(precision)
    rtol = ROUTE_TOLERANCES[precision][0] if rtol is None else rtol
    atol = ROUTE_TOLERANCES[precision][1] if atol is None else atol
    check_positive("eps", eps)
    for arg_name, value in (("rtol", rtol), ("atol", atol), ("fd_rtol", fd_rtol), ("fd_atol", fd_atol)):
        check_positive(arg_name, value, allow_zero=True)
    check_positive("max_fd_coords", max_fd_coords, integer=True)
    if not isinstance(train, (bool, np.bool_)):
        raise TypeError(f"train: expected True or False, got {train!r}")
    train = bool(train)
    for arg_name, k in (("key", key), ("fd_key", fd_key)):
        if k is not None:
            check_key(arg_name, k, single=True)
    if weight_decay is not None:
        check_positive("weight_decay", weight_decay, allow_zero=True)
        weight_decay = float(weight_decay)

    with jax.enable_x64(True):
        p64, x64, y64, s64 = (_cast(t, jnp.float64) for t in (params, x, y, state))
        args = (x64, y64, loss_fn, s64, key, train)
        ref_loss = float(_loss_value(net, p64, *args, weight_decay))
        _, auto = _jitted_route(autodiff, net, p64, *args, weight_decay)
        if precision == "float32":
            p_r, x_r, y_r, s_r = (_cast(t, jnp.float32) for t in (params, x, y, state))
        else:
            p_r, x_r, y_r, s_r = p64, x64, y64, s64
        if named:
            out = _jitted_route(route, net, p_r, x_r, y_r, loss_fn, s_r, key, train, weight_decay)
        else:
            out = route(net, p_r, x_r, y_r, loss_fn, state=s_r, key=key, train=train, weight_decay=weight_decay)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise TypeError(f"grad: the route {label} must return (loss, grads), got {type(out).__name__}")
        route_loss, hand = out
        route_loss = float(route_loss)
        _, hand_def = jax.tree_util.tree_flatten(hand)
        paths, auto_def = jax.tree_util.tree_flatten_with_path(auto)
        if hand_def != auto_def:
            raise ValueError(f"grad: the route {label} returned gradients with structure {hand_def}, expected the "
                             f"params' structure {auto_def}")

        flat, unravel = ravel_pytree(p64)
        loss_at = jax.jit(lambda v: _objective(net, unravel(v), x64, y64, loss_fn, s64, key, train, weight_decay))

        @jax.jit
        def outputs_at(v):  # every layer's output and the loss, for the kink test
            outs = net.forward(unravel(v), x64, state=s64, key=key, train=train)[1:]
            total = loss_fn.value(outs[-1], y64)
            if weight_decay is not None:
                total = total + l2_penalty(net, unravel(v), weight_decay)
            return jnp.concatenate([jnp.ravel(o) for o in outs] + [jnp.ravel(total)])

        fd = _finite_differences(loss_at, outputs_at, np.asarray(flat), np.asarray(ravel_pytree(auto)[0]), eps,
                                 max_fd_coords, fd_key, fd_rtol, fd_atol)

    loss_check = _compare(route_loss, ref_loss, rtol, atol)
    leaves, offset = [], 0
    for (path, a), h in zip(paths, jax.tree.leaves(hand)):
        a, h = np.asarray(a), np.asarray(h)
        note = ""
        if h.shape != a.shape:
            route_cmp, note = Comparison(float("inf"), float("inf"), "-", False), f"gradient of shape {h.shape}"
        else:
            route_cmp = _compare(h, a, rtol, atol)
        in_leaf = (fd.coords >= offset) & (fd.coords < offset + a.size)
        good = in_leaf & ~fd.kink
        fd_cmp = _compare(fd.central[good], a.reshape(-1)[fd.coords[good] - offset], fd_rtol, fd_atol)
        kinks = tuple(tuple(int(i) for i in np.unravel_index(c - offset, a.shape))
                      for c in fd.coords[in_leaf & fd.kink])
        offset += a.size
        leaves.append(LeafCheck(jax.tree_util.keystr(path), a.shape, route_cmp, fd_cmp, int(in_leaf.sum()), kinks,
                                route_cmp.passed and fd_cmp.passed, note))
    tolerances = {"rtol": rtol, "atol": atol, "eps": eps, "fd_rtol": fd_rtol, "fd_atol": fd_atol}
    passed = loss_check.passed and all(leaf.passed for leaf in leaves)
    return GradcheckReport(ref_loss, route_loss, loss_check, tuple(leaves), passed, label, precision, train, tolerances)


class _FiniteDifferences(NamedTuple):
    coords: np.ndarray   # flat indices that got finite differences
    central: np.ndarray  # central differences there
    kink: np.ndarray     # True where the coordinate is a kink (module docstring)


def _finite_differences(f, outputs, flat: np.ndarray, grad: np.ndarray, eps: float, max_coords: int, fd_key,
                        rtol: float, atol: float) -> _FiniteDifferences:
    """Central differences (f(v + eps e_i) - f(v - eps e_i)) / 2 eps of the loss f on up to max_coords
    coordinates, and the kink test on those that disagree with `grad` (flat, the jax.grad values):
    `outputs(v)` is every layer's output and the loss as one flat vector.

    Compiled functions called from a host loop (cheaper to compile than a vmapped batch of
    perturbations, and linear in memory)."""
    n = flat.shape[0]
    if n <= max_coords:
        coords = np.arange(n)
    else:
        fd_key = jax.random.key(0) if fd_key is None else fd_key
        coords = np.sort(np.asarray(jax.random.choice(fd_key, n, (max_coords,), replace=False)))
    v = flat.copy()

    def at(fn, i, step):
        # np.asarray waits for each result before v is changed again: on CPU, jax may read a numpy
        # argument in place and asynchronously, so mutating it early would race
        v[i] = flat[i] + step
        try:
            return np.asarray(fn(v), np.float64), v[i] - flat[i]  # the step actually taken
        finally:
            v[i] = flat[i]

    central, kink = np.empty(coords.size), np.zeros(coords.size, bool)
    y0 = None
    for j, i in enumerate(coords):
        (up, h_up), (down, h_down) = at(f, i, eps), at(f, i, -eps)
        central[j] = (up - down) / (h_up - h_down)
        if abs(central[j] - grad[i]) <= atol + rtol * abs(grad[i]):
            continue
        y0 = np.asarray(outputs(flat), np.float64) if y0 is None else y0
        (r1, r2), (l1, l2) = ([(y - y0) / h for y, h in (at(outputs, i, sign * eps), at(outputs, i, sign * eps / 2))]
                              for sign in (1, -1))
        right, left = 2 * r2 - r1, 2 * l2 - l1  # Richardson: error O(eps^2) on a smooth side
        margin = (atol + rtol * np.maximum(np.abs(right), np.abs(left)) + np.abs(r1 - r2) + np.abs(l1 - l2)
                  + 64 * np.finfo(np.float64).eps * np.maximum(np.abs(y0), 1.0) / eps)  # rounding
        kink[j] = bool(np.any(np.abs(right - left) > margin))
    return _FiniteDifferences(coords, central, kink)


# ----------------------------------------------------------------------------------------------
# One layer: backward vs jax.vjp of apply
# ----------------------------------------------------------------------------------------------


class LayerCheckReport(NamedTuple):
    """Result of `check_layer`: one row per gradient (`dparams[...]` leaves, then `dx`)."""

    layer: str
    train: bool
    rows: tuple[tuple[str, tuple[int, ...], Comparison], ...]
    passed: bool
    tolerances: dict

    def __str__(self) -> str:
        mode = "training mode (train=True)" if self.train else "evaluation mode (train=False)"
        lines = [f"check_layer: {self.layer}.backward vs jax.vjp of {self.layer}.apply, float64, {mode}; "
                 f"rtol {self.tolerances['rtol']:g}, atol {self.tolerances['atol']:g}",
                 f"  {'argument':<18}{'shape':<12}{'max abs':>10}{'max rel':>10} {'rule':<8}ok"]
        lines += [f"  {_row(name, shape, c)}{'yes' if c.passed else 'NO'}" for name, shape, c in self.rows]
        lines.append("  PASSED" if self.passed else "  FAILED")
        return "\n".join(lines)


def check_layer(
    layer: Layer,
    x: jax.Array,
    *,
    params: Any = None,
    key: jax.Array | None = None,
    state: Any = None,
    train: bool = False,
    input_shape: tuple[int, ...] | None = None,
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> LayerCheckReport:
    """Compare a layer's hand-written `backward` with `jax.vjp` of its `apply`, in float64.

    With y = layer.apply(params, x, state=state, key=key, train=train) and a random dy ~ N(0, 1) of
    y's shape (drawn from `jax.random.key(1)`), checks that
    `layer.backward(params, x, y, dy, ...)` returns dparams = dy^T dy/dparams and dx = dy^T dy/dx as
    `jax.vjp` computes them. Params, x and state are cast to float64 first.

    Args:
        layer: any `jaxnet.Layer` (a `Network` too).
        x: a batch (batch, *input_shape) of floats.
        params: the layer's params; default `layer.init(jax.random.key(0), input_shape)`.
        key: PRNG key for training-mode randomness (Dropout), passed to both apply and backward.
        state: the layer's state; default `layer.init_state(input_shape)`.
        train: check the training-mode function.
        input_shape: the layer's input shape without the batch axis; default `x.shape[1:]`.
        rtol, atol: per-element tolerance |backward - vjp| <= atol + rtol |vjp|.

    Returns:
        A `LayerCheckReport`; `str(report)` is a table, `report.passed` the verdict. Like `gradcheck`,
        a host-side tool: call it eagerly.

    Raises:
        ValueError: `backward` returns dparams of another structure, or a dparams leaf or dx of another
            shape or dtype than the param or input (the message names the layer, the argument, e.g.
            `dparams['W']` or `dx`, and both shapes); params or state that do not fit the layer;
            `train=True` without the key a random layer needs.
        TypeError: `layer` is not a Layer, x is not a float array, `backward` does not return a pair.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"layer: expected a jaxnet Layer, got {type(layer).__name__}")
    x = as_float_array("x", x)
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"x: expected a batch (batch, *input_shape) with at least one example, got shape {x.shape}")
    in_shape = tuple(x.shape[1:]) if input_shape is None else tuple(input_shape)
    if key is not None:
        check_key("key", key, single=True)
    check_positive("rtol", rtol, allow_zero=True)
    check_positive("atol", atol, allow_zero=True)
    with jax.enable_x64(True):  # also lets layers with float64 params initialise them
        if params is None:
            params = layer.init(jax.random.key(0), in_shape)[1]
        _compare_tree("params", f"the params of {layer.name} for input shape {in_shape}",
                      layer_shapes(layer, in_shape)[1], params)
        if state is None:
            state = layer.init_state(in_shape)
        _compare_tree("state", f"the state of {layer.name} (layer.init_state)",
                      jax.eval_shape(lambda: layer.init_state(in_shape)), state)
        p64, x64, s64 = (_cast(t, jnp.float64) for t in (params, x, state))
        y, vjp = jax.vjp(lambda p, inp: layer.apply(p, inp, state=s64, key=key, train=train), p64, x64)
        dy = jax.random.normal(jax.random.key(1), jnp.shape(y), jnp.float64)
        ref_dparams, ref_dx = vjp(dy)
        out = layer.backward(p64, x64, y, dy, state=s64, key=key, train=train)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise TypeError(f"{layer.name}.backward: expected a pair (dparams, dx), got {type(out).__name__}")
        dparams, dx = out
        _check_backward(layer, None, p64, dparams, x64, dx)
    rows = [(f"dparams{jax.tree_util.keystr(path)}", tuple(np.shape(ref)), _compare(got, ref, rtol, atol))
            for (path, ref), got in zip(jax.tree_util.tree_flatten_with_path(ref_dparams)[0], jax.tree.leaves(dparams))]
    rows.append(("dx", tuple(np.shape(ref_dx)), _compare(dx, ref_dx, rtol, atol)))
    return LayerCheckReport(layer.name, bool(train), tuple(rows), all(c.passed for _, _, c in rows),
                            {"rtol": rtol, "atol": atol})

"""`gradcheck`: a network's gradient route against `jax.grad` and finite differences.

It checks
- the route under test (`grad='backprop'`, the hand-derived delta recursion, by default; or
  'autodiff', or your own function): its *loss value* against an independent evaluation
  `loss(net.apply(params, x, ...), y)` in float64, and its gradients against `jax.grad` in float64,
  at the params given and, when some leaves are constant (init values such as gamma = 1, beta = 0, a
  zero bias), also at a copy with those leaves perturbed (`perturb`): a backward pass can be exactly
  right at those values and wrong everywhere else (a Swish whose dx forgets its beta, at beta = 1).
  The point checked stays the params given (finite differences and kinks are about it); the perturbed
  copy adds one route and one `jax.grad` evaluation, and the report names the leaves it moved;
- `jax.grad` against central finite differences in float64, coordinate by coordinate
  (`fd='coordinates'`, up to `max_fd_coords` of them) or along random unit directions
  (`fd='directions'`, PyTorch's fast mode: the cost does not grow with the number of params).

A failing check names the faulty layer: it runs the per-layer report (`jaxnet.check.layer_report`),
which compares each layer's backward with `jax.vjp` of that layer alone, so that the leaves upstream
of a wrong layer (wrong only because its dx flows into them) are not blamed.

Tolerances, per element as `numpy.isclose`: |a - b| <= atol + rtol |b|, b the float64 reference:

| comparison                                        | precision='float64'     | precision='float32'   |
|---------------------------------------------------|-------------------------|-----------------------|
| the route's loss value and gradients vs reference | rtol 1e-10, atol 1e-12  | rtol 1e-4, atol 1e-5  |
| finite differences vs jax.grad (both float64)     | eps 1e-6, rtol 1e-6, atol 1e-8 (either mode)    |

In float64 the route and `jax.grad` are exact up to rounding (~1e-16 per operation). Central
differences with step eps have truncation error O(eps^2) ~ 1e-12 and rounding error
~1e-16 |L| / eps ~ 1e-10 |L|; along a unit direction u the same holds for the directional derivative
<g, u>, which is compared with the same rule. With `precision='float32'` only the route under test
runs in float32 (params, x, y and state cast to float32); float32 rounding (2^-24 ~ 6e-8 per
operation, growing with the number of summed terms) limits its agreement with the float64 reference
to ~1e-6..1e-5. Finite differences stay in float64: float32 central differences cannot get below
~1e-3 relative error at any step size. The report says, per leaf, which rule passed: 'rel'
(|a - b| <= rtol |b| everywhere), 'abs' (|a - b| <= atol everywhere) or 'abs+rel' (only the sum).

Kinks. Where the loss is not differentiable (a ReLU input exactly 0, a tie in a max-pool window) the
gradient is a convention (jaxnet and `jax.nn.relu` use relu'(0) = 0) and central differences cannot
check it; nor can they check a coordinate whose stencil v +- eps e_i *crosses* a kink anywhere in the
network. A coordinate (or direction) whose finite difference fails is evaluated again at both ends
of its stencil for the kink pattern of every layer (`_kinks`: ReLU masks, max-pool argmaxes); when a
pattern changed, it is reported as a kink, with the element crossed. For layers that declare no
kinks, a failing coordinate is examined by one-sided differences of every layer's output, each
Richardson-extrapolated from eps and eps/2: a jump makes it a kink (one nearer than about eps/4 is
found). Elsewhere a central difference that disagrees with `jax.grad` is an error: the report lists
the first failing coordinates with the finite difference, `jax.grad` and the route side by side, and
the kink nearest to each. The route is compared with `jax.grad` at kinks too, so both must use the
same convention there (Kakade & Lee, "Provably correct automatic subdifferentiation", NeurIPS 2018,
on why the chain rule's value need not be a derivative where several kinks meet).

Source: Deep Learning from Scratch 4.4 (numerical gradient) and 5.7.3 (gradient check); PyTorch's
`torch.autograd.gradcheck` (fast_mode); Nocedal & Wright, *Numerical Optimization*, 2nd ed., 8.1.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxnet import losses as losses_lib
from jaxnet.check import _fd
from jaxnet.check._common import (FAILED, NOTHING, ROUTE_TOLERANCES, Comparison, cast, compare, e, keystr,
                                  markdown_table, perturbed, repr_pretty, to_markdown)
from jaxnet.grad import autodiff, l2_penalty
from jaxnet.grad import route as route_of
from jaxnet.nn.network import Network
from jaxnet.validate import check_data, check_key, check_positive

FD_MODES = ("coordinates", "directions")


class LeafCheck(NamedTuple):
    """One parameter leaf: the route vs `jax.grad`, and finite differences vs `jax.grad`.

    `route` compares the route with `jax.grad` (at the params given, and at the perturbed copy when
    the report's `perturbed` is not empty). `fd` excludes the kinks; `fd_checked` counts the
    coordinates (or directions) that got finite differences, kinks included; `kinks` holds the index
    of each kink within the leaf (a direction's number, (j,), in directions mode); `note` explains a
    leaf that could not be compared. `failing`: the first coordinates (or directions) where finite
    differences disagree, as (index, finite difference, jax.grad, route, the kink nearest).
    `route_fd` compares the route with finite differences directly (as PyTorch's gradcheck, which
    has no jax.grad to compare with). The row `(all params)` holds the directions over all params.
    """

    path: str
    shape: tuple[int, ...]
    route: Comparison
    fd: Comparison
    fd_checked: int
    kinks: tuple[tuple[int, ...], ...]
    passed: bool
    note: str = ""
    failing: tuple = ()
    route_fd: Comparison = NOTHING
    kink_notes: tuple[str, ...] = ()


def _row(name: str, shape, c: Comparison) -> str:
    return f"{name:<18}{str(tuple(shape)):<12}{c.max_abs:>10.2e}{c.max_rel:>10.2e} {c.rule:<8}"


def _index(leaf: LeafCheck, index) -> str:
    return f"{leaf.path}[{', '.join(map(str, index))}]" if leaf.path != "(all params)" else f"all params {index[0]}"


class GradcheckReport(NamedTuple):
    """Result of `gradcheck`; `str(report)` is a readable table, `report.passed` the verdict.

    `loss` is the independent float64 evaluation of the loss, `route_loss` the value the route under
    test returned, `loss_check` their comparison; `kinks` lists the kink coordinates by name.
    `fd_mode`: 'coordinates' or 'directions'. `perturbed`: the constant leaves moved off their init
    values for the second comparison of the route with `jax.grad`. `blame`: on failure, the faulty
    layer as the per-layer report finds it (`layers`, a `LayerReport`); '' when the check passed.
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
    fd_mode: str = "coordinates"
    perturbed: tuple[str, ...] = ()
    blame: str = ""
    layers: Any = None

    @property
    def kinks(self) -> list[str]:
        """The kink coordinates, e.g. `["[0]['b'][1]"]` (directions: `"[0]['W'] direction 2"`)."""
        if self.fd_mode == "directions":
            return [f"{leaf.path} direction {index[0]}" for leaf in self.leaves for index in leaf.kinks]
        return [_index(leaf, index) for leaf in self.leaves for index in leaf.kinks]

    def _header(self) -> list[str]:
        t = self.tolerances
        mode = "training mode (train=True)" if self.train else "evaluation mode (train=False)"
        verdict = "ok" if self.loss_check.passed else "WRONG"
        fd = (f"finite differences (eps {t['eps']:g}" + (f", {t['directions']} random unit directions per leaf and "
              f"over all params)" if self.fd_mode == "directions" else ")"))
        lines = [f"gradcheck of {self.route} ({self.precision}) against jax.grad and finite differences "
                 f"(float64), {mode}",
                 f"  loss: {self.route} returned {self.route_loss:.12g}; independent float64 evaluation "
                 f"{self.loss:.12g}: {verdict}",
                 f"  route vs reference: rtol {t['rtol']:g}, atol {t['atol']:g}; {fd} vs jax.grad: rtol "
                 f"{t['fd_rtol']:g}, atol {t['fd_atol']:g}"]
        if self.perturbed:
            lines.append(f"  route vs jax.grad also at perturbed params: constant (init-valued) leaves "
                         f"{', '.join(self.perturbed)} + {t['perturb']:g} max(1, |p|) N(0, 1)")
        return lines

    def _verdict(self) -> str:
        if self.passed:
            return "PASSED"
        blame = f": {self.blame}" if self.blame else ""
        return "FAILED" + ("" if self.loss_check.passed else " (loss value)") + blame

    def _failing_lines(self) -> list[str]:
        lines = []
        rows = [(leaf, f) for leaf in self.leaves for f in leaf.failing]
        if rows:
            lines.append(f"  failing {'directions' if self.fd_mode == 'directions' else 'coordinates'} (finite "
                         f"difference vs jax.grad; first {len(rows)}):")
            for leaf, (index, fd, ref, route, near) in rows:
                lines.append(f"    {_index(leaf, index)}: fd {fd:.6e}, jax.grad {ref:.6e}, {self.route} {route:.6e}"
                             + (f"; nearest kink: {near}" if near else ""))
        return lines

    def __str__(self) -> str:
        lines = self._header()
        lines.append(f"  {'leaf':<18}{'shape':<12}{'route abs':>10}{'route rel':>10} {'rule':<8}{'fd abs':>10}"
                     f"{'fd rel':>10} {'rule':<8}{'fd ' + ('dirs' if self.fd_mode == 'directions' else 'coords'):>9}"
                     f"{'kinks':>6}  ok")
        for leaf in self.leaves:
            fd = leaf.fd
            lines.append(f"  {_row(leaf.path, leaf.shape, leaf.route)}"
                         f"{fd.max_abs:>10.2e}{fd.max_rel:>10.2e} {fd.rule:<8}"
                         f"{leaf.fd_checked:>9d}{len(leaf.kinks):>6d}  {'yes' if leaf.passed else 'NO'}"
                         + (f"  ({leaf.note})" if leaf.note else ""))
        lines += self._failing_lines()
        kinks = self.kinks
        if kinks:
            notes = [n for leaf in self.leaves for n in leaf.kink_notes]
            shown = ", ".join(kinks[:12]) + (f", ... ({len(kinks)} in all)" if len(kinks) > 12 else "")
            lines.append("  kinks (the stencil crosses a point where a layer's output is not differentiable, so "
                         f"finite differences cannot check these; not errors): {shown}"
                         + (f"; e.g. {notes[0]}" if notes else ""))
        lines.append("  " + self._verdict())
        return "\n".join(lines)

    def _markdown(self) -> list[str]:
        rows = [[f"`{leaf.path}`", str(tuple(leaf.shape)), e(leaf.route.max_rel), leaf.route.rule, e(leaf.fd.max_rel),
                 leaf.fd.rule, str(leaf.fd_checked), str(len(leaf.kinks)), "yes" if leaf.passed else "**NO**"]
                for leaf in self.leaves]
        header = ["leaf", "shape", "route rel", "rule", "fd rel", "rule", "fd " + self.fd_mode, "kinks", "ok"]
        return ([f"**{self._header()[0]}**", ""] + [line.strip() + "  " for line in self._header()[1:]] + [""]
                + markdown_table(header, rows) + [""] + [line.strip() for line in self._failing_lines()]
                + [f"**{self._verdict()}**"])

    to_markdown = to_markdown
    _repr_markdown_ = to_markdown
    _repr_pretty_ = repr_pretty


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
    return route_of(grad), label, isinstance(grad, str)


@functools.partial(jax.jit, static_argnames=("route", "net", "loss_fn", "train"))
def _jitted_route(route, net, params, x, y, loss_fn, state, key, train, weight_decay=None):
    return route(net, params, x, y, loss_fn, state=state, key=key, train=train, weight_decay=weight_decay)


def _objective(net, params, x, y, loss_fn, state, key, train, weight_decay):
    """The loss `fit` trains: the loss of the network's output, plus the L2 term when weight_decay is set."""
    value = loss_fn.value(net.apply(params, x, state=state, key=key, train=train), y)
    return value if weight_decay is None else value + l2_penalty(net, params, weight_decay)


_loss_value = jax.jit(_objective, static_argnames=("net", "loss_fn", "train"))


def _first_difference(hs, rs, rtol, atol) -> str:
    """'[2, 1]: route 0.1, jax.grad 0.3' for the first entry where the route and jax.grad disagree (at the
    params given, else at the perturbed ones)."""
    for h, r, where in zip(hs, rs, ("", " at the perturbed params")):
        bad = np.argwhere(np.abs(h - r) > atol + rtol * np.abs(r))
        if bad.size:
            i = tuple(int(j) for j in bad[0])
            return f"first at [{', '.join(map(str, i))}]{where}: route {h[i]:.6e}, jax.grad {r[i]:.6e}"
    return ""


def _call_route(route, named, label, net, params, x, y, loss_fn, state, key, train, weight_decay):
    if named:
        out = _jitted_route(route, net, params, x, y, loss_fn, state, key, train, weight_decay)
    else:
        out = route(net, params, x, y, loss_fn, state=state, key=key, train=train, weight_decay=weight_decay)
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise TypeError(f"grad: the route {label} must return (loss, grads), got {type(out).__name__}")
    route_loss, hand = out
    _, hand_def = jax.tree_util.tree_flatten(hand)
    auto_def = jax.tree_util.tree_structure(params)
    if hand_def != auto_def:
        raise ValueError(f"grad: the route {label} returned gradients with structure {hand_def}, expected the "
                         f"params' structure {auto_def}")
    return float(route_loss), hand


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
    fd: str = "coordinates",
    directions: int = 4,
    perturb: float | None = 0.1,
    blame: bool = True,
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
        eps: finite-difference step (a coordinate step, or the length of a step along a unit
            direction). rtol, atol: route vs reference (loss value and gradients; defaults by
            precision). fd_rtol, fd_atol: finite differences vs jax.grad.
        max_fd_coords: in 'coordinates' mode, at most this many parameter coordinates get finite
            differences (2 loss evaluations each, more for a coordinate that fails); beyond it a random
            subset drawn with `fd_key` (default `jax.random.key(0)`) is checked.
        weight_decay: check the loss with the book's L2 term `0.5 * weight_decay * sum(W**2)` over the
            weights (as `fit(..., weight_decay=)` trains it); passed to the route, and added to every
            reference (`jax.grad`, finite differences, the loss value).
        fd: 'coordinates' (default) or 'directions': `directions` random unit directions inside each
            leaf plus `directions` over all params (drawn with `fd_key`), 2 loss evaluations each.
        perturb: scale of the perturbation of constant leaves for the second comparison of the route
            with `jax.grad` (None or 0: only the params given).
        blame: on failure, run the per-layer report to name the faulty layer (False: skip it).

    Returns:
        A `GradcheckReport`: the route's loss value and the independent one; per leaf the max absolute
        and relative error of the route against `jax.grad` and of finite differences against
        `jax.grad`, the rule that passed, the kinks, the first failing coordinates, and a pass flag.
        `passed` is True when the loss value and every leaf pass.

    A host-side tool (it loops over coordinates and returns Python floats): call it eagerly, not
    inside `jax.jit`/`vmap`/`grad`.

    Raises:
        ValueError / TypeError, naming the argument: params, state or data that do not fit `net`;
            non-finite data; `train=True` without a key for a network with dropout; a key batch; a
            non-positive eps or tolerance; an unknown route, precision or fd mode; a route that does
            not return `(loss, grads)` with the params' structure.
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
    check_positive("directions", directions, integer=True)
    if fd not in FD_MODES:
        raise ValueError(f"fd: expected 'coordinates' or 'directions', got {fd!r}")
    if perturb is not None:
        check_positive("perturb", perturb, allow_zero=True)
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
        p64, x64, y64, s64 = (cast(t, jnp.float64) for t in (params, x, y, state))
        points = [p64]
        moved: list[str] = []
        if perturb:
            p_moved, moved = perturbed(p64, perturb)
            if moved:
                points.append(p_moved)
        refs, outs = [], []
        for p in points:
            ref_loss = float(_loss_value(net, p, x64, y64, loss_fn, s64, key, train, weight_decay))
            _, auto = _jitted_route(autodiff, net, p, x64, y64, loss_fn, s64, key, train, weight_decay)
            refs.append((ref_loss, auto))
            p_r, x_r, y_r, s_r = ((cast(t, jnp.float32) for t in (p, x, y, state)) if precision == "float32"
                                  else (p, x64, y64, s64))
            outs.append(_call_route(route, named, label, net, p_r, x_r, y_r, loss_fn, s_r, key, train, weight_decay))
        (ref_loss, auto), (route_loss, hand) = refs[0], outs[0]
        paths = [keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(auto)[0]]
        fdres = _fd.network_fd(net, p64, x64, y64, loss_fn, s64, key, train, weight_decay, auto, hand, fd, eps,
                               max_fd_coords, fd_key, fd_rtol, fd_atol, directions)

    loss_check = compare([o[0] for o in outs], [r[0] for r in refs], rtol, atol)
    leaves = []
    for k, (path, a) in enumerate(zip(paths, jax.tree.leaves(auto))):
        a = np.asarray(a)
        hs = [np.asarray(jax.tree.leaves(o[1])[k]) for o in outs]
        note, route_cmp = "", FAILED
        if any(h.shape != a.shape for h in hs):
            note = f"gradient of shape {next(h.shape for h in hs if h.shape != a.shape)}"
        else:
            rs = [np.asarray(jax.tree.leaves(r[1])[k]) for r in refs]
            route_cmp = compare(np.concatenate([h.ravel() for h in hs]), np.concatenate([r.ravel() for r in rs]),
                                rtol, atol)
            if not route_cmp.passed:
                note = _first_difference(hs, rs, rtol, atol)
        leaves.append(LeafCheck(*fdres.leaf(k, path, a.shape, route_cmp, note, fd_rtol, fd_atol)))
    if fd == "directions":
        leaves.append(LeafCheck(*fdres.leaf(-1, "(all params)", (sum(int(np.size(a)) for a in jax.tree.leaves(auto)),),
                                            NOTHING, "", fd_rtol, fd_atol)))
    tolerances = {"rtol": rtol, "atol": atol, "eps": eps, "fd_rtol": fd_rtol, "fd_atol": fd_atol,
                  "perturb": perturb or 0.0, "directions": directions}
    passed = loss_check.passed and all(leaf.passed for leaf in leaves)
    report = GradcheckReport(ref_loss, route_loss, loss_check, tuple(leaves), passed, label, precision, train,
                             tolerances, fd, tuple(moved))
    if passed or not blame or all(leaf.passed for leaf in leaves):
        return report
    from jaxnet.check._report import blame_text, layer_report  # the per-layer report imports this module's helpers

    layers = layer_report(net, params, x, y, loss_fn, state=state, key=key, train=train, perturb=perturb)
    return report._replace(blame=blame_text(layers, report), layers=layers)

"""The per-layer report: every layer of a network checked on its own, at the real intermediate
values of one forward pass, three ways.

For a network, a batch and (optionally) a loss: run the forward pass once, keeping every layer's
input x_i and output y_i; give each layer the cotangent dy_i it receives in the true backward pass
(the loss's gradient pulled back through the layers after it by `jax.vjp`, so that a wrong layer
downstream cannot spoil the check of the layers before it), or a random N(0, 1) one
(`cotangent='random'`); then compare, for every layer,

1. the hand-derived `layer.backward(params_i, x_i, y_i, dy_i)` -> (dparams, dx) with
2. `jax.vjp` of that layer's `apply` at (params_i, x_i), and
3. central finite differences of s = <dy_i, layer.apply(params, x)> along random unit directions of
   each param and of x: (s(+h u) - s(-h u)) / 2h against <vjp, u>, with the tolerance
   fd_atol + fd_rtol |<vjp, u>| + 4 |fd(h) - fd(2h)| (the last term estimates the difference's own
   truncation and rounding error from a second step 2h, which matters for large layers).

Each row says the layer (`3.1` is layer 1 of the network nested at layer 3: nested networks are
walked into, one row per inner layer), its input and output shapes, the max abs/rel error of dx and
of each param, the rule that passed (see `Comparison`), the directions whose stencil crossed a kink
(not counted), and a verdict. The loss gets a row too (its `grad` against `jax.grad` of its `value`).
The first faulty layer is named in the summary line.

State, key and mode are those of the forward pass (layer i gets `fold_in(key, i)`, as in
`Network.forward`); a missing key for a network with Dropout in training mode is a ValueError. A
layer whose backward raises or returns the wrong structure gets a row that says so.

Max-pool ties: where a window's maximum is not unique, the book's first-maximum rule (jaxnet) and
`jnp.max`'s even split (`jax.vjp`) are both valid subgradients; there the row compares the window's
sum of dx (it must equal dy) and requires zeros off the tied maxima, instead of the entries.

Params: constant leaves (init values such as gamma = 1, beta = 0, zero biases), where some wrong
backward passes are exactly right, are perturbed first (`perturb`, as in `gradcheck`); the header
names them. `perturb=None` checks the params exactly as given.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnet import losses as losses_lib
from jaxnet.check import _kinks
from jaxnet.check._common import (NOTHING, Comparison, cast, compare, e, keystr, markdown_table, nodes, perturbed,
                                  repr_pretty, table, to_markdown, worst)
from jaxnet.nn._layer import Layer, require_key
from jaxnet.nn.network import _check_backward
from jaxnet.nn.pool import MaxPool2D
from jaxnet.validate import as_float_array, check_data, check_key, check_positive


class QuantityCheck(NamedTuple):
    """One gradient of one layer: `dx` or `d<param>`. `hand`: backward vs jax.vjp; `fd`: jax.vjp vs
    finite differences (directions); `hand_fd`: backward vs finite differences; `kinks`: directions
    whose stencil crossed a kink (left out); `ties`: max-pool windows compared by their sum;
    `fd_ratio`: the largest |fd - vjp| over its tolerance (<= 1 passes; NaN when no direction was
    compared)."""

    name: str
    shape: tuple[int, ...]
    hand: Comparison
    fd: Comparison
    hand_fd: Comparison
    kinks: int = 0
    ties: int = 0
    fd_ratio: float = float("nan")


class LayerRow(NamedTuple):
    """One layer (or the loss): its place, name, shapes and checks; `note` explains a backward that
    raised or returned the wrong structure. `hand_ok`: the backward agrees with jax.vjp; `fd_ok`:
    jax.vjp agrees with finite differences."""

    label: str
    name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    quantities: tuple[QuantityCheck, ...]
    hand_ok: bool
    fd_ok: bool
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.hand_ok and self.fd_ok

    @property
    def where(self) -> str:
        return f"the loss ({self.name})" if self.label == "loss" else f"layer {self.label} ({self.name})"

    def fault(self) -> str:
        """What is wrong, e.g. "its backward's dx differs from jax.vjp (max rel 3.1e-01)"."""
        if self.note:
            return self.note
        bad = [q for q in self.quantities if not q.hand.passed]
        if bad:
            worst_rel = max(q.hand.max_rel for q in bad)
            if self.label == "loss":
                return f"its grad differs from jax.grad of its value (max rel {worst_rel:.1e})"
            names = ", ".join(q.name for q in bad)
            return f"its backward's {names} differ{'s' if len(bad) == 1 else ''} from jax.vjp (max rel {worst_rel:.1e})"
        bad = [q for q in self.quantities if not q.fd.passed]
        return ("jax.vjp of its apply disagrees with finite differences in " + ", ".join(q.name for q in bad)
                + " (a wrong custom JVP?)") if bad else ""


class LayerReport(NamedTuple):
    """Result of `layer_report`: one `LayerRow` per layer (and one for the loss); `str(report)` is a
    table, `report.to_markdown()` the same in markdown, `report.figure()` a plot."""

    network: str
    rows: tuple[LayerRow, ...]
    passed: bool
    train: bool
    cotangent: str
    perturbed: tuple[str, ...]
    tolerances: dict

    @property
    def faulty(self) -> list[LayerRow]:
        """The rows that fail, in forward order (the loss last)."""
        return [row for row in self.rows if not row.passed]

    def summary(self) -> str:
        """The verdict line: 'PASSED: ...' or 'FAILED: the first wrong layer is ...'."""
        if self.passed:
            loss = " and the loss gradient" if self.rows[-1].label == "loss" else ""
            return f"PASSED: every layer's backward{loss} " \
                   "agree with jax.vjp and finite differences"
        first = self.faulty[0]
        more = (f" (also: {', '.join(r.where for r in self.faulty[1:])})" if len(self.faulty) > 1 else "")
        return f"FAILED: the first wrong layer is {first.where}: {first.fault()}{more}"

    def _title(self) -> str:
        mode = "training mode (train=True)" if self.train else "evaluation mode (train=False)"
        return (f"layer report of {self.network}: each layer's backward vs jax.vjp vs finite differences, "
                f"float64, {mode}")

    def _header(self) -> list[str]:
        t = self.tolerances
        cot = ("the loss's gradient pulled back by jax.vjp (the true dL/dy of each layer)" if self.cotangent == "loss"
               else "random N(0, 1), one per layer")
        lines = [f"cotangents: {cot}; finite differences: {t['directions']} random unit directions per quantity, "
                 f"eps {t['eps']:g}",
                 f"backward vs jax.vjp: rtol {t['rtol']:g}, atol {t['atol']:g}; finite differences vs jax.vjp: rtol "
                 f"{t['fd_rtol']:g}, atol {t['fd_atol']:g} + 4 |fd(eps) - fd(2 eps)| (fd err/tol <= 1 passes)"]
        if self.perturbed:
            lines.append(f"constant (init-valued) params perturbed first: {', '.join(self.perturbed)}")
        return lines

    def _cells(self, row: LayerRow, markdown: bool = False) -> list[str]:
        qs = {q.name: q for q in row.quantities}
        dx = qs.get("dx") or qs.get("dy_pred")
        params = [q for q in row.quantities if q.name not in ("dx", "dy_pred")]
        worst_p = max(params, key=lambda q: q.hand.max_rel, default=None)
        rule = worst([q.hand for q in row.quantities]).rule if not row.note else "-"
        ok = "yes" if row.passed else ("**NO**" if markdown else "NO")
        shapes = f"{row.input_shape} -> {row.output_shape}" if row.label != "loss" else str(row.input_shape)
        return [row.label, row.name, shapes, e(dx.hand.max_rel) if dx else "-",
                f"{worst_p.name} {e(worst_p.hand.max_rel)}" if worst_p else "-", rule,
                _ratio(row),
                str(sum(q.kinks for q in row.quantities)) + (f" ({sum(q.ties for q in row.quantities)} ties)"
                                                              if any(q.ties for q in row.quantities) else ""),
                ok + (f" ({row.note})" if row.note else "")]

    _columns = ["#", "layer", "input -> output", "dx rel", "params rel (worst)", "rule", "fd err/tol", "kinks", "ok"]

    def __str__(self) -> str:
        lines = [self._title()] + ["  " + line for line in self._header()]
        lines += table(self._columns, [self._cells(row) for row in self.rows])
        return "\n".join(lines + ["  " + self.summary()])

    def _markdown(self) -> list[str]:
        return ([f"**{self._title()}**", ""] + [line + "  " for line in self._header()] + [""]
                + markdown_table(self._columns, [self._cells(row, True) for row in self.rows])
                + ["", f"**{self.summary()}**"])

    to_markdown = to_markdown
    _repr_markdown_ = to_markdown
    _repr_pretty_ = repr_pretty

    def figure(self, ax=None):
        """Relative error per layer and quantity on a log scale: filled markers for backward vs jax.vjp,
        hollow ones for finite differences vs jax.vjp; the tolerances as lines. Returns the matplotlib
        Figure (drawn on `ax` when given). Needs matplotlib (`jaxnet.plot`)."""
        from jaxnet.check._figures import layer_report_figure

        return layer_report_figure(self, ax)


def _ratio(row: LayerRow) -> str:
    ratios = [q.fd_ratio for q in row.quantities if not np.isnan(q.fd_ratio)]
    if not ratios:
        return "-"
    return "<0.01" if max(ratios) < 0.01 else f"{max(ratios):.2g}"  # far below 1: rounding noise, not a number to read


def blame_text(layers: LayerReport, report) -> str:
    """The FAILED line of a gradcheck whose route or finite differences disagree: the faulty layer
    from the per-layer report, or where else the fault must be."""
    if layers.faulty:
        first = layers.faulty[0]
        text = f"the per-layer report blames {first.where}: {first.fault()}"
        if len(layers.faulty) > 1:
            text += f"; also {', '.join(r.where for r in layers.faulty[1:])}"
        if any(q.name == "dx" and not q.hand.passed for q in first.quantities):
            text += "; the leaves before it are wrong because its dx flows into them"
        return text
    if all(leaf.route.passed for leaf in report.leaves):
        return "jax.grad disagrees with finite differences (see the failing coordinates) but no single layer does"
    if report.route == "backprop":
        return ("every layer's backward and the loss gradient agree with jax.vjp: the gradients differ outside the "
                "layers (the weight-decay term?)")
    return (f"every layer's backward and the loss gradient agree with jax.vjp: the route '{report.route}' itself "
            f"is wrong ({', '.join(leaf.path for leaf in report.leaves if not leaf.route.passed)})")


# ----------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("layer", "train"))
def _apply(layer, p, x, s, k, train):
    return layer.apply(p, x, state=s, key=k, train=train)


@functools.partial(jax.jit, static_argnames=("layer", "train"))
def _vjp(layer, p, x, s, k, train, dy):
    return jax.vjp(lambda p, x: layer.apply(p, x, state=s, key=k, train=train), p, x)[1](dy)


@functools.partial(jax.jit, static_argnames=("layer", "train"))
def _backward(layer, p, x, y, dy, s, k, train):
    return layer.backward(p, x, y, dy, state=s, key=k, train=train)


@functools.partial(jax.jit, static_argnames=("layer", "train"))
def _pattern(layer, p, x, s, k, train):
    return _kinks.kink_margin(layer, p, x, state=s, key=k, train=train)[0]


def _probe(layer, p, x, s, k, train, dy, pattern0):
    """s = <dy, apply(p, x)> (in numpy, reusing the forward pass's compiled `_apply`), and the number of
    kink-pattern entries that differ from pattern0 (None: a layer without kinks)."""
    out = float(np.vdot(np.asarray(dy), np.asarray(_apply(layer, p, x, s, k, train))))
    return out, 0 if pattern0 is None else int(np.sum(np.asarray(_pattern(layer, p, x, s, k, train)) != pattern0))


def _tie_windows(layer, x):
    """For a MaxPool2D whose windows tile x exactly (stride = pool size) and ties at x: the (N, C, OH, OW) mask of
    tied windows and the (.., k) mask of their tied maxima; None otherwise."""
    if not isinstance(layer, MaxPool2D) or layer.pool_size != (layer.stride, layer.stride):
        return None  # overlapping windows or gaps between them: the entries are compared as they are
    windows = np.asarray(layer._windows(x))
    at_max = windows == windows.max(axis=-1, keepdims=True)
    tied = at_max.sum(-1) > 1
    return (tied, at_max) if tied.any() else None


def compare_dx(layer, x, hand_dx, ref_dx, dy, rtol, atol) -> tuple[Comparison, int]:
    """dx of `layer` (hand) against jax.vjp (ref); at max-pool ties by the window sums (module docstring).
    Returns the comparison and the number of tied windows."""
    ties = _tie_windows(layer, x)
    if ties is None:
        return compare(hand_dx, ref_dx, rtol, atol), 0
    tied, at_max = ties
    hw, rw = np.asarray(layer._windows(jnp.asarray(hand_dx))), np.asarray(layer._windows(jnp.asarray(ref_dx)))
    off = ~at_max & tied[..., None]
    parts = [compare(hw[~tied], rw[~tied], rtol, atol), compare(hw[tied].sum(-1), rw[tied].sum(-1), rtol, atol),
             compare(hw[off], np.zeros(int(off.sum())), rtol, atol)]
    return worst(parts), int(tied.sum())


def _fd_compare(fd, ref, slack, rtol, atol) -> tuple[Comparison, float]:
    """Finite differences against jax.vjp: the plain rule, else 'err' when they agree only within
    their estimated error `slack` (4 |fd(h) - fd(2h)|), else '-'; and the largest error / tolerance."""
    c = compare(fd, ref, rtol, atol)
    ratio = float(np.max(np.abs(fd - ref) / (atol + rtol * np.abs(ref) + slack)))
    if c.passed:
        return c, ratio
    return c._replace(rule="err" if ratio <= 1 else "-", passed=ratio <= 1), ratio


def _unit(key, shape):
    u = np.asarray(jax.random.normal(key, shape, jnp.float64))
    return u / max(np.linalg.norm(u), 1e-300)


def _check_node(node, x, y, dy, train, directions, eps, tol, fd_key) -> LayerRow:
    layer, p, s, k = node.layer, node.params, node.state, node.key
    rtol, atol, fd_rtol, fd_atol = tol
    row = functools.partial(LayerRow, node.label, layer.name, tuple(x.shape), tuple(y.shape))
    ref_dp, ref_dx = _vjp(layer, p, x, s, k, train, dy)
    try:
        out = _backward(layer, p, x, y, dy, s, k, train)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise TypeError(f"{layer.name}.backward: expected a pair (dparams, dx), got {type(out).__name__}")
        hand_dp, hand_dx = out
        _check_backward(layer, node.label, p, hand_dp, x, hand_dx)
    except (TypeError, ValueError) as err:
        message = str(err).split("\n")[0]
        if not message.startswith((f"layer {node.label} ", f"{layer.name}.backward")):
            message = f"backward raised {type(err).__name__}: {message}"
        return row((), False, True, note=message)
    has_kinks = jax.eval_shape(lambda: _kinks.kink_margin(layer, p, x, state=s, key=k, train=train)) is not None
    pattern0 = np.asarray(_pattern(layer, p, x, s, k, train)) if has_kinks else None
    quantities = []
    leaves = jax.tree_util.tree_flatten_with_path(p)[0]
    names = [(f"d{keystr(path).strip('[]').strip(chr(39))}", path) for path, _ in leaves] + [("dx", None)]
    hand_leaves, ref_leaves = jax.tree.leaves(hand_dp) + [hand_dx], jax.tree.leaves(ref_dp) + [ref_dx]
    p_leaves, treedef = jax.tree.flatten(p)
    for q, ((name, _), hand, ref) in enumerate(zip(names, hand_leaves, ref_leaves)):
        if name == "dx":
            hand_cmp, ties = compare_dx(layer, x, hand, ref, dy, rtol, atol)
        else:
            hand_cmp, ties = compare(hand, ref, rtol, atol), 0
        fds, kinks = [], 0
        for j in range(directions):
            u = _unit(jax.random.fold_in(fd_key, q * 1000 + j), np.shape(ref))

            def at(step):
                if name == "dx":
                    return _probe(layer, p, x + step * u, s, k, train, dy, pattern0)
                moved = list(p_leaves)
                moved[q] = moved[q] + step * u
                return _probe(layer, jax.tree.unflatten(treedef, moved), x, s, k, train, dy, pattern0)

            (a, ca), (b, cb), (a2, _), (b2, _) = at(eps), at(-eps), at(2 * eps), at(-2 * eps)
            fd, fd2 = (a - b) / (2 * eps), (a2 - b2) / (4 * eps)
            r, h = float(np.vdot(np.asarray(ref), u)), float(np.vdot(np.asarray(hand), u))
            if ca + cb:
                kinks += 1
                continue
            fds.append((fd, r, h, 4 * abs(fd - fd2)))
        if fds:
            fd_a, ref_a, hand_a, slack = (np.array(c) for c in zip(*fds))
            (fd_cmp, ratio), hand_fd = _fd_compare(fd_a, ref_a, slack, fd_rtol, fd_atol), compare(hand_a, fd_a, fd_rtol,
                                                                                                  fd_atol)
        else:
            fd_cmp, hand_fd, ratio = NOTHING, NOTHING, float("nan")
        quantities.append(QuantityCheck(name, tuple(np.shape(ref)), hand_cmp, fd_cmp, hand_fd, kinks, ties, ratio))
    return row(tuple(quantities), all(q.hand.passed for q in quantities), all(q.fd.passed for q in quantities))


def _loss_row(loss_fn, out, y, eps, tol, directions, fd_key) -> tuple[LayerRow, jax.Array]:
    rtol, atol, fd_rtol, fd_atol = tol
    value = jax.jit(loss_fn.value)
    ref = jax.grad(loss_fn.value)(out, y)
    try:
        hand = loss_fn.derivative(out, y)
        note = ("" if np.shape(hand) == np.shape(ref)
                else f"grad returned shape {np.shape(hand)}, expected {np.shape(ref)}")
    except (TypeError, ValueError) as err:
        hand, note = None, str(err).split("\n")[0]
    label = functools.partial(LayerRow, "loss", loss_fn.name, tuple(out.shape), ())
    if note:
        return label((), False, True, note=note), ref
    fds = []
    for j in range(directions):
        u = _unit(jax.random.fold_in(fd_key, 999_999 - j), out.shape)
        fd = (float(value(out + eps * u, y)) - float(value(out - eps * u, y))) / (2 * eps)
        fd2 = (float(value(out + 2 * eps * u, y)) - float(value(out - 2 * eps * u, y))) / (4 * eps)
        fds.append((fd, float(np.vdot(np.asarray(ref), u)), float(np.vdot(np.asarray(hand), u)), 4 * abs(fd - fd2)))
    fd_a, ref_a, hand_a, slack = (np.array(c) for c in zip(*fds))
    fd_cmp, ratio = _fd_compare(fd_a, ref_a, slack, fd_rtol, fd_atol)
    q = QuantityCheck("dy_pred", tuple(out.shape), compare(hand, ref, rtol, atol), fd_cmp,
                      compare(hand_a, fd_a, fd_rtol, fd_atol), fd_ratio=ratio)
    return label((q,), q.hand.passed, q.fd.passed), ref


def layer_report(
    net: Layer,
    params: Any,
    x: jax.Array,
    y: jax.Array | None = None,
    loss: str | losses_lib.Loss | None = None,
    *,
    state: Any = None,
    key: jax.Array | None = None,
    train: bool = False,
    cotangent: str | None = None,
    directions: int = 2,
    eps: float = 1e-6,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    fd_rtol: float = 1e-6,
    fd_atol: float = 1e-8,
    perturb: float | None = 0.1,
    fd_key: jax.Array | None = None,
) -> LayerReport:
    """Check every layer of `net` on its own at the real intermediate values (module docstring).

    Args:
        net: a `Network` (nested networks are walked into) or a single `Layer`.
        params: its params. x: a batch (batch, *input_shape) of floats.
        y, loss: targets and the loss (name or `jaxnet.losses.Loss`); give both to use the true
            cotangents and to check the loss's gradient, or neither (then `cotangent` is 'random').
        state, key, train: as for `net.apply` (BatchNorm's state; the dropout key, required when
            `train=True` and the network has Dropout; the mode).
        cotangent: 'loss' (default with a loss) or 'random' (N(0, 1) per layer, drawn from `fd_key`).
        directions: random unit directions per quantity (each param leaf and dx), 4 evaluations each.
        eps: finite-difference step. rtol, atol: backward vs jax.vjp. fd_rtol, fd_atol: finite
            differences vs jax.vjp (plus their estimated error).
        perturb: scale of the perturbation of constant params (None or 0: none).
        fd_key: PRNG key of the directions and random cotangents (default `jax.random.key(0)`).

    Returns:
        A `LayerReport`: `rows` (one per layer, then the loss), `passed`, `faulty`, `summary()`,
        `str()` (a table), `to_markdown()`, `figure()`. float64 throughout (params, x, y, state cast).

    Raises:
        TypeError / ValueError naming the argument: net not a Layer; params, state, x or y that do not
            fit; `train=True` without a key for a network with Dropout; y without loss or loss without
            y; an unknown cotangent; non-positive eps, directions or tolerances.
    """
    if not isinstance(net, Layer):
        raise TypeError(f"net: expected a jaxnet Network or Layer, got {type(net).__name__}")
    if (y is None) != (loss is None):
        raise ValueError("loss: give both y and loss (true cotangents and a loss row) or neither (random cotangents)")
    cotangent = cotangent or ("loss" if loss is not None else "random")
    if cotangent not in ("loss", "random") or (cotangent == "loss" and loss is None):
        raise ValueError(f"cotangent: expected 'random', or 'loss' with a loss and targets; got {cotangent!r}")
    check_positive("eps", eps)
    check_positive("directions", directions, integer=True)
    for name, value in (("rtol", rtol), ("atol", atol), ("fd_rtol", fd_rtol), ("fd_atol", fd_atol)):
        check_positive(name, value, allow_zero=True)
    if key is not None:
        check_key("key", key, single=True)
    require_key(net.name, key, bool(train) and net.is_random)
    loss_fn = losses_lib.get(loss) if loss is not None else None
    if loss_fn is not None:
        x, y = check_data(net, params, x, y, loss_fn)
    else:
        x = as_float_array("x", x)
    jax.eval_shape(lambda p, a, s: net.apply(p, a, state=s, key=key, train=train), params, x, state)  # shape checks
    fd_key = jax.random.key(0) if fd_key is None else fd_key
    tol = (rtol, atol, fd_rtol, fd_atol)
    with jax.enable_x64(True):
        p64, x64, s64 = (cast(t, jnp.float64) for t in (params, x, state))
        moved: list[str] = []
        if perturb:
            p64, moved = perturbed(p64, perturb)
        walk = nodes(net, p64, s64, key)
        xs = [x64]
        for node in walk:
            xs.append(_apply(node.layer, node.params, xs[-1], node.state, node.key, bool(train)))
        rows = []
        if loss_fn is not None:
            loss_row, dy = _loss_row(loss_fn, xs[-1], cast(y, jnp.float64), eps, tol, directions, fd_key)
        dys = [None] * len(walk)
        for i in reversed(range(len(walk))):
            node = walk[i]
            if cotangent == "random":
                draw = jax.random.fold_in(jax.random.fold_in(fd_key, 7), i)
                dy = jax.random.normal(draw, xs[i + 1].shape, jnp.float64)
            dys[i] = dy
            dy = _vjp(node.layer, node.params, xs[i], node.state, node.key, bool(train), dy)[1]
        for i, node in enumerate(walk):
            rows.append(_check_node(node, xs[i], xs[i + 1], dys[i], bool(train), directions, eps, tol,
                                    jax.random.fold_in(fd_key, i)))
        if loss_fn is not None:
            rows.append(loss_row)
    tolerances = {"rtol": rtol, "atol": atol, "fd_rtol": fd_rtol, "fd_atol": fd_atol, "eps": eps,
                  "directions": directions, "perturb": perturb or 0.0}
    return LayerReport(net.name, tuple(rows), all(r.passed for r in rows), bool(train), cotangent, tuple(moved),
                       tolerances)

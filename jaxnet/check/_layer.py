"""`check_layer`: one layer's hand-written `backward` against `jax.vjp` of its `apply`.

In float64, with a random dy, at the params given (default: the layer's init params) and, when some
leaves are constant (init values: gamma = 1, beta = 0, zero biases, a Swish's beta = 1), also at a
copy with those leaves perturbed: a backward pass that forgets beta is exactly right at beta = 1.
Max-pool windows with tied maxima are compared by their sums (see `jaxnet.check._report`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnet.check._common import (Comparison, cast, compare, e, markdown_table, perturbed, repr_pretty, to_markdown,
                                  worst)
from jaxnet.check._report import compare_dx
from jaxnet.nn._layer import Layer
from jaxnet.nn.network import _check_backward
from jaxnet.validate import _compare_tree, as_float_array, check_key, check_positive, layer_shapes


class LayerCheckReport(NamedTuple):
    """Result of `check_layer`: one row per gradient (`dparams[...]` leaves, then `dx`), each the
    comparison over every point checked; `perturbed` names the constant leaves also checked perturbed."""

    layer: str
    train: bool
    rows: tuple[tuple[str, tuple[int, ...], Comparison], ...]
    passed: bool
    tolerances: dict
    perturbed: tuple[str, ...] = ()

    def _title(self) -> str:
        mode = "training mode (train=True)" if self.train else "evaluation mode (train=False)"
        return (f"check_layer: {self.layer}.backward vs jax.vjp of {self.layer}.apply, float64, {mode}; "
                f"rtol {self.tolerances['rtol']:g}, atol {self.tolerances['atol']:g}")

    def _perturbed_line(self) -> str:
        return (f"also at perturbed params: constant (init-valued) leaves {', '.join(self.perturbed)} + "
                f"{self.tolerances['perturb']:g} max(1, |p|) N(0, 1)")

    def __str__(self) -> str:
        lines = [self._title()] + (["  " + self._perturbed_line()] if self.perturbed else [])
        lines.append(f"  {'argument':<18}{'shape':<12}{'max abs':>10}{'max rel':>10} {'rule':<8}ok")
        lines += [f"  {name:<18}{str(tuple(shape)):<12}{c.max_abs:>10.2e}{c.max_rel:>10.2e} {c.rule:<8}"
                  f"{'yes' if c.passed else 'NO'}" for name, shape, c in self.rows]
        lines.append("  PASSED" if self.passed else "  FAILED")
        return "\n".join(lines)

    def _markdown(self) -> list[str]:
        rows = [[f"`{name}`", str(tuple(shape)), e(c.max_abs), e(c.max_rel), c.rule, "yes" if c.passed else "**NO**"]
                for name, shape, c in self.rows]
        return ([f"**{self._title()}**", ""] + ([self._perturbed_line(), ""] if self.perturbed else [])
                + markdown_table(["argument", "shape", "max abs", "max rel", "rule", "ok"], rows)
                + ["", "**PASSED**" if self.passed else "**FAILED**"])

    to_markdown = to_markdown
    _repr_markdown_ = to_markdown
    _repr_pretty_ = repr_pretty


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
    perturb: float | None = 0.1,
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
        perturb: also check at a copy of params whose constant leaves (every entry equal: init values)
            get `perturb * max(1, |p|) * N(0, 1)` added (drawn from `jax.random.key(0)`); the rows then
            cover both points. None or 0: only the params given.

    Returns:
        A `LayerCheckReport`; `str(report)` is a table, `report.passed` the verdict,
        `report.to_markdown()` markdown. Like `gradcheck`, a host-side tool: call it eagerly.

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
    if perturb is not None:
        check_positive("perturb", perturb, allow_zero=True)
    with jax.enable_x64(True):  # also lets layers with float64 params initialise them
        if params is None:
            params = layer.init(jax.random.key(0), in_shape)[1]
        _compare_tree("params", f"the params of {layer.name} for input shape {in_shape}",
                      layer_shapes(layer, in_shape)[1], params)
        if state is None:
            state = layer.init_state(in_shape)
        _compare_tree("state", f"the state of {layer.name} (layer.init_state)",
                      jax.eval_shape(lambda: layer.init_state(in_shape)), state)
        p64, x64, s64 = (cast(t, jnp.float64) for t in (params, x, state))
        points, moved = [p64], []
        if perturb:
            p_moved, moved = perturbed(p64, perturb)
            points += [p_moved] if moved else []
        got, ref, dx_cmps = [], [], []
        for p in points:
            y, vjp = jax.vjp(lambda p, inp: layer.apply(p, inp, state=s64, key=key, train=train), p, x64)
            dy = jax.random.normal(jax.random.key(1), jnp.shape(y), jnp.float64)
            ref_dparams, ref_dx = vjp(dy)
            out = layer.backward(p, x64, y, dy, state=s64, key=key, train=train)
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise TypeError(f"{layer.name}.backward: expected a pair (dparams, dx), got {type(out).__name__}")
            dparams, dx = out
            _check_backward(layer, None, p, dparams, x64, dx)
            got.append(jax.tree.leaves(dparams))
            ref.append(jax.tree.leaves(ref_dparams))
            dx_cmps.append(compare_dx(layer, x64, dx, ref_dx, dy, rtol, atol)[0])
    paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(ref_dparams)[0]]
    rows = [(f"dparams{path}", tuple(np.shape(ref[0][k])),
             compare(np.concatenate([np.ravel(g[k]) for g in got]), np.concatenate([np.ravel(r[k]) for r in ref]),
                     rtol, atol))
            for k, path in enumerate(paths)]
    rows.append(("dx", tuple(x.shape), worst(dx_cmps)))
    return LayerCheckReport(layer.name, bool(train), tuple(rows), all(c.passed for _, _, c in rows),
                            {"rtol": rtol, "atol": atol, "perturb": perturb or 0.0}, tuple(moved))

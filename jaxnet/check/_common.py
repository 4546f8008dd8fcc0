"""Shared pieces of the checks: comparisons with tolerances, float64 casting, perturbation of
constant params, the network walked into its layers, and report formatting (text, markdown).

Tolerances, per element as `numpy.isclose`: |a - b| <= atol + rtol |b|, b the reference.
"""

from __future__ import annotations

from typing import Any, NamedTuple
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnet.nn._layer import Layer
from jaxnet.nn.network import Network

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


NOTHING = Comparison(0.0, 0.0, "n/a", True)
FAILED = Comparison(float("inf"), float("inf"), "-", False)


def compare(a, b, rtol: float, atol: float) -> Comparison:
    """`Comparison` of a against the reference b (flattened, float64)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.size == 0:
        return NOTHING
    diff = np.abs(a - b)
    diff = np.where(np.isnan(diff), np.inf, diff)
    scale = np.maximum(np.abs(a), np.abs(b))
    rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
    rel = np.where(np.isinf(diff), np.inf, rel)
    if np.all(diff <= rtol * np.abs(b)):
        rule = "rel"
    elif np.all(diff <= atol):
        rule = "abs"
    elif np.all(diff <= atol + rtol * np.abs(b)):
        rule = "abs+rel"
    else:
        rule = "-"
    return Comparison(float(np.max(diff)), float(np.max(rel)), rule, rule != "-")


def worst(comparisons: Sequence[Comparison]) -> Comparison:
    """The comparisons taken together: the largest errors, and the weakest rule that passed all."""
    comparisons = [c for c in comparisons if c.rule != "n/a"]
    if not comparisons:
        return NOTHING
    order = ["rel", "abs", "abs+rel", "-"]
    rule = max((c.rule for c in comparisons), key=order.index)
    if rule == "rel" or rule == "abs":  # 'rel' for one and 'abs' for another: only the sum holds for both
        rule = "abs+rel" if len({c.rule for c in comparisons}) > 1 else rule
    return Comparison(max(c.max_abs for c in comparisons), max(c.max_rel for c in comparisons), rule,
                      all(c.passed for c in comparisons))


def cast(tree, dtype):
    """Floating leaves of `tree` cast to `dtype`; other leaves (integer labels, PRNG keys) unchanged."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)
                        else a, jax.tree.map(jnp.asarray, tree))


def keystr(path) -> str:
    return jax.tree_util.keystr(tuple(path))


# ----------------------------------------------------------------------------------------------
# Params at their init values
# ----------------------------------------------------------------------------------------------


def constant_leaves(params) -> list[str]:
    """Paths of the leaves whose entries are all equal (gamma = 1, beta = 0, zero biases, a Swish's
    beta = 1): the init values at which some wrong backward passes are exactly right. A leaf of one
    entry counts only when it is 0 or +-1."""
    found = []
    for path, a in jax.tree_util.tree_flatten_with_path(params)[0]:
        a = np.asarray(a)
        if a.size == 0 or not np.issubdtype(a.dtype, np.floating):
            continue
        first = a.reshape(-1)[0]
        if np.all(a == first) and (a.size > 1 or first in (0.0, 1.0, -1.0)):
            found.append(keystr(path))
    return found


def perturbed(params, scale: float, key: jax.Array | None = None):
    """`params` with every constant leaf (`constant_leaves`) moved off its init value: entry-wise
    `a + scale * max(1, |a|) * N(0, 1)`, drawn from `key` (default `jax.random.key(0)`) folded with the
    leaf's index. Returns `(params, paths of the perturbed leaves)`."""
    paths = set(constant_leaves(params))
    key = jax.random.key(0) if key is None else key
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    out = []
    for i, (path, a) in enumerate(leaves):
        if keystr(path) in paths:
            a = jnp.asarray(a)
            noise = jax.random.normal(jax.random.fold_in(key, i), a.shape, a.dtype)
            a = a + jnp.asarray(scale, a.dtype) * jnp.maximum(1, jnp.abs(a)) * noise
        out.append(a)
    return jax.tree_util.tree_unflatten(treedef, out), [keystr(p) for p, _ in leaves if keystr(p) in paths]


# ----------------------------------------------------------------------------------------------
# A network walked into its layers
# ----------------------------------------------------------------------------------------------


class Node(NamedTuple):
    """One layer of a network, nested networks walked into: its position `path` ((3, 1) is layer 1
    of the network at layer 3), the layer, and the params, state and key it gets in `Network.forward`."""

    path: tuple[int, ...]
    layer: Layer
    params: Any
    state: Any
    key: Any

    @property
    def label(self) -> str:
        return ".".join(map(str, self.path))


def nodes(net: Layer, params, state=None, key=None, prefix: tuple[int, ...] = ()) -> list[Node]:
    """The layers of `net` in forward order, nested `Network`s walked into (a layer that is not a
    `Network` is one node). The keys and state entries are those `Network.forward` hands each layer
    (`fold_in(key, i)` at every level), so applying the nodes in order is `net.apply`."""
    if not isinstance(net, Network):
        return [Node(prefix or (0,), net, params, state, key)]
    out = []
    for i, layer in enumerate(net.layers):
        k = None if key is None else jax.random.fold_in(key, i)
        s = None if state is None else state[i]
        if isinstance(layer, Network):
            out += nodes(layer, params[i], s, k, prefix + (i,))
        else:
            out.append(Node(prefix + (i,), layer, params[i], s, k))
    return out


# ----------------------------------------------------------------------------------------------
# Reports: text tables, markdown, notebook display
# ----------------------------------------------------------------------------------------------


def table(header: Sequence[str], rows: Sequence[Sequence[str]], *, indent: str = "  ",
          right: Callable[[int], bool] = lambda j: False) -> list[str]:
    """Lines of a plain-text table: columns as wide as their widest cell, two spaces apart."""
    widths = [max(len(str(r[j])) for r in [header, *rows]) for j in range(len(header))]
    def line(r):
        cells = [str(c).rjust(w) if right(j) else str(c).ljust(w) for j, (c, w) in enumerate(zip(r, widths))]
        return (indent + "  ".join(cells)).rstrip()
    return [line(header)] + [line(r) for r in rows]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a markdown (GitHub) table; '|' in cells escaped."""
    esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    return (["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(map(esc, r)) + " |" for r in rows])


def e(value: float) -> str:
    """A float in the tables' format (2 significant digits, exponent)."""
    return f"{value:.2e}"


def to_markdown(self) -> str:
    """The report as markdown: a title line, a table, and the verdict (`_markdown()` lines)."""
    return "\n".join(self._markdown())


def repr_pretty(self, printer, cycle) -> None:
    """IPython's terminal display: the printed table."""
    printer.text(type(self).__name__ + "(...)" if cycle else str(self))


# Reports (NamedTuples) set `to_markdown = to_markdown`, `_repr_markdown_ = to_markdown` and
# `_repr_pretty_ = repr_pretty`: a report in a Jupyter cell shows its markdown table, in the IPython
# terminal its text table, instead of a long NamedTuple repr; `str(report)` is the printed table.

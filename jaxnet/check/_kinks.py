"""Kinks: where a layer's output is not differentiable, and how to see a finite-difference stencil
cross one.

A layer with kinks computes a piecewise function; which piece applies is a discrete *pattern* of its
input, and a *margin* says how far the input is from the next piece (it is 0 on the kink):

| layer                         | pattern                            | margin                                |
|-------------------------------|------------------------------------|---------------------------------------|
| `Relu`                        | x > 0 (the mask of relu'(x))       | x                                     |
| `MaxPool2D`                   | argmax of each window              | largest minus second-largest entry    |
| a layer with `kink_margin`    | margin > 0                         | `kink_margin(params, x, *, state, ...)` |

A central difference (f(v + eps e) - f(v - eps e)) / 2 eps is a valid check of the derivative only
when f is smooth on the whole stencil. When the pattern of *any* layer of the network at v + eps e or
v - eps e differs from its pattern at v, the stencil crossed a kink somewhere in the network (in
training-mode BatchNorm, a change of one weight moves every example of its unit, so the kink can be
far from the coordinate's own pre-activation), and the difference is not a check: the coordinate is
reported as a kink, with the layer and the element whose pattern changed.

Your own layer with a kink (a leaky ReLU, a clipped function) can declare it with a method
`kink_margin(params, x, *, state=None, key=None, train=False)` returning an array whose sign changes
exactly where its derivative jumps (for a leaky ReLU: `x`). Without it, `gradcheck` still finds a
kink whose stencil fails, by one-sided differences of every layer's output (`jaxnet.check._fd`), when
the kink is nearer than about eps / 4.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxnet.check._common import nodes
from jaxnet.nn.activations import ActivationLayer
from jaxnet.nn.pool import MaxPool2D


def kink_margin(layer, params, x, *, state=None, key=None, train=False):
    """`(pattern, margin)` of a layer with kinks at its input x (table in the module docstring), or
    None for a layer without kinks (or one that does not declare them)."""
    if isinstance(layer, ActivationLayer) and layer.activation == "relu":
        return x > 0, x
    if isinstance(layer, MaxPool2D):
        windows = layer._windows(x)
        if windows.shape[-1] < 2:
            return None
        top = lax.top_k(windows, 2)[0]
        return jnp.argmax(windows, axis=-1), top[..., 0] - top[..., 1]
    hook = getattr(layer, "kink_margin", None)
    if callable(hook):
        margin = hook(params, x, state=state, key=key, train=train)
        return margin > 0, margin
    return None


def _what(layer) -> str:
    if isinstance(layer, MaxPool2D):
        return "window gap (largest - second largest)"
    if isinstance(layer, ActivationLayer):
        return "input"
    return "kink margin"


def forward_with_kinks(net, params, x, *, state=None, key=None, train=False):
    """`(output, patterns, margins)`: the network's output (as `net.apply`) and, concatenated over
    every layer with kinks (nested networks walked into), the flat int32 pattern and the flat margin."""
    patterns, margins = [], []
    out = x
    for node in nodes(net, params, state, key):
        k = kink_margin(node.layer, node.params, out, state=node.state, key=node.key, train=train)
        if k is not None:
            patterns.append(jnp.ravel(k[0]).astype(jnp.int32))
            margins.append(jnp.ravel(k[1]).astype(out.dtype))
        out = node.layer.apply(node.params, out, state=node.state, key=node.key, train=train)
    if not patterns:
        return out, jnp.zeros((0,), jnp.int32), jnp.zeros((0,), out.dtype)
    return out, jnp.concatenate(patterns), jnp.concatenate(margins)


class KinkSite(NamedTuple):
    """A block of the flat margin vector: layer `label` (`name`), what its margin is, its shape, offset."""

    label: str
    name: str
    what: str
    shape: tuple[int, ...]
    offset: int


def kink_sites(net, params, x, *, state=None, key=None, train=False) -> list[KinkSite]:
    """Where each layer's block sits in the flat pattern and margin vectors of `forward_with_kinks`."""
    sites, offset, out = [], 0, x
    for node in nodes(net, params, state, key):
        k = jax.eval_shape(lambda p, a, s, kk: kink_margin(node.layer, p, a, state=s, key=kk, train=train),
                           node.params, out, node.state, node.key)
        if k is not None:
            shape = tuple(k[1].shape)
            sites.append(KinkSite(node.label, node.layer.name, _what(node.layer), shape, offset))
            offset += int(np.prod(shape))
        out = jax.eval_shape(lambda p, a, s, kk: node.layer.apply(p, a, state=s, key=kk, train=train),
                             node.params, out, node.state, node.key)
    return sites


def describe(sites: list[KinkSite], flat_index: int, margin: float) -> str:
    """'layer 2 (relu) input [17, 67] = 2.0e-07' for an entry of the flat margin vector."""
    for site in sites:
        size = int(np.prod(site.shape))
        if site.offset <= flat_index < site.offset + size:
            index = np.unravel_index(flat_index - site.offset, site.shape)
            return f"layer {site.label} ({site.name}) {site.what} [{', '.join(map(str, index))}] = {margin:.1e}"
    return f"kink margin entry {flat_index} = {margin:.1e}"


def nearest_kink(sites: list[KinkSite], m0: np.ndarray, m_up: np.ndarray, m_down: np.ndarray, eps: float) -> str:
    """The kink nearest to the point along a stencil of half-width eps: the margin entry m whose
    linear extrapolation |m0| / |dm/dt| reaches 0 first (dm/dt from the margins at both ends), as
    '... at 0.3 eps' (below 1: the stencil crossed it). '' when there are no kinks in the network."""
    if m0.size == 0:
        return ""
    slope = np.abs(m_up - m_down) / (2 * eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = np.where(slope > 0, np.abs(m0) / slope, np.inf)  # an entry that does not move is never reached
    j = int(np.argmin(distance))
    if not np.isfinite(distance[j]):
        return "no kink moves along this stencil"
    return f"{describe(sites, j, float(m0[j]))}, reached at {distance[j] / eps:.2g} eps"


def crossed(p0: Any, p_other: Any) -> jax.Array:
    """Number of pattern entries that differ (compiled with the evaluations that produce them)."""
    return jnp.sum(p0 != p_other)

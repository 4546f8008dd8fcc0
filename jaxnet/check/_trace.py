"""The delta equations, traced: the tutorial's backward pass on a small network, every intermediate
it names beside its `jax.grad` counterpart.

For an mlp (Dense layers, each followed by an activation layer or by none), with a_0 = x:

    forward:   z_l = a_{l-1} W_l + b_l,          a_l = f_l(z_l)                    l = 1..L
    backward:  delta_L = loss'(a_L, y) * f_L'(z_L)                                  (BP1)
               delta_l = (delta_{l+1} W_{l+1}^T) * f_l'(z_l)                        (BP2)
               dW_l = a_{l-1}^T delta_l,         db_l = sum over the batch of delta_l  (BP3, BP4)

(`*` elementwise; a softmax output layer uses its vector-Jacobian product instead of `* f'`).
delta_l is dL/dz_l, the gradient of the *mean* loss, so it carries the loss's 1/m; the tutorial then
divides dW and db by m once more (its "gradients" are these / m; README, "Differences from the
tutorial"). The hand values come from these equations, written here with jaxnet's activation
derivatives and the loss's `grad`; each is compared with `jax.grad` of the loss with respect to that
quantity (z_l, a_l through zero offsets added in the forward pass, W_l and b_l directly), in float64.

Source: Nielsen, *Neural Networks and Deep Learning*, ch. 2 (BP1-BP4); Deep Learning from Scratch 5.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnet import activations as act
from jaxnet import losses as losses_lib
from jaxnet.check._common import NOTHING, Comparison, cast, compare, repr_pretty, to_markdown
from jaxnet.nn.activations import ActivationLayer
from jaxnet.nn.dense import Dense
from jaxnet.nn.network import Network
from jaxnet.validate import check_data


class TraceEntry(NamedTuple):
    """One quantity: its symbol ('delta2'), the equation that gives it, the hand value, the `jax.grad`
    counterpart (None for forward values) and their comparison (rtol 1e-10, atol 1e-12)."""

    symbol: str
    equation: str
    value: np.ndarray
    reference: np.ndarray | None
    check: Comparison


class DeltaTrace(NamedTuple):
    """Result of `trace_deltas`: `entries` in the order the tutorial computes them; `trace["delta1"]`
    is a value; `str(trace)` prints the equations with the values; `figure()` draws the network."""

    network: str
    loss: str
    entries: tuple[TraceEntry, ...]
    activations: tuple[str, ...]
    loss_value: float
    passed: bool

    def __getitem__(self, symbol):
        if isinstance(symbol, int):
            return tuple.__getitem__(self, symbol)
        for entry in self.entries:
            if entry.symbol == symbol:
                return entry.value
        raise KeyError(f"symbol: no {symbol!r} in the trace; it has {[e.symbol for e in self.entries]}")

    @property
    def layers(self) -> int:
        return len(self.activations)

    def _lines(self, values: bool) -> list[str]:
        m = self["a0"].shape[0]
        lines = [f"delta trace of {self.network}, loss {self.loss}, batch m = {m}, float64",
                 "forward:"]
        for entry in self.entries:
            if entry.symbol.startswith("dL/da") and entry.symbol.endswith(str(self.layers)):
                lines.append(f"  L = {self.loss}(a{self.layers}, y) = {self.loss_value:.6g}")
                lines.append("backward (hand, by the delta equations | jax.grad):")
            head = f"  {entry.symbol + ' = ' + entry.equation:<40}{str(entry.value.shape):<9}"
            if entry.reference is not None:
                head += f"max |hand - jax.grad| {entry.check.max_abs:.1e}" + ("" if entry.check.passed else "  WRONG")
            lines.append(head.rstrip())
            if values:
                lines += _side_by_side(entry.value, entry.reference)
        lines.append(f"  (the tutorial divides dW and db by m = {m} once more: its dW{self.layers} is "
                     f"a{self.layers - 1}^T delta{self.layers} / m)")
        lines.append("  PASSED: every quantity equals jax.grad's" if self.passed else "  FAILED")
        return lines

    def __str__(self) -> str:
        return "\n".join(self._lines(values=True))

    def _markdown(self) -> list[str]:
        return ["```text"] + self._lines(values=True) + ["```"]

    to_markdown = to_markdown
    _repr_markdown_ = to_markdown
    _repr_pretty_ = repr_pretty

    def figure(self, examples: int | None = None):
        """The network's graph, one panel per example (nodes: a and delta of that example; edges: its
        share a_i delta_j of dW) and one for the batch (edges: dW; nodes: db). Returns the Figure."""
        from jaxnet.check._figures import delta_trace_figure

        return delta_trace_figure(self, examples)


def _fmt(a) -> list[str]:
    a = np.asarray(a)
    return np.array2string(a, precision=4, suppress_small=False, max_line_width=60,
                           formatter={"float_kind": lambda v: f"{v: .4e}"}).splitlines()


def _side_by_side(value, reference) -> list[str]:
    left = _fmt(value)
    if reference is None:
        return ["      " + line for line in left]
    right = _fmt(reference)
    width = max(len(line) for line in left)
    rows = max(len(left), len(right))
    left += [""] * (rows - len(left))
    right += [""] * (rows - len(right))
    return ["      " + a.ljust(width) + "  |  " + b for a, b in zip(left, right)]


def _layers(net) -> list[tuple[int, int | None, str]]:
    """[(index of the Dense, index of its activation or None, activation name)] of an mlp-like network."""
    if not isinstance(net, Network):
        raise TypeError(f"net: expected a jaxnet Network (an mlp), got {type(net).__name__}")
    out, i, layers = [], 0, net.layers
    while i < len(layers):
        if not isinstance(layers[i], Dense) or type(layers[i]).backward is not Dense.backward:
            raise ValueError(f"net: trace_deltas follows the tutorial's equations, for Dense layers each followed by "
                             f"an activation layer (an mlp); layer {i} is {layers[i].name}")
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(nxt, ActivationLayer) and type(nxt) is ActivationLayer:
            out.append((i, i + 1, nxt.activation))
            i += 2
        else:
            out.append((i, None, "identity"))
            i += 1
    return out


def _f(name, z):
    return act.softmax(z) if name == "softmax" else act.ACTIVATIONS[name].fn(z)


def _back(name, z, da):
    """delta = dL/dz from dL/da: da * f'(z), or the softmax vector-Jacobian product."""
    return act.softmax_vjp(z, da) if name == "softmax" else da * act.ACTIVATIONS[name].derivative(z)


def trace_deltas(net: Network, params: Any, x: jax.Array, y: jax.Array, loss: str | losses_lib.Loss) -> DeltaTrace:
    """Run the tutorial's backward pass on `net` and return every intermediate beside `jax.grad`'s.

    Args:
        net: an mlp-like `Network`: Dense layers, each followed by an activation layer ('sigmoid',
            'relu', 'tanh', 'identity', 'softmax') or by none.
        params: its params. x: inputs (m, n_in). y: targets for `loss`.
        loss: a loss name or `jaxnet.losses.Loss`.

    Returns:
        A `DeltaTrace`: entries a0; z_l, a_l (forward); dL/da_L, delta_l, dW_l, db_l, dL/da_{l-1}
        (backward), each with its value, its `jax.grad` counterpart and their comparison; `passed`.
        `trace["delta1"]` gives a value. float64 throughout.

    Raises:
        TypeError / ValueError naming the argument: a network that is not Dense + activation layers;
            params or data that do not fit (as `jaxnet.backprop`).

    >>> import jax, jaxnet
    >>> net = jaxnet.mlp([2, 4, 1])
    >>> x, y = jaxnet.data.xor()
    >>> trace = jaxnet.check.trace_deltas(net, net.init(jax.random.key(0))[1], x, y, "mse")
    >>> trace.passed, trace["delta2"].shape, trace["dW1"].shape
    (True, (4, 1), (2, 4))
    """
    structure = _layers(net)
    loss_fn = losses_lib.get(loss)
    x, y = check_data(net, params, x, y, loss_fn)
    with jax.enable_x64(True):
        p, x64, y = cast(params, jnp.float64), cast(x, jnp.float64), cast(y, jnp.float64)
        Ws = [p[d]["W"] for d, _, _ in structure]
        bs = [p[d]["b"] for d, _, _ in structure]
        names = [name for _, _, name in structure]
        L = len(structure)

        def forward(Ws, bs, offsets):
            a, zs, acts = x64, [], [x64]
            for l in range(L):
                z = a @ Ws[l] + bs[l] + offsets[0][l]
                a = _f(names[l], z) + offsets[1][l]
                zs.append(z)
                acts.append(a)
            return zs, acts

        zeros = ([jnp.zeros((x64.shape[0], W.shape[1])) for W in Ws],) * 2
        zs, acts = forward(Ws, bs, zeros)
        objective = lambda Ws, bs, off: loss_fn.value(forward(Ws, bs, off)[1][-1], y)  # noqa: E731
        loss_value = float(objective(Ws, bs, zeros))
        gW, gb, (gz, ga) = jax.grad(objective, argnums=(0, 1, 2))(Ws, bs, zeros)
        entries = [("a0", "x", x64, None)]
        for l in range(L):
            entries += [(f"z{l + 1}", f"a{l} W{l + 1} + b{l + 1}", zs[l], None),
                        (f"a{l + 1}", f"{names[l]}(z{l + 1})", acts[l + 1], None)]
        da = loss_fn.derivative(acts[-1], y)
        entries.append((f"dL/da{L}", f"{loss_fn.name}'(a{L}, y)", da, ga[-1]))
        for l in reversed(range(L)):
            n = l + 1
            delta = _back(names[l], zs[l], da)
            rule = (f"softmax_vjp(z{n}, dL/da{n})" if names[l] == "softmax" else f"dL/da{n} * {names[l]}'(z{n})")
            entries += [(f"delta{n}", rule, delta, gz[l]), (f"dW{n}", f"a{l}^T delta{n}", acts[l].T @ delta, gW[l]),
                        (f"db{n}", f"sum_rows delta{n}", jnp.sum(delta, axis=0), gb[l])]
            if l:
                da = delta @ Ws[l].T
                entries.append((f"dL/da{l}", f"delta{n} W{n}^T", da, ga[l - 1]))
        out = tuple(TraceEntry(s, eq, np.asarray(v), None if r is None else np.asarray(r),
                               NOTHING if r is None else compare(v, r, 1e-10, 1e-12)) for s, eq, v, r in entries)
    return DeltaTrace(net.name, loss_fn.name, out, tuple(names), loss_value, all(e.check.passed for e in out))

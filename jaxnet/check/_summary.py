"""`summary(net, input_shape)`: a network's layers with their output shapes, parameter counts and
multiply-adds per example, as Keras' `model.summary()` and Flax's `nnx.tabulate` print them.

Multiply-adds count the matrix products, the work that dominates: Dense `n_in * n_out`, Conv2D
`C * FH * FW` per output value, i.e. `C FH FW * FN OH OW` (the im2col product, Deep Learning from
Scratch 7.4). Elementwise work (bias additions, activations, BatchNorm's scale and shift, pooling,
dropout) is O(outputs), small next to the products, and counts 0. A layer of your own can say its
count with a method `multiply_adds(input_shape) -> int`. Nothing is computed: shapes come from
`jax.eval_shape` of `init`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import numpy as np

from jaxnet.check._common import markdown_table, nodes, repr_pretty, table, to_markdown
from jaxnet.nn._layer import Layer
from jaxnet.nn.conv import Conv2D
from jaxnet.nn.dense import Dense
from jaxnet.validate import layer_shapes


class SummaryRow(NamedTuple):
    """One layer: `label` (its place; '3.1' inside a nested network), name, output shape (without the
    batch axis), number of params, their bytes, and multiply-adds per example."""

    label: str
    name: str
    output_shape: tuple[int, ...]
    params: int
    bytes: int
    multiply_adds: int


class Summary(NamedTuple):
    """Result of `summary`: rows and totals; prints as a table, `to_markdown()`, notebook display."""

    network: str
    input_shape: tuple[int, ...]
    rows: tuple[SummaryRow, ...]

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def total_bytes(self) -> int:
        return sum(r.bytes for r in self.rows)

    @property
    def total_multiply_adds(self) -> int:
        return sum(r.multiply_adds for r in self.rows)

    def _cells(self):
        return [[r.label, r.name, str(r.output_shape), f"{r.params:,}", f"{r.multiply_adds:,}"] for r in self.rows]

    _columns = ["#", "layer", "output shape", "params", "multiply-adds"]

    def _totals(self) -> str:
        size = next(f"{self.total_bytes / 2**k:.{0 if k == 0 else 2}f} {unit}"
                    for k, unit in ((20, "MiB"), (10, "KiB"), (0, "B")) if self.total_bytes >= 2**k or k == 0)
        return (f"total: {self.total_params:,} params ({size}), "
                f"{self.total_multiply_adds:,} multiply-adds per example")

    def __str__(self) -> str:
        lines = [f"summary of {self.network}, input {self.input_shape} (+ batch axis)"]
        lines += table(self._columns, self._cells(), right=lambda j: j >= 3)
        return "\n".join(lines + ["  " + self._totals()])

    def _markdown(self) -> list[str]:
        return ([f"**summary of {self.network}, input {self.input_shape} (+ batch axis)**", ""]
                + markdown_table(self._columns, self._cells()) + ["", self._totals()])

    to_markdown = to_markdown
    _repr_markdown_ = to_markdown
    _repr_pretty_ = repr_pretty


def multiply_adds(layer: Layer, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one example through `layer` (module docstring): Dense `n_in n_out`, Conv2D
    `C FH FW FN OH OW`, a layer's own `multiply_adds(input_shape)`, else 0."""
    if isinstance(layer, Dense):
        return int(input_shape[-1]) * layer.n_out
    if isinstance(layer, Conv2D):
        fh, fw = layer.kernel_size
        return int(input_shape[0]) * fh * fw * math.prod(output_shape)
    own = getattr(layer, "multiply_adds", None)
    return int(own(tuple(input_shape))) if callable(own) else 0


def summary(net: Layer, input_shape=None) -> Summary:
    """A table of `net`'s layers (nested networks walked into): output shape, params, multiply-adds.

    Args:
        net: a `Network` (or any `Layer`).
        input_shape: one example's shape without the batch axis, e.g. (1, 28, 28); default the
            network's own `input_shape`.

    Returns:
        A `Summary` (`rows`, `total_params`, `total_bytes`, `total_multiply_adds`); `print` it for
        the table, `to_markdown()` for markdown.

    Raises:
        TypeError: net not a Layer. ValueError: no input shape, or one the layers do not fit (naming
            the layer, as `net.init` does).

    >>> import jaxnet
    >>> s = jaxnet.mlp([784, 100, 10]).summary()
    >>> s.total_params, s.total_multiply_adds
    (79510, 79400)
    """
    if not isinstance(net, Layer):
        raise TypeError(f"net: expected a jaxnet Network or Layer, got {type(net).__name__}")
    shape = getattr(net, "input_shape", None) if input_shape is None else tuple(int(d) for d in input_shape)
    if shape is None:
        raise ValueError("input_shape: this network has no default input shape; pass one, e.g. (1, 28, 28)")
    _, params = layer_shapes(net, tuple(shape))
    rows = []
    current = tuple(shape)
    for node in nodes(net, params, None, None):
        out, _ = layer_shapes(node.layer, current)
        leaves = jax.tree.leaves(node.params)
        rows.append(SummaryRow(node.label, node.layer.name, tuple(out), sum(int(np.prod(a.shape)) for a in leaves),
                               sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in leaves),
                               multiply_adds(node.layer, current, tuple(out))))
        current = tuple(out)
    return Summary(net.name, tuple(shape), tuple(rows))

"""Checking hand-derived gradients, and seeing them: the tools users come to jaxnet for.

- `gradcheck(net, params, x, y, loss, ...)`: a network's gradient route (the hand-derived `backprop`
  by default) against `jax.grad` and finite differences in float64, coordinate by coordinate or along
  random unit directions (`fd='directions'`, for large networks); kinks anywhere in the network are
  recognised; a failure names the faulty layer. Also `jaxnet.gradcheck`.
- `check_layer(layer, x, ...)`: one layer's `backward` against `jax.vjp` of its `apply`. Also
  `jaxnet.check_layer`.
- `layer_report(net, params, x, y, loss, ...)`: every layer checked on its own at the real
  intermediate values of one forward pass, against `jax.vjp` and finite differences: a table, markdown
  and a figure, naming the first wrong layer.
- `gradgradcheck(net, params, x, y, loss, ...)`: second order, Hessian-vector products of the
  hand-derived gradient against those of `jax.grad` and finite differences of the gradient.
- `trace_deltas(net, params, x, y, loss)`: the tutorial's backward pass on a small network, every
  z, a, delta, dW, db beside its `jax.grad` / `jax.vjp` counterpart, printed in the tutorial's notation,
  with a figure on the network's graph.
- `summary(net, input_shape)`: layer, output shape, params and multiply-adds per example (also
  `net.summary(input_shape)`).
- `jaxnet.check.zoo`: real backprop mistakes, each a small buggy layer or route, that the checks catch
  (docs/bug_zoo.md).

Every report prints as a table (`str`), converts to markdown (`to_markdown()`) and shows as a table
in a Jupyter cell. float64 throughout (`jax.enable_x64` inside; the caller's setting is untouched).
"""

from jaxnet.check._common import Comparison
from jaxnet.check._gradcheck import GradcheckReport, LeafCheck, gradcheck
from jaxnet.check._layer import LayerCheckReport, check_layer
from jaxnet.check._report import LayerReport, LayerRow, QuantityCheck, layer_report
from jaxnet.check._second import GradgradReport, HvpLeaf, gradgradcheck
from jaxnet.check._summary import Summary, SummaryRow, summary
from jaxnet.check._trace import DeltaTrace, TraceEntry, trace_deltas

__all__ = ["gradcheck", "check_layer", "layer_report", "gradgradcheck", "trace_deltas", "summary",
           "GradcheckReport", "LeafCheck", "LayerCheckReport", "LayerReport", "LayerRow", "QuantityCheck",
           "GradgradReport", "HvpLeaf", "DeltaTrace", "TraceEntry", "Summary", "SummaryRow", "Comparison"]

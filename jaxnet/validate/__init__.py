"""Eager argument checks shared by the public API.

Every check runs in Python before any tracing. Values that are jax tracers (inside `jit`, `vmap`,
`grad`...) are not concrete, so only their shapes and dtypes are checked; value checks (ranges,
finiteness) are skipped for them. Checks therefore cost nothing inside compiled code and never break
a transformation.

Messages start with the argument's name, then give the expected and the received value or shape
(`x: expected shape (n, 2) for mlp[2, 3, 1], ..., got (4, 3)`). Params are checked against a network
by running each layer's `init` under `jax.eval_shape` (shapes only, cached per layer and input shape).

The checks live in three modules: `_arrays` (arrays, scalars, keys, pytrees), `_network` (params
and inputs against a network), `_targets` (targets against a loss, `check_data`).
"""

from __future__ import annotations

from jaxnet.validate._arrays import (
    all_finite, as_array, as_float_array, check_finite, check_finite_tree, check_key, check_ndim,
    check_positive, choose, is_concrete,
)
from jaxnet.validate._network import (
    _compare_tree, check_batch_statistics, check_input_dtype, check_network_input, check_params, float_dtype_of,
    layer_shapes, shape_hint,
)
from jaxnet.validate._targets import check_data, check_output_pairing, check_targets

__all__ = [
    "all_finite", "as_array", "as_float_array", "check_finite", "check_finite_tree", "check_key", "check_ndim",
    "check_positive", "choose", "is_concrete",
    "check_batch_statistics", "check_input_dtype", "check_network_input", "check_params", "float_dtype_of",
    "layer_shapes", "shape_hint",
    "check_data", "check_output_pairing", "check_targets",
    "_compare_tree",  # shared with jaxnet.nn and jaxnet.check
]

"""The fully connected (affine) layer, with its hand-derived backward pass.

Source: Deep Learning from Scratch 5.6.2 (the Affine layer).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxnet import initializers
from jaxnet.nn._checks import canonical_dtype
from jaxnet.nn._layer import Layer, as_shape
from jaxnet.validate import check_positive


@dataclasses.dataclass(frozen=True)
class Dense(Layer):
    """A fully connected (affine) layer `y = x W + b`.

    Params: `{"W": (n_in, n_out), "b": (n_out,)}` of `dtype` (float32 by default).
    Shapes: x (n_in,) or (batch, n_in) -> y (n_out,) or (batch, n_out); y has the params' dtype.
    Backward: `dW = x^T dy`, `db = sum over the batch of dy`, `dx = dy W^T`.
    Weight decay applies to W, not b (the layers' shape rule, `jaxnet.nn._layer`).

    Args:
        n_out: number of output units (a positive int).
        W_init: weight initialiser name ('he_normal', 'xavier_normal', ...) or function
            `init(key, shape, dtype)`; default 'he_normal' (what the tutorial calls "Xavier").
        b_init: bias initialiser, default 'zeros'.
        dtype: floating parameter dtype.

    Raises:
        ValueError: n_out not a positive int; unknown initialiser name; at init, an input shape that is
            not (n_in,) with n_in >= 1 (flatten first). TypeError: a non-floating dtype.
    """

    n_out: int
    W_init: str | Callable = dataclasses.field(default="he_normal", kw_only=True)
    b_init: str | Callable = dataclasses.field(default="zeros", kw_only=True)
    dtype: Any = dataclasses.field(default=jnp.float32, kw_only=True)

    def __post_init__(self):
        check_positive("n_out", self.n_out, integer=True)
        object.__setattr__(self, "n_out", int(self.n_out))
        initializers.get(self.W_init)
        initializers.get(self.b_init)
        object.__setattr__(self, "dtype", canonical_dtype("dtype", self.dtype))

    @property
    def name(self) -> str:
        return f"Dense({self.n_out})"

    def init(self, key, input_shape):
        shape = as_shape("input_shape", input_shape)
        if len(shape) != 1 or shape[0] < 1:
            raise ValueError(f"input_shape: Dense expected a 1-D input shape (n_in,) with n_in >= 1, got {shape}; "
                             f"put a Flatten layer before it")
        k_w, k_b = jax.random.split(key)
        w_init, bias_init = initializers.get(self.W_init), initializers.get(self.b_init)
        return (self.n_out,), {"W": w_init(k_w, (shape[0], self.n_out), self.dtype),
                               "b": bias_init(k_b, (self.n_out,), self.dtype)}

    def apply(self, params, x, *, state=None, key=None, train=False):
        del state, key, train
        return x @ params["W"] + params["b"]

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        del y, state, key, train
        W = params["W"]
        x2, dy2 = x.reshape(-1, W.shape[0]), dy.reshape(-1, W.shape[1])
        return {"W": x2.T @ dy2, "b": jnp.sum(dy2, axis=0)}, dy @ W.T

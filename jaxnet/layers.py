"""Layers as records of pure functions, each with a hand-derived backward pass.

The contract (written once, here):

- `init(key, input_shape) -> (output_shape, params)`: shapes exclude the batch axis; `params` is a
  dict of arrays (`{}` for a layer without parameters).
- `apply(params, x) -> y`: x is one example `input_shape` or a batch `(batch, *input_shape)`.
- `backward(params, x, y, dy) -> (dparams, dx)`: given the layer's input x, its output y and
  dL/dy, return dL/dparams (same pytree structure as params) and dL/dx (shape of x). Derived by hand,
  exactly as the tutorial's delta equations; `jax.grad` is the independent check.

Source: Deep Learning from Scratch, chapter 5 (5.5 activation layers, 5.6 Affine layer).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxnet import activations as act
from jaxnet import initializers
from jaxnet._checks import check_positive, choose

Params = Any  # a pytree of arrays


class Layer(NamedTuple):
    """A layer: three pure functions (see the module docstring) and a name for reports."""

    init: Callable[..., tuple[tuple[int, ...], Params]]
    apply: Callable[[Params, jax.Array], jax.Array]
    backward: Callable[..., tuple[Params, jax.Array]]
    name: str


@functools.lru_cache(maxsize=None)
def Dense(
    n_out: int,
    *,
    W_init: str | Callable = "he_normal",
    b_init: str | Callable = "zeros",
    dtype=jnp.float32,
) -> Layer:
    """A fully connected (affine) layer `y = x W + b`.

    Params: `{"W": (n_in, n_out), "b": (n_out,)}` of `dtype` (float32 by default).
    Shapes: x (n_in,) or (batch, n_in) -> y (n_out,) or (batch, n_out).
    Backward (Deep Learning from Scratch 5.6.2): `dW = x^T dy`, `db = sum_batch dy`, `dx = dy W^T`.

    Equal arguments give the same (cached) Layer, so rebuilding a network does not recompile `fit`.

    Raises:
        ValueError: n_out is not a positive int; an initialiser name is unknown; at init, the input is
            not 1-D (flatten first) or has no features.
    """
    check_positive("n_out", n_out, integer=True)
    w_init, bias_init = initializers.get(W_init), initializers.get(b_init)

    def init(key, input_shape):
        if len(input_shape) != 1 or int(input_shape[0]) < 1:
            raise ValueError(f"input_shape: Dense expected a 1-D input shape (n_in,) with n_in >= 1, got "
                             f"{tuple(input_shape)}")
        k_w, k_b = jax.random.split(key)
        n_in = int(input_shape[0])
        return (n_out,), {"W": w_init(k_w, (n_in, n_out), dtype), "b": bias_init(k_b, (n_out,), dtype)}

    def apply(params, x):
        return x @ params["W"] + params["b"]

    def backward(params, x, y, dy):
        del y
        W = params["W"]
        x2, dy2 = x.reshape(-1, W.shape[0]), dy.reshape(-1, W.shape[1])
        grads = {"W": x2.T @ dy2, "b": jnp.sum(dy2, axis=0)}
        return grads, dy @ W.T

    return Layer(init, apply, backward, f"Dense({n_out})")


def _elementwise(activation: act.Activation) -> Layer:
    """A parameter-free layer `y = f(x)` with backward `dx = dy * f'(x)` (5.5)."""

    def init(key, input_shape):
        del key
        return tuple(input_shape), {}

    def apply(params, x):
        del params
        return activation.fn(x)

    def backward(params, x, y, dy):
        del params, y
        return {}, dy * activation.derivative(x)

    return Layer(init, apply, backward, activation.name)


def _softmax_layer() -> Layer:
    def init(key, input_shape):
        del key
        return tuple(input_shape), {}

    def apply(params, x):
        del params
        return act.softmax(x)

    def backward(params, x, y, dy):
        del params, y
        return {}, act.softmax_vjp(x, dy)

    return Layer(init, apply, backward, "softmax")


Sigmoid = _elementwise(act.ACTIVATIONS["sigmoid"])
Relu = _elementwise(act.ACTIVATIONS["relu"])
Tanh = _elementwise(act.ACTIVATIONS["tanh"])
Identity = _elementwise(act.ACTIVATIONS["identity"])
Softmax = _softmax_layer()

_BY_NAME = {"sigmoid": Sigmoid, "relu": Relu, "tanh": Tanh, "identity": Identity, "softmax": Softmax}


def activation_layer(name: str | Layer) -> Layer:
    """The activation layer called `name`: 'sigmoid', 'relu', 'tanh', 'identity' or 'softmax'.

    Shapes: any -> the same shape and dtype ('softmax' normalises the last axis, and its backward is
    the softmax vector-Jacobian product). A `Layer` passed in is returned unchanged.

    Raises:
        ValueError: unknown name (the message lists the valid ones). TypeError: neither a name nor a Layer.
    """
    if isinstance(name, Layer):
        return name
    found = choose("activation", "activation", name, _BY_NAME)
    if not isinstance(found, Layer):
        raise TypeError(f"activation: expected a name ({', '.join(sorted(_BY_NAME))}) or a Layer, "
                        f"got {type(name).__name__}")
    return found

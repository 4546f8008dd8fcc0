"""Activation functions and their derivatives, side by side.

Each activation `f` comes with `f_derivative(x) = f'(x)`, both elementwise on arrays of any shape and
any floating dtype (the output has the input's shape and dtype). The derivatives are written so that
`jax.grad` of the activation returns *exactly* the same numbers at every input, kinks and saturated
tails included:

- `relu'(0) = 0`, matching `jax.nn.relu`'s custom derivative (a plain `maximum(x, 0)` would give 1/2).
- `tanh'(x) = 4 sigmoid(2x) sigmoid(-2x)`, the stable form of `1 - tanh(x)^2` (custom JVP, as sigmoid).
- `sigmoid'(x) = sigmoid(x) * sigmoid(-x)`. The textbook `s * (1 - s)` cancels to 0 once `s` rounds to
  1 (x >= 17 in float32: at x = 20 the true value is 2.0611537e-09), and `jax.grad(jax.nn.sigmoid)` uses
  that cancelling form. jaxnet's `sigmoid` (and `tanh`, likewise) therefore carries a custom JVP with
  the stable form, so the hand derivative, `jax.grad` and the true value agree over the whole float
  range. `jax.grad` of jaxnet's sigmoid and tanh therefore equals the hand derivatives by
  construction and is no check of them: the independent checks are float64 closed forms, `jax.grad`
  of plain `jax.nn.sigmoid` / `jnp.tanh` in float64 where their rules do not cancel, and central
  finite differences (tests/test_activations.py).

`softmax` is not elementwise; its vector-Jacobian product is `softmax_vjp`.

Source: Deep Learning from Scratch, sections 3.2 (activation functions) and 5.5 (their backward
passes); Goodfellow, Bengio & Courville, *Deep Learning*, 6.3.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Activation(NamedTuple):
    """An elementwise activation: `fn(x)` and its derivative `derivative(x)` (w.r.t. the input x)."""

    name: str
    fn: Callable[[jax.Array], jax.Array]
    derivative: Callable[[jax.Array], jax.Array]


@jax.custom_jvp
def sigmoid(x: jax.Array) -> jax.Array:
    """Logistic sigmoid `1 / (1 + exp(-x))`, elementwise.

    Args:
        x: float array of any shape (float32 or float64).

    Returns:
        Array of x's shape and dtype, in [0, 1]. Computed from `t = exp(-|x|)` as `1 / (1 + t)` for
        x >= 0 and `t / (1 + t)` below, which never overflows: `sigmoid(-1234.1) = 0`,
        `sigmoid(1234.1) = 1`, with no NaN and no warning.

    Its derivative (also the one `jax.grad` uses, via a custom JVP) is `sigmoid_derivative`, written
    with the same `t`: a forward and a backward pass over the same x share one exponential (XLA
    computes the common `exp(-|x|)` once).
    Source: Deep Learning from Scratch, eq. (3.6).
    """
    t = jnp.exp(-jnp.abs(x))
    return jnp.where(x >= 0, 1, t) / (1 + t)


def sigmoid_derivative(x: jax.Array) -> jax.Array:
    """Derivative of `sigmoid`: `sigmoid(x) * sigmoid(-x) = t / (1 + t)^2` with `t = exp(-|x|)`, elementwise.

    Mathematically equal to `s * (1 - s)`, but accurate where that cancels: at x = 20 it gives
    2.0611537e-09 in float32 (`s * (1 - s)` gives 0); it is finite and >= 0 everywhere and underflows
    only where the true value is below the dtype's smallest normal number (XLA's CPU backend flushes
    subnormals to zero). The `t` form needs one exponential where `sigmoid(x) * sigmoid(-x)` needs
    two: the backward pass of a sigmoid layer is dominated by its exponentials.

    Args:
        x: float array of any shape (the pre-activation z).

    Returns:
        Array of x's shape and dtype, in [0, 0.25].
    """
    t = jnp.exp(-jnp.abs(x))
    return t / jnp.square(1 + t)


@sigmoid.defjvp
def _sigmoid_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    t = jnp.exp(-jnp.abs(x))  # one exponential for the value and the derivative
    return jnp.where(x >= 0, 1, t) / (1 + t), dx * (t / jnp.square(1 + t))


def relu(x: jax.Array) -> jax.Array:
    """Rectified linear unit `max(x, 0)`, elementwise; shape and dtype of x.

    Source: Deep Learning from Scratch, eq. (3.7); Nair & Hinton (2010).
    """
    return jax.nn.relu(x)


def relu_derivative(x: jax.Array) -> jax.Array:
    """Derivative of `relu`: 1 where x > 0, else 0 (0 at the kink x = 0, as `jax.grad(jax.nn.relu)`).

    Returns an array of x's shape and dtype.
    """
    return (x > 0).astype(x.dtype)


@jax.custom_jvp
def tanh(x: jax.Array) -> jax.Array:
    """Hyperbolic tangent, elementwise; shape and dtype of x, values in [-1, 1] (tanh(+-1000) = +-1).

    Its derivative (also the one `jax.grad` uses, via a custom JVP) is `tanh_derivative`.
    """
    return jnp.tanh(x)


def tanh_derivative(x: jax.Array) -> jax.Array:
    """Derivative of `tanh`: `4 sigmoid(2x) sigmoid(-2x) = 4 t / (1 + t)^2` with `t = exp(-2|x|)`, elementwise.

    Mathematically `1 - tanh(x)^2`, but that form (jax's default rule) cancels to 0 once tanh rounds
    to +-1 (|x| > ~9 in float32); this one stays accurate in the tails (the form jax itself uses at
    its highest accuracy setting). Returns an array of x's shape and dtype, in [0, 1].
    """
    t = jnp.exp(-2 * jnp.abs(x))
    return 4 * t / jnp.square(1 + t)


@tanh.defjvp
def _tanh_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return tanh(x), t * tanh_derivative(x)


def identity(x: jax.Array) -> jax.Array:
    """The identity `x` (a linear output unit, e.g. for logits)."""
    return x


def identity_derivative(x: jax.Array) -> jax.Array:
    """Derivative of `identity`: ones of x's shape and dtype."""
    return jnp.ones_like(x)


def softmax(x: jax.Array) -> jax.Array:
    """Softmax over the last axis: `exp(x - max) / sum(exp(x - max))`, row by row.

    Args:
        x: float array (..., classes), e.g. logits (batch, classes).

    Returns:
        Array of x's shape and dtype whose rows sum to 1. Stable for huge logits:
        `softmax([-1047, -981, 1891]) = [0, 0, 1]`. Source: Deep Learning from Scratch, 3.5.2.
    """
    return jax.nn.softmax(x, axis=-1)


def softmax_vjp(x: jax.Array, dy: jax.Array) -> jax.Array:
    """Vector-Jacobian product of `softmax` at x: `s * (dy - sum(dy * s, axis=-1))`, with s = softmax(x).

    Args:
        x: logits (..., classes). dy: upstream gradient, same shape.

    Returns:
        dL/dx, same shape and dtype as x. Source: the softmax Jacobian `diag(s) - s s^T`.
    """
    s = softmax(x)
    return s * (dy - jnp.sum(dy * s, axis=-1, keepdims=True))


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation("sigmoid", sigmoid, sigmoid_derivative),
    "relu": Activation("relu", relu, relu_derivative),
    "tanh": Activation("tanh", tanh, tanh_derivative),
    "identity": Activation("identity", identity, identity_derivative),
}

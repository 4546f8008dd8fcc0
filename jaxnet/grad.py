"""The two gradient routes of a network's loss: hand-derived `backprop` and `autodiff` (`jax.grad`).

Both take the same arguments and return `(loss_value, grads)`; checking one against the other is what
`jaxnet.gradcheck` does.

Source: Deep Learning from Scratch 5.7; the delta equations BP1-BP4 (Nielsen, ch. 2).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxnet import losses as losses_lib
from jaxnet.validate import check_data, choose
from jaxnet.nn.network import Network

Params = Any

__all__ = ["backprop", "autodiff", "GRADIENTS", "gradient_fn", "l2_penalty", "l2_gradient"]


def _no_decay(weight_decay: Any) -> bool:
    """True when weight decay is statically off (None or a Python 0), so no term is traced."""
    return weight_decay is None or (isinstance(weight_decay, (int, float)) and weight_decay == 0)


def l2_penalty(net: Network, params: Params, weight_decay: Any) -> jax.Array:
    """The book's L2 regulariser `0.5 * weight_decay * sum(W**2)` over the network's weights only.

    Which params are weights is each layer's `decay_mask` (Dense's and Conv2D's `W`; never biases,
    BatchNorm's gamma and beta, or state). Returns a scalar of the params' dtype (0 when there are no
    weights). Source: Deep Learning from Scratch 6.4.1 (weight decay), eq. for `0.5 * lambda * W^2`.
    """
    mask = jax.tree.leaves(net.decay_mask(params))
    squares = [jnp.sum(jnp.square(p)) for p, m in zip(jax.tree.leaves(params), mask) if m]
    if not squares:
        return jnp.zeros((), jnp.result_type(*jax.tree.leaves(params)) if jax.tree.leaves(params) else jnp.float32)
    total = sum(squares)
    return jnp.asarray(0.5 * jnp.asarray(weight_decay, total.dtype) * total, total.dtype)


def l2_gradient(net: Network, params: Params, weight_decay: Any) -> Params:
    """The hand-derived gradient of `l2_penalty`: `weight_decay * W` for weights, 0 elsewhere (params'
    structure, shapes and dtypes)."""
    return jax.tree.map(lambda p, m: jnp.asarray(weight_decay, p.dtype) * p if m else jnp.zeros_like(p),
                        params, net.decay_mask(params))


def backprop(net: Network, params: Params, x: jax.Array, y: jax.Array, loss: str | losses_lib.Loss, *,
             state: Any = None, key: jax.Array | None = None, train: bool = False,
             weight_decay: Any = None) -> tuple[jax.Array, Params]:
    """Loss value and its gradient w.r.t. params by the hand-derived delta recursion.

    Args:
        net: the network. params: its params (as from `net.init`).
        x: inputs (batch, *input_shape). y: targets as the loss expects.
        loss: a loss name or `jaxnet.losses.Loss`.
        state: the network's state (BatchNorm running statistics; needed in evaluation mode).
        key: PRNG key for training mode's randomness (Dropout masks); layer i uses `fold_in(key, i)`.
        train: differentiate the training-mode function (batch statistics, dropout) instead of the
            evaluation-mode one.
        weight_decay: the L2 coefficient lambda (None or 0: none); adds `l2_penalty` to the loss and
            its hand gradient `lambda W` (`l2_gradient`) to the weights' gradients.

    Returns:
        (loss_value, grads): a scalar and a pytree with exactly the structure, shapes and dtypes of
        params. These are the true gradients of the mean loss (the tutorial's are these / batch size).

    Raises:
        ValueError / TypeError: params or state that do not fit the network, x or y of the wrong shape
            or dtype, a missing key in training mode (all checked under jit too); labels out of range
            and non-finite data (eager calls only); a layer whose `backward` returns a gradient of the
            wrong structure, shape or dtype (naming the layer).
    """
    loss_fn = losses_lib.get(loss)
    x, y = check_data(net, params, x, y, loss_fn)
    outputs = net.forward(params, x, state=state, key=key, train=train)
    grads, _ = net.backward_from(params, outputs, loss_fn.grad(outputs[-1], y), state=state, key=key, train=train)
    value = loss_fn.value(outputs[-1], y)
    if _no_decay(weight_decay):
        return value, grads
    penalty = l2_penalty(net, params, weight_decay)
    return value + penalty.astype(value.dtype), jax.tree.map(jnp.add, grads, l2_gradient(net, params, weight_decay))


def autodiff(net: Network, params: Params, x: jax.Array, y: jax.Array, loss: str | losses_lib.Loss, *,
             state: Any = None, key: jax.Array | None = None, train: bool = False,
             weight_decay: Any = None) -> tuple[jax.Array, Params]:
    """Loss value and gradient by `jax.value_and_grad` of `loss(net.apply(params, x, ...), y)`.

    The independent route against which `backprop` is checked; same signature, outputs and errors.
    """
    loss_fn = losses_lib.get(loss)
    x, y = check_data(net, params, x, y, loss_fn)

    def objective(p):
        value = loss_fn.value(net.apply(p, x, state=state, key=key, train=train), y)
        if _no_decay(weight_decay):
            return value
        return value + l2_penalty(net, p, weight_decay).astype(value.dtype)

    return jax.value_and_grad(objective)(params)


GRADIENTS: dict[str, Callable] = {"backprop": backprop, "autodiff": autodiff}


def gradient_fn(grad: str | Callable) -> Callable:
    """The gradient route named `grad` ('backprop' or 'autodiff'), or a callable with their signature
    `(net, params, x, y, loss, *, state, key, train) -> (loss, grads)`.

    Raises: ValueError for an unknown name (lists the valid ones), TypeError for anything else.
    """
    found = choose("gradient route", "grad", grad, GRADIENTS)
    if not callable(found):
        raise TypeError(f"grad: expected 'backprop', 'autodiff' or a callable (net, params, x, y, loss) -> "
                        f"(loss, grads), got {type(grad).__name__}")
    takes = _keywords(found)
    if found in GRADIENTS.values() or takes >= {"state", "key", "train", "weight_decay"}:
        return found
    return _AdaptedRoute(found, takes >= {"state", "key", "train"})


def _keywords(fn: Callable) -> set:
    """The keyword arguments among state, key, train and weight_decay that `fn` accepts (all of them
    when it takes **kwargs or its signature cannot be read)."""
    every = {"state", "key", "train", "weight_decay"}
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return every
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return every
    return every & {p.name for p in params}


@dataclasses.dataclass(frozen=True)
class _AdaptedRoute:
    """A user's route that takes fewer keyword arguments than `fit` passes, compared by value (the
    wrapped function). `takes_mode`: it takes state, key and train; otherwise it is a route written as
    `(net, params, x, y, loss) -> (loss, grads)`, from before networks had state and randomness, fine
    for networks without them. Weight decay, if any, is added outside it (`l2_penalty`, `l2_gradient`)."""

    fn: Callable
    takes_mode: bool

    def __call__(self, net, params, x, y, loss, *, state=None, key=None, train=False, weight_decay=None):
        if self.takes_mode:
            value, grads = self.fn(net, params, x, y, loss, state=state, key=key, train=train)
        elif net.has_state or (train and net.is_random):
            raise TypeError(f"grad: {getattr(self.fn, '__name__', 'the route')} takes (net, params, x, y, loss) "
                            f"only, but {net.name} has BatchNorm or Dropout; accept the keyword arguments "
                            f"state, key and train and pass them to net.apply / net.forward")
        else:
            value, grads = self.fn(net, params, x, y, loss)
        if _no_decay(weight_decay):
            return value, grads
        return (value + l2_penalty(net, params, weight_decay).astype(value.dtype),
                jax.tree.map(jnp.add, grads, l2_gradient(net, params, weight_decay)))

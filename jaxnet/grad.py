"""The two gradient routes of a network's loss: hand-derived `backprop` and `autodiff` (`jax.grad`).

A *gradient route* is a function

    route(net, params, x, y, loss, *, state=None, key=None, train=False, weight_decay=None)
        -> (loss_value, grads)

with `grads` of exactly the params' structure, shapes and dtypes. `fit`, `fit_ensemble` and
`gradcheck` take one as `grad=` (a name in `ROUTES`, or your own function of that signature);
checking one route against the other is what `jaxnet.gradcheck` does.

The public routes check their arguments; the training engine validates its data once and calls
`unchecked(route)` on every step, the same math without the checks.

Source: Deep Learning from Scratch 5.7; the delta equations BP1-BP4 (Nielsen, ch. 2); the book's
weight decay, 6.4.1.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxnet import losses as losses_lib
from jaxnet.nn.network import Network
from jaxnet.validate import check_data, choose

Params = Any

__all__ = ["ROUTES", "autodiff", "backprop", "l2_gradient", "l2_penalty", "route"]

KEYWORDS = ("state", "key", "train", "weight_decay")


def _no_decay(weight_decay: Any) -> bool:
    """True when weight decay is statically off (None or a Python 0), so no term is traced."""
    return weight_decay is None or (isinstance(weight_decay, (int, float)) and weight_decay == 0)


def l2_penalty(net: Network, params: Params, weight_decay: Any) -> jax.Array:
    """The book's L2 regulariser `0.5 * weight_decay * sum(W**2)` over the network's weights only.

    Which params are weights is each layer's `decay_mask` (never biases, BatchNorm's gamma and beta,
    or state). Returns a scalar of the params' dtype (0 when there are no weights). Source: Deep
    Learning from Scratch 6.4.1 (weight decay), the term `0.5 * lambda * W^2` added per weight matrix.
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


def _backprop(net, params, x, y, loss_fn, *, state=None, key=None, train=False, weight_decay=None):
    """`backprop` on arguments validated already: no checks, the loss's unchecked math."""
    value_fn, derivative_fn = loss_fn.fast
    outputs = net._forward(params, x, state=state, key=key, train=train)
    grads, _ = net.backward_from(params, outputs, derivative_fn(outputs[-1], y), state=state, key=key, train=train)
    value = value_fn(outputs[-1], y)
    if _no_decay(weight_decay):
        return value, grads
    penalty = l2_penalty(net, params, weight_decay)
    return value + penalty.astype(value.dtype), jax.tree.map(jnp.add, grads, l2_gradient(net, params, weight_decay))


def _autodiff(net, params, x, y, loss_fn, *, state=None, key=None, train=False, weight_decay=None):
    """`autodiff` on arguments validated already: no checks, the loss's unchecked math."""
    value_fn, _ = loss_fn.fast

    def objective(p):
        value = value_fn(net._forward(p, x, state=state, key=key, train=train)[-1], y)
        if _no_decay(weight_decay):
            return value
        return value + l2_penalty(net, p, weight_decay).astype(value.dtype)

    return jax.value_and_grad(objective)(params)


def _checked(net, params, x, y, loss, state, key, train):
    loss_fn = losses_lib.get(loss)
    x, y = check_data(net, params, x, y, loss_fn)
    net._check(params, x, state, key, train)
    return loss_fn, x, y


def backprop(net: Network, params: Params, x: jax.Array, y: jax.Array, loss: str | losses_lib.Loss, *,
             state: Any = None, key: jax.Array | None = None, train: bool = False,
             weight_decay: Any = None) -> tuple[jax.Array, Params]:
    """Loss value and its gradient w.r.t. params by the hand-derived delta recursion.

    Args:
        net: the network. params: its params (as from `net.init`).
        x: inputs (batch, *input_shape), the params' floating dtype. y: targets as the loss expects.
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
    loss_fn, x, y = _checked(net, params, x, y, loss, state, key, train)
    return _backprop(net, params, x, y, loss_fn, state=state, key=key, train=train, weight_decay=weight_decay)


def autodiff(net: Network, params: Params, x: jax.Array, y: jax.Array, loss: str | losses_lib.Loss, *,
             state: Any = None, key: jax.Array | None = None, train: bool = False,
             weight_decay: Any = None) -> tuple[jax.Array, Params]:
    """Loss value and gradient by `jax.value_and_grad` of `loss(net.apply(params, x, ...), y)`.

    The independent route against which `backprop` is checked; same signature, outputs and errors.
    """
    loss_fn, x, y = _checked(net, params, x, y, loss, state, key, train)
    return _autodiff(net, params, x, y, loss_fn, state=state, key=key, train=train, weight_decay=weight_decay)


ROUTES: dict[str, Callable] = {"backprop": backprop, "autodiff": autodiff}
_UNCHECKED = {backprop: _backprop, autodiff: _autodiff}


def route(grad: str | Callable) -> Callable:
    """The gradient route `grad`: a name in `ROUTES` ('backprop', 'autodiff') or your own function of
    the signature in the module docstring (it must accept the keyword arguments state, key, train
    and weight_decay, or **kwargs).

    Raises:
        ValueError: an unknown name (lists the valid ones).
        TypeError: neither a name nor a callable, or a callable that does not take those keywords
            (names the missing ones).
    """
    found = choose("gradient route", "grad", grad, ROUTES)
    if not callable(found):
        raise TypeError(f"grad: expected 'backprop', 'autodiff' or a callable (net, params, x, y, loss, *, state, "
                        f"key, train, weight_decay) -> (loss, grads), got {type(grad).__name__}")
    missing = [k for k in KEYWORDS if k not in _keywords(found)]
    if missing:
        raise TypeError(f"grad: {getattr(found, '__name__', 'the route')} does not accept the keyword argument(s) "
                        f"{', '.join(missing)}; a gradient route is (net, params, x, y, loss, *, state=None, key=None, "
                        f"train=False, weight_decay=None) -> (loss, grads) (see jaxnet.grad)")
    return found


def unchecked(route_fn: Callable) -> Callable:
    """The route the training engine calls on every step: the built-in routes without their argument
    checks (the engine validated the data once), any other route as it is."""
    return _UNCHECKED.get(route_fn, route_fn)


def _keywords(fn: Callable) -> set:
    """The keyword arguments among `KEYWORDS` that `fn` accepts (all of them when it takes **kwargs
    or its signature cannot be read)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return set(KEYWORDS)
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return set(KEYWORDS)
    return set(KEYWORDS) & {p.name for p in params}

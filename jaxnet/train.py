"""Training in one compiled call: `fit` scans over epochs (and minibatches) inside `jax.jit`.

`fit` is a pure function of (params, data, optimizer, key): it can be vmapped over keys, learning
rates or initial params, and its arrays can be sharded over devices, without change. Nothing crosses
back to the host during a run.

Source: the tutorial's training loop (forward, loss, backward, SGD update, loss recorded before the
update); Deep Learning from Scratch 4.5 and 5.7.4.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxnet import losses as losses_lib
from jaxnet import metrics
from jaxnet._checks import as_float_array, check_key, check_positive
from jaxnet.network import Network, gradient_fn
from jaxnet.optim import learning_rate_of

Params = Any


def fit(
    net: Network,
    params: Params,
    x: jax.Array,
    y: jax.Array,
    *,
    loss: str | losses_lib.Loss,
    optimizer: optax.GradientTransformation,
    epochs: int,
    grad: str | Callable = "backprop",
    batch_size: int | None = None,
    key: jax.Array | None = None,
    validation_data: tuple[jax.Array, jax.Array] | None = None,
    tutorial_scaling: bool = False,
    opt_state: Any = None,
    return_opt_state: bool = False,
):
    """Train `net` from `params` for `epochs` epochs in one jitted `lax.scan`.

    Each step computes the loss and its gradient (`grad="backprop"`: the hand-derived delta
    recursion; `"autodiff"`: `jax.grad`; both give the same run), then applies
    `optimizer.update(grads, state, params, value=loss)` (the loss is passed as `value=` to
    transformations that take extra arguments, such as a plateau schedule).

    Full batch (`batch_size=None`): one step per epoch, and `history["loss"][t]` is the loss at the
    start of epoch t, before its update (as the tutorial records it). Minibatches: each epoch draws a
    permutation from its own key (`jax.random.split(key, epochs)[t]`) and runs `n // batch_size` full
    batches and then, if `n % batch_size` samples are left, one smaller step on exactly those: every
    sample is used exactly once per epoch, none is dropped or repeated. `history["loss"][t]` is then
    the sample-weighted mean of the batch losses, each computed before its step's update.

    Divergence: a step whose loss or updated params are not finite is not applied, and training stops
    there: the returned params are the last finite ones, `history["diverged_epoch"]` is that epoch
    (-1 if training never diverged) and later entries of `history["loss"]` are NaN.

    Args:
        net: a `jaxnet.Network`. params: its parameter pytree.
        x: inputs (n, *input_shape), floating dtype. y: targets (n, outputs) or integer labels (n,).
        loss: loss name or `jaxnet.losses.Loss`.
        optimizer: any optax `GradientTransformation` (`jaxnet.optim.optimizer(...)` makes the learning
            rate a traced value, so a new rate does not recompile).
        epochs: number of epochs (static: a new value compiles a new run).
        grad: 'backprop' or 'autodiff'.
        batch_size: minibatch size (1..n), or None for full-batch gradient descent.
        key: PRNG key for the per-epoch shuffles; required when batch_size is given.
        validation_data: optional (x_val, y_val); their loss and accuracy are recorded per epoch with
            the params at the end of the epoch.
        tutorial_scaling: divide every gradient by the batch size, reproducing the tutorial's numpy
            code (which divides by m twice); equivalent to the true gradient with lr / m for SGD.
        opt_state: optimizer state to resume from (default `optimizer.init(params)`).
        return_opt_state: also return the final optimizer state.

    Returns:
        `(params, history)` (or `(params, opt_state, history)`): params like the input; history a dict
        of arrays of shape (epochs,): 'loss', 'learning_rate' (effective rate of the epoch's last update,
        NaN when the optimizer state does not expose it), and 'val_loss', 'val_accuracy' when
        validation data is given; plus the scalar 'diverged_epoch' (int32).

    Raises:
        ValueError / TypeError: bad epochs, batch size, shapes, dtypes, loss or gradient names, or a
            missing key, each naming the argument.
    """
    loss_fn = losses_lib.get(loss)
    grad_fn = gradient_fn(grad)
    check_positive("epochs", epochs, integer=True)
    x = as_float_array("x", x)
    y = jnp.asarray(y)
    if y.shape[:1] != x.shape[:1]:
        raise ValueError(f"y: expected {x.shape[0]} rows to match x {tuple(x.shape)}, got shape {tuple(y.shape)}")
    n = x.shape[0]
    if n == 0:
        raise ValueError("x: expected at least one example, got an empty array")
    if batch_size is not None:
        check_positive("batch_size", batch_size, integer=True)
        if batch_size > n:
            raise ValueError(f"batch_size: expected at most the number of examples {n}, got {batch_size}")
        if key is None:
            raise ValueError("key: minibatch training shuffles every epoch and needs a PRNG key")
        check_key("key", key)
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer: expected an optax GradientTransformation, got {type(optimizer).__name__}")
    if opt_state is None:
        opt_state = optimizer.init(params)
    extra_args = isinstance(optimizer, optax.GradientTransformationExtraArgs)
    val = None if validation_data is None else (as_float_array("validation_data[0]", validation_data[0]),
                                                jnp.asarray(validation_data[1]))
    params, opt_state, history = _run(
        params, opt_state, x, y, key, val,
        net=net, loss_fn=loss_fn, grad_fn=grad_fn, update=optimizer.update, extra_args=extra_args,
        epochs=epochs, batch_size=batch_size, tutorial_scaling=tutorial_scaling,
    )
    return (params, opt_state, history) if return_opt_state else (params, history)


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


@functools.partial(
    jax.jit,
    static_argnames=("net", "loss_fn", "grad_fn", "update", "extra_args", "epochs", "batch_size",
                     "tutorial_scaling"),
)
def _run(params, opt_state, x, y, key, val, *, net, loss_fn, grad_fn, update, extra_args, epochs,
         batch_size, tutorial_scaling):
    def step(carry, batch):
        params, opt_state, stopped = carry
        xb, yb = batch
        loss, grads = grad_fn(net, params, xb, yb, loss_fn)
        if tutorial_scaling:
            grads = jax.tree.map(lambda g: g / xb.shape[0], grads)
        if extra_args:
            updates, new_state = update(grads, opt_state, params, value=loss)
        else:
            updates, new_state = update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        ok = ~stopped & jnp.isfinite(loss) & _all_finite(new_params)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)  # noqa: E731
        carry = (keep(new_params, params), keep(new_state, opt_state), ~ok)
        return carry, jnp.where(stopped, jnp.nan, loss)

    def epoch(carry, epoch_key):
        if batch_size is None:
            carry, loss = step(carry, (x, y))
        else:
            carry, loss = _minibatch_epoch(step, carry, x, y, epoch_key, batch_size)
        params, opt_state, stopped = carry
        record = {"loss": loss, "learning_rate": learning_rate_of(opt_state, loss.dtype), "stopped": stopped}
        if val is not None:
            record["val_loss"] = loss_fn.value(net.apply(params, val[0]), val[1])
            record["val_accuracy"] = metrics.accuracy(net.apply(params, val[0]), val[1],
                                                      from_logits=loss_fn.from_logits)
        return carry, record

    epoch_keys = jax.random.split(key, epochs) if key is not None else jnp.zeros((epochs, 0))
    init = (params, opt_state, jnp.zeros((), bool))
    (params, opt_state, _), history = jax.lax.scan(epoch, init, epoch_keys)
    stopped = history.pop("stopped")
    history["diverged_epoch"] = jnp.where(jnp.any(stopped), jnp.argmax(stopped), -1).astype(jnp.int32)
    return params, opt_state, history


def _minibatch_epoch(step, carry, x, y, key, batch_size):
    """One epoch of minibatch steps over a fresh permutation; returns the sample-weighted mean loss."""
    n = x.shape[0]
    perm = jax.random.permutation(key, n)
    n_full = n // batch_size
    idx = perm[: n_full * batch_size].reshape(n_full, batch_size)
    carry, losses = jax.lax.scan(step, carry, (x[idx], y[idx]))
    total = jnp.sum(losses) * batch_size
    rest = n - n_full * batch_size
    if rest:
        tail = perm[n_full * batch_size:]
        carry, last = step(carry, (x[tail], y[tail]))
        total = total + last * rest
    return carry, total / n


def predict(net: Network, params: Params, x: jax.Array) -> jax.Array:
    """The network's output `net.apply(params, x)` for inputs x (batch, *input_shape)."""
    return net.apply(params, as_float_array("x", x))


def evaluate(net: Network, params: Params, x: jax.Array, y: jax.Array, loss: str | losses_lib.Loss) -> dict:
    """Loss and accuracy of `net` on (x, y).

    Accuracy: for one output unit, the prediction is positive above 0 for logit losses and above 0.5
    otherwise; for several, the arg-max class (see `jaxnet.metrics.accuracy`).

    Returns:
        {"loss": scalar, "accuracy": scalar in [0, 1]} as jax arrays.
    """
    loss_fn = losses_lib.get(loss)
    y_pred = predict(net, params, x)
    y = jnp.asarray(y)
    return {"loss": loss_fn.value(y_pred, y), "accuracy": metrics.accuracy(y_pred, y, from_logits=loss_fn.from_logits)}


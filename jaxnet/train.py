"""Training in one compiled call: `fit` scans over epochs (and minibatches) inside `jax.jit`.

`fit` is a pure function of (params, data, optimizer, key): it can be vmapped over keys, learning
rates or initial params, and its arrays can be sharded over devices, without change. Nothing crosses
back to the host during a run.

Source: the tutorial's training loop (forward, loss, backward, SGD update, loss recorded before the
update); Deep Learning from Scratch 4.5 and 5.7.4.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnet import losses as losses_lib
from jaxnet import metrics
from jaxnet._checks import (all_finite, as_float_array, check_data, check_finite_tree, check_key,
                            check_opt_state, check_positive)
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

    Raises (eagerly, before anything is compiled; each message names the argument, the expected and
    the received value or shape):
        TypeError: net not a Network, optimizer not an optax transformation, x (or a params leaf) not
            floating point, params of mixed float dtypes, x or floating y of another dtype than the
            params, non-numeric y, a key that is not a PRNG key, a non-int epochs or batch_size.
        ValueError: unknown loss or gradient names (listing the valid ones); params that do not fit
            the network (wrong number of layer entries, other keys, a W of another shape: the layer
            index and both shapes are named); x whose features do not fit the network; an empty x;
            y with another number of rows or another shape than the network's output (no silent
            broadcasting); class labels outside [0, classes) (softmax_cross_entropy) or targets
            outside [0, 1] (binary cross-entropies); NaN or infinity in x, y or params; epochs or
            batch_size < 1, batch_size > n, a missing key for minibatches or a batch of keys; an
            opt_state that does not match `optimizer.init(params)`; validation_data that is not a
            pair or fails the same checks as (x, y). Value checks (ranges, finiteness) are skipped
            for traced arguments (under jit/vmap); shape and dtype checks are not.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net: expected a jaxnet Network (from mlp or serial), got {type(net).__name__}")
    loss_fn = losses_lib.get(loss)
    grad_fn = gradient_fn(grad)
    check_positive("epochs", epochs, integer=True)
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer: expected an optax GradientTransformation, got {type(optimizer).__name__}")
    x, y = check_data(net, params, x, y, loss_fn, same_dtype=True)
    check_finite_tree("params", params)
    n = x.shape[0]
    if batch_size is not None:
        check_positive("batch_size", batch_size, integer=True)
        if batch_size > n:
            raise ValueError(f"batch_size: expected at most the number of examples {n}, got {batch_size}")
        if key is None:
            raise ValueError("key: minibatch training shuffles every epoch and needs a PRNG key")
    if key is not None:
        check_key("key", key, single=True)
    if opt_state is None:
        opt_state = optimizer.init(params)
    else:
        check_opt_state("opt_state", opt_state, optimizer, params)
    extra_args = isinstance(optimizer, optax.GradientTransformationExtraArgs)
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError(f"validation_data: expected a pair (x_val, y_val), got {type(validation_data).__name__}"
                             + (f" of length {len(validation_data)}" if hasattr(validation_data, "__len__") else ""))
        val = check_data(net, params, *validation_data, loss_fn, x_name="validation_data[0]",
                         y_name="validation_data[1]", same_dtype=True)
    params, opt_state, history = _run(
        params, opt_state, x, y, key, val,
        net=net, loss_fn=loss_fn, grad_fn=grad_fn, update=optimizer.update, extra_args=extra_args,
        epochs=epochs, batch_size=batch_size, tutorial_scaling=tutorial_scaling,
    )
    return (params, opt_state, history) if return_opt_state else (params, history)


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
        ok = ~stopped & jnp.isfinite(loss) & all_finite(new_params)
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
    # gather each batch inside its step: no (n, ...) shuffled copy of the data per epoch
    carry, losses = jax.lax.scan(lambda c, i: step(c, (x[i], y[i])), carry, idx)
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

    Raises:
        ValueError / TypeError: as `fit` for params, x and y (shapes, dtypes, labels, finiteness).
    """
    loss_fn = losses_lib.get(loss)
    x, y = check_data(net, params, x, y, loss_fn)
    y_pred = predict(net, params, x)
    return {"loss": loss_fn.value(y_pred, y), "accuracy": metrics.accuracy(y_pred, y, from_logits=loss_fn.from_logits)}



def divergence_warning(history: Mapping, label: str = "training") -> str | None:
    """A one-line warning naming the epoch at which a run diverged, or None if it did not.

    Experiments print it after `fit`, so a run whose loss became NaN or infinite never passes silently.

    Args:
        history: `fit`'s history (or a stacked one from `jax.vmap(fit)`, whose 'diverged_epoch' has
            one entry per run).
        label: what to call the run in the message (e.g. the experiment's name).

    Returns:
        None when 'diverged_epoch' is -1 everywhere; otherwise e.g. "warning: xor diverged at epoch
        12 of 50 (non-finite loss or params): training stopped there, the returned params are the
        last finite ones and the later losses are NaN", or for stacked runs "warning: xor: 3 of 100
        runs diverged (runs [4, 17, 60], first at epoch 2) ...".

    Raises:
        ValueError: history has no 'diverged_epoch' entry (not from `fit`).
    """
    if "diverged_epoch" not in history:
        raise ValueError(f"history: expected fit's history with a 'diverged_epoch' entry, got keys {sorted(history)}")
    epochs = np.asarray(history["diverged_epoch"]).reshape(-1)
    n_epochs = np.shape(history["loss"])[-1] if "loss" in history else None
    diverged = np.flatnonzero(epochs >= 0)
    if diverged.size == 0:
        return None
    of = f" of {n_epochs}" if n_epochs is not None else ""
    tail = ("training stopped there, the returned params are the last finite ones and the later losses "
            "are NaN; lower the learning rate")
    if np.ndim(history["diverged_epoch"]) == 0:
        return f"warning: {label} diverged at epoch {int(epochs[0])}{of} (non-finite loss or params): {tail}"
    runs = diverged.tolist()
    shown = runs if len(runs) <= 8 else runs[:8] + ["..."]
    return (f"warning: {label}: {len(runs)} of {epochs.size} runs diverged (runs {shown}, first at epoch "
            f"{int(epochs[diverged].min())}{of}, non-finite loss or params): {tail}")

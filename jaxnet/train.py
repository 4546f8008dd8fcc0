"""Training in one compiled call: `fit` scans over epochs (and minibatches) inside `jax.jit`.

`fit` is a pure function of (params, data, optimizer, key): it can be vmapped over keys, learning
rates or initial params, and its arrays can be sharded over devices, without change. Nothing crosses
back to the host during a run.

Source: the tutorial's training loop (forward, loss, backward, SGD update, loss recorded before the
update); Deep Learning from Scratch 4.5 and 5.7.4.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnet import losses as losses_lib
from jaxnet import metrics, optim
from jaxnet.validate import (all_finite, as_float_array, check_data, check_finite_tree, check_key,
                            check_opt_state, check_output_pairing, check_positive, float_dtype_of)
from jaxnet.grad import gradient_fn
from jaxnet.nn.network import Network
from jaxnet.optim import learning_rate_of

Params = Any


class FitResult(NamedTuple):
    """What `fit` returns.

    params: the trained params (the input's structure, shapes and dtypes).
    state: the network's state after training (BatchNorm running statistics; a tuple of empty dicts,
        holding no arrays, for networks without state). Pass it to `predict`/`evaluate`/`net.apply`.
    opt_state: the optimizer state after the last update (pass it back as `opt_state=` to resume).
    history: dict of per-epoch arrays (see `fit`).
    """

    params: Params
    state: Any
    opt_state: Any
    history: dict


def epoch_keys(key: jax.Array, epochs: int) -> tuple[jax.Array, jax.Array]:
    """The two independent key streams `fit` draws from `key`: `(shuffle_keys, dropout_keys)`, each
    of shape (epochs,).

    Epoch t shuffles with `jax.random.permutation(shuffle_keys[t], n)`; its step j (0-based, the
    tail step last) gives the network the key `jax.random.fold_in(dropout_keys[t], j)`, which the
    network folds per layer. Shuffling and dropout therefore never share a stream, and no key is
    used twice. Derivation: `split(fold_in(key, 0), epochs)` and `split(fold_in(key, 1), epochs)`.
    """
    return (jax.random.split(jax.random.fold_in(key, 0), epochs),
            jax.random.split(jax.random.fold_in(key, 1), epochs))


def _optimizer_of(optimizer: Any, hyperparams: Mapping | None) -> optax.GradientTransformation:
    """An optax transformation from `fit`'s optimizer argument: an optax object, or a name with
    `hyperparams` (as `fit_ensemble`)."""
    if isinstance(optimizer, str):
        if not isinstance(hyperparams, Mapping) or "learning_rate" not in hyperparams:
            raise ValueError(f"hyperparams: optimizer={optimizer!r} is a name and needs hyperparams with a "
                             f"'learning_rate', e.g. hyperparams={{'learning_rate': 0.1}}")
        return optim.optimizer(optimizer, **hyperparams)
    if hyperparams is not None:
        raise ValueError("hyperparams: only used with an optimizer name; an optax object carries its own")
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer: expected an optax GradientTransformation or an optimizer name "
                        f"({', '.join(optim.OPTIMIZERS)}), got {type(optimizer).__name__}")
    return optimizer


def fit(
    net: Network,
    params: Params,
    x: jax.Array,
    y: jax.Array,
    *,
    loss: str | losses_lib.Loss,
    optimizer: optax.GradientTransformation | str,
    epochs: int,
    hyperparams: Mapping | None = None,
    grad: str | Callable = "backprop",
    batch_size: int | None = None,
    key: jax.Array | None = None,
    state: Any = None,
    validation_data: tuple[jax.Array, jax.Array] | None = None,
    tutorial_scaling: bool = False,
    opt_state: Any = None,
    weight_decay: float | jax.Array | None = None,
) -> FitResult:
    """Train `net` from `params` for `epochs` epochs in one jitted `lax.scan`.

    Each step computes the loss and its gradient in training mode (`grad="backprop"`: the
    hand-derived delta recursion; `"autodiff"`: `jax.grad`; both give the same run), then applies
    `optimizer.update(grads, opt_state, params, value=..., epoch_end=...)` and, for networks with
    state (BatchNorm), `net.update_state` on the same batch with the same key.

    Full batch (`batch_size=None`): one step per epoch, and `history["loss"][t]` is the loss at the
    start of epoch t, before its update (as the tutorial records it). Minibatches: each epoch shuffles
    with its own key (`epoch_keys`) and runs `n // batch_size` full batches and then, if
    `n % batch_size` samples are left, one smaller step on exactly those: every sample is used exactly
    once per epoch. `history["loss"][t]` is then the sample-weighted mean of the batch losses, each
    computed before its step's update.

    Extra arguments to the optimizer: `value` is the step's loss, except at the last step of an
    epoch, where it is the epoch's mean loss (so far identical to `history["loss"][t]`), and
    `epoch_end` says which step that is. `jaxnet.optim.plateau_decay` decides once per epoch, on
    that mean, as the tutorial does; optax's own `reduce_on_plateau` sees every step's value.

    Randomness: `key` feeds two independent streams (`epoch_keys`): the shuffles and the per-step
    keys given to the network (Dropout masks). The same key gives the same run bitwise.

    Divergence: an epoch whose loss (with minibatches: the mean of its batch losses) or final params
    are not finite is not applied, and training stops there: the returned params, state and
    optimizer state are those from before that epoch (with full batches, the last finite step's),
    `history["diverged_epoch"]` is that epoch (-1 if training never diverged) and later entries of
    `history["loss"]` are NaN. The check runs once per epoch, not per minibatch step, so it costs
    one reduction over the params per epoch.

    `fit` is a pure function of its array arguments: it works under `jax.jit` (data passed or
    captured), `jax.vmap` (over keys, learning rates, initial params) and sharding.

    Args:
        net: a `jaxnet.Network`. params: its parameter pytree.
        x: inputs (n, *input_shape), the params' floating dtype. y: targets (n, outputs) of that
            dtype, or integer labels (n,).
        loss: loss name or `jaxnet.losses.Loss`.
        optimizer: an optax `GradientTransformation` (`jaxnet.optim.optimizer(...)` makes the learning
            rate a traced value, so a new rate does not recompile), or a name ('sgd', 'adam', ...)
            with `hyperparams`.
        epochs: number of epochs (static: a new value compiles a new run).
        hyperparams: with an optimizer name, `jaxnet.optim.optimizer`'s arguments, e.g.
            `{"learning_rate": 0.1, "momentum": 0.9}`.
        grad: the gradient route, 'backprop' or 'autodiff' (or a callable with their signature).
        batch_size: minibatch size (1..n), or None for full-batch gradient descent.
        key: PRNG key; required for minibatches and for networks with Dropout.
        state: the network's initial state (default `net.init_state(x.shape[1:])`).
        validation_data: optional (x_val, y_val); their loss and accuracy are recorded per epoch with
            the params and state at the end of the epoch, in evaluation mode.
        tutorial_scaling: divide every gradient by the batch size, reproducing the tutorial's numpy
            code (which divides by m twice); equivalent to the true gradient with lr / m for SGD.
        opt_state: optimizer state to resume from (default `optimizer.init(params)`).
        weight_decay: the book's L2 regulariser's lambda (`jaxnet.grad.l2_penalty`: 0.5 lambda
            sum W^2 over the weights, not biases or BatchNorm parameters); added to the loss (and to
            the recorded `history["loss"]`) and its gradient `lambda W` to the weights' gradients by
            the gradient route. May be traced (vmapped in a hyperparameter search). For decoupled
            decay (AdamW, masked to the weights) use `jaxnet.regularization.adamw`.

    Returns:
        `FitResult(params, state, opt_state, history)`; history a dict of arrays of shape (epochs,):
        'loss', 'learning_rate' (effective rate of the epoch's last update, NaN when the optimizer
        state does not expose it), and 'val_loss', 'val_accuracy' with validation data; plus the
        scalar 'diverged_epoch' (int32).

    Raises (before anything is compiled; each message names the argument, the expected and the
    received value or shape; shape and dtype checks also run under jit, value checks only on
    concrete values):
        TypeError: net not a Network, an optimizer that is neither an optax transformation nor a name,
            x (or a params leaf) not floating point, params of mixed float dtypes, x or floating y of
            another dtype than the params, non-numeric y, a key that is not a PRNG key, a non-int
            epochs or batch_size.
        ValueError: an output layer that does not suit the loss (a softmax or sigmoid output with a
            loss that takes logits; a non-sigmoid output with binary_crossentropy: the message says
            the fix; a ReLU/tanh output with a logit loss only warns); unknown loss, optimizer or
            gradient names (listing the valid ones); params or
            state that do not fit the network; x or y of the wrong shape; class labels out of range or
            targets outside [0, 1]; NaN or infinity in x, y or params; epochs or batch_size < 1,
            batch_size > n; a missing key (minibatches, Dropout) or a batch of keys; an opt_state that
            does not match `optimizer.init(params)`; validation_data that is not a pair or fails the
            same checks as (x, y).
    """
    if not isinstance(net, Network):
        raise TypeError(f"net: expected a jaxnet Network (from mlp or serial), got {type(net).__name__}")
    loss_fn = losses_lib.get(loss)
    check_output_pairing(net, loss_fn)
    grad_fn = gradient_fn(grad)
    check_positive("epochs", epochs, integer=True)
    optimizer = _optimizer_of(optimizer, hyperparams)
    x, y = check_data(net, params, x, y, loss_fn, same_dtype=True)
    check_finite_tree("params", params)
    n = x.shape[0]
    if batch_size is not None:
        check_positive("batch_size", batch_size, integer=True)
        if batch_size > n:
            raise ValueError(f"batch_size: expected at most the number of examples {n}, got {batch_size}")
        if key is None:
            raise ValueError("key: minibatch training shuffles every epoch and needs a PRNG key")
        if net.has_state and 1 in (batch_size, n % batch_size):
            raise ValueError(f"batch_size: {batch_size} leaves a step with a single example (n = {n}), whose batch "
                             f"statistics are undefined for {net.name}'s BatchNorm; choose a batch size with "
                             f"n % batch_size != 1")
    if key is None and net.is_random:
        raise ValueError(f"key: {net.name} has Dropout, whose masks are drawn from a PRNG key; pass key=")
    if key is not None:
        check_key("key", key, single=True)
    if state is None:
        state = net.init_state(x.shape[1:])
    net._check_state(params, x, state)
    if weight_decay is not None:
        check_positive("weight_decay", weight_decay, allow_zero=True)
        if isinstance(weight_decay, (int, float)) and weight_decay == 0:
            weight_decay = None
    if opt_state is None:
        opt_state = optimizer.init(params)
    else:
        check_opt_state("opt_state", opt_state, optimizer, params)
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError(f"validation_data: expected a pair (x_val, y_val), got {type(validation_data).__name__}"
                             + (f" of length {len(validation_data)}" if hasattr(validation_data, "__len__") else ""))
        val = check_data(net, params, *validation_data, loss_fn, x_name="validation_data[0]",
                         y_name="validation_data[1]", same_dtype=True)
    return FitResult(*_run(
        params, state, opt_state, x, y, key, val, weight_decay,
        net=net, loss_fn=loss_fn, grad_fn=grad_fn, update=optimizer.update,
        extra_args=isinstance(optimizer, optax.GradientTransformationExtraArgs),
        epochs=epochs, batch_size=batch_size, tutorial_scaling=tutorial_scaling,
    ))


@functools.partial(
    jax.jit,
    static_argnames=("net", "loss_fn", "grad_fn", "update", "extra_args", "epochs", "batch_size",
                     "tutorial_scaling"),
)
def _run(params, state, opt_state, x, y, key, val, weight_decay, *, net, loss_fn, grad_fn, update, extra_args, epochs,
         batch_size, tutorial_scaling):
    n = x.shape[0]

    def step(carry, batch):
        """One update on (xb, yb). `total` accumulates the epoch's sample-weighted loss; at the
        epoch's last step the optimizer sees the epoch mean."""
        params, state, opt_state, total = carry
        xb, yb, step_key, last = batch
        loss, grads = grad_fn(net, params, xb, yb, loss_fn, state=state, key=step_key, train=True,
                              weight_decay=weight_decay)
        if tutorial_scaling:
            grads = jax.tree.map(lambda g: g / xb.shape[0], grads)
        total = loss if batch_size is None else total + loss * xb.shape[0]
        if extra_args:
            value = jnp.where(last, total / n, loss) if batch_size is not None else loss
            updates, opt_state = update(grads, opt_state, params, value=value, epoch_end=last)
        else:
            updates, opt_state = update(grads, opt_state, params)
        state = net.update_state(params, state, xb, key=step_key)
        return (optax.apply_updates(params, updates), state, opt_state, total), None

    def epoch(carry, keys):
        """One epoch, guarded: if its loss or its final params are not finite, it is not applied and
        training stops (the carry keeps the epoch's starting values). `stopped_epochs` counts the
        epochs not applied; once one is, all later ones are not either."""
        shuffle_key, dropout_key = keys
        stopped_epochs, old = carry[0], carry[1:]
        stopped = stopped_epochs > 0
        new = (*old, jnp.zeros((), x.dtype))
        if batch_size is None:
            step_key = None if dropout_key is None else jax.random.fold_in(dropout_key, 0)
            new, _ = step(new, (x, y, step_key, jnp.ones((), bool)))
            loss = new[-1]
        else:
            new, loss = _minibatch_epoch(step, new, x, y, shuffle_key, dropout_key, batch_size)
        ok = ~stopped & jnp.isfinite(loss) & all_finite(new[0])
        params, state, opt_state = optax.tree_utils.tree_where(ok, new[:3], old)
        record = {"loss": jnp.where(stopped, jnp.nan, loss), "learning_rate": learning_rate_of(opt_state, loss.dtype)}
        if val is not None:
            out = net.apply(params, val[0], state=state)
            record["val_loss"] = loss_fn.value(out, val[1])
            record["val_accuracy"] = metrics.accuracy(out, val[1], from_logits=loss_fn.from_logits)
        # one record vector per epoch (one store per epoch in the scan, split after it), in a dtype
        # that holds each record exactly
        dtypes.update({name: value.dtype for name, value in record.items()})
        wide = jnp.float64 if jnp.dtype(jnp.float64) in dtypes.values() else jnp.float32
        records = jnp.stack([value.astype(wide) for value in record.values()])
        return (stopped_epochs + (~ok).astype(jnp.int32), params, state, opt_state), records

    dtypes = {}  # each record's dtype, filled in while `epoch` is traced

    init = (jnp.zeros((), jnp.int32), params, state, opt_state)
    if key is None:  # full batch without randomness: nothing to draw
        scanned, xs = (lambda c, _: epoch(c, (None, None))), None
    else:
        scanned, xs = epoch, epoch_keys(key, epochs)
    (stopped_epochs, params, state, opt_state), records = jax.lax.scan(scanned, init, xs, length=epochs)
    history = {name: records[:, i].astype(dtype) for i, (name, dtype) in enumerate(dtypes.items())}
    history["diverged_epoch"] = jnp.where(stopped_epochs > 0, epochs - stopped_epochs, -1)
    return params, state, opt_state, history


def _minibatch_epoch(step, carry, x, y, shuffle_key, dropout_key, batch_size):
    """One epoch of minibatch steps over a fresh permutation; returns the sample-weighted mean loss."""
    n = x.shape[0]
    perm = jax.random.permutation(shuffle_key, n)
    n_full = n // batch_size
    rest = n - n_full * batch_size
    idx = perm[: n_full * batch_size].reshape(n_full, batch_size)
    steps = jnp.arange(n_full)

    def full_step(c, i_j):
        i, j = i_j
        return step(c, (x[i], y[i], jax.random.fold_in(dropout_key, j), (j == n_full - 1) & (rest == 0)))

    # gather each batch inside its step: no (n, ...) shuffled copy of the data per epoch
    carry, _ = jax.lax.scan(full_step, carry, (idx, steps))
    if rest:
        tail = perm[n_full * batch_size:]
        carry, _ = step(carry, (x[tail], y[tail], jax.random.fold_in(dropout_key, n_full), jnp.ones((), bool)))
    return carry, carry[-1] / n


def _check_input_dtype(name: str, x: jax.Array, params: Params) -> None:
    dtype = float_dtype_of("params", params)
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name}: dtype {x.dtype} differs from the params' {dtype}; cast it with "
                        f"{name}.astype(jnp.{dtype}) (or the params to {x.dtype})")


def predict(net: Network, params: Params, x: jax.Array, *, state: Any = None) -> jax.Array:
    """The network's output in evaluation mode, `net.apply(params, x, state=state)`.

    Args:
        net: a `jaxnet.Network`. params: its params.
        x: inputs (batch, *input_shape) or one example, of the params' floating dtype (the same
            dtype rule as `fit` and `evaluate`; numpy float64 data becomes float32 when jax's x64
            mode is off, as `jnp.asarray` does).
        state: the network's state (required when it has BatchNorm: `fit`'s `result.state`).

    Returns:
        The output (batch, *output_shape) of the params' dtype: probabilities or values for
        sigmoid/softmax/identity outputs, logits where the network ends without an activation.

    Raises:
        TypeError: x not floating point or not of the params' dtype. ValueError: params, state or x
            that do not fit the network (a missing state for BatchNorm included).
    """
    x = as_float_array("x", x)
    _check_input_dtype("x", x, params)
    return net.apply(params, x, state=state)


def evaluate(net: Network, params: Params, x: jax.Array, y: jax.Array, loss: str | losses_lib.Loss, *,
             state: Any = None) -> dict:
    """Loss and accuracy of `net` on (x, y), in evaluation mode.

    Accuracy: for one output unit, the prediction is positive above 0 for logit losses and above 0.5
    otherwise; for several, the arg-max class (see `jaxnet.metrics.accuracy`).

    Args:
        net, params: the network and its params. x: inputs (n, *input_shape), the params' dtype.
        y: targets as the loss expects. loss: loss name or `jaxnet.losses.Loss`.
        state: the network's state (required when it has BatchNorm).

    Returns:
        {"loss": scalar, "accuracy": scalar in [0, 1]} as jax arrays of the params' dtype.

    Raises:
        ValueError / TypeError: as `fit` for params, state, x and y (shapes, dtypes, labels,
            finiteness).
    """
    loss_fn = losses_lib.get(loss)
    check_output_pairing(net, loss_fn)
    x, y = check_data(net, params, x, y, loss_fn, same_dtype=True)
    y_pred = net.apply(params, x, state=state)
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
        12 of 50 (non-finite loss or params): training stopped there, the returned params are
        those from before that epoch and the later losses are NaN", or for stacked runs "warning:
        xor: 3 of 100 runs diverged (runs [4, 17, 60], first at epoch 2) ...".

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
    tail = ("training stopped there, the returned params are those from before that epoch and the later "
            "losses are NaN; lower the learning rate")
    if np.ndim(history["diverged_epoch"]) == 0:
        return f"warning: {label} diverged at epoch {int(epochs[0])}{of} (non-finite loss or params): {tail}"
    runs = diverged.tolist()
    shown = runs if len(runs) <= 8 else runs[:8] + ["..."]
    return (f"warning: {label}: {len(runs)} of {epochs.size} runs diverged (runs {shown}, first at epoch "
            f"{int(epochs[diverged].min())}{of}, non-finite loss or params): {tail}")

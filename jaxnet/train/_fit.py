"""`fit`, `evaluate` and `predict`: the doors for one network.

`fit` validates its arguments once (`prepare`), then runs the training engine (`_core.run`) in one
jitted call. `fit_data_parallel` uses the same `prepare`, with a sharding for the batches.
"""

from __future__ import annotations

from typing import Any, NamedTuple
from collections.abc import Callable, Mapping

import jax
import numpy as np
import optax

from jaxnet import losses as losses_lib
from jaxnet import metrics
from jaxnet.nn.network import Network
from jaxnet.train import _checks, _core, _progress
from jaxnet.train._core import FitResult
from jaxnet.validate import as_float_array, check_data, check_finite_tree, float_dtype_of

Params = Any

_run = jax.jit(_core.run, static_argnums=0)


class Setup(NamedTuple):
    """A validated run: its `Plan` and the engine's array arguments (see `_core.run`)."""

    plan: _core.Plan
    params: Any
    state: Any
    opt_state: Any
    weight_decay: Any
    x: Any
    y: Any
    key: Any
    eval_sets: tuple
    progress: str | None


def prepare(net, params, x, y, *, loss, optimizer, epochs, hyperparams=None, grad="backprop", batch_size=None,
            key=None, state=None, opt_state=None, weight_decay=None, validation_data=None, evaluation=None,
            eval_every=1, eval_batch_size=None, early_stopping=None, sampling="shuffle", steps_per_epoch=None,
            tutorial_scaling=False, progress=False, door="fit", **plan_extra) -> Setup:
    """Every check of `fit`'s arguments (same names and defaults), once; the result is what the engine
    needs. `plan_extra`: further `Plan` fields (`batch_sharding` for data parallelism)."""
    _checks.check_net(net)
    loss_fn = _checks.check_loss(net, loss)
    tx = _checks.optimizer_of(optimizer, hyperparams)
    # the one params check and the one targets check of the training data
    x, y, out_shape = check_data(net, params, x, y, loss_fn, same_dtype=True, with_output_shape=True)
    check_finite_tree("params", params)
    example_shape = tuple(x.shape[1:])
    n = x.shape[0]
    steps_per_epoch = _checks.check_minibatches(net, example_shape, n, batch_size, sampling, steps_per_epoch)
    _checks.check_training_key(net, key, batch_size is not None)
    if state is None:
        state = net.init_state(example_shape)
    else:
        net.check_state(state, example_shape)
    weight_decay = _checks.check_weight_decay(weight_decay)
    if opt_state is None:
        opt_state = tx.init(params)
    else:
        _checks.check_opt_state("opt_state", opt_state, tx.init, params)
    sets = _checks.eval_sets(validation_data, evaluation)
    dtype = float_dtype_of("params", params)
    pairs = tuple(_checks.check_eval_set("validation_data" if name == "val" and validation_data is not None
                                         else f"evaluation[{name!r}]", pair, example_shape, out_shape, dtype, loss_fn)
                  for name, pair in sets.items())
    label = _checks.progress_label(progress, door)
    extra_args = isinstance(tx, optax.GradientTransformationExtraArgs)
    plan = _checks.make_plan(net, loss_fn, grad, _core.FixedUpdate(tx.update, extra_args), epochs=epochs,
                             batch_size=batch_size, sampling=sampling, steps_per_epoch=steps_per_epoch,
                             tutorial_scaling=tutorial_scaling, names=tuple(sets), eval_every=eval_every,
                             eval_batch_size=eval_batch_size, early_stopping=early_stopping,
                             progress=label is not None, **plan_extra)
    return Setup(plan, params, state, opt_state, weight_decay, x, y, key, pairs, label)


def execute(setup: Setup) -> FitResult:
    """Run a validated setup in one compiled call, with its progress bar (if any)."""
    bar = None if setup.progress is None else _progress.open_bar(setup.progress, setup.plan.epochs)
    try:
        out = _run(setup.plan, setup.params, setup.state, setup.opt_state, None, setup.weight_decay, setup.x, setup.y,
                   setup.key, setup.eval_sets, _progress.bar_operand(bar))
        if bar is not None and not _traced(out):
            out = jax.block_until_ready(out)
    finally:
        if bar is not None and not _traced(setup.params):
            _progress.close(bar)
    return FitResult(*out)


def _traced(tree) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


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
    opt_state: Any = None,
    weight_decay: float | jax.Array | None = None,
    validation_data: tuple[jax.Array, jax.Array] | None = None,
    evaluation: Mapping[str, tuple[jax.Array, jax.Array]] | None = None,
    eval_every: int = 1,
    eval_batch_size: int | None = None,
    early_stopping: str | Mapping | _core.EarlyStopping | None = None,
    sampling: str = "shuffle",
    steps_per_epoch: int | None = None,
    tutorial_scaling: bool = False,
    progress: bool | str = False,
) -> FitResult:
    """Train `net` from `params` for `epochs` epochs in one jitted `lax.scan`.

    Each step computes the loss and its gradient in training mode (`grad="backprop"`: the
    hand-derived delta recursion; `"autodiff"`: `jax.grad`; both give the same run), then applies
    `optimizer.update(grads, opt_state, params, value=..., epoch_end=...)` and, for networks with
    state (BatchNorm), `net.update_state` on the same batch with the same key.

    Batches. Full batch (`batch_size=None`): one step per epoch, and `history["loss"][t]` is the loss
    at the start of epoch t, before its update (as the tutorial records it). Minibatches,
    `sampling="shuffle"` (default): each epoch shuffles with its own key (`jaxnet.train.epoch_keys`)
    and runs `n // batch_size` full batches and then, if `n % batch_size` examples are left, one
    smaller step on exactly those: every example is used once per epoch; `history["loss"][t]` is the
    sample-weighted mean of the batch losses, each computed before its step's update.
    `sampling="replacement"`: the book's iterations (Deep Learning from Scratch 4.5, 6.5): each step
    draws `batch_size` examples with replacement, `steps_per_epoch` steps per epoch (default
    `max(n // batch_size, 1)`; 1 gives one record per iteration); the epoch's loss is the mean of
    its steps' losses.

    The optimizer's extra arguments: `value` is the step's loss, except at the last step of an epoch,
    where it is the epoch's mean loss (`history["loss"][t]`), and `epoch_end` says which step that
    is: `jaxnet.optim.plateau_decay` decides once per epoch, on that mean, as the tutorial does.

    Evaluation, early stopping, progress. Every `eval_every` epochs (after the epoch's update,
    evaluation mode) the loss and accuracy on each set of `evaluation` (and on `validation_data`,
    the set named "val") are recorded as `history["<name>_loss"]`, `history["<name>_accuracy"]`
    (NaN on the other epochs); `eval_batch_size` evaluates big sets in chunks. `early_stopping`
    (a monitored name such as "val_loss", or `jaxnet.train.EarlyStopping(monitor, patience, mode,
    min_delta)`; default patience 10 evaluations) stops when the metric has not improved for
    `patience` evaluations and returns the best epoch's params, state and optimizer state, with
    `history["best_epoch"]` and `history["stopped_epoch"]` (-1: it ran every epoch). `progress=True`
    (or a label) shows a tqdm bar advanced from inside the compiled run about 50 times (a plain
    line per tenth of the run without tqdm); no host round trip per step.

    Randomness: `key` feeds two independent streams (`jaxnet.train.epoch_keys`): the shuffles and
    the per-step keys given to the network (Dropout masks). The same key gives the same run bitwise.

    Divergence: an epoch whose loss (with minibatches: the mean of its batch losses) or final params
    are not finite is not applied, and training stops there: the returned params, state and
    optimizer state are those from before that epoch, `history["diverged_epoch"]` is that epoch
    (-1 if training never diverged) and later entries of the history are NaN. The check runs once
    per epoch.

    `fit` is a pure function of its array arguments: it works under `jax.jit` (data passed or
    captured), `jax.vmap` (over keys, learning rates, initial params) and sharding. Its arguments are
    checked once, here; the compiled run checks nothing.

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
        grad: the gradient route, 'backprop' or 'autodiff' (or a function of their signature, see
            `jaxnet.grad`).
        batch_size: minibatch size (1..n), or None for full-batch gradient descent.
        key: PRNG key; required for minibatches and for networks with Dropout.
        state: the network's initial state (default `net.init_state(x.shape[1:])`).
        opt_state: optimizer state to resume from (default `optimizer.init(params)`).
        weight_decay: the book's L2 regulariser's lambda (`jaxnet.grad.l2_penalty`: 0.5 lambda
            sum W^2 over the weights, not biases or BatchNorm parameters); added to the loss (and to
            the recorded `history["loss"]`) and its gradient `lambda W` to the weights' gradients by
            the gradient route. May be traced (vmapped in a hyperparameter search). For decoupled
            decay (AdamW, masked to the weights) use `jaxnet.regularization.adamw`.
        validation_data: optional (x_val, y_val), the evaluation set "val".
        evaluation: optional dict of named evaluation sets {name: (x, y)}.
        eval_every: evaluate every this many epochs (int >= 1).
        eval_batch_size: evaluate in chunks of this many examples (default all at once).
        early_stopping: see above (needs an evaluation set).
        sampling: 'shuffle' or 'replacement' (with `batch_size`). steps_per_epoch: with 'replacement'.
        tutorial_scaling: divide every gradient by the batch size, reproducing the tutorial's numpy
            code (which divides by m twice); equivalent to the true gradient with lr / m for SGD.
        progress: show a progress bar (True, or its label).

    Returns:
        `FitResult(params, state, opt_state, history)`; history a dict of arrays of shape (epochs,):
        'loss', 'learning_rate' (effective rate of the epoch's last update, NaN when the optimizer
        state does not expose it), '<set>_loss' and '<set>_accuracy' per evaluation set; the scalar
        'diverged_epoch' (int32), and with early stopping 'best_epoch' and 'stopped_epoch'.

    Raises (before anything is compiled; each message names the argument, the expected and the
    received value or shape; shape and dtype checks also run under jit, value checks only on
    concrete values):
        TypeError: net not a Network, an optimizer that is neither an optax transformation nor a name,
            x (or a params leaf) not floating point, params of mixed float dtypes, x or floating y of
            another dtype than the params, non-numeric y, a key that is not a PRNG key, a non-int
            epochs or batch_size, a gradient route without the route keywords.
        ValueError: an output layer that does not suit the loss (the message says the fix); unknown
            loss, optimizer, gradient or sampling names (listing the valid ones); params or state that
            do not fit the network; x or y of the wrong shape; class labels out of range or targets
            outside [0, 1]; NaN or infinity in x, y or params; epochs, batch_size or eval_every < 1,
            batch_size > n; a missing key (minibatches, Dropout) or a batch of keys; an opt_state that
            does not match `optimizer.init(params)`; evaluation sets that are not pairs or fail the
            same checks as (x, y); early stopping without an evaluation set or on a metric the run
            does not record (naming both).
    """
    return execute(prepare(net, params, x, y, loss=loss, optimizer=optimizer, epochs=epochs, hyperparams=hyperparams,
                           grad=grad, batch_size=batch_size, key=key, state=state, opt_state=opt_state,
                           weight_decay=weight_decay, validation_data=validation_data, evaluation=evaluation,
                           eval_every=eval_every, eval_batch_size=eval_batch_size, early_stopping=early_stopping,
                           sampling=sampling, steps_per_epoch=steps_per_epoch, tutorial_scaling=tutorial_scaling,
                           progress=progress))


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
    dtype = float_dtype_of("params", params)
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"x: dtype {x.dtype} differs from the params' {dtype}; cast it with "
                        f"x.astype(jnp.{dtype}) (or the params to {x.dtype})")
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
    loss_fn = _checks.check_loss(net, loss)
    x, y = check_data(net, params, x, y, loss_fn, same_dtype=True)
    y_pred = net.apply(params, x, state=state)
    return {"loss": loss_fn.value(y_pred, y), "accuracy": metrics.accuracy(y_pred, y, from_logits=loss_fn.from_logits)}


def divergence_warning(history: Mapping, label: str = "training") -> str | None:
    """A one-line warning naming the epoch at which a run diverged, or None if it did not.

    Experiments print it after `fit`, so a run whose loss became NaN or infinite never passes silently.

    Args:
        history: `fit`'s history (or a stacked one from `fit_ensemble` or `jax.vmap(fit)`, whose
            'diverged_epoch' has one entry per run).
        label: what to call the run in the message (e.g. the experiment's name).

    Returns:
        None when 'diverged_epoch' is -1 everywhere; otherwise e.g. "warning: xor diverged at epoch
        12 of 50 (non-finite loss or params): training stopped there, ..." or for stacked runs
        "warning: xor: 3 of 100 runs diverged (runs [4, 17, 60], first at epoch 2) ...".

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


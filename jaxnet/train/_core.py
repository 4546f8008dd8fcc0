"""The training engine: a pure step and epoch runner under every trainer, with no argument checks.

`run(plan, params, state, opt_state, hyper, weight_decay, x, y, key, eval_sets, bar)` trains one
network for `plan.epochs` epochs in one `lax.scan` and returns `(params, state, opt_state, history)`.
Everything static about the run (network, loss, gradient route, optimizer update, sizes, options)
is the `Plan`, a frozen dataclass compared by value: an equal plan reuses the compiled program.
The doors (`jaxnet.fit`, `jaxnet.train.fit_ensemble`, `fit_data_parallel`, `fit_multihost`)
validate their arguments once and call `run`: `fit` as it is, `fit_ensemble` under `jax.vmap` over
the members, `fit_data_parallel` with `plan.batch_sharding` splitting every batch over devices.

One epoch (`_epoch`):
1. the steps: full batch (one step), shuffled minibatches (every example once; the last, smaller
   batch is a step of its own) or minibatches drawn with replacement (the book's iterations);
   each step computes the loss and gradient in training mode (`plan.route`), applies the optimizer
   update (`optax.apply_updates`) and moves the network state (BatchNorm) on the same batch;
2. the divergence guard: an epoch whose loss or params are not finite is not applied, and training
   stops (later epochs are not applied either);
3. evaluation on the named sets every `plan.eval_every` epochs (evaluation mode, after the update);
4. early stopping on one recorded metric, keeping the best epoch's params, state and optimizer state;
5. one record vector per epoch (loss, learning rate, evaluations) and, with a progress bar, a host
   callback every `plan.progress_every` epochs (nothing else leaves the device).

Keys: `epoch_keys(key, epochs)` gives each epoch a shuffle key and a network key; step j of an epoch
gives the network `fold_in(network_key, j)` (Dropout masks), and with replacement draws its batch
from `fold_in(shuffle_key, j)`.

Source: the tutorial's training loop (loss recorded before the update); Deep Learning from
Scratch 4.5, 5.7.4, 6.5 (the book's trainer: iterations drawn with replacement, per-epoch accuracy).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxnet import metrics
from jaxnet.optim import learning_rate_of
from jaxnet.train import _progress
from jaxnet.validate import all_finite

SAMPLING = ("shuffle", "replacement")


class FitResult(NamedTuple):
    """What every trainer returns (`fit_ensemble`: each field with a leading member axis).

    params: the trained params (the input's structure, shapes and dtypes); with early stopping, those
        of the best epoch.
    state: the network's state after training (BatchNorm running statistics; a tuple of empty dicts,
        holding no arrays, for networks without state). Pass it to `predict`/`evaluate`/`net.apply`.
    opt_state: the optimizer state after the last applied update (with early stopping: after the
        best epoch's); pass it back as `opt_state=` to resume.
    history: dict of per-epoch arrays (see `jaxnet.fit`).
    """

    params: Any
    state: Any
    opt_state: Any
    history: dict


class EarlyStopping(NamedTuple):
    """Stop when a recorded metric has not improved for `patience` evaluations.

    monitor: a history entry computed by evaluation, `"<set>_loss"` or `"<set>_accuracy"` (e.g.
        "val_loss" for `validation_data`).
    patience: evaluations without improvement before training stops (int >= 1; with `eval_every=1`,
        epochs).
    mode: "min" (losses), "max" (accuracies), or "auto" (max for names ending in "accuracy").
    min_delta: the improvement that counts: value < best - min_delta ("min"), > best + min_delta ("max").

    The run returns the params, state and optimizer state of the best epoch, and `history` gets
    "best_epoch" (-1 if no evaluation was finite) and "stopped_epoch" (the epoch whose evaluation
    ended the run, -1 if it ran every epoch); the entries of later epochs are NaN.
    """

    monitor: str = "val_loss"
    patience: int = 10
    mode: str = "auto"
    min_delta: float = 0.0

    @property
    def maximize(self) -> bool:
        return self.mode == "max" or (self.mode == "auto" and self.monitor.endswith("accuracy"))


def epoch_keys(key: jax.Array, epochs: int) -> tuple[jax.Array, jax.Array]:
    """The two independent key streams of a run: `(shuffle_keys, network_keys)`, each of shape (epochs,).

    Epoch t shuffles with `jax.random.permutation(shuffle_keys[t], n)` (or, drawing with replacement,
    step j takes `jax.random.randint(fold_in(shuffle_keys[t], j), (batch_size,), 0, n)`); its step j
    (0-based, the smaller last step last) gives the network the key `fold_in(network_keys[t], j)`,
    which the network folds per layer. Shuffling and dropout never share a stream, and no key is
    used twice. Derivation: `split(fold_in(key, 0), epochs)` and `split(fold_in(key, 1), epochs)`.
    """
    return (jax.random.split(jax.random.fold_in(key, 0), epochs),
            jax.random.split(jax.random.fold_in(key, 1), epochs))


def _no_init(params):
    raise NotImplementedError("the training engine never initialises an optimizer: the door does")


@dataclasses.dataclass(frozen=True)
class FixedUpdate:
    """An optax transformation's `update`, with or without extra arguments (`optax.with_extra_args_support`
    forwards the loss `value` and `epoch_end` only to one that takes them). Compared by value: a
    `jaxnet.optim.optimizer` update (an `OptimizerSpec`) is equal for every learning rate."""

    update: Callable
    extra_args: bool

    def __call__(self, hyper, grads, opt_state, params, **extra):
        del hyper
        kind = optax.GradientTransformationExtraArgs if self.extra_args else optax.GradientTransformation
        tx = optax.with_extra_args_support(kind(_no_init, self.update))
        return tx.update(grads, opt_state, params, **extra)


@dataclasses.dataclass(frozen=True)
class BuiltUpdate:
    """The update of the optimizer `make(hyper)` built inside the run from traced hyperparameters
    (`fit_ensemble`'s per-member learning rates...)."""

    make: Callable

    def __call__(self, hyper, grads, opt_state, params, **extra):
        return optax.with_extra_args_support(self.make(hyper)).update(grads, opt_state, params, **extra)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything static about a training run (the compiled program's cache key); see the module
    docstring. Built by the doors after validation; nothing here is checked again."""

    net: Any
    loss: Any  # a jaxnet.losses.Loss
    route: Callable  # an unchecked gradient route (jaxnet.grad.unchecked)
    update: Callable  # FixedUpdate or BuiltUpdate
    epochs: int
    batch_size: int | None = None
    sampling: str = "shuffle"
    steps_per_epoch: int = 1  # with replacement
    tutorial_scaling: bool = False
    eval_names: tuple[str, ...] = ()
    eval_every: int = 1
    eval_batch_size: int | None = None
    early_stopping: EarlyStopping | None = None
    progress_every: int | None = None  # None: no progress callbacks
    batch_sharding: Any = None  # a NamedSharding splitting each batch (data parallel)
    keep_history: str = "full"  # or "last": only the last epoch's records


def run(plan: Plan, params, state, opt_state, hyper, weight_decay, x, y, key, eval_sets, bar):
    """Train for `plan.epochs` epochs in one `lax.scan`; returns (params, state, opt_state, history).

    Arguments as validated by a door: x (n, *input_shape) and y in the params' dtype (or integer
    labels), `key` a PRNG key or None (full batch without randomness), `eval_sets` a tuple of (x, y)
    pairs named by `plan.eval_names`, `hyper` the traced hyperparameters of a `BuiltUpdate` (else
    None), `weight_decay` None or a scalar, `bar` the progress bar's id (int32) or None.
    """
    n = x.shape[0]
    net = plan.net
    value_fn, _ = plan.loss.fast
    dtypes: dict = {}  # each record's dtype, filled in while `epoch` is traced

    def step(carry, batch):
        """One update on (xb, yb); `total` accumulates the epoch's sample-weighted loss. At the
        epoch's last step the optimizer sees the epoch's mean loss (the plateau decay decides on it)."""
        params, state, opt_state, total = carry
        xb, yb, step_key, last, epoch_size = batch
        if plan.batch_sharding is not None:
            xb = jax.lax.with_sharding_constraint(xb, plan.batch_sharding)
            yb = jax.lax.with_sharding_constraint(yb, plan.batch_sharding)
        loss, grads = plan.route(net, params, xb, yb, plan.loss, state=state, key=step_key, train=True,
                                 weight_decay=weight_decay)
        if plan.tutorial_scaling:
            grads = jax.tree.map(lambda g: g / xb.shape[0], grads)
        if plan.batch_size is None:  # the step is the epoch
            total = value = loss
        else:
            total = total + loss * xb.shape[0]
            value = jnp.where(last, total / epoch_size, loss)
        updates, opt_state = plan.update(hyper, grads, opt_state, params, value=value, epoch_end=last)
        state = net._update_state(params, state, xb, key=step_key)
        return (optax.apply_updates(params, updates), state, opt_state, total), None

    def train_epoch(carry, shuffle_key, network_key):
        """The epoch's steps from `carry` = (params, state, opt_state); returns the new carry and the
        epoch's loss (the sample-weighted mean of its batch losses, each before its step)."""
        start = (*carry, jnp.zeros((), x.dtype))
        if plan.batch_size is None:
            step_key = None if network_key is None else jax.random.fold_in(network_key, 0)
            new, _ = step(start, (x, y, step_key, jnp.ones((), bool), n))
            return new[:3], new[3]
        if plan.sampling == "replacement":
            new = _replacement_epoch(step, start, x, y, shuffle_key, network_key, plan)
            return new[:3], new[3] / (plan.batch_size * plan.steps_per_epoch)
        new = _shuffled_epoch(step, start, x, y, shuffle_key, network_key, plan.batch_size)
        return new[:3], new[3] / n

    def evaluate(params, state):
        record = {}
        for name, (xe, ye) in zip(plan.eval_names, eval_sets):
            out = _outputs(net, params, state, xe, plan.eval_batch_size)
            record[f"{name}_loss"] = value_fn(out, ye)
            record[f"{name}_accuracy"] = metrics.accuracy(out, ye, from_logits=plan.loss.from_logits)
        return record

    def epoch(carry, inputs):
        t, shuffle_key, network_key = inputs
        status, live, best = carry
        halted = status["halted"]  # diverged or stopped early before this epoch: nothing is applied
        if plan.early_stopping is None:
            new, loss = train_epoch(live, shuffle_key, network_key)
        else:  # after an early stop the remaining epochs cost nothing (outside vmap)
            new, loss = jax.lax.cond(halted, lambda: (live, jnp.full((), jnp.nan, x.dtype)),
                                     lambda: train_epoch(live, shuffle_key, network_key))
        ok = ~halted & jnp.isfinite(loss) & all_finite(new[0])
        live = optax.tree_utils.tree_where(ok, new, live)
        record = {"loss": jnp.where(halted, jnp.nan, loss), "learning_rate": learning_rate_of(live[2], loss.dtype)}
        if plan.eval_names:
            evaluated = _every(plan.eval_every, t, lambda: evaluate(*live[:2]), _nan_like(evaluate, *live[:2]))
            record.update({k: jnp.where(halted, jnp.nan, v) for k, v in evaluated.items()})
        diverged = ~halted & ~ok
        status = {**status, "halted": halted | diverged,
                  "diverged_epoch": jnp.where(diverged, t, status["diverged_epoch"])}
        if plan.early_stopping is not None:
            status, best = _early_stop(plan.early_stopping, t, status, best, live, record[plan.early_stopping.monitor])
        if plan.progress_every is not None:
            _progress.tick_every(plan.progress_every, plan.epochs, bar, t)
        # one record vector per epoch (one store per epoch in the scan, split after it), in a dtype
        # that holds each record exactly
        dtypes.update({name: value.dtype for name, value in record.items()})
        wide = jnp.float64 if jnp.dtype(jnp.float64) in dtypes.values() else jnp.float32
        return (status, live, best), jnp.stack([value.astype(wide) for value in record.values()])

    status = {"halted": jnp.zeros((), bool), "diverged_epoch": jnp.full((), -1, jnp.int32)}
    best = None
    if plan.early_stopping is not None:
        status.update(wait=jnp.zeros((), jnp.int32), best_epoch=jnp.full((), -1, jnp.int32),
                      stopped_epoch=jnp.full((), -1, jnp.int32),
                      best_value=jnp.full((), -jnp.inf if plan.early_stopping.maximize else jnp.inf, x.dtype))
        best = (params, state, opt_state)
    if key is None:  # full batch without randomness: nothing to draw
        shuffle_keys = network_keys = None
    else:
        shuffle_keys, network_keys = epoch_keys(key, plan.epochs)
    epochs = jnp.arange(plan.epochs, dtype=jnp.int32)
    (status, live, best), records = jax.lax.scan(epoch, (status, (params, state, opt_state), best),
                                                 (epochs, shuffle_keys, network_keys))
    if plan.keep_history == "last":
        records = records[-1]
    history = {name: records[..., i].astype(dtype) for i, (name, dtype) in enumerate(dtypes.items())}
    history["diverged_epoch"] = status["diverged_epoch"]
    params, state, opt_state = live
    if plan.early_stopping is not None:
        params, state, opt_state = optax.tree_utils.tree_where(status["best_epoch"] >= 0, best, live)
        history["best_epoch"] = status["best_epoch"]
        history["stopped_epoch"] = status["stopped_epoch"]
    return params, state, opt_state, history


def _every(k: int, t, compute: Callable, fallback: Callable) -> dict:
    """`compute()` on epochs t with (t + 1) % k == 0, NaN records (`fallback()`) on the others."""
    if k == 1:
        return compute()
    return jax.lax.cond((t + 1) % k == 0, compute, fallback)


def _nan_like(fn: Callable, *args) -> Callable:
    """A function returning NaN arrays of the shapes and dtypes of `fn(*args)`'s records."""
    def nan():
        shapes = jax.eval_shape(fn, *args)
        return jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), shapes)
    return nan


def _outputs(net, params, state, x, batch_size):
    """The network's evaluation-mode output on x, `batch_size` examples at a time (None: all at once),
    so that a big evaluation set never needs all its intermediates at once (im2col)."""
    if batch_size is None or batch_size >= x.shape[0]:
        return net._forward(params, x, state=state)[-1]
    n = x.shape[0]
    chunks = -(-n // batch_size)
    padded = jnp.concatenate([x, jnp.zeros((chunks * batch_size - n, *x.shape[1:]), x.dtype)])
    out = jax.lax.map(lambda xb: net._forward(params, xb, state=state)[-1],
                      padded.reshape(chunks, batch_size, *x.shape[1:]))
    return out.reshape(chunks * batch_size, *out.shape[2:])[:n]


def _early_stop(rule: EarlyStopping, t, status, best, live, value):
    """The early-stopping status after epoch t, whose monitored `value` is NaN when it was not
    evaluated (then it neither improves nor counts). Improving keeps `live` as the best."""
    value = value.astype(status["best_value"].dtype)
    evaluated = ~jnp.isnan(value) & ~status["halted"]
    top = status["best_value"]
    better = value > top + rule.min_delta if rule.maximize else value < top - rule.min_delta
    improved = evaluated & better
    wait = jnp.where(improved, 0, status["wait"] + evaluated.astype(jnp.int32))
    stop = evaluated & (wait >= rule.patience)
    status = {**status, "wait": wait, "halted": status["halted"] | stop,
              "best_value": jnp.where(improved, value, status["best_value"]),
              "best_epoch": jnp.where(improved, t, status["best_epoch"]),
              "stopped_epoch": jnp.where(stop, t, status["stopped_epoch"])}
    return status, optax.tree_utils.tree_where(improved, live, best)


def _shuffled_epoch(step, carry, x, y, shuffle_key, network_key, batch_size):
    """One epoch of minibatch steps over a fresh permutation: `n // batch_size` full batches, then one
    smaller step on the rest (every example used exactly once)."""
    n = x.shape[0]
    perm = jax.random.permutation(shuffle_key, n)
    n_full = n // batch_size
    rest = n - n_full * batch_size
    idx = perm[: n_full * batch_size].reshape(n_full, batch_size)

    def full_step(c, i_j):
        i, j = i_j
        return step(c, (x[i], y[i], jax.random.fold_in(network_key, j), (j == n_full - 1) & (rest == 0), n))

    # each batch is gathered inside its step: no (n, ...) shuffled copy of the data per epoch
    carry, _ = jax.lax.scan(full_step, carry, (idx, jnp.arange(n_full)))
    if rest:
        tail = perm[n_full * batch_size:]
        carry, _ = step(carry, (x[tail], y[tail], jax.random.fold_in(network_key, n_full), jnp.ones((), bool), n))
    return carry


def _replacement_epoch(step, carry, x, y, shuffle_key, network_key, plan: Plan):
    """`plan.steps_per_epoch` steps, each on `plan.batch_size` examples drawn with replacement (the
    book's `np.random.choice(train_size, batch_size)`)."""
    n, size, steps = x.shape[0], plan.batch_size, plan.steps_per_epoch

    def one(c, j):
        i = jax.random.randint(jax.random.fold_in(shuffle_key, j), (size,), 0, n)
        return step(c, (x[i], y[i], jax.random.fold_in(network_key, j), j == steps - 1, size * steps))

    carry, _ = jax.lax.scan(one, carry, jnp.arange(steps))
    return carry

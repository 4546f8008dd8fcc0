"""The training doors' argument checks: everything `fit`, `fit_ensemble` and `fit_data_parallel`
validate once, before the engine (`_core.run`) is traced, turned into a `Plan`.

Each check raises a ValueError (values, shapes) or TypeError (types, dtypes) whose message starts
with the argument's name. Shapes and dtypes are checked on tracers too; values only when concrete.
"""

from __future__ import annotations

import numbers
from typing import Any
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnet import losses as losses_lib
from jaxnet import optim
from jaxnet.grad import route, unchecked
from jaxnet.nn.network import Network
from jaxnet.train import _progress
from jaxnet.train._core import SAMPLING, EarlyStopping, Plan
from jaxnet.validate import (as_array, as_float_array, check_batch_statistics, check_finite, check_key,
                             check_output_pairing, check_positive, check_targets)


def check_net(net: Any) -> Network:
    if not isinstance(net, Network):
        raise TypeError(f"net: expected a jaxnet Network (from jaxnet.mlp or jaxnet.serial), got {type(net).__name__}")
    return net


def check_loss(net: Network, loss: Any) -> losses_lib.Loss:
    loss_fn = losses_lib.get(loss)
    check_output_pairing(net, loss_fn)
    return loss_fn


def optimizer_of(optimizer: Any, hyperparams: Mapping | None) -> optax.GradientTransformation:
    """An optax transformation from `fit`'s optimizer argument: an optax object, or a name with
    `hyperparams` (`jaxnet.optim.optimizer`'s arguments)."""
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


def check_opt_state(name: str, opt_state: Any, init: Any, params: Any) -> None:
    """Check that `opt_state` has the structure, shapes and dtypes of `init(params)` (an optimizer's
    `init`), compared through `jax.eval_shape` (nothing is computed); works on tracers.

    Raises:
        ValueError: another structure (e.g. a state of another optimizer), or a leaf of another
            shape or dtype (e.g. a state for another architecture), naming the leaf.
    """
    expected = jax.eval_shape(init, params)
    exp_leaves, exp_def = jax.tree_util.tree_flatten_with_path(expected)
    got_leaves, got_def = jax.tree_util.tree_flatten_with_path(opt_state)
    if exp_def != got_def:
        raise ValueError(f"{name}: expected the structure of optimizer.init(params), {_summary(expected)} holding "
                         f"{len(exp_leaves)} arrays, got {_summary(opt_state)} holding {len(got_leaves)} arrays "
                         f"(a state of another optimizer?)")
    for (path, e), (_, g) in zip(exp_leaves, got_leaves):
        g_shape, g_dtype = tuple(np.shape(g)), jnp.result_type(g)
        if g_shape != tuple(e.shape) or g_dtype != e.dtype:
            raise ValueError(f"{name}{jax.tree_util.keystr(path)}: expected {e.dtype} {tuple(e.shape)} as in "
                             f"optimizer.init(params), got {g_dtype} {g_shape}")


def _summary(tree: Any) -> str:
    """A short name for a pytree's top level, e.g. 'a tuple (ScaleByAdamState, EmptyState)'."""
    name = type(tree).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    if isinstance(tree, (tuple, list)) and not hasattr(type(tree), "_fields"):
        return f"{article} {name} ({', '.join(type(child).__name__ for child in tree)})"
    return f"{article} {name}"


def check_minibatches(net: Network, example_shape: tuple, n: int, batch_size: Any, sampling: str,
                      steps_per_epoch: Any) -> int:
    """Check batch_size, sampling and steps_per_epoch for n examples of `example_shape` (every step
    must give each BatchNorm layer two or more values per channel: `check_batch_statistics`); return
    the steps per epoch of sampling with replacement (1 otherwise)."""
    if sampling not in SAMPLING:
        raise ValueError(f"sampling: expected one of {SAMPLING}, got {sampling!r}")
    if batch_size is None:
        if sampling != "shuffle" or steps_per_epoch is not None:
            raise ValueError(f"batch_size: sampling={sampling!r} and steps_per_epoch need minibatches; pass batch_size")
        check_batch_statistics(net, example_shape, None, n)
        return 1
    check_positive("batch_size", batch_size, integer=True)
    if batch_size > n and sampling == "shuffle":
        raise ValueError(f"batch_size: expected at most the number of examples {n}, got {batch_size}")
    # with replacement every step holds batch_size examples
    check_batch_statistics(net, example_shape, batch_size, n if sampling == "shuffle" else batch_size)
    if sampling == "shuffle":
        if steps_per_epoch is not None:
            raise ValueError("steps_per_epoch: only with sampling='replacement' (a shuffled epoch uses every "
                             "example once)")
        return 1
    if steps_per_epoch is None:
        return max(n // batch_size, 1)  # the book's iter_per_epoch = max(train_size / batch_size, 1)
    check_positive("steps_per_epoch", steps_per_epoch, integer=True)
    return int(steps_per_epoch)


def check_weight_decay(weight_decay: Any) -> Any:
    """None for no decay (None or a Python 0); otherwise a non-negative number or array (traced ok)."""
    if weight_decay is None:
        return None
    check_positive("weight_decay", weight_decay, allow_zero=True)
    if isinstance(weight_decay, numbers.Real) and weight_decay == 0:
        return None
    return weight_decay


def eval_sets(validation_data: Any, evaluation: Any) -> dict:
    """The named evaluation sets: `evaluation` (a dict name -> (x, y)) plus `validation_data` as "val"."""
    sets = {}
    if evaluation is not None:
        if not isinstance(evaluation, Mapping):
            raise TypeError(f"evaluation: expected a dict of named (x, y) pairs, e.g. {{'test': (x_test, y_test)}}, "
                            f"got {type(evaluation).__name__}")
        for name in evaluation:
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"evaluation: set names must be identifiers (they prefix history entries "
                                 f"'<name>_loss'), got {name!r}")
        sets.update(evaluation)
    if validation_data is not None:
        if "val" in sets:
            raise ValueError("validation_data: it is the evaluation set 'val'; evaluation= names one 'val' already")
        sets["val"] = validation_data
    return sets


def check_eval_set(name: str, pair: Any, example_shape: tuple, out_shape: tuple, dtype: Any,
                   loss_fn: losses_lib.Loss) -> tuple[jax.Array, jax.Array]:
    """One evaluation set (x_e, y_e): examples of the training data's shape and dtype, targets for the
    loss (no second check of the params: the training data's check covers them)."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        got = type(pair).__name__ + (f" of length {len(pair)}" if hasattr(pair, "__len__") else "")
        raise ValueError(f"{name}: expected a pair (x_val, y_val), got {got}")
    xe = as_float_array(f"{name}[0]", pair[0])
    ye = as_array(f"{name}[1]", pair[1], "an array of targets")
    if xe.ndim == 0 or tuple(xe.shape[1:]) != tuple(example_shape) or xe.shape[0] == 0:
        raise ValueError(f"{name}[0]: expected shape (n, {', '.join(map(str, example_shape))}) with n >= 1, as the "
                         f"training data x, got {tuple(xe.shape)}")
    if dtype is not None and xe.dtype != dtype:
        raise TypeError(f"{name}[0]: dtype {xe.dtype} differs from the params' {dtype}; cast it with .astype")
    if ye.shape[:1] != xe.shape[:1]:
        raise ValueError(f"{name}[1]: expected {xe.shape[0]} rows to match {name}[0], got shape {tuple(ye.shape)}")
    check_targets(f"{name}[1]", ye, (xe.shape[0], *out_shape), loss_fn, pred_name="the network's output")
    if jnp.issubdtype(ye.dtype, jnp.floating) and dtype is not None and ye.dtype != dtype:
        raise TypeError(f"{name}[1]: dtype {ye.dtype} differs from the params' {dtype}; cast it with .astype")
    check_finite(f"{name}[0]", xe)
    return xe, ye


def check_early_stopping(early_stopping: Any, names: tuple[str, ...]) -> EarlyStopping | None:
    """`early_stopping` (None, a monitored name, a dict of `EarlyStopping` fields or an `EarlyStopping`)
    against the recorded evaluation names."""
    if early_stopping is None:
        return None
    if isinstance(early_stopping, str):
        rule = EarlyStopping(monitor=early_stopping)
    elif isinstance(early_stopping, Mapping):
        try:
            rule = EarlyStopping(**early_stopping)
        except TypeError as err:
            raise TypeError(f"early_stopping: expected the fields of jaxnet.train.EarlyStopping "
                            f"{EarlyStopping._fields}, got {sorted(early_stopping)}") from err
    elif isinstance(early_stopping, EarlyStopping):
        rule = early_stopping
    else:
        raise TypeError(f"early_stopping: expected a metric name such as 'val_loss', a dict or a "
                        f"jaxnet.train.EarlyStopping, got {type(early_stopping).__name__}")
    recorded = [f"{name}_{metric}" for name in names for metric in ("loss", "accuracy")]
    if not recorded:
        raise ValueError(f"early_stopping: monitors {rule.monitor!r}, but the run records no evaluation; pass "
                         f"validation_data=(x_val, y_val) or evaluation={{name: (x, y)}} (early_stopping and "
                         f"validation_data go together)")
    if rule.monitor not in recorded:
        raise ValueError(f"early_stopping: monitors {rule.monitor!r}, which the run does not record; the evaluation "
                         f"sets give {recorded}")
    check_positive("early_stopping.patience", rule.patience, integer=True)
    if rule.mode not in ("auto", "min", "max"):
        raise ValueError(f"early_stopping.mode: expected 'auto', 'min' or 'max', got {rule.mode!r}")
    check_positive("early_stopping.min_delta", rule.min_delta, allow_zero=True)
    return rule._replace(min_delta=float(rule.min_delta))


def progress_label(progress: Any, default: str) -> str | None:
    if progress is False or progress is None:
        return None
    if progress is True:
        return default
    if isinstance(progress, str):
        return progress
    raise TypeError(f"progress: expected a bool or a label (str), got {type(progress).__name__}")


def check_training_key(net: Network, key: Any, minibatches: bool, single: bool = True) -> None:
    if key is None:
        if minibatches:
            raise ValueError("key: minibatch training shuffles every epoch (or draws its batches) and needs a PRNG key")
        if net.is_random:
            raise ValueError(f"key: {net.name} has Dropout, whose masks are drawn from a PRNG key; pass key=")
        return
    check_key("key", key, single=single)


def make_plan(net: Network, loss_fn: losses_lib.Loss, grad: Any, update: Any, *, epochs: int,
              batch_size: int | None, sampling: str, steps_per_epoch: int, tutorial_scaling: bool,
              names: tuple[str, ...], eval_every: Any, eval_batch_size: Any, early_stopping: Any,
              progress: bool, **extra: Any) -> Plan:
    """The static `Plan` of a validated run (epochs, the evaluation and progress options checked here)."""
    check_positive("epochs", epochs, integer=True)
    check_positive("eval_every", eval_every, integer=True)
    if eval_batch_size is not None:
        check_positive("eval_batch_size", eval_batch_size, integer=True)
    return Plan(net=net, loss=loss_fn, route=unchecked(route(grad)), update=update, epochs=int(epochs),
                batch_size=batch_size, sampling=sampling, steps_per_epoch=steps_per_epoch,
                tutorial_scaling=bool(tutorial_scaling), eval_names=names, eval_every=int(eval_every),
                eval_batch_size=eval_batch_size, early_stopping=check_early_stopping(early_stopping, names),
                progress_every=_progress.every(epochs) if progress else None, **extra)

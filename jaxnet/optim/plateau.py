"""The tutorial's plateau learning-rate decay, and reading the learning rate back from a state.

The plateau decay (`plateau_decay`, or `optimizer(..., plateau=True)`) is the tutorial's rule, exactly:

    best = +inf, wait = 0                                # before the first epoch
    at the end of epoch t, with that epoch's loss L_t:
        if L_t < best:  best = L_t; wait = 0            # strictly lower; NaN never is
        else:           wait += 1
                        if wait == patience: lr *= factor; wait = 0      # best is kept
    epoch t's update uses the rate decided by L_0 .. L_{t-1}

so with a constant loss the first decay is decided by epoch `patience` (the `patience`-th epoch that
does not improve on epoch 0) and first used by epoch `patience + 1`. Source: the tutorial's schedule
class (factor 0.95, patience 100); optax.contrib.reduce_on_plateau.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from typing import Any, NamedTuple
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax.contrib import ReduceLROnPlateauState, reduce_on_plateau

from jaxnet.optim._precision import state_dtype
from jaxnet.validate import check_positive, is_concrete

# reduce_on_plateau counts a value as an improvement when `value < (1 - rtol) * best - atol`, and
# refuses rtol = atol = 0. With atol = 0 and an rtol below half the float64 machine epsilon,
# `1 - rtol` is exactly 1.0 (a Python float), so the test is `value < 1.0 * best - 0.0`, i.e.
# exactly `value < best` for every float32/float64 value, +/-0, +/-inf and NaN.
EXACT_RTOL = 1e-20
assert 1.0 - EXACT_RTOL == 1.0



class PlateauDecayState(NamedTuple):
    """State of `plateau_decay`.

    scale: the multiplier applied to the current step's update, i.e. this epoch's learning rate
        divided by the initial one (scalar, float32; float64 when a params leaf is float64).
    plateau: optax's `ReduceLROnPlateauState` after seeing this step's loss; its `scale` is the
        multiplier of the *next* step, `best_value` the best loss so far, `plateau_count` the
        tutorial's `wait` counter.
    patience: the number of non-improving steps that triggers a decay (int32 scalar; in the state, so
        that it may differ between the members of a vmapped run).
    """

    scale: jax.Array
    plateau: ReduceLROnPlateauState
    patience: jax.Array



@dataclasses.dataclass(frozen=True)
class PlateauDecay:
    """The update function of `plateau_decay` for one (factor, accumulation_size); the patience is read
    from the state. Compared and hashed by value, so equal settings share `fit`'s compiled run."""

    factor: float
    accumulation_size: int = 1

    def _inner(self, patience) -> optax.GradientTransformationExtraArgs:
        return reduce_on_plateau(factor=self.factor, patience=patience, rtol=EXACT_RTOL, atol=0.0,
                                 accumulation_size=self.accumulation_size)

    def init(self, params: Any, patience: int | jax.Array) -> PlateauDecayState:
        """The state before the first step: scale 1, no best loss yet, `patience` stored (int32)."""
        state = self._inner(patience).init(jnp.zeros((), state_dtype(params)))
        return PlateauDecayState(scale=state.scale, plateau=state, patience=jnp.asarray(patience).astype(jnp.int32))

    def __call__(self, updates, state: PlateauDecayState, params=None, *, value, epoch_end=True, **extra_args):
        del params, extra_args
        scale = state.plateau.scale  # decided by the losses of the earlier steps
        # optax 0.2.8's reduce_on_plateau multiplies its int32 count with float values (an implicit
        # promotion that jax's strict mode rejects): run it under standard promotion, keep the dtypes.
        with jax.numpy_dtype_promotion("standard"):
            _, plateau = self._inner(state.patience).update((), state.plateau, value=value)  # decides the next
        plateau = optax.tree_utils.tree_cast_like(plateau, state.plateau)
        if epoch_end is not True:  # fit's minibatch steps: only the epoch's last step decides
            plateau = optax.tree_utils.tree_where(jnp.asarray(epoch_end), plateau, state.plateau)
        updates = jax.tree.map(lambda g: (g.astype(scale.dtype) * scale).astype(g.dtype), updates)
        return updates, state._replace(scale=scale, plateau=plateau)


def plateau_decay(
    factor: float = 0.95, patience: int | jax.Array = 100, *, accumulation_size: int = 1
) -> optax.GradientTransformationExtraArgs:
    """The tutorial's plateau learning-rate decay as an optax transformation (built on
    `optax.contrib.reduce_on_plateau`).

    Multiplies each update by the current scale (1 at the start); the scale is multiplied by `factor`
    after `patience` consecutive steps whose loss (`update(..., value=loss)`) is not strictly lower
    than the best loss so far (the counter then restarts and the best loss is kept). NaN and +inf never
    improve on anything, -inf improves on any other best, nothing raises. The decision taken on
    step t's loss scales step t + 1's update, as in the tutorial, whose loop updates the weights and
    then steps the schedule with that epoch's loss (optax's own `reduce_on_plateau` would already
    scale step t's update; see the module docstring and docs/lr_schedule.md).

    Settings: `reduce_on_plateau(factor, patience, rtol=EXACT_RTOL, atol=0)`: this rtol is so small that
    `1 - rtol == 1.0`, which makes optax's test `value < (1 - rtol) * best - atol` exactly the
    tutorial's strict `value < best` (tests/test_optim.py checks this against the tutorial's class).
    One limit is XLA's, not optax's: the CPU backend reads subnormal floats (below 1.2e-38 in float32,
    2.2e-308 in float64) as zero in compiled code, so such a loss passed in from outside compares as 0;
    losses computed by XLA, as in `fit`, are never subnormal there.

    Chain it after an optimizer (`optax.chain(optax.sgd(lr), plateau_decay())`) or use
    `optimizer(name, lr, plateau=True)`. Once per epoch: `fit` passes `value=` and `epoch_end=`, and
    only the epoch's last step decides, on the epoch's mean training loss (the loss `history["loss"]`
    records), whatever the batch size; with full batches every step is an epoch's last. Called
    directly without `epoch_end`, every update decides.

    Args:
        factor: multiplier per decay, a Python float in (0, 1); the tutorial's `decay_rate` 0.95.
        patience: number of non-improving steps that triggers a decay, an int >= 1 (100 in the
            tutorial); may be a traced integer scalar (e.g. under `jax.vmap`): it is kept in the state.
        accumulation_size: number of decisions' `value`s averaged (unweighted) before each decision; 1
            (the default) decides on every value it is given (in `fit`, once per epoch).

    Returns:
        An `optax.GradientTransformationExtraArgs` with state `PlateauDecayState` (scale and best loss
        in float32, or float64 for float64 params); `update` requires the keyword argument `value` (a
        scalar loss) and takes `epoch_end=` (a bool, default True: decide now). Its `update` is a
        `PlateauDecay`, equal for equal factor and accumulation_size (whatever the patience),
        so `fit` does not recompile.

    Raises:
        ValueError: factor outside (0, 1), patience or accumulation_size below 1.
        TypeError: patience or accumulation_size not an int (or, for patience, an integer scalar).
    """
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not 0.0 < float(factor) < 1.0:
        raise ValueError(f"factor: expected a float in (0, 1) (the rate is multiplied by it), got {factor!r}")
    if is_concrete(patience):
        if isinstance(patience, (jax.Array, np.ndarray)) and np.ndim(patience) == 0 and \
                np.issubdtype(np.asarray(patience).dtype, np.integer):
            patience = int(patience)
        check_positive("patience", patience, integer=True)
    elif not (jnp.ndim(patience) == 0 and jnp.issubdtype(jnp.result_type(patience), jnp.integer)):
        raise TypeError(f"patience: expected an int or an integer scalar, got {patience!r}")
    check_positive("accumulation_size", accumulation_size, integer=True)
    update = PlateauDecay(float(factor), int(accumulation_size))
    return optax.GradientTransformationExtraArgs(functools.partial(update.init, patience=patience), update)


def _plateau_args(plateau: Any) -> dict | None:
    """`optimizer`'s `plateau` option as complete plateau_decay keyword arguments (None: no decay)."""
    if plateau is None or plateau is False:
        return None
    args = {"factor": 0.95, "patience": 100, "accumulation_size": 1}
    if plateau is True:
        return args
    if isinstance(plateau, Mapping):
        unknown = set(plateau) - set(args)
        if unknown:
            raise ValueError(f"plateau: unknown keys {sorted(unknown)}; expected factor, patience, accumulation_size")
        return {**args, **plateau}
    if isinstance(plateau, (tuple, list)) and len(plateau) == 2:
        return {**args, "factor": plateau[0], "patience": plateau[1]}
    raise ValueError(f"plateau: expected True, (factor, patience) or a dict of plateau_decay arguments, "
                     f"got {plateau!r}")



# ----------------------------------------------------------------------------------------------
# Reading the learning rate back
# ----------------------------------------------------------------------------------------------


def learning_rate_of(opt_state: Any, dtype=jnp.float32, *, upcoming: bool = False) -> jax.Array:
    """The effective learning rate recorded in an optimizer state, or NaN when it holds none.

    The product of every injected `hyperparams["learning_rate"]` and every plateau scale found in the
    state pytree (read with `optax.tree_utils.tree_get_all_with_path`): for a `PlateauDecayState`, the
    scale applied to the step that produced the state (or, with `upcoming=True`, the scale already
    decided for the next step); for optax's own `ReduceLROnPlateauState` (outside a `PlateauDecayState`),
    its `scale`. For `fit`'s states, this is the rate of that epoch's update.

    Returns: a scalar of `dtype` (jittable).
    """
    find = optax.tree_utils.tree_get_all_with_path
    rates = [value for _, value in find(opt_state, "learning_rate", filtering=lambda _, v: hasattr(v, "dtype"))]
    rates += [node.plateau.scale if upcoming else node.scale for _, node in find(opt_state, "PlateauDecayState")]
    rates += [node.scale for _, node in find(opt_state, "ReduceLROnPlateauState", filtering=_outside_plateau_decay)]
    if not rates:
        return jnp.full((), jnp.nan, dtype)
    return functools.reduce(lambda a, b: a * b, [jnp.asarray(r).astype(dtype) for r in rates])


def _outside_plateau_decay(path: tuple, _) -> bool:
    """Whether a node found by `tree_get_all_with_path` is not the inner state of a `PlateauDecayState`."""
    return not any(getattr(key, "tuple_name", None) == "PlateauDecayState" for key in path)


def decays(history: Mapping | np.ndarray | jax.Array, final_state: Any = None) -> list[tuple[int, float]]:
    """The learning-rate decays of a run, as the tutorial prints them: `[(epoch, new_rate), ...]`.

    `epoch` is the epoch whose loss triggered the decay (the `patience`-th one without improvement);
    `new_rate` is the rate used from the next epoch on. They are read from the recorded rates
    (`history["learning_rate"]`, the rate of each epoch's update): a drop between epochs t and t + 1
    is reported as (t, rate[t + 1]). A decay decided by the last epoch's loss is used by no recorded
    update; pass `final_state` (`fit(...).opt_state`) to report it too.

    Args:
        history: `fit`'s history dict, or the 1-D array of per-epoch rates.
        final_state: optional optimizer state after the last epoch.

    Returns: a list of (int epoch, float rate), in order; empty without decays (or without rates).

    Raises: ValueError if the rates are not a 1-D array (e.g. a vmapped history: index one run first).
    """
    rates = history["learning_rate"] if isinstance(history, Mapping) else history
    rates = np.asarray(rates, dtype=np.float64)
    if rates.ndim != 1:
        raise ValueError(f"history: expected 1-D per-epoch learning rates, got shape {rates.shape}")
    epochs = np.flatnonzero(rates[1:] < rates[:-1])
    found = [(int(t), float(rates[t + 1])) for t in epochs]
    if final_state is not None and rates.size:
        upcoming = float(learning_rate_of(final_state, jnp.result_type(float), upcoming=True))
        if upcoming < rates[-1]:
            found.append((rates.size - 1, upcoming))
    return found

"""Optimizers by name (optax), with traced hyperparameters, and the tutorial's plateau learning-rate decay.

`optimizer("adam", 0.01)` returns an optax transformation whose numeric hyperparameters (learning
rate, momentum, ...) live in its *state* (`optax.inject_hyperparams`) and whose `update` function is
an `OptimizerSpec`, a frozen dataclass equal (by value) for every instance with the same name and
structure, so `fit` compiles once per network shape and a new learning rate (or a vmapped array of
them) reuses the compiled run. Hyperparameters and optimizer states are kept in float32 (float64 for
float64 params) whatever the params' dtype, so bfloat16 and float16 params train. A plain
`optax.sgd(0.5)` works with `fit` too; it only recompiles for each new instance.

The plateau decay (`plateau_decay`, or `optimizer(..., plateau=True)`) is the tutorial's rule, exactly:

    best = +inf, wait = 0                                # before the first epoch
    at the end of epoch t, with that epoch's loss L_t:
        if L_t < best:  best = L_t; wait = 0            # strictly lower; NaN never is
        else:           wait += 1
                        if wait == patience: lr *= factor; wait = 0      # best is kept
    epoch t's update uses the rate decided by L_0 .. L_{t-1}

so with a constant loss the first decay is decided by epoch `patience` (the `patience`-th epoch that
does not improve on epoch 0) and first used by epoch `patience + 1`. Source: the tutorial's schedule
class (factor 0.95, patience 100); Deep Learning from Scratch 6.1 for the optimizers; optax.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import numbers
from collections.abc import Hashable
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax.contrib import ReduceLROnPlateauState, reduce_on_plateau

from jaxnet.validate import check_positive, choose, is_concrete

# reduce_on_plateau counts a value as an improvement when `value < (1 - rtol) * best - atol`, and
# refuses rtol = atol = 0. With atol = 0 and an rtol below half the float64 machine epsilon,
# `1 - rtol` is exactly 1.0 (a Python float), so the test is `value < 1.0 * best - 0.0`, i.e.
# exactly `value < best` for every float32/float64 value, +/-0, +/-inf and NaN.
EXACT_RTOL = 1e-20
assert 1.0 - EXACT_RTOL == 1.0


# ----------------------------------------------------------------------------------------------
# The tutorial's plateau decay
# ----------------------------------------------------------------------------------------------


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


def state_dtype(tree: Any) -> np.dtype:
    """The dtype of injected hyperparameters and optimizer states for params `tree`: float32, or
    float64 when a float leaf is float64 under `jax.enable_x64` (without it JAX computes a numpy float64
    leaf in float32, and so does the optimizer).

    Kept at least float32 whatever the params' precision: in bfloat16, Adam's b2 = 0.999 rounds to
    1.0 (its bias correction 1 - b2^t becomes 0 and the step NaN), and in float16 the second moment
    (1 - b2) g^2 underflows below |g| ~ 8e-3 and eps = 1e-8 underflows to 0. The update is computed in
    this dtype and cast back to each gradient's dtype (mixed precision: float32 optimizer state).
    """
    # canonicalize: a numpy float64 leaf is float32 to JAX unless x64 is on (optax would warn otherwise)
    wide = any(jnp.issubdtype(leaf.dtype, jnp.floating)
               and jnp.finfo(jax.dtypes.canonicalize_dtype(leaf.dtype)).bits > 32
               for leaf in jax.tree.leaves(tree) if hasattr(leaf, "dtype"))
    return np.dtype(np.float64 if wide else np.float32)


def _cast_floats(tree: Any, dtype) -> Any:
    """`tree` with every floating-point leaf cast to `dtype` (other leaves as they are)."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


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
        `PlateauDecay`, equal for equal factor and accumulation_size (whatever the patience), so `fit`
        does not recompile.

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
# Optimizers by name: optax's conventions, or the book's rules
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BookAdamEps:
    """The book's Adam epsilon as a schedule for optax's Adam: `eps_t = eps / sqrt(1 - b2^t)`.

    The book updates `W -= lr_t m / (sqrt(v) + eps)` with `lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)` on the
    uncorrected moments m, v; that is `lr m_hat / (sqrt(v_hat) + eps / sqrt(1 - b2^t))` on optax's
    bias-corrected ones. Called with optax's step count (0 for the first update, so t = count + 1).
    """

    eps: float = 1e-7
    b2: float = 0.999

    def __call__(self, count: jax.Array) -> jax.Array:
        t = (count + 1).astype(jnp.result_type(float))  # float32, or float64 under jax.enable_x64
        return self.eps / jnp.sqrt(1.0 - self.b2 ** t)


def _book_momentum(learning_rate, momentum=0.9) -> optax.GradientTransformation:
    """The book's Momentum, `v <- momentum v - lr g; W <- W + v` (the rate inside the velocity)."""
    return optax.chain(optax.scale_by_learning_rate(learning_rate), optax.trace(decay=momentum))


def _book_nesterov(learning_rate, momentum=0.9) -> optax.GradientTransformation:
    """The book's Nesterov: `v <- momentum v - lr g; W <- W + momentum^2 v - (1 + momentum) lr g`.

    This is the book's code (common/optimizer.py), not quite the rule of the paper it cites (Bengio et
    al. 2013, arXiv:1212.0901: `W += momentum^2 v_old + (1 + momentum) u`, which optax's `nesterov=True`
    implements, with the rate outside the velocity): with `u = -lr g`,
    the book's step is `(1 + momentum) u + momentum^2 v_new`. A thin wrapper over `optax.trace`.
    """
    trace = optax.trace(decay=momentum)

    def update_fn(updates, state, params=None):
        velocity, state = trace.update(updates, state, params)
        step = jax.tree.map(lambda u, v: (1 + momentum) * u + momentum**2 * v, updates, velocity)
        return step, state

    return optax.chain(optax.scale_by_learning_rate(learning_rate),
                       optax.GradientTransformation(trace.init, update_fn))


# name -> (factory, defaults, whether the rate sits inside the velocity): optax's conventions (optax's defaults except
# momentum 0.9 where optax has none) and the book's rules and defaults (Deep Learning from Scratch 6.1).
OPTAX_OPTIMIZERS = {
    "sgd": (optax.sgd, {}, False),
    "momentum": (optax.sgd, {"momentum": 0.9}, False),
    "nesterov": (optax.sgd, {"momentum": 0.9, "nesterov": True}, False),
    "adagrad": (optax.adagrad, {}, False),
    "rmsprop": (optax.rmsprop, {}, False),
    "adam": (optax.adam, {}, False),
}
BOOK_OPTIMIZERS = {
    "sgd": (optax.sgd, {}, False),
    "momentum": (_book_momentum, {"momentum": 0.9}, True),
    "nesterov": (_book_nesterov, {"momentum": 0.9}, True),
    # Not exact: optax puts eps inside the root, 1/sqrt(h + eps); the book has 1/(sqrt(h) + 1e-7).
    # eps = (1e-7)^2 keeps the book's bound lr |g| / 1e-7 on tiny gradients; the relative difference
    # of a step is below 1e-7 / sqrt(h) (tests/test_optim.py measures it).
    "adagrad": (optax.adagrad, {"initial_accumulator_value": 0.0, "eps": 1e-14}, False),
    "rmsprop": (optax.rmsprop, {"decay": 0.99, "eps": 1e-7, "eps_in_sqrt": False}, False),
    "adam": (optax.adam, {"b1": 0.9, "b2": 0.999, "eps": 1e-7}, False),
}
OPTIMIZERS = tuple(OPTAX_OPTIMIZERS)


def _is_numeric(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (numbers.Number, jax.Array, np.ndarray))


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """What `optimizer(...)` builds, without its numeric hyperparameter values: the update function.

    Compared and hashed by value (a frozen dataclass), so equal specifications share `fit`'s compiled
    run whatever their learning rates: the numeric hyperparameters (`numeric`, injected with
    `optax.inject_hyperparams`) and the plateau patience live in the optimizer state. Calling it is
    `update(updates, state, params=None, **extra_args)` of the optax transformation.

    Fields: `name` and `book` as in `optimizer`; `static`, the structural options as sorted (name,
    value) pairs (bools, None, strings, dtypes, the book's Adam epsilon schedule); `numeric`, the sorted
    names of the hyperparameters kept in the state; `plateau`, the decay's `PlateauDecay` or None.

    Precision: hyperparameters and optimizer states are float32 (float64 for float64 params, see
    `state_dtype`) whatever the params' dtype; each update is computed in that dtype and cast back to
    the gradient's dtype, so bfloat16 and float16 params train like float32 ones up to their rounding.
    """

    name: str
    book: bool = False
    static: tuple = ()
    numeric: tuple = ("learning_rate",)
    plateau: PlateauDecay | None = None

    def transform(self, hyperparams: Mapping[str, Any], patience: Any = 1,
                  dtype=np.float32) -> optax.GradientTransformationExtraArgs:
        """The optax chain with these numeric hyperparameter values (stored in the state as `dtype`)."""
        factory, _, rate_inside = (BOOK_OPTIMIZERS if self.book else OPTAX_OPTIMIZERS)[self.name]
        tx = optax.inject_hyperparams(factory, hyperparam_dtype=dtype)(**dict(self.static), **hyperparams)
        if self.plateau is None:
            return tx
        decay = optax.GradientTransformationExtraArgs(functools.partial(self.plateau.init, patience=patience),
                                                      self.plateau)
        # The scale multiplies the rate: where the book keeps the rate inside the velocity (momentum,
        # nesterov) it must scale the gradient before the velocity; elsewhere it scales the final step.
        return optax.chain(decay, tx) if rate_inside else optax.chain(tx, decay)

    def init(self, params: Any, hyperparams: Mapping[str, Any], patience: Any = 1) -> Any:
        """The state for `params` (moments in `state_dtype(params)`) holding these hyperparameters."""
        dtype = state_dtype(params)
        return self.transform(hyperparams, patience, dtype).init(_cast_floats(params, dtype))

    def __call__(self, updates, state, params=None, **extra_args):
        dtype = state_dtype(updates)
        template = self.transform(dict.fromkeys(self.numeric, 0.0), dtype=dtype)  # values come from the state
        cast = functools.partial(_cast_floats, dtype=dtype)
        # optax 0.2.8's adam and reduce_on_plateau mix int32 step counts with floats (implicit
        # promotions that jax's strict mode rejects): run optax under standard promotion.
        with jax.numpy_dtype_promotion("standard"):
            new_updates, new_state = template.update(cast(updates), state, None if params is None else cast(params),
                                                     **extra_args)
        tree_cast_like = optax.tree_utils.tree_cast_like
        return tree_cast_like(new_updates, updates), tree_cast_like(new_state, state)


def _check_static(name: str, value: Any) -> None:
    """A structural option is part of `OptimizerSpec`'s hash: reject what cannot be hashed (a list, a dict)."""
    if not isinstance(value, Hashable):
        raise TypeError(f"{name}: expected a number, bool, str, dtype or None, got {type(value).__name__} {value!r}")


def optimizer(
    name: str,
    learning_rate: float | jax.Array,
    *,
    book: bool = False,
    plateau: bool | tuple | Mapping | None = None,
    **options: Any,
) -> optax.GradientTransformationExtraArgs:
    """An optimizer by name, as an optax transformation with traced hyperparameters (a new learning
    rate, or a vmapped array of them, does not recompile `fit`), optionally with the plateau decay.

    Update rules, g the gradient, lr the learning rate, state starting at zero unless stated.
    `book=False` (default): optax's conventions and defaults.
        sgd       W -= lr g                                          (optax.sgd)
        momentum  t = momentum t + g;  W -= lr t;  momentum 0.9        (optax.sgd(momentum=0.9))
        nesterov  t = momentum t + g;  W -= lr (g + momentum t);  0.9  (Sutskever / Bengio et al. 2013)
        adagrad   h = 0.1 + sum g^2;  W -= lr g / sqrt(h + 1e-7)       (optax.adagrad)
        rmsprop   h = 0.9 h + 0.1 g^2;  W -= lr g / sqrt(h + 1e-8)     (optax.rmsprop)
        adam      b1 0.9, b2 0.999;  W -= lr m_hat / (sqrt(v_hat) + 1e-8)   (optax.adam)
    `book=True`: Deep Learning from Scratch 6.1 (its common/optimizer.py), with the book's defaults.
        sgd       W -= lr g
        momentum  v = momentum v - lr g;  W += v;  momentum 0.9   (lr inside the velocity: the same
                  steps as optax's while lr is constant, not when the plateau decay changes it)
        nesterov  v = momentum v - lr g;  W += momentum^2 v - (1 + momentum) lr g;  0.9
                  (the book's code; the paper it cites has momentum^2 v_old, as optax)
        adagrad   h = sum g^2;  W -= lr g / (sqrt(h) + 1e-7)   APPROXIMATED: optax can only add eps
                  inside the root; jaxnet uses 1 / sqrt(h + 1e-14), whose steps differ from the book's
                  by less than 1e-7 / sqrt(h) relative (measured: 3.8e-6 after 50 steps, in the tests)
        rmsprop   h = 0.99 h + 0.01 g^2;  W -= lr g / (sqrt(h) + 1e-7)   (optax, eps_in_sqrt=False)
        adam      m, v as optax (b1 0.9, b2 0.999);  W -= lr_t m / (sqrt(v) + 1e-7) with
                  lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)   (optax.adam with eps_t, see BookAdamEps)
    Against a numpy transcription of the book (tests/test_optim.py, float64, 50 steps) every
    `book=True` rule but adagrad agrees to 1e-10 relative.

    Args:
        name: 'sgd', 'momentum', 'nesterov', 'adagrad', 'rmsprop' or 'adam'.
        learning_rate: positive float, or a traced/array value (e.g. under `jax.vmap`).
        book: use the book's rules and defaults instead of optax's.
        plateau: chain the tutorial's plateau decay: True (factor 0.95, patience 100), a
            `(factor, patience)` pair, or a dict of `plateau_decay` arguments. The decay multiplies the
            learning rate: it scales the final step, or, for the book's momentum and nesterov (whose
            velocity holds lr g), the gradient entering the velocity.
        **options: the optimizer's other hyperparameters under the underlying function's names
            (`momentum`, `initial_accumulator_value`, `eps`, `decay`, `b1`, `b2`, `eps_in_sqrt`, ...).
            Numbers are injected into the state (traced); bools, None and strings are structural and
            select the compiled update. For the book's adam, `eps` and `b2` must be Python floats.

    Precision: the hyperparameters and the optimizer state (moments, plateau scale) are float32, or
    float64 for float64 params, whatever the params' dtype; each update is computed in that dtype and
    cast to the gradient's dtype. So bfloat16 or float16 params follow the float32 run up to their own
    rounding (in bfloat16 Adam's b2 = 0.999 would round to 1.0 and its first step be NaN; in float16
    Adam's eps = 1e-8 and small second moments would underflow to 0). What remains of low precision:
    an update smaller than half a unit in the last place of a parameter (2^-9 relative in bfloat16,
    2^-12 in float16) is rounded away when `fit` adds it to the parameter.

    Returns:
        An `optax.GradientTransformationExtraArgs` whose `update` is an `OptimizerSpec`: equal names,
        `book`, structural options and plateau factor give equal (==, same hash) updates, so `fit`
        reuses its compiled run. `learning_rate_of(state)` reads the effective rate (lr times the
        plateau scale). `update` needs `value=loss` when `plateau` is set (`fit` passes it).

    Raises:
        ValueError: unknown name (the message starts with `optimizer:`, as `fit(..., optimizer=...)`
            names it, and lists the valid ones), a non-positive concrete learning rate, or a
            bad `plateau`. TypeError: a name that is not a str, an option the optimizer does not
            take (lists the valid ones), or a structural option that is not hashable (a list, a dict).
    """
    if not isinstance(name, str):
        raise TypeError(f"optimizer: expected an optimizer name (str), got {type(name).__name__}")
    table = BOOK_OPTIMIZERS if book else OPTAX_OPTIMIZERS
    # named `optimizer` as at the doors (fit(..., optimizer="adam")), where users meet it
    factory, defaults, _ = choose("optimizer", "optimizer", name, table)
    check_positive("learning_rate", learning_rate)
    accepted = set(inspect.signature(factory).parameters) - {"learning_rate"}
    unknown = set(options) - accepted
    if unknown:
        raise TypeError(f"{sorted(unknown)}: not options of the {'book' if book else 'optax'} {name!r} "
                        f"optimizer; expected some of: {', '.join(sorted(accepted))}")
    options = {**defaults, **options}
    if book and name == "adam":
        options["eps"] = BookAdamEps(eps=options["eps"], b2=options["b2"])
    hyperparams = {"learning_rate": learning_rate, **{k: v for k, v in options.items() if _is_numeric(v)}}
    static = tuple(sorted((k, v) for k, v in options.items() if k not in hyperparams))
    for key, value in static:
        _check_static(key, value)
    plateau_args = _plateau_args(plateau)
    decay = None if plateau_args is None else plateau_decay(**plateau_args)
    spec = OptimizerSpec(name, book, static, tuple(sorted(hyperparams)), None if decay is None else decay.update)
    patience = 1 if plateau_args is None else plateau_args["patience"]
    return optax.GradientTransformationExtraArgs(
        functools.partial(spec.init, hyperparams=hyperparams, patience=patience), spec)


def sgd(learning_rate: float | jax.Array) -> optax.GradientTransformationExtraArgs:
    """Plain SGD, `W <- W - learning_rate * dL/dW` (Deep Learning from Scratch 6.1.2)."""
    return optimizer("sgd", learning_rate)


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

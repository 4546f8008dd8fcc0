"""Optimizers by name (optax), with traced hyperparameters: `optimizer` and its `OptimizerSpec`.

`optimizer("adam", 0.01)` returns an optax transformation whose numeric hyperparameters (learning
rate, momentum, ...) live in its *state* (`optax.inject_hyperparams`) and whose `update` function is
an `OptimizerSpec`, a frozen dataclass equal (by value) for every instance with the same name and
structure, so `fit` compiles once per network shape and a new learning rate (or a vmapped array of
them) reuses the compiled run. Hyperparameters and optimizer states are kept in float32 (float64 for
float64 params) whatever the params' dtype, so bfloat16 and float16 params train. A plain
`optax.sgd(0.5)` works with `fit` too; it only recompiles for each new instance.

Source: Deep Learning from Scratch 6.1 for the optimizers (the book's rules: `jaxnet.optim.book`); optax.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import numbers
from collections.abc import Hashable
from typing import Any
from collections.abc import Mapping

import jax
import numpy as np
import optax

from jaxnet.optim._precision import state_dtype
from jaxnet.optim.book import BOOK_OPTIMIZERS, BookAdamEps
from jaxnet.optim.plateau import PlateauDecay, _plateau_args, plateau_decay
from jaxnet.validate import check_positive, choose


# name -> (factory, defaults, whether the rate sits inside the velocity): optax's conventions (optax's defaults except
# momentum 0.9 where optax has none); the book's rules and defaults are `jaxnet.optim.book.BOOK_OPTIMIZERS`.
OPTAX_OPTIMIZERS = {
    "sgd": (optax.sgd, {}, False),
    "momentum": (optax.sgd, {"momentum": 0.9}, False),
    "nesterov": (optax.sgd, {"momentum": 0.9, "nesterov": True}, False),
    "adagrad": (optax.adagrad, {}, False),
    "rmsprop": (optax.rmsprop, {}, False),
    "adam": (optax.adam, {}, False),
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
        return self.transform(hyperparams, patience, dtype).init(optax.tree_utils.tree_cast(params, dtype))

    def __call__(self, updates, state, params=None, **extra_args):
        dtype = state_dtype(updates)
        template = self.transform(dict.fromkeys(self.numeric, 0.0), dtype=dtype)  # values come from the state
        cast = functools.partial(optax.tree_utils.tree_cast, dtype=dtype)
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
        adagrad   h = sum g^2 (from 0);  W -= lr g / (sqrt(h) + 1e-7)   (`book_adagrad`: eps
                  outside the root, where optax's adagrad has it inside)
        rmsprop   h = 0.99 h + 0.01 g^2;  W -= lr g / (sqrt(h) + 1e-7)   (optax, eps_in_sqrt=False)
        adam      m, v as optax (b1 0.9, b2 0.999);  W -= lr_t m / (sqrt(v) + 1e-7) with
                  lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)   (optax.adam with eps_t, see BookAdamEps)
    Against a numpy transcription of the book (tests/test_optim.py, float64, 50 steps) every
    `book=True` rule agrees to 1e-10 relative (adagrad also at gradients from 1e-8 to 1e3).

    Args:
        name: 'sgd', 'momentum', 'nesterov', 'adagrad', 'rmsprop' or 'adam'.
        learning_rate: positive float, or a traced/array value (e.g. under `jax.vmap`).
        book: use the book's rules and defaults instead of optax's.
        plateau: chain the tutorial's plateau decay: True (factor 0.95, patience 100), a
            `(factor, patience)` pair, or a dict of `plateau_decay` arguments. The decay multiplies the
            learning rate: it scales the final step, or, for the book's momentum and nesterov (whose
            velocity holds lr g), the gradient entering the velocity.
        **options: the optimizer's other hyperparameters under the underlying function's names
            (`momentum`, `initial_accumulator_value`, `eps`, `decay`, `b1`, `b2`, `eps_in_sqrt`, ...;
            the book's adagrad takes `eps` only).
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

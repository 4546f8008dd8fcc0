"""Optimizers by name, built on optax, with learning rates that are traced values.

`optimizer("sgd", 0.5)` returns an optax `GradientTransformation` whose numeric hyperparameters
(learning rate, momentum, ...) live in its *state* (via `optax.inject_hyperparams`) and whose `update`
function is shared by every instance with the same name and structural options. So `fit` compiles once
per network shape and a new learning rate (or a vmapped array of them) reuses the compiled run.
A plain `optax.sgd(0.5)` works with `fit` too; it only recompiles for each new instance.

Source: Deep Learning from Scratch, 6.1 (SGD, Momentum, AdaGrad, Adam); optax documentation.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnet._checks import check_positive, choose

OPTAX_FACTORIES = {"sgd": optax.sgd}


def _is_numeric(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (numbers.Number, jax.Array, np.ndarray))


@functools.lru_cache(maxsize=None)
def _shared_update(name: str, static_items: tuple, numeric_names: tuple):
    """The `update` of an inject_hyperparams instance with these static options (numeric ones are read
    from the state at each step, so any instance's state works with it)."""
    factory = optax.inject_hyperparams(OPTAX_FACTORIES[name])
    template = factory(**dict(static_items), **{k: 0.0 for k in numeric_names})
    return template.update


def optimizer(name: str, learning_rate: float | jax.Array, **options: Any) -> optax.GradientTransformationExtraArgs:
    """An optax optimizer by name whose hyperparameters are traced (no recompilation when they change).

    Args:
        name: one of OPTAX_FACTORIES ('sgd', ...).
        learning_rate: positive float, or a traced/array value (e.g. under `jax.vmap`).
        **options: passed to the optax factory (numbers are injected into the state; bools, None and
            strings are structural and select the compiled update).

    Returns:
        An `optax.GradientTransformationExtraArgs`; its state holds `hyperparams["learning_rate"]`.

    Raises:
        ValueError: unknown name (lists the valid ones) or a non-positive concrete learning rate.
    """
    choose("optimizer", "name", name, OPTAX_FACTORIES)
    check_positive("learning_rate", learning_rate)
    numeric = {k: v for k, v in options.items() if _is_numeric(v)}
    static = {k: v for k, v in options.items() if k not in numeric}
    tx = optax.inject_hyperparams(OPTAX_FACTORIES[name])(learning_rate=learning_rate, **options)
    try:
        update = _shared_update(name, tuple(sorted(static.items())), tuple(sorted(["learning_rate", *numeric])))
    except TypeError:  # unhashable structural option: keep the instance's own update
        update = tx.update
    return optax.GradientTransformationExtraArgs(tx.init, update)


def sgd(learning_rate: float | jax.Array) -> optax.GradientTransformationExtraArgs:
    """Plain SGD, `W <- W - learning_rate * dL/dW` (Deep Learning from Scratch 6.1.2)."""
    return optimizer("sgd", learning_rate)


def learning_rate_of(opt_state: Any, dtype=jnp.float32) -> jax.Array:
    """The effective learning rate recorded in an optimizer state, or NaN when it holds none.

    Multiplies every injected `hyperparams["learning_rate"]` by every plateau `scale` found in the
    state pytree (NamedTuples, tuples, lists and dicts are searched). Scalar of `dtype`.
    """
    rate, found = jnp.ones((), dtype), False
    for node in _walk(opt_state):
        hyper = getattr(node, "hyperparams", None)
        if isinstance(hyper, dict) and "learning_rate" in hyper:
            rate, found = rate * jnp.asarray(hyper["learning_rate"], dtype), True
        if type(node).__name__ == "ReduceLROnPlateauState":
            rate, found = rate * jnp.asarray(node.scale, dtype), True
    return rate if found else jnp.full((), jnp.nan, dtype)


def _walk(node: Any):
    yield node
    if isinstance(node, dict):
        children = node.values()
    elif isinstance(node, (tuple, list)):
        children = node
    else:
        children = ()
    for child in children:
        yield from _walk(child)

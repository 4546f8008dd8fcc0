"""Eager argument checks shared by the public API.

Every check runs in Python before any tracing. Values that are jax tracers (inside `jit`, `vmap`,
`grad`...) are not concrete, so only their shapes and dtypes are checked; value checks (ranges,
finiteness) are skipped for them. Checks therefore cost nothing inside compiled code and never break
a transformation.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x: Any) -> bool:
    """True when `x` holds concrete values (not a jax tracer), so its values may be inspected."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


def choose(kind: str, name: str, value: Any, table: dict) -> Any:
    """Look `value` up in `table` when it is a string; raise ValueError listing the valid names."""
    if isinstance(value, str):
        if value not in table:
            valid = ", ".join(sorted(table))
            raise ValueError(f"{name}: unknown {kind} {value!r}; expected one of: {valid}")
        return table[value]
    return value


def as_float_array(name: str, x: Any, *, ndim: int | Iterable[int] | None = None) -> jax.Array:
    """Return `x` as a jax array, requiring a floating dtype (and optionally a rank).

    Raises:
        TypeError: `x` is not array-like, or its dtype is not floating point.
        ValueError: its rank is not `ndim` (or one of `ndim`).
    """
    try:
        arr = jnp.asarray(x)
    except TypeError as err:
        raise TypeError(f"{name}: expected an array of floats, got {type(x).__name__}") from err
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise TypeError(
            f"{name}: expected a floating-point array (float32 or float64), got dtype {arr.dtype}; "
            f"convert it with {name}.astype(jnp.float32)"
        )
    check_ndim(name, arr, ndim)
    return arr


def check_ndim(name: str, arr: Any, ndim: int | Iterable[int] | None) -> None:
    """Raise ValueError when `arr.ndim` is not `ndim` (an int or a collection of ints)."""
    if ndim is None:
        return
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if arr.ndim not in allowed:
        want = " or ".join(str(a) for a in allowed)
        raise ValueError(f"{name}: expected a {want}-D array, got shape {tuple(arr.shape)} ({arr.ndim}-D)")


def check_finite(name: str, arr: Any) -> None:
    """Raise ValueError when a concrete array holds NaN or infinity (tracers are skipped)."""
    if is_concrete(arr) and not bool(jnp.all(jnp.isfinite(arr))):
        bad = int(jnp.sum(~jnp.isfinite(arr)))
        raise ValueError(f"{name}: expected finite values, found {bad} NaN or infinite entries")


def check_positive(name: str, value: Any, *, integer: bool = False) -> None:
    """Raise ValueError unless `value` is > 0 (and an int when `integer`); tracers are skipped."""
    if integer:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name}: expected a positive int, got {value!r}")
        if value <= 0:
            raise ValueError(f"{name}: expected a positive int, got {value}")
        return
    if not is_concrete(value):
        return
    v = float(np.asarray(value).max()) if np.ndim(value) else float(value)
    vmin = float(np.asarray(value).min()) if np.ndim(value) else v
    if not math.isfinite(v) or vmin <= 0:
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")


def check_key(name: str, key: Any) -> None:
    """Raise TypeError unless `key` looks like a jax PRNG key (typed key or uint32 array of 2)."""
    if isinstance(key, jax.Array) or isinstance(key, np.ndarray):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            return
        if key.dtype == jnp.uint32 and key.shape[-1:] == (2,):
            return
    raise TypeError(
        f"{name}: expected a PRNG key from jax.random.key(seed) or jax.random.PRNGKey(seed), "
        f"got {type(key).__name__}"
        + (f" with dtype {key.dtype} and shape {tuple(key.shape)}" if hasattr(key, "dtype") else "")
    )

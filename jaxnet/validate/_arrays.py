"""Arrays, scalars, keys and pytrees: dtype, shape, finiteness and range checks (the leaves of every
other check).

Part of `jaxnet.validate` (see its docstring for the conventions).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

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


def as_array(name: str, x: Any, what: str = "an array") -> jax.Array:
    """`jnp.asarray(x)`, with a TypeError naming the argument when x is not array-like (None, str, ...)."""
    if x is None or isinstance(x, (str, bytes)):
        raise TypeError(f"{name}: expected {what}, got {type(x).__name__}")
    try:
        return jnp.asarray(x)
    except (TypeError, ValueError) as err:
        dtype = f" with dtype {x.dtype}" if hasattr(x, "dtype") else ""
        raise TypeError(f"{name}: expected {what}, got {type(x).__name__}{dtype}") from err


def as_float_array(name: str, x: Any, *, ndim: int | Iterable[int] | None = None) -> jax.Array:
    """Return `x` as a jax array, requiring a floating dtype (and optionally a rank).

    Raises:
        TypeError: `x` is not array-like, or its dtype is not floating point.
        ValueError: its rank is not `ndim` (or one of `ndim`).
    """
    arr = as_array(name, x, "an array of floats")
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise TypeError(f"{name}: expected a real floating-point array (float32 or float64), got dtype {arr.dtype}; "
                        f"jaxnet's networks are real-valued: pass {name}.real or jnp.abs({name}) explicitly")
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


# Arrays up to this many entries are checked with numpy on the host: a compiled check costs a
# compilation (~20 ms) per new shape, numpy ~1 ns per entry, and a small array's copy is negligible.
_HOST_CHECK_SIZE = 1 << 16


def check_finite(name: str, arr: Any) -> None:
    """Raise ValueError when a concrete floating array holds NaN or infinity, naming the first bad index.

    Tracers, integer arrays and arrays spread over several processes (not fully addressable) are skipped.
    """
    if not _inspectable(arr) or not jnp.issubdtype(jnp.result_type(arr), jnp.inexact):
        return
    if np.size(arr) <= _HOST_CHECK_SIZE:  # small: read on the host, nothing to compile
        finite = np.isfinite(np.asarray(arr))
        if finite.all():
            return
    else:
        with jax.ensure_compile_time_eval():  # concrete values stay concrete inside a user's jit trace
            if bool(_all_finite(arr)):
                return
            finite = jnp.isfinite(arr)
    if not bool(jnp.all(finite)):
        bad = np.argwhere(~np.asarray(finite))
        where = f", the first at index {tuple(int(i) for i in bad[0])}" if np.ndim(arr) else ""
        raise ValueError(f"{name}: expected finite values, found {len(bad)} NaN or infinite "
                         f"entr{'y' if len(bad) == 1 else 'ies'}{where}")


def all_finite(tree: Any) -> jax.Array:
    """True (a bool scalar) when every entry of every floating leaf of `tree` is finite; traceable.

    `sum(leaves * 0)` is NaN exactly when a leaf holds a NaN or an infinity, and 0 otherwise (it
    cannot overflow). The leaves of each dtype are concatenated into one reduction, which XLA can fuse
    with the concatenation (one kernel per dtype rather than one per leaf: `fit`'s divergence guard
    runs it every epoch, and a tiny network's epoch is a few dozen sub-microsecond kernels). Integer
    and bool leaves are always finite.
    """
    groups: dict[Any, list] = {}
    for leaf in jax.tree.leaves(tree):
        leaf = jnp.asarray(leaf)
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            groups.setdefault(leaf.dtype, []).append(leaf.reshape(-1))
    finite = jnp.ones((), bool)
    for leaves in groups.values():
        flat = leaves[0] if len(leaves) == 1 else jnp.concatenate(leaves)
        finite = finite & jnp.isfinite(jnp.sum(flat * 0))
    return finite


_all_finite = jax.jit(all_finite)


def check_positive(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False) -> None:
    """Raise ValueError unless `value` is > 0 (>= 0 with `allow_zero`) and finite (and an int when
    `integer`); TypeError when it is not a real number (a str, None, a bool). Value checks skip tracers."""
    if integer:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name}: expected a positive int, got {value!r}")
        if value <= 0:
            raise ValueError(f"{name}: expected a positive int, got {value}")
        return
    if isinstance(value, (bool, np.bool_, str, bytes)) or value is None or not (
            isinstance(value, numbers.Real) or hasattr(value, "dtype")):
        raise TypeError(f"{name}: expected a positive number, got {type(value).__name__} {value!r}")
    if not (jnp.issubdtype(jnp.result_type(value), jnp.integer)
            or jnp.issubdtype(jnp.result_type(value), jnp.floating)):
        raise TypeError(f"{name}: expected a positive real number, got dtype {jnp.result_type(value)}")
    if not is_concrete(value):
        return
    if np.size(value) == 0:
        raise ValueError(f"{name}: expected a positive finite number, got an empty array")
    v = float(np.asarray(value).max()) if np.ndim(value) else float(value)
    vmin = float(np.asarray(value).min()) if np.ndim(value) else v
    if not math.isfinite(v) or vmin < 0 or (vmin == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name}: expected a {kind} finite number, got {value!r}")


def check_key(name: str, key: Any, *, single: bool = False) -> None:
    """Raise TypeError unless `key` looks like a jax PRNG key (typed key or uint32 array of 2).

    With `single`, exactly one key is required (shape () typed, or (2,) raw); a batch of keys then
    raises ValueError (vmap over keys instead of passing them all to one call). Works on tracers.
    """
    if isinstance(key, (jax.Array, np.ndarray)):
        typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        if typed or (key.dtype == jnp.uint32 and key.shape[-1:] == (2,)):
            batch = key.shape if typed else key.shape[:-1]
            if single and batch:
                raise ValueError(
                    f"{name}: expected one PRNG key, got a batch of keys of shape {tuple(key.shape)}; "
                    f"use jax.vmap over the keys (one key per lane) instead"
                )
            return
    raise TypeError(
        f"{name}: expected a PRNG key from jax.random.key(seed) or jax.random.PRNGKey(seed), "
        f"got {type(key).__name__}"
        + (f" with dtype {key.dtype} and shape {tuple(key.shape)}" if hasattr(key, "dtype") else "")
    )


def _inspectable(x: Any) -> bool:
    """True when the values of `x` can be read on this host: concrete and fully addressable."""
    return is_concrete(x) and all(getattr(leaf, "is_fully_addressable", True) for leaf in jax.tree.leaves(x))


def _path(name: str, path) -> str:
    return name + jax.tree_util.keystr(tuple(path))



def check_finite_tree(name: str, tree: Any) -> None:
    """`check_finite` on every leaf of a pytree, naming the leaf (concrete values only)."""
    if not _inspectable(tree):
        return
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        check_finite(_path(name, path), leaf)

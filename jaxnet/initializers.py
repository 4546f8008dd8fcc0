"""Weight initialisers with exact formulas, for W stored as (fan_in, fan_out).

Each initialiser is a function `init(key, shape, dtype=jnp.float32) -> array` (jax's initializer
signature, so they also work with any jax.nn.initializers consumer). The PRNG key is explicit. For a
2-D shape (fan_in, fan_out); for higher ranks the leading axes are the receptive field (as in
conv kernels (kh, kw, in, out)) and multiply both fans.

| name             | distribution                       | std                      | source                         |
|------------------|------------------------------------|--------------------------|--------------------------------|
| `xavier_uniform` | U(-a, a), a = sqrt(6 / (in + out)) | sqrt(2 / (in + out))     | Glorot & Bengio 2010, eq. (16) |
| `xavier_normal`  | N(0, std^2) (not truncated)        | sqrt(2 / (in + out))     | Glorot & Bengio 2010           |
| `he_normal`      | N(0, std^2) (not truncated)        | sqrt(2 / in)             | He et al. 2015, eq. (10)       |
| `he_uniform`     | U(-a, a), a = sqrt(6 / in)         | sqrt(2 / in)             | He et al. 2015                 |
| `normal(std)`    | N(0, std^2)                        | std (the book uses 0.01) | Deep Learning from Scratch 6.2 |
| `zeros`          | 0                                  | 0                        |                                |

Note: `jax.nn.initializers.he_normal` draws from a *truncated* normal; jaxnet's is the untruncated
normal of He et al. The tutorial's "Xavier" initialisation, `randn(in, out) * sqrt(2 / in)`, is
`he_normal` here.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxnet.validate import check_positive, choose

Initializer = Callable[..., jax.Array]

xavier_uniform: Initializer = jax.nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")
xavier_uniform.__doc__ = "Glorot/Xavier uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out))."
xavier_normal: Initializer = jax.nn.initializers.variance_scaling(1.0, "fan_avg", "normal")
xavier_normal.__doc__ = "Glorot/Xavier normal: N(0, 2 / (fan_in + fan_out)), untruncated."
he_normal: Initializer = jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal")
he_normal.__doc__ = "He/Kaiming normal: N(0, 2 / fan_in), untruncated (the tutorial's 'Xavier')."
he_uniform: Initializer = jax.nn.initializers.variance_scaling(2.0, "fan_in", "uniform")
he_uniform.__doc__ = "He/Kaiming uniform: U(-a, a), a = sqrt(6 / fan_in)."


def normal(std: float = 0.01) -> Initializer:
    """Return an initialiser drawing N(0, std^2) (the book's `0.01 * randn`, 6.2.1).

    Raises:
        ValueError: std is not a positive finite number.
    """
    check_positive("std", std)
    return jax.nn.initializers.normal(stddev=std)


def zeros(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """All zeros of `shape` and `dtype` (the usual bias initialiser; the key is unused)."""
    del key
    return jnp.zeros(shape, dtype)


INITIALIZERS: dict[str, Initializer] = {
    "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "normal": normal(0.01),
    "zeros": zeros,
}


def get(initializer: str | Initializer) -> Initializer:
    """Return the initialiser named `initializer` (or the callable itself).

    Raises:
        ValueError: unknown name (the message lists the valid ones).
        TypeError: neither a name nor a callable.
    """
    found = choose("initializer", "initializer", initializer, INITIALIZERS)
    if not callable(found):
        raise TypeError(f"initializer: expected a name or a callable, got {type(initializer).__name__}")
    return found

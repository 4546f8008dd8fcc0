"""The precision of optimizer states: float32 (float64 for float64 params) whatever the params' dtype.

Shared by the named optimizers (`jaxnet.optim._named`) and the plateau decay (`jaxnet.optim.plateau`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


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

"""Classification metrics: accuracy and the confusion matrix.

Source: Deep Learning from Scratch 4.5.3 (accuracy of the TwoLayerNet); standard definitions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnet._checks import is_concrete


def predicted_classes(y_pred: jax.Array, *, from_logits: bool = False) -> jax.Array:
    """Class indices (n,) int32 from network outputs y_pred (n, outputs).

    One output unit: 1 where y_pred > 0 (logits) or > 0.5 (probabilities), else 0.
    Several: the arg-max over the last axis.
    """
    if y_pred.ndim == 2 and y_pred.shape[-1] == 1 or y_pred.ndim == 1:
        threshold = 0.0 if from_logits else 0.5
        return (y_pred.reshape(-1) > threshold).astype(jnp.int32)
    return jnp.argmax(y_pred, axis=-1).astype(jnp.int32)


def true_classes(y_true: jax.Array) -> jax.Array:
    """Class indices (n,) int32 from targets: integer labels (n,), 0/1 targets (n, 1) or one-hot (n, k)."""
    if y_true.ndim == 2 and y_true.shape[-1] > 1:
        return jnp.argmax(y_true, axis=-1).astype(jnp.int32)
    flat = y_true.reshape(-1)
    if jnp.issubdtype(flat.dtype, jnp.floating):
        return (flat > 0.5).astype(jnp.int32)
    return flat.astype(jnp.int32)


def accuracy(y_pred: jax.Array, y_true: jax.Array, *, from_logits: bool = False) -> jax.Array:
    """Fraction of examples whose predicted class equals the true class; float32 scalar in [0, 1].

    Args:
        y_pred: network outputs (n, outputs): probabilities, values or logits (`from_logits=True`
            moves the binary threshold from 0.5 to 0).
        y_true: integer labels (n,), binary targets (n, 1) or one-hot targets (n, classes).
    """
    return jnp.mean(predicted_classes(y_pred, from_logits=from_logits) == true_classes(y_true)).astype(jnp.float32)


def confusion_matrix(y_true_classes: jax.Array, y_pred_classes: jax.Array, n_classes: int) -> jax.Array:
    """Counts C (n_classes, n_classes) int32 with C[i, j] = number of examples of class i predicted j.

    Args:
        y_true_classes, y_pred_classes: integer class indices (n,) in [0, n_classes).
        n_classes: number of classes, a positive int.

    Raises:
        TypeError: n_classes not an int, or class arrays that are not integer.
        ValueError: n_classes < 1, arrays of different or non-1-D shapes, or (for concrete arrays) a
            class outside [0, n_classes), naming the first one. Under jit/vmap no value check is
            possible: pairs with an out-of-range class are then left out of the counts.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise TypeError(f"n_classes: expected a positive int, got {n_classes!r}")
    if n_classes < 1:
        raise ValueError(f"n_classes: expected a positive int, got {n_classes}")
    t, p = jnp.asarray(y_true_classes), jnp.asarray(y_pred_classes)
    for name, a in (("y_true_classes", t), ("y_pred_classes", p)):
        if not jnp.issubdtype(a.dtype, jnp.integer):
            raise TypeError(f"{name}: expected integer class indices, got dtype {a.dtype}")
        if a.ndim != 1 or a.shape != t.shape:
            raise ValueError(f"{name}: expected a 1-D array of shape {tuple(t.shape)}, got shape {tuple(a.shape)}")
        if is_concrete(a):
            bad = np.flatnonzero((np.asarray(a) < 0) | (np.asarray(a) >= n_classes))
            if bad.size:
                raise ValueError(f"{name}: expected classes in [0, {n_classes}), found {int(np.asarray(a)[bad[0]])} "
                                 f"at index {int(bad[0])}")
    t, p = t.astype(jnp.int32), p.astype(jnp.int32)
    valid = (t >= 0) & (t < n_classes) & (p >= 0) & (p < n_classes)
    index = jnp.where(valid, t * n_classes + p, n_classes * n_classes)  # out of range: dropped below
    counts = jnp.zeros(n_classes * n_classes, jnp.int32).at[index].add(1, mode="drop")
    return counts.reshape(n_classes, n_classes)

"""Classification metrics: accuracy and the confusion matrix.

Source: Deep Learning from Scratch 4.5.3 (accuracy of the TwoLayerNet); standard definitions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


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
    """
    index = y_true_classes.astype(jnp.int32) * n_classes + y_pred_classes.astype(jnp.int32)
    counts = jnp.zeros(n_classes * n_classes, jnp.int32).at[index].add(1, mode="drop")
    return counts.reshape(n_classes, n_classes)

"""Classification metrics: predicted and true classes, accuracy and the confusion matrix.

Shapes and dtypes are checked on every call, under `jit` and `vmap` too (shapes are static);
values (class ranges) only when concrete. Under a trace an out-of-range class cannot raise: it makes
`accuracy` NaN and every count of `confusion_matrix` -1, never a plausible number.

Source: Deep Learning from Scratch 4.5.3 (accuracy of the TwoLayerNet); standard definitions
(scikit-learn's `accuracy_score` and `confusion_matrix` compute the same numbers).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnet.validate import as_array, as_float_array, is_concrete


def _check_classes(name: str, classes: jax.Array, n_classes: int) -> jax.Array | None:
    """Raise ValueError for a concrete class index outside [0, n_classes); for traced indices return
    the (n,) mask of those outside (None when concrete)."""
    if not is_concrete(classes):
        return (classes < 0) | (classes >= n_classes)
    with jax.ensure_compile_time_eval():
        values = np.asarray(classes)
    bad = np.flatnonzero((values < 0) | (values >= n_classes))
    if bad.size:
        raise ValueError(f"{name}: expected classes in [0, {n_classes}), found {int(values[bad[0]])} "
                         f"at index {int(bad[0])}")
    return None


def predicted_classes(y_pred: jax.Array, *, from_logits: bool = False) -> jax.Array:
    """Class indices (n,) int32 from network outputs.

    Args:
        y_pred: float (n, outputs), or (n,) for one output unit per example.
        from_logits: one output unit holds a logit (threshold 0) rather than a probability or value
            (threshold 0.5).

    Returns:
        int32 (n,): with one output unit, 1 where y_pred > threshold else 0; with several, the
        arg-max over the last axis (the first one on ties).

    Raises:
        TypeError: y_pred not floating (integer class labels passed as predictions?).
        ValueError: y_pred not 1-D or 2-D.
    """
    y_pred = as_float_array("y_pred", y_pred, ndim=(1, 2))
    if y_pred.ndim == 1 or y_pred.shape[-1] == 1:
        threshold = 0.0 if from_logits else 0.5
        return (y_pred.reshape(-1) > threshold).astype(jnp.int32)
    return jnp.argmax(y_pred, axis=-1).astype(jnp.int32)


def true_classes(y_true: jax.Array) -> jax.Array:
    """Class indices (n,) int32 from targets.

    Args:
        y_true: integer or bool labels (n,) (or (n, 1)) taken as they are; float 0/1 targets (n,) or
            (n, 1), 1 where > 0.5; one-hot or probability targets (n, classes), the arg-max.

    Returns:
        int32 (n,). Raises TypeError for a non-numeric y_true, ValueError for one not 1-D or 2-D.
    """
    y_true = as_array("y_true", y_true, "an array of targets")
    dtype = y_true.dtype
    if not (jnp.issubdtype(dtype, jnp.number) or dtype == jnp.bool_) or jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(f"y_true: expected numeric targets (float, int or bool), got dtype {dtype}")
    if y_true.ndim not in (1, 2):
        raise ValueError(f"y_true: expected a 1-D or 2-D array, got shape {tuple(y_true.shape)} ({y_true.ndim}-D)")
    if y_true.ndim == 2 and y_true.shape[-1] > 1:
        return jnp.argmax(y_true, axis=-1).astype(jnp.int32)
    flat = y_true.reshape(-1)
    if jnp.issubdtype(flat.dtype, jnp.floating):
        return (flat > 0.5).astype(jnp.int32)
    return flat.astype(jnp.int32)


def accuracy(y_pred: jax.Array, y_true: jax.Array, *, from_logits: bool = False) -> jax.Array:
    """Fraction of examples whose predicted class equals the true class; float32 scalar in [0, 1].

    Args:
        y_pred: float network outputs (n, outputs) (or (n,) for one output): probabilities, values
            or logits (`from_logits=True` moves the one-unit threshold from 0.5 to 0; see
            `predicted_classes`).
        y_true: either integer (or bool) class labels (n,) in [0, outputs) ([0, 2) for one output
            unit), or targets of y_pred's shape: one-hot / probabilities for several outputs (the
            arg-max is the class), 0/1 targets for one output (1 where > 0.5).

    Returns:
        float32 scalar. Under jit/vmap, traced labels outside the range make it NaN.

    Raises:
        TypeError: y_pred not floating (e.g. the arguments swapped), y_true not numeric.
        ValueError: y_true of neither accepted shape (e.g. (n, 1) targets for 3 outputs; float
            labels (n,) get a hint to cast to int), whether traced or not; a concrete label out of
            range.

    Source: Deep Learning from Scratch 4.5.3.
    """
    if (hasattr(y_pred, "dtype") and hasattr(y_true, "dtype") and not jnp.issubdtype(y_pred.dtype, jnp.floating)
            and jnp.issubdtype(y_true.dtype, jnp.floating)):
        raise TypeError(f"y_pred: expected floating network outputs, got dtype {y_pred.dtype} while y_true is "
                        f"{y_true.dtype}; arguments swapped? the order is accuracy(y_pred, y_true)")
    y_pred = as_float_array("y_pred", y_pred, ndim=(1, 2))
    y_true = as_array("y_true", y_true, "an array of targets")
    outputs = y_pred.shape[-1] if y_pred.ndim == 2 else 1
    labels_shape = y_pred.shape[:1]
    is_labels = y_true.shape == labels_shape and (jnp.issubdtype(y_true.dtype, jnp.integer)
                                                  or y_true.dtype == jnp.bool_)
    if not is_labels and y_true.shape != y_pred.shape:
        float_labels = (jnp.issubdtype(y_true.dtype, jnp.floating)
                        and y_true.shape in (labels_shape, labels_shape + (1,)))
        hint = (" (float class labels? cast them to int: y_true.ravel().astype(jnp.int32))"
                if float_labels and outputs > 1
                else " (add the output axis: y_true[:, None])" if float_labels else "")
        raise ValueError(f"y_true: expected integer class labels of shape {tuple(labels_shape)} or targets of "
                         f"y_pred's shape {tuple(y_pred.shape)}, got {y_true.dtype} {tuple(y_true.shape)}{hint}")
    t = true_classes(y_true)
    bad = _check_classes("y_true", t, max(outputs, 2)) if is_labels else None
    right = predicted_classes(y_pred, from_logits=from_logits) == t
    result = jnp.mean(right).astype(jnp.float32)
    return result if bad is None else jnp.where(jnp.any(bad), jnp.nan, result)


def confusion_matrix(y_true_classes: jax.Array, y_pred_classes: jax.Array, n_classes: int) -> jax.Array:
    """Counts C (n_classes, n_classes) int32 with C[i, j] = number of examples of class i predicted j.

    Args:
        y_true_classes, y_pred_classes: integer class indices (n,) in [0, n_classes) (e.g. from
            `true_classes` and `predicted_classes`).
        n_classes: number of classes, a positive int (static under jit).

    Returns:
        int32 (n_classes, n_classes), summing to n. Under jit/vmap an out-of-range class cannot be
        reported: every count is then -1.

    Raises:
        TypeError: n_classes not an int, or class arrays that are not integer.
        ValueError: n_classes < 1, arrays of different or non-1-D shapes, or (for concrete arrays) a
            class outside [0, n_classes), naming the first one.

    Source: the standard definition (scikit-learn's `confusion_matrix` with `labels=range(n_classes)`).
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise TypeError(f"n_classes: expected a positive int, got {n_classes!r}")
    if n_classes < 1:
        raise ValueError(f"n_classes: expected a positive int, got {n_classes}")
    t = as_array("y_true_classes", y_true_classes, "integer class indices")
    p = as_array("y_pred_classes", y_pred_classes, "integer class indices")
    bad = None
    for name, a in (("y_true_classes", t), ("y_pred_classes", p)):
        if not jnp.issubdtype(a.dtype, jnp.integer):
            raise TypeError(f"{name}: expected integer class indices, got dtype {a.dtype}")
        if a.ndim != 1 or a.shape != t.shape:
            raise ValueError(f"{name}: expected a 1-D array of shape {tuple(t.shape)}, got shape {tuple(a.shape)}")
        mask = _check_classes(name, a, n_classes)
        bad = mask if bad is None else bad if mask is None else bad | mask
    index = t.astype(jnp.int32) * n_classes + p.astype(jnp.int32)
    counts = jnp.zeros(n_classes * n_classes, jnp.int32).at[index].add(1, mode="drop").reshape(n_classes, n_classes)
    return counts if bad is None else jnp.where(jnp.any(bad), -1, counts)

"""Losses and their gradients with respect to the prediction, side by side.

Every loss takes `(y_pred, y_true)` with `y_pred` of shape (batch, outputs) (or (outputs,) for one
example, treated as a batch of one) and returns a scalar of y_pred's dtype. Reductions:

| loss                          | y_pred        | reduction                                       |
|-------------------------------|---------------|-------------------------------------------------|
| `mse`                         | any output    | mean over the batch *and* the output units      |
| `binary_crossentropy`         | probabilities | mean over the batch and the output units        |
| `sigmoid_binary_crossentropy` | logits        | mean over the batch and the output units        |
| `softmax_cross_entropy`       | logits        | sum over classes, mean over the batch           |

Each `*_grad` is the gradient of exactly that scalar w.r.t. y_pred (so it carries the 1/batch factor
once), and backprop uses it unchanged. All are finite for saturated predictions and huge logits.

Eager calls validate their arguments (ValueError / TypeError naming the argument): y_pred floating,
y_true of y_pred's shape (integer labels (batch,) in [0, classes) for softmax_cross_entropy), targets
in [0, 1] for the cross-entropies, no NaN or infinity in y_true. Under jit/vmap/grad nothing is checked.

Source: Deep Learning from Scratch, 4.2 (loss functions) and 5.6.3 (softmax-with-loss backward);
Goodfellow et al., *Deep Learning*, 6.2.2.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxnet._checks import as_array, as_float_array, check_targets, is_concrete
from jaxnet.activations import sigmoid, softmax


class Loss(NamedTuple):
    """A loss: `value(y_pred, y_true) -> scalar` and `grad(y_pred, y_true) -> dL/dy_pred`.

    `from_logits` says whether y_pred is a logit (threshold 0 for binary accuracy) or a
    probability / value (threshold 0.5); `output_activation` is the output layer it pairs with.
    """

    name: str
    value: Callable[[jax.Array, jax.Array], jax.Array]
    grad: Callable[[jax.Array, jax.Array], jax.Array]
    from_logits: bool
    output_activation: str

    def __call__(self, y_pred: jax.Array, y_true: jax.Array) -> jax.Array:
        return self.value(y_pred, y_true)


def _checked(loss_name: str, pred_name: str, y_pred, true_name: str, y_true):
    """Eager validation of a loss's two arguments (skipped under jit/vmap/grad: no traced cost).

    y_pred must be a floating array; y_true must fit it as `jaxnet._checks.check_targets` says (same
    shape; integer labels (batch,) in range for softmax_cross_entropy; targets in [0, 1] for the
    cross-entropies; finite). Raises TypeError / ValueError naming the argument.
    """
    if not is_concrete((y_pred, y_true)):
        return y_pred, y_true
    y_pred = as_float_array(pred_name, y_pred)
    y_true = as_array(true_name, y_true, "an array of targets")
    check_targets(true_name, y_true, y_pred.shape, loss_name, pred_name=pred_name)
    return y_pred, y_true


def mse(y_pred: jax.Array, y_true: jax.Array) -> jax.Array:
    """Mean squared error `mean((y_pred - y_true)^2)` over the batch and the output units.

    Args:
        y_pred: float (batch, outputs). y_true: same shape, same dtype.

    Returns:
        Scalar of y_pred's dtype. Source: Deep Learning from Scratch, eq. (4.1) (the book halves it;
        the tutorial, like jaxnet, takes the plain mean).
    """
    y_pred, y_true = _checked("mse", "y_pred", y_pred, "y_true", y_true)
    return jnp.mean(jnp.square(y_pred - y_true))


def mse_grad(y_pred: jax.Array, y_true: jax.Array) -> jax.Array:
    """Gradient of `mse` w.r.t. y_pred: `2 (y_pred - y_true) / y_pred.size`; shape of y_pred."""
    y_pred, y_true = _checked("mse", "y_pred", y_pred, "y_true", y_true)
    return 2 * (y_pred - y_true) / y_pred.size


def _clip_probability(p: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Clip p to [eps, 1 - eps] with eps = finfo(p.dtype).eps; also return the in-range mask.

    eps is the dtype's own machine epsilon (1.19e-7 for float32, 2.2e-16 for float64), so 1 - eps is
    representable and strictly below 1 in that dtype; a fixed 1e-15 rounds to 1 in float32 and clips
    nothing. `where` (not `clip`) is used so that the derivative at the bounds is exactly 0 or 1.
    """
    eps = jnp.finfo(p.dtype).eps
    low, high = p < eps, p > 1 - eps
    clipped = jnp.where(low, eps, jnp.where(high, 1 - eps, p))
    return clipped, ~(low | high)


def binary_crossentropy(y_pred: jax.Array, y_true: jax.Array) -> jax.Array:
    """Binary cross-entropy on probabilities, mean over the batch and the output units.

    `-mean(y log p + (1 - y) log(1 - p))` with p = y_pred clipped to [eps, 1 - eps], eps the dtype's
    machine epsilon. A saturated correct prediction (p = y = 1 or p = y = 0) costs about eps (finite)
    rather than NaN from 0 * log 0.

    Args:
        y_pred: probabilities in [0, 1], float (batch, outputs). y_true: targets in [0, 1], same shape.

    Returns:
        Scalar of y_pred's dtype. Source: Goodfellow et al., eq. (6.20); the tutorial's BCE.
    """
    y_pred, y_true = _checked("binary_crossentropy", "y_pred", y_pred, "y_true", y_true)
    p, _ = _clip_probability(y_pred)
    return -jnp.mean(y_true * jnp.log(p) + (1 - y_true) * jnp.log1p(-p))


def binary_crossentropy_grad(y_pred: jax.Array, y_true: jax.Array) -> jax.Array:
    """Gradient of `binary_crossentropy` w.r.t. y_pred: `(p - y) / (p (1 - p)) / size` inside the clip
    range, 0 outside it (where the clipped loss is flat). Always finite; shape of y_pred.
    """
    y_pred, y_true = _checked("binary_crossentropy", "y_pred", y_pred, "y_true", y_true)
    p, inside = _clip_probability(y_pred)
    g = (-(y_true / p) + (1 - y_true) / (1 - p)) / y_pred.size
    return jnp.where(inside, g, jnp.zeros_like(g))


def sigmoid_binary_crossentropy(logits: jax.Array, y_true: jax.Array) -> jax.Array:
    """Binary cross-entropy of `sigmoid(logits)`, computed from the logits without overflow.

    `mean(softplus(z) - y z)` over the batch and the output units, with softplus(z) = log(1 + e^z)
    evaluated stably; equal to `binary_crossentropy(sigmoid(z), y)` without its clipping.

    Args:
        logits: float (batch, outputs). y_true: targets in [0, 1], same shape.

    Returns:
        Scalar of logits' dtype. Source: Goodfellow et al., 6.2.2.2.
    """
    logits, y_true = _checked("sigmoid_binary_crossentropy", "logits", logits, "y_true", y_true)
    return jnp.mean(jax.nn.softplus(logits) - y_true * logits)


def sigmoid_binary_crossentropy_grad(logits: jax.Array, y_true: jax.Array) -> jax.Array:
    """Gradient of `sigmoid_binary_crossentropy` w.r.t. the logits: `(sigmoid(z) - y) / size`."""
    logits, y_true = _checked("sigmoid_binary_crossentropy", "logits", logits, "y_true", y_true)
    return (sigmoid(logits) - y_true) / logits.size


def _as_one_hot(labels: jax.Array, logits: jax.Array) -> jax.Array:
    """One-hot (or soft) targets of logits' shape from integer labels (batch,) or targets as given."""
    if jnp.issubdtype(labels.dtype, jnp.integer):
        return jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return labels


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross-entropy of `softmax(logits)` row by row: sum over classes, mean over the batch.

    Computed with a log-softmax per row, so huge logits are exact: logits [-431, 279, 427] with
    class 0 give 858.0. `softmax_cross_entropy([[1,2,3],[1,2,3]], [2, 2]) = 0.407606` (the mean, not
    the sum over rows).

    Args:
        logits: float (batch, classes).
        labels: integer class indices (batch,) in [0, classes), or one-hot / probability targets
            (batch, classes) of logits' dtype. Integer labels outside the range raise ValueError
            on eager calls; under jit/vmap (not checked) they count as all-zero targets.

    Returns:
        Scalar of logits' dtype. Source: Deep Learning from Scratch, eq. (4.2) and 5.6.3.
    """
    logits, labels = _checked("softmax_cross_entropy", "logits", logits, "labels", labels)
    y = _as_one_hot(labels, logits)
    return -jnp.sum(y * jax.nn.log_softmax(logits, axis=-1)) / _batch_size(logits)


def softmax_cross_entropy_grad(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Gradient of `softmax_cross_entropy` w.r.t. the logits: `(softmax(z) sum(y) - y) / batch`.

    For one-hot targets this is the book's `(y - t) / batch_size` (5.6.3); the `sum(y)` factor keeps it
    exact for soft targets. Shape of logits; [-1, 0, 1] for N4's huge logits, never NaN.
    """
    logits, labels = _checked("softmax_cross_entropy", "logits", logits, "labels", labels)
    y = _as_one_hot(labels, logits)
    total = jnp.sum(y, axis=-1, keepdims=True)
    return (softmax(logits) * total - y) / _batch_size(logits)


def _batch_size(logits: jax.Array) -> int:
    return logits.size // logits.shape[-1] if logits.ndim else 1


LOSSES: dict[str, Loss] = {
    "mse": Loss("mse", mse, mse_grad, False, "identity"),
    "binary_crossentropy": Loss(
        "binary_crossentropy", binary_crossentropy, binary_crossentropy_grad, False, "sigmoid"
    ),
    "sigmoid_binary_crossentropy": Loss(
        "sigmoid_binary_crossentropy",
        sigmoid_binary_crossentropy,
        sigmoid_binary_crossentropy_grad,
        True,
        "identity",
    ),
    "softmax_cross_entropy": Loss(
        "softmax_cross_entropy", softmax_cross_entropy, softmax_cross_entropy_grad, True, "identity"
    ),
}


def get(loss: str | Loss) -> Loss:
    """Return the `Loss` named `loss` (or `loss` itself); ValueError lists the valid names."""
    from jaxnet._checks import choose

    found = choose("loss", "loss", loss, LOSSES)
    if not isinstance(found, Loss):
        raise TypeError(f"loss: expected a name or a jaxnet.losses.Loss, got {type(loss).__name__}")
    return found

"""Losses and their gradients with respect to the prediction, side by side.

Every loss takes `(y_pred, y_true)` with `y_pred` of shape (batch, outputs) (or (outputs,) for one
example, treated as a batch of one) and returns a scalar of y_pred's dtype. Reductions:

| loss                          | y_pred        | reduction                                       |
|-------------------------------|---------------|-------------------------------------------------|
| `mse`                         | any output    | mean over the batch *and* the output units      |
| `binary_crossentropy`         | probabilities | mean over the batch and the output units        |
| `sigmoid_binary_crossentropy` | logits        | mean over the batch and the output units        |
| `softmax_cross_entropy`       | logits        | sum over classes, mean over the batch           |

Each `*_derivative` is the gradient of exactly that scalar w.r.t. y_pred (so it carries the 1/batch factor
once), and backprop uses it unchanged. All are finite for saturated predictions and huge logits.

Rules shared by every loss (each `Loss` record states its own target contract, see `Loss`):

- Shapes and dtypes are checked on every call, under `jit`, `vmap` and `grad` too (shapes are
  static): y_pred floating; y_true of y_pred's shape, or integer class labels of shape
  y_pred.shape[:-1] for `softmax_cross_entropy`. TypeError / ValueError starting with the argument's
  name, never a silent broadcast of (n,) against (n, 1).
- Values are checked when they are concrete (eager calls, or targets captured from outside a trace):
  labels in [0, classes), targets in [0, 1] for the cross-entropies, probabilities in [0, 1] for
  `binary_crossentropy`, no NaN or infinity in y_true. Traced values cannot be inspected: there an
  invalid entry makes its row's loss NaN and its gradient NaN (never a plausible finite number), so
  `fit`'s divergence guard catches it.
- 0 * log 0 = 0 in every cross-entropy: a class (or unit) whose target is 0 contributes nothing,
  even when its predicted log-probability is -inf (a masked logit), and the gradient stays finite:
  `softmax_cross_entropy([[-inf, 0, 0]], [1]) = ln 2` with gradient [0, -0.5, 0.5].

Source: Deep Learning from Scratch, 4.2 (loss functions) and 5.6.3 (softmax-with-loss backward);
Goodfellow et al., *Deep Learning*, 6.2.2.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxnet.validate import as_array, as_float_array, check_targets, is_concrete
from jaxnet.activations import sigmoid, softmax

SAME_SHAPE = "same_shape"
LABELS = "labels"


class Loss(NamedTuple):
    """A loss: `value(y_pred, y_true) -> scalar` and `derivative(y_pred, y_true) -> dL/dy_pred`, with its
    target contract, which `jaxnet.validate.check_targets` reads (for the built-in losses and for
    user-defined ones alike).

    Fields:
        name: the loss's name in reports and errors.
        value, derivative: the loss (a scalar) and its gradient w.r.t. y_pred (y_pred's shape); both
            check their arguments on every call.
        from_logits: y_pred is a logit (unbounded score; binary accuracy thresholds it at 0) rather
            than a probability or a value (threshold 0.5).
        output_activation: the output layer it pairs with ("identity" for logits and values,
            "sigmoid" for probabilities); `jaxnet.validate.check_output_pairing` compares it with a
            network's last layer.
        targets: `"same_shape"` (y_true has y_pred's shape) or `"labels"` (integer class labels of
            shape y_pred.shape[:-1] in [0, classes), or one-hot / probability targets of y_pred's
            shape).
        target_range: closed interval (low, high) every non-label target must lie in, or None.
        prediction_range: closed interval every y_pred entry must lie in (probabilities), or None.
        unchecked: optional `(value, derivative)` doing the same math without the checks, for data
            validated once already (the training engine calls these on every step); None for a
            user-defined loss, whose `value` and `derivative` are then used.

    The defaults make `Loss(name, value, derivative)` a same-shape loss with no value contract.
    """

    name: str
    value: Callable[[jax.Array, jax.Array], jax.Array]
    derivative: Callable[[jax.Array, jax.Array], jax.Array]
    from_logits: bool = False
    output_activation: str = "identity"
    targets: str = SAME_SHAPE
    target_range: tuple[float, float] | None = None
    prediction_range: tuple[float, float] | None = None
    unchecked: tuple[Callable, Callable] | None = None

    def __call__(self, y_pred: jax.Array, y_true: jax.Array) -> jax.Array:
        return self.value(y_pred, y_true)

    @property
    def fast(self) -> tuple[Callable, Callable]:
        """`(value, derivative)` without argument checks when the loss has them (`unchecked`), else
        the checked pair. Only for targets validated already (`check_targets`).

        A built-in loss whose `value` or `derivative` was replaced (`loss._replace(derivative=...)`)
        keeps its `unchecked` field, which no longer mirrors it: then the checked pair is used, so the
        replacement is what training and `gradcheck` run."""
        mirrored = _MIRRORS.get(self.unchecked)
        if self.unchecked is None or (mirrored is not None and mirrored != (self.value, self.derivative)):
            return self.value, self.derivative
        return self.unchecked


def _prepare(loss_name: str, pred_name: str, y_pred, true_name: str, y_true):
    """Check (y_pred, y_true) against the contract of the loss `loss_name`; return them as arrays,
    the targets densified (one-hot rows for integer labels) in y_pred's dtype.

    Shapes and dtypes are checked always (they are static); values when concrete. Where a value
    could not be checked (a tracer) and breaks the contract, both the prediction and the target of
    that entry (the whole row, for a label) become NaN, so the loss, the hand gradient and
    `jax.grad` are NaN there.
    """
    contract = LOSSES[loss_name]
    y_pred = as_float_array(pred_name, y_pred)
    y_true = as_array(true_name, y_true, "an array of targets")
    check_targets(true_name, y_true, y_pred.shape, contract, pred_name=pred_name, y_pred=y_pred)
    labels = contract.targets == LABELS and jnp.issubdtype(y_true.dtype, jnp.integer)
    if labels:
        classes = y_pred.shape[-1]
        bad = None if is_concrete(y_true) else ((y_true < 0) | (y_true >= classes))[..., None]
        y = jax.nn.one_hot(y_true, classes, dtype=y_pred.dtype)
    else:
        bad = None if is_concrete(y_true) else _outside(y_true, contract.target_range)
        y = y_true.astype(y_pred.dtype)
    if not is_concrete(y_pred):
        bad = _either(bad, _outside(y_pred, contract.prediction_range))
    if bad is not None:  # added, not selected, so that the NaN reaches jax.grad w.r.t. y_pred too
        y_pred = y_pred + jnp.where(bad, jnp.nan, 0).astype(y_pred.dtype)
        y = jnp.where(bad, jnp.nan, y)
    return y_pred, y


def _outside(a: jax.Array, interval: tuple[float, float] | None) -> jax.Array | None:
    """Boolean mask of the entries of `a` outside the closed `interval` (None when there is none)."""
    if interval is None:
        return None
    low, high = interval
    return (a < low) | (a > high)


def _either(a: jax.Array | None, b: jax.Array | None) -> jax.Array | None:
    if a is None or b is None:
        return b if a is None else a
    return a | b


def _xlogp(y: jax.Array, log_p: jax.Array) -> jax.Array:
    """`y * log_p` with 0 wherever y == 0, even for log_p = -inf; gradients w.r.t. both stay finite.

    The inner `where` keeps the untaken -inf out of the product, so the derivative w.r.t. y is not
    0 * inf = NaN either (a `where` on the product alone has a finite value but a NaN gradient).
    """
    zero = y == 0
    return jnp.where(zero, 0, y * jnp.where(zero, 0, log_p))


def mse(y_pred: jax.Array, y_true: jax.Array) -> jax.Array:
    """Mean squared error `mean((y_pred - y_true)^2)` over the batch and the output units.

    Args:
        y_pred: float (batch, outputs). y_true: same shape (float, int or bool), finite.

    Returns:
        Scalar of y_pred's dtype.

    Raises:
        TypeError: y_pred not floating, y_true not numeric. ValueError: y_true of another shape
            (traced or not), or NaN / infinity in a concrete y_true.

    Source: Deep Learning from Scratch, eq. (4.1) (the book halves it; the tutorial, like jaxnet,
    takes the plain mean).
    """
    return _mse(*_prepare("mse", "y_pred", y_pred, "y_true", y_true))


def mse_derivative(y_pred: jax.Array, y_true: jax.Array) -> jax.Array:
    """Gradient of `mse` w.r.t. y_pred: `2 (y_pred - y_true) / y_pred.size`; shape of y_pred.

    Same arguments and errors as `mse`.
    """
    return _mse_derivative(*_prepare("mse", "y_pred", y_pred, "y_true", y_true))


def _clip_probability(p: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Clip p to [eps, 1 - eps] with eps = finfo(p.dtype).eps; also return the in-range mask.

    eps is the dtype's own machine epsilon (1.19e-7 for float32, 2.2e-16 for float64), so 1 - eps is
    representable and strictly below 1 in that dtype; a fixed 1e-15 rounds to 1 in float32 and clips
    nothing. `where` (not `clip`) is used so that the derivative at the bounds is exactly 0 or 1.
    A NaN p stays NaN (it is neither below nor above the bounds).
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
        y_pred: probabilities in [0, 1] (a sigmoid output), float (batch, outputs).
        y_true: targets in [0, 1], same shape.

    Returns:
        Scalar of y_pred's dtype; NaN when a traced y_pred or y_true lies outside [0, 1].

    Raises:
        TypeError: y_pred not floating, y_true not numeric. ValueError: y_true of another shape;
            concrete y_true outside [0, 1] or not finite; concrete y_pred outside [0, 1] (logits?
            use `sigmoid_binary_crossentropy`).

    Source: Goodfellow et al., eq. (6.20); the tutorial's BCE.
    """
    return _binary_crossentropy(*_prepare("binary_crossentropy", "y_pred", y_pred, "y_true", y_true))


def binary_crossentropy_derivative(y_pred: jax.Array, y_true: jax.Array) -> jax.Array:
    """Gradient of `binary_crossentropy` w.r.t. y_pred: `(p - y) / (p (1 - p)) / size` inside the clip
    range, 0 outside it (where the clipped loss is flat). Finite for valid input; shape of y_pred.

    Same arguments and errors as `binary_crossentropy`.
    """
    return _binary_crossentropy_derivative(*_prepare("binary_crossentropy", "y_pred", y_pred, "y_true", y_true))


def sigmoid_binary_crossentropy(logits: jax.Array, y_true: jax.Array) -> jax.Array:
    """Binary cross-entropy of `sigmoid(logits)`, computed from the logits without overflow.

    `-mean(y log sigmoid(z) + (1 - y) log sigmoid(-z))` over the batch and the output units, with
    `log sigmoid` evaluated stably (`jax.nn.log_sigmoid`) and 0 * log 0 = 0, so z = +-inf with the
    matching target costs 0 (not NaN); equal to `binary_crossentropy(sigmoid(z), y)` without its
    clipping.

    Args:
        logits: float (batch, outputs). y_true: targets in [0, 1], same shape.

    Returns:
        Scalar of logits' dtype; NaN when a traced y_true lies outside [0, 1].

    Raises:
        TypeError: logits not floating, y_true not numeric. ValueError: y_true of another shape;
            concrete y_true outside [0, 1] or not finite.

    Source: Goodfellow et al., 6.2.2.2.
    """
    return _sigmoid_binary_crossentropy(*_prepare("sigmoid_binary_crossentropy", "logits", logits, "y_true", y_true))


def sigmoid_binary_crossentropy_derivative(logits: jax.Array, y_true: jax.Array) -> jax.Array:
    """Gradient of `sigmoid_binary_crossentropy` w.r.t. the logits: `(sigmoid(z) - y) / size`.

    Same arguments and errors as `sigmoid_binary_crossentropy`.
    """
    prepared = _prepare("sigmoid_binary_crossentropy", "logits", logits, "y_true", y_true)
    return _sigmoid_binary_crossentropy_derivative(*prepared)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross-entropy of `softmax(logits)` row by row: sum over classes, mean over the batch.

    Computed with a log-softmax per row, so huge logits are exact: logits [-431, 279, 427] with
    class 0 give 858.0. `softmax_cross_entropy([[1,2,3],[1,2,3]], [2, 2]) = 0.407606` (the mean, not
    the sum over rows). A class with target 0 adds nothing even at logit -inf (0 * log 0 = 0):
    `softmax_cross_entropy([[-inf, 0, 0]], [1]) = ln 2`.

    Args:
        logits: float (batch, classes).
        labels: integer class indices (batch,) in [0, classes), or one-hot / probability targets
            in [0, 1] of logits' shape.

    Returns:
        Scalar of logits' dtype. A traced label outside [0, classes) (or a traced target outside
        [0, 1]) makes its row's loss NaN, hence the mean NaN.

    Raises:
        TypeError: logits not floating, labels not numeric. ValueError: labels of another shape
            (float labels (batch,) get a hint to cast to int); concrete labels out of range, targets
            outside [0, 1] or not finite.

    Source: Deep Learning from Scratch, eq. (4.2) and 5.6.3.
    """
    return _softmax_cross_entropy(*_prepare("softmax_cross_entropy", "logits", logits, "labels", labels))


def softmax_cross_entropy_derivative(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Gradient of `softmax_cross_entropy` w.r.t. the logits: `(softmax(z) sum(y) - y) / batch`.

    For one-hot targets this is the book's `(y - t) / batch_size` (5.6.3); the `sum(y)` factor keeps it
    exact for soft targets. Shape of logits; [-1, 0, 1] for logits [-431, 279, 427] with class 0,
    never NaN for valid input; NaN in a row whose traced label is out of range. Same arguments and
    errors as `softmax_cross_entropy`.
    """
    return _softmax_cross_entropy_derivative(*_prepare("softmax_cross_entropy", "logits", logits, "labels", labels))


def _batch_size(logits: jax.Array) -> int:
    return logits.size // logits.shape[-1] if logits.ndim else 1


# The math alone, on targets already checked; the public functions above check their arguments
# first. One definition per formula, shared by both.


def _dense(y_pred: jax.Array, y_true: jax.Array) -> jax.Array:
    """Targets in y_pred's dtype, integer class labels as one-hot rows (no checks)."""
    if jnp.issubdtype(y_true.dtype, jnp.integer) and y_true.ndim == y_pred.ndim - 1:
        return jax.nn.one_hot(y_true, y_pred.shape[-1], dtype=y_pred.dtype)
    return y_true.astype(y_pred.dtype)


def _unchecked(math: Callable) -> Callable:
    return lambda y_pred, y_true: math(y_pred, _dense(y_pred, y_true))


def _mse(y_pred: jax.Array, y_true: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(y_pred - y_true))


def _mse_derivative(y_pred: jax.Array, y_true: jax.Array) -> jax.Array:
    return 2 * (y_pred - y_true) / y_pred.size


def _binary_crossentropy(y_pred: jax.Array, y_true: jax.Array) -> jax.Array:
    p, _ = _clip_probability(y_pred)
    return -jnp.mean(_xlogp(y_true, jnp.log(p)) + _xlogp(1 - y_true, jnp.log1p(-p)))


def _binary_crossentropy_derivative(y_pred: jax.Array, y_true: jax.Array) -> jax.Array:
    p, inside = _clip_probability(y_pred)
    g = (-(y_true / p) + (1 - y_true) / (1 - p)) / y_pred.size
    return jnp.where(inside, g, jnp.zeros_like(g))


def _sigmoid_binary_crossentropy(logits: jax.Array, y_true: jax.Array) -> jax.Array:
    return -jnp.mean(_xlogp(y_true, jax.nn.log_sigmoid(logits)) + _xlogp(1 - y_true, jax.nn.log_sigmoid(-logits)))


def _sigmoid_binary_crossentropy_derivative(logits: jax.Array, y_true: jax.Array) -> jax.Array:
    return (sigmoid(logits) - y_true) / logits.size


def _softmax_cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    return -jnp.sum(_xlogp(y, jax.nn.log_softmax(logits, axis=-1))) / _batch_size(logits)


def _softmax_cross_entropy_derivative(logits: jax.Array, y: jax.Array) -> jax.Array:
    total = jnp.sum(y, axis=-1, keepdims=True)
    return (softmax(logits) * total - y) / _batch_size(logits)


_UNIT = (0.0, 1.0)
_MIRRORS: dict[tuple, tuple] = {}  # a built-in's unchecked pair -> the checked pair it mirrors (fixed at import)


def _record(name: str, **contract) -> Loss:
    """The `Loss` record of built-in loss `name`: its checked functions and the same math unchecked."""
    value, derivative = globals()[name], globals()[f"{name}_derivative"]
    math = (_unchecked(globals()[f"_{name}"]), _unchecked(globals()[f"_{name}_derivative"]))
    _MIRRORS[math] = (value, derivative)
    return Loss(name, value, derivative, unchecked=math, **contract)


LOSSES: dict[str, Loss] = {
    "mse": _record("mse", from_logits=False, output_activation="identity"),
    "binary_crossentropy": _record("binary_crossentropy", from_logits=False, output_activation="sigmoid",
                                   target_range=_UNIT, prediction_range=_UNIT),
    "sigmoid_binary_crossentropy": _record("sigmoid_binary_crossentropy", from_logits=True,
                                           output_activation="identity", target_range=_UNIT),
    "softmax_cross_entropy": _record("softmax_cross_entropy", from_logits=True, output_activation="identity",
                                     targets=LABELS, target_range=_UNIT),
}


def get(loss: str | Loss) -> Loss:
    """Return the `Loss` named `loss` (or `loss` itself); ValueError lists the valid names."""
    from jaxnet.validate import choose

    found = choose("loss", "loss", loss, LOSSES)
    if not isinstance(found, Loss):
        raise TypeError(f"loss: expected a name or a jaxnet.losses.Loss, got {type(loss).__name__}")
    return found

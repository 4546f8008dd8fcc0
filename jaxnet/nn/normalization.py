"""Batch Normalization, with running statistics as explicit state and a hand-derived backward pass.

Source: Ioffe & Szegedy, "Batch Normalization: accelerating deep network training by reducing
internal covariate shift", ICML 2015, Algorithm 1 and 2; Deep Learning from Scratch 6.3
(common/layers.py BatchNormalization); the backward pass as in Kratzert's derivation of the
computational graph, which the book follows.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import jax.numpy as jnp
from jax import lax

from jaxnet.nn._layer import Layer, as_shape
from jaxnet.nn._checks import canonical_dtype


def _real_in(name: str, value: Any, low: float, high: float, *, closed_low: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a float, got {value!r}")
    v = float(value)
    if not ((low <= v if closed_low else low < v) and v < high):
        raise ValueError(f"{name}: expected a value in {'[' if closed_low else '('}{low:g}, {high:g}), got {value!r}")
    return v


@dataclasses.dataclass(frozen=True)
class BatchNorm(Layer):
    """Batch Normalization over the channel axis 1: (batch, features) or (batch, channels, H, W).

    Training (`train=True`), per channel c over the batch (and the spatial axes):
        mu = mean(x),  var = mean((x - mu)^2)  (the *biased* variance, ddof 0),
        x_hat = (x - mu) / sqrt(var + eps),  y = gamma x_hat + beta;
    `update_state` then moves the running statistics:
        running_mean <- momentum running_mean + (1 - momentum) mu   (likewise running_var with var).
    Evaluation (`train=False`): `y = gamma (x - running_mean) / sqrt(running_var + eps) + beta`, an
    affine map whose backward is the elementwise scale `dx = dy gamma / sqrt(running_var + eps)`.

    Precision: the batch statistics are computed without catastrophic cancellation, by the shifted
    two-pass scheme (Chan, Golub & LeVeque 1983; "shifted data" in the literature on computing
    variances): per channel, with s the channel's first value (example 0, first position), the
    differences d = x - s, then x - mu = d - mean(d), var = mean((d - mean(d))^2) and
    mu = s + mean(d). Subtracting a rounded mean from values of 1e4 or 1e7 is what loses the signal in
    float32 (a constant channel of 1e4 then normalises to values near 1 instead of 0); differences to
    a value inside the data's range are exact for data near it, so the statistics keep float32's
    precision of the *spread*, whatever the mean, and a constant channel gives exactly 0 (beta). s
    is a `lax.stop_gradient` constant (mathematically the result does not depend on it, so no
    gradient flows through it); training, backward and `update_state` all use these statistics.
    The cost is that of the plain formula (two reductions per channel). A first value far outside
    the rest of the data (by more than the data's mean) makes the differences round like the plain
    formula's. tests/test_layers.py checks means 1e2..1e7 against numpy float64.

    Backward in training (through the batch statistics), with m values per channel:
        dbeta = sum(dy),  dgamma = sum(dy x_hat),
        dx = (gamma / sqrt(var + eps)) (dy - mean(dy) - x_hat mean(dy x_hat)).

    Params `{"gamma": (C,), "beta": (C,)}` (ones, zeros); state `{"mean": (C,), "var": (C,)}`
    (zeros, ones). C is the first entry of the input shape (features, or channels in the
    channels-first layout jaxnet's convolutions use). One example (features,) or (C, H, W) is
    accepted in evaluation mode (inputs with an odd number of axes are taken as one example).

    Conventions: `momentum` is the weight of the *old* running value (the book's 0.9; PyTorch's
    `momentum=0.1` is the weight of the new one, i.e. the same 0.9). The running variance is the
    biased batch variance, as in the book, Flax and Equinox; PyTorch stores the unbiased one
    (m / (m - 1) times larger). Default eps 1e-5 (PyTorch, Flax). `book=True`: the book's eps 1e-6
    (its `10e-7`) and running statistics starting at zero (the book's `np.zeros`). The book
    normalises a 4-D input per activation (it reshapes to (N, C*H*W)); jaxnet normalises per channel.

    Args:
        momentum: in [0, 1). eps: > 0 (default 1e-5, or 1e-6 with `book=True`).
        book: the book's eps and initial running statistics. dtype: floating params/state dtype.

    Raises:
        ValueError: momentum outside [0, 1), eps <= 0; at init, an input shape that is not (F,) or
            (C, H, W); in training, a batch with a single value per channel (variance 0: use a larger
            batch or evaluation mode); in evaluation, no state.
        TypeError: a non-real momentum or eps, a non-floating dtype.
    """

    momentum: float = 0.9
    eps: float | None = None
    book: bool = dataclasses.field(default=False, kw_only=True)
    dtype: Any = dataclasses.field(default=jnp.float32, kw_only=True)
    has_state = True

    def __post_init__(self):
        object.__setattr__(self, "momentum", _real_in("momentum", self.momentum, 0.0, 1.0, closed_low=True))
        eps = (1e-6 if self.book else 1e-5) if self.eps is None else self.eps
        object.__setattr__(self, "eps", _real_in("eps", eps, 0.0, float("inf"), closed_low=False))
        object.__setattr__(self, "dtype", canonical_dtype("dtype", self.dtype))

    @property
    def name(self) -> str:
        return "BatchNorm"

    def _channels(self, input_shape) -> int:
        shape = as_shape("input_shape", input_shape)
        if len(shape) not in (1, 3) or shape[0] < 1:
            raise ValueError(f"input_shape: BatchNorm expected (features,) or (channels, height, width), got {shape}")
        return shape[0]

    def init(self, key, input_shape):
        del key
        c = self._channels(input_shape)
        return tuple(input_shape), {"gamma": jnp.ones((c,), self.dtype), "beta": jnp.zeros((c,), self.dtype)}

    def init_state(self, input_shape):
        c = self._channels(input_shape)
        start = jnp.zeros if self.book else jnp.ones
        return {"mean": jnp.zeros((c,), self.dtype), "var": start((c,), self.dtype)}

    # -- helpers: x as a batch, reduction axes, per-channel vectors broadcast against x
    @staticmethod
    def _batched(x):
        return x if x.ndim % 2 == 0 else x[None]

    @staticmethod
    def _axes(xb):
        return (0,) + tuple(range(2, xb.ndim))

    @staticmethod
    def _bcast(v, xb):
        return v.reshape((1, -1) + (1,) * (xb.ndim - 2))

    def _batch_stats(self, xb):
        """(mu, var, x - mu) per channel (broadcastable against xb), by the shifted two-pass scheme of
        the class docstring: no catastrophic cancellation at large means."""
        axes = self._axes(xb)
        count = xb.size // xb.shape[1]
        if count < 2:
            raise ValueError(f"x: BatchNorm in training mode needs at least 2 values per channel to estimate a "
                             f"variance (got a batch of shape {tuple(xb.shape)}: the variance would be 0); use a "
                             f"larger batch, or evaluation mode (train=False)")
        first = (slice(0, 1), slice(None)) + (slice(0, 1),) * (xb.ndim - 2)
        shift = lax.stop_gradient(xb[first])  # each channel's first value, held constant
        d = xb - shift  # exact for values near the shift: the spread survives whatever the mean
        mean_d = jnp.mean(d, axis=axes, keepdims=True)
        centred = d - mean_d
        return shift + mean_d, jnp.mean(jnp.square(centred), axis=axes, keepdims=True), centred

    def _centred(self, xb, state, train):
        """(x - mu, var): the batch's statistics in training, the running ones in evaluation."""
        if train:
            _, var, centred = self._batch_stats(xb)
            return centred, var
        if state is None or not isinstance(state, dict) or "mean" not in state:
            raise ValueError("state: BatchNorm in evaluation mode (train=False) normalises with the running "
                             "statistics; pass state= (net.init_state() or fit's result.state)")
        return xb - self._bcast(state["mean"], xb), self._bcast(state["var"], xb)

    def apply(self, params, x, *, state=None, key=None, train=False):
        del key
        xb = self._batched(x)
        centred, var = self._centred(xb, state, train)
        y = self._bcast(params["gamma"], xb) * centred / jnp.sqrt(var + self.eps) + self._bcast(params["beta"], xb)
        return y.reshape(x.shape)

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        del y, key
        xb, dyb = self._batched(x), self._batched(dy)
        centred, var = self._centred(xb, state, train)
        axes = self._axes(xb)
        inv_std = 1.0 / jnp.sqrt(var + self.eps)
        x_hat = centred * inv_std
        grads = {"gamma": jnp.sum(dyb * x_hat, axis=axes), "beta": jnp.sum(dyb, axis=axes)}
        scale = self._bcast(params["gamma"], xb) * inv_std
        if train:
            dx = scale * (dyb - jnp.mean(dyb, axis=axes, keepdims=True)
                          - x_hat * jnp.mean(dyb * x_hat, axis=axes, keepdims=True))
        else:
            dx = scale * dyb
        return grads, dx.reshape(x.shape)

    def update_state(self, params, state, x, *, key=None):
        del params, key
        xb = self._batched(x)
        mu, var, _ = self._batch_stats(xb)
        m = self.momentum
        return {"mean": m * state["mean"] + (1 - m) * mu.reshape(-1).astype(state["mean"].dtype),
                "var": m * state["var"] + (1 - m) * var.reshape(-1).astype(state["var"].dtype)}

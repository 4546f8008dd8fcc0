"""Pooling by im2col (max and average, with hand-derived backward passes) and Flatten.

Images are channels first (N, C, H, W), as in `jaxnet.nn.conv`. Pooling acts on each channel
separately: the im2col rows of one channel are the pooling windows.

Source: Deep Learning from Scratch 7.3 and 7.4.4 (the Pooling layer).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from jaxnet.nn._layer import Layer, as_shape
from jaxnet.nn._checks import check_images, image_shape, int_at_least, output_hw, pair
from jaxnet.nn.conv import col2im, im2col


@dataclasses.dataclass(frozen=True)
class _Pool2D(Layer):
    """Shared configuration, shapes and window unrolling of the pooling layers."""

    pool_size: int | tuple[int, int]
    stride: int | None = None
    padding: int = 0
    _pad_value: ClassVar[float] = 0.0  # what the border is padded with (MaxPool2D: -inf)

    def __post_init__(self):
        object.__setattr__(self, "pool_size", pair("pool_size", self.pool_size))
        ph, pw = self.pool_size
        if self.stride is None and ph != pw:
            raise ValueError(f"stride: {type(self).__name__} with a non-square pool {ph}x{pw} needs an explicit stride")
        # stored resolved, so that MaxPool2D(2) == MaxPool2D(2, stride=2) (layers compare by value)
        object.__setattr__(self, "stride", ph if self.stride is None else int_at_least("stride", self.stride, low=1))
        padding = int_at_least("padding", self.padding, low=0)
        if padding > min(ph, pw) // 2:
            raise ValueError(f"padding: {type(self).__name__} with a {ph}x{pw} pool takes padding up to half the "
                             f"pool size, {min(ph, pw) // 2}, so that no window lies entirely in the padding; "
                             f"got {padding}")
        object.__setattr__(self, "padding", padding)

    @property
    def name(self) -> str:
        ph, pw = self.pool_size
        padding = f", padding={self.padding}" if self.padding else ""
        return f"{type(self).__name__}({ph}x{pw}, stride={self.stride}{padding})"

    def init(self, key, input_shape):
        del key
        c, h, w = image_shape(self, input_shape)
        return (c, *output_hw(self, (c, h, w), *self.pool_size, self.stride, self.padding)), {}

    def _windows(self, x):
        """x (N, C, H, W) -> (N, C, OH, OW, ph * pw): the pooling windows (row-major inside) of x
        padded with `padding` values `_pad_value` on each side of H and W.

        Each channel is pooled on its own, so the N C channels go through `im2col` as N C one-channel
        images: its rows come out channel-first, in the order of the output (N, C, OH, OW)."""
        check_images(self, x)
        n, c, h, w = x.shape
        oh, ow = output_hw(self, (c, h, w), *self.pool_size, self.stride, self.padding)
        ph, pw = self.pool_size
        p = self.padding
        if p:
            x = jnp.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=jnp.asarray(self._pad_value, x.dtype))
        return im2col(x.reshape(n * c, 1, h + 2 * p, w + 2 * p), ph, pw, self.stride).reshape(n, c, oh, ow, ph * pw)

    def _to_x(self, x, dwindows):
        """The adjoint of `_windows`: (N, C, OH, OW, ph * pw) -> (N, C, H, W); the padding's share is dropped."""
        n, c, h, w = x.shape
        dcols = dwindows.reshape(-1, dwindows.shape[-1])
        return col2im(dcols, (n * c, 1, h, w), *self.pool_size, self.stride, self.padding).reshape(x.shape)


@dataclasses.dataclass(frozen=True)
class MaxPool2D(_Pool2D):
    """Max pooling: each output is the maximum of a pool_size window of one channel.

    Shapes: x (N, C, H, W) -> (N, C, OH, OW), OH = (H + 2 padding - ph) / stride + 1 (exact, see
    `conv_output_size`), likewise OW; y has x's dtype. No params.
    Padding: `padding` entries of -inf on each side of H and W, so a border window's maximum is that
    of its real entries (PyTorch's `MaxPool2d(padding=)`, `lax.reduce_window` with init -inf). The
    book's `Pooling(pad=)` pads with zeros through im2col, which differs when a border window holds
    only negative values.
    Backward: each window's dy goes entirely to the window's *first* maximum in row-major order (the
    index `argmax` returns, as the book's `np.argmax`); the other entries get 0. At a tie this is one
    valid subgradient (it is also what `jax.grad` of `lax.reduce_window(max)` does; `jnp.max`'s
    gradient instead splits dy among the tied entries). On x = [[1,3,2],[4,4,1],[0,2,5]], a 2 x 2
    pool with stride 1 and dy = ones: y = [[4,4],[4,5]], dx = [[0,0,0],[2,1,0],[0,0,1]].

    Args:
        pool_size: an int k (k x k windows) or a pair (ph, pw).
        stride: int >= 1; default the pool size (non-overlapping windows; a non-square pool needs
            an explicit stride).
        padding: int from 0 to min(ph, pw) // 2 (as PyTorch: no window lies entirely in the padding),
            added on each side of H and W. Default 0.

    Raises:
        TypeError / ValueError naming the argument: non-int or out-of-range sizes or padding; at init
            or apply, inputs that are not (C, H, W) images or that the windows do not tile exactly.

    Source: Deep Learning from Scratch 7.3 and 7.4.4; PyTorch's `MaxPool2d` for the padding.
    """

    _pad_value = -float("inf")

    def apply(self, params, x, *, state=None, key=None, train=False):
        del params, state, key, train
        return jnp.max(self._windows(x), axis=-1)

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        del params, y, state, key, train
        windows = self._windows(x)
        first_max = jax.nn.one_hot(jnp.argmax(windows, axis=-1), windows.shape[-1], dtype=dy.dtype)
        return {}, self._to_x(x, first_max * dy[..., None])


@dataclasses.dataclass(frozen=True)
class AvgPool2D(_Pool2D):
    """Average pooling: each output is the mean of a pool_size window of one channel.

    Shapes as `MaxPool2D`. Padding: `padding` zeros on each side of H and W, counted in the window:
    every output is the window's sum divided by ph pw, border windows included (PyTorch's default
    `AvgPool2d(count_include_pad=True)`; `lax.reduce_window` of add, divided by ph pw).
    Backward: every entry of a window gets dy / (ph pw) (the padding's share is dropped).

    Args and errors as `MaxPool2D` (padding from 0 to min(ph, pw) // 2).

    Source: Deep Learning from Scratch 7.3; PyTorch's `AvgPool2d` for the padding.
    """

    def apply(self, params, x, *, state=None, key=None, train=False):
        del params, state, key, train
        return jnp.mean(self._windows(x), axis=-1)

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        del params, y, state, key, train
        ph, pw = self.pool_size
        share = dy[..., None] / (ph * pw)
        return {}, self._to_x(x, jnp.broadcast_to(share, share.shape[:-1] + (ph * pw,)))


@dataclasses.dataclass(frozen=True)
class Flatten(Layer):
    """Flatten each example: (N, d1, d2, ...) -> (N, d1 d2 ...), in row-major (C order) order.

    Between convolutional and dense layers: a (C, H, W) feature map becomes C H W features, channel
    by channel. Backward: dx = dy reshaped to x's shape. No params. x must have a batch axis.

    Raises:
        ValueError: at init, an empty input shape (); in apply, a scalar x.
    """

    @property
    def name(self) -> str:
        return "Flatten"

    def init(self, key, input_shape):
        del key
        shape = as_shape("input_shape", input_shape)
        if not shape:
            raise ValueError("input_shape: Flatten expected the shape of one example, got ()")
        return (math.prod(shape),), {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        del params, state, key, train
        if x.ndim < 1:
            raise ValueError("x: Flatten expected a batch (N, ...), got a scalar")
        return x.reshape(x.shape[0], -1)

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        del params, y, state, key, train
        return {}, dy.reshape(x.shape)

"""Convolution by im2col: the image patches unrolled into the rows of a matrix, then one matmul.

Layout: channels first, as the book. Images are (N, C, H, W) (batch, channels, height, width) and a
convolution's weights W are (FN, C, FH, FW) (filters, channels, filter height, filter width), b is
(FN,); the output is (N, FN, OH, OW). JAX's own convolutions default to channels-last (NHWC);
convert such data with `x.transpose(0, 3, 1, 2)` (the layers' errors say so).

`im2col(x, FH, FW, stride, padding)` returns the (N * OH * OW, C * FH * FW) matrix whose row
(n, i, j) holds the patch of image n under the filter at output position (i, j), in (c, fh, fw)
order. A convolution is then `im2col(x) @ W.reshape(FN, -1).T + b`. `col2im` is its adjoint (the
transpose of the linear map im2col): it adds every patch back at its place, so pixels covered by
several patches receive the sum of their entries. It is what carries dL/dcols back to dL/dx.

Both loop over the FH * FW filter offsets (static Python loops, unrolled at trace time), never over
output pixels: offset (i, j) is one strided slice of the padded image (`lax.slice`), and its adjoint
one zero-padding with interior padding (`lax.pad`), so both are jit-friendly with static sizes.

Source: Deep Learning from Scratch 7.2-7.4 (equation 7.1, im2col, the Convolution layer);
Chellapilla, Puri, Simard, "High performance convolutional neural networks for document
processing", 2006 (unrolling convolutions into matrix products).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxnet import initializers
from jaxnet.nn._checks import (_out_hw, canonical_dtype, check_images, image_shape, int_at_least,
                               output_hw, pair)
from jaxnet.nn._layer import Layer, as_shape
from jaxnet.validate import check_positive


def _images(name: str, x: Any) -> None:
    if getattr(x, "ndim", None) != 4:
        raise ValueError(f"{name}: expected images (N, C, H, W) (batch, channels, height, width), got shape "
                         f"{tuple(getattr(x, 'shape', ()))}")


def im2col(x: jax.Array, filter_h: int, filter_w: int, stride: int = 1, padding: int = 0) -> jax.Array:
    """Unroll the patches of images into rows (the book's im2col).

    Row `(n * OH + i) * OW + j` holds the patch of image n that the filter covers at output position
    (i, j), in (channel, filter row, filter column) order; OH, OW from `conv_output_size`. For
    x = arange(9) as 1 x 1 x 3 x 3 and a 2 x 2 filter the rows are [0,1,3,4], [1,2,4,5], [3,4,6,7],
    [4,5,7,8].

    Args:
        x: (N, C, H, W) array of any dtype. filter_h, filter_w: ints >= 1. stride: int >= 1.
        padding: int >= 0 zeros on each side of H and W.

    Returns:
        (N * OH * OW, C * filter_h * filter_w) array of x's dtype.

    Raises:
        ValueError: x not 4-D; sizes that do not fit (see `conv_output_size`). TypeError: non-int sizes.
        Shape checks are static, so they run under jit, vmap and grad too.

    Source: Deep Learning from Scratch 7.4.3 (common/util.py im2col), whose loop over the filter's
    offsets this follows.
    """
    _images("x", x)
    n, c = x.shape[:2]
    oh, ow = _out_hw(x.shape, filter_h, filter_w, stride, padding)
    img = jnp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding))) if padding else x
    patches = [lax.slice(img, (0, 0, i, j), (n, c, i + stride * (oh - 1) + 1, j + stride * (ow - 1) + 1),
                         (1, 1, stride, stride))
               for i in range(filter_h) for j in range(filter_w)]
    col = jnp.stack(patches, axis=2).reshape(n, c, filter_h, filter_w, oh, ow)
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, c * filter_h * filter_w)


def col2im(cols: jax.Array, input_shape: tuple[int, int, int, int], filter_h: int, filter_w: int, stride: int = 1,
           padding: int = 0) -> jax.Array:
    """The adjoint of `im2col`: add each row's patch back at its place in an image of `input_shape`.

    Pixels covered by several patches get the sum of their entries (the overlap is added, not
    overwritten), so `col2im` is the transpose of the linear map `im2col` and equals `jax.vjp` of it.
    Padding positions are dropped. For x = arange(9) as 1 x 1 x 3 x 3 and a 2 x 2 filter,
    col2im(im2col(x)) = [[0,2,2],[6,16,10],[6,14,8]] (each pixel times the number of patches holding it).

    Args:
        cols: (N * OH * OW, C * filter_h * filter_w), as `im2col` returns for `input_shape`.
        input_shape: (N, C, H, W) of the images. filter_h, filter_w, stride, padding: as for `im2col`.

    Returns:
        (N, C, H, W) array of cols' dtype.

    Raises:
        ValueError: an input_shape that is not 4 sizes, sizes that do not fit (`conv_output_size`), or
            cols of another shape than `im2col` gives. TypeError: non-int sizes.

    Source: Deep Learning from Scratch 7.4.3 (common/util.py col2im).
    """
    shape = as_shape("input_shape", input_shape)
    if len(shape) != 4:
        raise ValueError(f"input_shape: expected (N, C, H, W), got {shape}")
    n, c, h, w = shape
    oh, ow = _out_hw(shape, filter_h, filter_w, stride, padding)
    expected = (n * oh * ow, c * filter_h * filter_w)
    if tuple(cols.shape) != expected:
        raise ValueError(f"cols: expected shape {expected} (N * OH * OW, C * FH * FW) for input_shape {shape} and a "
                         f"{filter_h} x {filter_w} filter, stride {stride}, padding {padding}; got {tuple(cols.shape)}")
    hp, wp = h + 2 * padding, w + 2 * padding
    col = cols.reshape(n, oh, ow, c, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)
    zero = jnp.zeros((), cols.dtype)
    img = jnp.zeros((n, c, hp, wp), cols.dtype)
    for i in range(filter_h):
        for j in range(filter_w):
            # the adjoint of the strided slice at offset (i, j): spread with stride - 1 zeros between
            # entries (interior padding) and shift to (i, j)
            img = img + lax.pad(col[:, :, i, j], zero, ((0, 0, 0), (0, 0, 0),
                                                        (i, hp - i - stride * (oh - 1) - 1, stride - 1),
                                                        (j, wp - j - stride * (ow - 1) - 1, stride - 1)))
    return img[:, :, padding:padding + h, padding:padding + w]


@dataclasses.dataclass(frozen=True)
class Conv2D(Layer):
    """A 2-D convolution (cross-correlation, as in every deep-learning library and the book) by im2col.

    Params: `{"W": (filters, C, FH, FW), "b": (filters,)}` of `dtype` (float32 by default).
    Shapes: x (N, C, H, W) -> y (N, filters, OH, OW), OH = (H + 2 padding - FH) / stride + 1
    (`conv_output_size`; it must divide exactly), likewise OW. One example needs a batch axis: x[None].

    Forward: `cols = im2col(x)` (N OH OW, C FH FW); `y = cols @ W.reshape(filters, -1).T + b`,
    reshaped to (N, filters, OH, OW). (It is computed as its transpose `W.reshape(filters, -1) @ cols.T`,
    (filters, N OH OW), so that the channels-first output needs no transposing copy; same sums.)
    Backward, with dy reshaped to `dY` (N OH OW, filters): `dW = (dY^T cols).reshape(W.shape)`,
    `db = sum over rows of dY`, `dx = col2im(dY @ W.reshape(filters, -1))`.
    Weight decay applies to W, not b (the layers' shape rule, `jaxnet.nn._layer`).

    Args:
        filters: number of filters FN (int >= 1).
        kernel_size: FH = FW = k for an int k, or a pair (FH, FW).
        stride: int >= 1. padding: int >= 0 zeros on each side of H and W.
        W_init: initialiser name or function `init(key, shape, dtype)`, default 'he_normal'. It is
            called with the shape (FH, FW, C, FN) (receptive field first, as `jaxnet.initializers`
            expects), so fan_in = C FH FW and fan_out = FN FH FW (He et al. 2015's n_l = k^2 c), and
            the result is transposed to (FN, C, FH, FW). 'normal' is the book's `0.01 * randn`.
        b_init: bias initialiser, default 'zeros'. dtype: floating parameter dtype.

    Raises:
        TypeError / ValueError (naming the argument): non-int or out-of-range sizes, unknown
            initialisers, a non-floating dtype; at init, an input shape that is not (C, H, W) or that
            the filter and stride do not fit; in apply, x that is not (N, C, H, W) with the params' C
            (channels-last data: the message suggests `x.transpose(0, 3, 1, 2)`; flat data:
            `x.reshape(-1, C, H, W)`).

    Source: Deep Learning from Scratch 7.2 and 7.4.3 (the Convolution layer).
    """

    filters: int
    kernel_size: int | tuple[int, int]
    stride: int = 1
    padding: int = 0
    W_init: str | Callable = dataclasses.field(default="he_normal", kw_only=True)
    b_init: str | Callable = dataclasses.field(default="zeros", kw_only=True)
    dtype: Any = dataclasses.field(default=jnp.float32, kw_only=True)

    def __post_init__(self):
        check_positive("filters", self.filters, integer=True)
        object.__setattr__(self, "filters", int(self.filters))
        object.__setattr__(self, "kernel_size", pair("kernel_size", self.kernel_size))
        object.__setattr__(self, "stride", int_at_least("stride", self.stride, low=1))
        object.__setattr__(self, "padding", int_at_least("padding", self.padding, low=0))
        initializers.get(self.W_init)
        initializers.get(self.b_init)
        object.__setattr__(self, "dtype", canonical_dtype("dtype", self.dtype))

    @property
    def name(self) -> str:
        fh, fw = self.kernel_size
        stride = f", stride={self.stride}" if self.stride != 1 else ""
        padding = f", padding={self.padding}" if self.padding else ""
        return f"Conv2D({self.filters}, {fh}x{fw}{stride}{padding})"

    def init(self, key, input_shape):
        shape = image_shape(self, input_shape)
        fh, fw = self.kernel_size
        oh, ow = output_hw(self, shape, fh, fw, self.stride, self.padding)
        k_w, k_b = jax.random.split(key)
        w_init, bias_init = initializers.get(self.W_init), initializers.get(self.b_init)
        W = w_init(k_w, (fh, fw, shape[0], self.filters), self.dtype).transpose(3, 2, 0, 1)
        return (self.filters, oh, ow), {"W": W, "b": bias_init(k_b, (self.filters,), self.dtype)}

    def _cols(self, x):
        return im2col(x, *self.kernel_size, self.stride, self.padding)

    def apply(self, params, x, *, state=None, key=None, train=False):
        del state, key, train
        W = params["W"]
        check_images(self, x, W.shape[1])
        n, fn = x.shape[0], W.shape[0]
        oh, ow = _out_hw(x.shape, *self.kernel_size, self.stride, self.padding)
        # the book's y = cols @ W.reshape(FN, -1).T + b, computed transposed, (FN, N OH OW): each filter's
        # output maps come out contiguous, so that the channels-first result (and the pooling reading
        # it) needs no transposing copy of the large output
        y_t = W.reshape(fn, -1) @ self._cols(x).T + params["b"][:, None]
        return y_t.reshape(fn, n, oh, ow).transpose(1, 0, 2, 3)

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        del y, state, key, train
        W = params["W"]
        check_images(self, x, W.shape[1])
        # dY^T (FN, N OH OW), the layout of apply's product: dW = dY^T cols is then a plain matmul
        dY_t = dy.transpose(1, 0, 2, 3).reshape(W.shape[0], -1)
        dW = (dY_t @ self._cols(x)).reshape(W.shape)
        dcols = dY_t.T @ W.reshape(W.shape[0], -1)
        dx = col2im(dcols, x.shape, *self.kernel_size, self.stride, self.padding)
        return {"W": dW, "b": jnp.sum(dY_t, axis=1)}, dx

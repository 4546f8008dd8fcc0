"""Argument checks shared by the layer modules (one private helper, so that no layer module imports
validators from a sibling): dtypes, positive ints and pairs, channels-first image shapes, and the
convolution output size (the book's equation 7.1).

Every check is static (shapes and Python values only), so it works under jit, vmap and grad.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax.numpy as jnp

from jaxnet.nn._layer import Layer, as_shape
from jaxnet.validate import shape_hint


def canonical_dtype(name: str, dtype: Any) -> jnp.dtype:
    """`dtype` as a numpy dtype (so `jnp.float32` and `"float32"` compare equal); TypeError unless floating."""
    try:
        out = jnp.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"{name}: expected a floating dtype such as jnp.float32, got {dtype!r}") from err
    if not jnp.issubdtype(out, jnp.floating):
        raise TypeError(f"{name}: expected a floating dtype such as jnp.float32, got {out}")
    return out


def int_at_least(name: str, value: Any, *, low: int) -> int:
    """`value` as an int >= low; TypeError (not an int, or a bool) or ValueError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value}")
    return int(value)


def pair(name: str, value: Any) -> tuple[int, int]:
    """`value` as (height, width): an int k gives (k, k); a pair of ints >= 1 is kept.

    Raises: TypeError / ValueError naming `name` for anything else."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name}: expected an int or a pair (height, width), got {value!r}")
        return int_at_least(f"{name}[0]", value[0], low=1), int_at_least(f"{name}[1]", value[1], low=1)
    k = int_at_least(name, value, low=1)
    return k, k


def conv_output_size(input_size: int, filter_size: int, stride: int = 1, padding: int = 0) -> int:
    """Output size of a convolution or pooling along one axis: `(input + 2 padding - filter) / stride + 1`.

    The book's equation 7.1. As the book asks (7.2.4), the division must be exact: a stride that
    leaves pixels over at the border is an error here (PyTorch and `lax.conv` floor instead and
    silently drop those pixels). Examples: H 5, filter 3, stride 2, padding 1 -> 3; H 28, filter 5,
    stride 1, padding 0 -> 24.

    Args:
        input_size: H or W (int >= 1). filter_size: int >= 1. stride: int >= 1. padding: int >= 0
            (zeros added on each side).

    Returns:
        The output size, an int >= 1.

    Raises:
        TypeError: an argument that is not an int. ValueError: an argument out of range; a filter
            larger than the padded input (`input + 2 padding < filter`); a stride that does not
            divide `input + 2 padding - filter` (the message suggests sizes that fit).
    """
    size = int_at_least("input_size", input_size, low=1)
    f, s = int_at_least("filter_size", filter_size, low=1), int_at_least("stride", stride, low=1)
    p = int_at_least("padding", padding, low=0)
    span = size + 2 * p - f
    if span < 0:
        raise ValueError(f"filter_size: the filter ({f}) is larger than the padded input ({size} + 2 x {p} = "
                         f"{size + 2 * p}); use a smaller filter or more padding")
    if span % s:
        raise ValueError(f"stride: (input_size + 2 padding - filter_size) / stride = ({size} + 2 x {p} - {f}) / {s} "
                         f"is not an integer, so the last {span % s} pixel(s) would be skipped; choose a stride "
                         f"dividing {span}, or padding/input size making it divisible (Deep Learning from Scratch "
                         f"7.2.4)")
    return span // s + 1


def _out_hw(shape, fh, fw, stride, padding) -> tuple[int, int]:
    return (conv_output_size(shape[2], fh, stride, padding), conv_output_size(shape[3], fw, stride, padding))


def check_images(layer: Layer, x: Any, channels: int | None = None) -> None:
    """Raise ValueError naming x when it is not a batch of channels-first images (N, C, H, W) (with
    `channels` channels when given); the message suggests the conversion of channels-last (N, H, W, C)
    or flattened (N, C * H * W) data. Static: works under jit."""
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) == 4 and (channels is None or shape[1] == channels):
        return
    want = "(N, C, H, W)" if channels is None else f"(N, {channels}, H, W)"
    if len(shape) == 4 and shape[3] == channels:
        hint = shape_hint((channels, shape[1], shape[2]), shape)
    elif len(shape) == 2 and channels is not None and math.isqrt(shape[1] // channels) ** 2 * channels == shape[1]:
        side = math.isqrt(shape[1] // channels)
        hint = shape_hint((channels, side, side), shape)
    elif len(shape) == 3 and shape[0] == channels:
        hint = "; for one image add the batch axis: x[None]"
    else:
        hint = ""
    raise ValueError(f"x: {layer.name} expected a batch of channels-first images {want} (batch, channels, height, "
                     f"width), got shape {shape}{hint}")


def image_shape(layer: Layer, input_shape: Any) -> tuple[int, int, int]:
    """`input_shape` as (C, H, W) with every size >= 1; ValueError naming the layer otherwise."""
    shape = as_shape("input_shape", input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape: {layer.name} expected channels-first images (C, H, W) without the batch "
                         f"axis, got {shape}")
    return shape


def output_hw(layer: Layer, shape: tuple[int, int, int], fh: int, fw: int, stride: int, padding: int):
    """(OH, OW) of `layer` for inputs (C, H, W) = `shape`; ValueError naming the layer when the window
    does not fit (with a hint when the shape looks channels-last (H, W, C))."""
    try:
        return _out_hw((0,) + tuple(shape), fh, fw, stride, padding)
    except ValueError as err:
        hint = (f"; {shape} looks channels-last (H, W, C): images must be channels-first (C, H, W), e.g. "
                f"x.transpose(0, 3, 1, 2) for a batch" if shape[2] < min(shape[:2]) else "")
        raise ValueError(f"input_shape: {layer.name} cannot take images of shape {shape} (C, H, W): "
                         f"{err}{hint}") from err

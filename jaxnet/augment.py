"""Data augmentation on the device: random rotations, shifts and scalings of images, as pure jax
functions drawn from an explicit key, and as a layer that trains with them inside `fit`.

The book (8.1.2) names data augmentation (small rotations, shifts, crops, flips, brightness) and
leaves it unimplemented. Here every image of a batch gets its own random affine map
`A = scale * R(angle)` about the image centre c, plus a shift t, and is resampled by bilinear
interpolation with zeros outside the image. The value of the output at pixel p = (row, col) is the
input's at

    source(p) = A^-1 (p - c - t) + c,        c = ((H - 1) / 2, (W - 1) / 2)

so the content moves by t (rows down, columns right), turns by `angle` counter-clockwise as
displayed (row 0 at the top) and grows by `scale`. Bilinear interpolation: with r0 = floor(row),
c0 = floor(col), fr = row - r0, fc = col - c0 of the source point,

    y[p] = (1 - fr)(1 - fc) x[r0, c0] + (1 - fr) fc x[r0, c0 + 1] + fr (1 - fc) x[r0 + 1, c0] + fr fc x[r0 + 1, c0 + 1]

each term counting only when its pixel lies inside the image. For fixed parameters this is a
linear map y = M x (M holds at most four weights per output pixel), so its gradient is the
transpose: `affine_adjoint` adds each output's dy, times the same four weights, back into those
pixels (a scatter-add, as `col2im` is im2col's adjoint). The layer's backward pass uses it, so the
gradient with respect to x is exact (tested against `jax.vjp` and the adjoint identity).

Everything is a pure function of arrays (no host round trip): it runs under `jax.jit`, `jax.vmap`
and `jax.grad`, inside `fit`'s compiled training run, where the `RandomAffine` layer draws from the
step key that `fit` gives the network (a fresh draw every step; evaluation mode is the identity).

Source: Deep Learning from Scratch 8.1.2 (data augmentation); Simard, Steinkraus & Platt, "Best
practices for convolutional neural networks applied to visual document analysis", ICDAR 2003
(affine distortions of MNIST digits); bilinear interpolation as in Jaderberg et al., "Spatial
transformer networks", NeurIPS 2015, eq. (5) and its gradient eq. (6).
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import jax
import jax.numpy as jnp

from jaxnet.nn._layer import Layer, as_shape, require_key

__all__ = ["affine", "affine_adjoint", "random_affine_params", "random_affine", "RandomAffine"]


def _images(name: str, x) -> None:
    """ValueError unless x is 4-D (N, C, H, W); TypeError unless it is a floating array."""
    if getattr(x, "ndim", None) != 4:
        raise ValueError(f"{name}: expected a batch of channels-first images (N, C, H, W), got shape "
                         f"{tuple(getattr(x, 'shape', ()))}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name}: expected floating-point images, got dtype {x.dtype}; "
                        f"e.g. x.astype(jnp.float32) / 255")


def _check_maps(x, matrix, offset) -> None:
    n = x.shape[0]
    if tuple(jnp.shape(matrix)) != (n, 2, 2):
        raise ValueError(f"matrix: expected one 2 x 2 matrix per image, shape ({n}, 2, 2), "
                         f"got {tuple(jnp.shape(matrix))}")
    if tuple(jnp.shape(offset)) != (n, 2):
        raise ValueError(f"offset: expected one (row, col) offset per image, shape ({n}, 2), "
                         f"got {tuple(jnp.shape(offset))}")


def _coordinate_dtype(dtype):
    """Source coordinates in float64 for float64 images, else float32 (bfloat16 or float16 could not
    even hold 27.5 - 1e-3)."""
    return jnp.dtype(jnp.float64) if jnp.dtype(dtype) == jnp.float64 else jnp.dtype(jnp.float32)


def _corners(shape, matrix, offset, dtype):
    """The four bilinear corners of every output pixel's source point: a list of (flat index (H W,)
    int32, weight (H W,) of `dtype`), weight 0 where the corner lies outside the image."""
    h, w = shape
    ct = _coordinate_dtype(dtype)
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=ct), jnp.arange(w, dtype=ct), indexing="ij")
    centre = jnp.array([(h - 1) / 2, (w - 1) / 2], ct)
    points = jnp.stack([rows.ravel(), cols.ravel()]) - centre[:, None]
    source = matrix.astype(ct) @ points + (centre + offset.astype(ct))[:, None]
    r0, c0 = jnp.floor(source[0]), jnp.floor(source[1])
    fr, fc = source[0] - r0, source[1] - c0
    one = jnp.ones((), ct)
    corners = []
    for dr, dc, weight in ((0, 0, (one - fr) * (one - fc)), (0, 1, (one - fr) * fc), (1, 0, fr * (one - fc)),
                           (1, 1, fr * fc)):
        r, c = r0 + dr, c0 + dc
        inside = (r >= 0) & (r <= h - 1) & (c >= 0) & (c <= w - 1)
        index = (jnp.clip(r, 0, h - 1) * w + jnp.clip(c, 0, w - 1)).astype(jnp.int32)
        corners.append((index, jnp.where(inside, weight, jnp.zeros((), ct)).astype(dtype)))
    return corners


def _affine_one(image, matrix, offset):
    c, h, w = image.shape
    flat = image.reshape(c, h * w)
    out = sum(jnp.take(flat, index, axis=1) * weight for index, weight in _corners((h, w), matrix, offset, image.dtype))
    return out.reshape(c, h, w)


def _adjoint_one(dy, matrix, offset):
    c, h, w = dy.shape
    flat = dy.reshape(c, h * w)
    dx = jnp.zeros((c, h * w), dy.dtype)
    for index, weight in _corners((h, w), matrix, offset, dy.dtype):
        dx = dx.at[:, index].add(flat * weight)
    return dx.reshape(c, h, w)


def affine(x: jax.Array, matrix: jax.Array, offset: jax.Array) -> jax.Array:
    """Resample each image at `source(p) = matrix[n] (p - c) + c + offset[n]` by bilinear interpolation.

    Every channel of image n uses the same map; pixels whose source falls outside the image (in
    part) get the inside corners' share only (zero padding). `matrix = I`, `offset = 0` returns x
    exactly; an integer `offset` (-dr, -dc) shifts the content by (dr, dc) pixels exactly.

    Args:
        x: images (N, C, H, W) of a floating dtype.
        matrix: (N, 2, 2), acting on (row, col) coordinates relative to the centre
            c = ((H - 1) / 2, (W - 1) / 2). offset: (N, 2) in pixels (row, col).
            The coordinates are computed in float32 (float64 for float64 images).

    Returns:
        (N, C, H, W) of x's dtype.

    Raises:
        ValueError: x not a batch of images (N, C, H, W); matrix or offset of another shape.
        TypeError: x not floating point. The checks are static: they also run under jit and vmap.
    """
    _images("x", x)
    _check_maps(x, matrix, offset)
    return jax.vmap(_affine_one)(x, matrix, offset)


def affine_adjoint(dy: jax.Array, matrix: jax.Array, offset: jax.Array) -> jax.Array:
    """The transpose of `affine` for the same maps: each output pixel's dy, times its four bilinear
    weights, is added back into the four source pixels (zero for those outside the image).

    `sum(affine(x) * dy) == sum(x * affine_adjoint(dy))` for all x, dy: it is the gradient of
    `affine` with respect to x (`jax.vjp` computes the same).

    Args and shapes as `affine` (dy in place of x). Raises as `affine`.
    """
    _images("dy", dy)
    _check_maps(dy, matrix, offset)
    return jax.vmap(_adjoint_one)(dy, matrix, offset)


def _check_amount(name: str, value, high: float | None = None) -> float:
    """`value` as a float in [0, high) (or a finite float >= 0); TypeError for a non-number, ValueError
    for one out of range, both naming `name`."""
    bound = f"a number in [0, {high:g})" if high is not None else "a finite number >= 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected {bound}, got {value!r}")
    if not math.isfinite(value) or value < 0 or (high is not None and value >= high):
        raise ValueError(f"{name}: expected {bound}, got {value!r}")
    return float(value)


def random_affine_params(key: jax.Array, n: int, *, max_rotation: float = 10.0, max_shift: float = 2.0,
                         max_scale: float = 0.0, dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
    """`(matrix, offset)` of n random maps for `affine`, one per image, independent and uniform:

    angle ~ U(-max_rotation, max_rotation) degrees, scale ~ U(1 - max_scale, 1 + max_scale), shift
    t ~ U(-max_shift, max_shift)^2 pixels; `matrix = (scale R(angle))^-1`, `offset = -matrix t`, so
    that the content turns by angle, grows by scale and moves by t (module docstring).

    Args:
        key: a PRNG key. n: the number of maps (static).
        max_rotation: degrees, >= 0. max_shift: pixels, >= 0. max_scale: in [0, 1).
        dtype: floating dtype of the results.

    Returns:
        matrix (n, 2, 2) and offset (n, 2) of `dtype`.

    Raises:
        ValueError: a negative or non-finite amount, max_scale >= 1. TypeError: an amount that is not a
            real number.
    """
    max_rotation = _check_amount("max_rotation", max_rotation)
    max_shift = _check_amount("max_shift", max_shift)
    max_scale = _check_amount("max_scale", max_scale, 1.0)
    k_angle, k_scale, k_shift = jax.random.split(key, 3)
    angle = jax.random.uniform(k_angle, (n,), dtype, -max_rotation, max_rotation) * jnp.asarray(math.pi / 180, dtype)
    scale = jax.random.uniform(k_scale, (n,), dtype, 1.0 - max_scale, 1.0 + max_scale)
    shift = jax.random.uniform(k_shift, (n, 2), dtype, -max_shift, max_shift)
    cos, sin = jnp.cos(angle) / scale, jnp.sin(angle) / scale
    # the inverse of scale R(angle), R(angle) = [[cos, -sin], [sin, cos]] on (row, col): a
    # counter-clockwise turn as displayed (rows grow downwards)
    matrix = jnp.stack([jnp.stack([cos, sin], -1), jnp.stack([-sin, cos], -1)], -2)
    return matrix, -jnp.einsum("nij,nj->ni", matrix, shift)


def random_affine(key: jax.Array, x: jax.Array, *, max_rotation: float = 10.0, max_shift: float = 2.0,
                  max_scale: float = 0.0) -> jax.Array:
    """`augment(key, x) -> x`: every image of the batch rotated, scaled and shifted at random
    (`random_affine_params`, then `affine`); the same key gives the same images.

    Args:
        key: a PRNG key. x: images (N, C, H, W), floating.
        max_rotation (degrees), max_shift (pixels), max_scale: see `random_affine_params`; the defaults
            (10 degrees, 2 pixels, no scaling) are small enough to keep every digit legible.

    Returns:
        (N, C, H, W) of x's dtype.

    Raises:
        ValueError: as `affine` and `random_affine_params`.
    """
    _images("x", x)
    matrix, offset = random_affine_params(key, x.shape[0], max_rotation=max_rotation, max_shift=max_shift,
                                          max_scale=max_scale, dtype=_coordinate_dtype(x.dtype))
    return affine(x, matrix, offset)


@dataclasses.dataclass(frozen=True)
class RandomAffine(Layer):
    """Data augmentation as a layer: in training mode, `random_affine` with the layer's key; in
    evaluation mode, the identity.

    Put it first, `serial(RandomAffine(), *net.layers)`: `fit` gives the network a new key every
    step, the network folds it per layer, so every step sees freshly transformed images, drawn
    inside the compiled run. No params. Shapes: (N, C, H, W) -> the same shape and dtype.
    Backward: `affine_adjoint` with the forward's maps (recomputed from the same key): the exact
    gradient with respect to x, although nothing upstream of a first layer needs it.

    Args:
        max_rotation (degrees), max_shift (pixels), max_scale: as `random_affine_params`.

    Raises:
        ValueError: amounts out of range; at init, an input shape that is not (C, H, W); training
            mode without a key. TypeError: an amount that is not a real number.
    """

    max_rotation: float = 10.0
    max_shift: float = 2.0
    max_scale: float = 0.0
    is_random = True

    def __post_init__(self):
        object.__setattr__(self, "max_rotation", _check_amount("max_rotation", self.max_rotation))
        object.__setattr__(self, "max_shift", _check_amount("max_shift", self.max_shift))
        object.__setattr__(self, "max_scale", _check_amount("max_scale", self.max_scale, 1.0))

    @property
    def name(self) -> str:
        return (f"RandomAffine(rotation {self.max_rotation:g} deg, shift {self.max_shift:g} px, "
                f"scale {self.max_scale:g})")

    def init(self, key, input_shape):
        del key
        shape = as_shape("input_shape", input_shape)
        if len(shape) != 3:
            raise ValueError(f"input_shape: {self.name} expected channels-first images (C, H, W), got {shape}")
        return shape, {}

    def _maps(self, x, key):
        return random_affine_params(key, x.shape[0], max_rotation=self.max_rotation, max_shift=self.max_shift,
                                    max_scale=self.max_scale, dtype=_coordinate_dtype(x.dtype))

    def apply(self, params, x, *, state=None, key=None, train=False):
        del params, state
        if not train:
            return x
        require_key(self.name, key, train)
        return affine(x, *self._maps(x, key))

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        del params, y, state
        if not train:
            return {}, dy
        require_key(self.name, key, train)
        return {}, affine_adjoint(dy, *self._maps(x, key))

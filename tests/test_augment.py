"""Data augmentation (`jaxnet.augment`): the bilinear affine resampling against numpy references
(zero-filled integer shifts, np.rot90, hand-computed half-pixel averages), its adjoint against the
adjoint identity and `jax.vjp`, the random maps' ranges, and the `RandomAffine` layer inside `fit`."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet
from jaxnet import augment


def _eye(n, dtype=jnp.float32):
    return jnp.broadcast_to(jnp.eye(2, dtype=dtype), (n, 2, 2))


def _shifted(x: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """numpy: the content of every image moved by (dr, dc) pixels, zeros coming in."""
    out = np.zeros_like(x)
    h, w = x.shape[-2:]
    out[..., max(dr, 0):h + min(dr, 0), max(dc, 0):w + min(dc, 0)] = \
        x[..., max(-dr, 0):h + min(-dr, 0), max(-dc, 0):w + min(-dc, 0)]
    return out


def test_identity_and_integer_shifts_are_exact():
    x = jax.random.uniform(jax.random.key(0), (2, 3, 6, 7))
    np.testing.assert_array_equal(augment.affine(x, _eye(2), jnp.zeros((2, 2))), x)
    for dr, dc in ((1, 0), (0, -2), (2, 3), (-6, 0), (0, 7)):  # the last two move everything out
        offset = jnp.array([[-dr, -dc]] * 2, jnp.float32)
        np.testing.assert_array_equal(augment.affine(x, _eye(2), offset), _shifted(np.asarray(x), dr, dc))


def test_quarter_turns_are_np_rot90_and_half_pixels_average():
    x = jax.random.uniform(jax.random.key(1), (1, 1, 5, 5))
    for quarter in (1, 2, 3):
        m, _ = augment.random_affine_params(jax.random.key(0), 1, max_rotation=0.0, max_shift=0.0)
        theta = quarter * math.pi / 2  # the inverse of a counter-clockwise turn by theta, as displayed
        m = jnp.array([[[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]]], jnp.float32)
        np.testing.assert_allclose(augment.affine(x, m, jnp.zeros((1, 2)))[0, 0],
                                   np.rot90(np.asarray(x)[0, 0], quarter), atol=1e-6)
    # half a pixel to the left: each output is the mean of two neighbours, the last column half of one
    y = np.asarray(augment.affine(x, _eye(1), jnp.array([[0.0, 0.5]])))[0, 0]
    xn = np.asarray(x)[0, 0]
    np.testing.assert_allclose(y[:, :4], (xn[:, :4] + xn[:, 1:]) / 2, rtol=1e-6)
    np.testing.assert_allclose(y[:, 4], xn[:, 4] / 2, rtol=1e-6)


def test_adjoint_is_the_transpose_and_the_gradient(x64):
    """<affine(x), dy> = <x, affine_adjoint(dy)> (float64, maps with rotation, scaling and shifts that
    push corners out of the image), and the adjoint equals jax.vjp of affine."""
    x = jax.random.uniform(jax.random.key(0), (3, 2, 9, 8), jnp.float64)
    dy = jax.random.normal(jax.random.key(1), x.shape, jnp.float64)
    m, o = augment.random_affine_params(jax.random.key(2), 3, max_rotation=40.0, max_shift=4.0, max_scale=0.3,
                                        dtype=jnp.float64)
    lhs, rhs = jnp.sum(augment.affine(x, m, o) * dy), jnp.sum(x * augment.affine_adjoint(dy, m, o))
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-12)
    _, vjp = jax.vjp(lambda x: augment.affine(x, m, o), x)
    np.testing.assert_allclose(vjp(dy)[0], augment.affine_adjoint(dy, m, o), rtol=1e-12, atol=1e-14)


def test_random_maps_stay_in_their_ranges():
    n = 2000
    m, o = augment.random_affine_params(jax.random.key(0), n, max_rotation=15.0, max_shift=3.0, max_scale=0.1)
    a = np.linalg.inv(np.asarray(m, np.float64))  # scale * R(angle)
    scale = np.sqrt(np.linalg.det(a))
    angle = np.degrees(np.arctan2(a[:, 1, 0], a[:, 0, 0]))
    shift = -np.einsum("nij,nj->ni", a, np.asarray(o, np.float64))
    assert np.all(np.abs(angle) <= 15.0 + 1e-4) and np.abs(angle).max() > 14.0
    assert np.all(np.abs(scale - 1) <= 0.1 + 1e-5) and np.abs(scale - 1).max() > 0.09
    assert np.all(np.abs(shift) <= 3.0 + 1e-4) and np.abs(shift).max() > 2.9
    assert abs(np.mean(angle)) < 0.6  # symmetric: the mean of 2000 draws of U(-15, 15) (sd 0.19)


def test_random_affine_is_a_pure_function_of_the_key():
    x = jax.random.uniform(jax.random.key(0), (4, 1, 28, 28))
    a, b = augment.random_affine(jax.random.key(1), x), augment.random_affine(jax.random.key(1), x)
    np.testing.assert_array_equal(a, b)
    c = augment.random_affine(jax.random.key(2), x)
    assert not np.allclose(a, c)
    same = augment.random_affine(jax.random.key(1), jnp.broadcast_to(x[:1], x.shape))
    assert not np.allclose(same[0], same[1])  # every image gets its own map
    jitted = jax.jit(augment.random_affine)(jax.random.key(1), x)
    np.testing.assert_allclose(jitted, a, atol=1e-5)  # float32 sin and cos, fused differently
    lanes = jax.vmap(augment.random_affine, in_axes=(0, None))(jax.random.split(jax.random.key(3), 2), x)
    assert lanes.shape == (2, 4, 1, 28, 28)
    grad = jax.grad(lambda x: jnp.sum(augment.random_affine(jax.random.key(1), x) ** 2))(x)
    m, o = augment.random_affine_params(jax.random.key(1), 4)
    np.testing.assert_allclose(grad, augment.affine_adjoint(2 * a, m, o), rtol=1e-5, atol=1e-6)


def test_layer_backward_and_modes():
    layer = augment.RandomAffine(max_rotation=20.0, max_shift=3.0, max_scale=0.1)
    x = jax.random.uniform(jax.random.key(0), (3, 1, 12, 12))
    for train in (True, False):
        report = jaxnet.check_layer(layer, x, key=jax.random.key(4), train=train)
        assert report.passed, str(report)
    np.testing.assert_array_equal(layer.apply({}, x), x)  # evaluation: the identity
    np.testing.assert_array_equal(layer.apply({}, x, key=jax.random.key(4), train=True),
                                  augment.random_affine(jax.random.key(4), x, max_rotation=20.0, max_shift=3.0,
                                                        max_scale=0.1))
    assert layer == augment.RandomAffine(20, 3, 0.1) and hash(layer) == hash(augment.RandomAffine(20, 3, 0.1))


def test_trains_inside_fit_with_both_gradient_routes():
    """A network that starts with RandomAffine: `fit` draws new maps every step from its step keys
    (one compiled run), both gradient routes give the same run, and evaluation is unaffected."""
    net = jaxnet.serial(augment.RandomAffine(), jaxnet.Flatten(), jaxnet.Dense(10), input_shape=(1, 8, 8))
    plain = jaxnet.serial(jaxnet.Flatten(), jaxnet.Dense(10), input_shape=(1, 8, 8))
    _, params = net.init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (64, 1, 8, 8))
    y = jax.random.randint(jax.random.key(2), (64,), 0, 10)
    runs = {grad: jaxnet.fit(net, params, x, y, loss="softmax_cross_entropy", optimizer=jaxnet.optim.sgd(0.5),
                             epochs=3, batch_size=16, key=jax.random.key(3), grad=grad)
            for grad in ("backprop", "autodiff")}
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 runs["backprop"].params, runs["autodiff"].params)
    unaugmented = jaxnet.fit(plain, params[1:], x, y, loss="softmax_cross_entropy", optimizer=jaxnet.optim.sgd(0.5),
                             epochs=3, batch_size=16, key=jax.random.key(3))
    assert not np.allclose(runs["backprop"].params[2]["W"], unaugmented.params[1]["W"])
    np.testing.assert_allclose(net.apply(runs["backprop"].params, x), plain.apply(runs["backprop"].params[1:], x),
                               rtol=1e-6)


def test_errors_name_the_argument():
    x = jnp.zeros((2, 1, 5, 5))
    with pytest.raises(ValueError, match=r"^x: expected a batch of channels-first images \(N, C, H, W\), got shape "
                                         r"\(2, 25\)"):
        augment.affine(jnp.zeros((2, 25)), _eye(2), jnp.zeros((2, 2)))
    with pytest.raises(TypeError, match=r"^x: expected floating-point images, got dtype uint8"):
        augment.random_affine(jax.random.key(0), jnp.zeros((2, 1, 5, 5), jnp.uint8))
    with pytest.raises(ValueError, match=r"^matrix: expected one 2 x 2 matrix per image, shape \(2, 2, 2\)"):
        augment.affine(x, _eye(3), jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"^offset: expected one \(row, col\) offset per image"):
        augment.affine(x, _eye(2), jnp.zeros((2,)))
    for kwargs, name in (({"max_rotation": -1.0}, "max_rotation"), ({"max_shift": float("nan")}, "max_shift"),
                         ({"max_scale": 1.0}, "max_scale")):
        with pytest.raises(ValueError, match=rf"^{name}: expected"):
            augment.RandomAffine(**kwargs)
    for kwargs, name in (({"max_shift": "2"}, "max_shift"), ({"max_rotation": True}, "max_rotation")):
        with pytest.raises(TypeError, match=rf"^{name}: expected a"):
            augment.RandomAffine(**kwargs)
    with pytest.raises(ValueError, match=r"^input_shape: RandomAffine.*expected channels-first images"):
        augment.RandomAffine().init(jax.random.key(0), (784,))
    with pytest.raises(ValueError, match=r"^key: RandomAffine.*needs a PRNG key"):
        augment.RandomAffine().apply({}, x, train=True)

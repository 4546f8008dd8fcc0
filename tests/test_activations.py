"""Activations: field cases N1, N2. jaxnet's sigmoid and tanh carry custom JVPs built from the hand
derivatives, so `jax.grad` of them equals the hand derivative by construction and is no reference:
both are checked against independent ones (float64 numpy closed forms, `jax.grad` of plain `jax.nn`
functions in float64 where their rule does not cancel, central finite differences)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxnet import activations as A

NAMES = ["sigmoid", "relu", "tanh", "identity"]


def closed_form_derivative(name, x):
    """Independent float64 numpy formulas (not jaxnet's code)."""
    x = np.asarray(x, np.float64)
    if name == "sigmoid":
        e = np.exp(-np.abs(x))
        return e / (1 + e) ** 2
    if name == "tanh":
        e = np.exp(-2 * np.minimum(np.abs(x), 400))  # 1 / cosh(x)^2 without overflow (0 beyond 372)
        return 4 * e / (1 + e) ** 2
    if name == "relu":
        return (x > 0).astype(np.float64)
    return np.ones_like(x)


def test_n1_sigmoid_large_inputs_float32():
    got = A.sigmoid(jnp.array([0.12, 0.34, -1234.1, 1234.1], jnp.float32))
    np.testing.assert_allclose(got, [0.52996405, 0.58419052, 0.0, 1.0], rtol=1e-6, atol=0)
    assert got[2] == 0.0 and got[3] == 1.0
    np.testing.assert_array_equal(A.tanh(jnp.array([-1000.0, 1000.0])), [-1.0, 1.0])


def test_n1_numpy_float64_input_raises_no_warning():
    x = np.array([0.12, 0.34, -1234.1, 1234.1], np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in NAMES:
            out = A.ACTIVATIONS[name].fn(x)
            d = A.ACTIVATIONS[name].derivative(x)
            assert np.all(np.isfinite(out)) and np.all(np.isfinite(d))


def test_n2_sigmoid_derivative_saturated_float32():
    x = jnp.linspace(-200.0, 0.0, 4, dtype=jnp.float32)
    want = closed_form_derivative("sigmoid", x).astype(np.float32)  # float64 numpy, rounded
    np.testing.assert_allclose(want, [0.0, 0.0, 1.114386e-29, 0.25], rtol=1e-5, atol=1e-35)
    for got in (A.sigmoid_derivative(x), jax.vmap(jax.grad(A.sigmoid))(x)):  # hand, and the custom JVP
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-30)
        assert np.all(np.isfinite(got)) and np.all(np.asarray(got) >= 0)


def test_n2_sigmoid_derivative_saturated_float64(x64):
    x = jnp.linspace(-200.0, 0.0, 4, dtype=jnp.float64)
    np.testing.assert_allclose(A.sigmoid_derivative(x), [1.38389652673674e-87, 1.2428e-58, 1.1144e-29, 0.25], rtol=1e-3)


def test_n2_sigmoid_derivative_does_not_cancel_at_20():
    x = jnp.float32(20.0)
    s = A.sigmoid(x)
    assert s * (1 - s) == 0.0  # the textbook form cancels in float32 ...
    np.testing.assert_allclose(A.sigmoid_derivative(x), 2.0611537e-09, rtol=1e-6)  # ... the stable one does not
    np.testing.assert_allclose(jax.grad(A.sigmoid)(x), 2.0611537e-09, rtol=1e-6)


def special_inputs(dtype):
    finfo = jnp.finfo(dtype)
    special = [0.0, -0.0, 1e-30, -1e-30, 17.0, 20.0, 40.0, 89.0, 710.0, -745.0, float(finfo.max), float(finfo.min)]
    return jnp.concatenate([jnp.linspace(-60, 60, 2001, dtype=dtype), jnp.array(special, dtype)])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_hand_derivative_and_jax_grad_match_the_closed_form_everywhere(name, dtype):
    """Hand derivative and jax.grad (the custom JVP) against the float64 closed form rounded to the
    dtype: a few ulp relative, or absolutely within 8 times the dtype's smallest normal number (XLA
    flushes subnormal intermediates to zero on CPU, so tanh' ~ 4 s(2x) s(-2x) loses values below that)."""
    with jax.enable_x64(dtype == "float64"):
        x = special_inputs(dtype)
        act = A.ACTIVATIONS[name]
        want = closed_form_derivative(name, x).astype(dtype)
        finfo = jnp.finfo(dtype)
        for got in (act.derivative(x), jax.vmap(jax.grad(act.fn))(x)):
            assert got.dtype == x.dtype
            np.testing.assert_allclose(got, want, rtol=8 * float(finfo.eps), atol=8 * float(finfo.tiny))
        assert np.all(np.isfinite(act.fn(x)))


@pytest.mark.parametrize("name, plain, low, high", [
    ("sigmoid", jax.nn.sigmoid, -700.0, 5.0),  # jax's rule s (1 - s) cancels only for large positive x
    ("tanh", jnp.tanh, -3.0, 3.0),  # (1 + t)(1 - t) cancels in both tails
    ("relu", jax.nn.relu, -60.0, 60.0),
    ("identity", lambda v: v, -60.0, 60.0),
])
def test_hand_derivative_matches_plain_jax_autodiff_float64(name, plain, low, high, x64):
    x = jnp.concatenate([jnp.linspace(low, high, 4001, dtype=jnp.float64), jnp.array([0.0, -0.0])])
    want = jax.vmap(jax.grad(plain))(x)
    np.testing.assert_allclose(A.ACTIVATIONS[name].derivative(x), want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_closed_form_float64(name, x64):
    x = np.concatenate([np.linspace(-40, 40, 4001), [-700.0, -300.0, 300.0, 700.0]])
    x = x[x != 0]  # the kink is tested separately
    got = np.asarray(A.ACTIVATIONS[name].derivative(jnp.asarray(x)))
    want = closed_form_derivative(name, x)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)


def test_kinks_relu_zero_derivative():
    assert A.relu_derivative(jnp.float32(0.0)) == 0.0
    assert jax.grad(A.relu)(0.0) == 0.0  # jnp.maximum(x, 0) would give 0.5 here


@given(st.floats(-30, 30, allow_nan=False))
def test_derivatives_match_central_differences(x):
    with jax.enable_x64(True):
        for name in ("sigmoid", "tanh"):
            f = A.ACTIVATIONS[name]
            eps = 1e-6
            fd = (f.fn(jnp.float64(x + eps)) - f.fn(jnp.float64(x - eps))) / (2 * eps)
            np.testing.assert_allclose(f.derivative(jnp.float64(x)), fd, rtol=1e-6, atol=1e-9)


def test_softmax_vjp_equals_jax_vjp(x64):
    x = jax.random.normal(jax.random.key(1), (5, 4), jnp.float64) * 10
    dy = jax.random.normal(jax.random.key(2), (5, 4), jnp.float64)
    _, vjp = jax.vjp(A.softmax, x)
    np.testing.assert_allclose(A.softmax_vjp(x, dy), vjp(dy)[0], rtol=1e-12, atol=1e-14)


def test_n4_softmax_huge_logits_and_n5_rows():
    z = jnp.array([-1047.0, -981.0, 1891.0])
    np.testing.assert_array_equal(A.softmax(z), [0.0, 0.0, 1.0])
    g = jax.grad(lambda v: jnp.sum(A.softmax(v)))(z)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, 0.0, atol=1e-6)
    rows = A.softmax(jnp.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(rows, [[0.09003057, 0.24472848, 0.66524094]] * 2, rtol=1e-6)

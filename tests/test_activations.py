"""Activations: field cases N1, N2; hand derivatives equal jax.grad everywhere; checked against an
independent float64 closed form and finite differences."""

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
        return 1 / np.cosh(np.clip(x, -350, 350)) ** 2
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
    hand = A.sigmoid_derivative(x)
    np.testing.assert_allclose(hand, [0.0, 0.0, 1.114386e-29, 0.25], rtol=1e-5, atol=1e-35)
    auto = jax.vmap(jax.grad(A.sigmoid))(x)
    np.testing.assert_allclose(hand, auto, rtol=0, atol=1e-30)
    assert np.all(np.isfinite(hand)) and np.all(hand >= 0)


def test_n2_sigmoid_derivative_saturated_float64(x64):
    x = jnp.linspace(-200.0, 0.0, 4, dtype=jnp.float64)
    np.testing.assert_allclose(A.sigmoid_derivative(x), [1.38389652673674e-87, 1.2428e-58, 1.1144e-29, 0.25], rtol=1e-3)


def test_n2_sigmoid_derivative_does_not_cancel_at_20():
    x = jnp.float32(20.0)
    s = A.sigmoid(x)
    assert s * (1 - s) == 0.0  # the textbook form cancels in float32 ...
    np.testing.assert_allclose(A.sigmoid_derivative(x), 2.0611537e-09, rtol=1e-6)  # ... the stable one does not
    np.testing.assert_allclose(jax.grad(A.sigmoid)(x), 2.0611537e-09, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_hand_derivative_equals_jax_grad_everywhere(name, dtype):
    with jax.enable_x64(dtype == "float64"):
        finfo = jnp.finfo(dtype)
        special = [0.0, -0.0, 1e-30, -1e-30, 17.0, 20.0, 40.0, 89.0, 710.0, -745.0, float(finfo.max), float(finfo.min)]
        x = jnp.concatenate([jnp.linspace(-60, 60, 2001, dtype=dtype), jnp.array(special, dtype)])
        act = A.ACTIVATIONS[name]
        hand, auto = act.derivative(x), jax.vmap(jax.grad(act.fn))(x)
        assert hand.dtype == x.dtype
        np.testing.assert_array_equal(hand, auto)  # same numbers, kinks and tails included
        assert np.all(np.isfinite(act.fn(x))) and np.all(np.isfinite(hand))


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

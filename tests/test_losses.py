"""Losses: field cases N3-N5 and G1, reductions, and each hand gradient against jax.grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxnet import losses as L


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("p,y", [(1.0, 1.0), (0.0, 0.0)])
def test_n3_bce_saturated_prediction_is_finite(p, y, dtype):
    with jax.enable_x64(dtype == "float64"):
        yp, yt = jnp.array([[p]], dtype), jnp.array([[y]], dtype)
        value = L.binary_crossentropy(yp, yt)
        assert 0 <= float(value) < 1e-6
        g_hand, g_auto = L.binary_crossentropy_grad(yp, yt), jax.grad(L.binary_crossentropy)(yp, yt)
        assert np.all(np.isfinite(g_hand)) and np.all(np.isfinite(g_auto))
        np.testing.assert_array_equal(g_hand, g_auto)


def test_n3_naive_bce_would_be_nan():
    """The fault the clipping prevents: 0 * log 0 in a naive formula."""
    p, y = jnp.float32(1.0), jnp.float32(1.0)
    assert jnp.isnan(-(y * jnp.log(p) + (1 - y) * jnp.log(1 - p)))


def test_bce_float32_epsilon_actually_clips():
    # a fixed eps of 1e-15 rounds 1 - eps to 1 in float32; the dtype's own eps does not
    assert jnp.float32(1) - jnp.float32(1e-15) == 1.0
    value = L.binary_crossentropy(jnp.array([[1.0]], jnp.float32), jnp.array([[0.0]], jnp.float32))
    np.testing.assert_allclose(value, -np.log(np.finfo(np.float32).eps), rtol=1e-6)


def test_g1_where_guarded_log_has_nan_gradient_but_jaxnet_does_not():
    naive = lambda p, y: -jnp.mean(jnp.where(y == 1, jnp.log(p), jnp.log(1 - p)))  # noqa: E731
    p, y = jnp.array([1.0]), jnp.array([1.0])
    assert np.isfinite(naive(p, y)) and np.isnan(jax.grad(naive)(p, y)).any()
    for fn in (L.binary_crossentropy, L.sigmoid_binary_crossentropy):
        assert np.all(np.isfinite(jax.grad(fn)(p, y)))


def test_n4_softmax_cross_entropy_huge_logits():
    z = jnp.array([[-431.0, 279.0, 427.0]])
    for labels in (jnp.array([0]), jnp.array([[1.0, 0.0, 0.0]])):
        np.testing.assert_allclose(L.softmax_cross_entropy(z, labels), 858.0, rtol=1e-6)
        np.testing.assert_allclose(L.softmax_cross_entropy_grad(z, labels), [[-1.0, 0.0, 1.0]], atol=1e-6)
        np.testing.assert_allclose(jax.grad(L.softmax_cross_entropy)(z, labels), [[-1.0, 0.0, 1.0]], atol=1e-6)


def test_n5_softmax_cross_entropy_is_a_mean_over_rows():
    z = jnp.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    np.testing.assert_allclose(L.softmax_cross_entropy(z, jnp.array([2, 2])), 0.407606, rtol=1e-6)
    np.testing.assert_allclose(L.softmax_cross_entropy(z[:1], jnp.array([2])), 0.407606, rtol=1e-6)


def test_mse_is_a_mean_over_batch_and_outputs():
    yp, yt = jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.zeros((2, 2))
    np.testing.assert_allclose(L.mse(yp, yt), (1 + 4 + 9 + 16) / 4)
    np.testing.assert_allclose(L.mse_grad(yp, yt), 2 * np.asarray(yp) / 4)


def test_sigmoid_bce_equals_bce_of_sigmoid_in_range():
    z = jnp.linspace(-8, 8, 33).reshape(-1, 1)
    y = (jnp.arange(33) % 2).reshape(-1, 1).astype(jnp.float32)
    np.testing.assert_allclose(L.sigmoid_binary_crossentropy(z, y), L.binary_crossentropy(jax.nn.sigmoid(z), y), rtol=1e-5)
    big = jnp.array([[1000.0], [-1000.0]])
    assert np.isfinite(L.sigmoid_binary_crossentropy(big, jnp.array([[0.0], [1.0]])))


finite64 = st.floats(-50, 50, allow_nan=False, width=64)


@jax.jit
def _hand_and_auto(z, targets01, labels):
    probs = jax.nn.sigmoid(z)
    cases = {
        "mse": (z, targets01),
        "binary_crossentropy": (probs, targets01),
        "sigmoid_binary_crossentropy": (z, targets01),
        "softmax_cross_entropy": (z, labels),
        "softmax_cross_entropy/one_hot": (z, jax.nn.one_hot(labels, z.shape[1], dtype=z.dtype)),
    }
    out = {}
    for name, (yp, yt) in cases.items():
        loss = L.LOSSES[name.split("/")[0]]
        out[name] = (loss.grad(yp, yt), jax.grad(loss.value)(yp, yt))
    return out


@given(hnp.arrays(np.float64, st.tuples(st.sampled_from([1, 3, 8]), st.sampled_from([1, 4])), elements=finite64),
       st.data())
def test_hand_gradients_equal_jax_grad_float64(z, data):
    with jax.enable_x64(True):
        targets01 = data.draw(hnp.arrays(np.float64, z.shape, elements=st.sampled_from([0.0, 1.0])))
        labels = data.draw(hnp.arrays(np.int32, z.shape[:1], elements=st.integers(0, z.shape[1] - 1)))
        for name, (hand, auto) in _hand_and_auto(jnp.asarray(z), jnp.asarray(targets01), jnp.asarray(labels)).items():
            assert hand.dtype == jnp.float64
            np.testing.assert_allclose(hand, auto, rtol=1e-10, atol=1e-12, err_msg=name)


def test_unknown_loss_name_lists_valid_ones():
    with pytest.raises(ValueError, match="binary_crossentropy.*mse"):
        L.get("cross_entropyy")

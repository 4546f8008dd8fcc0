"""gradcheck: field case G2 (float64 finite differences reach ~3e-11; wrong gradients are flagged)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet
from jaxnet import Dense, Sigmoid, gradcheck, serial

X = jnp.array([[0.5, -1.0], [1.5, 2.0], [-0.3, 0.8]])
Y = jnp.array([[1.0], [0.0], [1.0]])
W = jnp.array([[0.3], [-0.2]])
TRUE_GRAD = [0.12230375, 0.16375742]


def g2_net():
    """loss = mean((sigmoid(x @ w) - y)^2): a Dense layer without bias, then a sigmoid."""
    return serial(Dense(1, b_init="zeros"), Sigmoid, input_shape=(2,))


def g2_params():
    return ({"W": W, "b": jnp.zeros(1)}, {})


def test_g2_true_gradient_value():
    with jax.enable_x64(True):
        _, g = jaxnet.backprop(g2_net(), jax.tree.map(lambda a: a.astype(jnp.float64), g2_params()),
                               X.astype(jnp.float64), Y.astype(jnp.float64), "mse")
        np.testing.assert_allclose(g[0]["W"].ravel(), TRUE_GRAD, rtol=1e-7)


def test_g2_float64_central_difference_agrees_to_3e_11():
    report = gradcheck(g2_net(), g2_params(), X, Y, "mse")
    assert report.passed, str(report)
    w_leaf = report.leaves[0]
    assert w_leaf.fd_rel < 1e-9  # ~3e-11 measured in float64; float32 differences could not get near
    assert w_leaf.backprop_rel < 1e-14


def test_g2_float32_finite_differences_cannot_reach_1e7():
    """Why gradcheck runs in float64: a float32 central difference is far off at any step size."""
    f = lambda w: jnp.mean((jax.nn.sigmoid(X @ w) - Y) ** 2)  # noqa: E731
    best = min(
        abs(float((f(W.at[0, 0].add(eps)) - f(W.at[0, 0].add(-eps))) / (2 * eps)) - TRUE_GRAD[0]) / TRUE_GRAD[0]
        for eps in (1e-1, 1e-2, 1e-3, 1e-4)
    )
    assert best > 1e-7


def wrong(transform):
    def grad_fn(net, params, x, y, loss):
        value, grads = jaxnet.backprop(net, params, x, y, loss)
        return value, transform(grads, x)
    return grad_fn


@pytest.mark.parametrize("name,transform", [
    ("doubled", lambda g, x: jax.tree.map(lambda a: 2 * a, g)),
    ("missing 1/m", lambda g, x: jax.tree.map(lambda a: a * x.shape[0], g)),
    ("tutorial's extra 1/m", lambda g, x: jax.tree.map(lambda a: a / x.shape[0], g)),
])
def test_g2_flags_wrong_gradients(name, transform):
    report = gradcheck(g2_net(), g2_params(), X, Y, "mse", grad_fn=wrong(transform))
    assert not report.passed, name
    assert "FAILED" in str(report)


def test_flags_one_transposed_leaf():
    net = jaxnet.mlp([3, 3, 1])
    _, params = net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (5, 3))
    y = jax.random.uniform(jax.random.key(2), (5, 1))

    def transposed(g, x):
        return (dict(g[0], W=g[0]["W"].T),) + g[1:]

    report = gradcheck(net, params, x, y, "mse", grad_fn=wrong(transposed))
    assert not report.passed
    assert [leaf.passed for leaf in report.leaves] == [False, True, True, True]


def test_report_prints_a_table():
    text = str(gradcheck(g2_net(), g2_params(), X, Y, "mse"))
    assert "bp max abs" in text and "PASSED" in text and "[0]['W']" in text

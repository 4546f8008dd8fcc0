"""Weight decay (field case R7): the book's L2 regulariser and decoupled decay (AdamW).

Checked against independent code written here: a plain-jnp loss plus 0.5 * lambda * sum(W^2) and its
jax.grad in float64 (not jaxnet's l2_penalty), hand-computed values from the issue, and numpy
transcriptions of SGD with L2, Adam with L2 and AdamW.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnet import BatchNorm, Dense, Dropout, Relu, backprop, fit, mlp, serial
from jaxnet.grad import l2_penalty
from jaxnet.regularization import adamw, decoupled_weight_decay

LAMBDA = 0.3


def _randomise(params, key):
    """Every leaf (biases, gamma, beta included) set to random non-zero values, so that decaying a
    bias would change the result."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [1.0 + 0.5 * jax.random.normal(k, p.shape, p.dtype)
                                        for k, p in zip(keys, leaves)])


def _plain_loss(params, x, labels, batchnorm):
    """Dense -> (BatchNorm, training mode) -> ReLU -> Dense, mean softmax cross-entropy, in plain jnp."""
    d1, bn, _, d2 = params if batchnorm else (params[0], None, None, params[2])
    h = x @ d1["W"] + d1["b"]
    if batchnorm:
        mu = jnp.mean(h, axis=0)
        var = jnp.mean((h - mu) ** 2, axis=0)
        h = bn["gamma"] * (h - mu) / jnp.sqrt(var + 1e-5) + bn["beta"]
    logits = jnp.maximum(h, 0) @ d2["W"] + d2["b"]
    log_p = logits - jax.scipy.special.logsumexp(logits, axis=1, keepdims=True)
    return -jnp.mean(log_p[jnp.arange(len(labels)), labels])


@pytest.mark.parametrize("batchnorm", [False, True])
def test_l2_hand_gradient_equals_jax_grad_float64(x64, batchnorm):
    f64 = jnp.float64
    layers = [Dense(6, dtype=f64)] + ([BatchNorm(dtype=f64)] if batchnorm else []) + [Relu, Dense(3, dtype=f64)]
    net = serial(*layers)
    _, params = net.init(jax.random.key(0), (4,))
    params = _randomise(params, jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (8, 4), f64)
    labels = jnp.array([0, 1, 2, 0, 1, 2, 2, 1])

    def objective(p):  # the book's 6.4.1: loss + 0.5 lambda sum over the weight matrices of W^2
        weights = p[0]["W"], p[-1]["W"]
        return _plain_loss(p, x, labels, batchnorm) + 0.5 * LAMBDA * sum(jnp.sum(w ** 2) for w in weights)

    expected_value, expected_grads = jax.value_and_grad(objective)(params)
    value, grads = backprop(net, params, x, labels, "softmax_cross_entropy", state=net.init_state((4,)),
                            train=True, weight_decay=LAMBDA)
    np.testing.assert_allclose(value, expected_value, rtol=1e-12)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(expected_grads)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
    # the biases' (and gamma's, beta's) gradients are the data gradients alone
    _, data_grads = jax.value_and_grad(lambda p: _plain_loss(p, x, labels, batchnorm))(params)
    np.testing.assert_allclose(grads[0]["b"], data_grads[0]["b"], rtol=1e-10, atol=1e-13)
    if batchnorm:
        np.testing.assert_allclose(grads[1]["gamma"], data_grads[1]["gamma"], rtol=1e-10, atol=1e-13)


def test_decay_mask_selects_weights_only():
    net = serial(Dense(5), BatchNorm(), Relu, Dropout(0.5), Dense(2))
    _, params = net.init(jax.random.key(0), (3,))
    assert net.decay_mask(params) == ({"W": True, "b": False}, {"gamma": False, "beta": False}, {}, {},
                                      {"W": True, "b": False})
    params = _randomise(params, jax.random.key(1))
    by_hand = 0.5 * LAMBDA * (np.sum(np.square(params[0]["W"])) + np.sum(np.square(params[4]["W"])))
    np.testing.assert_allclose(l2_penalty(net, params, LAMBDA), by_hand, rtol=1e-6)


def _zero_gradient_problem():
    """W = ones(2, 3), b = (0.1, -0.2, 0.3), x = 0 and y = b: the MSE's data gradient is exactly 0."""
    net = mlp([2, 3], activation="identity")
    b = jnp.array([0.1, -0.2, 0.3])
    params = ({"W": jnp.ones((2, 3)), "b": b}, {})
    return net, params, jnp.zeros((4, 2)), jnp.tile(b, (4, 1))


def test_reference_values_sgd_step_and_l2_term():
    net, params, x, y = _zero_gradient_problem()
    assert float(l2_penalty(net, params, 0.5)) == 1.5  # 0.5 * 0.5 * 6
    result = fit(net, params, x, y, loss="mse", optimizer="sgd", hyperparams={"learning_rate": 0.1}, epochs=1,
                 weight_decay=0.5)
    np.testing.assert_allclose(result.params[0]["W"], np.full((2, 3), 0.95), rtol=1e-7)
    np.testing.assert_array_equal(result.params[0]["b"], params[0]["b"])
    np.testing.assert_allclose(result.history["loss"][0], 1.5, rtol=1e-7)  # the recorded loss has the penalty
    decoupled = fit(net, params, x, y, loss="mse", epochs=1,
                    optimizer=optax.chain(decoupled_weight_decay(net, 0.5), optax.sgd(0.1)))
    np.testing.assert_allclose(decoupled.params[0]["W"], np.full((2, 3), 0.95), rtol=1e-7)
    np.testing.assert_array_equal(decoupled.params[0]["b"], params[0]["b"])


def test_reference_values_adam_step_l2_differs_from_decoupled():
    net, params, x, y = _zero_gradient_problem()
    l2 = fit(net, params, x, y, loss="mse", optimizer="adam", hyperparams={"learning_rate": 0.1}, epochs=1,
             weight_decay=0.5)
    decoupled = fit(net, params, x, y, loss="mse", optimizer=adamw(net, 0.1, 0.5), epochs=1)
    # Adam with L2: g = 0.5, step = 0.1 * 0.5 / (sqrt(0.25) + 1e-8); AdamW: 0.1 * 0.5 * 1
    np.testing.assert_allclose(l2.params[0]["W"], np.full((2, 3), 1 - 0.1 * 0.5 / (0.5 + 1e-8)), rtol=1e-7)
    np.testing.assert_allclose(decoupled.params[0]["W"], np.full((2, 3), 0.95), rtol=1e-7)
    for result in (l2, decoupled):
        np.testing.assert_array_equal(result.params[0]["b"], params[0]["b"])


def _linear_problem():
    """A 3 -> 2 linear model with MSE on random data, float64, non-zero bias."""
    net = mlp([3, 2], activation="identity", dtype=jnp.float64)
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(3, 2)), rng.normal(size=2)
    x, y = rng.normal(size=(10, 3)), rng.normal(size=(10, 2))
    return net, ({"W": jnp.asarray(W), "b": jnp.asarray(b)}, {}), x, y


def _numpy_run(W, b, x, y, steps, *, rule, lr, lam, b1=0.9, b2=0.999, eps=1e-8):
    """A numpy transcription: `rule` is 'sgd_l2', 'adam_l2' or 'adamw'; MSE = mean((xW + b - y)^2)."""
    W, b = W.copy(), b.copy()
    m = {"W": np.zeros_like(W), "b": np.zeros_like(b)}
    v = {"W": np.zeros_like(W), "b": np.zeros_like(b)}
    for t in range(1, steps + 1):
        r = 2 * (x @ W + b - y) / y.size
        g = {"W": x.T @ r, "b": r.sum(axis=0)}
        if rule in ("sgd_l2", "adam_l2"):
            g["W"] = g["W"] + lam * W
        if rule == "sgd_l2":
            W, b = W - lr * g["W"], b - lr * g["b"]
            continue
        step = {}
        for k in ("W", "b"):
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            step[k] = (m[k] / (1 - b1 ** t)) / (np.sqrt(v[k] / (1 - b2 ** t)) + eps)
        if rule == "adamw":
            step["W"] = step["W"] + lam * W
        W, b = W - lr * step["W"], b - lr * step["b"]
    return W, b


def test_sgd_l2_equals_decoupled_and_numpy(x64):
    net, params, x, y = _linear_problem()
    lr, steps = 0.05, 25
    l2 = fit(net, params, x, y, loss="mse", optimizer="sgd", hyperparams={"learning_rate": lr}, epochs=steps,
             weight_decay=LAMBDA)
    decoupled = fit(net, params, x, y, loss="mse", epochs=steps,
                    optimizer=optax.chain(decoupled_weight_decay(net, LAMBDA), optax.sgd(lr)))
    W, b = _numpy_run(np.asarray(params[0]["W"]), np.asarray(params[0]["b"]), x, y, steps, rule="sgd_l2", lr=lr,
                      lam=LAMBDA)
    for result in (l2, decoupled):
        np.testing.assert_allclose(result.params[0]["W"], W, rtol=1e-12)
        np.testing.assert_allclose(result.params[0]["b"], b, rtol=1e-12)


def test_adam_l2_and_adamw_match_numpy_and_differ(x64):
    net, params, x, y = _linear_problem()
    lr, steps = 0.05, 25
    l2 = fit(net, params, x, y, loss="mse", optimizer="adam", hyperparams={"learning_rate": lr}, epochs=steps,
             weight_decay=LAMBDA)
    decoupled = fit(net, params, x, y, loss="mse", optimizer=adamw(net, lr, LAMBDA), epochs=steps)
    W0, b0 = np.asarray(params[0]["W"]), np.asarray(params[0]["b"])
    W_l2, b_l2 = _numpy_run(W0, b0, x, y, steps, rule="adam_l2", lr=lr, lam=LAMBDA)
    W_w, b_w = _numpy_run(W0, b0, x, y, steps, rule="adamw", lr=lr, lam=LAMBDA)
    np.testing.assert_allclose(l2.params[0]["W"], W_l2, rtol=1e-10)
    np.testing.assert_allclose(l2.params[0]["b"], b_l2, rtol=1e-10)
    np.testing.assert_allclose(decoupled.params[0]["W"], W_w, rtol=1e-10)
    np.testing.assert_allclose(decoupled.params[0]["b"], b_w, rtol=1e-10)
    assert np.max(np.abs(W_l2 - W_w)) > 1e-2  # the two rules really are different


def test_fit_records_loss_with_penalty_against_plain_sgd(x64):
    net, params, x, y = _linear_problem()
    lr, steps = 0.1, 4
    result = fit(net, params, x, y, loss="mse", optimizer="sgd", hyperparams={"learning_rate": lr}, epochs=steps,
                 weight_decay=LAMBDA)

    def objective(W, b):
        return jnp.mean((x @ W + b - y) ** 2) + 0.5 * LAMBDA * jnp.sum(W ** 2)

    W, b = params[0]["W"], params[0]["b"]
    for t in range(steps):
        value, (gW, gb) = jax.value_and_grad(objective, argnums=(0, 1))(W, b)
        np.testing.assert_allclose(result.history["loss"][t], value, rtol=1e-12)
        W, b = W - lr * gW, b - lr * gb


def test_adamw_masks_biases_and_batchnorm_parameters():
    net = serial(Dense(4), BatchNorm(), Relu, Dense(2))
    _, params = net.init(jax.random.key(0), (3,))
    params = _randomise(params, jax.random.key(1))
    tx = adamw(net, 0.1, 0.5)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_allclose(updates[0]["W"], -0.1 * 0.5 * params[0]["W"], rtol=1e-6)
    np.testing.assert_allclose(updates[3]["W"], -0.1 * 0.5 * params[3]["W"], rtol=1e-6)
    for leaf in (updates[0]["b"], updates[1]["gamma"], updates[1]["beta"], updates[3]["b"]):
        np.testing.assert_array_equal(leaf, 0.0)


def test_adamw_traced_hyperparameters_under_vmap_and_jit():
    net, params, _, _ = _zero_gradient_problem()
    zeros = jax.tree.map(jnp.zeros_like, params)

    @jax.jit
    def step(lr, lam):
        tx = adamw(net, lr, lam)
        updates, _ = tx.update(zeros, tx.init(params), params)
        return updates[0]["W"][0, 0]

    lams = jnp.array([0.0, 0.5, 1.0])
    np.testing.assert_allclose(jax.vmap(step, in_axes=(None, 0))(0.1, lams), -0.1 * lams, rtol=1e-6)


def test_bad_arguments_name_themselves():
    net, _, _, _ = _zero_gradient_problem()
    with pytest.raises(TypeError, match="^net:"):
        adamw("mlp", 0.1, 0.5)
    with pytest.raises(ValueError, match="^learning_rate:"):
        adamw(net, -0.1, 0.5)
    with pytest.raises(ValueError, match="^weight_decay:"):
        adamw(net, 0.1, -0.5)
    with pytest.raises(ValueError, match="^weight_decay:"):
        decoupled_weight_decay(net, float("nan"))

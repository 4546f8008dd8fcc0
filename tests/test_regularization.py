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

import jaxnet
from jaxnet import (ActivationLayer, AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Relu, Tanh,
                    autodiff, backprop, fit, mlp, serial)
from jaxnet.grad import l2_gradient, l2_penalty
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


# ----------------------------------------------------------------------------------------------
# Which params are weights: one rule for every layer (issue 21, item 1). The reference below names,
# per layer class, the params that are weights (every Dense and Conv2D W; no bias, no BatchNorm
# parameter), written down here and not derived from jaxnet's rule.
# ----------------------------------------------------------------------------------------------

WEIGHTS_BY_CLASS = {"Dense": {"W"}, "Conv2D": {"W"}, "BatchNorm": set()}
# one instance of every public layer class, with an input shape it takes
EXAMPLE_LAYERS = {
    "Dense": (lambda: Dense(3), (5,)),
    "Conv2D": (lambda: Conv2D(2, 3, padding=1), (2, 4, 4)),
    "BatchNorm": (lambda: BatchNorm(), (2, 4, 4)),
    "Dropout": (lambda: Dropout(0.5), (5,)),
    "ActivationLayer": (lambda: ActivationLayer("tanh"), (5,)),
    "MaxPool2D": (lambda: MaxPool2D(2), (2, 4, 4)),
    "AvgPool2D": (lambda: AvgPool2D(2), (2, 4, 4)),
    "Flatten": (lambda: Flatten(), (2, 4, 4)),
    "Network": (lambda: serial(Conv2D(2, 3), Tanh, BatchNorm(), Flatten(), Dense(3)), (1, 5, 5)),
}


def _public_layer_classes():
    """Every Layer subclass exported by jaxnet or defined in a module of jaxnet/nn/ (the base class
    itself aside): a layer added to any layer module is covered without editing this test."""
    import importlib
    import pkgutil

    modules = [jaxnet] + [importlib.import_module(f"jaxnet.nn.{info.name}")
                          for info in pkgutil.iter_modules(jaxnet.nn.__path__)]
    found = {}
    for module in modules:
        for name in dir(module):
            obj = getattr(module, name)
            cls = obj if isinstance(obj, type) else type(obj)
            if issubclass(cls, jaxnet.Layer) and cls is not jaxnet.Layer and not cls.__name__.startswith("_"):
                found[cls.__name__] = cls
    return found


def _reference_mask(layer, params):
    """The mask an independent reading of the book gives: the W of every Dense and Conv2D only."""
    if isinstance(layer, jaxnet.Network):
        return tuple(_reference_mask(inner, p) for inner, p in zip(layer.layers, params))
    weights = WEIGHTS_BY_CLASS.get(type(layer).__name__, set())
    return {name: name in weights for name in params}


def test_every_public_layer_class_is_covered():
    # a new public layer fails here until it has an example above (and, if it has params, a line in
    # WEIGHTS_BY_CLASS): so no layer can enter the library without its weights being checked
    assert set(_public_layer_classes()) <= set(EXAMPLE_LAYERS), set(_public_layer_classes()) - set(EXAMPLE_LAYERS)


@pytest.mark.parametrize("name", sorted(EXAMPLE_LAYERS))
def test_every_public_layer_decays_exactly_its_weights(name):
    make, input_shape = EXAMPLE_LAYERS[name]
    layer = make()
    _, params = layer.init(jax.random.key(0), input_shape)
    if jax.tree.leaves(params) and not isinstance(layer, jaxnet.Network):
        assert name in WEIGHTS_BY_CLASS, f"{name} has params: say in WEIGHTS_BY_CLASS which are weights"
    assert layer.decay_mask(params) == _reference_mask(layer, params)
    net = layer if isinstance(layer, jaxnet.Network) else serial(layer)
    net_params = params if isinstance(layer, jaxnet.Network) else (params,)
    net_params = _randomise(net_params, jax.random.key(1))
    reference = jax.tree.leaves(_reference_mask(net, net_params))
    by_hand = 0.5 * LAMBDA * sum((np.sum(np.square(np.asarray(p, np.float64)))
                                  for p, m in zip(jax.tree.leaves(net_params), reference) if m), 0.0)
    np.testing.assert_allclose(l2_penalty(net, net_params, LAMBDA), by_hand, rtol=1e-6)


def test_simple_convnet_decays_its_conv_and_dense_weights():
    net = jaxnet.simple_convnet((1, 12, 12), filters=3, kernel_size=3, hidden=4)
    _, params = net.init(jax.random.key(0))
    assert net.decay_mask(params) == _reference_mask(net, params)
    assert sum(jax.tree.leaves(net.decay_mask(params))) == 3  # conv W, two Dense W


def test_a_layer_that_declares_its_weights_is_checked():
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Scale(jaxnet.Layer):  # a (C, 1, 1) per-channel scale: two or more axes, but not a weight
        decayed = ()

        def init(self, key, input_shape):
            return tuple(input_shape), {"s": jnp.ones((input_shape[0], 1, 1))}

    @dataclasses.dataclass(frozen=True)
    class Typo(jaxnet.Layer):
        decayed = ("w",)

        def init(self, key, input_shape):
            return tuple(input_shape), {"W": jnp.ones((2, 2))}

    assert Scale().decay_mask(Scale().init(None, (2, 3, 3))[1]) == {"s": False}
    with pytest.raises(ValueError, match=r"^decayed: .*\['w'\].*\['W'\]"):
        Typo().decay_mask(Typo().init(None, (2,))[1])
    with pytest.raises(TypeError, match="^decayed: Bad.decayed must be None"):
        class Bad(jaxnet.Layer):
            decayed = ["W"]


def _conv_net(dtype):
    """Conv -> tanh -> BatchNorm -> Dense (the issue's network), params all non-zero."""
    net = serial(Conv2D(2, 3, padding=1, dtype=dtype), Tanh, BatchNorm(dtype=dtype), Flatten(), Dense(3, dtype=dtype))
    _, params = net.init(jax.random.key(0), (1, 4, 4))
    params = _randomise(params, jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (6, 1, 4, 4), dtype)
    labels = jnp.array([0, 1, 2, 0, 1, 2])
    return net, params, x, labels


def _plain_conv_loss(params, x, labels):
    """The same network in plain jnp/lax (training-mode BatchNorm, eps 1e-5), mean softmax cross-entropy."""
    conv, _, bn, _, dense = params
    h = jax.lax.conv_general_dilated(x, conv["W"], (1, 1), [(1, 1), (1, 1)],
                                     dimension_numbers=("NCHW", "OIHW", "NCHW")) + conv["b"][None, :, None, None]
    h = jnp.tanh(h)
    mu = jnp.mean(h, axis=(0, 2, 3), keepdims=True)
    var = jnp.mean((h - mu) ** 2, axis=(0, 2, 3), keepdims=True)
    h = bn["gamma"][None, :, None, None] * (h - mu) / jnp.sqrt(var + 1e-5) + bn["beta"][None, :, None, None]
    logits = h.reshape(len(x), -1) @ dense["W"] + dense["b"]
    log_p = logits - jax.scipy.special.logsumexp(logits, axis=1, keepdims=True)
    return -jnp.mean(log_p[jnp.arange(len(labels)), labels])


def _plain_penalty(params, lam):
    """0.5 lambda sum W^2 over the conv and dense weights (params[0] and params[4]) only."""
    return 0.5 * lam * (jnp.sum(params[0]["W"] ** 2) + jnp.sum(params[4]["W"] ** 2))


def test_l2_term_and_gradient_include_conv_weights(x64):
    net, params, x, labels = _conv_net(jnp.float64)
    np.testing.assert_allclose(l2_penalty(net, params, LAMBDA), _plain_penalty(params, LAMBDA), rtol=1e-13)
    want = jax.grad(_plain_penalty)(params, LAMBDA)
    for got, expected in zip(jax.tree.leaves(l2_gradient(net, params, LAMBDA)), jax.tree.leaves(want)):
        np.testing.assert_allclose(got, expected, rtol=1e-13, atol=0)
    objective = jax.value_and_grad(lambda p: _plain_loss_conv_l2(p, x, labels, LAMBDA))
    expected_value, expected_grads = objective(params)
    state = net.init_state((1, 4, 4))
    for route in (backprop, autodiff):
        value, grads = route(net, params, x, labels, "softmax_cross_entropy", state=state, train=True,
                             weight_decay=LAMBDA)
        np.testing.assert_allclose(value, expected_value, rtol=1e-12)
        for got, expected in zip(jax.tree.leaves(grads), jax.tree.leaves(expected_grads)):
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13)
    # gradcheck(weight_decay=) checks the loss fit trains, conv weights' term included
    report = jaxnet.gradcheck(net, params, x, labels, "softmax_cross_entropy", state=state, train=True,
                              weight_decay=LAMBDA, max_fd_coords=4)
    assert report.passed, str(report)
    np.testing.assert_allclose(report.loss, expected_value, rtol=1e-12)


def _plain_loss_conv_l2(params, x, labels, lam):
    return _plain_conv_loss(params, x, labels) + _plain_penalty(params, lam)


def test_fit_one_sgd_step_decays_conv_weights():
    # the case: Conv -> tanh -> BatchNorm -> Dense, SGD 0.1, weight decay 0.5, one step (float32)
    net, params, x, labels = _conv_net(jnp.float32)
    result = fit(net, params, x, labels, loss="softmax_cross_entropy", optimizer="sgd",
                 hyperparams={"learning_rate": 0.1}, epochs=1, weight_decay=0.5)
    value, grads = jax.value_and_grad(_plain_loss_conv_l2)(params, x, labels, 0.5)
    np.testing.assert_allclose(result.history["loss"][0], value, rtol=1e-6)
    expected = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
    for got, want in zip(jax.tree.leaves(result.params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _numpy_adam(params, grad_fn, steps, *, lr, lam, decoupled, b1=0.9, b2=0.999, eps=1e-8):
    """Adam on grad_fn's gradient (numpy, float64); decoupled: add lam W of the conv and dense W to the step."""
    params = [dict((k, np.array(v, np.float64)) for k, v in p.items()) for p in params]
    m = [{k: np.zeros_like(v) for k, v in p.items()} for p in params]
    v = [{k: np.zeros_like(a) for k, a in p.items()} for p in params]
    for t in range(1, steps + 1):
        grads = grad_fn(tuple(jax.tree.map(jnp.asarray, params)))
        for i, p in enumerate(params):
            for k in p:
                g = np.asarray(grads[i][k])
                m[i][k] = b1 * m[i][k] + (1 - b1) * g
                v[i][k] = b2 * v[i][k] + (1 - b2) * g * g
                step = (m[i][k] / (1 - b1 ** t)) / (np.sqrt(v[i][k] / (1 - b2 ** t)) + eps)
                if decoupled and i in (0, 4) and k == "W":
                    step = step + lam * p[k]
                p[k] = p[k] - lr * step
    return params


@pytest.mark.parametrize("rule", ["adam_l2", "adamw"])
def test_adam_l2_and_adamw_decay_conv_weights(rule, x64):
    net, params, x, labels = _conv_net(jnp.float64)
    lr, lam, steps = 0.05, 0.5, 4
    if rule == "adam_l2":
        result = fit(net, params, x, labels, loss="softmax_cross_entropy", optimizer="adam",
                     hyperparams={"learning_rate": lr}, epochs=steps, weight_decay=lam)
        grad_fn = jax.jit(jax.grad(lambda p: _plain_loss_conv_l2(p, x, labels, lam)))
    else:
        result = fit(net, params, x, labels, loss="softmax_cross_entropy", optimizer=adamw(net, lr, lam), epochs=steps)
        grad_fn = jax.jit(jax.grad(lambda p: _plain_conv_loss(p, x, labels)))
    expected = _numpy_adam(params, grad_fn, steps, lr=lr, lam=lam, decoupled=rule == "adamw")
    for got, want in zip(jax.tree.leaves(result.params), jax.tree.leaves(tuple(expected))):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_the_shape_rule_holds_per_member_under_vmap():
    # stacked params (an ensemble axis in front) give every leaf one more axis; under vmap each
    # member's leaves have their own shapes, so biases stay undecayed
    net, _, x, labels = _conv_net(jnp.float32)
    stacked = jax.vmap(lambda k: _randomise(net.init(k, (1, 4, 4))[1], k))(jax.random.split(jax.random.key(3), 3))
    penalties = jax.vmap(lambda p: l2_penalty(net, p, LAMBDA))(stacked)
    for i in range(3):
        member = jax.tree.map(lambda a: a[i], stacked)
        np.testing.assert_allclose(penalties[i], _plain_penalty(member, LAMBDA), rtol=1e-6)

"""Training with state and randomness: `fit` carries BatchNorm's running statistics, draws Dropout
masks from its key, returns a FitResult, and works under jit (data passed or captured), vmap and grad.

References are independent of the code under test: closed forms for the running statistics, the
other gradient route, separately computed runs.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnet
from jaxnet import BatchNorm, Dense, Dropout, Relu, Sigmoid, data, evaluate, fit, predict, serial
from jaxnet.train import fit_ensemble
from jaxnet.train import FitResult, epoch_keys
from jaxnet.train._fit import _run


def bn_first(dtype=jnp.float32):
    return serial(BatchNorm(dtype=dtype), Dense(1, dtype=dtype), input_shape=(2,))


def bn_dropout_net(dtype=jnp.float32):
    return serial(Dense(6, dtype=dtype), BatchNorm(dtype=dtype), Relu, Dropout(0.3), Dense(1, dtype=dtype), Sigmoid,
                  input_shape=(2,))


def blobs(n=40, dtype=jnp.float32):
    x, y = data.gaussian_blobs(jax.random.key(5), n, dtype=dtype)
    return x, y


def test_running_statistics_follow_the_closed_form():
    """BatchNorm first: its input is x at every full-batch step, so after T steps from (0, 1)
    running_mean = (1 - 0.9^T) mean(x) and running_var = 0.9^T + (1 - 0.9^T) var(x) (biased)."""
    x, y = blobs()
    net = bn_first()
    _, params = net.init(jax.random.key(0))
    epochs = 7
    result = fit(net, params, x, y, loss="mse", optimizer="sgd", hyperparams={"learning_rate": 0.1}, epochs=epochs)
    assert isinstance(result, FitResult)
    decay = 0.9 ** epochs
    xs = np.asarray(x, np.float64)
    np.testing.assert_allclose(result.state[0]["mean"], (1 - decay) * xs.mean(0), rtol=1e-5)
    np.testing.assert_allclose(result.state[0]["var"], decay + (1 - decay) * xs.var(0), rtol=1e-5)
    assert result.state[1] == {}


def test_evaluation_uses_the_returned_state_and_needs_it():
    x, y = blobs()
    net = bn_first()
    _, params = net.init(jax.random.key(0))
    result = fit(net, params, x, y, loss="mse", optimizer="sgd", hyperparams={"learning_rate": 0.1}, epochs=3)
    s = result.state[0]
    xs, p = np.asarray(x, np.float64), result.params
    expected = ((xs - np.asarray(s["mean"])) / np.sqrt(np.asarray(s["var"]) + 1e-5) * np.asarray(p[0]["gamma"])
                + np.asarray(p[0]["beta"])) @ np.asarray(p[1]["W"]) + np.asarray(p[1]["b"])
    np.testing.assert_allclose(predict(net, p, x, state=result.state), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="^state: "):
        predict(net, p, x)
    with pytest.raises(ValueError, match="^state"):
        net.apply(p, x, state=({"mean": jnp.zeros(3), "var": jnp.ones(3)}, {}))


def test_same_key_same_run_bitwise_and_streams_are_independent():
    x, y = blobs()
    net = bn_dropout_net()
    _, params = net.init(jax.random.key(0))
    run = lambda k: fit(net, params, x, y, loss="mse", optimizer="sgd", hyperparams={"learning_rate": 0.5},  # noqa: E731
                        epochs=4, batch_size=8, key=jax.random.key(k))
    a, b, c = run(1), run(1), run(2)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    assert not np.array_equal(np.asarray(a.params[0]["W"]), np.asarray(c.params[0]["W"]))
    shuffle, dropout = epoch_keys(jax.random.key(1), 4)
    raw = lambda k: np.asarray(jax.random.key_data(k))  # noqa: E731
    assert len({raw(k).tobytes() for k in list(shuffle) + list(dropout)}) == 8  # no key shared


def test_dropout_masks_differ_between_steps():
    """Two epochs of full-batch training on a zero-learning-rate Dropout network: the recorded losses
    differ only through the masks, so equal losses would mean a reused key."""
    x, y = blobs()
    net = serial(Dense(16), Dropout(0.5), Dense(1), input_shape=(2,))
    _, params = net.init(jax.random.key(0))
    history = fit(net, params, x, y, loss="mse", optimizer=optax.set_to_zero(), epochs=5, key=jax.random.key(3)).history
    assert len(set(np.asarray(history["loss"]).tolist())) == 5


def test_routes_give_the_same_training_run_float64(x64):
    x, y = blobs(dtype=jnp.float64)
    net = bn_dropout_net(jnp.float64)
    _, params = net.init(jax.random.key(0))
    kw = dict(loss="binary_crossentropy", optimizer="momentum", hyperparams={"learning_rate": 0.3}, epochs=5,
              batch_size=10, key=jax.random.key(4), weight_decay=0.01)
    hand, auto = fit(net, params, x, y, grad="backprop", **kw), fit(net, params, x, y, grad="autodiff", **kw)
    for u, v in zip(jax.tree.leaves(hand), jax.tree.leaves(auto)):
        np.testing.assert_allclose(np.asarray(u, np.float64), np.asarray(v, np.float64), rtol=1e-10, atol=1e-12)


def test_fit_under_jit_with_captured_data_and_params():
    x, y = data.xor()
    net = jaxnet.mlp([2, 4, 1])
    _, params = net.init(jax.random.key(0))
    kw = dict(loss="mse", optimizer=jaxnet.optim.sgd(1.0), epochs=20)
    eager = fit(net, params, x, y, **kw)
    captured_data = jax.jit(lambda p: fit(net, p, x, y, **kw))(params)
    captured_params = jax.jit(lambda xx: fit(net, params, xx, y, **kw))(x)
    for got in (captured_data, captured_params):
        np.testing.assert_allclose(got.params[0]["W"], eager.params[0]["W"], rtol=1e-6)
        np.testing.assert_allclose(got.history["loss"], eager.history["loss"], rtol=1e-6)
    ev = jax.jit(lambda p: evaluate(net, p, x, y, "mse"))(params)
    np.testing.assert_allclose(ev["loss"], np.mean((np.asarray(net.apply(params, x)) - np.asarray(y)) ** 2), rtol=1e-6)


def test_fit_under_jit_keeps_shape_checks():
    x, y = data.xor()
    net = jaxnet.mlp([2, 4, 1])
    _, params = net.init(jax.random.key(0))
    with pytest.raises(ValueError, match="^y: "):
        jax.jit(lambda p: fit(net, p, x, y[:, 0], loss="mse", optimizer=jaxnet.optim.sgd(1.0), epochs=2))(params)


def test_vmap_over_keys_with_dropout_gives_distinct_runs():
    x, y = blobs()
    net = bn_dropout_net()
    _, params = net.init(jax.random.key(0))
    keys = jax.random.split(jax.random.key(9), 3)
    run = lambda k: fit(net, params, x, y, loss="mse", optimizer="sgd", hyperparams={"learning_rate": 0.5},  # noqa: E731
                        epochs=3, key=k)
    stacked = jax.vmap(run)(keys)
    assert stacked.state[1]["mean"].shape == (3, 6)
    single = run(keys[2])
    np.testing.assert_allclose(stacked.params[0]["W"][2], single.params[0]["W"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(stacked.params[0]["W"][0], stacked.params[0]["W"][1])


def test_fit_ensemble_stacks_state_and_takes_an_optax_object():
    x, y = blobs()
    net = bn_dropout_net()
    keys = jax.random.split(jax.random.key(0), 2)
    result = fit_ensemble(net, x, y, keys=keys, loss="mse", optimizer=optax.sgd(0.5), epochs=3,
                          key=jax.random.key(1))
    assert result.state[1]["var"].shape == (2, 6)
    alone = fit(net, net.init(keys[1])[1], x, y, loss="mse", optimizer=optax.sgd(0.5), epochs=3, key=jax.random.key(1))
    np.testing.assert_allclose(result.state[1]["var"][1], alone.state[1]["var"], rtol=1e-5)


def test_errors_name_the_argument():
    x, y = blobs()
    net = bn_dropout_net()
    _, params = net.init(jax.random.key(0))
    kw = dict(loss="mse", optimizer="sgd", hyperparams={"learning_rate": 0.1}, epochs=2)
    with pytest.raises(ValueError, match="^key: "):
        fit(net, params, x, y, **kw)
    with pytest.raises(ValueError, match="^key: "):
        net.apply(params, x, state=net.init_state(), train=True)
    with pytest.raises(ValueError, match="^key: expected one PRNG key"):
        fit(net, params, x, y, key=jax.random.split(jax.random.key(0), 2), **kw)
    with pytest.raises(ValueError, match="^batch_size: "):
        fit(net, params, x[:9], y[:9], batch_size=4, key=jax.random.key(0), **kw)  # a tail of one example
    with pytest.raises(ValueError, match="^state"):
        fit(net, params, x, y, key=jax.random.key(0), state=jaxnet.mlp([2, 1]).init_state(), **kw)
    with pytest.raises(ValueError, match="^hyperparams: "):
        fit(net, params, x, y, loss="mse", optimizer="sgd", epochs=2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="^rate: "):
        Dropout(1.0)
    with pytest.raises(ValueError, match="^x: BatchNorm in training mode"):
        net.apply(params, x[:1], key=jax.random.key(0), train=True)


def test_fit_predict_evaluate_share_the_dtype_rule():
    x, y = data.xor()
    net = jaxnet.mlp([2, 4, 1])
    _, params = net.init(jax.random.key(0))
    xb = x.astype(jnp.bfloat16)
    for call in (lambda: fit(net, params, xb, y, loss="mse", optimizer=jaxnet.optim.sgd(1.0), epochs=1),
                 lambda: predict(net, params, xb),
                 lambda: evaluate(net, params, xb, y, "mse")):
        with pytest.raises(TypeError, match="^x: dtype bfloat16 differs from the params' float32"):
            call()


def test_rebuilt_network_and_optimizer_do_not_recompile():
    x, y = data.xor()
    kw = dict(loss="mse", epochs=3)
    _, params = jaxnet.mlp([2, 3, 1]).init(jax.random.key(0))
    fit(jaxnet.mlp([2, 3, 1]), params, x, y, optimizer=jaxnet.optim.sgd(0.5), **kw)
    before = _run._cache_size()
    fit(jaxnet.mlp([2, 3, 1]), params, x, y, optimizer=jaxnet.optim.sgd(0.7), **kw)
    fit(serial(Dense(3), jaxnet.Sigmoid, Dense(1), jaxnet.Sigmoid, input_shape=[2], name="mlp[2, 3, 1]"), params, x, y,
        optimizer=jaxnet.optim.sgd(0.7), **kw)
    assert _run._cache_size() == before
    assert Dense(3) == Dense(3, dtype="float32") and hash(Dense(3)) == hash(Dense(3, dtype=jnp.float32))
    assert BatchNorm() != BatchNorm(book=True)


def test_a_route_of_the_one_signature_trains_and_a_five_argument_one_is_refused_by_name():
    x, y = data.xor()
    net = jaxnet.mlp([2, 3, 1])
    _, params = net.init(jax.random.key(0))

    def mine(net, params, x, y, loss, *, state=None, key=None, train=False, weight_decay=None):
        return jaxnet.autodiff(net, params, x, y, loss, state=state, key=key, train=train, weight_decay=weight_decay)

    got = fit(net, params, x, y, loss="mse", optimizer=jaxnet.optim.sgd(1.0), epochs=5, grad=mine)
    want = fit(net, params, x, y, loss="mse", optimizer=jaxnet.optim.sgd(1.0), epochs=5, grad="autodiff")
    np.testing.assert_allclose(got.params[0]["W"], want.params[0]["W"], rtol=1e-6)

    def old_style(net, params, x, y, loss):  # the signature before networks had state and randomness
        return jaxnet.autodiff(net, params, x, y, loss)

    with pytest.raises(TypeError, match="^grad: old_style does not accept the keyword argument.*state, key, train, "
                                        "weight_decay"):
        fit(net, params, x, y, loss="mse", optimizer=jaxnet.optim.sgd(1.0), epochs=1, grad=old_style)


def test_a_wrong_custom_backward_is_reported_with_the_layer():
    @dataclasses.dataclass(frozen=True)
    class BadScale(jaxnet.Layer):
        def init(self, key, input_shape):
            return tuple(input_shape), {"s": jnp.ones(input_shape)}

        def apply(self, params, x, **_):
            return x * params["s"]

        def backward(self, params, x, y, dy, **_):
            return {"s": x.T @ dy}, dy * params["s"]  # (4, 4) instead of (4,)

    net = serial(BadScale(), Dense(1), input_shape=(4,))
    _, params = net.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"layer 0 \(BadScale\)\.backward: returned dparams\['s'\] of shape \(4, 4\)"):
        jaxnet.backprop(net, params, jnp.ones((4, 4)), jnp.ones((4, 1)), "mse")


def test_gradcheck_with_weight_decay_checks_the_regularised_loss(x64):
    """gradcheck's references include the L2 term: backprop passes, and a route that forgets the
    term's gradient (but adds it to the loss) fails. The reference penalty is written here in numpy."""
    x, y = blobs(16, jnp.float64)
    net = bn_dropout_net(jnp.float64)
    _, params = net.init(jax.random.key(0))
    kw = dict(state=net.init_state(), key=jax.random.key(1), train=True, weight_decay=0.3)
    report = jaxnet.gradcheck(net, params, x, y, "mse", **kw)
    assert report.passed, str(report)
    plain = jaxnet.autodiff(net, params, x, y, "mse", state=kw["state"], key=kw["key"], train=True)[0]
    penalty = 0.5 * 0.3 * sum(float(np.sum(np.asarray(p[k]) ** 2)) for p in params for k in p if k == "W")
    np.testing.assert_allclose(report.loss, float(plain) + penalty, rtol=1e-12)

    def forgets_decay_gradient(net, params, x, y, loss, *, state, key, train, weight_decay):
        value, grads = jaxnet.backprop(net, params, x, y, loss, state=state, key=key, train=train)
        return value + jaxnet.grad.l2_penalty(net, params, weight_decay), grads

    assert not jaxnet.gradcheck(net, params, x, y, "mse", grad=forgets_decay_gradient, **kw).passed


def test_plateau_decay_decides_once_per_epoch_with_minibatches():
    """With minibatches the decay decides on each epoch's mean loss, not on every batch: replaying the
    tutorial's rule (plain Python, strict `<`, patience 2, factor 0.5) on the recorded epoch losses
    gives the recorded rates. Zero updates keep the params, so the epoch mean never improves after the
    first epoch, while batch losses differ from batch to batch (a per-step rule would decay at random)."""
    x, y = blobs(40)
    net = jaxnet.mlp([2, 4, 1])
    _, params = net.init(jax.random.key(0))
    tx = optax.chain(optax.set_to_zero(), jaxnet.optim.plateau_decay(0.5, 2))
    history = fit(net, params, x, y, loss="mse", optimizer=tx, epochs=9, batch_size=8, key=jax.random.key(1)).history
    best, wait, scale, expected = float("inf"), 0, 1.0, []
    for loss in np.asarray(history["loss"], np.float64):
        expected.append(scale)  # the rate this epoch's updates used, decided by the earlier epochs
        if loss < best:
            best, wait = loss, 0
        else:
            wait += 1
            if wait == 2:
                scale, wait = scale * 0.5, 0
    np.testing.assert_allclose(history["learning_rate"], expected, rtol=1e-6)
    assert expected[-1] < 1.0


# ----------------------------------------------------------------------------------------------
# BatchNorm minibatches: the rule counts values per channel, not examples (issue 21, item 4)
# ----------------------------------------------------------------------------------------------


def _plain_conv_bn(params, x):
    """Conv2D(2, 3x3) -> BatchNorm (training, eps 1e-5) -> Flatten -> Dense(1) in plain jnp/lax; also
    returns the batch mean and biased variance of the BatchNorm input, per channel."""
    conv, bn, _, dense = params
    h = jax.lax.conv_general_dilated(x, conv["W"], (1, 1), [(0, 0), (0, 0)],
                                     dimension_numbers=("NCHW", "OIHW", "NCHW")) + conv["b"][None, :, None, None]
    mu = jnp.mean(h, axis=(0, 2, 3))
    var = jnp.mean((h - mu[None, :, None, None]) ** 2, axis=(0, 2, 3))
    h_hat = (h - mu[None, :, None, None]) / jnp.sqrt(var[None, :, None, None] + 1e-5)
    out = (bn["gamma"][None, :, None, None] * h_hat + bn["beta"][None, :, None, None]).reshape(len(x), -1)
    return out @ dense["W"] + dense["b"], (mu, var)


def test_conv_batchnorm_trains_with_a_last_step_of_one_image(x64):
    # 5 images, batch_size 2: steps of 2, 2 and 1 image; the last one still gives BatchNorm 9 values
    # per channel (3 x 3 maps). Reference: plain jnp/lax and jax.grad, SGD by hand, the running
    # statistics by their closed form, in fit's documented order (epoch_keys' permutation).
    f64 = jnp.float64
    net = serial(jaxnet.Conv2D(2, 3, dtype=f64), BatchNorm(dtype=f64), jaxnet.Flatten(), Dense(1, dtype=f64))
    _, params = net.init(jax.random.key(0), (1, 5, 5))
    x = jax.random.normal(jax.random.key(1), (5, 1, 5, 5), f64)
    y = jax.random.normal(jax.random.key(2), (5, 1), f64)
    key, lr, epochs = jax.random.key(3), 0.1, 2
    result = fit(net, params, x, y, loss="mse", optimizer="sgd", hyperparams={"learning_rate": lr}, epochs=epochs,
                 batch_size=2, key=key)

    def loss(p, xb, yb):
        out, stats = _plain_conv_bn(p, xb)
        return jnp.mean((out - yb) ** 2), stats

    p, mean, var = params, jnp.zeros(2, f64), jnp.ones(2, f64)
    shuffle_keys, _ = epoch_keys(key, epochs)
    for t in range(epochs):
        perm = np.asarray(jax.random.permutation(shuffle_keys[t], 5))
        total = 0.0
        for rows in (perm[:2], perm[2:4], perm[4:]):
            (value, (mu, v)), grads = jax.value_and_grad(loss, has_aux=True)(p, x[rows], y[rows])
            total += float(value) * len(rows)
            mean, var = 0.9 * mean + 0.1 * mu, 0.9 * var + 0.1 * v
            p = jax.tree.map(lambda a, g: a - lr * g, p, grads)
        np.testing.assert_allclose(result.history["loss"][t], total / 5, rtol=1e-10)
    for got, want in zip(jax.tree.leaves(result.params), jax.tree.leaves(p)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.state[1]["mean"], mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.state[1]["var"], var, rtol=1e-9)


def test_dense_batchnorm_still_refuses_a_step_of_one_example():
    from jaxnet.validate import check_batch_statistics

    x, y = blobs(10)
    x, y = x[:9], y[:9]
    net = serial(Dense(4), BatchNorm(), Dense(1), input_shape=(2,))
    _, params = net.init(jax.random.key(0))
    kw = dict(loss="mse", optimizer="sgd", hyperparams={"learning_rate": 0.1}, epochs=1, key=jax.random.key(0))
    refused = r"^batch_size: 4 leaves a step with 1 example \(n = 9\).*layer 1 \(BatchNorm\)"
    with pytest.raises(ValueError, match=refused):
        fit(net, params, x, y, batch_size=4, **kw)
    with pytest.raises(ValueError, match="^batch_size: 1 "):
        fit(net, params, x, y, batch_size=1, **kw)
    fit(net, params, x, y, batch_size=3, **kw)  # steps of 3: fine
    # nested networks and spatial maps are counted through the layers' shapes
    nested = serial(serial(Dense(4), BatchNorm()), Dense(1))
    with pytest.raises(ValueError, match=r"layer 0 \(.*\): layer 1 \(BatchNorm\)"):
        check_batch_statistics(nested, (2,), 4, 9)
    conv = serial(jaxnet.Conv2D(2, 3), BatchNorm(), jaxnet.Conv2D(1, 3), BatchNorm())
    check_batch_statistics(conv, (1, 7, 7), 1, 3)  # 5 x 5, then 3 x 3 maps: one image per step will do
    check_batch_statistics(conv, (1, 5, 5), 3, 3)  # 3 x 3, then 1 x 1 maps: steps of 3 images will do...
    with pytest.raises(ValueError, match=r"^batch_size: 2 .* layer 3 \(BatchNorm\)"):
        check_batch_statistics(conv, (1, 5, 5), 2, 3)  # ... a last step of one image does not, at layer 3
    with pytest.raises(ValueError, match="^x: a single example"):
        check_batch_statistics(net, (2,), None, 1)

"""fit: one compiled run; backprop and autodiff give the same run; the tutorial's numpy runs are
reproduced exactly (lr / m, or tutorial_scaling=True); traced learning rates; vmap over seeds."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnet
from jaxnet import data, fit, mlp, optim
from jaxnet import reference as ref
from jaxnet.losses import LOSSES, Loss


def to_jaxnet(weights, biases, dtype):
    """mlp params from the reference's lists of weights and biases."""
    out = []
    for W, b in zip(weights, biases):
        out += [{"W": jnp.asarray(W, dtype), "b": jnp.asarray(b, dtype)}, {}]
    return tuple(out)


def gaussian_task(rng):
    """The tutorial's data, drawn with numpy here (independent of jaxnet.data), standardised."""
    x0 = rng.multivariate_normal([2, 2], [[1, 0.5], [0.5, 1]], 500)
    x1 = rng.multivariate_normal([6, 6], [[1, -0.5], [-0.5, 1]], 500)
    x = np.vstack([x0, x1])
    return (x - x.mean(0)) / x.std(0), np.r_[np.zeros(500), np.ones(500)][:, None]


TASKS = {
    # name: (sizes, loss (reference, jaxnet), epochs, lr, data)
    "xor": ([2, 4, 1], ("mse", "mse"), 5000, 1.0,
            lambda rng: (np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float), np.array([[0], [1], [1], [0]], float))),
    "gaussian": ([2, 8, 4, 1], ("bce", "binary_crossentropy"), 2000, 0.5, gaussian_task),
}


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("mode", ["lr_over_m", "tutorial_scaling"])
def test_reproduces_the_tutorial_numpy_run_at_every_epoch(task, mode, x64):
    sizes, (ref_loss, loss), epochs, lr, make_data = TASKS[task]
    rng = np.random.default_rng(1)
    weights, biases = ref.init_params(sizes, rng)
    x, y = make_data(rng)
    expected = ref.train(weights, biases, x, y, epochs=epochs, learning_rate=lr, loss=ref_loss).losses
    net = mlp(sizes, dtype=jnp.float64)
    m = x.shape[0]
    params, _, _, history = fit(net, to_jaxnet(weights, biases, jnp.float64), jnp.asarray(x), jnp.asarray(y), loss=loss,
                          optimizer=optim.sgd(lr / m if mode == "lr_over_m" else lr), epochs=epochs,
                          tutorial_scaling=mode == "tutorial_scaling")
    np.testing.assert_allclose(np.asarray(history["loss"]), expected, rtol=1e-9, atol=0)


def xor_run(dtype, grad):
    x, y = data.xor(dtype)
    net = mlp([2, 4, 1], dtype=dtype)
    _, params = net.init(jax.random.key(3))
    result = fit(net, params, x, y, loss="mse", optimizer=optim.sgd(1.0), epochs=5000, grad=grad)
    return result.params, result.history


def test_backprop_and_autodiff_give_the_same_run_float32():
    (p_bp, h_bp), (p_ad, h_ad) = xor_run(jnp.float32, "backprop"), xor_run(jnp.float32, "autodiff")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-5), p_bp, p_ad)
    np.testing.assert_allclose(h_bp["loss"], h_ad["loss"], rtol=1e-4, atol=1e-7)
    assert float(h_bp["loss"][-1]) < 0.01  # and it learned XOR


def test_backprop_and_autodiff_give_the_same_run_float64(x64):
    (p_bp, _), (p_ad, _) = xor_run(jnp.float64, "backprop"), xor_run(jnp.float64, "autodiff")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-10), p_bp, p_ad)


def test_history_records_the_loss_before_each_update():
    x, y = data.xor()
    net = mlp([2, 3, 1])
    _, params = net.init(jax.random.key(0))
    trained, _, _, history = fit(net, params, x, y, loss="mse", optimizer=optim.sgd(0.5), epochs=7)
    assert history["loss"].shape == (7,) and history["learning_rate"].shape == (7,)
    np.testing.assert_allclose(history["loss"][0], jaxnet.losses.mse(net.apply(params, x), y), rtol=1e-6)
    # epoch 1 starts from one manual SGD step
    _, g = jaxnet.backprop(net, params, x, y, "mse")
    one_step = jax.tree.map(lambda p, d: p - 0.5 * d, params, g)
    np.testing.assert_allclose(history["loss"][1], jaxnet.losses.mse(net.apply(one_step, x), y), rtol=1e-6)
    np.testing.assert_allclose(history["learning_rate"], 0.5)
    assert int(history["diverged_epoch"]) == -1


def counting_loss():
    """An mse whose Python body counts how often it is traced (i.e. compiled)."""
    count = [0]

    def value(y_pred, y_true):
        count[0] += 1
        return LOSSES["mse"].value(y_pred, y_true)

    return Loss("counted_mse", value, LOSSES["mse"].derivative, False, "identity"), count


def test_a_new_learning_rate_does_not_recompile():
    loss, count = counting_loss()
    x, y = data.xor()
    net = mlp([2, 4, 1])
    _, params = net.init(jax.random.key(0))
    fit(net, params, x, y, loss=loss, optimizer=optim.sgd(0.1), epochs=20)
    traced = count[0]
    _, _, _, h = fit(net, params, x, y, loss=loss, optimizer=optim.sgd(0.7), epochs=20)
    assert count[0] == traced
    np.testing.assert_allclose(h["learning_rate"], 0.7)
    # rebuilding the same network does not recompile either
    fit(mlp([2, 4, 1]), params, x, y, loss=loss, optimizer=optim.sgd(0.3), epochs=20)
    assert count[0] == traced
    fit(net, params, x, y, loss=loss, optimizer=optim.sgd(0.3), epochs=21)  # epochs is static
    assert count[0] > traced


def test_vmap_over_seeds_equals_separate_fits():
    x, y = data.xor()
    net = mlp([2, 4, 1])

    def run(key):
        _, params = net.init(key)
        return fit(net, params, x, y, loss="mse", optimizer=optim.sgd(1.0), epochs=200)

    keys = jax.random.split(jax.random.key(0), 3)
    stacked, _, _, histories = jax.vmap(run)(keys)
    for i in range(3):
        single, _, _, h = run(keys[i])
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=0, atol=1e-6), stacked, single)
        np.testing.assert_allclose(histories["loss"][i], h["loss"], rtol=1e-6)
    assert not np.allclose(histories["loss"][0], histories["loss"][1])


def test_plain_optax_optimizer_works():
    x, y = data.xor()
    net = mlp([2, 4, 1])
    _, params = net.init(jax.random.key(0))
    p1, _, _, h1 = fit(net, params, x, y, loss="mse", optimizer=optax.sgd(1.0), epochs=50)
    p2, _, _, h2 = fit(net, params, x, y, loss="mse", optimizer=optim.sgd(1.0), epochs=50)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), p1, p2)
    assert np.all(np.isnan(h1["learning_rate"]))  # a plain optax state does not expose its rate


def test_divergence_stops_training_with_finite_params():
    x, y = data.xor()
    net = mlp([2, 4, 1], activation="relu", output_activation="identity")
    _, params = net.init(jax.random.key(0))
    trained, _, _, history = fit(net, params, x, y, loss="mse", optimizer=optim.sgd(1e6), epochs=50)
    epoch = int(history["diverged_epoch"])
    assert 0 <= epoch < 50
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(trained))
    assert np.all(np.isnan(history["loss"][epoch + 1:]))
    assert np.all(np.isfinite(history["loss"][:epoch]))


@pytest.mark.parametrize("kwargs,match", [
    ({"epochs": 0}, "epochs"),
    ({"epochs": 2.5}, "epochs"),
    ({"batch_size": 5}, "batch_size"),
    ({"batch_size": 2}, "key"),
    ({"grad": "numerical"}, "grad.*autodiff"),
    ({"loss": "hinge"}, "loss"),
])
def test_bad_arguments_name_themselves(kwargs, match):
    x, y = data.xor()
    net = mlp([2, 2, 1])
    _, params = net.init(jax.random.key(0))
    args = {"loss": "mse", "optimizer": optim.sgd(0.1), "epochs": 3, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        fit(net, params, x, y, **args)


def test_bad_data_names_itself():
    x, y = data.xor()
    net = mlp([2, 2, 1])
    _, params = net.init(jax.random.key(0))
    with pytest.raises(TypeError, match="x"):
        fit(net, params, x.astype(jnp.int32), y, loss="mse", optimizer=optim.sgd(0.1), epochs=3)
    with pytest.raises(ValueError, match="y"):
        fit(net, params, x, y[:3], loss="mse", optimizer=optim.sgd(0.1), epochs=3)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_history_keeps_each_record_s_dtype(dtype):
    """fit stores its per-epoch records in one wide vector; each comes back in its own dtype: the
    loss and the learning rate in the params' dtype, validation loss and accuracy as `evaluate` gives
    them; and the values equal `evaluate` on the returned params."""
    net = mlp([2, 3, 2], "relu", "identity", dtype=dtype)
    _, params = net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (8, 2)).astype(dtype)
    y = jnp.array([0, 1] * 4)
    result = fit(net, params, x, y, loss="softmax_cross_entropy", optimizer="sgd",
                 hyperparams={"learning_rate": 0.1}, epochs=3, validation_data=(x, y))
    expected = jaxnet.evaluate(net, result.params, x, y, "softmax_cross_entropy")
    history = result.history
    assert history["loss"].dtype == history["learning_rate"].dtype == dtype
    assert history["val_loss"].dtype == expected["loss"].dtype
    assert history["val_accuracy"].dtype == expected["accuracy"].dtype
    assert float(history["val_loss"][-1]) == float(expected["loss"])
    assert float(history["val_accuracy"][-1]) == float(expected["accuracy"])

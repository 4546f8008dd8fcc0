"""Smoke tests of the training-techniques experiments (the book's chapter 6) and their shared helpers.

Each experiment runs with --quick on the shared MNIST files (tests/conftest.py's MNIST_DIR; skipped when
absent), writes metrics.json and a PNG, and its numbers are checked against facts that do not come from
the code under test (ln 10 for a network of tiny weights, the validation set's size, the sampled ranges).
The helpers are checked against plain `jaxnet.fit` calls and direct optax updates.
"""

import importlib
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import ALL
from experiments import _techniques as tech
from experiments.init_histograms import statistics
from jaxnet import BatchNorm, Dense, Relu, fit, optim, serial
from tests.conftest import MNIST_DIR

MNIST_EXPERIMENTS = ["weight_init", "optimizers_mnist", "batchnorm", "overfitting", "hyperparameter_search"]
needs_mnist = pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"no MNIST files at {MNIST_DIR}")


def _run(name, tmp_path, *extra):
    summary = importlib.import_module(f"experiments.{name}").main(["--quick", "--out", str(tmp_path), *extra])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    pngs = list(tmp_path.glob("*.png"))
    assert pngs and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    assert isinstance(summary, dict) and summary and "skipped" not in summary
    return summary, metrics


def test_listed_in_all():
    assert {"init_histograms", *MNIST_EXPERIMENTS} <= set(ALL)


def test_init_histograms(tmp_path):
    _, metrics = _run("init_histograms", tmp_path)
    stats = metrics["statistics"]
    # the book's observations (6.2.1-6.2.3): std 1 saturates sigmoid, Xavier does not; He keeps the
    # ReLU spread through the layers while Xavier's shrinks
    assert stats["sigmoid"]["std 1"]["saturated_fraction"][-1] > 0.3
    assert stats["sigmoid"]["Xavier"]["saturated_fraction"][-1] < 0.05
    he, xavier = stats["relu"]["He"]["std"], stats["relu"]["Xavier"]["std"]
    assert 0.5 < he[-1] / he[0] < 2 and xavier[-1] / xavier[0] < 0.5


def test_init_statistics_by_hand():
    a = np.zeros((1, 4, 3))
    a[0, :, 0] = [0.0, 1.0, 0.0, 2.0]  # unit 0 alive, units 1 and 2 dead
    relu = statistics("relu", a)
    np.testing.assert_allclose(relu["dead_unit_fraction"], [2 / 3])
    np.testing.assert_allclose(relu["zero_fraction"], [10 / 12])
    s = np.array([[[0.005, 0.5], [0.995, 0.2]]])
    np.testing.assert_allclose(statistics("sigmoid", s)["saturated_fraction"], [0.5])


@needs_mnist
def test_weight_init(tmp_path):
    _, metrics = _run("weight_init", tmp_path, "--data-dir", str(MNIST_DIR))
    losses = metrics["loss"]
    assert {k: len(v) for k, v in losses.items()} == {"std=0.01": 60, "Xavier": 60, "He": 60}
    # weights of std 0.01 give logits ~ 0, so the cross-entropy of 10 classes starts at ln 10
    assert abs(losses["std=0.01"][0] - math.log(10)) < 0.01


@needs_mnist
def test_optimizers_mnist(tmp_path):
    _, metrics = _run("optimizers_mnist", tmp_path, "--data-dir", str(MNIST_DIR))
    first = [v[0] for v in metrics["loss"].values()]
    later = [v[-1] for v in metrics["loss"].values()]
    assert max(first) == min(first)  # same params, same first batch: the loss before any step agrees
    assert len(set(later)) == 4  # ... and the four rules then part ways


@needs_mnist
def test_batchnorm(tmp_path):
    _, metrics = _run("batchnorm", tmp_path, "--data-dir", str(MNIST_DIR))
    acc = np.array(metrics["train_accuracy_bn"])
    assert acc.shape == (16, 2) and np.array(metrics["train_accuracy_plain"]).shape == (16, 2)
    assert np.allclose(np.round(acc * 1000), acc * 1000, atol=1e-3)  # fractions of the 1000 training images
    assert metrics["bn_ahead"] == int(np.sum(np.array(metrics["final_bn"]) > np.array(metrics["final_plain"])))


@needs_mnist
def test_overfitting(tmp_path):
    _, metrics = _run("overfitting", tmp_path, "--data-dir", str(MNIST_DIR))
    for label, final in metrics["final"].items():
        curve = metrics["curves"][label]
        assert len(curve["train"]) == 3 and final["train"] == curve["train"][-1]
        assert final["gap"] == pytest.approx(final["train"] - final["test"])
        assert np.allclose(np.round(np.array(curve["train"]) * 300), np.array(curve["train"]) * 300, atol=1e-3)


@needs_mnist
def test_hyperparameter_search(tmp_path):
    _, metrics = _run("hyperparameter_search", tmp_path, "--data-dir", str(MNIST_DIR))
    val = np.array(metrics["final_val_accuracy"])
    lrs, wds = np.array(metrics["learning_rates"]), np.array(metrics["weight_decays"])
    assert val.shape == lrs.shape == wds.shape == (8,)
    assert np.all((1e-6 <= lrs) & (lrs <= 1e-2)) and np.all((1e-8 <= wds) & (wds <= 1e-4))
    assert len(set(lrs.tolist())) == 8  # every trial its own rate
    assert np.allclose(np.round(val * 100), val * 100, atol=1e-3)  # fractions of the 100 validation images
    assert list(val[metrics["ranking"]]) == sorted(val, reverse=True)
    assert len((tmp_path / "ranking.txt").read_text().splitlines()) == 9


@pytest.mark.parametrize("name", MNIST_EXPERIMENTS)
def test_without_mnist_one_line_and_skip(name, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("JAXNET_DATA_DIR", raising=False)
    summary = importlib.import_module(f"experiments.{name}").main(["--quick", "--out", str(tmp_path)])
    assert "skipped" in summary
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1 and "--data-dir" in out
    assert not (tmp_path / "metrics.json").exists()


def test_missing_data_dir_is_an_error(tmp_path):
    with pytest.raises(SystemExit) as info:
        importlib.import_module("experiments.weight_init").main(["--quick", "--data-dir", str(tmp_path / "nowhere")])
    assert info.value.code == 2


def test_train_members_is_fit_ensemble_and_each_member_is_fit():
    """A member trained by the experiments' helper (one fit_ensemble call) = `fit` on its own: network
    state (BatchNorm), weight decay, minibatches and per-epoch evaluation included."""
    net = serial(Dense(5), BatchNorm(), Relu, Dense(3), input_shape=(4,))
    _, params = net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (12, 4))
    y = jnp.arange(12) % 3
    key, lam = jax.random.key(2), 0.01
    run = tech.train_members(net, tech.stack([params]), x, y, make_optimizer=lambda: optim.optimizer("sgd", 0.1),
                             weight_decay=jnp.array([lam]), rounds=3, batch_size=5, key=key,
                             eval_sets={"train": (x, y)})
    want = fit(net, params, x, y, loss="softmax_cross_entropy", optimizer=optim.optimizer("sgd", 0.1), epochs=3,
               batch_size=5, key=key, weight_decay=lam, evaluation={"train": (x, y)})
    np.testing.assert_allclose(run["loss"][0], want.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(run["train_accuracy"][0], want.history["train_accuracy"], rtol=1e-6)
    for got, ref in zip(jax.tree.leaves((run["params"], run["state"])), jax.tree.leaves((want.params, want.state))):
        np.testing.assert_allclose(got[0], ref, rtol=1e-5, atol=1e-6)


@jax.numpy_dtype_promotion("standard")  # optax.adam's bias correction mixes int32 and float (strict mode)
def test_select_optimizer_follows_each_members_rule():
    params = {"W": jnp.array([1.0, -2.0, 3.0])}
    grads = [{"W": jnp.array([0.5, 0.1, -0.3])}, {"W": jnp.array([-0.2, 0.4, 0.3])}]
    rules = [optax.sgd(0.1), optax.adam(0.01)]

    def two_steps(index):
        tx = tech.select_optimizer(rules, index)
        p, s = params, tx.init(params)
        for g in grads:
            u, s = tx.update(g, s, p)
            p = optax.apply_updates(p, u)
        return p["W"]

    got = jax.jit(jax.vmap(two_steps))(jnp.arange(2))
    for i, tx in enumerate(rules):
        p, s = params, tx.init(params)
        for g in grads:
            u, s = tx.update(g, s, p)
            p = optax.apply_updates(p, u)
        np.testing.assert_allclose(got[i], p["W"], rtol=1e-6)


def test_book_scaled_params_scale_weights_only():
    net = serial(Dense(50), BatchNorm(), Relu, Dense(40), input_shape=(200,))
    scales = jnp.array([1.0, 0.01])
    params = tech.book_scaled_params(net, jax.random.key(0), (200,), scales)
    for i, s in enumerate([1.0, 0.01]):
        assert abs(float(jnp.std(params[0]["W"][i])) / s - 1) < 0.05
        assert abs(float(jnp.std(params[3]["W"][i])) / s - 1) < 0.05
    np.testing.assert_array_equal(params[0]["W"][1], 0.01 * params[0]["W"][0])  # one draw, scaled
    np.testing.assert_array_equal(params[1]["gamma"], 1.0)
    np.testing.assert_array_equal(params[0]["b"], 0.0)
    # a network with the same weight shapes without BatchNorm gets the same weights
    plain = tech.book_scaled_params(serial(Dense(50), Relu, Dense(40), input_shape=(200,)), jax.random.key(0), (200,),
                                    scales)
    np.testing.assert_array_equal(plain[0]["W"], params[0]["W"])
    np.testing.assert_array_equal(plain[2]["W"], params[3]["W"])


def test_smooth_curve_is_the_books_window():
    x = np.r_[np.zeros(20), np.ones(20)]
    y = tech.smooth_curve(x)
    assert y.shape == x.shape
    np.testing.assert_allclose(tech.smooth_curve(np.full(30, 2.5)), 2.5)
    w = np.kaiser(11, 2) / np.kaiser(11, 2).sum()
    np.testing.assert_allclose(y[20], w[:6].sum())  # at the step: the window's weights on the ones

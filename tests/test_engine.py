"""The training engine under every door (issue 18): early stopping, evaluation every k epochs,
sampling with replacement, progress from inside the compiled run, one check of params and targets
per call, and `fit_ensemble` / `fit_data_parallel` doing everything `fit` does.

References are independent of the engine: the rule of early stopping replayed in numpy on a full
run's history, shorter `fit` runs (the key streams are prefix-stable, so `fit(epochs=k)` is the
first k epochs of a longer run), hand-written SGD with `jax.grad` of plain `jnp` for the book's
sampling with replacement, and `fit` itself for the other doors.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet
from jaxnet import data, evaluate, fit, optim
from jaxnet.train import EarlyStopping, epoch_keys, fit_data_parallel, fit_ensemble, member

X, LABELS = data.digits()
X_TRAIN, X_VAL, Y_TRAIN, Y_VAL = X[:300], X[300:400], LABELS[:300], LABELS[300:400]
NET = jaxnet.mlp([64, 16, 10], activation="relu", output_activation="identity")
PARAMS = NET.init(jax.random.key(0))[1]
LOSS = "softmax_cross_entropy"
COMMON = dict(loss=LOSS, optimizer="sgd", hyperparams={"learning_rate": 0.3}, batch_size=50, key=jax.random.key(1))


def expected_stop(values: np.ndarray, patience: int, maximize: bool, min_delta: float = 0.0):
    """The early-stopping rule replayed on a full run's monitored values (NaN: not evaluated)."""
    best, best_epoch, wait = (-np.inf if maximize else np.inf), -1, 0
    for t, v in enumerate(values):
        if np.isnan(v):
            continue
        if (v > best + min_delta) if maximize else (v < best - min_delta):
            best, best_epoch, wait = v, t, 0
        else:
            wait += 1
            if wait >= patience:
                return best_epoch, t
    return best_epoch, -1


@pytest.mark.parametrize("monitor,patience,every", [("val_loss", 3, 1), ("val_accuracy", 2, 3)])
def test_early_stopping_keeps_the_best_epoch_and_stops_where_the_rule_says(monitor, patience, every):
    epochs = 60
    kw = dict(COMMON, validation_data=(X_VAL, Y_VAL), eval_every=every)
    full = fit(NET, PARAMS, X_TRAIN, Y_TRAIN, epochs=epochs, **kw)
    values = np.asarray(full.history[monitor])
    assert np.isnan(values[: every - 1]).all() and not np.isnan(values[every - 1])
    best, stopped = expected_stop(values, patience, maximize=monitor.endswith("accuracy"))
    assert stopped > 0, "the setting must stop early to test anything"
    run = fit(NET, PARAMS, X_TRAIN, Y_TRAIN, epochs=epochs, early_stopping=EarlyStopping(monitor, patience), **kw)
    h = run.history
    assert (int(h["best_epoch"]), int(h["stopped_epoch"])) == (best, stopped)
    # the history up to the stop is the full run's, and NaN after it
    np.testing.assert_allclose(h["loss"][: stopped + 1], full.history["loss"][: stopped + 1], rtol=1e-6)
    np.testing.assert_allclose(h[monitor][: stopped + 1], values[: stopped + 1], rtol=1e-6)
    assert np.isnan(h["loss"][stopped + 1:]).all() and np.isnan(h[monitor][stopped + 1:]).all()
    # the returned params are those after epoch `best`: a run of best + 1 epochs
    short = fit(NET, PARAMS, X_TRAIN, Y_TRAIN, epochs=best + 1, **kw)
    for got, want in zip(jax.tree.leaves(run.params), jax.tree.leaves(short.params)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    for got, want in zip(jax.tree.leaves(run.opt_state), jax.tree.leaves(short.opt_state)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    scored = evaluate(NET, run.params, X_VAL, Y_VAL, LOSS)
    np.testing.assert_allclose(scored[monitor.split("_")[1]], values[best], rtol=1e-5)


def test_min_delta_and_a_run_that_never_stops():
    kw = dict(COMMON, validation_data=(X_VAL, Y_VAL))
    full = fit(NET, PARAMS, X_TRAIN, Y_TRAIN, epochs=30, **kw)
    values = np.asarray(full.history["val_loss"])
    best, stopped = expected_stop(values, 2, maximize=False, min_delta=0.02)
    run = fit(NET, PARAMS, X_TRAIN, Y_TRAIN, epochs=30, early_stopping={"monitor": "val_loss", "patience": 2,
                                                                       "min_delta": 0.02}, **kw)
    assert (int(run.history["best_epoch"]), int(run.history["stopped_epoch"])) == (best, stopped)
    never = fit(NET, PARAMS, X_TRAIN, Y_TRAIN, epochs=5, early_stopping=EarlyStopping("val_loss", 100), **kw)
    assert int(never.history["stopped_epoch"]) == -1
    assert int(never.history["best_epoch"]) == int(np.argmin(values[:5]))


def test_early_stopping_needs_a_recorded_metric():
    with pytest.raises(ValueError, match="^early_stopping: .*validation_data"):
        fit(NET, PARAMS, X_TRAIN, Y_TRAIN, epochs=2, early_stopping="val_loss", **COMMON)
    with pytest.raises(ValueError, match=r"^early_stopping: monitors 'val_acc', which the run does not record; .*"
                                         r"\['val_loss', 'val_accuracy'\]"):
        fit(NET, PARAMS, X_TRAIN, Y_TRAIN, epochs=2, early_stopping="val_acc", validation_data=(X_VAL, Y_VAL), **COMMON)
    with pytest.raises(ValueError, match="^early_stopping.patience: expected a positive int"):
        fit(NET, PARAMS, X_TRAIN, Y_TRAIN, epochs=2, early_stopping=EarlyStopping("val_loss", 0),
            validation_data=(X_VAL, Y_VAL), **COMMON)
    with pytest.raises(ValueError, match="^evaluation: set names must be identifiers"):
        fit(NET, PARAMS, X_TRAIN, Y_TRAIN, epochs=2, evaluation={"my set": (X_VAL, Y_VAL)}, **COMMON)
    with pytest.raises(ValueError, match=r"^evaluation\['test'\]\[0\]: expected shape \(n, 64\)"):
        fit(NET, PARAMS, X_TRAIN, Y_TRAIN, epochs=2, evaluation={"test": (X_VAL[:, :10], Y_VAL)}, **COMMON)


def test_named_evaluation_sets_every_k_epochs_equal_evaluate_on_shorter_runs():
    k = 3
    run = fit(NET, PARAMS, X_TRAIN, Y_TRAIN, epochs=7, evaluation={"test": (X_VAL, Y_VAL), "train": (X_TRAIN, Y_TRAIN)},
              eval_every=k, eval_batch_size=32, **COMMON)
    for t in range(7):
        if (t + 1) % k:
            assert np.isnan(run.history["test_loss"][t]) and np.isnan(run.history["train_accuracy"][t])
            continue
        short = fit(NET, PARAMS, X_TRAIN, Y_TRAIN, epochs=t + 1, **COMMON)
        for name, (xe, ye) in {"test": (X_VAL, Y_VAL), "train": (X_TRAIN, Y_TRAIN)}.items():
            want = evaluate(NET, short.params, xe, ye, LOSS)
            np.testing.assert_allclose(run.history[f"{name}_loss"][t], want["loss"], rtol=1e-5)
            np.testing.assert_allclose(run.history[f"{name}_accuracy"][t], want["accuracy"], rtol=1e-6)


def test_sampling_with_replacement_is_the_books_iteration():
    """Each step: batch_size indices drawn with replacement from the documented key; SGD on the mean
    loss; the epoch's loss is the mean of its steps' losses (each before its step)."""
    net = jaxnet.mlp([64, 10], activation="relu", output_activation="identity")
    params = net.init(jax.random.key(3))[1]
    key, lr, b, steps, epochs = jax.random.key(4), 0.2, 16, 3, 2
    run = fit(net, params, X_TRAIN, Y_TRAIN, loss=LOSS, optimizer=optim.sgd(lr), epochs=epochs, batch_size=b,
              key=key, sampling="replacement", steps_per_epoch=steps)

    def plain_loss(p, xb, yb):
        logits = xb @ p[0]["W"] + p[0]["b"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), yb[:, None], axis=1))

    shuffle_keys, _ = epoch_keys(key, epochs)
    p, losses = params, []
    for t in range(epochs):
        total = 0.0
        for j in range(steps):
            idx = jax.random.randint(jax.random.fold_in(shuffle_keys[t], j), (b,), 0, X_TRAIN.shape[0])
            value, g = jax.value_and_grad(plain_loss)(p, X_TRAIN[idx], Y_TRAIN[idx])
            total += float(value)
            p = jax.tree.map(lambda a, d: a - lr * d, p, g)
        losses.append(total / steps)
    np.testing.assert_allclose(run.history["loss"], losses, rtol=1e-5)
    np.testing.assert_allclose(run.params[0]["W"], p[0]["W"], rtol=1e-5, atol=1e-6)
    assert fit(net, params, X_TRAIN, Y_TRAIN, loss=LOSS, optimizer=optim.sgd(lr), epochs=1, batch_size=64,
               key=key, sampling="replacement").history["loss"].shape == (1,)
    with pytest.raises(ValueError, match="^steps_per_epoch: only with sampling='replacement'"):
        fit(net, params, X_TRAIN, Y_TRAIN, loss=LOSS, optimizer=optim.sgd(lr), epochs=1, batch_size=64, key=key,
            steps_per_epoch=3)
    with pytest.raises(ValueError, match="^sampling: expected one of"):
        fit(net, params, X_TRAIN, Y_TRAIN, loss=LOSS, optimizer=optim.sgd(lr), epochs=1, batch_size=64, key=key,
            sampling="bootstrap")


def test_progress_bar_and_plain_lines_from_inside_the_compiled_run(capsys, monkeypatch):
    fit(NET, PARAMS, X_TRAIN, Y_TRAIN, epochs=120, progress="digits run", **COMMON)
    err = capsys.readouterr().err
    assert "digits run" in err and "120/120" in err
    monkeypatch.setitem(sys.modules, "tqdm", None)  # tqdm missing: a plain line per tenth of the run
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    fit(NET, PARAMS, X_TRAIN, Y_TRAIN, epochs=100, progress=True, **COMMON)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fit: epoch")]
    assert lines == [f"fit: epoch {e}/100" for e in range(10, 101, 10)]
    result = fit_ensemble(NET, X_TRAIN, Y_TRAIN, keys=jax.random.split(jax.random.key(5), 3), epochs=20,
                          chunk_size=2, progress=True, **{k: v for k, v in COMMON.items()})
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fit_ensemble: epoch")]
    assert lines[-1] == "fit_ensemble: epoch 40/40" and result.history["loss"].shape == (3, 20)  # 2 chunks
    with pytest.raises(TypeError, match="^progress: expected a bool or a label"):
        fit(NET, PARAMS, X_TRAIN, Y_TRAIN, epochs=1, progress=1, **COMMON)


def _count(monkeypatch, name: str) -> list:
    """Count calls of jaxnet.validate's `name` wherever a jaxnet module imported it."""
    calls = []
    original = getattr(jaxnet.validate, name)

    def counted(*args, **kwargs):
        calls.append(args[0] if args else None)
        return original(*args, **kwargs)

    for module in [m for key, m in sys.modules.items() if key.startswith("jaxnet") and m is not None]:
        if getattr(module, name, None) is original:
            monkeypatch.setattr(module, name, counted)
    return calls


@pytest.mark.parametrize("options", [{}, {"validation_data": (X_VAL, Y_VAL)}, {"batch_size": 64}])
def test_one_params_check_and_one_targets_check_per_fit_call(monkeypatch, options):
    params_checks, target_checks = _count(monkeypatch, "check_params"), _count(monkeypatch, "check_targets")
    kw = {**COMMON, "batch_size": None, "key": jax.random.key(9), **options}
    fit(NET, PARAMS, X_TRAIN[:70], Y_TRAIN[:70], epochs=3, **kw)
    assert len(params_checks) == 1
    # the training targets once, and each evaluation set's targets once
    assert len(target_checks) == 1 + ("validation_data" in options)
    params_checks.clear(), target_checks.clear()
    fit_ensemble(NET, X_TRAIN[:70], Y_TRAIN[:70], keys=jax.random.split(jax.random.key(2), 3), epochs=2, **kw)
    assert len(params_checks) == 1 and len(target_checks) == 1 + ("validation_data" in options)


def test_fit_ensemble_does_everything_fit_does_per_member():
    """Per-member learning rates and weight decays, BatchNorm state, Dropout keys, evaluation and early
    stopping: member i equals `fit` with member i's settings."""
    net = jaxnet.serial(jaxnet.Dense(16), jaxnet.BatchNorm(), jaxnet.Relu, jaxnet.Dropout(0.2), jaxnet.Dense(10),
                        input_shape=(64,))
    keys = jax.random.split(jax.random.key(6), 3)
    rates, decays = jnp.array([0.05, 0.1, 0.2]), jnp.array([0.0, 1e-3, 1e-2])
    kw = dict(loss=LOSS, batch_size=50, key=jax.random.key(7), epochs=12, validation_data=(X_VAL, Y_VAL),
              early_stopping=EarlyStopping("val_accuracy", 2))
    ens = fit_ensemble(net, X_TRAIN, Y_TRAIN, keys=keys, optimizer="momentum",
                       hyperparams={"learning_rate": rates, "momentum": 0.9}, weight_decay=decays, **kw)
    for i in range(3):
        one = fit(net, net.init(keys[i])[1], X_TRAIN, Y_TRAIN, optimizer=optim.optimizer("momentum", float(rates[i]),
                                                                                       momentum=0.9),
                  weight_decay=float(decays[i]), **kw)
        got = member(ens, i)
        for name in ("loss", "val_loss", "val_accuracy"):
            np.testing.assert_allclose(got.history[name], one.history[name], rtol=2e-5, atol=1e-6)
        assert int(got.history["best_epoch"]) == int(one.history["best_epoch"])
        for a, b in zip(jax.tree.leaves((got.params, got.state)), jax.tree.leaves((one.params, one.state))):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fit_data_parallel_takes_the_same_options_as_fit():
    assert len(jax.devices()) == 4  # tests/conftest.py: 4 fake CPU devices
    kw = dict(COMMON, epochs=8, validation_data=(X_VAL, Y_VAL), early_stopping=EarlyStopping("val_loss", 2))
    one = fit(NET, PARAMS, X_TRAIN, Y_TRAIN, **kw)
    many = fit_data_parallel(NET, PARAMS, X_TRAIN, Y_TRAIN, **kw)
    assert int(many.history["best_epoch"]) == int(one.history["best_epoch"])
    np.testing.assert_allclose(many.history["loss"], one.history["loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(many.params), jax.tree.leaves(one.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'"):
        fit_data_parallel(NET, PARAMS, X_TRAIN, Y_TRAIN, epoch=3, **COMMON)

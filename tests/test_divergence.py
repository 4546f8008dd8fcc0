"""Divergence is visible: a network driven to overflow on purpose (a huge learning rate) stops at the
first non-finite epoch, returns the params from before it, says at which epoch, and experiments warn.

The reference for every check is an eager Python loop over `backprop` and the SGD rule, written
here step by step, independent of `fit`'s scan."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnet import backprop, data, fit, mlp, optim
from jaxnet.train import divergence_warning
from jaxnet.train import epoch_keys as fit_epoch_keys

LR = 10.0  # the loss grows ~300x per epoch: overflow after about a dozen epochs
EPOCHS = 40
BATCH = 5  # 16 examples: batches of 5, 5, 5 and a last one of 1


@pytest.fixture(scope="module")
def problem():
    net = mlp([2, 8, 1], activation="relu", output_activation="identity")
    _, params = net.init(jax.random.key(0))
    x, y = data.gaussian_blobs(jax.random.key(1), 16)
    return net, params, x, y


def finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))


def sgd_step(net, params, xb, yb):
    loss, grads = backprop(net, params, xb, yb, "mse")
    return loss, jax.tree.map(lambda p, g: p - LR * g, params, grads)


def reference_full_batch(net, params, x, y):
    """(first diverged epoch, losses before it, last finite params) by an eager loop."""
    losses = []
    for epoch in range(EPOCHS):
        loss, new = sgd_step(net, params, x, y)
        if not (np.isfinite(loss) and finite(new)):
            return epoch, losses, params
        losses.append(float(loss))
        params = new
    return -1, losses, params


def reference_minibatch(net, params, x, y, key):
    """The same for minibatches, replaying fit's documented shuffles (jaxnet.train.epoch_keys): an
    epoch whose mean loss or final params are not finite is not applied (the guard is per epoch), so
    the last finite params are those at the start of the diverging epoch."""
    n = x.shape[0]
    for epoch, epoch_key in enumerate(fit_epoch_keys(key, EPOCHS)[0]):
        perm = np.asarray(jax.random.permutation(epoch_key, n))
        new, total = params, 0.0
        for start in range(0, n, BATCH):
            idx = perm[start:start + BATCH]
            loss, new = sgd_step(net, new, x[idx], y[idx])
            total += float(loss) * len(idx)
        if not (np.isfinite(total / n) and finite(new)):
            return epoch, params
        params = new
    return -1, params


def test_full_batch_divergence_matches_an_eager_reference(problem):
    net, params, x, y = problem
    trained, _, _, history = fit(net, params, x, y, loss="mse", optimizer=optim.sgd(LR), epochs=EPOCHS)
    epoch, losses, last_finite = reference_full_batch(net, params, x, y)
    assert 0 < epoch < EPOCHS - 1, "the setting must diverge mid-run for this test to mean anything"
    assert int(history["diverged_epoch"]) == epoch
    np.testing.assert_allclose(history["loss"][:epoch], losses, rtol=1e-4)
    assert np.all(np.isnan(history["loss"][epoch + 1:]))
    assert finite(trained)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4), trained, last_finite)
    # the returned params are exactly those of a run that stops just before the diverging epoch
    stopped, _, _, before = fit(net, params, x, y, loss="mse", optimizer=optim.sgd(LR), epochs=epoch)
    jax.tree.map(np.testing.assert_array_equal, trained, stopped)
    assert int(before["diverged_epoch"]) == -1


def test_minibatch_divergence_matches_an_eager_reference(problem):
    net, params, x, y = problem
    key = jax.random.key(2)
    trained, _, _, history = fit(net, params, x, y, loss="mse", optimizer=optim.sgd(LR), epochs=EPOCHS,
                           batch_size=BATCH, key=key)
    epoch, last_finite = reference_minibatch(net, params, x, y, key)
    assert 0 < epoch < EPOCHS - 1
    assert int(history["diverged_epoch"]) == epoch
    assert np.all(np.isfinite(history["loss"][:epoch]))
    assert np.all(np.isnan(history["loss"][epoch + 1:]))
    assert finite(trained)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4), trained, last_finite)


def test_optimizer_state_is_kept_at_the_last_finite_step(problem):
    net, params, x, y = problem
    tx = optim.optimizer("momentum", LR, plateau=(0.9, 5))
    trained, _, state, history = fit(net, params, x, y, loss="mse", optimizer=tx, epochs=EPOCHS)
    epoch = int(history["diverged_epoch"])
    assert 0 < epoch < EPOCHS - 1
    _, _, state_before, _ = fit(net, params, x, y, loss="mse", optimizer=tx, epochs=epoch)
    jax.tree.map(np.testing.assert_array_equal, state, state_before)
    assert finite(state)
    rates = np.asarray(history["learning_rate"])
    assert np.all(rates[epoch:] == rates[epoch - 1])  # no decay is decided by NaN epochs after the stop


def test_vmapped_runs_diverge_independently(problem):
    net, params, x, y = problem
    rates = jnp.array([0.05, LR, 0.1, 100.0])
    run = jax.vmap(lambda lr: fit(net, params, x, y, loss="mse", optimizer=optim.sgd(lr), epochs=EPOCHS))
    stacked, _, _, history = run(rates)
    for i, lr in enumerate(rates):
        _, _, _, alone = fit(net, params, x, y, loss="mse", optimizer=optim.sgd(float(lr)), epochs=EPOCHS)
        assert int(history["diverged_epoch"][i]) == int(alone["diverged_epoch"])
    assert list(np.asarray(history["diverged_epoch"]) >= 0) == [False, True, False, True]
    assert finite(stacked)
    message = divergence_warning(history, "sweep")
    assert message.startswith("warning: sweep: 2 of 4 runs diverged (runs [1, 3], first at epoch")


def test_divergence_warning_names_the_epoch(problem):
    net, params, x, y = problem
    _, _, _, history = fit(net, params, x, y, loss="mse", optimizer=optim.sgd(LR), epochs=EPOCHS)
    epoch = int(history["diverged_epoch"])
    message = divergence_warning(history, "blobs")
    assert message.startswith(f"warning: blobs diverged at epoch {epoch} of {EPOCHS}")
    _, _, _, calm = fit(net, params, x, y, loss="mse", optimizer=optim.sgd(0.05), epochs=EPOCHS)
    assert divergence_warning(calm) is None
    with pytest.raises(ValueError, match="diverged_epoch"):
        divergence_warning({"loss": calm["loss"]})


def test_experiment_prints_the_warning(tmp_path, monkeypatch, capsys):
    """XOR's sigmoids saturate rather than overflow, so the divergence is injected: from the 6th
    update on, every step is scaled by infinity (params become inf/NaN at epoch 5)."""
    from experiments import xor

    def exploding_sgd(learning_rate):
        blow_up = optax.scale_by_schedule(lambda count: jnp.where(count >= 5, jnp.inf, 1.0))
        return optax.chain(optax.sgd(learning_rate), blow_up)

    monkeypatch.setattr(xor, "SEEDS", 2)
    monkeypatch.setattr(xor.optim, "sgd", exploding_sgd)
    xor.main(["--quick", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "warning: xor (true_gradient) diverged at epoch 5 of 1000" in out
    assert "warning: xor seed sweep (tutorial_scaling): 2 of 2 runs diverged (runs [0, 1], first at epoch 5" in out


@pytest.mark.parametrize("bad", [None, np.nan, np.inf, -np.inf])
def test_all_finite_matches_numpy_over_mixed_dtype_leaves(bad):
    """The guard's reduction (one concatenated sum per dtype) against numpy's isfinite, with a bad
    value in each floating leaf in turn; integer leaves never count."""
    from jaxnet.validate import all_finite

    tree = {"a": np.ones((3, 2), np.float32), "b": np.zeros(4, np.float16), "c": np.arange(3, dtype=np.int32),
            "d": (np.full((), 2.0, np.float32), np.ones((1, 1, 2), np.float16))}
    leaves, treedef = jax.tree.flatten(tree)
    for i, leaf in enumerate(leaves):
        if bad is not None and np.issubdtype(leaf.dtype, np.integer):
            continue
        changed = list(leaves)
        if bad is not None:
            changed[i] = leaf.copy()
            changed[i].reshape(-1)[-1] = bad
        tree_i = jax.tree.unflatten(treedef, changed)
        expected = all(bool(np.all(np.isfinite(np.asarray(x, np.float64)))) for x in changed)
        assert bool(all_finite(tree_i)) is expected
        assert bool(jax.jit(all_finite)(tree_i)) is expected
    assert bool(all_finite({})) is True

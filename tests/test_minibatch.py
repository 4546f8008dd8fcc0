"""Minibatch training in `jaxnet.fit`: which rows each step sees, determinism, and what the history holds.

The contract under test (jaxnet.train.fit): epoch t shuffles with
`perm = jax.random.permutation(epoch_keys(key, epochs)[0][t], n)`, runs `n // batch_size` batches
`perm[s*b:(s+1)*b]` and then one step on the remaining `n % batch_size` rows, so every row is used
exactly once per epoch; `history['loss'][t]` is the sample-weighted mean of the batch losses.

Instrument: inputs are the identity matrix (row i is the one-hot vector e_i), the network one Dense
unit, and the loss `sum(y_pred)` (gradient 1 for every row of the batch), so the gradient of W is
exactly the number of times each row occurs in the batch. A recording optax transformation stores
that vector at every step (and applies no update), so a repeated, dropped or misplaced row shows.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnet import evaluate, fit, losses, mlp, optim, reference
from jaxnet.train import epoch_keys as fit_epoch_keys

COUNT = losses.Loss("count", lambda y_pred, y_true: jnp.sum(y_pred), lambda y_pred, y_true: jnp.ones_like(y_pred),
                    False, "identity")


class RecordState(NamedTuple):
    step: jax.Array  # () int32: steps taken
    rows: jax.Array  # (max_steps, n) float32: grads["W"][:, 0] of each step


@functools.cache  # the same object for the same size, so fit is not recompiled
def row_recorder(max_steps: int) -> optax.GradientTransformation:
    """Records the first Dense layer's W gradient (n, 1) of every step; the update is zero."""
    def init(params):
        return RecordState(jnp.zeros((), jnp.int32), jnp.zeros((max_steps, params[0]["W"].shape[0]), jnp.float32))

    def update(grads, state, params=None):
        del params
        rows = state.rows.at[state.step].set(grads[0]["W"][:, 0])
        return jax.tree.map(jnp.zeros_like, grads), RecordState(state.step + 1, rows)

    return optax.GradientTransformation(init, update)


def record_rows(n, batch_size, epochs, key, grad="backprop"):
    """Run fit on the identity instrument; returns (steps taken, (epochs, steps per epoch, n) counts)."""
    steps = -(-n // batch_size)
    net = mlp([n, 1], activation="identity")
    _, params = net.init(jax.random.key(0))
    x, y = jnp.eye(n), jnp.zeros((n, 1))
    _, _, state, _ = fit(net, params, x, y, loss=COUNT, optimizer=row_recorder(epochs * steps), epochs=epochs,
                      batch_size=batch_size, key=key, grad=grad)
    return int(state.step), np.asarray(state.rows).reshape(epochs, steps, n)


def expected_rows(n, batch_size, epochs, key):
    """The batches the contract promises, as (epochs, steps, n) 0/1 membership, from the documented permutation."""
    steps = -(-n // batch_size)
    out = np.zeros((epochs, steps, n))
    for t, epoch_key in enumerate(fit_epoch_keys(key, epochs)[0]):
        perm = np.asarray(jax.random.permutation(epoch_key, n))
        for s in range(steps):
            out[t, s, perm[s * batch_size:(s + 1) * batch_size]] = 1
    return out


@pytest.mark.parametrize("n, batch_size, grad", [
    (12, 4, "backprop"),  # divisible
    (13, 4, "backprop"),  # one row left over
    (13, 5, "backprop"),  # three rows left over
    (13, 5, "autodiff"),
    (7, 1, "backprop"),  # one row per step: the step order is the permutation itself
])
def test_every_row_once_per_epoch_in_the_documented_batches(n, batch_size, grad):
    epochs, key = 3, jax.random.key(42)
    steps, rows = record_rows(n, batch_size, epochs, key, grad)
    assert steps == epochs * -(-n // batch_size)
    # Each row exactly once per epoch, never twice within a step.
    np.testing.assert_array_equal(rows.sum(axis=1), np.ones((epochs, n)))
    assert set(np.unique(rows)) <= {0.0, 1.0}
    # Full batches first, then one step on the remainder.
    sizes = [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    np.testing.assert_array_equal(rows.sum(axis=2), np.tile(sizes, (epochs, 1)))
    # And exactly the documented batches.
    np.testing.assert_array_equal(rows, expected_rows(n, batch_size, epochs, key))


def test_epochs_use_different_orders():
    _, rows = record_rows(13, 4, 3, jax.random.key(7))
    for a in range(3):
        for b in range(a + 1, 3):
            assert not np.array_equal(rows[a], rows[b]), f"epochs {a} and {b} used the same batches"
    _, rows = record_rows(7, 1, 3, jax.random.key(7))
    orders = [tuple(rows[t].argmax(axis=1)) for t in range(3)]
    assert len(set(orders)) == 3 and all(sorted(o) == list(range(7)) for o in orders)


# ------------------------------------------------------------------ against a manual numpy loop


def test_fit_equals_a_numpy_loop_over_the_same_permutations(x64):
    """Two epochs of minibatch SGD (13 rows, batches of 5: 5, 5, 3) against the numpy reference's
    forward/backward (true gradient = its gradient times the batch size), float64."""
    n, batch_size, epochs, lr = 13, 5, 2, 0.3
    init_key, key = jax.random.split(jax.random.key(11))
    x = np.random.default_rng(11).normal(size=(n, 3))
    labels = np.arange(n) % 4
    net = mlp([3, 6, 4], activation="tanh", output_activation="identity", dtype=jnp.float64)
    _, params = net.init(init_key)
    got, _, _, history = fit(net, params, x, labels, loss="softmax_cross_entropy", optimizer=optim.sgd(lr),
                       epochs=epochs, batch_size=batch_size, key=key)

    weights, biases = reference.from_jaxnet_params(params)
    targets = np.eye(4)[labels]
    losses_ref = []
    for epoch_key in fit_epoch_keys(key, epochs)[0]:
        perm = np.asarray(jax.random.permutation(epoch_key, n))
        total = 0.0
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            acts, zs = reference.forward(weights, biases, x[idx], "tanh", "softmax")
            total += reference.loss_value("cross_entropy", acts[-1], targets[idx]) * len(idx)
            dWs, dbs = reference.backward(weights, acts, zs, targets[idx], "cross_entropy", "tanh", "softmax")
            for i in range(len(weights)):
                weights[i] = weights[i] - lr * dWs[i] * len(idx)
                biases[i] = biases[i] - lr * dbs[i] * len(idx)
        losses_ref.append(total / n)

    got_w, got_b = reference.from_jaxnet_params(got)
    for a, b in zip(got_w + got_b, weights + biases):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(history["loss"]), losses_ref, rtol=1e-12)


def test_epoch_loss_is_the_sample_weighted_mean():
    """With no update the model is fixed, so the weighted mean of batch MSEs is the MSE over all rows;
    an unweighted mean of the three batch means (5, 5, 3 rows) would differ."""
    n = 13
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(n, 2)).astype(np.float32), rng.normal(size=(n, 1)).astype(np.float32)
    net = mlp([2, 1], activation="identity")
    _, params = net.init(jax.random.key(5))
    _, _, _, history = fit(net, params, x, y, loss="mse", optimizer=optax.set_to_zero(), epochs=3, batch_size=5,
                     key=jax.random.key(6))
    w, b = (np.asarray(params[0][k], np.float64) for k in ("W", "b"))
    full = np.mean((x.astype(np.float64) @ w + b - y) ** 2)
    np.testing.assert_allclose(np.asarray(history["loss"]), [full] * 3, rtol=1e-5)


# ------------------------------------------------------------------ determinism and special cases


@functools.cache
def small_problem(dtype=jnp.float32):
    """A 4-8-3 ReLU classifier, 30 rows of 3-class data (numpy-generated) and 15 validation rows."""
    x = np.random.default_rng(1).normal(size=(30, 4)).astype(dtype)
    labels = ((x.sum(axis=1) > 0).astype(np.int32) + (x[:, 0] > 1)).astype(np.int32)
    net = mlp([4, 8, 3], activation="relu", output_activation="identity", dtype=dtype)
    _, params = net.init(jax.random.key(1))
    val = (jnp.asarray(x[::2] + 0.1), jnp.asarray(labels[::2]))
    return net, params, jnp.asarray(x), jnp.asarray(labels), val


def run(net, params, x, labels, **kwargs):
    """Five epochs of SGD (0.2) on softmax cross-entropy; the keyword arguments override fit's."""
    options = dict(loss="softmax_cross_entropy", optimizer=optim.sgd(0.2), epochs=5)
    return fit(net, params, x, labels, **{**options, **kwargs})


def test_same_key_same_run_bitwise_other_key_different():
    net, params, x, labels, val = small_problem()
    a, b, c = (run(net, params, x, labels, batch_size=8, key=jax.random.key(k), validation_data=val)
               for k in (0, 0, 1))
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    assert not np.array_equal(np.asarray(a[0][0]["W"]), np.asarray(c[0][0]["W"]))
    assert not np.array_equal(np.asarray(a.history["loss"]), np.asarray(c.history["loss"]))


def test_validation_history_equals_evaluate_on_the_returned_params():
    net, params, x, labels, (x_val, y_val) = small_problem()
    trained, _, _, history = run(net, params, x, labels, batch_size=8, key=jax.random.key(2),
                           validation_data=(x_val, y_val))
    assert history["val_loss"].shape == history["val_accuracy"].shape == (5,)
    expected = evaluate(net, trained, x_val, y_val, "softmax_cross_entropy")
    np.testing.assert_allclose(float(history["val_loss"][-1]), float(expected["loss"]), rtol=1e-5)
    assert float(history["val_accuracy"][-1]) == float(expected["accuracy"])
    # And an accuracy computed here, independently of jaxnet.metrics.
    predicted = np.asarray(net.apply(trained, x_val)).argmax(axis=1)
    assert float(history["val_accuracy"][-1]) == pytest.approx(np.mean(predicted == np.asarray(y_val)), abs=1e-7)


def test_batch_size_n_equals_full_batch(x64):
    """One batch of all rows (in a shuffled order) is full-batch gradient descent, to rounding."""
    net, params, x, labels, _ = small_problem(jnp.float64)
    full, _, _, h_full = run(net, params, x, labels)
    mini, _, _, h_mini = run(net, params, x, labels, batch_size=x.shape[0], key=jax.random.key(9))
    for u, v in zip(jax.tree.leaves(full), jax.tree.leaves(mini)):
        np.testing.assert_allclose(np.asarray(v), np.asarray(u), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(h_mini["loss"]), np.asarray(h_full["loss"]), rtol=1e-12)


@pytest.mark.parametrize("kwargs, error, name", [
    ({"batch_size": 8}, ValueError, "key"),
    ({"batch_size": 31, "key": jax.random.key(0)}, ValueError, "batch_size"),
    ({"batch_size": 0, "key": jax.random.key(0)}, ValueError, "batch_size"),
    ({"batch_size": 2.5, "key": jax.random.key(0)}, TypeError, "batch_size"),
    ({"batch_size": 8, "key": 0}, TypeError, "key"),
])
def test_bad_minibatch_arguments_raise_naming_them(kwargs, error, name):
    net, params, x, labels, _ = small_problem()
    with pytest.raises(error, match=name):
        run(net, params, x, labels, **kwargs)

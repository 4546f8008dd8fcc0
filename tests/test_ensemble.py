"""Ensembles (vmapped `fit`), chunks, and sharding over devices.

Independent references: a plain `fit` per member (and `net.init(keys[i])` for the init), a
hand-computed SGD run on f(w) = w^2 (field case J2), and, for sharding, the same computation on one
device. The sharding tests use the 4 fake CPU devices that tests/conftest.py gives the whole run
(`XLA_FLAGS=--xla_force_host_platform_device_count=4`); unsharded work stays on device 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnet
from jaxnet import optim
from jaxnet.train import device_mesh, fit_data_parallel, fit_ensemble, member
from jaxnet import fit

from conftest import MNIST_DIR

XOR_X = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
XOR_Y = jnp.array([[0], [1], [1], [0]], jnp.float32)
FOUR = 4
needs_four_devices = pytest.mark.skipif(jax.device_count() < FOUR, reason="needs the 4 devices of conftest.py")


def max_diff(a, b) -> float:
    return max(float(jnp.max(jnp.abs(jnp.asarray(u) - jnp.asarray(v))))
               for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def xor_net():
    return jaxnet.mlp([2, 4, 1], activation="sigmoid")


def classification_data(n=60, features=6, classes=3, seed=0):
    """A small learnable classification set (numpy rng, independent of the code under test)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)).astype(np.float32)
    labels = np.argmax(x @ rng.standard_normal((features, classes)), axis=1).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(labels)


# ---------------------------------------------------------------------------------------------
# Members equal single fits
# ---------------------------------------------------------------------------------------------

N_XOR, XOR_EPOCHS = 7, 20
XOR_KEYS = jax.random.split(jax.random.key(0), N_XOR)
XOR_RATES = jnp.geomspace(0.1, 10.0, N_XOR).astype(jnp.float32)


@pytest.fixture(scope="module")
def xor_ensemble():
    """7 XOR networks, one key and one learning rate each, 20 epochs, in one call."""
    return fit_ensemble(xor_net(), XOR_X, XOR_Y, keys=XOR_KEYS, loss="mse",
                        hyperparams={"learning_rate": XOR_RATES}, epochs=XOR_EPOCHS)


def test_init_lanes_equal_net_init_bitwise_and_differ():
    # Field case J1. An optimizer that never moves the params returns the init unchanged, so every
    # lane must be bitwise `net.init(keys[i])`, and lanes from different keys must differ.
    net = xor_net()
    params, _, _, _ = fit_ensemble(net, XOR_X, XOR_Y, keys=XOR_KEYS, loss="mse", optimizer=lambda: optax.set_to_zero(),
                             epochs=1)
    for i in range(N_XOR):
        _, expected = net.init(XOR_KEYS[i])
        for got, want in zip(jax.tree.leaves(member(params, i)), jax.tree.leaves(expected), strict=True):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    w = np.asarray(params[0]["W"])
    assert all(not np.array_equal(w[i], w[j]) for i in range(N_XOR) for j in range(i))


def test_members_equal_single_fits_over_keys_and_learning_rates(xor_ensemble):
    net = xor_net()
    params, _, _, history = xor_ensemble
    assert history["loss"].shape == (N_XOR, XOR_EPOCHS) and history["diverged_epoch"].shape == (N_XOR,)
    for i in range(N_XOR):
        want_p, _, _, want_h = fit(net, net.init(XOR_KEYS[i])[1], XOR_X, XOR_Y, loss="mse",
                             optimizer=optim.sgd(float(XOR_RATES[i])), epochs=XOR_EPOCHS)
        assert max_diff(member(params, i), want_p) <= 1e-6
        assert max_diff(member(history, i)["loss"], want_h["loss"]) <= 1e-6
        np.testing.assert_allclose(history["learning_rate"][i], want_h["learning_rate"], rtol=1e-7)
    # Members trained from different keys differ.
    assert max_diff(member(params, 0), member(params, 1)) > 1e-3


def test_chunks_with_padding_and_last_history_equal_one_call(xor_ensemble, capsys):
    # chunks of 3: 3 + 3 + (1 padded to 3); history="last" keeps the final epoch only.
    params, _, _, last = fit_ensemble(xor_net(), XOR_X, XOR_Y, keys=XOR_KEYS, loss="mse",
                                hyperparams={"learning_rate": XOR_RATES}, epochs=XOR_EPOCHS,
                                chunk_size=3, history="last", progress="xor chunks")
    whole_params, _, _, full = xor_ensemble
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, whole_params)
    assert max_diff(params, whole_params) <= 1e-6
    assert last["loss"].shape == (N_XOR,)
    np.testing.assert_allclose(last["loss"], full["loss"][:, -1], rtol=1e-6)
    np.testing.assert_array_equal(last["diverged_epoch"], full["diverged_epoch"])
    err = capsys.readouterr().err  # the bar counts epochs over the 3 chunks of members
    assert "xor chunks" in err and f"{3 * XOR_EPOCHS}/{3 * XOR_EPOCHS}" in err


MOMENTA = jnp.array([0.0, 0.5, 0.9], jnp.float32)
PATIENCE = jnp.array([1, 2, 3], jnp.int32)


@jax.jit
def momentum_reference(params, x, labels, momentum, patience, key):
    """One plain (unbatched) `fit` with a momentum and a plateau patience: the reference member.
    Jitted, so that the three members' references share one compiled program."""
    tx = optim.optimizer("momentum", 0.2, momentum=momentum, plateau={"factor": 0.5, "patience": patience})
    result = fit(classifier(), params, x, labels, loss="softmax_cross_entropy", optimizer=tx, epochs=4,
                 batch_size=16, key=key)
    return result.params, result.history


def classifier():
    return jaxnet.mlp([6, 8, 3], activation="relu", output_activation="identity")


def test_minibatch_members_with_momentum_and_plateau_equal_single_fits():
    x, labels = classification_data()
    keys = jax.random.split(jax.random.key(1), 3)
    shuffle = jax.random.split(jax.random.key(2), 3)
    hyper = {"learning_rate": 0.2, "momentum": MOMENTA, "plateau": {"factor": 0.5, "patience": PATIENCE}}
    params, _, _, history = fit_ensemble(classifier(), x, labels, keys=keys, loss="softmax_cross_entropy",
                                   optimizer="momentum", hyperparams=hyper, epochs=4, batch_size=16,
                                   key=shuffle)
    for i in range(3):
        init = classifier().init(keys[i])[1]
        want_p, want_h = momentum_reference(init, x, labels, MOMENTA[i], PATIENCE[i], shuffle[i])
        assert max_diff(member(params, i), want_p) <= 1e-6
        assert max_diff(member(history, i), want_h) <= 1e-6


def test_shared_shuffle_key_and_stacked_initial_params():
    x, labels = classification_data()
    stacked = jax.vmap(lambda k: classifier().init(k)[1])(jax.random.split(jax.random.key(4), 3))
    shuffle = jax.random.key(9)
    hyper = {"learning_rate": 0.2, "momentum": MOMENTA, "plateau": {"factor": 0.5, "patience": PATIENCE}}
    params, _, _, _ = fit_ensemble(classifier(), x, labels, params=stacked, loss="softmax_cross_entropy",
                             optimizer="momentum", hyperparams=hyper, epochs=4, batch_size=16, key=shuffle)
    for i in range(3):
        want, _ = momentum_reference(member(stacked, i), x, labels, MOMENTA[i], PATIENCE[i], shuffle)
        assert max_diff(member(params, i), want) <= 1e-6


def test_vmapped_learning_rates_on_w_squared_match_hand_values_without_recompiling():
    # Field case J2: 10 SGD steps on f(w) = w^2 from w = 2 give w = 2 (1 - 2 lr)^10.
    # The network is a 1-1 Dense layer whose weight plays w (its bias stays 0: gradient 2 b = 0).
    def w_squared(net, params, xb, yb, loss_fn, **_):  # a gradient route: jaxnet.grad's signature
        dense = params[0]
        loss = jnp.sum(dense["W"] ** 2) + jnp.sum(dense["b"] ** 2)
        return loss, ({"W": 2 * dense["W"], "b": 2 * dense["b"]},) + tuple(params[1:])

    net = jaxnet.mlp([1, 1])
    x, y = jnp.zeros((1, 1)), jnp.zeros((1, 1))
    start = ({"W": jnp.full((3, 1, 1), 2.0), "b": jnp.zeros((3, 1))}, {})
    run = lambda lrs, epochs=10: fit_ensemble(  # noqa: E731
        net, x, y, params=start, loss="mse", hyperparams={"learning_rate": lrs}, epochs=epochs, grad=w_squared)
    params, _, _, history = run(jnp.array([0.1, 0.25, 0.5]))
    w = lambda p: p[0]["W"].ravel()  # noqa: E731
    np.testing.assert_allclose(w(params), [0.21474836, 0.001953125, 0.0], rtol=1e-6, atol=1e-12)
    from jaxnet.train._ensemble import _run_members
    compiled = _run_members._cache_size()
    params = run(jnp.array([0.2, 0.3, 0.4])).params
    assert _run_members._cache_size() == compiled  # new rates: same program
    np.testing.assert_allclose(w(params), 2 * (1 - 2 * np.array([0.2, 0.3, 0.4])) ** 10, rtol=1e-5, atol=1e-12)
    assert run(jnp.array([0.1, 0.2, 0.3]), epochs=7).history["loss"].shape == (3, 7)


# ---------------------------------------------------------------------------------------------
# member, errors
# ---------------------------------------------------------------------------------------------


def test_member_picks_leaves_and_rejects_bad_indices():
    tree = {"a": jnp.arange(6).reshape(3, 2), "b": (jnp.arange(3.0),)}
    assert member(tree, 1)["a"].tolist() == [2, 3] and float(member(tree, -1)["b"][0]) == 2.0
    with pytest.raises(ValueError, match="i: expected a member index in"):
        member(tree, 3)
    with pytest.raises(TypeError, match="i: expected an int"):
        member(tree, 1.0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(), ValueError, "keys, params: pass exactly one"),
        (dict(keys=jax.random.key(0)), TypeError, "keys: expected a 1-D array of PRNG keys"),
        (dict(keys=jax.random.split(jax.random.key(0), 3), hyperparams={"learning_rate": jnp.ones(2)}),
         ValueError, r"hyperparams\['learning_rate'\]: expected one value per member \(3\)"),
        (dict(keys=jax.random.split(jax.random.key(0), 3), hyperparams={}), ValueError, "learning_rate"),
        (dict(keys=jax.random.split(jax.random.key(0), 3), batch_size=2), ValueError, "key"),
        (dict(keys=jax.random.split(jax.random.key(0), 3), history="all"), ValueError, "history"),
        (dict(keys=jax.random.split(jax.random.key(0), 3), chunk_size=0), ValueError, "chunk_size"),
        (dict(keys=jax.random.split(jax.random.key(0), 3), mesh="cpu"), TypeError, "mesh"),
        (dict(keys=jax.random.split(jax.random.key(0), 3),
              hyperparams={"learning_rate": 1.0, "plateau": {"patience": jnp.ones(2, jnp.int32)}}),
         ValueError, r"hyperparams\['plateau'\]\['patience'\]: expected one value per member"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    kwargs = {"hyperparams": {"learning_rate": 1.0}, **kwargs}
    with pytest.raises(error, match=match):
        fit_ensemble(xor_net(), XOR_X, XOR_Y, loss="mse", epochs=2, **kwargs)


# ---------------------------------------------------------------------------------------------
# Data parallel on this process's single device
# ---------------------------------------------------------------------------------------------


def test_data_parallel_on_one_device_equals_fit():
    x, labels = classification_data()
    _, params = classifier().init(jax.random.key(0))
    key = jax.random.key(1)
    tx = optim.optimizer("momentum", 0.2, momentum=0.5, plateau={"factor": 0.5, "patience": 2})
    got_p, _, _, got_h = fit_data_parallel(classifier(), params, x, labels, mesh=device_mesh("data"),
                                     loss="softmax_cross_entropy", optimizer=tx, epochs=4, batch_size=16, key=key)
    want_p, want_h = momentum_reference(params, x, labels, 0.5, 2, key)
    assert max_diff(got_p, want_p) <= 1e-6 and max_diff(got_h, want_h) <= 1e-6


# ---------------------------------------------------------------------------------------------
# Four devices
# ---------------------------------------------------------------------------------------------


@needs_four_devices
def test_four_devices_sharded_ensemble_equals_one_device():
    net = classifier()
    x, labels = classification_data()
    n = 12
    keys, shuffle = jax.random.split(jax.random.key(7), n), jax.random.split(jax.random.key(8), n)
    lrs = jnp.linspace(0.05, 0.5, n)
    kw = dict(loss="softmax_cross_entropy", epochs=5, batch_size=20)
    mesh = device_mesh("ensemble")
    assert mesh.size == FOUR
    sharded_p, _, _, sharded_h = fit_ensemble(net, x, labels, keys=keys, key=shuffle,
                                        hyperparams={"learning_rate": lrs}, mesh=mesh, **kw)
    single_p, _, _, single_h = fit_ensemble(net, x, labels, keys=keys, key=shuffle,
                                      hyperparams={"learning_rate": lrs}, **kw)  # all on device 0
    assert max_diff(sharded_p, single_p) <= 1e-5 and max_diff(sharded_h, single_h) <= 1e-5
    assert len(single_p[0]["W"].devices()) == 1
    w = sharded_p[0]["W"]  # 12 members: 3 per device
    assert len(w.devices()) == FOUR and [s.data.shape[0] for s in w.addressable_shards] == [3] * FOUR


def mnist_like(n=256):
    """Real MNIST images (a slice of the shared t10k files) when present, else MNIST-shaped data."""
    if (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists() or (MNIST_DIR / "t10k-images-idx3-ubyte").exists():
        m = jaxnet.data.load_mnist(MNIST_DIR, flatten=True, t10k_split=(8000, 2000))
        return m.x_train[:n], m.y_train[:n], "mnist"
    rng = np.random.default_rng(0)
    x = rng.random((n, 784), dtype=np.float32)
    return jnp.asarray(x), jnp.asarray(np.argmax(x @ rng.standard_normal((784, 10)), 1).astype(np.int32)), "synthetic"


@needs_four_devices
def test_four_devices_data_parallel_mnist_equals_one_device():
    # 250 examples in 5 batches of 50, which 4 devices cannot split evenly (XLA pads the slices).
    x, labels, source = mnist_like(250)
    batch_size = 50
    print("data:", source)
    net = jaxnet.mlp([784, 32, 10], activation="relu", output_activation="identity")
    _, params = net.init(jax.random.key(0))
    kw = dict(loss="softmax_cross_entropy", optimizer=optim.sgd(0.1), epochs=2, batch_size=batch_size,
              key=jax.random.key(1))
    got_p, _, _, got_h = fit_data_parallel(net, params, x, labels, **kw)  # default mesh: all 4 devices
    want_p, _, _, want_h = fit(net, params, x, labels, **kw)  # one device
    assert len(got_p[0]["W"].devices()) == FOUR and got_p[0]["W"].sharding.is_fully_replicated
    assert len(want_p[0]["W"].devices()) == 1
    assert max_diff(got_p, want_p) <= 1e-5 and max_diff(got_h, want_h) <= 1e-5

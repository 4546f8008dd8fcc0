"""BatchNorm and Dropout against independent references, layers compared by value, and the
"Write your own layer" document.

References: numpy float64 implementations written here (BatchNorm's forward and the backward of
Ioffe & Szegedy 2015, section 3, in its step-by-step form, not the layer's compact formula), jax.grad of
plain jnp code, the reference values of issue 10 (computed by hand), and statistics of Bernoulli masks.
`gradcheck` on a BatchNorm + Dropout network in both modes is in test_gradcheck.py.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet
from jaxnet import BatchNorm, Dense, Dropout, Relu, mlp, serial

X_REF = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0], [7.0, 14.0]])


# ------------------------------------------------------------------ numpy references


def bn_axes(x):
    return (0,) + tuple(range(2, x.ndim))


def bn_channel(v, x):
    return np.asarray(v, np.float64).reshape((1, -1) + (1,) * (x.ndim - 2))


def bn_forward_numpy(x, gamma, beta, eps, mean=None, var=None):
    """Training (mean/var None: the batch's, biased) or evaluation (given running statistics)."""
    axes = bn_axes(x)
    if mean is None:
        mean, var = x.mean(axis=axes), x.var(axis=axes)  # np.var: ddof 0, the biased variance
    x_hat = (x - bn_channel(mean, x)) / np.sqrt(bn_channel(var, x) + eps)
    return bn_channel(gamma, x) * x_hat + bn_channel(beta, x)


def bn_backward_numpy(x, gamma, dy, eps):
    """Training-mode backward, step by step through mu and var (Ioffe & Szegedy 2015, section 3)."""
    axes = bn_axes(x)
    m = x.size // x.shape[1]
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    x_hat = (x - mu) / np.sqrt(var + eps)
    dx_hat = dy * bn_channel(gamma, x)
    dvar = np.sum(dx_hat * (x - mu) * -0.5 * (var + eps) ** -1.5, axis=axes, keepdims=True)
    dmu = np.sum(-dx_hat / np.sqrt(var + eps), axis=axes, keepdims=True) + dvar * np.mean(-2 * (x - mu), axis=axes,
                                                                                           keepdims=True)
    dx = dx_hat / np.sqrt(var + eps) + dvar * 2 * (x - mu) / m + dmu / m
    return {"gamma": np.sum(dy * x_hat, axis=axes), "beta": np.sum(dy, axis=axes)}, dx


def f64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


# ------------------------------------------------------------------ BatchNorm: the reference values


def test_batchnorm_training_reference_values(x64):
    bn = BatchNorm(momentum=0.0)  # momentum 0: the running statistics become the batch's
    params = f64(bn.init(None, (2,))[1])
    y = bn.apply(params, jnp.asarray(X_REF), train=True)
    np.testing.assert_allclose(y[:, 0], [-1.3416394449, -0.4472131483, 0.4472131483, 1.3416394449], atol=1e-10)
    np.testing.assert_allclose(y, bn_forward_numpy(X_REF, [1, 1], [0, 0], 1e-5), rtol=1e-13)
    state = bn.update_state(params, f64(bn.init_state((2,))), jnp.asarray(X_REF))
    np.testing.assert_allclose(state["mean"], [4.0, 8.0], rtol=1e-15)
    np.testing.assert_allclose(state["var"], [5.0, 20.0], rtol=1e-15)  # biased: the unbiased would be 20/3, 80/3


def test_batchnorm_evaluation_reference_values(x64):
    bn = BatchNorm()
    params = f64(bn.init(None, (2,))[1])
    state = {"mean": jnp.array([0.4, 0.8]), "var": jnp.array([0.5, 2.0])}
    x = jnp.asarray(X_REF)
    y = bn.apply(params, x, state=state)
    np.testing.assert_allclose(y[0], [0.8485196523, 0.8485260161], atol=1e-10)
    np.testing.assert_allclose(y, bn_forward_numpy(X_REF, [1, 1], [0, 0], 1e-5, [0.4, 0.8], [0.5, 2.0]), rtol=1e-13)
    dout = jnp.array([[1.0, 0], [0, 0], [0, 0], [0, 2.0]])
    grads, dx = bn.backward(params, x, y, dout, state=state)
    np.testing.assert_allclose(dx, [[1.4141994204, 0], [0, 0], [0, 0], [0, 1.4142100269]], atol=1e-10)
    np.testing.assert_allclose(grads["beta"], [1.0, 2.0])
    # evaluation uses the running statistics only: each example alone gives its row of the batch output
    rows = jnp.concatenate([bn.apply(params, x[i:i + 1], state=state) for i in range(4)])
    np.testing.assert_allclose(rows, y, rtol=1e-15)


def test_batchnorm_running_statistics_update_with_momentum(x64):
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(16, 3))
    old = {"mean": rng.normal(size=3), "var": rng.uniform(0.5, 2, size=3)}
    for bn in (BatchNorm(momentum=0.9), BatchNorm(momentum=0.5), BatchNorm(book=True)):
        params = f64(bn.init(None, (3,))[1])
        new = bn.update_state(params, f64(old), jnp.asarray(x))
        m = bn.momentum
        np.testing.assert_allclose(new["mean"], m * old["mean"] + (1 - m) * x.mean(0), rtol=1e-14)
        np.testing.assert_allclose(new["var"], m * old["var"] + (1 - m) * x.var(0), rtol=1e-14)


def test_batchnorm_update_state_in_a_network_sees_the_layer_input(x64):
    """A network updates BatchNorm's statistics with the BatchNorm's input (here the Dense output)."""
    net = serial(Dense(3, dtype=jnp.float64), BatchNorm(momentum=0.8, dtype=jnp.float64), input_shape=(2,))
    _, params = net.init(jax.random.key(0))
    x = np.random.default_rng(1).normal(size=(10, 2))
    new = net.update_state(params, net.init_state(), jnp.asarray(x))
    z = x @ np.asarray(params[0]["W"]) + np.asarray(params[0]["b"])
    np.testing.assert_allclose(new[1]["mean"], 0.2 * z.mean(0), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(new[1]["var"], 0.8 + 0.2 * z.var(0), rtol=1e-13)


def test_batchnorm_book_defaults(x64):
    bn = BatchNorm(book=True)
    assert bn.eps == 1e-6 and bn.momentum == 0.9
    state = bn.init_state((2,))
    np.testing.assert_array_equal(state["mean"], [0, 0])
    np.testing.assert_array_equal(state["var"], [0, 0])  # the book's np.zeros
    params = f64(bn.init(None, (2,))[1])
    y = bn.apply(params, jnp.asarray(X_REF), train=True)
    np.testing.assert_allclose(y, bn_forward_numpy(X_REF, [1, 1], [0, 0], 1e-6), rtol=1e-13)


@pytest.mark.parametrize("shape", [(6, 3), (5, 3, 4, 2)], ids=["(batch, features)", "(N, C, H, W)"])
@pytest.mark.parametrize("book", [False, True])
def test_batchnorm_per_channel_against_numpy_and_jax_grad(shape, book, x64):
    rng = np.random.default_rng(3)
    x = rng.normal(1.0, 2.0, size=shape)
    gamma, beta = rng.normal(size=3), rng.normal(size=3)
    mean, var = rng.normal(size=3), rng.uniform(0.5, 2, size=3)
    dy = rng.normal(size=shape)
    bn = BatchNorm(book=book)
    params, state = {"gamma": jnp.asarray(gamma), "beta": jnp.asarray(beta)}, {"mean": jnp.asarray(mean),
                                                                             "var": jnp.asarray(var)}
    xj = jnp.asarray(x)
    # training
    y = bn.apply(params, xj, train=True)
    np.testing.assert_allclose(y, bn_forward_numpy(x, gamma, beta, bn.eps), rtol=1e-12, atol=1e-14)
    grads, dx = bn.backward(params, xj, y, jnp.asarray(dy), train=True)
    ref_grads, ref_dx = bn_backward_numpy(x, gamma, dy, bn.eps)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-13)
    for name in ("gamma", "beta"):
        np.testing.assert_allclose(grads[name], ref_grads[name], rtol=1e-12)

    def plain_train(p, x):  # plain jnp, differentiated by jax.grad
        axes = bn_axes(x)
        c = (1, -1) + (1,) * (x.ndim - 2)
        mu = jnp.mean(x, axis=axes, keepdims=True)
        v = jnp.mean((x - mu) ** 2, axis=axes, keepdims=True)
        return jnp.sum(dy * (p["gamma"].reshape(c) * (x - mu) / jnp.sqrt(v + bn.eps) + p["beta"].reshape(c)))

    auto_p, auto_x = jax.grad(plain_train, argnums=(0, 1))(params, xj)
    np.testing.assert_allclose(dx, auto_x, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(grads["gamma"], auto_p["gamma"], rtol=1e-10)
    # evaluation: the elementwise scale, no terms through batch statistics
    y = bn.apply(params, xj, state=state)
    np.testing.assert_allclose(y, bn_forward_numpy(x, gamma, beta, bn.eps, mean, var), rtol=1e-12, atol=1e-14)
    grads, dx = bn.backward(params, xj, y, jnp.asarray(dy), state=state)
    np.testing.assert_allclose(dx, dy * bn_channel(gamma, x) / np.sqrt(bn_channel(var, x) + bn.eps), rtol=1e-13)
    x_hat = (x - bn_channel(mean, x)) / np.sqrt(bn_channel(var, x) + bn.eps)
    np.testing.assert_allclose(grads["gamma"], np.sum(dy * x_hat, axis=bn_axes(x)), rtol=1e-12)
    # running statistics per channel
    new = bn.update_state(params, state, xj)
    np.testing.assert_allclose(new["mean"], 0.9 * mean + 0.1 * x.mean(axis=bn_axes(x)), rtol=1e-13)
    np.testing.assert_allclose(new["var"], 0.9 * var + 0.1 * x.var(axis=bn_axes(x)), rtol=1e-13)


# ------------------------------------------------------------------ BatchNorm in float32 at large means (issue 21)


def _large_mean_batch(shape, mean, rng):
    """float32 data with the given channel mean: channel 0 std 0.1, channel 1 constant (a value that is
    not a round number, so that a float32 sum of it rounds), channel 2 std 1."""
    x = mean + rng.standard_normal(shape) * bn_channel([0.1, 0.0, 1.0], np.zeros(shape))
    x[:, 1] = mean * 1.2345678
    return x.astype(np.float32)


@pytest.mark.parametrize("mean", [1e2, 1e3, 1e4, 1e5, 1e6, 1e7])
@pytest.mark.parametrize("shape", [(128, 3), (16, 3, 4, 4)], ids=["(batch, features)", "(N, C, H, W)"])
@pytest.mark.parametrize("book", [False, True])
def test_batchnorm_float32_statistics_at_large_means_match_numpy_float64(mean, shape, book):
    # Reference: numpy float64 on the very same float32 inputs. Before the shifted statistics, a
    # constant channel of 1e4 normalised to values near 1 (float64: exactly 0) and data of mean 1e4,
    # std 0.1 to values off by 1e-2.
    rng = np.random.default_rng(int(np.log10(mean)))
    x = _large_mean_batch(shape, mean, rng)
    x64, dy = x.astype(np.float64), rng.standard_normal(shape).astype(np.float32)
    gamma, beta = np.array([1.5, 1.0, 0.7], np.float32), np.array([0.2, -0.1, -0.3], np.float32)
    bn = BatchNorm(book=book)
    params = {"gamma": jnp.asarray(gamma), "beta": jnp.asarray(beta)}
    y = np.asarray(bn.apply(params, jnp.asarray(x), train=True))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[:, 1], np.broadcast_to(bn_channel(beta, x)[:, 1], y[:, 1].shape), rtol=0, atol=1e-6)
    np.testing.assert_allclose(y, bn_forward_numpy(x64, gamma, beta, bn.eps), rtol=0, atol=1e-5)
    grads, dx = bn.backward(params, jnp.asarray(x), jnp.asarray(y), jnp.asarray(dy), train=True)
    ref_grads, ref_dx = bn_backward_numpy(x64, gamma, dy.astype(np.float64), bn.eps)
    np.testing.assert_allclose(dx, ref_dx, rtol=0, atol=1e-6 * np.max(np.abs(ref_dx)))
    x_hat = (bn_forward_numpy(x64, np.ones(3), np.zeros(3), bn.eps))
    bound = 1e-6 * np.sum(np.abs(dy) * (1 + np.abs(x_hat)), axis=bn_axes(x))  # float32 rounding of the sums
    for name in ("gamma", "beta"):
        assert np.all(np.abs(np.asarray(grads[name]) - ref_grads[name]) <= bound), name
    state = bn.init_state(shape[1:])
    new = bn.update_state(params, state, jnp.asarray(x))
    m = bn.momentum
    np.testing.assert_allclose(new["mean"], m * np.asarray(state["mean"]) + (1 - m) * x64.mean(axis=bn_axes(x)),
                               rtol=1e-6)
    want_var = m * np.asarray(state["var"]) + (1 - m) * x64.var(axis=bn_axes(x))
    np.testing.assert_allclose(new["var"], want_var, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 2, 2)])
def test_batchnorm_hand_backward_is_jax_grad_at_large_means_float64(shape, x64):
    x = jnp.asarray(_large_mean_batch(shape, 1e6, np.random.default_rng(0)), jnp.float64)
    for train in (True, False):
        state = {"mean": jnp.full((3,), 1e6), "var": jnp.array([0.01, 1e-4, 1.0])}
        assert jaxnet.check_layer(BatchNorm(), x, train=train, state=state).passed


# ------------------------------------------------------------------ Dropout


def test_dropout_reference_rate_0_2():
    drop, key = Dropout(0.2), jax.random.key(0)
    x = jnp.ones(100_000)
    y = np.asarray(drop.apply({}, x, key=key, train=True))
    assert set(np.unique(y)) == {0.0, 1.25}
    assert abs(y.mean() - 1.0) < 0.0047  # 3 standard deviations: 1.25 sqrt(0.2 * 0.8 / 1e5) = 0.0016
    assert abs((y == 0).mean() - 0.2) < 0.004
    assert drop.apply({}, x) is x  # evaluation returns x itself
    dout = jax.random.normal(jax.random.key(1), x.shape)
    _, dx = drop.backward({}, x, y, dout, key=key, train=True)
    np.testing.assert_array_equal(dx, np.asarray(dout) * (y != 0) * 1.25)
    _, dx_eval = drop.backward({}, x, x, dout)
    np.testing.assert_array_equal(dx_eval, dout)
    other = np.asarray(drop.apply({}, x, key=jax.random.key(2), train=True))
    assert (other != y).mean() > 0.2  # another key draws another mask


def test_dropout_book_variant():
    drop, key = Dropout(0.2, book=True), jax.random.key(0)
    x = jnp.full(10_000, 3.0)
    y = np.asarray(drop.apply({}, x, key=key, train=True))
    assert set(np.unique(y)) == {0.0, 3.0}  # no scaling in training
    np.testing.assert_allclose(drop.apply({}, x), 0.8 * np.asarray(x), rtol=1e-7)  # evaluation scales by 1 - rate
    dout = jnp.ones_like(x)
    np.testing.assert_array_equal(drop.backward({}, x, y, dout, key=key, train=True)[1], (y != 0).astype(np.float32))
    np.testing.assert_allclose(drop.backward({}, x, y, dout)[1], 0.8 * np.ones(10_000), rtol=1e-7)


def test_dropout_keeps_the_dtype():
    x = jnp.ones((4, 3), jnp.bfloat16)
    assert Dropout(0.5).apply({}, x, key=jax.random.key(0), train=True).dtype == jnp.bfloat16


# ------------------------------------------------------------------ gradients of networks with BatchNorm and Dropout


def plain_network_loss(params, x, labels, state, key, train, rate, eps):
    """Dense -> BatchNorm -> relu -> Dropout -> Dense -> softmax cross-entropy, in plain jnp / jax.nn.
    The dropout mask follows the documented contract: layer i uses fold_in(key, i)."""
    z = x @ params[0]["W"] + params[0]["b"]
    if train:
        mu, var = jnp.mean(z, axis=0), jnp.var(z, axis=0)
    else:
        mu, var = state[1]["mean"], state[1]["var"]
    h = jax.nn.relu(params[1]["gamma"] * (z - mu) / jnp.sqrt(var + eps) + params[1]["beta"])
    if train:
        keep = jax.random.bernoulli(jax.random.fold_in(key, 3), 1 - rate, h.shape)
        h = jnp.where(keep, h / (1 - rate), 0.0)
    logits = h @ params[4]["W"] + params[4]["b"]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))


@pytest.mark.parametrize("train", [True, False])
def test_backprop_equals_jax_grad_of_plain_code_to_1e_10(train, x64):
    net = serial(Dense(6, dtype=jnp.float64), BatchNorm(dtype=jnp.float64), Relu, Dropout(0.3),
                 Dense(3, dtype=jnp.float64), input_shape=(4,))
    _, params = net.init(jax.random.key(0))
    params = (params[0], {"gamma": jnp.linspace(0.5, 1.5, 6), "beta": jnp.linspace(-0.2, 0.3, 6)}, *params[2:])
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(12, 4)))
    labels = jnp.asarray(rng.integers(0, 3, size=12))
    state = ({}, {"mean": jnp.asarray(rng.normal(size=6)), "var": jnp.asarray(rng.uniform(0.5, 2, 6))}, {}, {}, {})
    key = jax.random.key(7)
    loss, grads = jaxnet.backprop(net, params, x, labels, "softmax_cross_entropy", state=state, key=key, train=train)
    ref_loss, ref = jax.value_and_grad(plain_network_loss)(params, x, labels, state, key, train, 0.3, 1e-5)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-13)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(ref)):
        scale = float(np.max(np.abs(want)))
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * max(scale, 1e-3))
    assert float(jnp.max(jnp.abs(grads[1]["gamma"]))) > 1e-3  # the BatchNorm leaves are not trivially zero


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("make,error,match", [
    (lambda: Dropout(1.0), ValueError, r"^rate: expected the drop probability in \[0, 1\)"),
    (lambda: Dropout(-0.1), ValueError, r"^rate: "),
    (lambda: Dropout("0.5"), TypeError, r"^rate: "),
    (lambda: BatchNorm(momentum=1.0), ValueError, r"^momentum: "),
    (lambda: BatchNorm(eps=0.0), ValueError, r"^eps: "),
])
def test_bad_layer_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def small_net():
    net = serial(Dense(3), BatchNorm(), Relu, Dropout(0.5), Dense(1), input_shape=(2,))
    _, params = net.init(jax.random.key(0))
    return net, params, net.init_state(), jnp.ones((4, 2))


@pytest.mark.parametrize("call,match", [
    (lambda n, p, s, x: n.apply(p, x, state=s, train=True), r"^key: .*Dropout\(0.5\).*needs a PRNG key"),
    (lambda n, p, s, x: Dropout(0.5).apply({}, x, train=True), r"^key: Dropout\(0.5\)"),
    (lambda n, p, s, x: n.apply(p, x[:1], key=jax.random.key(0), train=True),
     r"^x: BatchNorm in training mode needs at least 2 values per channel"),
    (lambda n, p, s, x: n.apply(p, x, state=({},) * 5), r"^state"),
    (lambda n, p, s, x: n.apply(p, x, state=(s[0], {"mean": jnp.zeros(4), "var": jnp.ones(4)}, *s[2:])),
     r"^state\[1\]\['mean'\]: expected shape \(3,\)"),
    (lambda n, p, s, x: n.apply(p, x), r"^state: .*pass state="),
    (lambda n, p, s, x: n.apply(p, x, key=jax.random.split(jax.random.key(0), 3), train=True),
     r"^key: expected one PRNG key, got a batch of keys"),
])
def test_bad_calls_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call(*small_net())


def test_bad_shapes_are_caught_under_jit():
    net, params, state, x = small_net()
    with pytest.raises(ValueError, match=r"^x: BatchNorm in training mode needs at least 2"):
        jax.jit(lambda p, x: net.apply(p, x, key=jax.random.key(0), train=True))(params, x[:1])


# ------------------------------------------------------------------ layers and networks compare by value


def test_layers_and_networks_compare_and_hash_by_value():
    assert Dense(4) == Dense(4) and hash(Dense(4)) == hash(Dense(4))
    assert Dense(4) != Dense(5) and Dense(4) != Dense(4, W_init="xavier_normal")
    assert Dense(4, dtype="float32") == Dense(4, dtype=jnp.float32)
    assert BatchNorm() == BatchNorm(eps=1e-5) != BatchNorm(book=True)
    assert Dropout(0.5) == Dropout(0.5) != Dropout(0.5, book=True)
    assert mlp([2, 3, 1]) == mlp((2, 3, 1)) and hash(mlp([2, 3, 1])) == hash(mlp((2, 3, 1)))
    assert serial(Dense(3), Relu, input_shape=[2]) == serial(Dense(3), Relu, input_shape=(2,))
    assert serial(Dense(3), Relu) != serial(Dense(3), jaxnet.Tanh)


def test_an_equal_rebuilt_network_does_not_retrace():
    traces = []

    @functools.partial(jax.jit, static_argnums=0)
    def run(net, params, state, x, key):
        traces.append(net.name)
        return net.apply(params, x, state=state, key=key, train=True)

    def build(rate=0.5):
        return serial(Dense(3), BatchNorm(), Relu, Dropout(rate), Dense(1), input_shape=(2,))

    net = build()
    _, params = net.init(jax.random.key(0))
    x, key = jnp.ones((4, 2)), jax.random.key(1)
    run(net, params, net.init_state(), x, key)
    run(build(), params, build().init_state(), x, key)
    assert len(traces) == 1
    run(build(0.25), params, net.init_state(), x, key)
    assert len(traces) == 2

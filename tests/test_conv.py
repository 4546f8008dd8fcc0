"""Convolution and pooling: im2col/col2im, Conv2D, MaxPool2D, AvgPool2D, Flatten, simple_convnet.

Independent references: hand-computed values (the issue's), `lax.conv_general_dilated` and
`lax.reduce_window` for forward passes, `jax.vjp` of those for backward passes (float64, 1e-10
relative), finite differences through `jaxnet.gradcheck`, and the book's numpy code
(`jaxnet.reference_cnn`). Property tests draw few examples: every new shape compiles.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import MNIST_DIR
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from jax import lax

import jaxnet
from jaxnet import reference_cnn as book

RTOL, ATOL = 1e-10, 1e-12


def close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------------------------------- im2col


def test_im2col_col2im_reference_values():
    x = jnp.arange(9.0).reshape(1, 1, 3, 3)
    cols = jaxnet.im2col(x, 2, 2)
    np.testing.assert_array_equal(cols, [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]])
    np.testing.assert_array_equal(jaxnet.col2im(cols, x.shape, 2, 2)[0, 0], [[0, 2, 2], [6, 16, 10], [6, 14, 8]])
    assert jaxnet.conv_output_size(5, 3, 2, 1) == 3
    assert jaxnet.conv_output_size(28, 5, 1, 0) == 24


def test_conv_output_size_errors():
    with pytest.raises(ValueError, match=r"^stride: .*not an integer"):
        jaxnet.conv_output_size(28, 5, 2)  # 23 / 2
    with pytest.raises(ValueError, match=r"^filter_size: .*larger than the padded input"):
        jaxnet.conv_output_size(3, 5)
    with pytest.raises(ValueError, match=r"^padding: "):
        jaxnet.conv_output_size(5, 3, 1, -1)
    with pytest.raises(TypeError, match=r"^input_size: "):
        jaxnet.conv_output_size(5.0, 3)
    with pytest.raises(ValueError, match=r"^x: expected images \(N, C, H, W\)"):
        jaxnet.im2col(jnp.zeros((3, 3)), 2, 2)
    with pytest.raises(ValueError, match=r"^cols: expected shape \(4, 4\)"):
        jaxnet.col2im(jnp.zeros((4, 5)), (1, 1, 3, 3), 2, 2)


@st.composite
def window(draw, max_channels=3):
    """(N, C, H, W), filter (FH, FW), stride, padding that fit exactly."""
    fh, fw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride, padding = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    oh, ow = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = (oh - 1) * stride + fh - 2 * padding, (ow - 1) * stride + fw - 2 * padding
    assume(h >= 1 and w >= 1)
    return (draw(st.integers(1, 2)), draw(st.integers(1, max_channels)), h, w), (fh, fw), stride, padding


OVERLAPPING = ((2, 2, 5, 4), (3, 2), 1, 1)  # stride < filter: pixels shared by several patches


@settings(max_examples=5)
@given(window(), st.integers(0, 2**16))
@example(OVERLAPPING, 7)
def test_col2im_is_the_vjp_of_im2col(case, seed):
    shape, (fh, fw), stride, padding = case

    @jax.jit
    def both(x, dcols):  # one compilation per example (eager ops would compile one by one)
        cols, vjp = jax.vjp(lambda v: jaxnet.im2col(v, fh, fw, stride, padding), x)
        return cols, jaxnet.col2im(dcols, shape, fh, fw, stride, padding), vjp(dcols)[0]

    with jax.enable_x64(True):
        kx, kc = jax.random.split(jax.random.key(seed))
        x = jax.random.normal(kx, shape, jnp.float64)
        oh = jaxnet.conv_output_size(shape[2], fh, stride, padding)
        ow = jaxnet.conv_output_size(shape[3], fw, stride, padding)
        dcols = jax.random.normal(kc, (shape[0] * oh * ow, shape[1] * fh * fw), jnp.float64)
        cols, hand, ref = both(x, dcols)
        close(hand, ref)
        close(cols, book.im2col(np.asarray(x), fh, fw, stride, padding))


def test_im2col_under_jit_vmap_and_grad():
    x = jax.random.normal(jax.random.key(0), (2, 2, 5, 5))
    f = jax.jit(jaxnet.im2col, static_argnums=(1, 2, 3, 4))
    np.testing.assert_allclose(f(x, 3, 3, 2, 1), jaxnet.im2col(x, 3, 3, 2, 1))
    batched = jax.vmap(lambda v: jaxnet.im2col(v, 3, 3))(x[:, None])  # vmap over one-image batches
    np.testing.assert_allclose(batched.reshape(-1, 18), jaxnet.im2col(x, 3, 3))
    g = jax.grad(lambda v: jnp.sum(jaxnet.im2col(v, 2, 2) ** 2))(x)
    np.testing.assert_allclose(g, 2 * x * jaxnet.col2im(jnp.ones((2 * 16, 8)), x.shape, 2, 2), rtol=1e-6)


# ---------------------------------------------------------------------------------------------- Conv2D


def lax_conv(x, W, b, stride, padding):
    y = lax.conv_general_dilated(x, W, (stride, stride), [(padding, padding)] * 2,
                                 dimension_numbers=("NCHW", "OIHW", "NCHW"), precision=lax.Precision.HIGHEST)
    return y + b[None, :, None, None]


@settings(max_examples=5)
@given(window(), st.integers(1, 3), st.integers(0, 2**16))
@example(OVERLAPPING, 3, 7)
def test_conv2d_forward_and_backward_match_lax_conv(case, filters, seed):
    shape, kernel, stride, padding = case
    layer = jaxnet.Conv2D(filters, kernel, stride, padding, dtype=jnp.float64)

    @jax.jit
    def hand(params, x, dy):
        y = layer.apply(params, x)
        return y, layer.backward(params, x, y, dy)

    @jax.jit  # compiled apart: XLA 0.10.2's algebraic simplifier aborts on some shapes when both are fused
    def reference(params, x, dy):
        ref, vjp = jax.vjp(lambda W, b, v: lax_conv(v, W, b, stride, padding), params["W"], params["b"], x)
        return ref, vjp(dy)

    with jax.enable_x64(True):
        kp, kx, kb, ky = jax.random.split(jax.random.key(seed), 4)
        out_shape, params = layer.init(kp, shape[1:])
        params["b"] = jax.random.normal(kb, params["b"].shape, jnp.float64)
        x = jax.random.normal(kx, shape, jnp.float64)
        dy = jax.random.normal(ky, (shape[0], *out_shape), jnp.float64)
        y, (grads, dx) = hand(params, x, dy)
        ref, (dW, db, dx_ref) = reference(params, x, dy)
        close(y, ref)
        close(grads["W"], dW)
        close(grads["b"], db)
        close(dx, dx_ref)


def test_conv2d_init_fans_and_errors():
    layer = jaxnet.Conv2D(30, 5)
    out_shape, params = layer.init(jax.random.key(0), (3, 28, 28))
    assert out_shape == (30, 24, 24) and params["W"].shape == (30, 3, 5, 5) and params["b"].shape == (30,)
    assert params["W"].dtype == jnp.float32
    big = jaxnet.Conv2D(64, 5).init(jax.random.key(1), (16, 28, 28))[1]["W"]
    assert float(jnp.std(big)) == pytest.approx(np.sqrt(2 / (16 * 25)), rel=0.05)  # He: fan_in = C FH FW
    assert layer == jaxnet.Conv2D(30, (5, 5)) and hash(layer) == hash(jaxnet.Conv2D(30, 5, 1, 0))
    with pytest.raises(ValueError, match=r"^filters: "):
        jaxnet.Conv2D(0, 3)
    with pytest.raises(ValueError, match=r"^kernel_size: "):
        jaxnet.Conv2D(4, (3, 3, 3))
    with pytest.raises(ValueError, match=r"^input_shape: .*expected channels-first images \(C, H, W\)"):
        layer.init(jax.random.key(0), (28, 28))
    with pytest.raises(ValueError, match=r"^input_shape: .*looks channels-last.*transpose\(0, 3, 1, 2\)"):
        layer.init(jax.random.key(0), (28, 28, 1))
    with pytest.raises(ValueError, match=r"^input_shape: .*stride"):
        jaxnet.Conv2D(4, 5, stride=2).init(jax.random.key(0), (1, 28, 28))


# ---------------------------------------------------------------------------------------------- pooling


def test_maxpool_ties_go_to_the_first_maximum():
    x = jnp.array([[1.0, 3, 2], [4, 4, 1], [0, 2, 5]])[None, None]
    pool = jaxnet.MaxPool2D(2, stride=1)
    y = pool.apply({}, x)
    np.testing.assert_array_equal(y[0, 0], [[4, 4], [4, 5]])
    _, dx = pool.backward({}, x, y, jnp.ones_like(y))
    np.testing.assert_array_equal(dx[0, 0], [[0, 0, 0], [2, 1, 0], [0, 0, 1]])
    # the independent reference: jax.grad of lax.reduce_window(max) also picks the first maximum
    ref = jax.grad(lambda v: jnp.sum(lax.reduce_window(v, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 1, 1), "VALID")))(x)
    np.testing.assert_array_equal(dx, ref)
    # ... while jnp.max's gradient splits a tie: not a valid reference for this rule
    split = jax.grad(lambda v: jnp.max(v))(jnp.array([4.0, 4.0]))
    np.testing.assert_array_equal(split, [0.5, 0.5])


@st.composite
def pooling(draw):
    ph, pw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    oh, ow = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), (oh - 1) * stride + ph, (ow - 1) * stride + pw)
    return shape, (ph, pw), stride


@settings(max_examples=5)
@given(pooling(), st.integers(0, 2**16))
def test_pooling_matches_reduce_window_with_ties(case, seed):
    shape, (ph, pw), stride = case
    dims, strides = (1, 1, ph, pw), (1, 1, stride, stride)
    reductions = {
        jaxnet.MaxPool2D((ph, pw), stride): lambda v: lax.reduce_window(v, -jnp.inf, lax.max, dims, strides, "VALID"),
        jaxnet.AvgPool2D((ph, pw), stride):
            lambda v: lax.reduce_window(v, 0.0, lax.add, dims, strides, "VALID") / (ph * pw),
    }

    @jax.jit
    def hand_and_reference(x, dy):
        out = []
        for layer, reference in reductions.items():
            y = layer.apply({}, x)
            ref, vjp = jax.vjp(reference, x)
            out.append(((y, layer.backward({}, x, y, dy)[1]), (ref, vjp(dy)[0])))
        return out

    with jax.enable_x64(True):
        kx, ky = jax.random.split(jax.random.key(seed))
        x = jax.random.randint(kx, shape, 0, 3).astype(jnp.float64)  # values in {0, 1, 2}: many ties
        out_shape = jaxnet.MaxPool2D((ph, pw), stride).init(None, shape[1:])[0]
        dy = jax.random.normal(ky, (shape[0], *out_shape), jnp.float64)
        for (y, dx), (ref, dx_ref) in hand_and_reference(x, dy):
            close(y, ref)
            close(dx, dx_ref)
        # the book's numpy Pooling (np.argmax) routes ties the same way
        numpy_pool = book.Pooling(ph, pw, stride)
        numpy_pool.forward(np.asarray(x))
        close(hand_and_reference(x, dy)[0][0][1], numpy_pool.backward(np.asarray(dy)))


@st.composite
def padded_pooling(draw):
    ph, pw = draw(st.integers(2, 4)), draw(st.integers(2, 4))
    padding = draw(st.integers(1, min(ph, pw) // 2))
    stride = draw(st.integers(1, 3))
    oh, ow = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = (oh - 1) * stride + ph - 2 * padding, (ow - 1) * stride + pw - 2 * padding
    assume(h >= 1 and w >= 1)
    return (draw(st.integers(1, 2)), draw(st.integers(1, 2)), h, w), (ph, pw), stride, padding


@settings(max_examples=4)
@given(padded_pooling(), st.integers(0, 2**16))
@example((((1, 1, 3, 3), (2, 2), 1, 1)), 0)
def test_padded_pooling_matches_reduce_window(case, seed):
    # Reference: lax.reduce_window with the same padding (max: init -inf, so the padding never wins;
    # average: the sum over the padded window divided by ph pw, zeros counted, as PyTorch's default
    # count_include_pad=True) and jax.vjp of it; negative values with ties, so that zero padding
    # would change a border maximum and the tie rule (R6: the first maximum) is exercised.
    shape, (ph, pw), stride, padding = case
    dims, strides = (1, 1, ph, pw), (1, 1, stride, stride)
    pads = ((0, 0), (0, 0), (padding, padding), (padding, padding))
    reductions = {
        jaxnet.MaxPool2D((ph, pw), stride, padding):
            lambda v: lax.reduce_window(v, -jnp.inf, lax.max, dims, strides, pads),
        jaxnet.AvgPool2D((ph, pw), stride, padding): lambda v: lax.reduce_window(v, 0.0, lax.add, dims, strides, pads)
        / (ph * pw),
    }
    with jax.enable_x64(True):
        kx, ky = jax.random.split(jax.random.key(seed))
        x = jax.random.randint(kx, shape, -3, 0).astype(jnp.float64)  # values in {-3, -2, -1}: ties, all negative
        for layer, reference in reductions.items():
            out_shape = layer.init(None, shape[1:])[0]
            dy = jax.random.normal(ky, (shape[0], *out_shape), jnp.float64)
            y = layer.apply({}, x)
            ref, vjp = jax.vjp(reference, x)
            close(y, ref)
            close(layer.backward({}, x, y, dy)[1], vjp(dy)[0])
            # jax.vjp of apply itself (jnp.max splits a tie, so on values without ties)
            assert jaxnet.check_layer(layer, -jnp.abs(jax.random.normal(kx, shape, jnp.float64))).passed


def test_padded_max_pool_ties_go_to_the_first_maximum():
    # R6 with padding: the 3 x 3 example, a 2 x 2 pool, stride 1, padding 1 (a 4 x 4 output)
    x = jnp.array([[1.0, 3, 2], [4, 4, 1], [0, 2, 5]])[None, None]
    pool = jaxnet.MaxPool2D(2, stride=1, padding=1)
    y = pool.apply({}, x)
    np.testing.assert_array_equal(y[0, 0], [[1, 3, 3, 2], [4, 4, 4, 2], [4, 4, 5, 5], [0, 2, 5, 5]])
    _, dx = pool.backward({}, x, y, jnp.ones_like(y))
    # by hand: each window's dy to its first maximum in row-major order
    np.testing.assert_array_equal(dx[0, 0], [[1, 2, 2], [4, 1, 0], [1, 1, 4]])
    ref = jax.grad(lambda v: jnp.sum(lax.reduce_window(v, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 1, 1),
                                                       ((0, 0), (0, 0), (1, 1), (1, 1)))))(x)
    np.testing.assert_array_equal(dx, ref)
    # average pooling counts the zeros: the corner window holds x[0, 0] = 1 and three zeros
    assert float(jaxnet.AvgPool2D(2, stride=1, padding=1).apply({}, x)[0, 0, 0, 0]) == 0.25


def test_pooling_padding_errors_and_shapes():
    assert jaxnet.MaxPool2D(2, padding=1).init(None, (3, 4, 4))[0] == (3, 3, 3)
    assert jaxnet.AvgPool2D(3, stride=1, padding=1).init(None, (3, 5, 5))[0] == (3, 5, 5)  # "same" pooling
    assert jaxnet.MaxPool2D(2) == jaxnet.MaxPool2D(2, padding=0) != jaxnet.MaxPool2D(2, padding=1)
    assert jaxnet.MaxPool2D(2, padding=1).name == "MaxPool2D(2x2, stride=2, padding=1)"
    with pytest.raises(ValueError, match=r"^padding: .*up to half the pool size, 1.*got 2"):
        jaxnet.MaxPool2D(2, padding=2)
    with pytest.raises(ValueError, match=r"^padding: expected an int >= 0"):
        jaxnet.AvgPool2D(2, padding=-1)
    with pytest.raises(TypeError, match=r"^padding: "):
        jaxnet.MaxPool2D(2, padding=0.5)
    with pytest.raises(ValueError, match=r"^input_shape: .*stride"):
        jaxnet.MaxPool2D(2, padding=1).init(None, (3, 5, 5))


def test_pooling_and_flatten_errors_and_shapes():
    assert jaxnet.MaxPool2D(2).init(None, (30, 24, 24))[0] == (30, 12, 12)
    assert jaxnet.MaxPool2D(2) == jaxnet.MaxPool2D((2, 2), stride=2) and jaxnet.MaxPool2D(2) != jaxnet.AvgPool2D(2)
    with pytest.raises(ValueError, match=r"^stride: .*non-square"):
        jaxnet.MaxPool2D((2, 3))
    with pytest.raises(ValueError, match=r"^input_shape: .*stride"):
        jaxnet.MaxPool2D(2).init(None, (3, 5, 5))
    flat = jaxnet.Flatten()
    assert flat.init(None, (30, 12, 12))[0] == (4320,)
    x = jnp.arange(24.0).reshape(2, 3, 2, 2)
    np.testing.assert_array_equal(flat.apply({}, x), np.arange(24.0).reshape(2, 12))
    dy = jnp.arange(24.0).reshape(2, 12) * 2
    np.testing.assert_array_equal(flat.backward({}, x, None, dy)[1], np.arange(24.0).reshape(2, 3, 2, 2) * 2)


# ---------------------------------------------------------------------------------------------- networks


def test_batchnorm_after_conv_normalises_per_channel_and_backprop_is_jax_grad(x64):
    net = jaxnet.serial(jaxnet.Conv2D(3, 3, padding=1, dtype=jnp.float64), jaxnet.BatchNorm(dtype=jnp.float64),
                    jaxnet.Relu,
                    jaxnet.Flatten(), jaxnet.Dense(4, dtype=jnp.float64), input_shape=(2, 5, 5))
    _, params = net.init(jax.random.key(0))
    state = net.init_state()
    x = jax.random.normal(jax.random.key(1), (6, 2, 5, 5), jnp.float64)
    y = jnp.arange(6) % 4
    conv_out, normalised = net.forward(params, x, state=state, train=True)[1:3]
    np.testing.assert_allclose(normalised.mean(axis=(0, 2, 3)), 0, atol=1e-12)  # one mean per channel
    np.testing.assert_allclose(normalised.var(axis=(0, 2, 3)), conv_out.var(axis=(0, 2, 3)) /
                               (conv_out.var(axis=(0, 2, 3)) + 1e-5), rtol=1e-10)
    routes = jax.jit(lambda p, x, y, train: (jaxnet.backprop(net, p, x, y, "softmax_cross_entropy", state=state,
                                                            train=train),
                                             jaxnet.autodiff(net, p, x, y, "softmax_cross_entropy", state=state,
                                                             train=train)), static_argnums=3)
    for train in (True, False):
        (loss_hand, hand), (loss_auto, auto) = routes(params, x, y, train)
        close(loss_hand, loss_auto)
        jax.tree.map(close, hand, auto)


def test_simple_convnet_gradcheck_the_books_check():
    """The book's gradient check (ch07 gradient_check.py): SimpleConvNet on one random 1 x 10 x 10
    image, 10 filters 3 x 3, hidden 10; backprop vs numerical gradient, all differences below 3e-6."""
    net = jaxnet.simple_convnet((1, 10, 10), filters=10, kernel_size=3, hidden=10, classes=10)
    _, params = net.init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (1, 1, 10, 10))
    y = jnp.array([3])
    report = jaxnet.gradcheck(net, params, x, y, "softmax_cross_entropy")
    assert report.passed, str(report)
    assert sum(leaf.fd_checked for leaf in report.leaves) == sum(p.size for p in jax.tree.leaves(params))
    assert max(max(leaf.route.max_abs, leaf.fd.max_abs) for leaf in report.leaves) < 3e-6


def test_simple_convnet_gradients_equal_the_books_numpy_network(x64):
    ref = book.SimpleConvNet((1, 12, 12), filter_num=4, filter_size=3, hidden_size=8, output_size=5,
                             weight_init_std=0.3, rng=np.random.default_rng(0))
    net = jaxnet.simple_convnet((1, 12, 12), filters=4, kernel_size=3, hidden=8, classes=5, dtype=jnp.float64)
    p = {k: jnp.asarray(v) for k, v in ref.params.items()}
    params = ({"W": p["W1"], "b": p["b1"]}, {}, {}, {}, {"W": p["W2"], "b": p["b2"]}, {}, {"W": p["W3"], "b": p["b3"]})
    rng = np.random.default_rng(1)
    x, t = rng.standard_normal((7, 1, 12, 12)), rng.integers(0, 5, 7)
    loss, grads = jaxnet.backprop(net, params, jnp.asarray(x), jnp.asarray(t), "softmax_cross_entropy")
    book_grads = ref.gradient(x, t)
    assert float(loss) == pytest.approx(ref.loss(x, t), abs=1e-5)  # the book adds 1e-7 inside its log (~1e-7 / p)
    for i, name in ((0, "1"), (4, "2"), (6, "3")):
        close(grads[i]["W"], book_grads["W" + name])
        close(grads[i]["b"], book_grads["b" + name])


def test_simple_convnet_shapes_and_layout_errors():
    net = jaxnet.simple_convnet()
    out_shape, params = net.init(jax.random.key(0))
    assert out_shape == (10,)
    assert [jax.tree.map(jnp.shape, p) for p in params if p] == [
        {"W": (30, 1, 5, 5), "b": (30,)}, {"W": (4320, 100), "b": (100,)}, {"W": (100, 10), "b": (10,)}]
    x = jnp.zeros((3, 1, 28, 28))
    assert net.apply(params, x).shape == (3, 10)
    apply = jax.jit(net.apply)
    for f in (net.apply, apply):
        with pytest.raises(ValueError, match=r"^x: expected shape \(n, 1, 28, 28\).*channels-last.*"
                                             r"\(n, C, H, W\) with x\.transpose\(0, 3, 1, 2\)"):
            f(params, jnp.zeros((3, 28, 28, 1)))
        with pytest.raises(ValueError, match=r"^x: .*x\.reshape\(-1, 1, 28, 28\)"):
            f(params, jnp.zeros((3, 784)))
    with pytest.raises(ValueError, match=r"^x: .*transpose\(0, 3, 1, 2\)"):
        jaxnet.fit(net, params, jnp.zeros((4, 28, 28, 1)), jnp.zeros(4, jnp.int32), loss="softmax_cross_entropy",
                   optimizer=jaxnet.optim.sgd(0.1), epochs=1)
    conv = net.layers[0]
    with pytest.raises(ValueError, match=r"^x: Conv2D.*\(N, 1, H, W\).*transpose\(0, 3, 1, 2\)"):
        conv.apply(params[0], jnp.zeros((2, 28, 28, 1)))
    with pytest.raises(ValueError, match=r"^x: Conv2D.*reshape\(-1, 1, 28, 28\)"):
        conv.apply(params[0], jnp.zeros((2, 784)))
    with pytest.raises(ValueError, match=r"^x: Conv2D.*x\[None\]"):
        conv.apply(params[0], jnp.zeros((1, 28, 28)))


def test_conv_layers_under_vmap_and_jit():
    net = jaxnet.simple_convnet((1, 8, 8), filters=2, kernel_size=3, hidden=4, classes=3)
    _, params = net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (3, 2, 1, 8, 8))  # 3 lanes of batches of 2
    lanes = jax.vmap(lambda xb: net.apply(params, xb))(x)
    np.testing.assert_allclose(lanes, jax.jit(net.apply)(params, x.reshape(6, 1, 8, 8)).reshape(3, 2, 3),
                               rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- experiment


@jax.numpy_dtype_promotion("standard")  # the lax.conv contender uses optax.adam, whose bias correction
def test_w5_contenders_train_the_same_epoch():  # mixes an int32 count with floats (rejected by strict mode)
    """One epoch from the same params: jaxnet's im2col layers with hand backward inside `fit` and the
    lax.conv network with jax.grad see the same batches and give the same mean loss; the book's numpy
    loop (random batches with replacement) starts from the same params."""
    from experiments import cnn_w5

    x, y = cnn_w5.mnist_shaped(200)
    runs = cnn_w5.w5_contenders(x, y, batch_size=100)
    losses = {name: run() for name, run in runs.items()}
    assert losses["jaxnet im2col"] == pytest.approx(losses["lax.conv + jax.grad"], rel=1e-5)
    assert losses["numpy (book)"] == pytest.approx(losses["lax.conv + jax.grad"], rel=0.1)


@pytest.mark.skipif(not (MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file(), reason="no MNIST t10k files")
def test_cnn_experiment_quick(tmp_path):
    import json

    from experiments import cnn

    summary = cnn.main(["--quick", "--data-dir", str(MNIST_DIR), "--out", str(tmp_path)])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_train"] == metrics["n_test"] == 500 and metrics["epochs"] == 1
    assert summary["acc"] == metrics["test_accuracy"] > 0.3  # one epoch of 5 steps already beats chance (0.1)
    names = {p.name for p in tmp_path.glob("*.png")}
    assert names == {"filters.png", "feature_maps.png", "curves.png", "confusion.png", "misclassified.png"}


@pytest.mark.skipif(not (MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file(), reason="no MNIST t10k files")
def test_cnn_default_split_is_the_t10k_split_even_with_training_files():
    from experiments import cnn

    t10k = jaxnet.data.load_mnist(MNIST_DIR, t10k_split=(8000, 2000))
    raw_x = jnp.asarray(jaxnet.data.load_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz"), jnp.float32) / 255.0
    raw_y = jaxnet.data.load_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz").astype(np.int32)
    # as if the training files were there too (3 stand-in images): without --full, the t10k split all the same
    both = jaxnet.data.MNIST(np.zeros((3, 28, 28), np.float32), np.zeros(3, np.int32), raw_x, raw_y, "train+t10k")
    x_tr, y_tr, x_te, y_te, source = cnn.split(both, full=False, quick=False)
    assert source == "t10k split 8000/2000" and x_tr.shape == (8000, 1, 28, 28)
    np.testing.assert_array_equal(x_tr[:, 0], t10k.x_train)
    np.testing.assert_array_equal(y_te, t10k.y_test)
    assert cnn.split(both, full=True, quick=False)[0].shape == (3, 1, 28, 28)  # --full: the training files

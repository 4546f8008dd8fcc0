"""The book's DeepConvNet (`jaxnet.deep_convnet`): its architecture against the book's numpy network
(`jaxnet.reference_cnn.DeepConvNet`, which imports nothing from jaxnet), He initialisation, the dropout
options, every layer's backward against `jax.vjp` (`check_layer`) and the whole network's gradient
against `jax.grad` and finite differences (`gradcheck`, float64, sampled coordinates)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet
from jaxnet import reference_cnn as book


def _weighted(params):
    return [p for p in params if p]


def test_architecture_is_the_books():
    """Layer by layer the book's ch08 network: the same parameter shapes as the numpy transcription,
    in the same order (W1, b1, ..., W8, b8), and the book's shapes between layers."""
    net = jaxnet.deep_convnet()
    out_shape, params = net.init(jax.random.key(0))
    ref = book.DeepConvNet(rng=np.random.default_rng(0))
    shapes = [(p["W"].shape, p["b"].shape) for p in _weighted(params)]
    assert shapes == [(ref.params[f"W{i}"].shape, ref.params[f"b{i}"].shape) for i in range(1, 9)]
    assert out_shape == (10,) and sum(p.size for p in jax.tree.leaves(params)) == 123_552
    outputs = jax.eval_shape(lambda: net.forward(params, jnp.zeros((2, 1, 28, 28))))
    pools = [o.shape[1:] for layer, o in zip(net.layers, outputs[1:]) if isinstance(layer, jaxnet.MaxPool2D)]
    assert pools == [(16, 14, 14), (32, 8, 8), (64, 4, 4)]  # the fourth conv's padding 2: 14 -> 16 -> 8
    dropouts = [layer for layer in net.layers if isinstance(layer, jaxnet.Dropout)]
    assert dropouts == [jaxnet.Dropout(0.5, book=True)] * 2 and isinstance(net.layers[-1], jaxnet.Dropout)


def test_he_initialisation_std_is_sqrt_2_over_fan_in():
    """The book's `sqrt(2 / pre_node_num) * randn`, pre_node_num = C * 3 * 3 for a convolution and n_in
    for an affine layer; biases zero. Checked on the three largest weights (36,864, 51,200 and 18,432
    draws: the sample std is within 2% of the true one with overwhelming probability)."""
    _, params = jaxnet.deep_convnet().init(jax.random.key(3))
    weighted = _weighted(params)
    for i, fan_in in ((4, 32 * 9), (5, 64 * 9), (6, 1024)):
        W = np.asarray(weighted[i]["W"])
        assert np.std(W) == pytest.approx(np.sqrt(2.0 / fan_in), rel=0.02), i
        assert abs(np.mean(W)) < 0.05 * np.sqrt(2.0 / fan_in)
    assert all(np.all(np.asarray(p["b"]) == 0) for p in weighted)


def test_dropout_options():
    """Evaluation mode, hand-derived: the book's network multiplies the hidden layer and the logits by
    1 - rate; inverted dropout and no dropout leave them alone; no dropout on the logits removes the
    last scaling only."""
    x = jax.random.uniform(jax.random.key(1), (2, 1, 28, 28))
    book_net = jaxnet.deep_convnet()
    apply = jax.jit(lambda net, p: net.apply(p, x), static_argnums=0)
    _, params = book_net.init(jax.random.key(0))
    none = jaxnet.deep_convnet(dropout=0)
    assert not any(isinstance(layer, jaxnet.Dropout) for layer in none.layers) and len(none.layers) == 19
    drop_params = params[:18] + params[19:20]  # without the two Dropout layers' (empty) params
    halved = drop_params[:-1] + ({"W": 0.5 * params[19]["W"], "b": params[19]["b"]},)
    np.testing.assert_allclose(apply(book_net, params), 0.5 * apply(none, halved), rtol=1e-5, atol=1e-6)
    inverted = jaxnet.deep_convnet(book_dropout=False)
    assert [layer for layer in inverted.layers if isinstance(layer, jaxnet.Dropout)] == [jaxnet.Dropout(0.5)] * 2
    np.testing.assert_allclose(apply(inverted, params), apply(none, drop_params), rtol=1e-6)
    no_logits = jaxnet.deep_convnet(dropout_logits=False)
    assert isinstance(no_logits.layers[-1], jaxnet.Dense) and len(no_logits.layers) == 20
    np.testing.assert_allclose(apply(no_logits, params[:20]), apply(none, halved), rtol=1e-5, atol=1e-6)
    # training mode: the book's mask without rescaling, drawn from the key (same key, same mask)
    k = jax.random.key(7)
    y1, y2 = (jax.jit(book_net.apply, static_argnames="train")(params, x, key=k, train=True) for _ in range(2))
    np.testing.assert_array_equal(y1, y2)
    assert 0.2 < float(jnp.mean(y1 == 0)) < 0.8  # about half the logits dropped


@dataclasses.dataclass(frozen=True)
class Compiled(jaxnet.Layer):
    """`layer` with its `apply` and `backward` compiled by `jax.jit` (check_layer calls them eagerly,
    and eager im2col runs op by op, each op compiled on its own: seconds per convolution)."""

    layer: jaxnet.Layer

    @property
    def name(self):
        return self.layer.name

    @property
    def is_random(self):
        return self.layer.is_random

    def init(self, key, input_shape):
        return self.layer.init(key, input_shape)

    def apply(self, params, x, *, state=None, key=None, train=False):
        return jax.jit(self.layer.apply, static_argnames="train")(params, x, state=state, key=key, train=train)

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        return jax.jit(self.layer.backward, static_argnames="train")(params, x, y, dy, state=state, key=key,
                                                                     train=train)


def test_every_layer_backward_equals_jax_vjp():
    """`check_layer` on each of the 21 layers, float64, at the input shape the layer has inside the
    network, on random normal inputs (no ties for the max-pools), in training mode (dropout masks from
    a key) and evaluation mode. (The layers' functions are jitted: the same functions, compiled.)"""
    net = jaxnet.deep_convnet(dtype=jnp.float64)
    with jax.enable_x64(True):
        _, params = net.init(jax.random.key(0))
        shapes = [o.shape for o in jax.eval_shape(lambda: net.forward(params, jnp.zeros((2, 1, 28, 28))))]
    for i, (layer, p) in enumerate(zip(net.layers, params)):
        x = jax.random.normal(jax.random.key(10 + i), (1, *shapes[i][1:]), jnp.float32)
        for train in (False, True) if layer.is_random else (False,):  # the others ignore the mode
            report = jaxnet.check_layer(Compiled(layer), x, params=p, key=jax.random.key(i), train=train)
            assert report.passed, f"layer {i}:\n{report}"


def test_whole_network_gradcheck_float64():
    """The hand-derived delta recursion through all 21 layers against `jax.grad` (every coordinate,
    rtol 1e-10) and central finite differences (200 coordinates drawn uniformly from the 123,552,
    eps 1e-6), float64, on 2 MNIST-sized random images, in training mode with the book's dropout
    masks fixed by the key (evaluation mode differs only in the Dropout layers, checked above)."""
    net = jaxnet.deep_convnet()
    _, params = net.init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (2, 1, 28, 28))
    y = jnp.array([3, 7])
    report = jaxnet.gradcheck(net, params, x, y, "softmax_cross_entropy", key=jax.random.key(2), train=True,
                              max_fd_coords=200, fd_key=jax.random.key(3))
    assert report.passed, str(report)
    assert sum(leaf.fd_checked for leaf in report.leaves) == 200  # (drawn uniformly: mostly from the big weights)


def test_gradients_equal_the_books_numpy_network(x64, tmp_path):
    """jaxnet's backprop and the book's numpy DeepConvNet (its layers' backward passes) give the same
    gradients in float64 from the same params, in evaluation mode (the numpy Dropout's training masks
    come from numpy's generator, so its backward is compared with its evaluation scaling: the mask of
    an evaluation pass is the constant 1 - rate)."""
    ref = book.DeepConvNet(rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x, t = rng.random((2, 1, 28, 28)), rng.integers(0, 10, 2)
    ref.predict(x, train_flg=False)
    for layer in ref.layers:  # the backward of an evaluation-mode Dropout: multiply by 1 - rate
        if isinstance(layer, book.Dropout):
            layer.mask = np.full(1, 1.0 - layer.dropout_ratio)
    ref.last_layer.forward(ref.predict(x, train_flg=False), t)
    dout = ref.last_layer.backward(1)
    for layer in reversed(ref.layers):
        dout = layer.backward(dout)
    weighted = [layer for layer in ref.layers if isinstance(layer, (book.Convolution, book.Affine))]
    net = jaxnet.deep_convnet(dtype=jnp.float64)
    np.savez(tmp_path / "weights.npz", **ref.params)
    _, params = jaxnet.load_book_weights(net, tmp_path / "weights.npz", dtype=jnp.float64)
    loss, grads = jax.jit(jaxnet.backprop, static_argnums=(0, 4))(net, params, jnp.asarray(x), jnp.asarray(t),
                                                                  "softmax_cross_entropy")
    assert float(loss) == pytest.approx(ref.last_layer.loss, abs=1e-6)  # the book adds 1e-7 inside its log
    for g, layer in zip(_weighted(grads), weighted):
        np.testing.assert_allclose(g["W"], layer.dW, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(g["b"], layer.db, rtol=1e-9, atol=1e-12)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"^filters: expected the six"):
        jaxnet.deep_convnet(filters=(16, 32))
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"^dropout: expected the drop probability"):
            jaxnet.deep_convnet(dropout=bad)
    for bad in ("0.5", True):
        with pytest.raises(TypeError, match=r"^dropout: expected the drop probability"):
            jaxnet.deep_convnet(dropout=bad)
    with pytest.raises(ValueError, match=r"^filters\[2\]: expected a positive int"):
        jaxnet.deep_convnet(filters=(16, 16, 0, 32, 64, 64))
    with pytest.raises(ValueError, match=r"input_shape: Conv2D.*|input_shape: MaxPool2D.*"):
        jaxnet.deep_convnet((1, 30, 30)).init(jax.random.key(0))  # 30 -> 15: the second pooling cannot halve 17
    net = jaxnet.deep_convnet()
    _, params = net.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"^key: deep_convnet.*needs a PRNG key"):
        net.apply(params, jnp.zeros((1, 1, 28, 28)), train=True)


def test_under_jit_and_vmap():
    net = jaxnet.deep_convnet()
    _, params = net.init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (2, 2, 1, 28, 28))  # 2 lanes of 2 images
    lanes = jax.jit(jax.vmap(lambda xb: net.apply(params, xb)))(x)
    np.testing.assert_allclose(lanes, jax.jit(net.apply)(params, x.reshape(4, 1, 28, 28)).reshape(2, 2, 10),
                               rtol=1e-5, atol=1e-6)


def test_w6_lax_contender_is_the_same_network_with_the_same_dropout_masks():
    """The benchmark's W6 races jaxnet's DeepConvNet against a lax.conv + jax.grad one: in evaluation
    mode they are the same function, and in training mode, given the step key `fit` would pass, the
    lax network draws the masks jaxnet's Dropout layers draw, so one training step has the same loss
    (and a whole epoch the same losses: the bench prints them side by side)."""
    from experiments.bench import deep_cnn

    net = jaxnet.deep_convnet()
    _, params = net.init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (8, 1, 28, 28))
    y = jnp.arange(8) % 10
    np.testing.assert_allclose(jax.jit(deep_cnn.lax_logits)(params, x), jax.jit(net.apply)(params, x),
                               rtol=1e-4, atol=1e-5)
    step_key = jax.random.key(5)
    jaxnet_loss = jax.jit(lambda p, x, y, k: jaxnet.losses.get("softmax_cross_entropy").value(
        net.apply(p, x, key=k, train=True), y))(params, x, y, step_key)
    assert float(jax.jit(deep_cnn._lax_loss)(params, x, y, step_key)) == pytest.approx(float(jaxnet_loss), rel=1e-5)
    other = jax.jit(deep_cnn._lax_loss)(params, x, y, jax.random.key(6))
    assert float(other) != pytest.approx(float(jaxnet_loss), rel=1e-3)  # the masks do depend on the key

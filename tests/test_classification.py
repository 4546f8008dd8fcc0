"""Softmax classifiers: the fused softmax + cross-entropy gradient through networks, and the metrics.

References used here, independent of the code under test: `jax.grad` of a cross-entropy written in
this file with `jax.nn.log_softmax` of a forward pass written with `jax.nn` activations, central
finite differences (`jaxnet.gradcheck`), numpy, and
scikit-learn's `accuracy_score` and `confusion_matrix`; field cases N4 and N5
(../shared/cases/field-cases.md) with their published values.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from jaxnet import backprop, gradcheck, losses, metrics, mlp, serial
from jaxnet import Dense, Softmax

RTOL, ATOL = 1e-10, 1e-12  # hand-derived vs jax.grad, float64


def cross_entropy(logits, labels, n_classes):
    """Mean over rows of -sum_k t_k log softmax(z)_k, written here (t one-hot from integer labels)."""
    targets = jax.nn.one_hot(labels, n_classes, dtype=logits.dtype) if labels.ndim == 1 else labels
    return -jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1)) / logits.shape[0]


# Jitted once here (the network and the class count are static), so examples of equal shapes share a
# compiled program.
backprop_jit = jax.jit(backprop, static_argnums=(0, 4))


PLAIN = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "identity": lambda v: v}


def plain_apply(net, params, x):
    """The network's forward pass in plain jax (jax.nn activations, not jaxnet's, whose custom JVPs
    are jaxnet's hand derivatives and so no independent reference)."""
    for layer, p in zip(net.layers, params):
        x = x @ p["W"] + p["b"] if layer.name.startswith("Dense") else PLAIN[layer.name](x)
    return x


@functools.partial(jax.jit, static_argnums=(0, 4))
def reference_value_and_grad(net, params, x, y, n_classes):
    """jax.value_and_grad of this file's cross-entropy of the plain-jax network's logits."""
    return jax.value_and_grad(lambda p: cross_entropy(plain_apply(net, p, x), y, n_classes))(params)


def assert_close_tree(hand, auto):
    for (path, a), h in zip(jax.tree_util.tree_flatten_with_path(auto)[0], jax.tree.leaves(hand)):
        a, h = np.asarray(a), np.asarray(h)
        assert h.shape == a.shape and h.dtype == a.dtype, jax.tree_util.keystr(path)
        bound = ATOL + RTOL * np.abs(a)
        assert np.all(np.abs(h - a) <= bound), (
            f"{jax.tree_util.keystr(path)}: max |hand - jax.grad| = {np.max(np.abs(h - a)):.3g}")


# ------------------------------------------------------------------ gradients through networks


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@settings(max_examples=3, deadline=None)
@given(
    n_in=st.sampled_from([2, 5]),
    hidden=st.lists(st.sampled_from([1, 3, 6]), min_size=1, max_size=2),
    n_classes=st.sampled_from([2, 3, 5]),
    batch=st.sampled_from([1, 4, 7]),
    one_hot=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_softmax_network_backprop_equals_jax_grad_and_finite_differences(activation, n_in, hidden, n_classes,
                                                                         batch, one_hot, seed):
    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(batch, n_in)) * 2
        labels = rng.integers(0, n_classes, size=batch).astype(np.int32)
        y = np.eye(n_classes)[labels] if one_hot else labels
        net = mlp([n_in, *hidden, n_classes], activation=activation, output_activation="identity",
                  dtype=jnp.float64)
        _, params = net.init(jax.random.key(seed))
        loss, hand = backprop_jit(net, params, x, y, "softmax_cross_entropy")
        reference_loss, auto = reference_value_and_grad(net, params, x, y, n_classes)
        np.testing.assert_allclose(float(loss), float(reference_loss), rtol=1e-13)
        assert_close_tree(hand, auto)
        report = gradcheck(net, params, x, y, "softmax_cross_entropy")
        assert report.passed, str(report)


@settings(max_examples=10, deadline=None)
@given(
    shape=st.sampled_from([(1, 2), (3, 4), (6, 10)]),
    scale=st.sampled_from([1.0, 30.0, 1000.0]),
    one_hot=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fused_loss_gradient_equals_jax_grad(shape, scale, one_hot, seed):
    """`softmax_cross_entropy_derivative` = (softmax(z) - t) / batch against jax.grad, logits up to +-1000."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        logits = jnp.asarray(rng.uniform(-scale, scale, size=shape))
        labels = jnp.asarray(rng.integers(0, shape[1], size=shape[0]).astype(np.int32))
        y = jax.nn.one_hot(labels, shape[1], dtype=jnp.float64) if one_hot else labels
        hand = losses.softmax_cross_entropy_derivative(logits, y)
        auto = jax.grad(cross_entropy)(logits, labels, shape[1])
        assert np.all(np.isfinite(np.asarray(hand)))
        assert_close_tree(hand, auto)
        np.testing.assert_allclose(float(losses.softmax_cross_entropy(logits, y)),
                                   float(cross_entropy(logits, labels, shape[1])), rtol=1e-13)


@pytest.mark.parametrize("wrong", ["doubled", "summed over the batch"])
def test_gradcheck_flags_a_wrong_softmax_gradient(wrong):
    """The checks above can fail: a gradient twice too large, or missing the 1/batch factor, is caught."""
    net = mlp([3, 4, 3], activation="tanh", output_activation="identity")
    _, params = net.init(jax.random.key(0))
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 1, 0], np.int32)
    factor = 2.0 if wrong == "doubled" else 5.0

    def bad(net, params, x, y, loss, **kwargs):
        value, grads = backprop(net, params, x, y, loss, **kwargs)
        return value, jax.tree.map(lambda g: factor * g, grads)

    assert gradcheck(net, params, x, labels, "softmax_cross_entropy").passed
    assert not gradcheck(net, params, x, labels, "softmax_cross_entropy", grad=bad).passed


# ------------------------------------------------------------------ field cases N4 and N5


def identity_logits_net(dtype=jnp.float32):
    """Dense(3) with W = I and b = 0, then the identity: the logits are the inputs."""
    net = mlp([3, 3], activation="identity")
    params = ({"W": jnp.eye(3, dtype=dtype), "b": jnp.zeros(3, dtype)}, {})
    return net, params


@pytest.mark.parametrize("one_hot", [False, True])
@pytest.mark.parametrize("route", ["backprop", "autodiff"])
def test_n4_huge_logits_through_the_network(route, one_hot):
    net, params = identity_logits_net()
    x = jnp.array([[-431.0, 279.0, 427.0]])
    y = jnp.array([[1.0, 0.0, 0.0]]) if one_hot else jnp.array([0], jnp.int32)
    grad_fn = backprop if route == "backprop" else __import__("jaxnet").autodiff
    loss, grads = grad_fn(net, params, x, y, "softmax_cross_entropy")
    assert float(loss) == 858.0
    dlogits = np.array([-1.0, 0.0, 1.0])
    np.testing.assert_allclose(np.asarray(grads[0]["b"]), dlogits, atol=1e-7)  # db = dL/dlogits (batch 1)
    np.testing.assert_allclose(np.asarray(grads[0]["W"]), np.outer(np.asarray(x[0]), dlogits), atol=1e-4)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))


def test_n4_softmax_output_layer_saturates_without_nan():
    net = serial(Dense(3), Softmax)
    params = ({"W": jnp.eye(3), "b": jnp.zeros(3)}, {})
    x = jnp.array([[-1047.0, -981.0, 1891.0]])
    np.testing.assert_array_equal(np.asarray(net.apply(params, x)), [[0.0, 0.0, 1.0]])
    # The gradient of sum(softmax) is 0: by the hand-derived backward and by jax.grad.
    grads, dx = net.backward(params, x, None, jnp.ones((1, 3)))
    auto = jax.grad(lambda p: jnp.sum(net.apply(p, x)))(params)
    for g in (*jax.tree.leaves(grads), dx, *jax.tree.leaves(auto)):
        np.testing.assert_allclose(np.asarray(g), 0.0, atol=1e-6)


def test_n5_mean_over_rows_through_the_network():
    net, params = identity_logits_net()
    x = jnp.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    labels = jnp.array([2, 2], jnp.int32)
    softmax_rows = np.array([0.09003057, 0.24472848, 0.66524094])
    net_softmax = serial(Dense(3), Softmax)
    np.testing.assert_allclose(np.asarray(net_softmax.apply(params, x)), [softmax_rows] * 2, rtol=1e-6)
    loss, grads = backprop(net, params, x, labels, "softmax_cross_entropy")
    np.testing.assert_allclose(float(loss), 0.407606, rtol=1e-6)  # the mean; the sum would be 0.815212
    # dL/dlogits per row = (softmax - onehot) / 2; db sums the two rows: softmax - onehot.
    dlogits = softmax_rows - np.array([0.0, 0.0, 1.0])
    np.testing.assert_allclose(np.asarray(grads[0]["b"]), dlogits, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grads[0]["W"]), np.outer([1.0, 2.0, 3.0], dlogits), rtol=1e-6)
    # One row alone gives the same loss and gradient (a mean, not a sum).
    loss1, grads1 = backprop(net, params, x[:1], labels[:1], "softmax_cross_entropy")
    np.testing.assert_allclose(float(loss1), float(loss), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grads1[0]["b"]), np.asarray(grads[0]["b"]), rtol=1e-6)


# ------------------------------------------------------------------ accuracy


def test_accuracy_hand_computed_multiclass():
    logits = jnp.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [4.0, 4.5, 0.0]])
    labels = jnp.array([0, 1, 0, 1], jnp.int32)  # predicted 0, 1, 2, 1: three of four right
    assert float(metrics.accuracy(logits, labels)) == 0.75
    assert float(metrics.accuracy(logits, jax.nn.one_hot(labels, 3))) == 0.75
    assert float(metrics.accuracy(logits, labels, from_logits=True)) == 0.75  # no effect for several classes


def test_accuracy_hand_computed_binary_thresholds():
    probabilities = jnp.array([[0.2], [0.7], [0.5], [0.9]])
    targets = jnp.array([[0.0], [1.0], [1.0], [0.0]])  # predicted 0, 1, 0 (0.5 is not above 0.5), 1
    assert float(metrics.accuracy(probabilities, targets)) == 0.5
    logits = jnp.array([[-1.0], [0.3], [0.0], [2.0]])  # threshold 0: predicted 0, 1, 0, 1
    assert float(metrics.accuracy(logits, jnp.array([0, 1, 0, 1], jnp.int32), from_logits=True)) == 1.0
    assert float(metrics.accuracy(logits, jnp.array([0, 1, 0, 1], jnp.int32))) == 0.75  # threshold 0.5: 0, 0, 0, 1


@settings(max_examples=20, deadline=None)
@given(n=st.sampled_from([1, 9, 40]), n_classes=st.sampled_from([2, 3, 6]), seed=st.integers(0, 2**16))
def test_accuracy_and_confusion_matrix_match_sklearn(n, n_classes, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, n_classes)).astype(np.float32)
    labels = rng.integers(0, n_classes, size=n).astype(np.int32)
    predicted = logits.argmax(axis=1)
    acc = float(metrics.accuracy(jnp.asarray(logits), jnp.asarray(labels)))
    assert acc == pytest.approx(accuracy_score(labels, predicted), abs=1e-7)
    got = np.asarray(metrics.confusion_matrix(jnp.asarray(labels), jnp.asarray(predicted), n_classes))
    np.testing.assert_array_equal(got, sk_confusion_matrix(labels, predicted, labels=range(n_classes)))
    assert got.sum() == n and np.trace(got) / n == pytest.approx(acc, abs=1e-6)


# ------------------------------------------------------------------ confusion matrix


def test_confusion_matrix_hand_computed():
    true = jnp.array([0, 0, 1, 2, 2, 2])
    pred = jnp.array([0, 1, 1, 2, 0, 2])
    expected = [[1, 1, 0], [0, 1, 0], [1, 0, 2]]  # rows: true class, columns: predicted
    got = metrics.confusion_matrix(true, pred, 3)
    assert got.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(got), expected)
    # A class that never occurs has an empty row and column.
    np.testing.assert_array_equal(np.asarray(metrics.confusion_matrix(true, pred, 4)),
                                  [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]])


@pytest.mark.parametrize("true, pred, n_classes, error, match", [
    ([0, 1, 3], [0, 1, 1], 3, ValueError, "y_true_classes"),  # would land in another cell if not checked
    ([0, 1, 2], [0, -1, 1], 3, ValueError, "y_pred_classes"),
    ([0, 1], [0, 1, 1], 3, ValueError, "y_pred_classes"),
    ([0.0, 1.0], [0, 1], 3, TypeError, "y_true_classes"),
    ([0, 1], [0, 1], 0, ValueError, "n_classes"),
    ([0, 1], [0, 1], 2.0, TypeError, "n_classes"),
])
def test_confusion_matrix_rejects_bad_input(true, pred, n_classes, error, match):
    with pytest.raises(error, match=match):
        metrics.confusion_matrix(jnp.asarray(true), jnp.asarray(pred), n_classes)


def test_confusion_matrix_under_jit_marks_out_of_range_classes():
    """An out-of-range class cannot raise under jit: every count becomes -1, an impossible count."""
    counts = jax.jit(metrics.confusion_matrix, static_argnums=2)(jnp.array([0, 0, 1]), jnp.array([3, 1, 1]), 3)
    np.testing.assert_array_equal(np.asarray(counts), np.full((3, 3), -1))
    fine = jax.jit(metrics.confusion_matrix, static_argnums=2)(jnp.array([0, 0, 1]), jnp.array([2, 1, 1]), 3)
    np.testing.assert_array_equal(np.asarray(fine), [[0, 1, 1], [0, 1, 0], [0, 0, 0]])


def under(how, fn, *args, **kwargs):
    """fn(*args, **kwargs) eagerly, under jit, or under vmap over a leading axis of one."""
    if how == "eager":
        return fn(*args, **kwargs)
    if how == "jit":
        return jax.jit(lambda *a: fn(*a, **kwargs))(*args)
    return jax.vmap(lambda *a: fn(*a, **kwargs))(*(jnp.asarray(a)[None] for a in args))[0]


@pytest.mark.parametrize("how", ["eager", "jit", "vmap"])
def test_accuracy_rejects_swapped_arguments(how):
    logits = jnp.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0]])
    labels = jnp.array([0, 1, 2], jnp.int32)
    with pytest.raises(TypeError, match=r"^y_pred: .*arguments swapped"):
        under(how, metrics.accuracy, labels, logits)
    with pytest.raises(TypeError, match=r"^y_pred: "):
        under(how, metrics.accuracy, labels, jax.nn.one_hot(labels, 3))


@pytest.mark.parametrize("how", ["eager", "jit", "vmap"])
@pytest.mark.parametrize("y_pred_shape, y_true", [
    ((4, 3), np.ones((4, 1), np.float32)),  # 3-class outputs against one column of targets
    ((4, 3), np.zeros((4,), np.float32)),  # float class labels
    ((4, 3), np.zeros((4, 2), np.float32)),  # another number of classes
    ((4, 3), np.zeros((3,), np.int32)),  # another number of examples
    ((4, 1), np.zeros((4,), np.float32)),  # 0/1 targets without the output axis
    ((4, 1), np.zeros((1, 4), np.float32)),
])
def test_accuracy_rejects_mismatched_shapes(y_pred_shape, y_true, how):
    with pytest.raises(ValueError, match=r"^y_true: expected integer class labels of shape"):
        under(how, metrics.accuracy, jnp.zeros(y_pred_shape), jnp.asarray(y_true))


def test_accuracy_float_labels_get_a_hint():
    with pytest.raises(ValueError, match=r"cast them to int: y_true.ravel\(\).astype\(jnp.int32\)"):
        metrics.accuracy(jnp.zeros((4, 3)), jnp.zeros((4,)))


@pytest.mark.parametrize("how", ["jit", "vmap"])
def test_accuracy_out_of_range_labels_raise_eagerly_and_give_nan_traced(how):
    logits = jnp.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    for labels in (jnp.array([0, 3]), jnp.array([-1, 1])):
        with pytest.raises(ValueError, match=r"^y_true: expected classes in \[0, 3\)"):
            metrics.accuracy(logits, labels)
        assert np.isnan(under(how, metrics.accuracy, logits, labels))
    assert float(under(how, metrics.accuracy, logits, jnp.array([0, 2]))) == 0.5
    binary = jnp.array([[0.9], [0.1]])
    with pytest.raises(ValueError, match=r"^y_true: expected classes in \[0, 2\)"):
        metrics.accuracy(binary, jnp.array([1, 2]))
    assert np.isnan(under(how, metrics.accuracy, binary, jnp.array([1, 2])))


@pytest.mark.parametrize("how", ["eager", "jit"])
def test_confusion_matrix_shapes_checked_under_jit(how):
    fn = metrics.confusion_matrix if how == "eager" else jax.jit(metrics.confusion_matrix, static_argnums=2)
    with pytest.raises(ValueError, match=r"^y_pred_classes: expected a 1-D array of shape \(3,\)"):
        fn(jnp.array([0, 1, 2]), jnp.array([[0, 1, 2]]), 3)

"""jaxnet.check beyond gradcheck: the per-layer report, second order, the delta trace and the summary.

Independent references: jax.vjp / jax.grad of each layer's apply (per-layer report), jax.jvp of
jax.grad and finite differences (second order), float64 closed forms of the second derivatives of
sigmoid and tanh, the tutorial's numpy code (`jaxnet.reference`, which shares no code with jaxnet)
for the delta trace, hand-counted sizes and XLA's own flop count for the summary.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jaxnet
from jaxnet import (AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Relu, Sigmoid, Softmax, Tanh,
                    activations, mlp, reference, serial)
from jaxnet.check import gradgradcheck, layer_report, summary, trace_deltas

X = jax.random.normal(jax.random.key(1), (8, 4))
LABELS = jnp.array([0, 1, 2, 0, 1, 2, 0, 1])
IMAGES = jax.random.normal(jax.random.key(2), (4, 1, 6, 6))


def bn_net():
    return serial(Dense(5), BatchNorm(), Tanh, Dropout(0.3), Dense(3), input_shape=(4,))


# ------------------------------------------------------------------ the per-layer report


@pytest.mark.parametrize("train", [True, False])
def test_layer_report_passes_a_right_network_with_state_and_dropout(train):
    net = bn_net()
    _, params = net.init(jax.random.key(0))
    state = ({}, {"mean": jnp.full(5, 0.2), "var": jnp.full(5, 1.5)}, {}, {}, {})
    report = layer_report(net, params, X, LABELS, "softmax_cross_entropy", state=state, key=jax.random.key(3),
                          train=train)
    assert report.passed, str(report)
    assert [row.label for row in report.rows] == ["0", "1", "2", "3", "4", "loss"]
    assert max(q.hand.max_rel for row in report.rows for q in row.quantities) < 1e-10
    assert report.perturbed == ("[0]['b']", "[1]['beta']", "[1]['gamma']", "[4]['b']")
    text = str(report)
    assert text.splitlines()[-1].strip().startswith("PASSED")
    assert ("training mode" if train else "evaluation mode") in text


def test_layer_report_walks_into_nested_networks_and_names_the_inner_layer():
    @dataclasses.dataclass(frozen=True)
    class DoubledTanh(jaxnet.ActivationLayer):
        activation: str = "tanh"

        def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
            return {}, 2 * dy * activations.tanh_derivative(x)

    block = serial(Dense(5), DoubledTanh(), name="block")
    net = serial(Dense(5), Tanh, block, Dense(3), input_shape=(4,))
    _, params = net.init(jax.random.key(0))
    report = layer_report(net, params, X, LABELS, "softmax_cross_entropy")
    assert [row.label for row in report.rows] == ["0", "1", "2.0", "2.1", "3", "loss"]
    assert [row.label for row in report.faulty] == ["2.1"]
    assert report.summary().startswith("FAILED: the first wrong layer is layer 2.1 (tanh): its backward's dx")


def test_layer_report_uses_the_forward_pass_key_and_needs_one():
    net = bn_net()
    _, params = net.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"^key: "):
        layer_report(net, params, X, LABELS, "softmax_cross_entropy", train=True)
    # Dropout's backward must see the mask of its forward pass: layer 3 gets fold_in(key, 3)
    report = layer_report(net, params, X, LABELS, "softmax_cross_entropy", key=jax.random.key(9), train=True)
    assert report.rows[3].passed and report.rows[3].quantities[0].hand.max_abs == 0.0


def test_a_backward_of_the_wrong_structure_or_that_raises_is_a_row_not_a_jax_error():
    @dataclasses.dataclass(frozen=True)
    class Broken(jaxnet.Layer):
        mistake: str = "shape"

        def init(self, key, input_shape):
            return tuple(input_shape), {"b": jnp.zeros(input_shape)}

        def apply(self, params, x, *, state=None, key=None, train=False):
            return x + params["b"]

        def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
            if self.mistake == "shape":
                return {"b": dy.T @ dy}, dy
            return {"b": jnp.sum(dy, 0)}, dy @ jnp.ones((3, 2))  # (8, 5) @ (3, 2): a jax TypeError

    for mistake, note in (("shape", "layer 1 (Broken).backward: returned dparams['b'] of shape (5, 5)"),
                          ("raises", "backward raised TypeError: dot_general requires contracting dimensions")):
        net = serial(Dense(5), Broken(mistake), Dense(3), input_shape=(4,))
        _, params = net.init(jax.random.key(0))
        report = layer_report(net, params, X, LABELS, "softmax_cross_entropy")
        assert [row.label for row in report.faulty] == ["1"]
        assert report.rows[1].note.startswith(note), report.rows[1].note
        assert "first wrong layer is layer 1 (Broken)" in str(report)


def test_layer_report_with_random_cotangents_and_without_a_loss():
    net = serial(Conv2D(3, 3, padding=1), Relu, MaxPool2D(2), Flatten(), Dense(3), input_shape=(1, 6, 6))
    _, params = net.init(jax.random.key(0))
    report = layer_report(net, params, IMAGES)
    assert report.passed and report.cotangent == "random" and report.rows[-1].label == "4", str(report)
    with pytest.raises(ValueError, match="^loss: give both y and loss"):
        layer_report(net, params, IMAGES, y=LABELS[:4])
    with pytest.raises(ValueError, match="^cotangent: "):
        layer_report(net, params, IMAGES, cotangent="loss")


def test_max_pool_ties_are_compared_by_window_sums():
    """Windows of equal maxima: jaxnet's first-maximum rule and jnp.max's even split are both right."""
    pool = MaxPool2D(2)
    x = jnp.round(jax.random.normal(jax.random.key(4), (2, 2, 4, 4)))  # many ties
    report = layer_report(serial(pool, input_shape=(2, 4, 4)), ({},), x)
    dx = report.rows[0].quantities[0]
    assert report.passed and dx.ties > 0, str(report)
    assert jaxnet.check_layer(pool, x).passed


def test_layer_report_table_markdown_and_figure():
    net = bn_net()
    _, params = net.init(jax.random.key(0))
    report = layer_report(net, params, X, LABELS, "softmax_cross_entropy", key=jax.random.key(3), train=True)
    md = report._repr_markdown_()
    assert md == report.to_markdown() and "| # | layer | input -> output | dx rel |" in md
    assert "| 1 | BatchNorm | (8, 5) -> (8, 5) |" in md
    fig = report.figure()
    assert len(fig.axes) == 2 and fig.axes[0].get_yscale() == "log"


# ------------------------------------------------------------------ second order


def second_order_cases():
    nets = {
        **{f"activation {name}": (serial(Dense(5), layer, Dense(3), input_shape=(4,)), X, {})
           for name, layer in (("sigmoid", Sigmoid), ("relu", Relu), ("tanh", Tanh), ("identity", jaxnet.Identity))},
        "activation softmax (mse)": (serial(Dense(5), Tanh, Dense(3), Softmax, input_shape=(4,)), X, {}),
        "BatchNorm train": (bn_net(), X, dict(train=True, key=jax.random.key(3))),
        "BatchNorm eval, Dropout": (bn_net(), X, dict(state=bn_net().init_state())),
        "Conv2D, AvgPool2D, Flatten": (serial(Conv2D(2, 3, padding=1), Tanh, AvgPool2D(2), Flatten(), Dense(3),
                                              input_shape=(1, 6, 6)), IMAGES, {}),
        "Conv2D, MaxPool2D (no ties)": (serial(Conv2D(2, 3), Tanh, MaxPool2D(2), Flatten(), Dense(3),
                                               input_shape=(1, 6, 6)), IMAGES, {}),
    }
    return nets


@pytest.mark.parametrize("case", list(second_order_cases()))
def test_gradgradcheck_every_layer_and_activation(case):
    net, x, kwargs = second_order_cases()[case]
    _, params = net.init(jax.random.key(0))
    if "softmax" in case:
        report = gradgradcheck(net, params, x, jax.nn.one_hot(LABELS, 3), "mse", **kwargs)
    else:
        report = gradgradcheck(net, params, x, LABELS[:x.shape[0]], "softmax_cross_entropy", **kwargs)
    assert report.passed, str(report)
    assert report.kinks < report.directions


@pytest.mark.parametrize("loss,target", [
    ("mse", lambda: jax.random.normal(jax.random.key(5), (8, 2))),
    ("binary_crossentropy", lambda: (jax.random.uniform(jax.random.key(5), (8, 2)) > 0.5).astype(jnp.float32)),
    ("sigmoid_binary_crossentropy", lambda: jax.random.uniform(jax.random.key(5), (8, 2))),
    ("softmax_cross_entropy", lambda: LABELS),
])
def test_gradgradcheck_every_loss(loss, target):
    last = [Sigmoid] if loss == "binary_crossentropy" else []
    classes = 3 if loss == "softmax_cross_entropy" else 2
    net = serial(Dense(5), Tanh, Dense(classes), *last, input_shape=(4,))
    _, params = net.init(jax.random.key(0))
    assert gradgradcheck(net, params, X, target(), loss).passed


def test_gradgradcheck_catches_a_gradient_right_at_the_point_but_not_around_it():
    """A route whose weight gradient is frozen (stop_gradient of the params it uses): right value, wrong
    derivative. First order cannot see it; second order can."""
    net = serial(Dense(5), Tanh, Dense(3), input_shape=(4,))
    _, params = net.init(jax.random.key(0))

    def frozen(net, params, x, y, loss, **kwargs):
        return jaxnet.backprop(net, jax.lax.stop_gradient(params), x, y, loss, **kwargs)

    assert jaxnet.gradcheck(net, params, X, LABELS, "softmax_cross_entropy", grad=frozen).passed
    report = gradgradcheck(net, params, X, LABELS, "softmax_cross_entropy", grad=frozen)
    assert not report.passed and all(not leaf.hand.passed and leaf.fd.passed for leaf in report.leaves)


@pytest.mark.parametrize("x", [-30.0, -20.0, 20.0, 30.0])
def test_second_derivatives_in_the_tails_beat_jax_numpy(x):
    """Locked against float64 closed forms: sigmoid'' = s'(1 - 2s), tanh'' = -2 tanh tanh'. In float32
    jaxnet's stay within 1e-5 relative; jax.nn.sigmoid's (in the upper tail, where s rounds to 1) and
    jnp.tanh's (in both tails) cancel to 0."""
    s = 1 / (1 + np.exp(-x))
    s1 = np.exp(-abs(x)) / (1 + np.exp(-abs(x))) ** 2
    sigmoid2 = s1 * (1 - 2 * s)
    t1 = 4 * np.exp(-2 * abs(x)) / (1 + np.exp(-2 * abs(x))) ** 2
    tanh2 = -2 * np.tanh(x) * t1
    x32 = jnp.float32(x)
    ours = {"sigmoid": jax.grad(jax.grad(activations.sigmoid))(x32),
            "sigmoid_derivative": jax.jvp(activations.sigmoid_derivative, (x32,), (jnp.float32(1),))[1],
            "tanh": jax.grad(jax.grad(activations.tanh))(x32)}
    np.testing.assert_allclose([ours["sigmoid"], ours["sigmoid_derivative"]], [sigmoid2] * 2, rtol=1e-5)
    if abs(x) <= 20:  # tanh'' at 30 is 1e-25, below float32's normal range
        np.testing.assert_allclose(ours["tanh"], tanh2, rtol=1e-5)
    theirs_sigmoid = float(jax.grad(jax.grad(jax.nn.sigmoid))(x32))
    theirs_tanh = float(jax.grad(jax.grad(jnp.tanh))(x32))
    assert theirs_tanh == 0.0 and (x < 0 or theirs_sigmoid == 0.0)


# ------------------------------------------------------------------ the delta trace


@pytest.mark.parametrize("activation,output,loss", [("sigmoid", "sigmoid", "mse"), ("relu", "softmax", "categorical"),
                                                    ("tanh", "identity", "mse")])
def test_trace_deltas_matches_jax_grad_and_the_tutorials_numpy_code(activation, output, loss):
    net = mlp([3, 5, 4, 2], activation=activation, output_activation=output)
    _, params = net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (6, 3))
    if loss == "categorical":
        labels = jnp.array([0, 1, 1, 0, 1, 0])
        y, loss, ref_loss = jax.nn.one_hot(labels, 2), "mse", "mse"
    else:
        y, ref_loss = jax.random.uniform(jax.random.key(2), (6, 2)), "mse"
    trace = trace_deltas(net, params, x, y, loss)
    assert trace.passed, str(trace)
    assert [e.symbol for e in trace.entries][:7] == ["a0", "z1", "a1", "z2", "a2", "z3", "a3"]
    if output != "softmax":  # the numpy tutorial fuses softmax with cross-entropy only
        weights, biases = reference.from_jaxnet_params(params)
        acts, zs = reference.forward(weights, biases, np.asarray(x, np.float64), activation, output)
        dWs, dbs = reference.backward(weights, acts, zs, np.asarray(y, np.float64), ref_loss, activation, output)
        m = x.shape[0]
        for l in range(3):
            np.testing.assert_allclose(trace[f"z{l + 1}"], zs[l], rtol=1e-6, atol=1e-6)  # jaxnet params are float32
            np.testing.assert_allclose(trace[f"dW{l + 1}"], dWs[l] * m, rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(trace[f"db{l + 1}"], dbs[l] * m, rtol=1e-6, atol=1e-9)
    text = str(trace)
    assert "delta3 = dL/da3 * " in text or "delta3 = softmax_vjp(z3, dL/da3)" in text
    assert "delta1 = dL/da1 * " in text and "dW1 = a0^T delta1" in text
    assert text.splitlines()[-1].strip().startswith("PASSED")


def test_trace_deltas_refuses_other_layers_and_draws_the_xor_network():
    with pytest.raises(ValueError, match=r"^net: trace_deltas follows the tutorial's equations.*layer 0 is Conv2D"):
        trace_deltas(serial(Conv2D(2, 3), Flatten(), Dense(1), input_shape=(1, 4, 4)),
                     None, IMAGES[:, :, :4, :4], jnp.ones((4, 1)), "mse")
    net = mlp([2, 4, 1])
    x, y = jaxnet.data.xor()
    trace = trace_deltas(net, net.init(jax.random.key(0))[1], x, y, "mse")
    fig = trace.figure()
    assert len(fig.axes) == 5  # one panel per example and the batch


# ------------------------------------------------------------------ the summary


def test_summary_of_simple_convnet_counts_params_and_multiply_adds():
    net = jaxnet.simple_convnet()
    s = net.summary()
    assert s == summary(net, (1, 28, 28))
    assert [r.output_shape for r in s.rows] == [(30, 24, 24), (30, 24, 24), (30, 12, 12), (4320,), (100,), (100,),
                                                (10,)]
    assert [r.params for r in s.rows] == [30 * 25 + 30, 0, 0, 0, 4320 * 100 + 100, 0, 100 * 10 + 10]
    assert s.total_params == ravel_pytree(net.init(jax.random.key(0))[1])[0].size
    assert s.total_multiply_adds == 30 * 24 * 24 * 25 + 4320 * 100 + 100 * 10
    assert "total: 433,890 params (1.66 MiB), 865,000 multiply-adds per example" in str(s)
    assert s._repr_markdown_().startswith("**summary of simple_convnet")


@pytest.mark.parametrize("layer,shape", [(Dense(30), (50,)), (Conv2D(8, 3, padding=1), (3, 10, 10))])
def test_multiply_adds_agree_with_xla_flop_count(layer, shape):
    net = serial(layer, input_shape=shape)
    _, params = net.init(jax.random.key(0))
    x = jnp.ones((1, *shape))
    cost = jax.jit(net.apply).lower(params, x).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    assert summary(net).total_multiply_adds == pytest.approx(cost["flops"] / 2, rel=0.1)


def test_summary_walks_nested_networks_and_needs_an_input_shape():
    net = serial(serial(Dense(4), Relu, name="block"), Dense(2))
    with pytest.raises(ValueError, match="^input_shape: this network has no default input shape"):
        net.summary()
    s = net.summary((3,))
    assert [r.label for r in s.rows] == ["0.0", "0.1", "1"] and s.total_params == 3 * 4 + 4 + 4 * 2 + 2


def test_every_report_shows_as_markdown_in_a_notebook():
    net = serial(Dense(5), Tanh, Dense(3), input_shape=(4,))
    _, params = net.init(jax.random.key(0))
    x, y = jaxnet.data.xor()
    reports = [gradgradcheck(net, params, X, LABELS, "softmax_cross_entropy"), net.summary(),
               trace_deltas(mlp([2, 4, 1]), mlp([2, 4, 1]).init(jax.random.key(0))[1], x, y, "mse"),
               layer_report(net, params, X, LABELS, "softmax_cross_entropy")]
    for report in reports:
        md = report._repr_markdown_()
        assert md == report.to_markdown() and ("|---|" in md or md.startswith("```text"))
        assert str(report).splitlines()[0].strip("*") in md
        assert len(md) < 20 * len(str(report))  # a table, not a NamedTuple repr with every array

"""gradcheck and check_layer.

- Field case G2 (float64 finite differences reach ~3e-11; wrong gradients are flagged).
- The route's loss value is checked against an independent evaluation (a 10x loss fails).
- float32 mode: the route in float32 against float64 references, with its own tolerances and the
  rule (abs / rel) that passed each leaf.
- Kinks: at a ReLU whose pre-activation is exactly 0, central differences average the one-sided
  slopes; gradcheck reports such coordinates as kinks, while wrong gradients elsewhere still fail.
- State, dropout key and mode: gradcheck checks BatchNorm + Dropout networks in both modes.
- check_layer: every built-in layer's backward against jax.vjp, and deliberately wrong layers.

Independent references: numpy closed forms of the G2 gradient and loss, jax.grad of plain jnp code,
hand-computed slopes at the kink.
"""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet
from jaxnet import (BatchNorm, Dense, Dropout, Identity, Relu, Sigmoid, Softmax, Tanh, check_layer, gradcheck, mlp,
                    serial)

X = jnp.array([[0.5, -1.0], [1.5, 2.0], [-0.3, 0.8]])
Y = jnp.array([[1.0], [0.0], [1.0]])
W = jnp.array([[0.3], [-0.2]])


def g2_net():
    """loss = mean((sigmoid(x @ w + b) - y)^2): a Dense layer, then a sigmoid."""
    return serial(Dense(1, b_init="zeros"), Sigmoid, input_shape=(2,))


def g2_params():
    return ({"W": W, "b": jnp.zeros(1)}, {})


def g2_numpy():
    """The G2 loss and dL/dW in float64 numpy: L = mean((s - y)^2), dL/dW = x^T (2 (s - y) s (1 - s)) / m."""
    x, y, w = (np.asarray(a, np.float64) for a in (X, Y, W))
    s = 1 / (1 + np.exp(-(x @ w)))
    return np.mean((s - y) ** 2), x.T @ (2 * (s - y) * s * (1 - s)) / x.shape[0]


def test_g2_true_gradient_value(x64):
    _, g = jaxnet.backprop(g2_net(), jax.tree.map(lambda a: a.astype(jnp.float64), g2_params()),
                           X.astype(jnp.float64), Y.astype(jnp.float64), "mse")
    np.testing.assert_allclose(g[0]["W"], g2_numpy()[1], rtol=1e-13)


def test_g2_float64_central_difference_agrees_to_3e_11():
    report = gradcheck(g2_net(), g2_params(), X, Y, "mse")
    assert report.passed, str(report)
    w_leaf = report.leaves[0]
    assert w_leaf.fd.max_rel < 1e-9  # ~3e-11 measured in float64; float32 differences could not get near
    assert w_leaf.route.max_rel < 1e-14
    assert report.loss == pytest.approx(g2_numpy()[0], rel=1e-14)  # the independent evaluation
    assert report.kinks == []


def test_g2_float32_finite_differences_cannot_reach_1e7():
    """Why gradcheck's finite differences run in float64: a float32 central difference is far off at any step."""
    f = lambda w: jnp.mean((jax.nn.sigmoid(X @ w) - Y) ** 2)  # noqa: E731
    true = g2_numpy()[1][0, 0]
    best = min(abs(float((f(W.at[0, 0].add(eps)) - f(W.at[0, 0].add(-eps))) / (2 * eps)) - true) / abs(true)
               for eps in (1e-1, 1e-2, 1e-3, 1e-4))
    assert best > 1e-7


def wrong(transform, value=lambda v, x: v):
    """A route returning backprop's results changed: gradients by `transform`, the loss by `value`."""
    def route(net, params, x, y, loss, **kwargs):  # kwargs: state, key, train
        v, grads = jaxnet.backprop(net, params, x, y, loss, **kwargs)
        return value(v, x), transform(grads, x)
    return route


SAME = lambda g, x: g  # noqa: E731
WRONG_GRADIENTS = [
    ("doubled", lambda g, x: jax.tree.map(lambda a: 2 * a, g)),
    ("missing 1/m", lambda g, x: jax.tree.map(lambda a: a * x.shape[0], g)),
    ("tutorial's extra 1/m", lambda g, x: jax.tree.map(lambda a: a / x.shape[0], g)),
]


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("name,transform", WRONG_GRADIENTS)
def test_g2_flags_wrong_gradients(name, transform, precision):
    assert gradcheck(g2_net(), g2_params(), X, Y, "mse", grad=wrong(SAME), precision=precision).passed
    report = gradcheck(g2_net(), g2_params(), X, Y, "mse", grad=wrong(transform), precision=precision)
    assert not report.passed, name
    assert "FAILED" in str(report)


def test_flags_one_transposed_leaf():
    net = mlp([3, 3, 1])
    _, params = net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (5, 3))
    y = jax.random.uniform(jax.random.key(2), (5, 1))

    def transposed(g, x):
        return (dict(g[0], W=g[0]["W"].T),) + g[1:]

    report = gradcheck(net, params, x, y, "mse", grad=wrong(transposed))
    assert not report.passed
    assert [leaf.passed for leaf in report.leaves] == [False, True, True, True]


def test_a_gradient_of_the_wrong_shape_fails_its_leaf():
    report = gradcheck(g2_net(), g2_params(), X, Y, "mse",
                       grad=wrong(lambda g, x: (dict(g[0], W=g[0]["W"].T),) + g[1:]))
    assert not report.passed and not report.leaves[0].passed and report.leaves[1].passed
    assert "gradient of shape (1, 2)" in str(report)


# ------------------------------------------------------------------ the loss value (issue 13, item 7)


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_a_route_returning_ten_times_the_loss_fails(precision):
    report = gradcheck(g2_net(), g2_params(), X, Y, "mse", grad=wrong(SAME, lambda v, x: 10 * v), precision=precision)
    assert not report.passed
    assert all(leaf.passed for leaf in report.leaves)  # the gradients are right: only the value is wrong
    true_loss = g2_numpy()[0]
    assert report.loss == pytest.approx(true_loss, rel=1e-14)
    assert report.route_loss == pytest.approx(10 * true_loss, rel=1e-6)
    text = str(report)
    header = text.splitlines()[1]
    assert f"{10 * true_loss:.6g}" in header and f"{true_loss:.6g}" in header and "WRONG" in header
    assert "FAILED (loss value)" in text


def test_loss_value_tolerance_separates_float32_from_float64_rounding():
    """A loss off by 1e-7 relative (float32 rounding) passes in float32 mode and fails in float64 mode."""
    off = wrong(SAME, lambda v, x: v * (1 + 1e-7))
    assert gradcheck(g2_net(), g2_params(), X, Y, "mse", grad=off, precision="float32").loss_check.passed
    assert not gradcheck(g2_net(), g2_params(), X, Y, "mse", grad=off).loss_check.passed


# ------------------------------------------------------------------ float32 mode and the rule column


def test_float32_mode_runs_the_route_in_float32():
    seen = []

    def spy(net, params, x, y, loss, **kwargs):
        seen.append((jax.tree.leaves(params)[0].dtype, x.dtype))
        return jaxnet.backprop(net, params, x, y, loss, **kwargs)

    report = gradcheck(g2_net(), g2_params(), X, Y, "mse", grad=spy, precision=jnp.float32)
    assert seen == [(jnp.float32, jnp.float32)] * 2  # at the params given, and with the zero bias perturbed
    assert report.perturbed == ("[0]['b']",)
    assert report.passed and report.precision == "float32"
    assert (report.tolerances["rtol"], report.tolerances["atol"]) == (1e-4, 1e-5)
    assert report.leaves[0].route.max_rel > 1e-12  # float32 rounding is visible against the float64 reference
    gradcheck(g2_net(), g2_params(), X, Y, "mse", grad=spy)
    assert seen[-1] == (jnp.float64, jnp.float64)


@pytest.mark.parametrize("error,float64_ok,float32_ok", [(1e-6, False, True), (1e-3, False, False)])
def test_relative_gradient_errors_against_each_precision(error, float64_ok, float32_ok):
    scaled = wrong(lambda g, x: jax.tree.map(lambda a: a * (1 + error), g))
    assert gradcheck(g2_net(), g2_params(), X, Y, "mse", grad=scaled).passed is float64_ok
    assert gradcheck(g2_net(), g2_params(), X, Y, "mse", grad=scaled, precision="float32").passed is float32_ok


def bn_net():
    return serial(Dense(5), BatchNorm(), Tanh, Dropout(0.3), Dense(3), input_shape=(4,))


def bn_data():
    net = bn_net()
    _, params = net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (8, 4))
    labels = jnp.array([0, 1, 2, 0, 1, 2, 0, 1])
    return net, params, net.init_state(), x, labels


def test_the_table_names_the_rule_that_passed_each_leaf():
    """The Dense bias before BatchNorm has a zero gradient in training (the batch mean removes it):
    an offset of 5e-13 there passes only by the absolute rule; an offset of 5e-12 fails."""
    net, params, state, x, labels = bn_data()
    kw = dict(state=state, key=jax.random.key(3), train=True)
    report = gradcheck(net, params, x, labels, "softmax_cross_entropy", grad=wrong(
        lambda g, x: jax.tree.map(lambda a: a + 5e-13, g)), **kw)
    rules = {leaf.path: leaf.route.rule for leaf in report.leaves}
    assert report.passed, str(report)
    assert rules["[0]['b']"] == "abs" and rules["[1]['gamma']"] == "rel"
    assert re.search(r"\[0\]\['b'\] .* abs ", str(report))
    report = gradcheck(net, params, x, labels, "softmax_cross_entropy", grad=wrong(
        lambda g, x: jax.tree.map(lambda a: a + 5e-12, g)), **kw)
    assert not report.passed and {leaf.path: leaf.route.rule for leaf in report.leaves}["[0]['b']"] == "-"


def test_report_prints_a_table():
    text = str(gradcheck(g2_net(), g2_params(), X, Y, "mse"))
    assert "route abs" in text and "PASSED" in text and "[0]['W']" in text and "evaluation mode" in text


# ------------------------------------------------------------------ kinks (issue 13, item 6)


def kink_case():
    """mlp([1, 1, 1], relu, identity output) at x = 0 with zero biases: the hidden pre-activation is exactly 0."""
    net = mlp([1, 1, 1], activation="relu", output_activation="identity")
    params = ({"W": jnp.array([[1.0]]), "b": jnp.array([0.0])}, {},
              {"W": jnp.array([[2.0]]), "b": jnp.array([0.0])}, {})
    return net, params, jnp.array([[0.0]]), jnp.array([[1.0]])


def test_a_relu_kink_is_reported_as_a_kink_not_a_failure():
    net, params, x, y = kink_case()
    report = gradcheck(net, params, x, y, "mse")
    assert report.passed, str(report)
    assert report.kinks == ["[0]['b'][0]"]
    assert "kinks" in str(report) and "[0]['b'][0]" in str(report).splitlines()[-2]
    # hand-computed: L(b1) = (2 relu(b1) - 1)^2 has slopes -4 (right) and 0 (left); the central
    # difference is their mean -2, which the plain check compared with relu'(0) = 0 and failed
    f = lambda b: (2 * max(b, 0.0) - 1) ** 2  # noqa: E731
    assert (f(1e-6) - f(-1e-6)) / 2e-6 == pytest.approx(-2, rel=1e-5)
    _, grads = jaxnet.autodiff(net, params, x, y, "mse")
    assert float(grads[0]["b"][0]) == 0.0


def test_wrong_gradient_beside_a_kink_still_fails():
    net, params, x, y = kink_case()
    doubled = dict(WRONG_GRADIENTS)["doubled"]
    report = gradcheck(net, params, x, y, "mse", grad=wrong(doubled))
    assert not report.passed
    assert {leaf.path: leaf.passed for leaf in report.leaves} == {
        "[0]['W']": True, "[0]['b']": True, "[2]['W']": True, "[2]['b']": False}


def xor_relu(seed):
    x, y = jaxnet.data.xor()
    net = mlp([2, 4, 1], activation="relu")  # the README tour with ReLU: zero biases, x = [0, 0] is a kink
    return net, net.init(jax.random.key(seed))[1], x, y


@pytest.mark.parametrize("task", ["xor", "xnor"])
def test_xor_with_relu_and_zero_biases_passes_with_kinks(task):
    reports = []
    for seed in range(8):
        net, params, x, y = xor_relu(seed)
        reports.append(gradcheck(net, params, x, y if task == "xor" else 1 - y, "mse"))
    assert all(r.passed for r in reports), "\n".join(map(str, reports))
    # xor 9, xnor 22; the plain central-difference check failed 6 of 8 xor
    assert sum(len(r.kinks) for r in reports) >= 6


@dataclasses.dataclass(frozen=True)
class Leaky(jaxnet.Layer):
    """y = x for x > 0, 0.1 x otherwise (slope 0.1 at 0, also for jax.grad of jnp.where)."""

    def init(self, key, input_shape):
        return tuple(input_shape), {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        return jnp.where(x > 0, x, 0.1 * x)

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        return {}, jnp.where(x > 0, dy, 0.1 * dy)


def test_nested_kinks_are_kinks_even_where_the_chain_rule_gives_no_derivative():
    """XNOR with zero biases through two leaky layers: at x = [0, 0] both layers sit at their kink. Where
    a row of the second Dense's W is all negative the loss is differentiable in that bias (slope 0.1 on
    both sides), but the chain rule gives 0.1 * 0.1 (seed 1: +0.0025 against the derivative -0.0020).
    The kink test looks at every layer's output, not only the loss, so these are kinks, not errors."""
    x, y = jaxnet.data.xor()
    net = serial(Dense(8), Leaky(), Dense(8), Leaky(), Dense(1), input_shape=(2,))
    reports = [gradcheck(net, net.init(jax.random.key(seed))[1], x, 1 - y, "mse") for seed in range(3)]
    assert all(r.passed for r in reports), "\n".join(map(str, reports))
    assert all(any(k.startswith("[0]['b']") for k in r.kinks) for r in reports)
    assert not any(k.startswith(("[0]['W']", "[4]")) for r in reports for k in r.kinks)  # smooth there


@dataclasses.dataclass(frozen=True)
class WrongJVP(jaxnet.Layer):
    """y = x^3 / 3 with a custom JVP (and backward) claiming the derivative 2 x^2 instead of x^2:
    backprop and jax.grad agree, only finite differences can see the error."""

    def init(self, key, input_shape):
        return tuple(input_shape), {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        return _cube_wrong_jvp(x)

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        return {}, dy * 2 * x ** 2


@jax.custom_jvp
def _cube_wrong_jvp(x):
    return x ** 3 / 3


_cube_wrong_jvp.defjvp(lambda primals, tangents: (_cube_wrong_jvp(primals[0]), 2 * primals[0] ** 2 * tangents[0]))


def test_finite_differences_catch_a_wrong_jax_grad_and_do_not_call_it_a_kink():
    """With a ReLU kink in the same network (zero biases, an input row of zeros): the kink is reported,
    the wrong derivative at the smooth coordinates still fails."""
    net = serial(Dense(3), Relu, WrongJVP(), Dense(1), input_shape=(2,))
    _, params = net.init(jax.random.key(0))
    x = jnp.array([[0.0, 0.0], [1.0, -0.5], [0.3, 0.9], [-1.0, 0.2]])
    y = jnp.array([[0.5], [1.0], [0.0], [2.0]])
    report = gradcheck(net, params, x, y, "mse")
    assert not report.passed
    first = {leaf.path: leaf for leaf in report.leaves}["[0]['W']"]
    assert first.route.passed and not first.fd.passed and not first.kinks
    good = serial(Dense(3), Relu, Dense(1), input_shape=(2,))
    assert gradcheck(good, (params[0], {}, params[3]), x, y, "mse").passed


# ------------------------------------------------------------------ state, dropout key and mode


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_dropout_network_passes_in_both_modes(train):
    net, params, state, x, labels = bn_data()
    state = ({}, {"mean": jnp.full(5, 0.2), "var": jnp.full(5, 1.5)}, {}, {}, {})  # running statistics
    report = gradcheck(net, params, x, labels, "softmax_cross_entropy", state=state, key=jax.random.key(3), train=train)
    assert report.passed, str(report)
    assert report.train is train and ("training mode" if train else "evaluation mode") in str(report)
    assert max(leaf.route.max_rel for leaf in report.leaves if leaf.path != "[0]['b']") < 1e-10
    assert max(leaf.fd.max_rel for leaf in report.leaves if leaf.path != "[0]['b']") < 1e-6


def test_the_key_and_the_mode_reach_the_route():
    """A route that draws another dropout mask, or differentiates the other mode, fails."""
    net, params, state, x, labels = bn_data()
    kw = dict(state=state, key=jax.random.key(3), train=True)

    def other_key(net, params, x, y, loss, **kwargs):
        return jaxnet.backprop(net, params, x, y, loss, **{**kwargs, "key": jax.random.fold_in(kwargs["key"], 1)})

    def eval_mode(net, params, x, y, loss, **kwargs):
        return jaxnet.backprop(net, params, x, y, loss, **{**kwargs, "train": False})

    assert gradcheck(net, params, x, labels, "softmax_cross_entropy", grad="autodiff", **kw).passed
    assert not gradcheck(net, params, x, labels, "softmax_cross_entropy", grad=other_key, **kw).passed
    assert not gradcheck(net, params, x, labels, "softmax_cross_entropy", grad=eval_mode, **kw).passed


def test_fd_key_samples_the_coordinates():
    net, params, state, x, labels = bn_data()
    counts = [tuple(leaf.fd_checked for leaf in gradcheck(net, params, x, labels, "softmax_cross_entropy", state=state,
                                                        max_fd_coords=10, fd_key=jax.random.key(seed)).leaves)
              for seed in (0, 1)]
    assert sum(counts[0]) == sum(counts[1]) == 10
    assert counts[0] != counts[1]


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(train=True), ValueError, r"^key: .*Dropout"),
    (dict(train=False, state=None), ValueError, r"^state: "),
    (dict(key=jax.random.split(jax.random.key(0), 2), train=True), ValueError, r"^key: expected one PRNG key"),
    (dict(fd_key=0), TypeError, r"^fd_key: expected a PRNG key"),
    (dict(precision="float16"), ValueError, r"^precision: expected 'float64' or 'float32'"),
    (dict(grad="numeric"), ValueError, r"^grad: unknown gradient route 'numeric'"),
    (dict(train="yes"), TypeError, r"^train: expected True or False"),
    (dict(grad=lambda *a, **k: 1.0), TypeError, r"^grad: the route .* must return \(loss, grads\)"),
    (dict(grad=lambda *a, **k: (1.0, {})), ValueError, r"^grad: the route .* returned gradients with structure"),
])
def test_bad_arguments_name_the_argument(kwargs, error, match):
    net, params, state, x, labels = bn_data()
    kwargs = {"state": state, **kwargs}
    with pytest.raises(error, match=match):
        gradcheck(net, params, x, labels, "softmax_cross_entropy", **kwargs)


# ------------------------------------------------------------------ check_layer


X4 = jax.random.normal(jax.random.key(5), (6, 4))
X4D = jax.random.normal(jax.random.key(6), (5, 3, 4, 4))
BN_PARAMS = {"gamma": jnp.array([0.5, 2.0, -1.0, 1.5]), "beta": jnp.array([0.1, -0.2, 0.3, 0.0])}
BN_STATE = {"mean": jnp.array([0.4, -0.8, 0.1, 0.0]), "var": jnp.array([0.5, 2.0, 1.0, 0.1])}
BUILT_IN = {
    "Dense": (Dense(3), X4, {}),
    "Dense float64 params": (Dense(3, dtype=jnp.float64), X4, {}),
    "sigmoid": (Sigmoid, X4, {}),
    "relu": (Relu, X4, {}),
    "tanh": (Tanh, X4, {}),
    "identity": (Identity, X4, {}),
    "softmax": (Softmax, X4, {}),
    "BatchNorm train": (BatchNorm(), X4, dict(params=BN_PARAMS, train=True)),
    "BatchNorm eval": (BatchNorm(), X4, dict(params=BN_PARAMS, state=BN_STATE)),
    "BatchNorm book train": (BatchNorm(book=True), X4, dict(params=BN_PARAMS, train=True)),
    "BatchNorm book eval": (BatchNorm(book=True), X4, dict(params=BN_PARAMS, state=BN_STATE)),
    "BatchNorm 4-D train": (BatchNorm(), X4D, dict(train=True)),
    "BatchNorm 4-D eval": (BatchNorm(), X4D, dict(state={"mean": jnp.array([0.1, 0.2, 0.3]),
                                                         "var": jnp.array([0.5, 1.0, 2.0])})),
    "Dropout train": (Dropout(0.5), X4, dict(train=True, key=jax.random.key(7))),
    "Dropout eval": (Dropout(0.5), X4, {}),
    "Dropout book train": (Dropout(0.3, book=True), X4, dict(train=True, key=jax.random.key(7))),
    "Dropout book eval": (Dropout(0.3, book=True), X4, {}),
    "a network": (serial(Dense(5), BatchNorm(), Relu, Dropout(0.2), Dense(2)), X4,
                  dict(train=True, key=jax.random.key(8))),
}


@pytest.mark.parametrize("case", list(BUILT_IN))
def test_check_layer_passes_on_every_built_in_layer(case):
    layer, x, kwargs = BUILT_IN[case]
    report = check_layer(layer, x, **kwargs)
    assert report.passed, str(report)
    assert [row[0] for row in report.rows][-1] == "dx" and "PASSED" in str(report)


@dataclasses.dataclass(frozen=True)
class BadBias(jaxnet.Layer):
    """y = x + b with b of shape (features,); `mistake` selects a wrong backward."""

    mistake: str = "none"

    @property
    def name(self):
        return f"BadBias({self.mistake})"

    def init(self, key, input_shape):
        return tuple(input_shape), {"b": jnp.zeros(input_shape)}

    def apply(self, params, x, *, state=None, key=None, train=False):
        return x + params["b"]

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        db = jnp.sum(dy, axis=0)
        return {
            "none": lambda: ({"b": db}, dy),
            "outer": lambda: ({"b": dy.T @ dy}, dy),             # a (4, 4) gradient for a (4,) param
            "value": lambda: ({"b": db}, 2 * dy),                 # wrong values, right shapes
            "missing": lambda: ({}, dy),                          # wrong structure
            "dx shape": lambda: ({"b": db}, dy[:, :2]),
            "dtype": lambda: ({"b": db.astype(jnp.float32)}, dy),
            "not a pair": lambda: dy,
        }[self.mistake]()


def test_check_layer_passes_the_right_custom_layer():
    assert check_layer(BadBias(), X4).passed


@pytest.mark.parametrize("mistake,match", [
    ("outer", r"^BadBias\(outer\)\.backward: returned dparams\['b'\] of shape \(4, 4\).* "
              r"expected the param's shape \(4,\)"),
    ("missing", r"^BadBias\(missing\)\.backward: returned dparams with structure"),
    ("dx shape", r"^BadBias\(dx shape\)\.backward: returned dx of shape \(6, 2\), "
                 r"expected the layer input's shape \(6, 4\)"),
    ("dtype", r"^BadBias\(dtype\)\.backward: returned dparams\['b'\] .* dtype float32, expected .* dtype float64"),
])
def test_check_layer_names_the_layer_argument_and_shapes(mistake, match):
    with pytest.raises(ValueError, match=match):
        check_layer(BadBias(mistake), X4)


def test_check_layer_rejects_a_backward_that_is_not_a_pair():
    with pytest.raises(TypeError, match=r"^BadBias\(not a pair\)\.backward: expected a pair"):
        check_layer(BadBias("not a pair"), X4)


def test_check_layer_fails_a_wrong_valued_backward():
    report = check_layer(BadBias("value"), X4)
    assert not report.passed
    assert [(name, c.passed) for name, _, c in report.rows] == [("dparams['b']", True), ("dx", False)]
    assert "FAILED" in str(report)


def test_backprop_names_the_layer_of_a_wrong_shaped_gradient():
    """Inside a network the same check runs in `backprop` (no silent (4, 4) gradient for a (4,) param)."""
    net = serial(Dense(4), BadBias("outer"), Dense(1), input_shape=(3,))
    _, params = net.init(jax.random.key(0))
    with pytest.raises(ValueError,
                       match=r"layer 1 \(BadBias\(outer\)\)\.backward: returned dparams\['b'\] of shape \(4, 4\)"):
        jaxnet.backprop(net, params, jnp.ones((6, 3)), jnp.ones((6, 1)), "mse")


def test_check_layer_bad_arguments():
    with pytest.raises(TypeError, match="^layer: expected a jaxnet Layer"):
        check_layer(lambda x: x, X4)
    with pytest.raises(ValueError, match=r"^params\['W'\]: expected shape \(4, 3\)"):
        check_layer(Dense(3), X4, params={"W": jnp.ones((3, 3)), "b": jnp.zeros(3)})
    with pytest.raises(ValueError, match=r"^state\['mean'\]: expected shape \(4,\)"):
        check_layer(BatchNorm(), X4, state={"mean": jnp.zeros(3), "var": jnp.ones(4)})
    with pytest.raises(ValueError, match="^key: Dropout"):
        check_layer(Dropout(0.5), X4, train=True)


# ------------------------------------------------------------------ kinks crossed anywhere (issue 20)


def near_kink_case():  # call with float64 enabled (the x64 fixture)
    """Training-mode BatchNorm with one ReLU input 2e-7 from its kink: a step of 1e-6 in any weight of
    that unit moves every example of the unit (the batch statistics couple them), so the stencils of
    the unit's W column and beta cross the kink far from the coordinate's own pre-activation."""
    net = serial(Dense(3), BatchNorm(), Relu, Dense(2), input_shape=(4,))
    _, params = net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (8, 4))
    labels = jnp.array([0, 1, 0, 1, 1, 0, 1, 0])
    params, x = jax.tree.map(lambda a: a.astype(jnp.float64), (params, x))
    z = x @ params[0]["W"] + params[0]["b"]
    x_hat = (z - z.mean(0)) / jnp.sqrt(z.var(0) + 1e-5)
    params[1]["beta"] = params[1]["beta"].at[0].set(2e-7 - x_hat[3, 0])  # ReLU input [3, 0] = 2e-7
    return net, params, x, labels


def test_a_stencil_crossing_a_kink_elsewhere_in_the_network_is_a_kink(x64):
    net, params, x, labels = near_kink_case()
    report = gradcheck(net, params, x, labels, "softmax_cross_entropy", train=True)
    assert report.passed, str(report)
    crossing = [k for k in report.kinks if k.startswith("[0]['W']")]
    assert crossing and all(k.endswith(", 0]") for k in crossing)  # the W column of unit 0
    assert "[1]['beta'][0]" in report.kinks
    assert re.search(r"crosses layer 2 \(relu\) input \[3, 0\] = 2\.0e-07, reached at 0\.\d+ eps", str(report))


@dataclasses.dataclass(frozen=True)
class LeakyDeclared(Leaky):
    """Leaky with its kink declared (`kink_margin`): its input changes sign there."""

    def kink_margin(self, params, x, *, state=None, key=None, train=False):
        return x


def test_a_layer_of_your_own_declares_its_kink_with_kink_margin(x64):
    """The near-kink case with a leaky layer: without the declaration, only the one-sided test can find
    the kink, and it misses stencils that cross it further than eps / 4 away (a false FAIL); declared,
    the crossing is seen."""
    _, params, x, labels = near_kink_case()
    reports = [gradcheck(serial(Dense(3), BatchNorm(), layer, Dense(2), input_shape=(4,)), params, x, labels,
                         "softmax_cross_entropy", train=True) for layer in (Leaky(), LeakyDeclared())]
    assert not reports[0].passed
    assert reports[1].passed, str(reports[1])
    assert set(reports[0].kinks) < set(reports[1].kinks)


def test_failing_coordinates_are_listed_with_values_and_the_nearest_kink():
    net = serial(Dense(3), Relu, WrongJVP(), Dense(1), input_shape=(2,))
    _, params = net.init(jax.random.key(0))
    x = jnp.array([[0.0, 0.0], [1.0, -0.5], [0.3, 0.9], [-1.0, 0.2]])
    y = jnp.array([[0.5], [1.0], [0.0], [2.0]])
    report = gradcheck(net, params, x, y, "mse")
    text = str(report)
    first = {leaf.path: leaf for leaf in report.leaves}["[0]['W']"].failing[0]
    index, fd, ref, route, near = first
    assert abs(fd - ref) > 1e-6 * abs(ref) and route == pytest.approx(ref, rel=1e-12)
    assert "failing coordinates (finite difference vs jax.grad; first" in text
    assert re.search(r"\[0\]\['W'\]\[0, 0\]: fd 1\.\d+e\+00, jax.grad 2\.\d+e\+00, backprop 2\.\d+e\+00; nearest "
                     r"kink: layer 1 \(relu\) input \[\d, \d\] = -?\d\.\de-\d\d, reached at \d", text)
    assert "layer 2 (WrongJVP): jax.vjp of its apply disagrees with finite differences" in text.splitlines()[-1]


def test_the_readme_batchnorm_dropout_block_passes():
    """The README's block (5 epochs of Adam on digits, then gradcheck in training mode) printed False:
    a ReLU input of unit 67 ends within 1e-6 of its kink and training-mode BatchNorm couples the column."""
    net = serial(Dense(100), BatchNorm(), Relu, Dropout(0.2), Dense(10), input_shape=(64,))
    x, labels = jaxnet.data.digits()
    _, params = net.init(jax.random.key(0))
    result = jaxnet.fit(net, params, x, labels, loss="softmax_cross_entropy", optimizer="adam",
                        hyperparams={"learning_rate": 1e-3}, epochs=5, batch_size=64, key=jax.random.key(1))
    report = gradcheck(net, result.params, x[:32], labels[:32], "softmax_cross_entropy", state=result.state,
                       key=jax.random.key(3), train=True)
    assert report.passed, str(report)
    assert len(report.kinks) >= 11 and all(k.endswith(", 67]") or k == "[1]['beta'][67]" for k in report.kinks)


# ------------------------------------------------------------------ random-direction mode


@pytest.mark.parametrize("train", [True, False])
def test_directions_mode_passes_a_right_network(train):
    net, params, state, x, labels = bn_data()
    report = gradcheck(net, params, x, labels, "softmax_cross_entropy", state=state, key=jax.random.key(3),
                       train=train, fd="directions", directions=3)
    assert report.passed, str(report)
    assert report.leaves[-1].path == "(all params)" and report.leaves[-1].fd_checked == 3
    assert all(leaf.fd_checked == 3 for leaf in report.leaves)
    assert "3 random unit directions per leaf and over all params" in str(report)


def test_directions_mode_catches_a_wrong_jax_grad_and_a_wrong_route():
    net = serial(Dense(3), Tanh, WrongJVP(), Dense(1), input_shape=(2,))
    _, params = net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (5, 2))
    y = jax.random.normal(jax.random.key(2), (5, 1))
    report = gradcheck(net, params, x, y, "mse", fd="directions")
    assert not report.passed and not report.leaves[-1].fd.passed  # jax.grad (wrong custom JVP) vs fd
    assert "failing directions" in str(report)
    good = serial(Dense(3), Tanh, Dense(1), input_shape=(2,))
    good_params = (params[0], {}, params[3])
    doubled = wrong(dict(WRONG_GRADIENTS)["doubled"])
    report = gradcheck(good, good_params, x, y, "mse", grad=doubled, fd="directions")
    assert not report.passed and all(not leaf.route_fd.passed for leaf in report.leaves)


def test_directions_mode_sees_one_wrong_coordinate_of_a_large_leaf_without_jax_grad():
    """A route wrong in a single coordinate of a 4000-entry weight matrix (by 1e-3, about its typical
    size), seen by the finite differences alone (route_fd, as PyTorch's fast mode, which has no
    jax.grad to compare with). Detection rates over many draws: docs/bug_zoo.md."""
    net = serial(Dense(100), Tanh, Dense(1), input_shape=(40,))
    _, params = net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (16, 40))
    y = jax.random.normal(jax.random.key(2), (16, 1))
    one = wrong(lambda g, x: (dict(g[0], W=g[0]["W"].at[7, 3].add(1e-3)),) + g[1:])
    report = gradcheck(net, params, x, y, "mse", grad=one, fd="directions", directions=4)
    leaf = report.leaves[0]
    assert not leaf.route.passed                 # route vs jax.grad: always caught
    assert not leaf.route_fd.passed              # and by the directions through this leaf alone
    assert report.leaves[1].route_fd.passed      # the other leaves are right


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(fd="random"), ValueError, r"^fd: expected 'coordinates' or 'directions'"),
    (dict(directions=0), ValueError, r"^directions: "),
    (dict(perturb=-0.1), ValueError, r"^perturb: "),
])
def test_new_arguments_are_checked(kwargs, error, match):
    with pytest.raises(error, match=match):
        gradcheck(g2_net(), g2_params(), X, Y, "mse", **kwargs)


def test_reports_show_as_markdown_in_a_notebook():
    report = gradcheck(g2_net(), g2_params(), X, Y, "mse")
    md = report._repr_markdown_()
    assert md == report.to_markdown() and md.startswith("**gradcheck of backprop")
    assert "| leaf | shape |" in md and "| `[0]['W']` | (2, 1) |" in md and md.endswith("**PASSED**")
    assert str(report).splitlines()[0] in md  # the title, and str() stays the printed table
    layer = check_layer(Dense(3), X4)
    assert layer._repr_markdown_().startswith("**check_layer: Dense(3).backward") and "| `dx` |" in layer.to_markdown()

"""Losses: field cases N3-N5, G1, R1 and R3; shapes checked under jit; invalid traced values give NaN;
values and gradients against independent references (optax.losses, jax.grad of formulas written here
with plain jax.nn, hand-computed numbers)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxnet import losses as L

LN2 = 0.6931471805599453
FUNCTIONS = [fn for loss in L.LOSSES.values() for fn in (loss.value, loss.derivative)]


def traced(fn, how):
    """fn as called eagerly, under jit, or under vmap over a leading axis of one."""
    if how == "eager":
        return fn
    if how == "jit":
        return jax.jit(fn)
    return lambda a, b: jax.vmap(fn)(a[None], b[None])[0]


# ------------------------------------------------------------------ references (optax, plain jax)


def reference_value(name, y_pred, y_true):
    """Each loss from optax.losses (or a formula in plain jnp for probabilities), reduced as documented."""
    if name == "mse":
        return jnp.mean(optax.losses.squared_error(y_pred, y_true))
    if name == "binary_crossentropy":
        return -jnp.mean(y_true * jnp.log(y_pred) + (1 - y_true) * jnp.log(1 - y_pred))
    if name == "sigmoid_binary_crossentropy":
        return jnp.mean(optax.losses.sigmoid_binary_cross_entropy(y_pred, y_true))
    if y_true.ndim == y_pred.ndim:  # softmax_cross_entropy with one-hot targets
        return jnp.mean(optax.losses.softmax_cross_entropy(y_pred, y_true))
    return jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(y_pred, y_true))


@jax.jit
def _cases(z, targets01, labels):
    probs = jax.nn.sigmoid(z)
    cases = {
        "mse": (z, targets01),
        "binary_crossentropy": (probs, targets01),
        "sigmoid_binary_crossentropy": (z, targets01),
        "softmax_cross_entropy": (z, labels),
        "softmax_cross_entropy/one_hot": (z, jax.nn.one_hot(labels, z.shape[1], dtype=z.dtype)),
    }
    out = {}
    for case, (yp, yt) in cases.items():
        name = case.split("/")[0]
        loss = L.LOSSES[name]
        ref_value, ref_grad = jax.value_and_grad(reference_value, argnums=1)(name, yp, yt)
        out[case] = (loss.value(yp, yt), ref_value, loss.derivative(yp, yt), ref_grad, jax.grad(loss.value)(yp, yt))
    return out


finite64 = st.floats(-30, 30, allow_nan=False, width=64)


@given(hnp.arrays(np.float64, st.tuples(st.sampled_from([1, 3, 8]), st.sampled_from([1, 4])), elements=finite64),
       st.data())
def test_values_and_gradients_match_optax_float64(z, data):
    """Value against optax.losses; the hand gradient and jax.grad of jaxnet's loss against jax.grad of
    the reference. Logits within +-30 keep the probabilities inside binary_crossentropy's clip range."""
    with jax.enable_x64(True):
        targets01 = data.draw(hnp.arrays(np.float64, z.shape, elements=st.sampled_from([0.0, 0.25, 1.0])))
        labels = data.draw(hnp.arrays(np.int32, z.shape[:1], elements=st.integers(0, z.shape[1] - 1)))
        for case, (value, ref_value, hand, ref_grad, auto) in _cases(
                jnp.asarray(z), jnp.asarray(targets01), jnp.asarray(labels)).items():
            assert hand.dtype == jnp.float64
            np.testing.assert_allclose(value, ref_value, rtol=1e-12, atol=1e-14, err_msg=case)
            np.testing.assert_allclose(hand, ref_grad, rtol=1e-9, atol=1e-14, err_msg=case)
            np.testing.assert_allclose(auto, ref_grad, rtol=1e-9, atol=1e-14, err_msg=case)


# ------------------------------------------------------------------ field cases


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("p,y", [(1.0, 1.0), (0.0, 0.0)])
def test_n3_bce_saturated_prediction_is_finite(p, y, dtype):
    with jax.enable_x64(dtype == "float64"):
        yp, yt = jnp.array([[p]], dtype), jnp.array([[y]], dtype)
        naive = -(yt * jnp.log(yp) + (1 - yt) * jnp.log(1 - yp))
        assert jnp.isnan(naive).all()  # the fault: 0 * log 0 in the textbook formula
        value = L.binary_crossentropy(yp, yt)
        assert 0 <= float(value) < 1e-6
        g_hand, g_auto = L.binary_crossentropy_derivative(yp, yt), jax.grad(L.binary_crossentropy)(yp, yt)
        # the clipped loss is flat beyond the clip: both gradients are exactly 0
        np.testing.assert_array_equal(g_hand, [[0.0]])
        np.testing.assert_array_equal(g_auto, [[0.0]])


def test_bce_float32_epsilon_actually_clips():
    # a fixed eps of 1e-15 rounds 1 - eps to 1 in float32; the dtype's own eps does not
    assert jnp.float32(1) - jnp.float32(1e-15) == 1.0
    value = L.binary_crossentropy(jnp.array([[1.0]], jnp.float32), jnp.array([[0.0]], jnp.float32))
    np.testing.assert_allclose(value, -np.log(np.finfo(np.float32).eps), rtol=1e-6)


def test_g1_where_guarded_log_has_nan_gradient_but_jaxnet_does_not():
    naive = lambda p, y: -jnp.mean(jnp.where(y == 1, jnp.log(p), jnp.log(1 - p)))  # noqa: E731
    p, y = jnp.array([[1.0]]), jnp.array([[1.0]])
    assert np.isfinite(naive(p, y)) and np.isnan(jax.grad(naive)(p, y)).any()
    for fn in (L.binary_crossentropy, L.sigmoid_binary_crossentropy):
        assert np.all(np.isfinite(jax.grad(fn)(p, y)))


@pytest.mark.parametrize("how", ["eager", "jit", "vmap"])
@pytest.mark.parametrize("one_hot", [False, True])
def test_n4_softmax_cross_entropy_huge_logits(one_hot, how):
    z = jnp.array([[-431.0, 279.0, 427.0]])
    labels = jnp.array([[1.0, 0.0, 0.0]]) if one_hot else jnp.array([0])
    np.testing.assert_allclose(traced(L.softmax_cross_entropy, how)(z, labels), 858.0, rtol=1e-6)
    for grad in (L.softmax_cross_entropy_derivative, jax.grad(L.softmax_cross_entropy)):
        np.testing.assert_allclose(traced(grad, how)(z, labels), [[-1.0, 0.0, 1.0]], atol=1e-6)


def test_n5_softmax_cross_entropy_is_a_mean_over_rows():
    z = jnp.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    np.testing.assert_allclose(L.softmax_cross_entropy(z, jnp.array([2, 2])), 0.407606, rtol=1e-6)
    np.testing.assert_allclose(L.softmax_cross_entropy(z[:1], jnp.array([2])), 0.407606, rtol=1e-6)


@pytest.mark.parametrize("how", ["eager", "jit", "vmap"])
@pytest.mark.parametrize("one_hot", [False, True])
def test_r1_minus_inf_logit_on_a_zero_target_class(one_hot, how):
    """0 * log 0 = 0: the masked class adds nothing; ln 2 and gradient [0, -1/2, 1/2] everywhere."""
    z = jnp.array([[-jnp.inf, 0.0, 0.0]])
    labels = jnp.array([[0.0, 1.0, 0.0]]) if one_hot else jnp.array([1])
    value = traced(L.softmax_cross_entropy, how)(z, labels)
    np.testing.assert_allclose(value, LN2, rtol=1e-7)
    np.testing.assert_allclose(optax.losses.safe_softmax_cross_entropy(z, jax.nn.one_hot(jnp.array([1]), 3)), LN2,
                               rtol=1e-7)  # the independent reference agrees
    for grad in (L.softmax_cross_entropy_derivative, jax.grad(L.softmax_cross_entropy)):
        np.testing.assert_array_equal(traced(grad, how)(z, labels), [[0.0, -0.5, 0.5]])


@pytest.mark.parametrize("how", ["eager", "jit"])
def test_zero_log_zero_in_the_binary_cross_entropies(how):
    """Infinite logits (or saturated probabilities) with the matching target cost 0 (no NaN);
    the wrong target costs infinity (sigmoid form) or -log(eps) (clipped probabilities)."""
    z, y = jnp.array([[jnp.inf], [-jnp.inf]]), jnp.array([[1.0], [0.0]])
    assert float(traced(L.sigmoid_binary_crossentropy, how)(z, y)) == 0.0
    for grad in (L.sigmoid_binary_crossentropy_derivative, jax.grad(L.sigmoid_binary_crossentropy)):
        np.testing.assert_array_equal(traced(grad, how)(z, y), [[0.0], [0.0]])
    assert float(traced(L.sigmoid_binary_crossentropy, how)(z, 1 - y)) == math.inf
    # soft targets: finite logits only; the value equals optax's
    zf, ys = jnp.array([[-3.0], [2.0]]), jnp.array([[0.0], [0.3]])
    np.testing.assert_allclose(traced(L.sigmoid_binary_crossentropy, how)(zf, ys),
                               jnp.mean(optax.losses.sigmoid_binary_cross_entropy(zf, ys)), rtol=1e-6)
    # the gradient w.r.t. soft targets is finite next to a -inf log-probability (distillation)
    g = jax.grad(lambda t: L.softmax_cross_entropy(jnp.array([[-jnp.inf, 0.0, 0.0]]), t))(jnp.array([[0.0, 0.5, 0.5]]))
    np.testing.assert_allclose(g, [[0.0, LN2, LN2]], rtol=1e-6)


def test_mse_is_a_mean_over_batch_and_outputs():
    yp, yt = jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.zeros((2, 2))
    np.testing.assert_allclose(L.mse(yp, yt), (1 + 4 + 9 + 16) / 4)
    np.testing.assert_allclose(L.mse_derivative(yp, yt), 2 * np.asarray(yp) / 4)


def test_sigmoid_bce_equals_bce_of_sigmoid_in_range():
    z = jnp.linspace(-8, 8, 33).reshape(-1, 1)
    y = (jnp.arange(33) % 2).reshape(-1, 1).astype(jnp.float32)
    np.testing.assert_allclose(L.sigmoid_binary_crossentropy(z, y), L.binary_crossentropy(jax.nn.sigmoid(z), y),
                               rtol=1e-5)
    big = jnp.array([[1000.0], [-1000.0]])
    np.testing.assert_allclose(L.sigmoid_binary_crossentropy(big, jnp.array([[0.0], [1.0]])), 1000.0, rtol=1e-6)


# ------------------------------------------------------------------ shapes: checked under every trace


def wrong_shapes(fn):
    """(y_pred, y_true) of mismatched shapes for fn; each a broadcastable pair that used to go through."""
    if fn in (L.softmax_cross_entropy, L.softmax_cross_entropy_derivative):
        return [(jnp.zeros((4, 3)), jnp.zeros((4, 1), jnp.int32)),  # labels with a class axis
                (jnp.zeros((4, 3)), jnp.zeros((4, 1))),  # float targets of one column
                (jnp.zeros((4, 3)), jnp.zeros((4,)))]  # float labels
    return [(jnp.full((4, 1), 0.5), jnp.zeros((4,))), (jnp.full((4, 1), 0.5), jnp.zeros((1, 4))),
            (jnp.full((4, 3), 0.5), jnp.zeros((4, 1)))]


@pytest.mark.parametrize("how", ["eager", "jit", "vmap", "grad"])
@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.__name__)
def test_every_loss_and_gradient_rejects_mismatched_shapes(fn, how):
    true_name = fn.__code__.co_varnames[1]
    call = (lambda a, b: jax.grad(lambda p: jnp.sum(fn(p, b)))(a)) if how == "grad" else traced(fn, how)
    for y_pred, y_true in wrong_shapes(fn):
        with pytest.raises(ValueError, match=f"^{true_name}: expected"):
            call(y_pred, y_true)


def test_r3_jitted_mse_does_not_broadcast():
    with pytest.raises(ValueError, match=r"^y_true: expected shape \(4, 1\) to match y_pred for mse, got \(4,\)"):
        jax.jit(L.mse)(jnp.zeros((4, 1)), jnp.arange(4.0))


def test_float_labels_get_a_hint_to_cast_to_int():
    with pytest.raises(ValueError,
                       match=r"float class labels\? cast them to int: labels.ravel\(\).astype\(jnp.int32\)"):
        jax.jit(L.softmax_cross_entropy)(jnp.zeros((4, 3)), jnp.array([0.0, 1.0, 2.0, 1.0]))


# ------------------------------------------------------------------ values: NaN when they cannot be checked


@pytest.mark.parametrize("how", ["jit", "vmap"])
@pytest.mark.parametrize("bad_label", [3, -1, 100])
def test_traced_out_of_range_label_gives_nan_row(bad_label, how):
    logits = jnp.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [0.0, 0.0, 0.0]])
    labels = jnp.array([2, bad_label, 0])
    with pytest.raises(ValueError, match=r"^labels: expected class labels in \[0, 3\)"):
        L.softmax_cross_entropy(logits, labels)  # eager: an error
    assert np.isnan(traced(L.softmax_cross_entropy, how)(logits, labels))
    for grad in (L.softmax_cross_entropy_derivative, jax.grad(L.softmax_cross_entropy)):
        g = np.asarray(traced(grad, how)(logits, labels))
        assert np.isnan(g[1]).all()  # the bad row's gradient is NaN ...
        rows = np.array([0, 2])
        ok = np.asarray(grad(logits[rows], labels[rows])) * 2 / 3  # ... the others are as without it
        np.testing.assert_allclose(g[[0, 2]], ok, rtol=1e-6)


VALUE_CONTRACTS = [  # (loss, y_pred, y_true with one entry outside the contract)
    ("binary_crossentropy", jnp.full((3, 1), 0.5), jnp.array([[0.0], [2.0], [1.0]])),
    ("binary_crossentropy", jnp.array([[0.5], [1.5], [0.2]]), jnp.array([[0.0], [1.0], [1.0]])),  # y_pred > 1
    ("sigmoid_binary_crossentropy", jnp.zeros((3, 1)), jnp.array([[0.0], [-0.5], [1.0]])),
    ("softmax_cross_entropy", jnp.zeros((3, 2)), jnp.array([[1.0, 0.0], [1.5, -0.5], [0.0, 1.0]])),
]


@pytest.mark.parametrize("how", ["jit", "vmap"])
@pytest.mark.parametrize("case", range(len(VALUE_CONTRACTS)))
def test_traced_values_outside_the_contract_give_nan(case, how):
    name, y_pred, y_true = VALUE_CONTRACTS[case]
    loss = L.LOSSES[name]
    with pytest.raises(ValueError, match=r"^(y_pred|y_true|labels): expected .*in \[0, 1\]"):
        loss.value(y_pred, y_true)  # eager: an error
    assert np.isnan(traced(loss.value, how)(y_pred, y_true))
    for grad in (loss.derivative, jax.grad(loss.value)):
        g = np.asarray(traced(grad, how)(y_pred, y_true))
        assert np.isnan(g[1]).all() and np.isfinite(g[[0, 2]]).all()


def test_concrete_targets_are_checked_inside_a_trace():
    """Targets captured from outside jit are concrete: their values are checked at trace time."""
    labels = jnp.array([0, 3])
    with pytest.raises(ValueError, match=r"^labels: expected class labels in \[0, 3\)"):
        jax.jit(lambda z: L.softmax_cross_entropy(z, labels))(jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"^labels: expected class labels"):
        jax.grad(L.softmax_cross_entropy)(jnp.zeros((2, 3)), labels)


# ------------------------------------------------------------------ the Loss record's contract


def test_a_user_defined_loss_gets_shape_checks():
    mae = L.Loss("mae", lambda p, t: jnp.mean(jnp.abs(p - t)), lambda p, t: jnp.sign(p - t) / p.size)
    from jaxnet import backprop, mlp

    net = mlp([2, 3, 1], output_activation="identity")
    _, params = net.init(jax.random.key(0))
    x = jnp.ones((4, 2))
    assert np.isfinite(backprop(net, params, x, jnp.ones((4, 1)), mae)[0])
    for y in (jnp.ones(4), jnp.ones((4, 2))):
        with pytest.raises(ValueError, match=r"^y: expected shape \(4, 1\) to match the network's output for mae"):
            backprop(net, params, x, y, mae)


def test_a_user_defined_label_loss_gets_label_and_range_checks():
    from jaxnet.validate import check_targets

    hinge = L.Loss("hinge", None, None, from_logits=True, targets=L.LABELS, target_range=(0.0, 1.0))
    check_targets("y", jnp.array([0, 2]), (2, 3), hinge)  # labels
    check_targets("y", jnp.eye(3)[:2], (2, 3), hinge)  # one-hot
    with pytest.raises(ValueError, match=r"^y: expected class labels in \[0, 3\) .* found 3 at index \(1,\)"):
        check_targets("y", jnp.array([0, 3]), (2, 3), hinge)
    with pytest.raises(ValueError, match=r"^y: expected targets in \[0, 1\] for hinge, found 2.0"):
        check_targets("y", 2 * jnp.eye(3)[:2], (2, 3), hinge)
    with pytest.raises(ValueError, match=r"^y: expected integer class labels of shape \(2,\)"):
        check_targets("y", jnp.array([[0], [2]]), (2, 3), hinge)
    with pytest.raises(ValueError, match=r"^loss: odd has targets='rows'"):
        check_targets("y", jnp.array([0, 2]), (2, 3), L.Loss("odd", None, None, targets="rows"))


def test_records_state_their_contracts():
    """What fit's checks and the output pairing read, for each built-in loss."""
    got = {name: (loss.from_logits, loss.output_activation, loss.targets, loss.target_range, loss.prediction_range)
           for name, loss in L.LOSSES.items()}
    assert got == {
        "mse": (False, "identity", "same_shape", None, None),
        "binary_crossentropy": (False, "sigmoid", "same_shape", (0.0, 1.0), (0.0, 1.0)),
        "sigmoid_binary_crossentropy": (True, "identity", "same_shape", (0.0, 1.0), None),
        "softmax_cross_entropy": (True, "identity", "labels", (0.0, 1.0), None),
    }


def test_unknown_loss_name_lists_valid_ones():
    with pytest.raises(ValueError, match="binary_crossentropy.*mse"):
        L.get("cross_entropyy")


def test_a_replaced_derivative_is_what_training_runs():
    """`_replace(derivative=...)` on a built-in loss keeps its `unchecked` field; the fast path must not
    silently run the built-in's math instead of the replacement."""
    ce = L.get("softmax_cross_entropy")
    doubled = ce._replace(derivative=lambda logits, labels: 2 * ce.derivative(logits, labels))
    assert ce.fast == ce.unchecked and doubled.fast == (doubled.value, doubled.derivative)
    logits, labels = jnp.array([[0.3, -0.2, 1.0]]), jnp.array([2])
    _, fast_derivative = doubled.fast
    np.testing.assert_allclose(fast_derivative(logits, labels), 2 * ce.derivative(logits, labels), rtol=1e-6)

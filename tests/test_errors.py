"""Bad input gets a clear error before any tracing: ValueError or TypeError whose message starts with the
argument's name and gives the expected and the received value or shape. Validation never changes
compiled code and never breaks jit/vmap; valid edge cases still pass. A hypothesis fuzz test throws
malformed input at the public API and accepts only these documented errors."""

from __future__ import annotations

import re
import struct
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jaxnet.nn import activations as nn_activations

import jaxnet
from jaxnet import (Dense, activations, autodiff, backprop, checkpoint, data, evaluate, fit, gradcheck, grad,
                    initializers, losses, mlp, optim, serial, Sigmoid)

X, Y = data.xor()
NET = mlp([2, 3, 1])  # sigmoid, params ({W (2, 3), b (3,)}, {}, {W (3, 1), b (1,)}, {})
PARAMS = NET.init(jax.random.key(0))[1]
NET3 = mlp([2, 3, 3], output_activation="identity")  # 3 logits
PARAMS3 = NET3.init(jax.random.key(0))[1]
LABELS = jnp.array([0, 1, 2, 1])
SGD = optim.sgd(0.1)


def fit_with(**changes):
    args = dict(net=NET, params=PARAMS, x=X, y=Y, loss="mse", optimizer=SGD, epochs=2)
    args.update(changes)
    return lambda: fit(args.pop("net"), args.pop("params"), args.pop("x"), args.pop("y"), **args)


def with_leaf(params, i, key, value):
    layer = dict(params[i])
    layer[key] = value
    return params[:i] + (layer,) + params[i + 1:]


# ------------------------------------------------------------------------------------------------
# One case per kind of bad input: the exception type and the start of its message
# ------------------------------------------------------------------------------------------------

CASES = {
    # data against the network
    "x features": (fit_with(x=jnp.ones((4, 3))), ValueError,
                   r"x: expected shape \(n, 2\) for mlp\[2, 3, 1\], whose params take inputs of shape \(2,\), "
                   r"got \(4, 3\)"),
    "x one example": (fit_with(x=X[0], y=Y[:1]), ValueError, r"x: expected shape \(n, 2\) .* got \(2,\)"),
    "x integer": (fit_with(x=X.astype(jnp.int32)), TypeError, r"x: expected a floating-point array .* got dtype int32"),
    "x bool": (fit_with(x=X > 0), TypeError, r"x: expected a floating-point array .* got dtype bool"),
    "x None": (fit_with(x=None), TypeError, r"x: expected an array of floats, got NoneType"),
    "x NaN": (fit_with(x=X.at[2, 1].set(jnp.nan)), ValueError,
              r"x: expected finite values, found 1 NaN or infinite entry, the first at index \(2, 1\)"),
    "x empty": (fit_with(x=X[:0], y=Y[:0]), ValueError,
                r"x: expected at least one example, got an empty array of shape \(0, 2\)"),
    "y rows": (fit_with(y=Y[:3]), ValueError, r"y: expected 4 rows to match x \(4, 2\), got shape \(3, 1\)"),
    "y without output axis": (fit_with(y=Y.ravel()), ValueError,
                              r"y: expected shape \(4, 1\) to match the network's output for mse, got \(4,\) "
                              r"\(add the output axis: y\[:, None\]\)"),
    "y too many outputs": (fit_with(y=jnp.ones((4, 2))), ValueError, r"y: expected shape \(4, 1\) .* got \(4, 2\)"),
    "y infinite": (fit_with(y=Y.at[0, 0].set(jnp.inf)), ValueError, r"y: expected finite values"),
    "y not numeric": (fit_with(y=np.array([["a"]] * 4)), TypeError,
                      r"y: expected an array of targets, got ndarray with dtype <U1$"),
    "BCE target outside [0, 1]": (fit_with(y=2 * Y, loss="binary_crossentropy"), ValueError,
                                  r"y: expected targets in \[0, 1\] for binary_crossentropy, "
                                  r"found 2.0 at index \(1, 0\)"),
    "label too large": (fit_with(net=NET3, params=PARAMS3, y=LABELS.at[3].set(3), loss="softmax_cross_entropy"),
                        ValueError,
                        r"y: expected class labels in \[0, 3\) for 3 output units, found 3 at index \(3,\)"),
    "label negative": (fit_with(net=NET3, params=PARAMS3, y=LABELS.at[1].set(-1), loss="softmax_cross_entropy"),
                       ValueError, r"y: expected class labels in \[0, 3\) .* found -1 at index \(1,\)"),
    "labels with a class axis": (fit_with(net=NET3, params=PARAMS3, y=LABELS[:, None], loss="softmax_cross_entropy"),
                                 ValueError, r"y: expected integer class labels of shape \(4,\) .* got \(4, 1\) "
                                             r"\(integer labels have no class axis"),
    # params against the network
    "params too short": (fit_with(params=PARAMS[:2]), ValueError,
                         r"params: expected 4 entries, one per layer of mlp\[2, 3, 1\] "
                         r"\(Dense\(3\), sigmoid, Dense\(1\), sigmoid\), got 2"),
    "params None": (fit_with(params=None), TypeError, r"params: expected a tuple with one entry per layer"),
    "W of another shape": (fit_with(params=with_leaf(PARAMS, 2, "W", jnp.ones((4, 1)))), ValueError,
                           r"params\[2\]\['W'\]: expected shape \(3, 1\) for layer 2 \(Dense\(1\)\) given input shape "
                           r"\(3,\), got \(4, 1\)"),
    "b missing": (fit_with(params=(dict(W=PARAMS[0]["W"]),) + PARAMS[1:]), ValueError,
                  r"params\[0\]: expected layer 0 \(Dense\(3\)\) given input shape \(2,\) with entries "
                  r"\['W'\], \['b'\], "
                  r"got \['W'\]$"),
    "integer W": (fit_with(params=with_leaf(PARAMS, 0, "W", jnp.ones((2, 3), jnp.int32))), TypeError,
                  r"params\[0\]\['W'\]: expected a floating-point array for layer 0 \(Dense\(3\)\).* got dtype int32"),
    "NaN in params": (fit_with(params=with_leaf(PARAMS, 2, "b", jnp.array([jnp.nan]))), ValueError,
                      r"params\[2\]\['b'\]: expected finite values"),
    # training settings
    "net not a Network": (fit_with(net="mlp"), TypeError, r"net: expected a jaxnet Network"),
    "epochs 0": (fit_with(epochs=0), ValueError, r"epochs: expected a positive int, got 0"),
    "epochs float": (fit_with(epochs=2.0), TypeError, r"epochs: expected a positive int, got 2.0"),
    "batch_size > n": (fit_with(batch_size=5, key=jax.random.key(0)), ValueError,
                       r"batch_size: expected at most the number of examples 4, got 5"),
    "batch without key": (fit_with(batch_size=2), ValueError, r"key: minibatch training shuffles every epoch"),
    "key an int": (fit_with(batch_size=2, key=0), TypeError, r"key: expected a PRNG key .* got int"),
    "key of floats": (fit_with(batch_size=2, key=jnp.zeros(2)), TypeError,
                      r"key: expected a PRNG key .* got ArrayImpl with dtype float32 and shape \(2,\)"),
    "a batch of keys": (fit_with(batch_size=2, key=jax.random.split(jax.random.key(0), 3)), ValueError,
                        r"key: expected one PRNG key, got a batch of keys of shape \(3,\)"),
    "optimizer a name without hyperparams": (fit_with(optimizer="sgd"), ValueError,
                                             r"hyperparams: optimizer='sgd' is a name and needs hyperparams"),
    "optimizer neither": (fit_with(optimizer=5), TypeError,
                          r"optimizer: expected an optax GradientTransformation or an optimizer name"),
    "optimizer unknown name": (fit_with(optimizer="adamw", hyperparams={"learning_rate": 0.1}), ValueError,
                               r"optimizer: unknown optimizer 'adamw'; expected one of: adagrad, adam, "),
    "unknown loss": (fit_with(loss="hinge"), ValueError, r"loss: unknown loss 'hinge'; expected one of: "),
    "loss not a Loss": (fit_with(loss=5), TypeError, r"loss: expected a name or a jaxnet.losses.Loss, got int"),
    "unknown gradient route": (fit_with(grad="numerical"), ValueError, r"grad: unknown gradient route 'numerical'"),
    "gradient route not callable": (fit_with(grad=5), TypeError,
                                    r"grad: expected 'backprop', 'autodiff' or a callable"),
    "opt_state of another optimizer": (fit_with(opt_state=optax.adam(0.1).init(PARAMS)), ValueError,
                                       r"opt_state: expected the structure of optimizer.init\(params\), an "
                                       r"InjectStatefulHyperparamsState holding 2 arrays, got a tuple "
                                       r"\(ScaleByAdamState, EmptyState\) holding 9 arrays"),
    "opt_state of another network": (fit_with(opt_state=optim.optimizer("adam", 0.1).init(mlp([2, 4, 1]).init(
        jax.random.key(0))[1]), optimizer=optim.optimizer("adam", 0.1)), ValueError,
        r"opt_state.*\[0\]\['W'\]: expected float32 \(2, 3\) as in optimizer.init\(params\), got float32 \(2, 4\)"),
    "validation_data not a pair": (fit_with(validation_data=(X,)), ValueError,
                                   r"validation_data: expected a pair \(x_val, y_val\), got tuple of length 1"),
    "validation features": (fit_with(validation_data=(jnp.ones((3, 3)), Y[:3])), ValueError,
                            r"validation_data\[0\]: expected shape \(n, 2\)"),
    "validation labels": (fit_with(validation_data=(X, Y.ravel())), ValueError,
                          r"validation_data\[1\]: expected shape \(4, 1\)"),
    # other entry points
    "apply: W of another shape": (lambda: NET.apply(with_leaf(PARAMS, 0, "W", jnp.ones((3, 3))), X), ValueError,
                                  r"params\[0\]\['W'\]: expected shape \(2, 3\)"),
    "apply: x features": (lambda: NET.apply(PARAMS, jnp.ones((4, 3))), ValueError,
                          r"x: expected shape \(n, 2\) or \(2,\) for mlp\[2, 3, 1\]"),
    "apply: params of another net": (lambda: NET.apply(PARAMS3, X), ValueError,
                                     r"params\[2\]\['W'\]: expected shape \(3, 1\) .* got \(3, 3\)"),
    "backprop: labels": (lambda: backprop(NET3, PARAMS3, X, LABELS + 1, "softmax_cross_entropy"), ValueError,
                         r"y: expected class labels in \[0, 3\)"),
    "autodiff: y": (lambda: autodiff(NET, PARAMS, X, Y.ravel(), "mse"), ValueError, r"y: expected shape \(4, 1\)"),
    "gradcheck: params": (lambda: gradcheck(NET, PARAMS[:3], X, Y, "mse"), ValueError, r"params: expected 4 entries"),
    "gradcheck: eps": (lambda: gradcheck(NET, PARAMS, X, Y, "mse", eps=0.0), ValueError,
                       r"eps: expected a positive finite number, got 0.0"),
    "evaluate: x": (lambda: evaluate(NET, PARAMS, X[:, :1], Y, "mse"), ValueError, r"x: expected shape \(n, 2\)"),
    "init: key an int": (lambda: NET.init(0), TypeError, r"key: expected a PRNG key"),
    "init: a batch of keys": (lambda: NET.init(jax.random.split(jax.random.key(0), 4)), ValueError,
                              r"key: expected one PRNG key, got a batch of keys of shape \(4,\); use jax.vmap"),
    "mse: shapes": (lambda: losses.mse(jnp.zeros((4, 1)), jnp.zeros(4)), ValueError,
                    r"y_true: expected shape \(4, 1\) to match y_pred for mse, got \(4,\)"),
    "softmax CE: label": (lambda: losses.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.array([0, 5])), ValueError,
                          r"labels: expected class labels in \[0, 3\) .* found 5 at index \(1,\)"),
    "BCE grad: integer prediction": (
        lambda: losses.binary_crossentropy_derivative(jnp.ones((2, 1), int), jnp.ones((2, 1))),
        TypeError, r"y_pred: expected a floating-point array"),
    "optimizer: unknown name": (lambda: optim.optimizer("adamw", 0.1), ValueError,
                                r"optimizer: unknown optimizer 'adamw'; "
                                r"expected one of: adagrad, adam, momentum, nesterov, rmsprop, sgd"),
    "optimizer: learning rate 0": (lambda: optim.optimizer("sgd", 0.0), ValueError,
                                   r"learning_rate: expected a positive finite number, got 0.0"),
    "optimizer: learning rate str": (lambda: optim.optimizer("sgd", "0.1"), TypeError,
                                     r"learning_rate: expected a positive number, got str '0.1'"),
    "optimizer: learning rate None": (lambda: optim.sgd(None), TypeError, r"learning_rate: expected a positive number"),
    "optimizer: learning rate NaN": (lambda: optim.sgd(float("nan")), ValueError, r"learning_rate: .* got nan"),
    "mlp: unknown activation": (lambda: mlp([2, 3, 1], activation="swish"), ValueError,
                                r"activation: unknown activation 'swish'; "
                                r"expected one of: identity, relu, sigmoid, softmax, tanh"),
    "mlp: activation not a name": (lambda: mlp([2, 3, 1], activation=5), TypeError,
                                   r"activation: expected a name \(identity, relu, sigmoid, softmax, tanh\) "
                                   r"or a Layer"),
    "mlp: unknown initialiser": (lambda: mlp([2, 3, 1], initializer="glorot"), ValueError,
                                 r"initializer: unknown initializer 'glorot'; expected one of: he_normal, he_uniform, "
                                 r"normal, xavier_normal, xavier_uniform, zeros"),
    "mlp: size 0": (lambda: mlp([2, 0, 1]), ValueError, r"layer_sizes\[1\]: expected a positive int, got 0"),
    "one_hot: label out of range": (lambda: data.one_hot(jnp.array([0, 3]), 3), ValueError,
                                    r"labels: expected class labels in \[0, 3\), found 3"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_a_clear_error(name):
    call, kind, pattern = CASES[name]
    with pytest.raises(kind) as info:
        call()
    assert re.match(pattern, str(info.value)), f"{name}: {info.value}"


def test_unknown_names_list_exactly_the_valid_ones():
    tables = [
        (lambda: mlp([2, 1], activation="?"), nn_activations._RULES),
        (lambda: losses.get("?"), losses.LOSSES),
        (lambda: optim.optimizer("?", 0.1), optim.OPTAX_OPTIMIZERS),
        (lambda: initializers.get("?"), initializers.INITIALIZERS),
        (lambda: grad.route("?"), grad.ROUTES),
    ]
    for call, table in tables:
        with pytest.raises(ValueError) as info:
            call()
        listed = str(info.value).split("expected one of: ")[1].split(", ")
        assert listed == sorted(table)


def test_mixed_and_mismatched_float_dtypes(x64):
    mixed = with_leaf(PARAMS, 0, "W", PARAMS[0]["W"].astype(jnp.float64))
    with pytest.raises(TypeError, match=r"params: mixed dtypes, params\[0\]\['W'\] is float64 but params\[0\]\['b'\] "
                                        r"is float32"):
        fit_with(params=mixed)()
    with pytest.raises(TypeError, match=r"x: dtype float64 differs from the params' float32; cast it with "
                                        r"x.astype\(jnp.float32\)"):
        fit_with(x=X.astype(jnp.float64))()
    with pytest.raises(TypeError, match=r"y: dtype float64 differs from the params' float32"):
        fit_with(y=Y.astype(jnp.float64))()
    net64 = mlp([2, 3, 1], dtype=jnp.float64)  # all float64 is fine
    params64 = net64.init(jax.random.key(0))[1]
    _, _, _, history = fit(net64, params64, X.astype(jnp.float64), Y.astype(jnp.float64), loss="mse",
                           optimizer=SGD, epochs=2)
    assert history["loss"].dtype == jnp.float64


DTYPE_DOORS = {
    "net.apply": lambda x, y: NET.apply(PARAMS, x),
    "jit(net.apply)": lambda x, y: jax.jit(NET.apply)(PARAMS, x),
    "net.forward": lambda x, y: NET.forward(PARAMS, x),
    "net.backward": lambda x, y: NET.backward(PARAMS, x, None, jnp.ones((4, 1), x.dtype)),
    "predict": lambda x, y: jaxnet.predict(NET, PARAMS, x),
    "evaluate": lambda x, y: evaluate(NET, PARAMS, x, y, "mse"),
    "backprop": lambda x, y: backprop(NET, PARAMS, x, y, "mse"),
    "autodiff": lambda x, y: autodiff(NET, PARAMS, x, y, "mse"),
    "fit": lambda x, y: fit(NET, PARAMS, x, y, loss="mse", optimizer=SGD, epochs=1),
}


@pytest.mark.parametrize("door", DTYPE_DOORS)
def test_one_dtype_rule_at_every_door(door, x64):
    """float64 data with float32 params: every door raises the same error (apply used to promote
    silently to float64 while predict refused); numpy float64 data is float64 here (x64 on)."""
    call = DTYPE_DOORS[door]
    for x in (X.astype(jnp.float64), np.asarray(X, np.float64)):
        with pytest.raises(TypeError, match=r"^x: dtype float64 differs from the params' float32; cast it with "
                                            r"x.astype\(jnp.float32\) \(or the params to float64\)"):
            call(x, Y)
    call(X, Y)  # float32 data: fine


def test_numpy_float64_is_float32_without_x64_and_leaks_no_warning():
    """With x64 off JAX computes numpy float64 as float32: such data and params are accepted, and the
    optimizer state is float32 (optax used to warn that float64 was requested)."""
    params64 = jax.tree.map(lambda a: np.asarray(a, np.float64), PARAMS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for optimizer in (SGD, jaxnet.optim.optimizer("adam", 0.01, plateau=True)):
            result = fit(NET, params64, np.asarray(X, np.float64), Y, loss="mse", optimizer=optimizer, epochs=2)
            assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(result.params))
        assert NET.apply(params64, np.asarray(X, np.float64)).dtype == jnp.float32


# ------------------------------------------------------------------------------------------------
# No false alarms: valid edge cases pass
# ------------------------------------------------------------------------------------------------


def test_valid_edge_cases_are_accepted():
    assert NET.apply(PARAMS, X[0]).shape == (1,)  # one example, no batch axis
    assert NET.apply(PARAMS, X[:0]).shape == (0, 1)  # an empty batch through apply is fine
    fit_with(x=np.asarray(X, np.float64), y=np.asarray(Y, np.float64))()  # numpy float64 becomes float32 (x64 off)
    fit_with(x=X.tolist(), y=Y.tolist())()  # nested lists
    fit_with(batch_size=4, key=jax.random.PRNGKey(0))()  # batch_size == n, a raw uint32 key
    # targets (checked by the same code in fit, backprop, autodiff, gradcheck and evaluate)
    assert np.isfinite(backprop(NET, PARAMS, X, Y > 0.5, "binary_crossentropy")[0])  # bool targets
    assert np.isfinite(backprop(NET, PARAMS, X, Y.astype(jnp.int32), "mse")[0])  # exact integer targets
    one_hot = data.one_hot(LABELS, 3)
    assert np.isfinite(backprop(NET3, PARAMS3, X, one_hot, "softmax_cross_entropy")[0])  # one-hot targets
    assert np.isfinite(backprop(NET3, PARAMS3, X, 0.5 * one_hot + 0.5 / 3, "softmax_cross_entropy")[0])  # soft
    free = serial(Dense(3), Sigmoid)  # no input shape at construction: taken from x
    free_params = free.init(jax.random.key(0), (5,))[1]
    assert free.apply(free_params, jnp.ones((2, 5))).shape == (2, 3)
    custom = NET.init(jax.random.key(0), (4,))[1]  # mlp params for another input size than its sizes say
    assert NET.apply(custom, jnp.ones((2, 4))).shape == (2, 1)
    assert gradcheck(NET, PARAMS, X, Y, "mse", atol=0.0).loss > 0


# ------------------------------------------------------------------------------------------------
# Validation costs nothing in compiled code and never breaks jit/vmap/grad
# ------------------------------------------------------------------------------------------------


def test_compiled_code_is_unchanged_by_validation():
    def bare_apply(params, x):
        for layer, p in zip(NET.layers, params):
            x = layer.apply(p, x)
        return x

    assert str(jax.make_jaxpr(NET.apply)(PARAMS, X)) == str(jax.make_jaxpr(bare_apply)(PARAMS, X))
    bare_mse = lambda p, t: jnp.mean(jnp.square(p - t))  # noqa: E731
    assert str(jax.make_jaxpr(losses.mse)(Y, Y)) == str(jax.make_jaxpr(bare_mse)(Y, Y))
    # targets known at trace time are checked then, so nothing is added; traced targets get the NaN
    # guard for values outside [0, 1] (tests/test_losses.py)
    bare_bce_grad = lambda z: (activations.sigmoid(z) - Y) / z.size  # noqa: E731
    assert (str(jax.make_jaxpr(lambda z: losses.sigmoid_binary_crossentropy_derivative(z, Y))(Y)) ==
            str(jax.make_jaxpr(bare_bce_grad)(Y)))


def test_transformations_still_work():
    np.testing.assert_array_equal(jax.jit(NET.apply)(PARAMS, X), NET.apply(PARAMS, X))
    keys = jax.random.split(jax.random.key(1), 3)
    stacked = jax.vmap(NET.init)(keys)[1]
    outputs = jax.vmap(NET.apply, in_axes=(0, None))(stacked, X)
    np.testing.assert_array_equal(outputs[1], NET.apply(NET.init(keys[1])[1], X))
    loss, grads = jax.jit(backprop, static_argnums=(0, 4))(NET, PARAMS, X, Y, "mse")
    loss_ref, grads_ref = jax.jit(autodiff, static_argnums=(0, 4))(NET, PARAMS, X, Y, "mse")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grads, grads_ref)
    assert np.isfinite(jax.grad(losses.softmax_cross_entropy)(jnp.zeros((2, 3)), jnp.array([0, 2]))).all()
    rates = jnp.array([0.1, 0.5])
    history = jax.vmap(lambda lr: fit(NET, PARAMS, X, Y, loss="mse", optimizer=optim.sgd(lr), epochs=3))(rates).history
    assert history["loss"].shape == (2, 3)


# ------------------------------------------------------------------------------------------------
# Fuzz: malformed input anywhere gives only the documented errors
# ------------------------------------------------------------------------------------------------

def test_complex_inputs_are_refused_everywhere_naming_x():
    # net.apply used to drop the imaginary part silently (a float32 output from complex64 inputs)
    from jaxnet import predict

    for x in (X.astype(jnp.complex64), np.asarray(X, np.complex128) + 1j, [[1j, 0.0]]):
        calls = [lambda: NET.apply(PARAMS, x), lambda: NET.forward(PARAMS, x), lambda: jax.jit(NET.apply)(PARAMS, x),
                 lambda: NET.backward(PARAMS, x, None, jnp.ones((np.shape(x)[0], 1))),
                 lambda: predict(NET, PARAMS, x), lambda: fit_with(x=x)(), lambda: backprop(NET, PARAMS, x, Y, "mse"),
                 lambda: evaluate(NET, PARAMS, x, Y, "mse"), lambda: gradcheck(NET, PARAMS, x, Y, "mse")]
        if np.shape(x)[0] != 4:
            calls = calls[:5]
        for bad in calls:
            with pytest.raises(TypeError, match=r"^x: expected .*real floating-point.* got dtype complex"):
                bad()


ENTRIES = ("fit", "backprop", "autodiff", "gradcheck", "evaluate", "apply")


def call(entry, spec):
    net, params, x, y, loss = spec["net"], spec["params"], spec["x"], spec["y"], spec["loss"]
    if entry == "fit":
        return fit(net, params, x, y, loss=loss, optimizer=spec.get("optimizer", SGD), epochs=spec.get("epochs", 2),
                   **spec.get("fit", {}))
    if entry == "apply":
        return net.apply(params, x)
    if entry == "gradcheck":
        return gradcheck(net, params, x, y, loss, max_fd_coords=4)
    return {"backprop": backprop, "autodiff": autodiff, "evaluate": evaluate}[entry](net, params, x, y, loss)


@st.composite
def malformed_calls(draw):
    """(entry point, arguments, name the error must start with): exactly one argument is broken."""
    task = draw(st.sampled_from(["mse", "binary_crossentropy", "softmax_cross_entropy"]))
    n = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    net, params = (NET3, PARAMS3) if task == "softmax_cross_entropy" else (NET, PARAMS)
    x = jnp.asarray(rng.uniform(-1, 1, (n, 2)), jnp.float32)
    y = (jnp.asarray(rng.integers(0, 3, n)) if task == "softmax_cross_entropy"
         else jnp.asarray(rng.integers(0, 2, (n, 1)), jnp.float32))
    spec = dict(net=net, params=params, x=x, y=y, loss=task)
    fault = draw(st.sampled_from([
        "x features", "x rank", "x dtype", "x non-finite", "x empty", "x not an array", "y rows", "y shape",
        "y non-finite", "y range", "params length", "params leaf shape", "params keys", "params leaf dtype",
        "params type", "loss name", "fit setting"]))
    entries = ENTRIES
    index = tuple(int(rng.integers(0, s)) for s in (n, 2))  # an entry of x (or of one-hot targets)
    y_index = index[:1] + (0,) * (y.ndim - 1)  # an entry of y
    if fault == "x features":
        spec["x"] = jnp.ones((n, draw(st.sampled_from([0, 1, 3, 5]))))
        expect = "x"
    elif fault == "x rank":
        spec["x"] = jnp.ones((n, 2, draw(st.integers(1, 3))))
        expect = "x"
    elif fault == "x dtype":
        spec["x"] = x.astype(draw(st.sampled_from([jnp.int32, jnp.bool_, jnp.uint8, jnp.complex64])))
        expect = "x"
    elif fault == "x non-finite":
        spec["x"] = x.at[index].set(draw(st.sampled_from([np.nan, np.inf, -np.inf])))
        entries, expect = ENTRIES[:-1], "x"  # apply computes NaN outputs from NaN inputs, as it should
    elif fault == "x empty":
        spec["x"], spec["y"] = x[:0], y[:0]
        entries, expect = ENTRIES[:-1], "x"
    elif fault == "x not an array":
        spec["x"] = draw(st.sampled_from([None, "x", object(), {"a": 1}]))
        expect = "x"
    elif fault == "y rows":
        doubled = jnp.concatenate([y, y])
        spec["y"] = doubled[: n + draw(st.sampled_from([-1, 1, 2]))] if n > 1 else doubled
        entries, expect = ENTRIES[:-1], "y"
    elif fault == "y shape":
        spec["y"] = y[..., None] if task == "softmax_cross_entropy" else draw(st.sampled_from([y.ravel(), y[..., None],
                                                                                                jnp.tile(y, (1, 2))]))
        entries, expect = ENTRIES[:-1], "y"
    elif fault == "y non-finite":
        spec["y"] = jnp.asarray(y, jnp.float32).at[y_index].set(np.nan)
        if task == "softmax_cross_entropy":  # float targets need the logits' shape: one-hot with a NaN
            spec["y"] = data.one_hot(y, 3).at[index].set(np.nan)
        entries, expect = ENTRIES[:-1], "y"
    elif fault == "y range":
        bad = draw(st.sampled_from([-1, 2, 3, 100]))
        spec["y"] = y.at[y_index].set(bad if task != "mse" else np.nan)
        entries, expect = ENTRIES[:-1], "y"
    elif fault == "params length":
        spec["params"] = draw(st.sampled_from([params[:-1], params + ({},), params[:1], ()]))
        expect = "params"
    elif fault == "params leaf shape":
        i, key = draw(st.sampled_from([(0, "W"), (0, "b"), (2, "W"), (2, "b")]))
        shape = params[i][key].shape
        wrong = tuple(d + draw(st.sampled_from([-1, 1, 2])) for d in shape) + draw(st.sampled_from([(), (1,)]))
        spec["params"] = with_leaf(params, i, key, jnp.ones(wrong))
        expect = f"params[{i}]['{key}']"
    elif fault == "params keys":
        i = draw(st.sampled_from([0, 2]))
        layer = dict(params[i])
        layer[draw(st.sampled_from(["w", "bias", "W2"]))] = layer.pop(draw(st.sampled_from(["W", "b"])))
        spec["params"] = params[:i] + (layer,) + params[i + 1:]
        expect = f"params[{i}]"
    elif fault == "params leaf dtype":
        i, key = draw(st.sampled_from([(0, "W"), (2, "b")]))
        spec["params"] = with_leaf(params, i, key, params[i][key].astype(draw(st.sampled_from([jnp.int32, jnp.bool_]))))
        expect = f"params[{i}]['{key}']"
    elif fault == "params type":
        spec["params"] = draw(st.sampled_from([None, "params", {"W": 1.0}, 3.0]))
        expect = "params"
    elif fault == "loss name":
        spec["loss"] = draw(st.text(min_size=1, max_size=8).filter(lambda s: s not in losses.LOSSES))
        entries, expect = ENTRIES[:-1], "loss"
    else:  # a bad fit setting
        setting, value = draw(st.sampled_from([
            ("epochs", 0), ("epochs", -3), ("epochs", 1.5), ("epochs", "10"), ("optimizer", "adam"),
            ("optimizer", optax.sgd), ("batch_size", 0), ("batch_size", 7), ("batch_size", 2.0), ("key", 3),
            ("key", jnp.zeros(2)), ("grad", "fd"), ("opt_state", ()), ("validation_data", (x,)),
            ("validation_data", (x[:, :1], y))]))
        expect = {"validation_data": "validation_data"}.get(setting, setting)
        if setting in ("epochs", "optimizer"):
            spec[setting] = value
        else:
            spec["fit"] = {setting: value}
            if setting == "key":
                spec["fit"]["batch_size"] = 1
            if setting == "batch_size" and value == 7:
                spec["fit"]["key"] = jax.random.key(0)
        entries = ("fit",)
    return draw(st.sampled_from(entries)), spec, expect, fault


@settings(max_examples=150)  # the faults are drawn from small finite sets: 150 covers each many times
@given(malformed_calls())
def test_fuzz_malformed_input_gives_only_documented_errors(case):
    entry, spec, expect, fault = case
    try:
        result = call(entry, spec)
    except (ValueError, TypeError) as err:
        message = str(err)
        # jaxnet's own messages start with the argument's name; an error from deep inside jax or XLA
        # (e.g. "dot_general requires contracting dimensions...") does not, and fails here
        assert message.startswith(expect), f"{entry} / {fault}: {type(err).__name__}: {message}"
    else:
        pytest.fail(f"{entry} / {fault}: no error, returned {type(result).__name__}")


@settings(max_examples=60)
@given(st.data())
def test_fuzz_losses_optimizers_and_helpers(tmp_path_factory, data_):
    """The smaller public functions: losses (value and gradient), optimizer factories, one_hot, mlp."""
    kind = data_.draw(st.sampled_from(["loss", "optimizer", "one_hot", "mlp", "checkpoint"]))
    if kind == "loss":
        name = data_.draw(st.sampled_from(sorted(losses.LOSSES)))
        fn = data_.draw(st.sampled_from([losses.LOSSES[name].value, losses.LOSSES[name].derivative]))
        pred_name, true_name = fn.__code__.co_varnames[:2]  # e.g. ("logits", "labels")
        n, k = data_.draw(st.integers(1, 4)), data_.draw(st.integers(2, 4))
        pred = jnp.zeros((n, k))
        good = jnp.zeros(n, jnp.int32) if name == "softmax_cross_entropy" else jnp.zeros((n, k))
        bad, expect = data_.draw(st.sampled_from([
            ((pred.astype(jnp.int32), good), pred_name),
            ((pred, good[..., None]), true_name),
            ((pred, jnp.zeros((n + 1,) + good.shape[1:], good.dtype)), true_name),
            ((pred, None), true_name),
        ]))
        call_ = lambda: fn(*bad)  # noqa: E731
    elif kind == "optimizer":
        name = data_.draw(st.sampled_from(list(optim.OPTIMIZERS) + ["adamw", "SGD", ""]))
        lr = data_.draw(st.sampled_from([0.1, 0.0, -1.0, float("inf"), float("nan"), "0.1", None, True, jnp.array([])]))
        if name in optim.OPTIMIZERS and isinstance(lr, float) and lr == 0.1:
            name = "adamw"
        call_ = lambda: optim.optimizer(name, lr)  # noqa: E731
        expect = "optimizer" if name not in optim.OPTIMIZERS else "learning_rate"
    elif kind == "one_hot":
        labels, classes, expect = data_.draw(st.sampled_from([
            (jnp.array([0.0, 1.0]), 3, "labels: "), (jnp.array([0, 3]), 3, "labels: "),
            (jnp.array([-1]), 2, "labels: "), (jnp.array([0]), 0, "n_classes: "),
            (jnp.array([0]), 2.0, "n_classes: ")]))
        call_ = lambda: data.one_hot(labels, classes)  # noqa: E731
    elif kind == "mlp":
        kwargs, expect = data_.draw(st.sampled_from([
            ({"layer_sizes": [2]}, "layer_sizes"), ({"layer_sizes": [2, -1, 1]}, "layer_sizes[1]"),
            ({"layer_sizes": [2, 3.5, 1]}, "layer_sizes[1]"), ({"layer_sizes": "21"}, "layer_sizes[0]"),
            ({"layer_sizes": [2, 1], "activation": "Sigmoid"}, "activation"),
            ({"layer_sizes": [2, 1], "output_activation": None, "activation": 1}, "activation"),
            ({"layer_sizes": [2, 1], "initializer": "he"}, "initializer"),
            ({"layer_sizes": [2, 1], "initializer": 3}, "initializer")]))
        call_ = lambda: mlp(**kwargs)  # noqa: E731
    else:
        blob = data_.draw(st.binary(max_size=64))
        blob = data_.draw(st.sampled_from([blob, b"PK\x03\x04" + blob, b"\x1f\x8b" + blob,
                                           struct.pack(">I", 2051) + blob]))
        path = tmp_path_factory.mktemp("fuzz") / "fuzz.npz"
        path.write_bytes(blob)
        call_, expect = (lambda: checkpoint.load(path)), str(path)
    try:
        result = call_()
    except (ValueError, TypeError) as err:
        assert str(err).startswith(expect), f"{kind}: {type(err).__name__}: {err}"
    else:
        pytest.fail(f"{kind}: no error, returned {type(result).__name__}")


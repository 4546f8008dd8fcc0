"""Networks and backprop: structure, shapes, field cases G3/G4, and the property test that the
hand-derived delta recursion equals jax.grad (and finite differences) in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxnet
from jaxnet import Dense, Sigmoid, backprop, gradcheck, mlp, serial


def test_mlp_structure_and_shapes():
    net = mlp([3, 5, 2], activation="relu", output_activation="identity")
    out_shape, params = net.init(jax.random.key(0))
    assert out_shape == (2,)
    assert jax.tree.map(jnp.shape, params) == ({"W": (3, 5), "b": (5,)}, {}, {"W": (5, 2), "b": (2,)}, {})
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    x = jax.random.normal(jax.random.key(1), (7, 3))
    assert net.apply(params, x).shape == (7, 2)
    # one example == a batch of one
    np.testing.assert_allclose(net.apply(params, x[0]), net.apply(params, x[:1])[0], rtol=1e-6)
    outs = net.forward(params, x)
    assert [o.shape for o in outs] == [(7, 3), (7, 5), (7, 5), (7, 2), (7, 2)]


def test_apply_is_jittable_and_vmappable():
    net = mlp([2, 4, 1])
    _, params = net.init(jax.random.key(0))
    x = jnp.ones((6, 2))
    np.testing.assert_allclose(jax.jit(net.apply)(params, x), net.apply(params, x), rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(net.apply, in_axes=(None, 0))(params, x), net.apply(params, x), rtol=1e-6)


def test_float64_params_and_inputs(x64):
    net = mlp([2, 3, 1], dtype=jnp.float64)
    _, params = net.init(jax.random.key(0))
    assert net.apply(params, jnp.ones((2, 2), jnp.float64)).dtype == jnp.float64


def g3_params():
    return ({"W": jnp.array([[0.3, -0.1], [0.2, 0.4]]), "b": jnp.array([0.1, -0.2])}, {},
            {"W": jnp.array([[0.5], [-0.3]]), "b": jnp.array([0.05])}, {})


def test_g3_hand_computed_gradients_and_batch_mean():
    net = mlp([2, 2, 1])
    x, y = jnp.array([[0.5, -1.0]]), jnp.array([[1.0]])
    for grad_fn in (jaxnet.backprop, jaxnet.autodiff):
        loss, g = grad_fn(net, g3_params(), x, y, "mse")
        np.testing.assert_allclose(loss, 0.2019033, rtol=1e-6)
        np.testing.assert_allclose(g[0]["W"], [[-0.0138889, 0.0075163], [0.0277778, -0.0150326]], atol=1e-7)
        np.testing.assert_allclose(g[0]["b"], [-0.0277778, 0.0150326], atol=1e-7)
        np.testing.assert_allclose(g[2]["W"], [[-0.1139597], [-0.0762677]], atol=1e-7)
        np.testing.assert_allclose(g[2]["b"], [-0.2223616], atol=1e-7)
        assert g[1] == {} and g[3] == {}
        # the same sample four times: a mean loss gives the same gradients, not four times them
        loss4, g4 = grad_fn(net, g3_params(), jnp.tile(x, (4, 1)), jnp.tile(y, (4, 1)), "mse")
        np.testing.assert_allclose(loss4, loss, rtol=1e-6)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8), g4, g)


def test_g4_zero_weights_give_zero_hidden_gradients_forever():
    net = mlp([2, 2, 1], initializer="zeros")
    _, params = net.init(jax.random.key(0))
    x, y = jaxnet.data.xor()
    _, g = backprop(net, params, x, y, "mse")
    assert not jnp.any(g[0]["W"]) and not jnp.any(g[0]["b"])
    trained, _, _, history = jaxnet.fit(net, params, x, y, loss="mse", optimizer=jaxnet.optim.sgd(1.0), epochs=300)
    np.testing.assert_allclose(history["loss"], 0.25, atol=1e-7)
    assert not jnp.any(trained[0]["W"])


def test_g4_equal_weights_keep_hidden_columns_equal():
    net = mlp([2, 2, 1])
    params = ({"W": jnp.full((2, 2), 0.3), "b": jnp.zeros(2)}, {}, {"W": jnp.full((2, 1), 0.5), "b": jnp.zeros(1)}, {})
    x, y = jaxnet.data.xor()
    trained, _, _, _ = jaxnet.fit(net, params, x, y, loss="mse", optimizer=jaxnet.optim.sgd(1.0), epochs=300)
    np.testing.assert_array_equal(trained[0]["W"][:, 0], trained[0]["W"][:, 1])
    assert not jnp.allclose(trained[0]["W"], params[0]["W"])  # it did train


def test_serial_composes_and_nests():
    inner = serial(Dense(3), Sigmoid)
    net = serial(inner, Dense(1), input_shape=(2,))
    _, params = net.init(jax.random.key(0))
    x, y = jaxnet.data.xor()
    with jax.enable_x64(True):
        report = gradcheck(net, params, x, y, "mse")
    assert report.passed, str(report)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="layer_sizes"):
        mlp([2])
    with pytest.raises(ValueError, match=r"layer_sizes\[1\]"):
        mlp([2, 0, 1])
    with pytest.raises(ValueError, match="activation.*relu"):
        mlp([2, 3, 1], activation="relux")
    with pytest.raises(TypeError, match=r"layers\[1\]"):
        serial(Dense(2), "relu")
    with pytest.raises(ValueError, match="input_shape"):
        serial(Dense(2)).init(jax.random.key(0))


LOSS_OUTPUTS = {
    "mse": ["sigmoid", "relu", "tanh", "identity", "softmax"],
    "binary_crossentropy": ["sigmoid"],
    "sigmoid_binary_crossentropy": ["identity"],
    "softmax_cross_entropy": ["identity"],
}


@st.composite
def network_cases(draw):
    loss = draw(st.sampled_from(sorted(LOSS_OUTPUTS)))
    output = draw(st.sampled_from(LOSS_OUTPUTS[loss]))
    hidden = draw(st.lists(st.integers(1, 16), min_size=1, max_size=4))
    n_in = draw(st.integers(1, 16))
    n_out = draw(st.integers(1, 5)) if loss != "softmax_cross_entropy" else draw(st.integers(2, 5))
    if output == "softmax":
        n_out = max(n_out, 2)
    batch = draw(st.integers(1, 64))
    activation = draw(st.sampled_from(["sigmoid", "relu", "tanh", "identity"]))
    seed = draw(st.integers(0, 2**16))
    return loss, output, [n_in, *hidden, n_out], batch, activation, seed


def targets_for(loss, key, batch, n_out):
    if loss == "softmax_cross_entropy":
        return jax.random.randint(key, (batch,), 0, n_out)
    if loss == "mse":
        return jax.random.normal(key, (batch, n_out), jnp.float64)
    return jax.random.bernoulli(key, 0.5, (batch, n_out)).astype(jnp.float64)


# 8 examples: each compiles three float64 programs for a new architecture (the suite's costliest
# test); the loss/output/activation pairs are also covered case by case in test_classification.py
# and test_kinks_and_saturation_both_routes_agree below.
@settings(max_examples=8)
@given(network_cases())
def test_property_backprop_equals_jax_grad_and_finite_differences(case):
    loss, output, sizes, batch, activation, seed = case
    with jax.enable_x64(True):
        net = mlp(sizes, activation=activation, output_activation=output, dtype=jnp.float64)

        def case_inputs(key):  # one compiled program per example instead of one per eager op and shape
            k_init, k_x, k_y = jax.random.split(key, 3)
            _, params = net.init(k_init)
            # random biases too: with zero biases, dead ReLU rows put the next pre-activation exactly on
            # the kink, where finite differences straddle it (test_kinks_... covers those points)
            leaves, tree = jax.tree.flatten(params)
            keys = jax.random.split(k_init, len(leaves))
            params = jax.tree.unflatten(tree, [p + 0.1 * jax.random.normal(k, p.shape, p.dtype)
                                               for p, k in zip(leaves, keys)])
            x = jax.random.normal(k_x, (batch, sizes[0]), jnp.float64)
            return params, x, targets_for(loss, k_y, batch, sizes[-1])

        params, x, y = jax.jit(case_inputs)(jax.random.key(seed))
        report = gradcheck(net, params, x, y, loss, max_fd_coords=512)
        assert report.passed, f"{sizes} {activation}->{output} {loss} batch {batch}\n{report}"


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_kinks_and_saturation_both_routes_agree(activation, x64):
    """Pre-activations exactly at relu's kink and deep in sigmoid/tanh saturation."""
    net = mlp([2, 3, 1], activation=activation, output_activation="sigmoid", dtype=jnp.float64)
    scale = 0.0 if activation == "relu" else 40.0
    params = ({"W": jnp.array([[1.0, -1.0, 0.0], [1.0, 1.0, 0.0]]) * max(scale, 1.0), "b": jnp.zeros(3)}, {},
              {"W": jnp.array([[0.5], [-0.5], [1.0]]) * max(scale, 1.0), "b": jnp.zeros(1)}, {})
    x = jnp.array([[0.0, 0.0], [1.0, -1.0], [2.0, 3.0], [-1.0, -2.0]])  # relu inputs of exactly 0 included
    y = jnp.array([[1.0], [0.0], [1.0], [0.0]])
    for loss in ("mse", "binary_crossentropy"):
        l_hand, g_hand = backprop(net, params, x, y, loss)
        l_auto, g_auto = jaxnet.autodiff(net, params, x, y, loss)
        np.testing.assert_allclose(l_hand, l_auto, rtol=1e-12)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12), g_hand, g_auto)
        assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(g_hand))


# One constructor convention: a layer without parameters to set is written with or without parentheses.
PARAMETER_FREE = [jaxnet.Relu, jaxnet.Sigmoid, jaxnet.Tanh, jaxnet.Identity, jaxnet.Softmax]


@pytest.mark.parametrize("layer", PARAMETER_FREE, ids=lambda layer: layer.name)
def test_activation_layers_called_with_no_arguments_are_themselves(layer):
    assert layer() is layer and layer()() is layer


def test_both_spellings_build_the_same_network():
    x = jax.random.normal(jax.random.key(1), (5, 2, 3, 3))
    bare = serial(jaxnet.Flatten, Dense(4), jaxnet.BatchNorm, jaxnet.Relu, Dense(1), Sigmoid, input_shape=(2, 3, 3))
    called = serial(jaxnet.Flatten(), Dense(4), jaxnet.BatchNorm(), jaxnet.Relu(), Dense(1), Sigmoid(),
                    input_shape=(2, 3, 3))
    assert bare == called and hash(bare) == hash(called)
    assert [type(layer) for layer in bare.layers] == [type(layer) for layer in called.layers]
    _, params = bare.init(jax.random.key(0))
    state = bare.init_state((2, 3, 3))
    np.testing.assert_array_equal(bare.apply(params, x, state=state), called.apply(params, x, state=state))


@pytest.mark.parametrize("call,message", [
    (lambda: serial(Dense(4), Dense), r"^layers\[1\]: Dense is a layer class that needs arguments: create the "
                                      r"layer, e.g. Dense\(n_out\)$"),
    (lambda: serial(jaxnet.Dropout), r"^layers\[0\]: Dropout is a layer class .* Dropout\(rate\)$"),
    (lambda: jaxnet.Relu(3), r"^Relu: an activation layer takes no arguments \(Relu and Relu\(\) are the same "
                             r"layer\); to apply it write Relu.apply\(\{\}, x\)"),
    (lambda: jaxnet.Sigmoid(jnp.ones(3)), r"^Sigmoid: .* jaxnet.activations.sigmoid\(x\) for the function$"),
    (lambda: serial("relu"), r"^layers\[0\]: .* got the string 'relu'; for an activation write "
                             r"jaxnet.activation_layer\('relu'\)"),
    (lambda: serial(Dense(2), jax.nn.relu), r"^layers\[1\]: .* a function is not a layer: for an activation write "
                                            r"jaxnet.activation_layer\('relu'\)"),
    (lambda: serial(5), r"^layers\[0\]: expected a jaxnet Layer or Network, got int$"),
])
def test_a_wrong_spelling_says_what_to_write(call, message):
    with pytest.raises(TypeError, match=message):
        call()

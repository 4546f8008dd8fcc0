"""A network's output layer against its loss (`jaxnet.validate.check_output_pairing`): a double
softmax or sigmoid and probabilities expected from a non-sigmoid output raise with the fix; ReLU or
tanh on the logits warns. Each case also shows the fault the check prevents, with plain jax."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnet import Dense, Softmax, Tanh, losses, mlp, serial
from jaxnet.validate import check_output_pairing


def no_warnings(net, loss):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_output_pairing(net, loss)


def test_double_softmax_raises_with_the_fix():
    # the fault: a softmax before softmax_cross_entropy squashes the logits into [0, 1], so even a
    # perfectly confident network cannot get the loss below -log(e / (e + k - 1))
    probs = jax.nn.softmax(jnp.array([[100.0, 0.0, 0.0]]))
    assert float(losses.softmax_cross_entropy(probs, jnp.array([0]))) > 0.55
    net = mlp([4, 8, 3], activation="relu", output_activation="softmax")
    with pytest.raises(ValueError, match=r"^net: its output layer is softmax, but softmax_cross_entropy takes "
                                         r"logits .*double softmax.*output_activation='identity'"):
        check_output_pairing(net, "softmax_cross_entropy")
    with pytest.raises(ValueError, match="double softmax"):
        check_output_pairing(serial(Dense(3), Softmax), losses.LOSSES["softmax_cross_entropy"])


def test_double_sigmoid_raises():
    with pytest.raises(ValueError, match=r"^net: its output layer is sigmoid, .*double sigmoid.*binary_crossentropy"):
        check_output_pairing(mlp([2, 3, 1]), "sigmoid_binary_crossentropy")


@pytest.mark.parametrize("output", ["identity", "relu", "tanh", "softmax"])
def test_probability_loss_after_a_non_sigmoid_output_raises(output):
    # the fault: outputs beyond [0, 1] are not probabilities (eagerly an error, traced a NaN loss)
    with pytest.raises(ValueError, match=r"^y_pred: expected probabilities"):
        losses.binary_crossentropy(jnp.array([[-3.0]]), jnp.ones((1, 1)))
    with pytest.raises(ValueError, match=rf"^net: its output layer is {output}, but binary_crossentropy expects "
                                         r"probabilities .*output_activation='sigmoid' or "
                                         r"loss='sigmoid_binary_crossentropy'"):
        check_output_pairing(mlp([2, 3, 1], activation="tanh", output_activation=output), "binary_crossentropy")


def test_a_dense_output_counts_as_identity():
    with pytest.raises(ValueError, match=r"^net: its output layer is identity"):
        check_output_pairing(serial(Dense(3), Tanh, Dense(1)), "binary_crossentropy")
    no_warnings(serial(Dense(3), Tanh, Dense(1)), "sigmoid_binary_crossentropy")


@pytest.mark.parametrize("hidden", ["relu", "tanh"])
@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "sigmoid_binary_crossentropy"])
def test_bounded_output_on_logits_warns(hidden, loss):
    net = mlp([4, 8, 3], activation=hidden)  # output_activation defaults to the hidden one
    assert net.layers[-1].name == hidden
    with pytest.warns(UserWarning, match=rf"^net: its output layer is {hidden}, which bounds the logits .*"
                                         r"output_activation='identity'"):
        check_output_pairing(net, loss)


@pytest.mark.parametrize("output, loss", [
    ("identity", "softmax_cross_entropy"), ("identity", "sigmoid_binary_crossentropy"),
    ("sigmoid", "binary_crossentropy"), ("sigmoid", "mse"), ("softmax", "mse"), ("relu", "mse"),
    ("identity", "mse"), ("tanh", "mse"),
])
def test_right_pairings_pass_silently(output, loss):
    no_warnings(mlp([4, 8, 3], activation="relu", output_activation=output), loss)


def test_a_user_defined_loss_is_judged_by_its_record():
    logits_loss = losses.Loss("focal", None, None, from_logits=True)
    with pytest.raises(ValueError, match=r"^net: its output layer is softmax, but focal takes logits"):
        check_output_pairing(mlp([4, 3], output_activation="softmax"), logits_loss)
    probability_loss = losses.Loss("dice", None, None, output_activation="sigmoid")
    with pytest.raises(ValueError, match=r"^net: its output layer is identity, but dice expects probabilities"):
        check_output_pairing(mlp([4, 3], output_activation="identity"), probability_loss)
    no_warnings(mlp([4, 3], output_activation="softmax"), losses.Loss("mine", None, None))  # no contract: silent


def test_the_pairing_check_names_no_false_fault_for_the_right_network():
    """The recommended pairing trains: identity logits with softmax_cross_entropy reach a low loss."""
    from jaxnet import fit, optim

    x = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    labels = jnp.array([0, 1, 2, 0])
    net = mlp([2, 8, 3], activation="tanh", output_activation="identity")
    no_warnings(net, "softmax_cross_entropy")
    result = fit(net, net.init(jax.random.key(0))[1], x, labels, loss="softmax_cross_entropy",
                 optimizer=optim.sgd(0.5), epochs=300)
    history = result[-1]
    assert float(np.asarray(history["loss"])[-1]) < 0.1

"""The converters between the tutorial's parameter layout (lists of W (n_in, n_out) and (1, n) biases,
jaxnet.reference) and jaxnet's mlp params: round trips, the same network output both ways (the numpy
forward pass shares no code with jaxnet's), and errors that name the entry."""

import jax
import numpy as np
import pytest

import jaxnet
from jaxnet import reference


def tutorial_params(sizes, seed=0):
    """As the tutorial makes them: randn * sqrt(2 / n_in) weights and zero (1, n) biases, float64."""
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal((n_in, n_out)) * np.sqrt(2 / n_in) for n_in, n_out in zip(sizes, sizes[1:])]
    biases = [rng.standard_normal((1, n_out)) for n_out in sizes[1:]]  # non-zero, so that a mix-up shows
    return weights, biases


def test_tutorial_params_give_the_tutorials_outputs_in_jaxnet():
    weights, biases = tutorial_params([2, 8, 4, 1])
    params = reference.to_jaxnet_params(weights, biases)
    net = jaxnet.mlp([2, 8, 4, 1], activation="sigmoid")
    assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, net.init(jax.random.key(0))[1])
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(params))
    x = np.random.default_rng(1).standard_normal((16, 2))
    want = reference.forward(weights, biases, x)[0][-1]
    np.testing.assert_allclose(net.apply(params, x.astype(np.float32)), want, rtol=1e-5, atol=1e-6)


def test_round_trips():
    weights, biases = tutorial_params([3, 5, 2])
    back_w, back_b = reference.from_jaxnet_params(reference.to_jaxnet_params(weights, biases, dtype=np.float64))
    for got, want in zip(back_w + back_b, weights + [b.reshape(-1) for b in biases]):
        np.testing.assert_array_equal(got, want)
    _, params = jaxnet.mlp([3, 5, 2]).init(jax.random.key(0))
    again = reference.to_jaxnet_params(*reference.from_jaxnet_params(params))
    assert jax.tree.structure(again) == jax.tree.structure(params)
    jax.tree.map(np.testing.assert_array_equal, again, params)
    flat_biases = reference.to_jaxnet_params(weights, [b.reshape(-1) for b in biases])  # (n,) biases too
    jax.tree.map(np.testing.assert_array_equal, flat_biases, reference.to_jaxnet_params(weights, biases))


W, B = tutorial_params([2, 4, 1])


@pytest.mark.parametrize("weights,biases,error,message", [
    (W[0], B, TypeError, r"^weights: expected a list of arrays \(the tutorial's layout\), got ndarray"),
    ([], [], ValueError, r"^weights: expected at least one weight matrix"),
    (W, B[:1], ValueError, r"^biases: expected 2 biases, one per weight matrix, got 1"),
    ([W[0], W[1].T], B, ValueError, r"^weights\[1\]: expected 4 rows to follow weights\[0\] of shape \(2, 4\), "
                                    r"got shape \(1, 4\)"),
    ([W[0].ravel(), W[1]], B, ValueError, r"^weights\[0\]: expected a 2-D matrix \(n_in, n_out\), got shape \(8,\)"),
    (W, [B[0].T, B[1]], ValueError, r"^biases\[0\]: expected shape \(1, 4\) or \(4,\) to match weights\[0\] of "
                                    r"shape \(2, 4\), got \(4, 1\)"),
    ([W[0].astype(int), W[1]], B, TypeError, r"^weights\[0\]: expected a floating array, got dtype int"),
])
def test_bad_tutorial_params_name_the_entry(weights, biases, error, message):
    with pytest.raises(error, match=message):
        reference.to_jaxnet_params(weights, biases)

"""Initialisers: field cases I1 (exact scales, fans not swapped), G4 (symmetry broken), J1 (vmap over keys)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnet import initializers as I
from jaxnet import mlp

SHAPE = (300, 100)  # (fan_in, fan_out)


def test_i1_xavier_uniform_bound_and_std():
    w = I.xavier_uniform(jax.random.key(0), SHAPE)
    assert w.shape == SHAPE and w.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(w))) <= np.sqrt(6 / 400) + 1e-7
    np.testing.assert_allclose(jnp.std(w), np.sqrt(2 / 400), rtol=0.02)


@pytest.mark.parametrize("name,std", [("xavier_normal", np.sqrt(2 / 400)), ("he_normal", np.sqrt(2 / 300)),
                                      ("he_uniform", np.sqrt(2 / 300))])
def test_i1_stds_use_the_right_fans(name, std):
    w = I.get(name)(jax.random.key(1), SHAPE)
    np.testing.assert_allclose(jnp.std(w), std, rtol=0.02)
    np.testing.assert_allclose(jnp.mean(w), 0.0, atol=0.005)


def test_he_normal_is_untruncated():
    w = I.he_normal(jax.random.key(2), (1000, 1000))
    assert float(jnp.max(jnp.abs(w))) > 3 * np.sqrt(2 / 1000)  # a truncated normal stops at 2 std


def test_he_uniform_bound():
    w = I.he_uniform(jax.random.key(3), SHAPE)
    assert float(jnp.max(jnp.abs(w))) <= np.sqrt(6 / 300) + 1e-7


def test_normal_and_zeros():
    np.testing.assert_allclose(jnp.std(I.normal(0.01)(jax.random.key(4), SHAPE)), 0.01, rtol=0.02)
    assert not jnp.any(I.zeros(jax.random.key(5), SHAPE))
    with pytest.raises(ValueError, match="std"):
        I.normal(-1.0)
    with pytest.raises(ValueError, match="he_normal"):
        I.get("kaiming")


def test_g4_equal_layers_get_different_weights_from_one_key():
    net = mlp([8, 8, 8, 8])
    _, params = net.init(jax.random.key(0))
    w = [p["W"] for p in params if p]
    assert not jnp.allclose(w[1], w[2])
    for W in w:  # symmetry broken inside a layer too: no two hidden columns equal
        assert len({tuple(np.asarray(W[:, j]).round(7)) for j in range(W.shape[1])}) == W.shape[1]


def test_j1_vmap_over_keys_matches_each_key_bitwise():
    net = mlp([2, 4, 1])
    keys = jax.random.split(jax.random.key(0), 4)
    init = jax.jit(lambda k: net.init(k)[1])
    stacked = jax.vmap(init)(keys)
    for i in range(4):
        single = init(keys[i])
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[i], b), stacked, single)
    assert not jnp.allclose(stacked[0]["W"][0], stacked[0]["W"][1])
    # broadcasting one key (in_axes=None) would give identical lanes: that is not a seed sweep
    same = jax.vmap(lambda _: init(keys[0]))(jnp.arange(4))
    assert jnp.allclose(same[0]["W"][0], same[0]["W"][1])

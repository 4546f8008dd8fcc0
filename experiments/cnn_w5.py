"""W5 contenders: one training epoch of the book's SimpleConvNet, three ways, for the benchmark.

`w5_contenders()` returns callables that each train one epoch (Adam 1e-3, softmax cross-entropy,
float32) from the same initial params, block until done and return the epoch's mean batch loss:

- "jaxnet im2col": `jaxnet.fit` on `jaxnet.simple_convnet` (im2col Conv2D and MaxPool2D with their
  hand-derived backward passes), one compiled scan over the shuffled minibatches;
- "lax.conv + jax.grad": the same network written with `lax.conv_general_dilated` and
  `lax.reduce_window`, gradients by `jax.value_and_grad`, optax Adam, the same compiled scan;
- "numpy (book)": `jaxnet.reference_cnn`, the book's numpy im2col implementation and its Trainer's
  loop (batches drawn at random with replacement).

`w5_step_memory()` gives the compiled memory statistics of one training step of the two JAX
contenders. Nothing here times anything: the benchmark does.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

import jaxnet
from jaxnet import reference_cnn

LOSS = "softmax_cross_entropy"
LEARNING_RATE = 1e-3


def mnist_shaped(n: int = 10_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random MNIST-shaped data: images float32 (n, 1, 28, 28) uniform in [0, 1), labels int32 (n,) in 0..9."""
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28), np.float32), rng.integers(0, 10, n).astype(np.int32)


def lax_logits(params, x):
    """SimpleConvNet's logits from `jaxnet.simple_convnet`'s params, written with lax primitives."""
    conv, _, _, _, hidden, _, out = params
    z = lax.conv_general_dilated(x, conv["W"], (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW"))
    a = jax.nn.relu(z + conv["b"][None, :, None, None])
    pooled = lax.reduce_window(a, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    h = jax.nn.relu(pooled.reshape(x.shape[0], -1) @ hidden["W"] + hidden["b"])
    return h @ out["W"] + out["b"]


def _lax_loss(params, x, y):
    return optax.losses.softmax_cross_entropy_with_integer_labels(lax_logits(params, x), y).mean()


def _lax_step(optimizer):
    def step(carry, batch):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(_lax_loss)(params, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return step


def lax_epoch(optimizer, batch_size: int):
    """A jitted `(params, opt_state, x, y, key) -> (params, opt_state, mean loss)`: one epoch of shuffled
    full minibatches with `jax.grad` of the lax network (the remainder of n / batch_size is dropped)."""

    @jax.jit
    def epoch(params, opt_state, x, y, key):
        idx = jax.random.permutation(key, x.shape[0])[: x.shape[0] // batch_size * batch_size]
        idx = idx.reshape(-1, batch_size)
        (params, opt_state), losses = lax.scan(lambda c, i: _lax_step(optimizer)(c, (x[i], y[i])),
                                               (params, opt_state), idx)
        return params, opt_state, jnp.mean(losses)

    return epoch


def fit_shuffle_key(key: jax.Array) -> jax.Array:
    """The key with which a one-epoch `jaxnet.fit(..., key=key)` permutes its examples, so that the lax
    contender trains on the same batches (fit's shuffle stream, `jaxnet.train.epoch_keys`)."""
    from jaxnet.train import epoch_keys

    return epoch_keys(key, 1)[0][0]


def _init(seed: int):
    net = jaxnet.simple_convnet()
    return net, jax.jit(lambda k: net.init(k)[1])(jax.random.key(seed))


def w5_contenders(x: np.ndarray | None = None, y: np.ndarray | None = None, *, batch_size: int = 100,
                  seed: int = 0) -> dict[str, Callable[[], float]]:
    """name -> run(): one epoch of SimpleConvNet training from the same initial params, blocking.

    Args:
        x, y: images float32 (n, 1, 28, 28) and labels int (n,); default `mnist_shaped()` (10,000).
        batch_size: minibatch size. seed: initial params (He-normal, `jaxnet.simple_convnet`) and shuffles.

    Returns:
        {"jaxnet im2col": run, "lax.conv + jax.grad": run, "numpy (book)": run}; each `run()` starts
        from the same params, returns the epoch's mean batch loss as a float after the work is done.
        The first call of a JAX contender compiles (the benchmark's warm-up).
    """
    if x is None or y is None:
        x, y = mnist_shaped(seed=seed)
    net, params = _init(seed)
    optimizer = jaxnet.optim.optimizer("adam", LEARNING_RATE)
    xj, yj = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)
    key = jax.random.key(seed + 1)

    def jaxnet_run() -> float:
        out = jaxnet.fit(net, params, xj, yj, loss=LOSS, optimizer=optimizer, epochs=1, batch_size=batch_size,
                         key=key)
        history = jax.block_until_ready(out).history
        return float(history["loss"][0])

    lax_optimizer = optax.adam(LEARNING_RATE)
    epoch = lax_epoch(lax_optimizer, batch_size)

    def lax_run() -> float:
        return float(epoch(params, lax_optimizer.init(params), xj, yj, fit_shuffle_key(key))[2])

    book_params = {"W1": params[0]["W"], "b1": params[0]["b"], "W2": params[4]["W"], "b2": params[4]["b"],
                   "W3": params[6]["W"], "b3": params[6]["b"]}
    xn, yn = np.asarray(x, np.float32), np.asarray(y)

    def numpy_run() -> float:
        book = reference_cnn.SimpleConvNet(dtype=np.float32)
        book.load_params({k: np.asarray(v, np.float32) for k, v in book_params.items()})
        return reference_cnn.train_epoch(book, reference_cnn.Adam(LEARNING_RATE), xn, yn, batch_size,
                                         np.random.default_rng(seed))

    return {"jaxnet im2col": jaxnet_run, "lax.conv + jax.grad": lax_run, "numpy (book)": numpy_run}


def w5_step_memory(batch_size: int = 100, seed: int = 0) -> dict[str, dict[str, int]]:
    """Compiled memory statistics (bytes) of one training step (gradient and Adam update) of the two JAX
    contenders at `batch_size`: XLA's `memory_analysis()` fields argument, output, temp and
    generated code sizes, plus `peak` = argument + output + temp - alias (an upper bound of the live
    bytes). Empty dicts where the backend reports nothing."""
    net, params = _init(seed)
    optimizer = optax.adam(LEARNING_RATE)
    opt_state = optimizer.init(params)
    x = jnp.zeros((batch_size, 1, 28, 28), jnp.float32)
    y = jnp.zeros((batch_size,), jnp.int32)

    def update(grads, opt_state, params):
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def jaxnet_step(params, opt_state, x, y):
        return update(jaxnet.backprop(net, params, x, y, LOSS)[1], opt_state, params)

    def lax_step(params, opt_state, x, y):
        return update(jax.grad(_lax_loss)(params, x, y), opt_state, params)

    stats = {}
    for name, step in (("jaxnet im2col", jaxnet_step), ("lax.conv + jax.grad", lax_step)):
        analysis = jax.jit(step).lower(params, opt_state, x, y).compile().memory_analysis()
        if analysis is None:
            stats[name] = {}
            continue
        fields = {f: int(getattr(analysis, f"{f}_size_in_bytes", 0)) for f in
                  ("argument", "output", "temp", "alias", "generated_code")}
        fields["peak"] = fields["argument"] + fields["output"] + fields["temp"] - fields["alias"]
        stats[name] = fields
    return stats

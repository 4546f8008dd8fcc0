"""W6 contenders: one training epoch of the book's DeepConvNet (chapter 8), three ways, for the benchmark.

`w6_contenders()` returns callables that each train one epoch (Adam 1e-3, softmax cross-entropy,
float32, the book's network with its non-inverted Dropout after the hidden layer and on the logits)
from the same initial params, block until done and return the epoch's mean batch loss:

- "jaxnet im2col": `jaxnet.fit` on `jaxnet.deep_convnet()` (im2col Conv2D and MaxPool2D with their
  hand-derived backward passes), one compiled scan over the shuffled minibatches;
- "lax.conv + jax.grad": the same network written with `lax.conv_general_dilated` and
  `lax.reduce_window`, gradients by `jax.value_and_grad`, optax Adam, the same compiled scan, the
  same batches and the same dropout masks (drawn from the keys `fit` gives its Dropout layers);
- "numpy (book)": `jaxnet.reference_cnn.DeepConvNet`, the book's numpy layers and its Trainer's loop
  (batches drawn at random with replacement, numpy's own dropout masks).

`w6_step_memory()` gives the compiled memory statistics of one training step of the two JAX
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
from ..cnn_w5 import mnist_shaped
from jaxnet import reference_cnn
from jaxnet.nn.models import DEEP_CONVNET_PADDINGS
from jaxnet.train import epoch_keys

LOSS = "softmax_cross_entropy"
LEARNING_RATE = 1e-3
NET = jaxnet.deep_convnet()
DROPOUT_LAYERS = tuple(i for i, layer in enumerate(NET.layers) if isinstance(layer, jaxnet.Dropout))  # (18, 20)
RATE = NET.layers[DROPOUT_LAYERS[0]].rate


def _weighted(params) -> list[dict]:
    return [p for p in params if p]


def lax_logits(params, x, step_key=None):
    """DeepConvNet's output from `jaxnet.deep_convnet()`'s params, with lax primitives; training mode
    (the book's dropout masks from the keys `jaxnet.Network` gives layers 18 and 20) when `step_key`
    is given, evaluation mode (multiply by 1 - rate) when it is None."""
    weighted = _weighted(params)
    a = x
    for i, (conv, pad) in enumerate(zip(weighted[:6], DEEP_CONVNET_PADDINGS)):
        z = lax.conv_general_dilated(a, conv["W"], (1, 1), [(pad, pad), (pad, pad)],
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
        a = jax.nn.relu(z + conv["b"][None, :, None, None])
        if i % 2:
            a = lax.reduce_window(a, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    h = jax.nn.relu(a.reshape(x.shape[0], -1) @ weighted[6]["W"] + weighted[6]["b"])

    def dropout(v, layer):
        if step_key is None:
            return v * (1.0 - RATE)
        keep = jax.random.bernoulli(jax.random.fold_in(step_key, layer), 1.0 - RATE, v.shape)
        return jnp.where(keep, v, jnp.zeros((), v.dtype))

    h = dropout(h, DROPOUT_LAYERS[0])
    return dropout(h @ weighted[7]["W"] + weighted[7]["b"], DROPOUT_LAYERS[1])


def _lax_loss(params, x, y, step_key):
    return optax.losses.softmax_cross_entropy_with_integer_labels(lax_logits(params, x, step_key), y).mean()


def lax_epoch(optimizer, batch_size: int):
    """A jitted `(params, opt_state, x, y, key) -> (params, opt_state, mean loss)`: one epoch of
    shuffled full minibatches with `jax.grad` of the lax network; the batches and dropout masks are
    those of a one-epoch `jaxnet.fit(..., key=key)` (`jaxnet.train.epoch_keys`)."""

    @jax.jit
    def epoch(params, opt_state, x, y, key):
        shuffle_key, dropout_key = (k[0] for k in epoch_keys(key, 1))
        idx = jax.random.permutation(shuffle_key, x.shape[0])[: x.shape[0] // batch_size * batch_size]
        idx = idx.reshape(-1, batch_size)

        def step(carry, batch):
            params, opt_state = carry
            i, j = batch
            loss, grads = jax.value_and_grad(_lax_loss)(params, x[i], y[i], jax.random.fold_in(dropout_key, j))
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = lax.scan(step, (params, opt_state), (idx, jnp.arange(idx.shape[0])))
        return params, opt_state, jnp.mean(losses)

    return epoch


def _init(seed: int):
    return jax.jit(lambda k: NET.init(k)[1])(jax.random.key(seed))


def w6_contenders(x: np.ndarray | None = None, y: np.ndarray | None = None, *, batch_size: int = 100,
                  seed: int = 0) -> dict[str, Callable[[], float]]:
    """name -> run(): one epoch of DeepConvNet training from the same initial params, blocking.

    Args:
        x, y: images float32 (n, 1, 28, 28) and labels int (n,); default `mnist_shaped()` (10,000).
        batch_size: minibatch size. seed: initial params (He-normal, `jaxnet.deep_convnet`) and shuffles.

    Returns:
        {"jaxnet im2col": run, "lax.conv + jax.grad": run, "numpy (book)": run}; each `run()` starts
        from the same params and returns the epoch's mean batch loss as a float after the work is
        done. The first call of a JAX contender compiles (the benchmark's warm-up).
    """
    if x is None or y is None:
        x, y = mnist_shaped(seed=seed)
    params = _init(seed)
    optimizer = jaxnet.optim.optimizer("adam", LEARNING_RATE)
    xj, yj = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)
    key = jax.random.key(seed + 1)

    def jaxnet_run() -> float:
        out = jaxnet.fit(NET, params, xj, yj, loss=LOSS, optimizer=optimizer, epochs=1, batch_size=batch_size, key=key)
        return float(jax.block_until_ready(out).history["loss"][0])

    lax_optimizer = optax.adam(LEARNING_RATE)
    epoch = lax_epoch(lax_optimizer, batch_size)

    def lax_run() -> float:
        return float(epoch(params, lax_optimizer.init(params), xj, yj, key)[2])

    book_params = {f"{p}{k}": np.asarray(layer[p], np.float32) for k, layer in enumerate(_weighted(params), 1)
                   for p in ("W", "b")}
    xn, yn = np.asarray(x, np.float32), np.asarray(y)

    def numpy_run() -> float:
        book = reference_cnn.DeepConvNet(dtype=np.float32, rng=np.random.default_rng(seed))
        book.load_params(book_params)
        return reference_cnn.train_epoch(book, reference_cnn.Adam(LEARNING_RATE), xn, yn, batch_size,
                                         np.random.default_rng(seed))

    return {"jaxnet im2col": jaxnet_run, "lax.conv + jax.grad": lax_run, "numpy (book)": numpy_run}


def w6_step_memory(batch_size: int = 100, seed: int = 0) -> dict[str, dict[str, int]]:
    """Compiled memory statistics (bytes) of one training step (gradient and Adam update) of the two JAX
    contenders at `batch_size`, as `experiments.cnn_w5.w5_step_memory` reports them."""
    params = _init(seed)
    optimizer = optax.adam(LEARNING_RATE)
    opt_state = optimizer.init(params)
    x = jnp.zeros((batch_size, 1, 28, 28), jnp.float32)
    y = jnp.zeros((batch_size,), jnp.int32)
    key = jax.random.key(seed)

    def update(grads, opt_state, params):
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def jaxnet_step(params, opt_state, x, y, key):
        return update(jaxnet.backprop(NET, params, x, y, LOSS, key=key, train=True)[1], opt_state, params)

    def lax_step(params, opt_state, x, y, key):
        return update(jax.grad(_lax_loss)(params, x, y, key), opt_state, params)

    stats = {}
    for name, step in (("jaxnet im2col", jaxnet_step), ("lax.conv + jax.grad", lax_step)):
        analysis = jax.jit(step).lower(params, opt_state, x, y, key).compile().memory_analysis()
        if analysis is None:
            stats[name] = {}
            continue
        fields = {f: int(getattr(analysis, f"{f}_size_in_bytes", 0)) for f in
                  ("argument", "output", "temp", "alias", "generated_code")}
        fields["peak"] = fields["argument"] + fields["output"] + fields["temp"] - fields["alias"]
        stats[name] = fields
    return stats

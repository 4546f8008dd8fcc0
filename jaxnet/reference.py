"""The tutorial's algorithm in plain numpy, kept faithful on purpose: the independent reference.

This is what jaxnet is checked against (tests) and raced against (benchmarks). It follows the
tutorial's numpy code, including its two quirks:

1. *Double division by the batch size.* The loss derivative is the gradient of the *mean* loss (it
   already carries 1/m), and the weight gradients are divided by m once more:
   `dW_l = a_{l-1}^T delta_l / m`, `db_l = sum(delta_l) / m`. So its "gradients" are the true gradient
   divided by m, and its SGD at learning rate lr equals correct SGD at lr / m.
2. *"Xavier" that is He.* Its initialisation `randn(n_in, n_out) * sqrt(2 / n_in)` is He scaling
   (`jaxnet.initializers.he_normal`), not Glorot/Xavier `sqrt(2 / (n_in + n_out))`.

Formulas otherwise as the tutorial: `sigmoid'(z) = s (1 - s)`, `relu'(z) = [z > 0]`,
`tanh'(z) = 1 - tanh(z)^2`; binary cross-entropy clipped to [eps, 1 - eps] (eps the dtype's machine
epsilon, as jaxnet); the loss is recorded each epoch *before* that epoch's update.
Everything is float64 numpy; nothing here uses JAX.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic sigmoid without overflow warnings (both branches use exp(-|z|))."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax with the max subtracted."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


ACTIVATIONS = {
    "sigmoid": (sigmoid, lambda z: sigmoid(z) * (1 - sigmoid(z))),
    "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(z.dtype)),
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "identity": (lambda z: z, np.ones_like),
    "softmax": (softmax, None),  # only with cross_entropy, whose delta is fused
}


def _clip(p: np.ndarray) -> np.ndarray:
    eps = np.finfo(p.dtype).eps
    return np.clip(p, eps, 1 - eps)


def loss_value(name: str, a: np.ndarray, y: np.ndarray) -> float:
    """The tutorial's losses: 'mse' (mean over all entries), 'bce' (mean), 'cross_entropy' (mean over rows)."""
    if name == "mse":
        return float(np.mean((a - y) ** 2))
    if name == "bce":
        p = _clip(a)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    if name == "cross_entropy":
        return float(-np.sum(y * np.log(a + 1e-300)) / a.shape[0])
    raise ValueError(f"loss: expected 'mse', 'bce' or 'cross_entropy', got {name!r}")


def loss_derivative(name: str, a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dL/da of the mean loss (carries 1/size): the tutorial's first division by the batch size."""
    if name == "mse":
        return 2 * (a - y) / y.size
    if name == "bce":
        p = _clip(a)
        inside = (a >= np.finfo(a.dtype).eps) & (a <= 1 - np.finfo(a.dtype).eps)
        return np.where(inside, (-(y / p) + (1 - y) / (1 - p)) / y.size, 0.0)
    raise ValueError(f"loss: no separate derivative for {name!r}")


def init_params(layer_sizes, rng: np.random.Generator) -> tuple[list, list]:
    """The tutorial's "Xavier" initialisation (really He): W ~ randn(n_in, n_out) sqrt(2 / n_in), b = 0."""
    weights = [rng.standard_normal((n_in, n_out)) * np.sqrt(2 / n_in)
               for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:])]
    biases = [np.zeros(n_out) for n_out in layer_sizes[1:]]
    return weights, biases


def forward(weights, biases, x, activation="sigmoid", output_activation=None):
    """Returns (activations [a_0 = x, ..., a_L], z_values [z_1, ..., z_L]), as the tutorial stores them."""
    out = output_activation or activation
    activations, z_values = [x], []
    for i, (W, b) in enumerate(zip(weights, biases)):
        z = activations[-1] @ W + b
        f = ACTIVATIONS[out if i == len(weights) - 1 else activation][0]
        z_values.append(z)
        activations.append(f(z))
    return activations, z_values


def backward(weights, activations, z_values, y, loss="mse", activation="sigmoid", output_activation=None):
    """The tutorial's backward pass: returns (dW list, db list), i.e. the true gradient / m."""
    out = output_activation or activation
    m = y.shape[0]
    if out == "softmax":
        delta = (activations[-1] - y) / m  # fused softmax + cross-entropy, mean over rows
    else:
        delta = loss_derivative(loss, activations[-1], y) * ACTIVATIONS[out][1](z_values[-1])
    dWs, dbs = [None] * len(weights), [None] * len(weights)
    for i in reversed(range(len(weights))):
        dWs[i] = activations[i].T @ delta / m  # second division by m
        dbs[i] = np.sum(delta, axis=0) / m
        if i:
            delta = (delta @ weights[i].T) * ACTIVATIONS[activation][1](z_values[i - 1])
    return dWs, dbs


class TrainResult(NamedTuple):
    """`train`'s result: final weights [(n_in, n_out)...] and biases [(n_out,)...] (numpy, the run's
    dtype), and the per-epoch losses (epochs,), each recorded before that epoch's update."""

    weights: list
    biases: list
    losses: np.ndarray


def train(weights, biases, x, y, *, epochs, learning_rate, loss="mse", activation="sigmoid",
          output_activation=None, dtype=np.float64) -> TrainResult:
    """Full-batch training as the tutorial: per epoch forward, record loss, backward, SGD update.

    Arrays are copied and computed in `dtype` (float64 by default; float32 for benchmarks)."""
    weights = [W.astype(dtype, copy=True) for W in weights]
    biases = [b.astype(dtype, copy=True) for b in biases]
    x, y = x.astype(dtype), y.astype(dtype)
    losses = np.empty(epochs)
    for epoch in range(epochs):
        acts, zs = forward(weights, biases, x, activation, output_activation)
        losses[epoch] = loss_value(loss, acts[-1], y)
        dWs, dbs = backward(weights, acts, zs, y, loss, activation, output_activation)
        for i in range(len(weights)):
            weights[i] -= learning_rate * dWs[i]
            biases[i] -= learning_rate * dbs[i]
    return TrainResult(weights, biases, losses)


def train_minibatch_epoch(weights, biases, x, y, *, batch_size, learning_rate, rng, loss="cross_entropy",
                          activation="relu", output_activation="softmax") -> tuple[list, list]:
    """One epoch of shuffled minibatch SGD with the tutorial's gradients (for benchmarks)."""
    order = rng.permutation(x.shape[0])
    for start in range(0, x.shape[0], batch_size):
        idx = order[start:start + batch_size]
        acts, zs = forward(weights, biases, x[idx], activation, output_activation)
        dWs, dbs = backward(weights, acts, zs, y[idx], loss, activation, output_activation)
        for i in range(len(weights)):
            weights[i] -= learning_rate * dWs[i]
            biases[i] -= learning_rate * dbs[i]
    return weights, biases


def from_jaxnet_params(params) -> tuple[list, list]:
    """Weights and biases (float64 numpy) from a jaxnet mlp params tuple (Dense dicts and {}s);
    biases of shape (n,). The reverse is `to_jaxnet_params`."""
    dense = [p for p in params if p]
    return [np.asarray(p["W"], np.float64) for p in dense], [np.asarray(p["b"], np.float64) for p in dense]


def to_jaxnet_params(weights, biases, dtype=np.float32) -> tuple:
    """jaxnet `mlp` params from the tutorial's layout: the reverse of `from_jaxnet_params`.

    Args:
        weights: a list of L weight matrices, `weights[l]` of shape (n_l, n_{l+1}) (the tutorial's
            `z = a @ W + b`), any floating dtype.
        biases: a list of L biases, `biases[l]` of shape (1, n_{l+1}) (the tutorial's rows) or
            (n_{l+1},).
        dtype: the dtype of the returned arrays (float32, jaxnet's default; float64 needs
            `jax.enable_x64`).

    Returns:
        The params of `jaxnet.mlp([n_0, ..., n_L], ...)`: a tuple with one entry per layer,
        `{"W": (n_l, n_{l+1}), "b": (n_{l+1},)}` for each Dense layer and `{}` for the activation layer
        after it (numpy arrays of `dtype`; every jaxnet function accepts them).

    Raises:
        TypeError: `weights` or `biases` is not a list or tuple, or holds non-floating arrays.
        ValueError: no weights, a bias count that differs from the weight count, a weight matrix that is
            not 2-D or whose rows do not match the previous one's columns, or a bias whose shape is
            neither (1, n) nor (n,) for its matrix's n columns; each message names the entry.

    >>> import numpy as np, jaxnet
    >>> from jaxnet import reference
    >>> rng = np.random.default_rng(0)
    >>> weights = [rng.standard_normal((2, 4)), rng.standard_normal((4, 1))]   # the tutorial's layout
    >>> biases = [np.zeros((1, 4)), np.zeros((1, 1))]
    >>> params = reference.to_jaxnet_params(weights, biases)
    >>> [{name: a.shape for name, a in p.items()} for p in params]
    [{'W': (2, 4), 'b': (4,)}, {}, {'W': (4, 1), 'b': (1,)}, {}]
    >>> net = jaxnet.mlp([2, 4, 1], activation="sigmoid")
    >>> x = np.array([[0.0, 1.0], [1.0, 1.0]])
    >>> np.allclose(net.apply(params, x.astype(np.float32)), forward(weights, biases, x)[0][-1], atol=1e-6)
    True
    """
    for name, value in (("weights", weights), ("biases", biases)):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{name}: expected a list of arrays (the tutorial's layout), got {type(value).__name__}")
    if not weights:
        raise ValueError("weights: expected at least one weight matrix, got an empty list")
    if len(biases) != len(weights):
        raise ValueError(f"biases: expected {len(weights)} biases, one per weight matrix, got {len(biases)}")
    params = []
    for i, (W, b) in enumerate(zip(weights, biases)):
        W, b = np.asarray(W), np.asarray(b)
        for name, a in ((f"weights[{i}]", W), (f"biases[{i}]", b)):
            if not np.issubdtype(a.dtype, np.floating):
                raise TypeError(f"{name}: expected a floating array, got dtype {a.dtype}")
        if W.ndim != 2:
            raise ValueError(f"weights[{i}]: expected a 2-D matrix (n_in, n_out), got shape {W.shape}")
        if i and W.shape[0] != np.shape(weights[i - 1])[1]:
            raise ValueError(f"weights[{i}]: expected {np.shape(weights[i - 1])[1]} rows to follow weights[{i - 1}] "
                             f"of shape {np.shape(weights[i - 1])}, got shape {W.shape}")
        n = W.shape[1]
        if b.shape not in ((1, n), (n,)):
            raise ValueError(f"biases[{i}]: expected shape (1, {n}) or ({n},) to match weights[{i}] of shape "
                             f"{W.shape}, got {b.shape}")
        params += [{"W": W.astype(dtype), "b": b.reshape(n).astype(dtype)}, {}]
    return tuple(params)

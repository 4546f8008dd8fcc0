"""Networks composed of layers: `serial`, `mlp`, and hand-derived `backprop`.

A network is a record of pure functions, like a layer, plus `forward`, which returns every
intermediate array (the tutorial's `activations` and `z_values`, interleaved):

    forward(params, x) -> [x, out_1, out_2, ..., out_L]   # out_i is layer i's output

For `mlp` the list alternates z (Dense outputs) and a (activation outputs). `backprop` runs the delta
recursion of the tutorial through the layers' hand-derived `backward` functions:

    delta_L = dL/dy_L,   (dparams_i, delta_{i-1}) = layer_i.backward(params_i, out_{i-1}, out_i, delta_i)

Source: Deep Learning from Scratch 5.7 (backprop through a layered net); Nielsen, *Neural Networks and
Deep Learning*, ch. 2, equations BP1-BP4.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from jaxnet import losses as losses_lib
from jaxnet._checks import check_data, check_key, check_network_input, check_positive, choose, is_concrete
from jaxnet.layers import Dense, Layer, activation_layer

Params = Any


class Network(NamedTuple):
    """A network: the layer contract (`init`, `apply`, `backward`) plus `forward` and its layers.

    - `init(key, input_shape=None) -> (output_shape, params)`: params is a tuple with one entry per
      layer; each layer gets its own key (split from `key`). `input_shape` excludes the batch axis;
      `None` uses `input_shape` given at construction (mlp knows it from `layer_sizes[0]`).
    - `apply(params, x) -> y`: pure, jittable and vmappable; x is (batch, *input_shape) or one example.
    - `forward(params, x) -> list`: [x, out_1, ..., out_L].
    - `backward(params, x, y, dy) -> (dparams, dx)`: hand-derived, recomputing the forward pass.

    Called eagerly, `apply` and `forward` first check params against the layers and x's shape (a
    ValueError / TypeError names the layer index and the expected and found shapes); under jit, vmap
    or grad they check nothing, so compiled code is unchanged.
    """

    init: Callable[..., tuple[tuple[int, ...], Params]]
    apply: Callable[[Params, jax.Array], jax.Array]
    backward: Callable[..., tuple[Params, jax.Array]]
    forward: Callable[[Params, jax.Array], list]
    layers: tuple[Layer, ...]
    input_shape: tuple[int, ...] | None
    name: str


def _backward_through(layers, params, outputs, delta):
    """The delta recursion: walk the layers in reverse, given forward's outputs and dL/dy."""
    grads = [None] * len(layers)
    for i in reversed(range(len(layers))):
        grads[i], delta = layers[i].backward(params[i], outputs[i], outputs[i + 1], delta)
    return tuple(grads), delta


@functools.lru_cache(maxsize=None)
def serial(*layers: Layer, input_shape: tuple[int, ...] | None = None, name: str | None = None) -> Network:
    """Compose layers (or networks) in sequence into a `Network`.

    Args:
        *layers: `Layer`s or `Network`s, applied left to right.
        input_shape: optional default input shape (without the batch axis) for `init`.
        name: for reports; defaults to the layer names joined by ' -> '.

    Returns:
        A `Network`; params are a tuple with one entry per layer. Equal arguments return the same
        (cached) network, so rebuilding it does not recompile jitted functions.

    Raises:
        TypeError: an argument is not a layer.
    """
    for i, layer in enumerate(layers):
        if not isinstance(layer, (Layer, Network)):
            raise TypeError(f"layers[{i}]: expected a jaxnet Layer or Network, got {type(layer).__name__}")

    def init(key, input_shape_=None):
        check_key("key", key, single=True)
        shape = input_shape if input_shape_ is None else tuple(input_shape_)
        if shape is None:
            raise ValueError("input_shape: this network has no default input shape; pass one, e.g. (2,)")
        params = []
        for layer, k in zip(layers, jax.random.split(key, len(layers))):
            shape, p = layer.init(k, shape)
            params.append(p)
        return shape, tuple(params)

    def forward(params, x):
        if is_concrete((params, x)):  # eager calls only: nothing is added to traced code
            check_network_input(net, params, x, batched=False)
        outputs = [x]
        for layer, p in zip(layers, params):
            outputs.append(layer.apply(p, outputs[-1]))
        return outputs

    def apply(params, x):
        if is_concrete((params, x)):
            check_network_input(net, params, x, batched=False)
        for layer, p in zip(layers, params):
            x = layer.apply(p, x)
        return x

    def backward(params, x, y, dy):
        del y
        return _backward_through(layers, params, forward(params, x), dy)

    label = name or " -> ".join(layer.name for layer in layers)
    net = Network(init, apply, backward, forward, tuple(layers), input_shape, label)
    return net


def mlp(
    layer_sizes: Sequence[int],
    activation: str = "sigmoid",
    output_activation: str | None = None,
    initializer: str | Callable = "he_normal",
    *,
    dtype=jnp.float32,
) -> Network:
    """A multilayer perceptron `Dense -> activation -> ... -> Dense -> output_activation`.

    Args:
        layer_sizes: [n_in, hidden_1, ..., n_out], as the tutorial's `layer_sizes` (at least two).
        activation: hidden activation name ('sigmoid', 'relu', 'tanh', 'identity').
        output_activation: output activation name, default the same as `activation` (as in the
            tutorial); use 'identity' for logits with `sigmoid_binary_crossentropy` or
            `softmax_cross_entropy`, or 'softmax'.
        initializer: weight initialiser name or function; biases start at zero. Default 'he_normal',
            `N(0, 2 / fan_in)`: what the tutorial calls "Xavier".
        dtype: parameter dtype (float32 default; float64 needs `jax.enable_x64`).

    Returns:
        A `Network` with params `({"W": (n_in, h1), "b": (h1,)}, {}, {"W": ...}, {}, ...)`.

    Raises:
        ValueError: fewer than two sizes, a size that is not a positive int, unknown names.
    """
    sizes = tuple(layer_sizes)
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes: expected at least [n_in, n_out], got {list(sizes)}")
    for i, n in enumerate(sizes):
        check_positive(f"layer_sizes[{i}]", n, integer=True)
    hidden = activation_layer(activation)
    out = activation_layer(activation if output_activation is None else output_activation)
    layers: list[Layer] = []
    for i, n in enumerate(sizes[1:]):
        layers += [Dense(int(n), W_init=initializer, dtype=dtype), out if i == len(sizes) - 2 else hidden]
    return serial(*layers, input_shape=(int(sizes[0]),), name=f"mlp{list(sizes)}")


def backprop(
    net: Network, params: Params, x: jax.Array, y: jax.Array, loss: str | losses_lib.Loss
) -> tuple[jax.Array, Params]:
    """Loss value and its gradient w.r.t. params by the hand-derived delta recursion.

    Args:
        net: the network. params: its params (as from `net.init`).
        x: inputs (batch, *input_shape). y: targets as the loss expects.
        loss: a loss name or `jaxnet.losses.Loss`.

    Returns:
        (loss_value, grads): a scalar and a pytree with exactly the structure, shapes and dtypes of
        params. These are the true gradients of the mean loss (the tutorial's are these / batch size).

    Raises:
        ValueError / TypeError (eager calls; skipped under jit/vmap): params that do not fit the
            network, x or y of the wrong shape or dtype, labels out of range, non-finite data.

    Source: Deep Learning from Scratch 5.7; the delta equations BP1-BP4 (Nielsen, ch. 2).
    """
    loss_fn = losses_lib.get(loss)
    if is_concrete((params, x, y)):
        x, y = check_data(net, params, x, y, loss_fn)
    outputs = net.forward(params, x)
    grads, _ = _backward_through(net.layers, params, outputs, loss_fn.grad(outputs[-1], y))
    return loss_fn.value(outputs[-1], y), grads


def autodiff(
    net: Network, params: Params, x: jax.Array, y: jax.Array, loss: str | losses_lib.Loss
) -> tuple[jax.Array, Params]:
    """Loss value and gradient by `jax.value_and_grad` of `loss(net.apply(params, x), y)`.

    The independent route against which `backprop` is checked; same signature, outputs and errors.
    """
    loss_fn = losses_lib.get(loss)
    if is_concrete((params, x, y)):
        x, y = check_data(net, params, x, y, loss_fn)
    return jax.value_and_grad(lambda p: loss_fn.value(net.apply(p, x), y))(params)


GRADIENTS: dict[str, Callable] = {"backprop": backprop, "autodiff": autodiff}


def gradient_fn(grad: str | Callable) -> Callable:
    """The gradient route named `grad` ('backprop' or 'autodiff'), or a callable with their signature.

    Raises: ValueError for an unknown name (lists the valid ones), TypeError for anything else.
    """
    found = choose("gradient route", "grad", grad, GRADIENTS)
    if not callable(found):
        raise TypeError(f"grad: expected 'backprop', 'autodiff' or a callable (net, params, x, y, loss) -> "
                        f"(loss, grads), got {type(grad).__name__}")
    return found

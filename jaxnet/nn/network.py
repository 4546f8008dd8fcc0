"""Networks: layers composed in sequence, themselves following the layer contract.

A `Network` is a frozen dataclass holding its layers; like a layer it compares and hashes by value
(an equal rebuilt network never recompiles `fit`) and has `init`, `init_state`, `apply`, `backward`
and `update_state`, plus `forward`, which returns every intermediate array:

    forward(params, x) -> [x, out_1, out_2, ..., out_L]   # out_i is layer i's output

For `mlp` the list alternates z (Dense outputs) and a (activation outputs), the tutorial's
`z_values` and `activations`. `backward` runs the delta recursion of the tutorial through the layers'
hand-derived `backward` functions:

    delta_L = dL/dy_L,   (dparams_i, delta_{i-1}) = layer_i.backward(params_i, out_{i-1}, out_i, delta_i)

Params and state are tuples with one entry per layer. Layer i gets the key `fold_in(key, i)`, so
every layer (and every nested network's layers) draws from its own stream.

Source: Deep Learning from Scratch 5.7 (backprop through a layered net); Nielsen, *Neural Networks and
Deep Learning*, ch. 2, equations BP1-BP4.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnet.validate import _compare_tree, check_key, check_network_input, check_positive, layer_shapes
from jaxnet.nn._layer import Layer, as_shape, require_key
from jaxnet.nn.activations import activation_layer
from jaxnet.nn.dense import Dense


def _fold(key, i):
    return None if key is None else jax.random.fold_in(key, i)


def _entry(state, i):
    return None if state is None else state[i]


def _check_backward(layer, i, params, dparams, x, dx):
    """Raise ValueError naming the layer (and its index i, if not None) when its backward's result does
    not fit its params and input (structure, shapes and dtypes; static, so this costs nothing in
    compiled code). Also used by `jaxnet.check_layer`."""
    where = f"{layer.name}.backward" if i is None else f"layer {i} ({layer.name}).backward"
    p_leaves, p_def = jax.tree_util.tree_flatten_with_path(params)
    d_leaves, d_def = jax.tree_util.tree_flatten(dparams)
    if p_def != d_def:
        raise ValueError(f"{where}: returned dparams with structure {d_def}, expected the params' structure {p_def}")
    for (path, p), d in zip(p_leaves, d_leaves):
        if tuple(np.shape(d)) != tuple(np.shape(p)) or jnp.result_type(d) != jnp.result_type(p):
            raise ValueError(f"{where}: returned dparams{jax.tree_util.keystr(path)} of shape {tuple(np.shape(d))} and "
                             f"dtype {jnp.result_type(d)}, expected the param's shape {tuple(np.shape(p))} and dtype "
                             f"{jnp.result_type(p)}")
    if tuple(np.shape(dx)) != tuple(np.shape(x)):
        raise ValueError(f"{where}: returned dx of shape {tuple(np.shape(dx))}, expected the layer input's shape "
                         f"{tuple(np.shape(x))}")


def _required_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init
            and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


def _as_layer(i: int, layer) -> Layer:
    """`layer` as a Layer instance: a Layer class whose fields all have defaults (`Flatten`,
    `BatchNorm`) is created with them, so `Flatten` and `Flatten()` are the same layer; anything else
    raises a TypeError that shows what to write."""
    if isinstance(layer, Layer):
        return layer
    if isinstance(layer, type) and issubclass(layer, Layer):
        required = _required_fields(layer) if dataclasses.is_dataclass(layer) else []
        if required:
            raise TypeError(f"layers[{i}]: {layer.__name__} is a layer class that needs arguments: create the "
                            f"layer, e.g. {layer.__name__}({', '.join(required)})")
        try:
            return layer()
        except TypeError as err:
            raise TypeError(f"layers[{i}]: {layer.__name__} is a layer class: create the layer, "
                            f"{layer.__name__}(...) ({err})") from err
    if isinstance(layer, str):
        raise TypeError(f"layers[{i}]: expected a jaxnet Layer or Network, got the string {layer!r}; for an "
                        f"activation write jaxnet.activation_layer({layer!r}) (or jaxnet.Relu, jaxnet.Sigmoid, ...)")
    what = getattr(layer, "__name__", None) if callable(layer) else None
    hint = (f"; a function is not a layer: for an activation write jaxnet.activation_layer({what!r}) "
            f"(or jaxnet.Relu, jaxnet.Sigmoid, ...), for your own function subclass jaxnet.Layer") if what else ""
    raise TypeError(f"layers[{i}]: expected a jaxnet Layer or Network, got {type(layer).__name__}"
                    f"{f' {what}' if what else ''}{hint}")


@functools.lru_cache(maxsize=1024)
def _state_template(net: Network, input_shape: tuple[int, ...]):
    return jax.eval_shape(lambda: net.init_state(input_shape))


@dataclasses.dataclass(frozen=True)
class Network(Layer):
    """Layers applied in sequence (see the module docstring); build one with `serial` or `mlp`.

    Fields: `layers` (a tuple of `Layer`s or `Network`s), `input_shape` (the default input shape for
    `init`, without the batch axis, or None) and `label` (the name in reports).

    Every call of `apply`, `forward`, `backward` and `update_state` checks, eagerly and under
    jit/vmap/grad alike (shapes are static), that params fit the layers and x's shape (a ValueError
    names the layer index and the expected and found shapes), that the state fits the network, and
    that a key is given when training mode needs one. Nothing is added to compiled code.
    """

    layers: tuple
    input_shape: tuple | None = None
    label: str | None = None

    def __post_init__(self):
        layers = tuple(_as_layer(i, layer) for i, layer in enumerate(self.layers))
        for i, layer in enumerate(layers):
            try:
                hash(layer)
            except TypeError as err:
                raise TypeError(f"layers[{i}]: {layer.name} is not hashable ({err}); a layer's fields must be "
                                f"hashable values (tuples, not lists) so that networks compare by value") from err
        object.__setattr__(self, "layers", layers)
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", as_shape("input_shape", self.input_shape))

    # ------------------------------------------------------------------ description
    @property
    def name(self) -> str:
        return self.label or " -> ".join(layer.name for layer in self.layers)

    @property
    def has_state(self) -> bool:
        return any(layer.has_state for layer in self.layers)

    @property
    def is_random(self) -> bool:
        return any(layer.is_random for layer in self.layers)

    def _shape(self, input_shape):
        shape = self.input_shape if input_shape is None else as_shape("input_shape", input_shape)
        if shape is None:
            raise ValueError("input_shape: this network has no default input shape; pass one, e.g. (2,)")
        return shape

    # ------------------------------------------------------------------ creation
    def init(self, key: jax.Array, input_shape: Sequence[int] | None = None):
        """`(output_shape, params)`: params a tuple with one entry per layer, each layer with its own key
        (`jax.random.split(key, len(layers))`). `input_shape` excludes the batch axis; None uses the
        network's default. Raises ValueError without any input shape, TypeError for a bad key."""
        check_key("key", key, single=True)
        shape = self._shape(input_shape)
        params = []
        for layer, k in zip(self.layers, jax.random.split(key, len(self.layers))):
            shape, p = layer.init(k, shape)
            params.append(p)
        return tuple(shape), tuple(params)

    def init_state(self, input_shape: Sequence[int] | None = None):
        """The initial state, a tuple with one entry per layer (`{}` for layers without state; a
        network without stateful layers has a state with no arrays)."""
        shape = self._shape(input_shape)
        states = []
        for layer in self.layers:
            states.append(layer.init_state(shape))
            shape = layer_shapes(layer, shape)[0]
        return tuple(states)

    # ------------------------------------------------------------------ checks
    def _check(self, params, x, state, key, train):
        """Every public computation's checks (static: shapes, dtypes, the key's presence)."""
        if key is not None:
            check_key("key", key, single=True)
        if train and self.is_random:
            require_key(self.name, key, train)
        in_shape, _ = check_network_input(self, params, x, batched=False, with_input=True)
        if state is not None or (self.has_state and not train):
            self.check_state(state, in_shape)

    def check_state(self, state, input_shape):
        """Raise ValueError unless `state` has the structure, shapes and dtypes of
        `self.init_state(input_shape)` (`input_shape` without the batch axis); a missing state for a
        network with BatchNorm names the fix. Static: works under jit."""
        if state is None:
            if not self.has_state:
                return
            raise ValueError(f"state: {self.name} has layers with state (BatchNorm) and evaluation mode "
                             f"(train=False) uses their running statistics; pass state=net.init_state() or "
                             f"fit's result.state")
        _compare_tree("state", f"the state of {self.name} (net.init_state)", _state_template(self, tuple(input_shape)),
                      state)

    # ------------------------------------------------------------------ computation
    def forward(self, params, x, *, state=None, key=None, train=False) -> list:
        """Every intermediate array `[x, out_1, ..., out_L]` (see the module docstring)."""
        self._check(params, x, state, key, train)
        return self._forward(params, x, state=state, key=key, train=train)

    def _forward(self, params, x, *, state=None, key=None, train=False) -> list:
        """`forward` without the checks: for callers that validated params, x and state once already
        (the training engine, per step)."""
        outputs = [x]
        for i, (layer, p) in enumerate(zip(self.layers, params)):
            outputs.append(layer.apply(p, outputs[-1], state=_entry(state, i), key=_fold(key, i), train=train))
        return outputs

    def apply(self, params, x, *, state=None, key=None, train=False):
        """The network's output for x (batch, *input_shape) or one example; `apply(params, x)` is
        inference mode, pure and deterministic (pass `state` when the network has BatchNorm)."""
        return self.forward(params, x, state=state, key=key, train=train)[-1]

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        """Hand-derived `(dparams, dx)`, recomputing the forward pass (y is not needed)."""
        del y
        outputs = self.forward(params, x, state=state, key=key, train=train)
        return self.backward_from(params, outputs, dy, state=state, key=key, train=train)

    def backward_from(self, params, outputs, dy, *, state=None, key=None, train=False):
        """The delta recursion given `forward`'s outputs and dL/dy: walk the layers in reverse. Each
        layer's result is compared with its params and input (structure, shapes, dtypes: static, so
        free in compiled code), and a mismatch names the layer."""
        grads = [None] * len(self.layers)
        for i in reversed(range(len(self.layers))):
            layer = self.layers[i]
            grads[i], dx = layer.backward(params[i], outputs[i], outputs[i + 1], dy, state=_entry(state, i),
                                          key=_fold(key, i), train=train)
            _check_backward(layer, i, params[i], grads[i], outputs[i], dx)
            dy = dx
        return tuple(grads), dy

    def summary(self, input_shape: Sequence[int] | None = None):
        """A table of the layers: output shape, params and multiply-adds per example, and the totals
        (`jaxnet.check.summary`; print it, or `to_markdown()`). `input_shape` defaults to the network's."""
        from jaxnet.check._summary import summary

        return summary(self, input_shape)

    def decay_mask(self, params):
        """Weight-decay mask (a tuple of pytrees of bools like params): each layer's `decay_mask`, so
        every param with two or more axes (every Dense and Conv2D W) unless a layer declares its
        weights by name (see `jaxnet.nn._layer`). Raises ValueError when params do not have one entry
        per layer."""
        if not isinstance(params, (tuple, list)) or len(params) != len(self.layers):
            raise ValueError(f"params: expected a tuple with one entry per layer of {self.name} "
                             f"({len(self.layers)} entries, as from net.init), got {type(params).__name__}"
                             + (f" of length {len(params)}" if isinstance(params, (tuple, list)) else ""))
        return tuple(layer.decay_mask(p) for layer, p in zip(self.layers, params))

    def update_state(self, params, state, x, *, key=None):
        """The state after a training step on x: each stateful layer updated with its input in
        training mode (the same dropout masks as the step, given the same key)."""
        if not self.has_state:
            return state
        self._check(params, x, state, key, True)
        return self._update_state(params, state, x, key=key)

    def _update_state(self, params, state, x, *, key=None):
        """`update_state` without the checks (see `_forward`)."""
        if not self.has_state:
            return state
        outputs = self._forward(params, x, key=key, train=True)
        return tuple(layer.update_state(p, s, out, key=_fold(key, i))
                     for i, (layer, p, s, out) in enumerate(zip(self.layers, params, state, outputs)))


def serial(*layers: Layer, input_shape: Sequence[int] | None = None, name: str | None = None) -> Network:
    """Compose layers (or networks) in sequence into a `Network`.

    Args:
        *layers: `Layer`s or `Network`s, applied left to right. A layer without parameters to set may be
            written with or without parentheses: `Flatten` and `Flatten()`, `BatchNorm` and
            `BatchNorm()`, `Relu` and `Relu()` are the same layers.
        input_shape: optional default input shape (without the batch axis) for `init` (any sequence
            of ints; stored as a tuple).
        name: for reports; defaults to the layer names joined by ' -> '.

    Returns:
        A `Network`; params and state are tuples with one entry per layer. Equal arguments give equal
        networks (compared by value), so rebuilding one does not recompile jitted functions.

    Raises:
        TypeError: an argument is not a layer (the message says what to write: a layer class that needs
            arguments, such as `Dense`, names them), or has unhashable fields.
    """
    return Network(tuple(layers), input_shape, name)


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
    return serial(*layers, input_shape=(int(sizes[0]),), name=f"mlp{[int(s) for s in sizes]}")

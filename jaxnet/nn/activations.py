"""Parameter-free activation layers, all from one constructor.

`ActivationLayer("relu")` applies `jaxnet.activations.relu` and back-propagates `dy * relu'(x)`;
`"softmax"` normalises the last axis and back-propagates the softmax vector-Jacobian product.
`Relu`, `Sigmoid`, `Tanh`, `Identity` and `Softmax` are such layers; `Relu()` returns `Relu` itself,
so they are written with or without parentheses.

Source: Deep Learning from Scratch 5.5 (activation layers) and 5.6.3 (softmax).
"""

from __future__ import annotations

import dataclasses

from jaxnet import activations as act
from jaxnet.validate import choose
from jaxnet.nn._layer import Layer, as_shape


def _elementwise_vjp(activation: act.Activation):
    return lambda x, dy: dy * activation.derivative(x)


# name -> (forward, vector-Jacobian product (x, dy) -> dx)
_RULES = {name: (a.fn, _elementwise_vjp(a)) for name, a in act.ACTIVATIONS.items()}
_RULES["softmax"] = (act.softmax, act.softmax_vjp)


@dataclasses.dataclass(frozen=True)
class ActivationLayer(Layer):
    """A parameter-free layer `y = f(x)`, f one of 'sigmoid', 'relu', 'tanh', 'identity', 'softmax'.

    Shapes: any -> the same shape and dtype ('softmax' works on the last axis). Backward:
    `dx = dy * f'(x)` for the elementwise ones, `s * (dy - sum(dy * s))` for softmax.

    Raises:
        ValueError: an unknown activation name (the message lists the valid ones).
    """

    activation: str

    def __post_init__(self):
        choose("activation", "activation", self.activation, _RULES)

    @property
    def name(self) -> str:
        return self.activation

    def init(self, key, input_shape):
        del key
        return as_shape("input_shape", input_shape), {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        del params, state, key, train
        return _RULES[self.activation][0](x)

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        del params, y, state, key, train
        return {}, _RULES[self.activation][1](x, dy)

    def __call__(self, *args, **kwargs) -> ActivationLayer:
        """`Relu()` is `Relu`: the instances below are the layers themselves, and calling one with no
        arguments returns it, so both spellings work (as `Flatten()` and `Dense(10)` are written with
        parentheses). Raises TypeError when given arguments: apply a layer with `.apply({}, x)`."""
        if args or kwargs:
            layer = self.activation.capitalize()  # the name it is exported under: Relu, Sigmoid, ...
            raise TypeError(f"{layer}: an activation layer takes no arguments ({layer} and {layer}() are the "
                            f"same layer); to apply it write {layer}.apply({{}}, x), or "
                            f"jaxnet.activations.{self.activation}(x) for the function")
        return self


Sigmoid = ActivationLayer("sigmoid")
Relu = ActivationLayer("relu")
Tanh = ActivationLayer("tanh")
Identity = ActivationLayer("identity")
Softmax = ActivationLayer("softmax")


def activation_layer(name: str | Layer) -> Layer:
    """The activation layer called `name`: 'sigmoid', 'relu', 'tanh', 'identity' or 'softmax'.

    A `Layer` passed in is returned unchanged.

    Raises:
        ValueError: unknown name (the message lists the valid ones). TypeError: neither a name nor a Layer.
    """
    if isinstance(name, Layer):
        return name
    if not isinstance(name, str):
        raise TypeError(f"activation: expected a name ({', '.join(sorted(_RULES))}) or a Layer, "
                        f"got {type(name).__name__}")
    return ActivationLayer(name)

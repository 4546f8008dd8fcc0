"""The bug zoo: real mistakes in hand-written backward passes, each a small buggy layer (or loss, or
route) in a small network, for the checks to catch (docs/bug_zoo.md).

`BUGS` maps a name to a `Bug`: what the mistake is, the wrong line and the right one, and `case(key)`,
which builds a `Case`: a network with the buggy piece at `faulty` (a layer label such as "2", or
"loss", or "route"), its params, a batch and the loss, with the mode, state and key to check it in.
The tests (tests/test_bug_zoo.py) assert that `check_layer`, `gradcheck` and `layer_report` flag each
one and name the right layer; `python -m experiments checks` measures each mode's detection rate
over random params and data.

Every buggy layer subclasses the correct built-in one and overrides `backward` only, so `apply` (and
hence `jax.grad`, the reference) is right: exactly the situation of a learner whose forward pass is
right and whose backward pass is not.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxnet import activations as act
from jaxnet import losses as losses_lib
from jaxnet.grad import backprop
from jaxnet.nn._layer import Layer, as_shape
from jaxnet.nn.activations import ActivationLayer, Tanh
from jaxnet.nn.conv import Conv2D, col2im
from jaxnet.nn.dense import Dense
from jaxnet.nn.dropout import Dropout
from jaxnet.nn.network import serial
from jaxnet.nn.normalization import BatchNorm
from jaxnet.nn.pool import Flatten, MaxPool2D
from jaxnet.nn.activations import Relu


class Case(NamedTuple):
    """A network with one bug: check it with `gradcheck(net, params, x, y, loss, state=, key=, train=,
    grad=, weight_decay=)` or `layer_report(...)`; `faulty` names the buggy piece."""

    net: Any
    params: Any
    x: jax.Array
    y: jax.Array
    loss: Any
    faulty: str
    state: Any = None
    key: jax.Array | None = None
    train: bool = False
    grad: Callable | None = None
    weight_decay: float | None = None

    def kwargs(self) -> dict:
        """The keyword arguments of `gradcheck` for this case."""
        return dict(state=self.state, key=self.key, train=self.train, grad=self.grad, weight_decay=self.weight_decay)


class Bug(NamedTuple):
    """A mistake: `title`, the `wrong` line and the `right` one, and `case(key) -> Case`."""

    title: str
    wrong: str
    right: str
    case: Callable[[jax.Array], Case]


# ---------------------------------------------------------------------------------------------- layers


@dataclasses.dataclass(frozen=True)
class DenseDividedTwice(Dense):
    """The tutorial's double division: dW and db divided by the batch size m although dy (the
    gradient of the *mean* loss) already carries 1/m."""

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        grads, dx = super().backward(params, x, y, dy)
        m = x.shape[0]
        return {"W": grads["W"] / m, "b": grads["b"] / m}, dx


@dataclasses.dataclass(frozen=True)
class DenseNotTransposed(Dense):
    """dx = dy @ W instead of dy @ W.T (silent when W is square)."""

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        grads, _ = super().backward(params, x, y, dy)
        return grads, dy @ params["W"]


@dataclasses.dataclass(frozen=True)
class DenseReshapedNotTransposed(Dense):
    """dx = dy @ W.reshape(n_out, n_in): a reshape is not a transpose (same shape, other order)."""

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        grads, _ = super().backward(params, x, y, dy)
        W = params["W"]
        return grads, dy @ W.reshape(W.shape[1], W.shape[0])


@dataclasses.dataclass(frozen=True)
class DenseBiasWrongAxis(Dense):
    """db summed over the units instead of over the batch: shape (batch,) for a (units,) bias."""

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        grads, dx = super().backward(params, x, y, dy)
        return {"W": grads["W"], "b": jnp.sum(dy, axis=1)}, dx


@dataclasses.dataclass(frozen=True)
class _Act(ActivationLayer):
    """An activation layer with a wrong backward (the forward is the built-in one)."""

    activation: str = "sigmoid"
    mistake: str = ""

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        s = y
        return {}, {
            "sigmoid of output": lambda: dy * act.sigmoid_derivative(y),   # sigma'(a) instead of sigma'(z)
            "relu no mask": lambda: dy,                                    # the mask [z > 0] forgotten
            "tanh of input": lambda: dy * (1 - jnp.square(x)),             # 1 - z^2 instead of 1 - tanh(z)^2
            "softmax diagonal": lambda: dy * s * (1 - s),                  # the Jacobian's diagonal only
        }[self.mistake]()


@dataclasses.dataclass(frozen=True)
class BatchNormNoMeanTerm(BatchNorm):
    """Training-mode dx without the `- mean(dy)` term (the path through the batch mean forgotten)."""

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        if not train:
            return super().backward(params, x, y, dy, state=state, key=key, train=train)
        _, var, centred = self._batch_stats(x)
        axes = self._axes(x)
        inv_std = 1.0 / jnp.sqrt(var + self.eps)
        x_hat = centred * inv_std
        grads = {"gamma": jnp.sum(dy * x_hat, axis=axes), "beta": jnp.sum(dy, axis=axes)}
        dx = self._bcast(params["gamma"], x) * inv_std * (dy - x_hat * jnp.mean(dy * x_hat, axis=axes, keepdims=True))
        return grads, dx


@dataclasses.dataclass(frozen=True)
class DropoutRedrawn(Dropout):
    """The backward pass draws a new mask instead of reusing the forward's (another key)."""

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        return super().backward(params, x, y, dy, key=None if key is None else jax.random.fold_in(key, 1), train=train)


def col2im_overwrite(cols, input_shape, filter_h, filter_w, stride=1, padding=0):
    """`col2im` that *sets* each patch at its place: where patches overlap, the last one wins."""
    n, c, h, w = input_shape
    oh, ow = (h + 2 * padding - filter_h) // stride + 1, (w + 2 * padding - filter_w) // stride + 1
    col = cols.reshape(n, oh, ow, c, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)
    img = jnp.zeros((n, c, h + 2 * padding, w + 2 * padding), cols.dtype)
    for i in range(filter_h):
        for j in range(filter_w):
            img = img.at[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride].set(col[:, :, i, j])
    return img[:, :, padding:padding + h, padding:padding + w]


@dataclasses.dataclass(frozen=True)
class Conv2DBackward(Conv2D):
    """A Conv2D whose backward is written out with a mistake: 'overwrite' (col2im sets instead of
    adding) or 'crop' (the padded dx cropped at [:H, :W] instead of [p:p + H, p:p + W])."""

    mistake: str = "overwrite"

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        W = params["W"]
        fn, (fh, fw), p = W.shape[0], self.kernel_size, self.padding
        dY_t = dy.transpose(1, 0, 2, 3).reshape(fn, -1)
        grads = {"W": (dY_t @ self._cols(x)).reshape(W.shape), "b": jnp.sum(dY_t, axis=1)}
        dcols = dY_t.T @ W.reshape(fn, -1)
        n, c, h, w = x.shape
        if self.mistake == "overwrite":
            return grads, col2im_overwrite(dcols, x.shape, fh, fw, self.stride, p)
        padded = col2im(dcols, (n, c, h + 2 * p, w + 2 * p), fh, fw, self.stride, 0)
        return grads, padded[:, :, :h, :w]


@dataclasses.dataclass(frozen=True)
class MaxPoolEveryTie(MaxPool2D):
    """Max-pool backward sending dy to *every* entry equal to the window's maximum: at a tie the
    window passes back k dy instead of dy."""

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        windows = self._windows(x)
        at_max = (windows == jnp.max(windows, axis=-1, keepdims=True)).astype(dy.dtype)
        return {}, self._to_x(x, at_max * dy[..., None])


@dataclasses.dataclass(frozen=True)
class Swish(Layer):
    """Swish with a learnable beta per feature: y = x sigmoid(beta x) (Ramachandran et al., 2017).
    Params {"beta": (features,)} starting at 1. `forget_beta=True` is the bug: dx computed as if
    beta were 1, exactly right at the init value."""

    forget_beta: bool = False

    @property
    def name(self) -> str:
        return "Swish"

    def init(self, key, input_shape):
        shape = as_shape("input_shape", input_shape)
        return shape, {"beta": jnp.ones(shape[-1:], jnp.float32)}

    def apply(self, params, x, *, state=None, key=None, train=False):
        return x * act.sigmoid(params["beta"] * x)

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        beta = params["beta"]
        z = beta * x
        s, ds = act.sigmoid(z), act.sigmoid_derivative(z)
        dbeta = jnp.sum(dy * x * x * ds, axis=tuple(range(x.ndim - 1)))
        slope = jnp.ones_like(beta) if self.forget_beta else beta
        return {"beta": dbeta}, dy * (s + slope * x * ds)


# ---------------------------------------------------------------------------------------------- cases


def _data(key, shape, classes=3, batch=6):
    kx, ky = jax.random.split(key)
    return jax.random.normal(kx, (batch, *shape)), jax.random.randint(ky, (batch,), 0, classes)


def _case(net, key, faulty, *, shape=(4,), loss="softmax_cross_entropy", **kwargs) -> Case:
    k_init, k_data, k_drop = jax.random.split(key, 3)
    x, labels = _data(k_data, shape)
    _, params = net.init(k_init, shape)
    state = net.init_state(shape) if net.has_state else None
    return Case(net, params, x, labels, loss, faulty, state=state,
                key=k_drop if net.is_random else None, **kwargs)


def _dense_case(layer) -> Callable:
    return lambda key: _case(serial(Dense(4), Tanh, layer, Tanh, Dense(3)), key, "2")


def _act_case(mistake, activation) -> Callable:
    if activation == "softmax":
        def build(key):
            c = _case(serial(Dense(5), Tanh, Dense(3), _Act(activation, mistake)), key, "3")
            return c._replace(y=jax.nn.one_hot(c.y, 3), loss="mse")
        return build
    return lambda key: _case(serial(Dense(5), _Act(activation, mistake), Dense(3)), key, "1")


def _conv_case(mistake) -> Callable:
    net = serial(Conv2D(2, 3, padding=1), Tanh, Conv2DBackward(3, 3, padding=1, mistake=mistake), Tanh, Flatten(),
                 Dense(3))
    return lambda key: _case(net, key, "2", shape=(1, 6, 6))


def _ce_not_divided() -> losses_lib.Loss:
    ce = losses_lib.get("softmax_cross_entropy")
    return ce._replace(name="softmax_cross_entropy, grad not / batch",
                       derivative=lambda logits, labels: ce.derivative(logits, labels) * logits.shape[0],
                       unchecked=None)  # else the training routes would call the built-in's unchecked math


def l2_on_biases(net, params, x, y, loss, *, state=None, key=None, train=False, weight_decay=None):
    """A route whose weight-decay gradient `lambda p` reaches every param, biases included, while its
    loss (as `fit`'s) penalises the weights only."""
    value, grads = backprop(net, params, x, y, loss, state=state, key=key, train=train, weight_decay=weight_decay)
    lam = 0.0 if weight_decay is None else weight_decay
    return value, jax.tree_util.tree_map_with_path(
        lambda path, g, p: g + lam * p if jax.tree_util.keystr(path).endswith("['b']") else g, grads, params)


BUGS: dict[str, Bug] = {
    "double division by m": Bug(
        "the tutorial's double division by the batch size", "dW = x.T @ dy / m; db = sum(dy) / m",
        "dW = x.T @ dy; db = sum(dy)   # dy already carries 1/m", _dense_case(DenseDividedTwice(4))),
    "sigmoid derivative of the output": Bug(
        "sigmoid derivative applied to the activation a instead of the pre-activation z",
        "dx = dy * sigmoid_derivative(y)", "dx = dy * sigmoid_derivative(x)",
        _act_case("sigmoid of output", "sigmoid")),
    "missing ReLU mask": Bug("the ReLU mask forgotten", "dx = dy", "dx = dy * (x > 0)",
                             _act_case("relu no mask", "relu")),
    "tanh derivative of the input": Bug(
        "tanh derivative written with the input", "dx = dy * (1 - x**2)", "dx = dy * (1 - tanh(x)**2)",
        _act_case("tanh of input", "tanh")),
    "softmax Jacobian diagonal only": Bug(
        "softmax backward through the Jacobian's diagonal only", "dx = dy * s * (1 - s)",
        "dx = s * (dy - sum(dy * s, axis=-1))", _act_case("softmax diagonal", "softmax")),
    "W instead of W.T": Bug("W instead of W.T in dx (silent for a square W)", "dx = dy @ W", "dx = dy @ W.T",
                            _dense_case(DenseNotTransposed(4))),
    "reshape instead of transpose": Bug(
        "W reshaped instead of transposed", "dx = dy @ W.reshape(n_out, n_in)", "dx = dy @ W.T",
        _dense_case(DenseReshapedNotTransposed(4))),
    "bias gradient over the wrong axis": Bug(
        "bias gradient summed over the wrong axis", "db = sum(dy, axis=1)", "db = sum(dy, axis=0)",
        _dense_case(DenseBiasWrongAxis(4))),
    "BatchNorm without the mean term": Bug(
        "BatchNorm's backward without the mean term", "dx = gamma / std * (dy - x_hat * mean(dy * x_hat))",
        "dx = gamma / std * (dy - mean(dy) - x_hat * mean(dy * x_hat))",
        lambda key: _case(serial(Dense(5), BatchNormNoMeanTerm(), Tanh, Dense(3)), key, "1", train=True)),
    "dropout mask redrawn": Bug(
        "a new dropout mask drawn in backward", "mask = bernoulli(other_key, ...)",
        "mask = bernoulli(key, ...)   # the forward's key",
        lambda key: _case(serial(Dense(6), Tanh, DropoutRedrawn(0.5), Dense(3)), key, "2", train=True)),
    "col2im overwrites": Bug(
        "col2im overwriting overlapping patches instead of adding them", "img[..., i:, j:] = patch",
        "img[..., i:, j:] += patch", _conv_case("overwrite")),
    "conv padding in backward": Bug(
        "the padded dx cropped at the wrong offset", "dx = dx_padded[:, :, :H, :W]",
        "dx = dx_padded[:, :, p:p + H, p:p + W]", _conv_case("crop")),
    "max-pool gradient to every tie": Bug(
        "max-pool gradient sent to every tied maximum", "dx[window == max] = dy",
        "dx[first argmax] = dy   # or dy / k to each of k ties",
        lambda key: _case(serial(Conv2D(4, 3), Relu, MaxPoolEveryTie(2), Flatten(), Dense(3)), key, "2",
                          shape=(1, 6, 6))),
    "softmax cross-entropy not divided by the batch": Bug(
        "softmax cross-entropy gradient not divided by the batch size", "dlogits = softmax(logits) - onehot",
        "dlogits = (softmax(logits) - onehot) / m",
        lambda key: _case(serial(Dense(5), Tanh, Dense(3)), key, "loss", loss=_ce_not_divided())),
    "L2 on biases": Bug(
        "the L2 gradient added to the biases too", "grads[b] += lam * b", "only grads[W] += lam * W",
        lambda key: _case(serial(Dense(5), Tanh, Dense(3)), key, "route", grad=l2_on_biases, weight_decay=0.1)),
    "Swish forgets beta": Bug(
        "Swish's dx without its learnable beta (exact at beta = 1, its init value)",
        "dx = dy * (s + x * s')", "dx = dy * (s + beta * x * s')",
        lambda key: _case(serial(Dense(5), BatchNorm(), Swish(forget_beta=True), Dense(3)), key, "2", train=True)),
}


def layer_input(case: Case):
    """The faulty layer of `case` and its real input (with its params, state and key): what
    `check_layer` is given. None for a bug in the loss or the route."""
    from jaxnet.check._common import nodes

    if case.faulty in ("loss", "route"):
        return None
    out = jnp.asarray(case.x)
    for node in nodes(case.net, case.params, case.state, case.key):
        if node.label == case.faulty:
            return node.layer, out, node.params, node.state, node.key
        out = node.layer.apply(node.params, out, state=node.state, key=node.key, train=case.train)
    raise ValueError(f"case: no layer {case.faulty} in {case.net.name}")


def correct(layer):
    """The correct counterpart of a buggy layer (its built-in base with the same configuration; a
    network with every layer corrected); other layers unchanged. Params stay valid."""
    from jaxnet.nn.network import Network

    if isinstance(layer, Network):
        return Network(tuple(correct(inner) for inner in layer.layers), layer.input_shape, layer.label)
    if isinstance(layer, Swish):
        return Swish()
    for base in (Dense, Conv2D, MaxPool2D, BatchNorm, Dropout, ActivationLayer):
        if isinstance(layer, base) and type(layer) is not base:
            return base(**{f.name: getattr(layer, f.name) for f in dataclasses.fields(base)})
    return layer


def fixed(case: Case) -> Case:
    """`case` with the bug fixed: correct layers, the built-in loss, `backprop` as the route."""
    loss = case.loss if isinstance(case.loss, str) or case.faulty != "loss" else "softmax_cross_entropy"
    return case._replace(net=correct(case.net), loss=loss, grad=None if case.faulty == "route" else case.grad)

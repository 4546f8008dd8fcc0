"""jaxnet: neural networks from scratch in JAX, with hand-derived backprop checked against jax.grad.

The functional API (parameters are pytrees, a network is a record of pure functions):

>>> import jax, jaxnet
>>> net = jaxnet.mlp([2, 4, 1], activation="sigmoid")
>>> _, params = net.init(jax.random.key(0))
>>> x, y = jaxnet.data.xor()
>>> result = jaxnet.fit(net, params, x, y, loss="mse", optimizer=jaxnet.optim.sgd(1.0), epochs=5000)
>>> params, history = result.params, result.history
>>> jaxnet.gradcheck(net, params, x, y, "mse").passed    # print(...) shows the whole table
True

Where things are (one import path per public name): layers, networks, the gradient routes, `fit`,
`evaluate`, `predict` and the gradient checks here at the top; the other trainers in `jaxnet.train`;
the rest in its module (`jaxnet.data`, `jaxnet.losses`, `jaxnet.optim`, `jaxnet.plot`, ...).
Importing jaxnet imports neither matplotlib nor scikit-learn (see `jaxnet.plot`, `jaxnet.data`).
"""

from jaxnet import activations, augment, check, data, initializers, losses, metrics, optim, train
from jaxnet.grad import autodiff, backprop
from jaxnet.check import GradcheckReport, check_layer, gradcheck
from jaxnet.nn._checks import conv_output_size
from jaxnet.nn._layer import Layer
from jaxnet.nn.activations import ActivationLayer, Identity, Relu, Sigmoid, Softmax, Tanh, activation_layer
from jaxnet.nn.conv import Conv2D, col2im, im2col
from jaxnet.nn.dense import Dense
from jaxnet.nn.dropout import Dropout
from jaxnet.nn.book_weights import book_network, load_book_weights
from jaxnet.nn.models import deep_convnet, simple_convnet
from jaxnet.nn.network import Network, mlp, serial
from jaxnet.nn.normalization import BatchNorm
from jaxnet.nn.pool import AvgPool2D, Flatten, MaxPool2D
from jaxnet.train._fit import evaluate, fit, predict

__version__ = "0.2.0"

__all__ = [
    "activations", "augment", "data", "initializers", "losses", "metrics", "optim", "train", "check",
    "GradcheckReport", "check_layer", "gradcheck",
    "ActivationLayer", "BatchNorm", "Dense", "Dropout", "Identity", "Layer", "Relu", "Sigmoid", "Softmax",
    "Tanh", "activation_layer",
    "Conv2D", "MaxPool2D", "AvgPool2D", "Flatten", "im2col", "col2im", "conv_output_size", "simple_convnet",
    "deep_convnet", "book_network", "load_book_weights",
    "Network", "autodiff", "backprop", "mlp", "serial",
    "evaluate", "fit", "predict",
]


def __getattr__(name):
    # Lazy submodules: `jaxnet.plot` (matplotlib) and the others below are imported on first use,
    # so `import jaxnet` stays light.
    if name in ("plot", "reference", "reference_cnn", "checkpoint", "download", "regularization"):
        import importlib

        return importlib.import_module(f"jaxnet.{name}")
    raise AttributeError(f"module 'jaxnet' has no attribute {name!r}")

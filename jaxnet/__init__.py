"""jaxnet: neural networks from scratch in JAX, with hand-derived backprop checked against jax.grad.

The functional API (parameters are pytrees, a network is a record of pure functions):

    import jax, jaxnet
    net = jaxnet.mlp([2, 4, 1], activation="sigmoid")
    _, params = net.init(jax.random.key(0))
    x, y = jaxnet.data.xor()
    params, history = jaxnet.fit(net, params, x, y, loss="mse", optimizer=jaxnet.optim.sgd(1.0), epochs=5000)
    print(jaxnet.gradcheck(net, params, x, y, "mse"))

Importing jaxnet imports neither matplotlib nor scikit-learn (see `jaxnet.plot`, `jaxnet.data`).
"""

from jaxnet import activations, augment, data, initializers, losses, metrics, optim
from jaxnet.gradcheck import GradcheckReport, check_layer, gradcheck
from jaxnet import nn
from jaxnet.nn import (ActivationLayer, AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Flatten, Identity, Layer,
                       MaxPool2D, Network, Relu, Sigmoid, Softmax, Tanh, activation_layer, col2im, conv_output_size,
                       im2col, mlp, serial, simple_convnet, deep_convnet, load_book_weights)
from jaxnet.grad import autodiff, backprop
from jaxnet.train import evaluate, fit, predict

__version__ = "0.1.0"

__all__ = [
    "activations", "augment", "data", "initializers", "losses", "metrics", "optim",
    "GradcheckReport", "check_layer", "gradcheck",
    "nn", "ActivationLayer", "BatchNorm", "Dense", "Dropout", "Identity", "Layer", "Relu", "Sigmoid", "Softmax",
    "Tanh", "activation_layer",
    "Conv2D", "MaxPool2D", "AvgPool2D", "Flatten", "im2col", "col2im", "conv_output_size", "simple_convnet",
    "deep_convnet", "load_book_weights",
    "Network", "autodiff", "backprop", "mlp", "serial",
    "evaluate", "fit", "predict",
]


def __getattr__(name):
    # Lazy submodules: `jaxnet.plot` (matplotlib) and the others below
    # are imported on first use, so `import jaxnet` stays light.
    if name in ("plot", "reference", "reference_cnn", "checkpoint", "ensemble", "distributed", "download",
                "regularization"):
        import importlib

        return importlib.import_module(f"jaxnet.{name}")
    raise AttributeError(f"module 'jaxnet' has no attribute {name!r}")

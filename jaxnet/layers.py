"""Compatibility module: the layers now live in `jaxnet.nn` (one module per layer family).

`from jaxnet.layers import Dense, Softmax, Layer, activation_layer` keeps working; new code imports
from `jaxnet` or `jaxnet.nn`.
"""

from jaxnet.nn import (ActivationLayer, BatchNorm, Dense, Dropout, Identity, Layer, Relu, Sigmoid, Softmax, Tanh,
                       activation_layer)

__all__ = ["ActivationLayer", "BatchNorm", "Dense", "Dropout", "Identity", "Layer", "Relu", "Sigmoid", "Softmax",
           "Tanh", "activation_layer"]

"""Layers and networks: the layer contract (`jaxnet.nn._layer`) and one small module per layer family.

- `Layer`: the base class (frozen dataclass, compared by value); see its module for the contract.
- `Dense`; `ActivationLayer` and its instances `Sigmoid`, `Relu`, `Tanh`, `Identity`, `Softmax`;
  `BatchNorm`; `Dropout`.
- `Conv2D`, `MaxPool2D`, `AvgPool2D`, `Flatten` (channels-first images (N, C, H, W)); the im2col
  helpers `im2col`, `col2im`, `conv_output_size`.
- `Network`, `serial`, `mlp`, `simple_convnet`, `deep_convnet`; `load_book_weights` and `book_network`
  (the book authors' trained weights, `jaxnet.nn.book_weights`).
"""

from jaxnet.nn._layer import Layer
from jaxnet.nn.activations import ActivationLayer, Identity, Relu, Sigmoid, Softmax, Tanh, activation_layer
from jaxnet.nn._checks import conv_output_size
from jaxnet.nn.conv import Conv2D, col2im, im2col
from jaxnet.nn.dense import Dense
from jaxnet.nn.dropout import Dropout
from jaxnet.nn.network import Network, mlp, serial
from jaxnet.nn.models import deep_convnet, simple_convnet
from jaxnet.nn.book_weights import book_network, load_book_weights
from jaxnet.nn.normalization import BatchNorm
from jaxnet.nn.pool import AvgPool2D, Flatten, MaxPool2D

__all__ = ["Layer", "ActivationLayer", "Identity", "Relu", "Sigmoid", "Softmax", "Tanh", "activation_layer",
           "Dense", "Dropout", "BatchNorm", "Network", "mlp", "serial",
           "Conv2D", "MaxPool2D", "AvgPool2D", "Flatten", "im2col", "col2im", "conv_output_size", "simple_convnet",
           "deep_convnet", "book_network", "load_book_weights"]

"""Layers and networks: the layer contract (`jaxnet.nn._layer`) and one small module per layer family.

- `Layer`: the base class (frozen dataclass, compared by value); see its module for the contract.
- `Dense`; `ActivationLayer` and its instances `Sigmoid`, `Relu`, `Tanh`, `Identity`, `Softmax`;
  `BatchNorm`; `Dropout`.
- `Network`, `serial`, `mlp`.
"""

from jaxnet.nn._layer import Layer
from jaxnet.nn.activations import ActivationLayer, Identity, Relu, Sigmoid, Softmax, Tanh, activation_layer
from jaxnet.nn.dense import Dense
from jaxnet.nn.dropout import Dropout
from jaxnet.nn.network import Network, mlp, serial
from jaxnet.nn.normalization import BatchNorm

__all__ = ["Layer", "ActivationLayer", "Identity", "Relu", "Sigmoid", "Softmax", "Tanh", "activation_layer",
           "Dense", "Dropout", "BatchNorm", "Network", "mlp", "serial"]

"""Ready-made networks built from the layers: the book's SimpleConvNet.

Source: Deep Learning from Scratch 7.5 (ch07/simple_convnet.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax.numpy as jnp

from jaxnet.nn.activations import Relu
from jaxnet.nn.conv import Conv2D
from jaxnet.nn.dense import Dense
from jaxnet.nn.network import Network, serial
from jaxnet.nn.pool import Flatten, MaxPool2D


def simple_convnet(
    input_shape: Sequence[int] = (1, 28, 28),
    filters: int = 30,
    kernel_size: int = 5,
    stride: int = 1,
    padding: int = 0,
    hidden: int = 100,
    classes: int = 10,
    *,
    W_init: str | Callable = "he_normal",
    dtype=jnp.float32,
) -> Network:
    """The book's SimpleConvNet: conv -> ReLU -> max-pool 2 x 2 -> Flatten -> Dense -> ReLU -> Dense.

    `Conv2D(filters, kernel_size, stride, padding)`, `Relu`, `MaxPool2D(2, stride=2)`, `Flatten`,
    `Dense(hidden)`, `Relu`, `Dense(classes)`: the output is logits, for `softmax_cross_entropy` (the
    book's SoftmaxWithLoss). With the defaults, on MNIST: (1, 28, 28) -> (30, 24, 24) -> (30, 12, 12)
    -> 4320 -> 100 -> 10; params W (30, 1, 5, 5), b (30,); W (4320, 100), b (100,); W (100, 10), b (10,).

    Args:
        input_shape: (C, H, W), channels first (MNIST: (1, 28, 28)); images are passed as
            (N, C, H, W).
        filters, kernel_size, stride, padding: the convolution's (`Conv2D`); its output size must be
            even for the 2 x 2 pooling.
        hidden, classes: the sizes of the two dense layers.
        W_init: weight initialiser of all three weighted layers; default 'he_normal' (the book's
            advice for ReLU, 6.2.3); 'normal' is the book's SimpleConvNet default `0.01 * randn`.
            Biases start at zero.
        dtype: floating parameter dtype.

    Returns:
        A `Network` with default input shape `input_shape` (so `net.init(key)` works).

    Raises:
        TypeError / ValueError naming the argument: sizes that are not positive ints, unknown
            initialisers, an input shape the convolution and pooling do not fit (at `init`).
    """
    return serial(
        Conv2D(filters, kernel_size, stride, padding, W_init=W_init, dtype=dtype),
        Relu,
        MaxPool2D(2, stride=2),
        Flatten(),
        Dense(hidden, W_init=W_init, dtype=dtype),
        Relu,
        Dense(classes, W_init=W_init, dtype=dtype),
        input_shape=input_shape,
        name=f"simple_convnet({filters} filters {kernel_size}x{kernel_size}, {hidden}, {classes})",
    )

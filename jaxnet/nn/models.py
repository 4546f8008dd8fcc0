"""Ready-made networks built from the layers: the book's SimpleConvNet and DeepConvNet.

The loader of the book authors' own trained weights (`load_book_weights`) is in
`jaxnet.nn.book_weights`.

Source: Deep Learning from Scratch 7.5 (ch07/simple_convnet.py) and 8.1 (ch08/deep_convnet.py).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import jax.numpy as jnp

from jaxnet.nn.activations import Relu
from jaxnet.nn.conv import Conv2D
from jaxnet.nn.dense import Dense
from jaxnet.nn.dropout import Dropout
from jaxnet.nn.network import Network, serial
from jaxnet.nn.pool import Flatten, MaxPool2D
from jaxnet.validate import check_positive


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


# The book's DeepConvNet: (filters, padding) of its six 3 x 3 convolutions, stride 1. The fourth pads
# by 2 (14 -> 16), so that the second pooling gives 8 x 8 and the third 4 x 4 (64 x 4 x 4 = 1024).
DEEP_CONVNET_PADDINGS = (1, 1, 1, 2, 1, 1)


def deep_convnet(
    input_shape: Sequence[int] = (1, 28, 28),
    filters: Sequence[int] = (16, 16, 32, 32, 64, 64),
    hidden: int = 50,
    classes: int = 10,
    *,
    dropout: float = 0.5,
    book_dropout: bool = True,
    dropout_logits: bool = True,
    W_init: str | Callable = "he_normal",
    dtype=jnp.float32,
) -> Network:
    """The book's DeepConvNet (8.1.1): six 3 x 3 convolutions, three max-pools, two dense layers.

    Layers (21; with the defaults on MNIST, shapes without the batch axis)::

        Conv2D(16, 3, padding=1) ReLU Conv2D(16, 3, padding=1) ReLU MaxPool2D(2)   (1, 28, 28) -> (16, 14, 14)
        Conv2D(32, 3, padding=1) ReLU Conv2D(32, 3, padding=2) ReLU MaxPool2D(2)   -> (32, 16, 16) -> (32, 8, 8)
        Conv2D(64, 3, padding=1) ReLU Conv2D(64, 3, padding=1) ReLU MaxPool2D(2)   -> (64, 4, 4)
        Flatten Dense(50) ReLU Dropout(0.5) Dense(10) Dropout(0.5)                 -> 1024 -> 50 -> 10

    All convolutions have stride 1; the fourth pads by 2, as the book's does (its padding 1 would give
    7 x 7 after the second pooling, which the third cannot halve). Every pooling is 2 x 2 with stride 2.
    The output is logits for `softmax_cross_entropy` (the book's SoftmaxWithLoss). Params: W (16, 1, 3, 3),
    (16, 16, 3, 3), (32, 16, 3, 3), (32, 32, 3, 3), (64, 32, 3, 3), (64, 64, 3, 3) and their b;
    W (1024, 50), (50, 10) and their b: 123,552 numbers.

    Dropout. The book's network uses its own, non-inverted Dropout (`Dropout(rate, book=True)`:
    training multiplies by the mask, evaluation by 1 - rate) after the hidden Dense *and after the
    last Dense*, i.e. on the logits. Dropping half of the ten logits in every training step means the
    true class's logit is zero half of the time, so the training loss cannot fall much below the
    cross-entropy of a softmax over the surviving logits: it stays near 1.0 while the test error
    falls below 1% (with the book's own trained weights, the training-mode loss on the first 2,000
    t10k images is 0.94, against 0.10 in evaluation mode; `python -m experiments book` measures it).
    Evaluation multiplies the logits by 0.5, which changes no arg-max. The defaults reproduce the book
    exactly, so that its trained weights load into `deep_convnet()` (`load_book_weights`).
    `book_dropout=False` uses inverted dropout (`Dropout(rate)`, identity in evaluation; the same
    expected training output), `dropout_logits=False` leaves the logits alone (a training loss that
    falls as the test loss does), and `dropout=0` removes both Dropout layers.

    Args:
        input_shape: (C, H, W), channels first; images are passed as (N, C, H, W). H and W must be
            multiples of 4 whose third pooling input is even (28 gives 28 -> 14 -> 16 -> 8 -> 4).
        filters: the six convolutions' filter counts.
        hidden, classes: the sizes of the two dense layers.
        dropout: the drop probability of both Dropout layers, in [0, 1); 0 removes them.
        book_dropout: the book's non-inverted Dropout (default) or, when False, inverted dropout.
        dropout_logits: keep the book's Dropout after the last Dense (default True).
        W_init: initialiser of every weighted layer; default 'he_normal', N(0, 2 / fan_in), the book's
            `sqrt(2 / pre_node_num) * randn` (fan_in = C * 3 * 3 for a convolution). Biases start at zero.
        dtype: floating parameter dtype.

    Returns:
        A `Network` with default input shape `input_shape` (so `net.init(key)` works).

    Raises:
        TypeError / ValueError naming the argument: not six filter counts (`filters[i]` for a count
            that is not a positive int), sizes that are not positive ints, a dropout rate that is not a
            number in [0, 1), unknown initialisers; at `init`, an input shape the
            convolutions and poolings do not fit.

    Source: Deep Learning from Scratch 8.1.1 (ch08/deep_convnet.py); He et al. 2015 (initialisation);
    Simonyan & Zisserman 2015 (stacks of 3 x 3 convolutions, the VGG design the book follows).
    """
    filters = tuple(filters)
    if len(filters) != 6:
        raise ValueError(f"filters: expected the six convolutions' filter counts, e.g. (16, 16, 32, 32, 64, 64), "
                         f"got {filters!r}")
    for i, n in enumerate(filters):
        check_positive(f"filters[{i}]", n, integer=True)
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real):
        raise TypeError(f"dropout: expected the drop probability of both Dropout layers, a number in [0, 1) (0: "
                        f"none), got {dropout!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout: expected the drop probability of both Dropout layers in [0, 1) (0: none), "
                         f"got {dropout!r}")
    drop = [] if dropout == 0 else [Dropout(float(dropout), book=book_dropout)]
    layers = []
    for i, (n, pad) in enumerate(zip(filters, DEEP_CONVNET_PADDINGS)):
        layers += [Conv2D(n, 3, 1, pad, W_init=W_init, dtype=dtype), Relu]
        if i % 2:
            layers.append(MaxPool2D(2, stride=2))
    layers += [Flatten(), Dense(hidden, W_init=W_init, dtype=dtype), Relu, *drop,
               Dense(classes, W_init=W_init, dtype=dtype), *(drop if dropout_logits else [])]
    kind = "no dropout" if not drop else (f"{'book' if book_dropout else 'inverted'} dropout {dropout:g}"
                                          + ("" if dropout_logits else ", none on the logits"))
    return serial(*layers, input_shape=input_shape,
                  name=f"deep_convnet({'-'.join(map(str, filters))}, {hidden}, {classes}, {kind})")

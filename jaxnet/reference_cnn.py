"""The book's convolutional networks in plain numpy, kept faithful on purpose: an independent reference.

A transcription of Deep Learning from Scratch, chapters 7 and 8 (common/util.py im2col and col2im,
common/layers.py Convolution, Pooling, Relu, Affine, Dropout, SoftmaxWithLoss, common/optimizer.py
Adam, ch07/simple_convnet.py SimpleConvNet, ch08/deep_convnet.py DeepConvNet), and the forward pass
of chapter 3's MNIST network (ch03/neuralnet_mnist.py `predict`): stateful layer objects with
`forward` and `backward` that keep what the backward pass needs, channels-first images (N, C, H, W),
filters (FN, C, FH, FW). jaxnet's convolution layers are tested against jax, and this module is what
the CNN benchmark races them against (and a test checks that its gradients are jaxnet's). With the
book authors' trained weights (`load_params`), the tests check that jaxnet's forward passes give the
same outputs.

What the book divides by: only SoftmaxWithLoss divides, once, by the batch size (its loss is the
mean cross-entropy over the batch and its backward is (softmax(x) - t) / batch); the Affine and
Convolution backwards do not divide again. So, unlike the tutorial's MLP (`jaxnet.reference`), these
are the true gradients of the mean loss. The book's cross-entropy adds 1e-7 inside the log (the loss
value differs from the exact one by up to ~1e-7 per example; the gradient is exact).

Deviations, all numerically neutral: arrays keep the input's dtype (the book's `np.zeros` makes
float64 columns whatever the input; here a float32 run stays float32), random numbers come from an
explicit `np.random.Generator`, and nothing is pickled. No JAX: this module imports numpy only.
"""

from __future__ import annotations

import numpy as np


def im2col(x: np.ndarray, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> np.ndarray:
    """(N, C, H, W) -> (N * OH * OW, C * FH * FW): one row per output position, patch in (c, fh, fw) order."""
    n, c, h, w = x.shape
    out_h = (h + 2 * pad - filter_h) // stride + 1
    out_w = (w + 2 * pad - filter_w) // stride + 1
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    col = np.zeros((n, c, filter_h, filter_w, out_h, out_w), dtype=x.dtype)
    for dy in range(filter_h):  # one strided slice per filter offset, as the book
        for dx in range(filter_w):
            col[:, :, dy, dx] = img[:, :, dy:dy + stride * out_h:stride, dx:dx + stride * out_w:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * out_h * out_w, -1)


def col2im(col: np.ndarray, input_shape: tuple, filter_h: int, filter_w: int, stride: int = 1,
           pad: int = 0) -> np.ndarray:
    """The adjoint of `im2col`: add every patch back into an (N, C, H, W) image (overlaps are summed)."""
    n, c, h, w = input_shape
    out_h = (h + 2 * pad - filter_h) // stride + 1
    out_w = (w + 2 * pad - filter_w) // stride + 1
    patches = col.reshape(n, out_h, out_w, c, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((n, c, h + 2 * pad + stride - 1, w + 2 * pad + stride - 1), dtype=col.dtype)
    for dy in range(filter_h):
        for dx in range(filter_w):
            img[:, :, dy:dy + stride * out_h:stride, dx:dx + stride * out_w:stride] += patches[:, :, dy, dx]
    return img[:, :, pad:h + pad, pad:w + pad]


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, with the maximum subtracted first."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def cross_entropy_error(y: np.ndarray, t: np.ndarray) -> float:
    """The book's mean cross-entropy of probabilities y (N, K) and labels t (N,) or one-hot (N, K):
    -sum(log(y[n, t_n] + 1e-7)) / N."""
    if t.size == y.size:
        t = t.argmax(axis=1)
    n = y.shape[0]
    return float(-np.sum(np.log(y[np.arange(n), t] + 1e-7)) / n)


class Relu:
    """max(0, x); backward zeroes dout where x <= 0."""

    def forward(self, x):
        self.mask = x <= 0
        return np.where(self.mask, 0, x)

    def backward(self, dout):
        return np.where(self.mask, 0, dout)


class Affine:
    """x W + b on inputs flattened to (N, -1); backward dW = x^T dout, db = sum(dout), dx = dout W^T."""

    def __init__(self, W, b):
        self.W, self.b = W, b

    def forward(self, x):
        self.x_shape = x.shape
        self.x = x.reshape(x.shape[0], -1)
        return self.x @ self.W + self.b

    def backward(self, dout):
        self.dW = self.x.T @ dout
        self.db = dout.sum(axis=0)
        return (dout @ self.W.T).reshape(self.x_shape)


class SoftmaxWithLoss:
    """Softmax and mean cross-entropy; backward (softmax(x) - one_hot(t)) / N (the only division)."""

    def forward(self, x, t):
        self.t, self.y = t, softmax(x)
        self.loss = cross_entropy_error(self.y, t)
        return self.loss

    def backward(self, dout=1):
        n = self.t.shape[0]
        if self.t.size == self.y.size:
            return dout * (self.y - self.t) / n
        dx = self.y.copy()
        dx[np.arange(n), self.t] -= 1
        return dout * dx / n


class Convolution:
    """im2col convolution: out = im2col(x) @ W.reshape(FN, -1).T + b, as (N, FN, OH, OW)."""

    def __init__(self, W, b, stride=1, pad=0):
        self.W, self.b, self.stride, self.pad = W, b, stride, pad

    def forward(self, x):
        fn, _, fh, fw = self.W.shape
        n, _, h, w = x.shape
        out_h = (h + 2 * self.pad - fh) // self.stride + 1
        out_w = (w + 2 * self.pad - fw) // self.stride + 1
        self.x = x
        self.col = im2col(x, fh, fw, self.stride, self.pad)
        self.col_W = self.W.reshape(fn, -1).T
        out = self.col @ self.col_W + self.b
        return out.reshape(n, out_h, out_w, -1).transpose(0, 3, 1, 2)

    def backward(self, dout):
        fn, c, fh, fw = self.W.shape
        dout = dout.transpose(0, 2, 3, 1).reshape(-1, fn)
        self.db = dout.sum(axis=0)
        self.dW = (self.col.T @ dout).T.reshape(fn, c, fh, fw)
        return col2im(dout @ self.col_W.T, self.x.shape, fh, fw, self.stride, self.pad)


class Pooling:
    """Max pooling by im2col; backward sends each window's dout to its first maximum (np.argmax)."""

    def __init__(self, pool_h, pool_w, stride=1, pad=0):
        self.pool_h, self.pool_w, self.stride, self.pad = pool_h, pool_w, stride, pad

    def forward(self, x):
        n, c, h, w = x.shape
        out_h = (h - self.pool_h) // self.stride + 1
        out_w = (w - self.pool_w) // self.stride + 1
        col = im2col(x, self.pool_h, self.pool_w, self.stride, self.pad).reshape(-1, self.pool_h * self.pool_w)
        self.x = x
        self.arg_max = np.argmax(col, axis=1)
        return col.max(axis=1).reshape(n, out_h, out_w, c).transpose(0, 3, 1, 2)

    def backward(self, dout):
        dout = dout.transpose(0, 2, 3, 1)
        size = self.pool_h * self.pool_w
        dmax = np.zeros((dout.size, size), dtype=dout.dtype)
        dmax[np.arange(self.arg_max.size), self.arg_max] = dout.reshape(-1)
        dcol = dmax.reshape(dout.shape[0] * dout.shape[1] * dout.shape[2], -1)
        return col2im(dcol, self.x.shape, self.pool_h, self.pool_w, self.stride, self.pad)


class Dropout:
    """The book's Dropout (not inverted): training keeps each unit with probability 1 - ratio and
    does not rescale; evaluation multiplies by 1 - ratio. The mask comes from `rng` (the book's
    `np.random.rand`)."""

    def __init__(self, dropout_ratio=0.5, rng=None):
        self.dropout_ratio = dropout_ratio
        self.rng = np.random.default_rng(0) if rng is None else rng

    def forward(self, x, train_flg=True):
        if train_flg:
            self.mask = self.rng.random(x.shape) > self.dropout_ratio
            return x * self.mask
        return x * (1.0 - self.dropout_ratio)

    def backward(self, dout):
        return dout * self.mask


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The book's 1 / (1 + exp(-x)) (common/functions.py)."""
    return 1 / (1 + np.exp(-x))


def neuralnet_mnist_predict(network: dict, x: np.ndarray) -> np.ndarray:
    """Chapter 3's MNIST network (ch03/neuralnet_mnist.py `predict`): 784-50-100-10, sigmoid hidden
    layers, softmax output. `network` holds W1 (784, 50), b1, W2 (50, 100), b2, W3 (100, 10), b3
    (the book's sample_weight); x is (N, 784) in [0, 1]. Returns the probabilities (N, 10)."""
    a1 = x @ network["W1"] + network["b1"]
    z1 = sigmoid(a1)
    a2 = z1 @ network["W2"] + network["b2"]
    z2 = sigmoid(a2)
    a3 = z2 @ network["W3"] + network["b3"]
    return softmax(a3)


class SimpleConvNet:
    """conv - relu - pool(2 x 2, stride 2) - affine - relu - affine - softmax, the book's ch07 network.

    `params` holds W1 (FN, C, FH, FW), b1 (FN,), W2 (FN * OH/2 * OW/2, hidden), b2, W3 (hidden, out),
    b3; weights are `weight_init_std * standard_normal` (the book's 0.01), biases zero, drawn from
    `rng` in `dtype`. `gradient(x, t)` returns the back-propagated gradients of the mean loss.
    """

    def __init__(self, input_dim=(1, 28, 28), filter_num=30, filter_size=5, pad=0, stride=1, hidden_size=100,
                 output_size=10, weight_init_std=0.01, *, rng=None, dtype=np.float64):
        rng = np.random.default_rng(0) if rng is None else rng
        conv_out = (input_dim[1] - filter_size + 2 * pad) // stride + 1
        pool_out = filter_num * (conv_out // 2) * (conv_out // 2)

        def randn(*shape):
            return (weight_init_std * rng.standard_normal(shape)).astype(dtype)

        self.params = {"W1": randn(filter_num, input_dim[0], filter_size, filter_size),
                       "b1": np.zeros(filter_num, dtype),
                       "W2": randn(pool_out, hidden_size), "b2": np.zeros(hidden_size, dtype),
                       "W3": randn(hidden_size, output_size), "b3": np.zeros(output_size, dtype)}
        self.stride, self.pad = stride, pad
        self.load_params(self.params)

    def load_params(self, params):
        """Use `params` ({"W1": ..., "b3": ...}, arrays of the shapes above) and rebuild the layers on
        them (the book's load_params, from a dict instead of a pickle file)."""
        self.params = {k: np.array(v) for k, v in params.items()}
        p = self.params
        self.layers = [Convolution(p["W1"], p["b1"], self.stride, self.pad), Relu(), Pooling(2, 2, stride=2),
                       Affine(p["W2"], p["b2"]), Relu(), Affine(p["W3"], p["b3"])]
        self.last_layer = SoftmaxWithLoss()

    def predict(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        return self.last_layer.forward(self.predict(x), t)

    def accuracy(self, x, t, batch_size=100):
        """Fraction of correct arg-max predictions, evaluated batch by batch (full batches only, as the book)."""
        if t.ndim != 1:
            t = t.argmax(axis=1)
        correct = 0
        for i in range(x.shape[0] // batch_size):
            part = slice(i * batch_size, (i + 1) * batch_size)
            correct += int(np.sum(self.predict(x[part]).argmax(axis=1) == t[part]))
        return correct / x.shape[0]

    def gradient(self, x, t):
        """{"W1": dW1, "b1": db1, ...}: one forward and one backward pass."""
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        conv, hidden, out = self.layers[0], self.layers[3], self.layers[5]
        return {"W1": conv.dW, "b1": conv.db, "W2": hidden.dW, "b2": hidden.db, "W3": out.dW, "b3": out.db}


class Adam:
    """The book's Adam: lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t); params -= lr_t m / (sqrt(v) + 1e-7),
    updated in place (the layers hold the same arrays)."""

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr, self.beta1, self.beta2, self.iter = lr, beta1, beta2, 0
        self.m = self.v = None

    def update(self, params, grads):
        if self.m is None:
            self.m = {k: np.zeros_like(v) for k, v in params.items()}
            self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2 ** self.iter) / (1.0 - self.beta1 ** self.iter)
        for k in params:
            self.m[k] += (1 - self.beta1) * (grads[k] - self.m[k])
            self.v[k] += (1 - self.beta2) * (grads[k] ** 2 - self.v[k])
            params[k] -= (lr_t * self.m[k] / (np.sqrt(self.v[k]) + 1e-7)).astype(params[k].dtype)


def train_epoch(net: SimpleConvNet, optimizer: Adam, x: np.ndarray, t: np.ndarray, batch_size: int,
                rng: np.random.Generator) -> float:
    """One epoch as the book's Trainer runs it: n / batch_size steps, each on `batch_size` examples drawn
    at random with replacement (`rng.choice`), gradient then update. Returns the mean of the batch
    losses, each computed before its update."""
    losses = []
    for _ in range(max(x.shape[0] // batch_size, 1)):
        batch = rng.choice(x.shape[0], batch_size)
        grads = net.gradient(x[batch], t[batch])
        optimizer.update(net.params, grads)
        losses.append(net.last_layer.loss)
    return float(np.mean(losses))


class DeepConvNet:
    """The book's ch08 network: conv - relu - conv - relu - pool - conv - relu - conv - relu - pool -
    conv - relu - conv - relu - pool - affine - relu - dropout - affine - dropout - softmax.

    Six 3 x 3 convolutions of 16, 16, 32, 32, 64, 64 filters, stride 1, padding 1 except the fourth
    (padding 2); 2 x 2 max-pools with stride 2; Affine 64 * 4 * 4 -> 50 and 50 -> 10, each followed by
    the book's Dropout 0.5. Weights `sqrt(2 / fan_in) * standard_normal` (He), biases zero, from `rng`.
    `predict(x, train_flg=False)` is evaluation mode (each Dropout multiplies by 0.5).
    """

    def __init__(self, input_dim=(1, 28, 28), hidden_size=50, output_size=10, *, rng=None, dtype=np.float64):
        rng = np.random.default_rng(0) if rng is None else rng
        filters = (16, 16, 32, 32, 64, 64)
        self.pads = (1, 1, 1, 2, 1, 1)
        pre_node_nums = np.array([input_dim[0] * 3 * 3, 16 * 3 * 3, 16 * 3 * 3, 32 * 3 * 3, 32 * 3 * 3, 64 * 3 * 3,
                                  64 * 4 * 4, hidden_size])
        scales = np.sqrt(2.0 / pre_node_nums)
        self.params = {}
        channels = input_dim[0]
        for idx, n in enumerate(filters):
            self.params[f"W{idx + 1}"] = (scales[idx] * rng.standard_normal((n, channels, 3, 3))).astype(dtype)
            self.params[f"b{idx + 1}"] = np.zeros(n, dtype)
            channels = n
        self.params["W7"] = (scales[6] * rng.standard_normal((64 * 4 * 4, hidden_size))).astype(dtype)
        self.params["b7"] = np.zeros(hidden_size, dtype)
        self.params["W8"] = (scales[7] * rng.standard_normal((hidden_size, output_size))).astype(dtype)
        self.params["b8"] = np.zeros(output_size, dtype)
        self.rng = rng
        self.load_params(self.params)

    def load_params(self, params):
        """Use `params` ({"W1": ..., "b8": ...}) and rebuild the layers on them (the book's load_params,
        from a dict instead of a pickle file)."""
        self.params = {k: np.array(v) for k, v in params.items()}
        p = self.params
        layers = []
        for i in range(6):
            layers += [Convolution(p[f"W{i + 1}"], p[f"b{i + 1}"], 1, self.pads[i]), Relu()]
            if i % 2:
                layers.append(Pooling(2, 2, stride=2))
        layers += [Affine(p["W7"], p["b7"]), Relu(), Dropout(0.5, self.rng), Affine(p["W8"], p["b8"]),
                   Dropout(0.5, self.rng)]
        self.layers = layers
        self.last_layer = SoftmaxWithLoss()

    def predict(self, x, train_flg=False):
        for layer in self.layers:
            x = layer.forward(x, train_flg) if isinstance(layer, Dropout) else layer.forward(x)
        return x

    def loss(self, x, t):
        return self.last_layer.forward(self.predict(x, train_flg=True), t)

    def accuracy(self, x, t, batch_size=100):
        """Fraction of correct arg-max predictions in evaluation mode, batch by batch (full batches
        only, as the book)."""
        if t.ndim != 1:
            t = t.argmax(axis=1)
        correct = 0
        for i in range(x.shape[0] // batch_size):
            part = slice(i * batch_size, (i + 1) * batch_size)
            correct += int(np.sum(self.predict(x[part], train_flg=False).argmax(axis=1) == t[part]))
        return correct / x.shape[0]

    def gradient(self, x, t):
        """{"W1": dW1, ..., "b8": db8}: one training-mode forward pass (new dropout masks) and one backward."""
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        weighted = [layer for layer in self.layers if isinstance(layer, (Convolution, Affine))]
        grads = {}
        for i, layer in enumerate(weighted, 1):
            grads[f"W{i}"], grads[f"b{i}"] = layer.dW, layer.db
        return grads

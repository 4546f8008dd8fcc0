"""The trained weights of *Deep Learning from Scratch*, loaded into jaxnet networks, without pickle.

The book's repository ships the weights its authors trained as pickles of `{"W1": ..., "b1": ...}`;
converted to `.npz` with the same keys, shapes and dtypes they are read here with
`numpy.load(path, allow_pickle=False)`, which never executes code. Three networks:

| model               | book file (as `.npz`)            | network                                               |
|---------------------|----------------------------------|-------------------------------------------------------|
| `"neuralnet_mnist"` | ch03 `sample_weight.pkl`         | 784-50-100-10, sigmoid hidden layers, softmax output   |
| `"simple_convnet"`  | ch07 `params.pkl`                | `jaxnet.simple_convnet()`                              |
| `"deep_convnet"`    | ch08 `deep_convnet_params.pkl`   | `jaxnet.deep_convnet()` (the book's Dropout)           |

Mapping: the book numbers the weighted layers (Affine, Convolution) in order, so `W{k}`, `b{k}` are
the params `{"W", "b"}` of the network's k-th layer with params. The layouts already agree: convolution
weights (FN, C, FH, FW), dense weights (n_in, n_out), images (N, C, H, W) in [0, 1], flattening
row-major over (C, H, W); nothing is transposed.

Source: Deep Learning from Scratch 3.6 (ch03/neuralnet_mnist.py), 7.5 (ch07/simple_convnet.py
`load_params`) and 8.1 (ch08/deep_convnet.py); github.com/oreilly-japan/deep-learning-from-scratch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnet.nn.models import deep_convnet, simple_convnet
from jaxnet.nn.network import Network, mlp

# model name -> (the file's name in the book's weights folder, the book's chapter and script)
BOOK_FILES = {
    "neuralnet_mnist": ("sample_weight.npz", "ch03/neuralnet_mnist.py"),
    "simple_convnet": ("simple_convnet_2016.npz", "ch07/simple_convnet.py"),
    "deep_convnet": ("deep_convnet_2016.npz", "ch08/deep_convnet.py"),
}


def book_network(model: str, dtype: Any = jnp.float32) -> Network:
    """The network of one of the book's weight files, as the book builds it.

    Args:
        model: 'neuralnet_mnist' (ch03: `mlp([784, 50, 100, 10], 'sigmoid', 'softmax')`, inputs
            flattened to (N, 784)), 'simple_convnet' or 'deep_convnet' (inputs (N, 1, 28, 28)).
        dtype: the layers' parameter dtype (used by `net.init`).

    Returns:
        A `Network` with its default input shape.

    Raises:
        ValueError: an unknown model name (the message lists the three).
    """
    if model == "neuralnet_mnist":
        return mlp([784, 50, 100, 10], activation="sigmoid", output_activation="softmax", dtype=dtype)
    if model == "simple_convnet":
        return simple_convnet(dtype=dtype)
    if model == "deep_convnet":
        return deep_convnet(dtype=dtype)
    raise ValueError(f"model: expected one of {', '.join(map(repr, BOOK_FILES))} or a jaxnet Network, got {model!r}")


def _model_of(model: Any, dtype: Any) -> tuple[str, Network]:
    """(name, network): the named book model, or the book model whose layers `model` has."""
    if isinstance(model, str):
        return model, book_network(model, dtype)
    if not isinstance(model, Network):
        raise TypeError(f"model: expected a name ({', '.join(map(repr, BOOK_FILES))}) or a jaxnet Network, got "
                        f"{type(model).__name__}")
    names = [layer.name for layer in model.layers]
    for name in BOOK_FILES:
        if [layer.name for layer in book_network(name).layers] == names:
            return name, model
    closest = max(BOOK_FILES, key=lambda n: _agreement(names, [layer.name for layer in book_network(n).layers]))
    book = [layer.name for layer in book_network(closest).layers]
    i = _agreement(names, book)
    found = names[i] if i < len(names) else "(no layer)"
    wanted = book[i] if i < len(book) else "(no layer)"
    raise ValueError(f"model: {model.name} is none of the book's networks; closest is {closest!r}, whose layer {i} is "
                     f"{wanted}, found {found} (the book's weights give the book's outputs only in the book's layers: "
                     f"its Dropout is non-inverted, Dropout(0.5, book=True); build it with "
                     f"jaxnet.nn.book_weights.book_network({closest!r}) or pass the name)")


def _agreement(a: list, b: list) -> int:
    """The number of leading entries a and b share."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _check_dtype(dtype: Any) -> np.dtype:
    try:
        dtype = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"dtype: expected a floating dtype such as jnp.float32, got {dtype!r}") from err
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype: expected a floating dtype such as jnp.float32, got {dtype}")
    if jax.dtypes.canonicalize_dtype(dtype) != dtype:
        raise ValueError(f"dtype: {dtype} needs JAX's 64-bit mode; load inside `with jax.enable_x64(True):` or set "
                         f"JAX_ENABLE_X64=1 (otherwise jax would store the weights as "
                         f"{jax.dtypes.canonicalize_dtype(dtype)})")
    return dtype


def _read(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as err:  # object arrays (pickled) or a file numpy cannot read as .npz
        raise ValueError(f"path: {path} is not an .npz of plain numeric arrays ({err}); the book's pickles must be "
                         f"converted once with numpy.savez (see the weights folder's README)") from None


def load_book_weights(model: str | Network, path: str | os.PathLike, *, dtype: Any = jnp.float32
                      ) -> tuple[Network, tuple]:
    """Load one of the book's trained weight files (`.npz`) into a jaxnet network.

    The book's `W1, b1, W2, b2, ...` become the params of the network's 1st, 2nd, ... layer with
    params (module docstring); every key, shape and dtype is checked before anything is built.

    Args:
        model: 'neuralnet_mnist', 'simple_convnet' or 'deep_convnet' (the network is built with
            `book_network`), or a `Network` whose layers are the book model's (the same layer names in
            the same order, e.g. `jaxnet.deep_convnet()` with its default, non-inverted Dropout).
        path: the `.npz` file, or the folder holding it under the book's file name
            (`BOOK_FILES`: sample_weight.npz, simple_convnet_2016.npz, deep_convnet_2016.npz).
        dtype: the params' dtype, float32 by default (jaxnet's default); `jnp.float64` keeps the files'
            float64 values exactly (the ch03 file is float32) and needs `jax.enable_x64`; None keeps
            each array's own dtype from the file. The book's accuracies are reproduced in both float32 and
            float64 (tests/test_book_weights.py).

    Returns:
        `(net, params)`: the network (`model` itself when a Network was given) and its params, a tuple
        with one dict per layer, in evaluation mode ready for `net.apply(params, x)`. The outputs are
        the book's `predict`: softmax probabilities for 'neuralnet_mnist'; logits times 0.5 (the
        book's evaluation-mode Dropout) for 'deep_convnet'; logits for 'simple_convnet'.

    Raises:
        ValueError naming the key: a missing key, an extra key, a shape other than the model's
            (expected and found shapes; a file of another book model is recognised and named), an
            array that is not floating point or holds NaN or infinity; an unknown model name, or a
            Network that is not the book's (naming the first layer that differs); float64 without
            64-bit mode; a file that needs pickle or is not an `.npz`.
        FileNotFoundError: the file (or the folder's book file) does not exist.
        TypeError: a model that is neither a name nor a Network; a non-floating dtype.
    """
    if dtype is not None:
        dtype = _check_dtype(dtype)
    name, net = _model_of(model, jnp.float32 if dtype is None else dtype)
    path = Path(path)
    if path.is_dir():
        path = path / BOOK_FILES[name][0]
    if not path.is_file():
        raise FileNotFoundError(f"path: no weight file {path} (the book's {name} weights are "
                                f"{BOOK_FILES[name][0]}, converted from {BOOK_FILES[name][1]}'s pickle)")
    arrays = _read(path)
    template = _template(net, name)
    _check_keys(arrays, _expected_shapes(template), name, path)
    if dtype is None:  # each file's own dtype: float64 also needs 64-bit mode
        for a in arrays.values():
            _check_dtype(a.dtype)
    params, k = [], 0
    for layer_params in template:
        k += bool(layer_params)
        params.append({p: jnp.asarray(arrays[f"{p}{k}"], arrays[f"{p}{k}"].dtype if dtype is None else dtype)
                       for p in layer_params})
    return net, tuple(params)


def _template(net: Network, name: str) -> tuple:
    """The params' shapes and dtypes (`jax.ShapeDtypeStruct`s) of `net` on the book model's inputs."""
    return jax.eval_shape(lambda: net.init(jax.random.key(0), book_network(name).input_shape)[1])


def _expected_shapes(template: tuple) -> dict[str, tuple[int, ...]]:
    """{'W1': shape, 'b1': shape, ...}: the book's names for the params of the layers that have any."""
    weighted = [p for p in template if p]
    return {f"{p}{k}": tuple(layer[p].shape) for k, layer in enumerate(weighted, 1) for p in ("W", "b")}


def _check_keys(arrays: dict, expected: dict, name: str, path: Path) -> None:
    """ValueError naming the first key that is missing, extra, of the wrong shape, not floating or not finite."""
    shapes = {key: tuple(a.shape) for key, a in arrays.items()}
    other = [m for m in BOOK_FILES if m != name and _expected_shapes(_template(book_network(m), m)) == shapes]
    hint = f"; these are the weights of the book's {other[0]!r}" if other else ""
    for key, shape in expected.items():  # in the book's order, so another model's file fails at W1
        if key not in arrays:
            raise ValueError(f"{key}: missing from {path}: the book's {name} expects {key} of shape {shape}{hint}")
        if shapes[key] != shape:
            raise ValueError(f"{key}: expected shape {shape} for the book's {name}, found {shapes[key]} in "
                             f"{path}{hint}")
    for key in arrays:
        if key not in expected:
            raise ValueError(f"{key}: unexpected key in {path}, of shape {shapes[key]}: the book's {name} has only "
                             f"{', '.join(expected)}{hint}")
    for key, a in arrays.items():
        if not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"{key}: expected floating-point weights (the book's are float64, float32 for ch03), "
                             f"found dtype {a.dtype} in {path}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{key}: holds NaN or infinity in {path} ({int(np.sum(~np.isfinite(a)))} entries)")

"""The book authors' own trained weights (../shared/data/dlfs-weights) in jaxnet's networks.

- jaxnet's evaluation-mode forward pass gives exactly the accuracy and misclassified count that the
  book's own numpy code gets on all 10,000 MNIST t10k images (the weights README: 0.9352 / 648,
  0.9890 / 110, 0.9935 / 65), in float64 and in float32;
- its outputs equal an independent numpy forward pass of the book's layers (`jaxnet.reference_cnn`,
  which imports nothing from jaxnet) within 1e-9 relative in float64;
- `load_book_weights` rejects a bad file (missing or extra key, wrong shape or dtype, another model's
  weights, NaN, pickled objects) with a ValueError that names the key and both shapes.

Skipped, with the reason, when the shared data folder is absent.

The forward passes over all 10,000 images are compiled with XLA's usual optimisations
(`OPTIMIZED`): the test run's conftest turns most of them off to compile small programs quickly,
which makes these convolutions 3-5 times slower to run (DeepConvNet: minutes instead of seconds).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import MNIST_DIR, REPO

import jaxnet
from jaxnet import data, losses
from jaxnet import reference_cnn as book
from jaxnet.nn.book_weights import BOOK_FILES, book_network

WEIGHTS_DIR = REPO.parent / "shared" / "data" / "dlfs-weights"
HAVE_WEIGHTS = all((WEIGHTS_DIR / f).is_file() for f, _ in BOOK_FILES.values())
HAVE_MNIST = (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file() and (MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file()
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason=f"the book's weight files are not in {WEIGHTS_DIR}")
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason=f"no MNIST t10k files in {MNIST_DIR}")

# The weights README: the book's own numpy code (its `predict`, evaluation mode, float64) on all
# 10,000 t10k images. These numbers come from the book's code, not from jaxnet.
BOOK = {"neuralnet_mnist": (0.9352, 648), "simple_convnet": (0.9890, 110), "deep_convnet": (0.9935, 65)}
# XLA's defaults, which conftest's JAX_DISABLE_MOST_OPTIMIZATIONS and XLA_FLAGS change for the test run
OPTIMIZED = {"xla_backend_optimization_level": 3, "xla_llvm_disable_expensive_passes": False,
             "xla_cpu_use_fusion_emitters": True}
CHUNK = 250  # images per jitted call: the im2col columns stay small (faster than 1,000 on 2 cores)
# images compared with the numpy transcription (its DeepConvNet takes ~10 s per 1,000 in float64)
NUMPY_IMAGES = {"neuralnet_mnist": 10_000, "simple_convnet": 1_000, "deep_convnet": 500}


def optimized(fn, *args):
    """`fn` jitted and compiled for `args`' shapes and dtypes with XLA's usual optimisations."""
    return jax.jit(fn).lower(*args).compile(compiler_options=OPTIMIZED)


@functools.cache
def t10k() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 t10k images as float64 (n, 1, 28, 28) in [0, 1] (pixel / 255, as the book's
    `load_mnist(normalize=True)`), and their labels int32 (n,)."""
    x = data.load_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz").astype(np.float64) / 255.0
    y = data.load_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz").astype(np.int32)
    return x[:, None], y


def inputs(model: str, x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), 784) if model == "neuralnet_mnist" else x


@functools.cache
def outputs(model: str, dtype: str) -> np.ndarray:
    """jaxnet's evaluation-mode outputs (10000, 10) for the book's weights, one jit, CHUNK images per call."""
    with jax.enable_x64(dtype == "float64"):
        net, params = jaxnet.load_book_weights(model, WEIGHTS_DIR, dtype=dtype)
        x = inputs(model, t10k()[0]).astype(dtype)
        apply = optimized(net.apply, params, x[:CHUNK])
        return np.concatenate([np.asarray(apply(params, x[i:i + CHUNK])) for i in range(0, len(x), CHUNK)])


@needs_weights
@needs_mnist
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("model", list(BOOK))
def test_accuracy_on_all_t10k_images_is_the_books(model, dtype):
    out = outputs(model, dtype)
    assert out.shape == (10_000, 10) and out.dtype == dtype and np.all(np.isfinite(out))
    predicted = np.argmax(out, axis=1)
    accuracy, wrong = BOOK[model]
    assert int(np.sum(predicted != t10k()[1])) == wrong
    assert float(np.mean(predicted == t10k()[1])) == accuracy


@needs_weights
@needs_mnist
@pytest.mark.parametrize("model", list(BOOK))
def test_outputs_equal_the_books_numpy_forward_float64(model):
    """jaxnet's float64 outputs against the numpy transcription of the book's layers, fed the file's
    arrays directly (no jaxnet code on that side): within 1e-9 relative, element by element."""
    n = NUMPY_IMAGES[model]
    weights = dict(np.load(WEIGHTS_DIR / BOOK_FILES[model][0]))
    x = inputs(model, t10k()[0][:n])
    if model == "neuralnet_mnist":
        reference = book.neuralnet_mnist_predict({k: v.astype(np.float64) for k, v in weights.items()}, x)
    else:
        net = book.SimpleConvNet() if model == "simple_convnet" else book.DeepConvNet()
        net.load_params(weights)
        reference = np.concatenate([net.predict(x[i:i + CHUNK]) for i in range(0, n, CHUNK)])
    np.testing.assert_allclose(outputs(model, "float64")[:n], reference, rtol=1e-9, atol=0)


@needs_weights
def test_loaded_params_are_the_files_arrays(x64):
    """float64 keeps every value bitwise; float32 is their rounding; None keeps each file's dtype;
    W{k}, b{k} go to the k-th layer with params."""
    raw = dict(np.load(WEIGHTS_DIR / "deep_convnet_2016.npz"))
    net, p64 = jaxnet.load_book_weights("deep_convnet", WEIGHTS_DIR / "deep_convnet_2016.npz", dtype=jnp.float64)
    assert net == jaxnet.deep_convnet(dtype=jnp.float64)
    weighted = [p for p in p64 if p]
    assert len(weighted) == 8 and len(p64) == len(net.layers)
    for k, p in enumerate(weighted, 1):
        np.testing.assert_array_equal(p["W"], raw[f"W{k}"])
        np.testing.assert_array_equal(p["b"], raw[f"b{k}"])
        assert p["W"].dtype == jnp.float64
    _, p32 = jaxnet.load_book_weights(net, WEIGHTS_DIR)  # a Network with the book's layers, a folder
    np.testing.assert_array_equal([p for p in p32 if p][6]["W"], raw["W7"].astype(np.float32))
    _, ch03 = jaxnet.load_book_weights("neuralnet_mnist", WEIGHTS_DIR, dtype=None)
    assert ch03[0]["W"].dtype == jnp.float32  # the ch03 file is float32


@needs_weights
@needs_mnist
def test_the_books_logit_dropout_keeps_the_training_loss_near_one():
    """The claim of `deep_convnet`'s docstring: with the book's trained weights, the training-mode loss
    (half the logits dropped) stays near 1 while the evaluation-mode loss is small."""
    net, params = jaxnet.load_book_weights("deep_convnet", WEIGHTS_DIR)
    x, y = jnp.asarray(t10k()[0][:CHUNK], jnp.float32), jnp.asarray(t10k()[1][:CHUNK])
    loss = losses.get("softmax_cross_entropy").value
    key = jax.random.key(0)
    def train_loss(params, x, y, key):  # arguments, not constants: XLA would fold a captured network
        return loss(net.apply(params, x, key=key, train=True), y)

    train = float(optimized(train_loss, params, x, y, key)(params, x, y, key))
    evaluation = float(loss(jnp.asarray(outputs("deep_convnet", "float32")[:CHUNK]), y))
    assert 0.6 < train < 1.3 and evaluation < 0.2


# ------------------------------------------------------------------------------------------------ bad files


def _save(path, arrays):
    np.savez(path, **arrays)
    return path


def _simple():
    """Arrays of the SimpleConvNet file's shapes (zeros), to damage one at a time."""
    net = book_network("simple_convnet")
    shapes = jax.eval_shape(lambda: net.init(jax.random.key(0))[1])
    weighted = [p for p in shapes if p]
    return {f"{name}{k}": np.zeros(p[name].shape) for k, p in enumerate(weighted, 1) for name in ("W", "b")}


def test_bad_files_name_the_key_and_both_shapes(tmp_path):
    good = _simple()
    _, params = jaxnet.load_book_weights("simple_convnet", _save(tmp_path / "ok.npz", good))
    assert params[0]["W"].shape == (30, 1, 5, 5)
    missing = {k: v for k, v in good.items() if k != "b2"}
    with pytest.raises(ValueError, match=r"^b2: missing from .*expects b2 of shape \(100,\)"):
        jaxnet.load_book_weights("simple_convnet", _save(tmp_path / "m.npz", missing))
    with pytest.raises(ValueError, match=r"^W4: unexpected key .*of shape \(3, 3\).*has only W1, b1, W2, b2, W3, b3"):
        jaxnet.load_book_weights("simple_convnet", _save(tmp_path / "e.npz", {**good, "W4": np.zeros((3, 3))}))
    with pytest.raises(ValueError, match=r"^W2: expected shape \(4320, 100\) for the book's simple_convnet, found "
                                         r"\(100, 4320\)"):
        jaxnet.load_book_weights("simple_convnet", _save(tmp_path / "s.npz", {**good, "W2": np.zeros((100, 4320))}))
    with pytest.raises(ValueError, match=r"^b3: expected floating-point weights.*found dtype int64"):
        jaxnet.load_book_weights("simple_convnet", _save(tmp_path / "i.npz", {**good, "b3": np.zeros(10, np.int64)}))
    nan = {**good, "W3": np.full((100, 10), np.nan)}
    with pytest.raises(ValueError, match=r"^W3: holds NaN or infinity .*\(1000 entries\)"):
        jaxnet.load_book_weights("simple_convnet", _save(tmp_path / "n.npz", nan))
    with pytest.raises(ValueError, match=r"^path: .*not an .npz of plain numeric arrays.*allow_pickle"):
        jaxnet.load_book_weights("simple_convnet", _save(tmp_path / "o.npz", {**good, "W1": np.array([{}], object)}))
    (tmp_path / "text.npz").write_text("not a zip file")
    with pytest.raises(ValueError, match=r"^path: .*text.npz is not an .npz"):
        jaxnet.load_book_weights("simple_convnet", tmp_path / "text.npz")
    with pytest.raises(FileNotFoundError, match=r"^path: no weight file .*simple_convnet_2016.npz"):
        jaxnet.load_book_weights("simple_convnet", tmp_path)  # a folder without the book's file


@needs_weights
def test_another_models_file_is_recognised(tmp_path):
    with pytest.raises(ValueError, match=r"^W1: expected shape \(16, 1, 3, 3\) for the book's deep_convnet, found "
                                         r"\(30, 1, 5, 5\).*weights of the book's 'simple_convnet'"):
        jaxnet.load_book_weights("deep_convnet", WEIGHTS_DIR / "simple_convnet_2016.npz")
    with pytest.raises(ValueError, match=r"^W1: expected shape \(30, 1, 5, 5\) for the book's simple_convnet, found "
                                         r"\(16, 1, 3, 3\).*weights of the book's 'deep_convnet'"):
        jaxnet.load_book_weights("simple_convnet", WEIGHTS_DIR / "deep_convnet_2016.npz")


def test_wrong_model_dtype_and_names():
    for net, layer in ((jaxnet.deep_convnet(book_dropout=False), r"Dropout\(0.5, book\), found Dropout\(0.5\)"),
                       (jaxnet.deep_convnet(dropout_logits=False), r"Dropout\(0.5, book\), found \(no layer\)"),
                       (jaxnet.mlp([784, 50, 100, 10], "sigmoid", "identity"), r"softmax, found identity")):
        with pytest.raises(ValueError, match=rf"^model: .*none of the book's networks.*{layer}"):
            jaxnet.load_book_weights(net, WEIGHTS_DIR)
    with pytest.raises(ValueError,
                       match=r"^model: expected one of 'neuralnet_mnist', 'simple_convnet', 'deep_convnet'"):
        jaxnet.load_book_weights("lenet", WEIGHTS_DIR)
    with pytest.raises(TypeError, match=r"^model: expected a name"):
        jaxnet.load_book_weights(3, WEIGHTS_DIR)
    with pytest.raises(TypeError, match=r"^dtype: expected a floating dtype"):
        jaxnet.load_book_weights("deep_convnet", WEIGHTS_DIR, dtype=jnp.int32)
    with pytest.raises(ValueError, match=r"^dtype: float64 needs JAX's 64-bit mode"):
        jaxnet.load_book_weights("deep_convnet", WEIGHTS_DIR, dtype=jnp.float64)


@needs_weights
def test_the_files_float64_is_not_silently_narrowed():
    # dtype=None keeps the file's float64, which needs 64-bit mode: an error, not float32 arrays
    with pytest.raises(ValueError, match=r"^dtype: float64 needs JAX's 64-bit mode"):
        jaxnet.load_book_weights("deep_convnet", WEIGHTS_DIR, dtype=None)

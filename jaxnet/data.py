"""Datasets and data utilities: toy tasks, scikit-learn's bundled sets, an IDX/MNIST reader, splits.

Arrays returned here are ``jax.numpy`` arrays (float32 features unless a ``dtype`` is given, int32
class labels), except ``load_idx``, which returns the file's exact values as a numpy array. Nothing
here keeps global state; all randomness comes from an explicit ``jax.random`` key or a documented seed.
scikit-learn is optional and imported only inside ``digits`` and ``breast_cancer``.
"""
from __future__ import annotations

import gzip
import os
import warnings
import zlib
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# IDX element types (LeCun et al., http://yann.lecun.com/exdb/mnist/); all big-endian on disk.
IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
IMAGES_MAGIC = 2051  # 0x00000803: uint8, 3 dims
LABELS_MAGIC = 2049  # 0x00000801: uint8, 1 dim
MNIST_SPLIT_SEED = 0  # key jax.random.PRNGKey(0) splits the t10k files when no train files exist


def xor(dtype=jnp.float32):
    """The XOR truth table, the tutorial's first task (Minsky and Papert's example of a function no
    single-layer perceptron computes).

    Args: dtype: the dtype of both arrays (default float32).
    Returns: ``(x, y)``: x (4, 2) = [[0,0],[0,1],[1,0],[1,1]], y (4, 1) = [[0],[1],[1],[0]].
    Raises: nothing for a valid dtype (``jnp.array``'s TypeError otherwise).
    """
    x = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=dtype)
    return x, jnp.array([[0], [1], [1], [0]], dtype=dtype)


def gaussian_blobs(key, n=1000, dtype=jnp.float32):
    """The tutorial's two-Gaussian binary task in 2-D.

    Class 0: mean (2, 2), covariance [[1, .5], [.5, 1]]; class 1: mean (6, 6), covariance
    [[1, -.5], [-.5, 1]]; n // 2 samples each, drawn with ``jax.random.multivariate_normal``.
    Rows are in class order (the first n // 2 are class 0): shuffle or split before mini-batching.

    Args: key: a ``jax.random`` key. n: total samples, an even int >= 2. dtype: a float dtype.
    Returns: ``(x, y)``: x (n, 2) ``dtype`` (unitless coordinates), y (n, 1) ``dtype`` in {0, 1}.
    Raises: ValueError if ``n`` is not an even int >= 2.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2 or n % 2:
        raise ValueError(f"gaussian_blobs: n must be an even int >= 2, got {n!r}")
    k0, k1 = jax.random.split(key)
    half = (int(n) // 2,)
    x0 = jax.random.multivariate_normal(k0, jnp.array([2.0, 2.0]), jnp.array([[1.0, 0.5], [0.5, 1.0]]), half)
    x1 = jax.random.multivariate_normal(k1, jnp.array([6.0, 6.0]), jnp.array([[1.0, -0.5], [-0.5, 1.0]]), half)
    y = jnp.concatenate([jnp.zeros(half + (1,)), jnp.ones(half + (1,))])
    return jnp.concatenate([x0, x1]).astype(dtype), y.astype(dtype)


def _sklearn_datasets():
    try:
        import sklearn.datasets
    except ImportError as err:
        raise ImportError('this dataset needs scikit-learn: pip install "jaxnet[experiments]" '
                          "or pip install scikit-learn") from err
    return sklearn.datasets


def digits():
    """scikit-learn's bundled 8x8 handwritten digits (``sklearn.datasets.load_digits``: the UCI
    "Optical Recognition of Handwritten Digits" test set, Alpaydin and Kaynak 1998; no download).

    Returns: ``(x, labels)``: x float32 (1797, 64), the 8x8 images row by row, pixel intensity 0..16
    divided by 16, so in [0, 1]; labels int32 (1797,) in 0..9 (about 180 of each).
    Raises: ImportError if scikit-learn is not installed.
    """
    d = _sklearn_datasets().load_digits()
    return jnp.asarray(d.data / 16.0, jnp.float32), jnp.asarray(d.target, jnp.int32)


def breast_cancer():
    """scikit-learn's bundled Wisconsin diagnostic breast cancer set (``load_breast_cancer``; UCI,
    Street, Wolberg and Mangasarian 1993; binary; no download).

    Returns: ``(x, labels)``: x float32 (569, 30), the raw (unscaled) features of the cell nuclei in
    their own units (radius, texture, perimeter, area, ...: mean, standard error and worst of each);
    labels int32 (569,), scikit-learn's target as is: 0 = malignant (212), 1 = benign (357).
    Standardize x (see ``standardize``) before training.
    Raises: ImportError if scikit-learn is not installed.
    """
    d = _sklearn_datasets().load_breast_cancer()
    return jnp.asarray(d.data, jnp.float32), jnp.asarray(d.target, jnp.int32)


def load_idx(path, *, expected_magic=None):
    """Read one IDX file, raw or gzip-compressed (detected by content: bytes 1f 8b), into numpy.

    IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code (0x08
    uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of dims, one
    big-endian uint32 per dim, then the big-endian payload. The magic number is the first 4 bytes read
    as a big-endian uint32 (2051 = MNIST images, 2049 = MNIST labels).

    Args: path: file path. expected_magic: if given, the magic number the file must have.
    Returns: a native-endian ``np.ndarray`` of the type code's dtype with the header's shape.
    Raises: ValueError naming the file, the field, the expected and the found value, for a corrupt or
    truncated gzip stream, a short header, non-zero leading bytes, an unknown type code, zero dims,
    a wrong magic, or a payload shorter or longer than the dimensions say. Never a partial array.
    OSError (e.g. FileNotFoundError) if the file cannot be read.
    """
    path = Path(path)
    data = path.read_bytes()

    def bad(field, expected, found):
        return ValueError(f"{path}: bad IDX {field}: expected {expected}, found {found}")

    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise bad("gzip stream", "a complete gzip stream", f"{type(err).__name__}: {err}") from err
    if len(data) < 4:
        raise bad("header", "at least 4 bytes", f"{len(data)} bytes")
    magic = int.from_bytes(data[:4], "big")
    if data[:2] != b"\x00\x00":
        raise bad("zero bytes", "00 00", f"{data[:2].hex(' ')} (magic {magic})")
    if expected_magic is not None and magic != expected_magic:
        raise bad("magic number", expected_magic, magic)
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise bad("type code", "one of " + ", ".join(f"0x{c:02X}" for c in IDX_DTYPES), f"0x{code:02X}")
    if ndim < 1:
        raise bad("number of dimensions", ">= 1", ndim)
    head = 4 + 4 * ndim
    if len(data) < head:
        raise bad("header", f"{head} bytes for {ndim} dims", f"{len(data)} bytes")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    dtype = IDX_DTYPES[code]
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - head != size:
        raise bad("payload length", f"{size} bytes for shape {shape} of {dtype.name}", f"{len(data) - head} bytes")
    return np.frombuffer(data, dtype, offset=head).astype(dtype.newbyteorder("=")).reshape(shape)


class MNIST(NamedTuple):
    """MNIST splits: x float32 (n, 28, 28) or (n, 784) in [0, 1]; y int32 (n,) in 0..9.

    ``source`` is "train+t10k" (standard 60,000/10,000 files) or "t10k split A/B" (only the t10k
    files were found; A train and B test images split from them, see ``load_mnist``).
    """
    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array
    source: str


def _find(directory, stem):
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def cache_dir():
    """The user's cache folder for jaxnet's data sets: ``$XDG_CACHE_HOME/jaxnet``, by default
    ``~/.cache/jaxnet`` (on every platform, as e.g. Hugging Face does). Nothing is created here."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jaxnet"


def mnist_dir(directory=None):
    """The folder ``load_mnist`` reads: ``directory`` if given, else ``$JAXNET_DATA_DIR/mnist`` if that
    folder exists, else ``cache_dir() / "mnist"``. Nothing else is searched (not the working directory).

    Returns: a ``Path`` to an existing folder.
    Raises: FileNotFoundError naming the three places if the chosen folder does not exist.
    """
    env = os.environ.get("JAXNET_DATA_DIR")
    if directory is not None:
        candidates = [Path(directory)]
    else:
        candidates = ([Path(env) / "mnist"] if env else []) + [cache_dir() / "mnist"]
    for d in candidates:
        if d.is_dir():
            return d
    raise FileNotFoundError(
        f"MNIST folder not found (looked in {', '.join(map(str, candidates))}): pass load_mnist(directory=DIR) "
        f"with DIR the folder of the IDX files, or set JAXNET_DATA_DIR so that $JAXNET_DATA_DIR/mnist holds "
        f"them, or put them in {cache_dir() / 'mnist'}")


def _read_pair(directory, prefix):
    img, lab = _find(directory, f"{prefix}-images-idx3-ubyte"), _find(directory, f"{prefix}-labels-idx1-ubyte")
    if img is None or lab is None:
        return None if img is None and lab is None else f"{prefix}-{'labels' if img else 'images'}"
    x, y = load_idx(img, expected_magic=IMAGES_MAGIC), load_idx(lab, expected_magic=LABELS_MAGIC)
    if len(x) != len(y):
        raise ValueError(f"MNIST count mismatch: {img} has {len(x)} images but {lab} has {len(y)} labels")
    if y.size and y.max() > 9:
        raise ValueError(f"{lab}: bad MNIST label: expected 0..9, found {int(y.max())}")
    return x, y


def load_mnist(directory=None, *, flatten=False, t10k_split=None, download=False):
    """Load MNIST from IDX files (LeCun, Cortes, Burges; http://yann.lecun.com/exdb/mnist/).

    Reads ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (each raw or ``.gz``; compression detected
    by content) from ``directory``; by default from ``$JAXNET_DATA_DIR/mnist`` if it exists, else from
    the user cache folder ``~/.cache/jaxnet/mnist`` (``$XDG_CACHE_HOME/jaxnet/mnist``): see ``mnist_dir``.

    If the train files are present the result is the standard split (source "train+t10k") and
    ``t10k_split`` is ignored. If only the 10,000 t10k files are present, they are split into
    ``t10k_split = (n_train, n_test)`` images (default (8000, 2000); n_train + n_test must equal the
    number of t10k images) with ``train_test_split(jax.random.PRNGKey(MNIST_SPLIT_SEED), ...,
    stratify=labels)``: deterministic, stratified by digit, disjoint and covering every image.
    ``source`` then reads e.g. "t10k split 8000/2000"; a UserWarning says so unless ``t10k_split``
    was passed explicitly.

    ``download=True`` first fetches the missing files, checksum-verified, into ``directory`` (default
    ``$JAXNET_DATA_DIR/mnist`` or the user cache; see ``jaxnet.download.download``); a sequence of
    URL prefixes instead of True tries those mirrors in order. Raises ``jaxnet.download.DownloadError``
    when no mirror delivers a file.

    Returns: ``MNIST``: images float32 in [0, 1] (pixel / 255), (n, 28, 28) or (n, 784) if ``flatten``;
    labels int32 (n,).
    Raises: FileNotFoundError if the directory or a needed file is missing; ValueError for a bad
    file (see ``load_idx``; an images/labels swap names magics 2051 and 2049), image and label counts
    that differ (naming both files), labels outside 0..9, or a ``t10k_split`` that does not add up.
    """
    if download:
        from jaxnet.download import download as fetch
        directory = fetch("mnist", directory, mirrors=None if download is True else download)
    d = mnist_dir(directory)
    train, test = _read_pair(d, "train"), _read_pair(d, "t10k")
    for got in (train, test):
        if isinstance(got, str):
            raise FileNotFoundError(f"{d}: {got}-idx?-ubyte[.gz] is missing (its partner file is present)")
    if test is None:
        raise FileNotFoundError(f"{d}: no t10k-images-idx3-ubyte[.gz] / t10k-labels-idx1-ubyte[.gz] found")

    def prep(x):
        x = jnp.asarray(x, jnp.float32) / 255.0
        return x.reshape(len(x), -1) if flatten else x

    if train is not None:
        return MNIST(prep(train[0]), jnp.asarray(train[1], jnp.int32),
                     prep(test[0]), jnp.asarray(test[1], jnp.int32), "train+t10k")
    x, y = test
    if t10k_split is None:
        t10k_split = (8000, 2000)
        warnings.warn(f"{d}: only the t10k files were found; splitting their {len(y)} images into "
                      f"{t10k_split[0]} train / {t10k_split[1]} test (stratified, seed {MNIST_SPLIT_SEED})",
                      UserWarning, stacklevel=2)
    n_tr, n_te = (int(v) for v in t10k_split)
    if n_tr < 1 or n_te < 1 or n_tr + n_te != len(y):
        raise ValueError(f"t10k_split: expected (n_train, n_test) >= 1 adding up to {len(y)}, got {t10k_split}")
    xtr, xte, ytr, yte = train_test_split(jax.random.PRNGKey(MNIST_SPLIT_SEED), x, y, test_size=n_te, stratify=y)
    return MNIST(prep(xtr), jnp.asarray(ytr, jnp.int32), prep(xte), jnp.asarray(yte, jnp.int32),
                 f"t10k split {n_tr}/{n_te}")


def standardize(x_train, *others):
    """Standardize features with the training split's statistics only: (x - mean) / std.

    mean and std are taken over axis 0 of ``x_train`` (population std, ddof 0), in its floating dtype
    (float32 for integer input), from the data shifted by its first row (exact for equal values, and
    accurate for features with a large mean and a small spread, such as timestamps or prices).

    A feature whose variance is within the rounding error of the computation is constant up to
    rounding and gets std 1, so it is only centred. The bound is scikit-learn's for StandardScaler
    (``_is_constant_feature``: the two-pass variance error bound of Chan, Golub and LeVeque, "Algorithms
    for computing the sample variance", 1983, n * eps * |mean| for the error of the mean) applied to the
    shifted data, plus one unit of rounding of the mean itself: with n rows, machine epsilon eps of the
    dtype, m the mean of the shifted data, a feature is constant when
    ``var <= ((n * eps * m)**2 + (eps * mean)**2) / (1 - n * eps)`` (every feature once n * eps >= 1,
    i.e. beyond 8.4 million rows in float32: use float64 there). On float64 data it leaves alone the
    features that scikit-learn leaves alone, except those whose std lies between eps * |mean| and
    n * eps * |mean|, which it scales. Each array in ``others`` (e.g. the test split) is transformed
    with the same mean and std, never its own. Works under jit, vmap and grad.

    Args: x_train: (n, ...) numeric array. others: arrays of shape (m, ...) with the same trailing shape.
    Returns: ``(mean, std, x_train_std, *others_std)``; mean and std have shape x_train.shape[1:] and
    the statistics' dtype; the standardized arrays are unitless.
    Raises: ValueError if x_train has no rows or an array in ``others`` has another trailing shape.
    """
    x_train = jnp.asarray(x_train)
    if x_train.ndim < 1 or x_train.shape[0] == 0:
        raise ValueError(f"x_train: expected at least one row, got shape {x_train.shape}")
    x_float = x_train if jnp.issubdtype(x_train.dtype, jnp.inexact) else x_train.astype(jnp.float32)
    shifted = x_float - x_float[0]
    m, var = shifted.mean(axis=0), shifted.var(axis=0)
    mean = x_float[0] + m
    n, eps = x_train.shape[0], jnp.finfo(var.dtype).eps
    constant = var * (1 - n * eps) <= (n * eps * m) ** 2 + (eps * mean) ** 2
    std = jnp.sqrt(jnp.where(constant, 1, var)).astype(var.dtype)  # no NaN gradient at var = 0
    out = []
    for i, o in enumerate(others):
        o = jnp.asarray(o)
        if o.shape[1:] != x_train.shape[1:]:
            raise ValueError(f"others[{i}]: expected trailing shape {x_train.shape[1:]} (as x_train), got {o.shape}")
        out.append((o - mean) / std)
    return (mean, std, (x_train - mean) / std, *out)


def one_hot(labels, n_classes, dtype=jnp.float32):
    """One-hot encode integer class labels: (...,) int -> (..., n_classes) ``dtype`` (default
    float32), with ``jax.nn.one_hot``: row i is 1 at column labels[i] and 0 elsewhere.

    With concrete labels, values outside [0, n_classes) raise ValueError (naming the first bad one);
    under jit/vmap (traced labels) no check is possible, and such a row is
    all NaN (-1 for an integer ``dtype``): never a plausible all-zero target that a loss would count as 0.
    Raises: TypeError if ``labels`` is not an integer array; ValueError if
    ``n_classes`` is not an int >= 1 or a concrete label is out of range.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes: expected an int >= 1, got {n_classes!r}")
    if not isinstance(labels, jax.core.Tracer):
        labels = np.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels: expected an integer dtype, got {labels.dtype}; cast with labels.astype(int)")
    if isinstance(labels, np.ndarray):
        bad = (labels < 0) | (labels >= n_classes)
        if bad.any():
            raise ValueError(f"labels: expected class labels in [0, {n_classes}), found {labels[bad][0]} "
                             f"at index {tuple(int(i) for i in np.argwhere(bad)[0])}")
        return jax.nn.one_hot(labels, n_classes, dtype=dtype)
    valid = (labels >= 0) & (labels < n_classes)
    invalid = jnp.nan if jnp.issubdtype(dtype, jnp.floating) else -1  # integer rows: -1, never a one-hot
    return jnp.where(valid[..., None], jax.nn.one_hot(labels, n_classes, dtype=dtype), jnp.asarray(invalid, dtype))


def train_test_split(key, x, y, *, test_size=0.2, stratify=None):
    """Split ``x`` and ``y`` (same first axis) into shuffled train and test parts; sklearn's order.

    test_size: a float in (0, 1) gives ceil(test_size * n) test rows (scikit-learn's rounding), an int
    gives that many. With ``stratify`` (integer labels, shape (n,)) each class c of size n_c puts
    floor(n_c * n_test / n) rows in the test part and the leftover rows go, one each, to the classes
    with the largest remainders (ties: smaller label first), so the total is exactly n_test and every
    class is split by the same fraction to within one row. One ``jax.random.permutation(key, n)``
    decides both the order and which rows of each class are tested: the same key gives the same split.

    Args: key: a ``jax.random`` key. x: (n, ...) and y: (n, ...) arrays (numpy or jax, any dtype).
    test_size: see above. stratify: optional (n,) integer class labels, usually y.
    Returns: ``(x_train, x_test, y_train, y_test)``, indexed from the inputs (types and dtypes kept).
    Raises: ValueError naming the argument if lengths differ, test_size is outside (0, 1) or
    [1, n - 1], or either part would be empty; TypeError if stratify is not integer.
    """
    x, y = (a if hasattr(a, "shape") else np.asarray(a) for a in (x, y))
    n = len(x)
    if len(y) != n:
        raise ValueError(f"train_test_split: y must have len(x) = {n} rows, got {len(y)}")
    if isinstance(test_size, (int, np.integer)) and not isinstance(test_size, bool):
        n_test = int(test_size)
    elif isinstance(test_size, (float, np.floating)) and 0 < test_size < 1:
        n_test = int(np.ceil(test_size * n))
    else:
        raise ValueError(f"train_test_split: test_size must be a float in (0, 1) or an int count, got {test_size!r}")
    if not 1 <= n_test <= n - 1:
        raise ValueError(f"train_test_split: test_size gives {n_test} test rows of {n}; need 1 .. {n - 1}")
    perm = np.asarray(jax.random.permutation(key, n))
    is_test = np.zeros(n, bool)
    if stratify is None:
        is_test[perm[:n_test]] = True
    else:
        labels = np.asarray(stratify)
        if labels.shape != (n,):
            raise ValueError(f"train_test_split: stratify must have shape ({n},), got {labels.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"train_test_split: stratify must be integer labels, got {labels.dtype}")
        classes, counts = np.unique(labels, return_counts=True)
        exact = counts * n_test
        k = exact // n
        k[np.argsort(-(exact % n), kind="stable")[: n_test - k.sum()]] += 1
        shuffled = labels[perm]
        for c, kc in zip(classes, k):
            is_test[perm[shuffled == c][:kc]] = True
    test_idx, train_idx = perm[is_test[perm]], perm[~is_test[perm]]
    return x[train_idx], x[test_idx], y[train_idx], y[test_idx]

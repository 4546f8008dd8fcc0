"""Tests for jaxnet.data: IDX/MNIST loading (field cases D1, D2), splits, scaling, toy data sets."""
import collections
import gzip
import hashlib
import os
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conftest import MNIST_DIR, REPO
from jaxnet import data

HAVE_MNIST = (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file() and (MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file()
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason=f"real MNIST t10k files not found in {MNIST_DIR}")
T10K_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # MNIST_DIR/README.md

# IDX element types written independently of jaxnet.data's table.
TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def idx_bytes(arr, code):
    """Big-endian IDX encoding of ``arr`` with type ``code``: header via struct, payload via '>' dtype."""
    arr = np.asarray(arr)
    head = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(TYPES[code]).tobytes()


def write(path, raw, *, gz=False):
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


# ---------------------------------------------------------------- load_idx


SAMPLES = {
    0x08: np.array([[0, 1, 127], [128, 254, 255]], np.uint8),
    0x09: np.array([-128, -1, 0, 1, 127], np.int8),
    0x0B: np.array([[-32768, -1], [256, 32767]], np.int16),
    0x0C: np.array([-(2**31), -1, 0, 5, 2**24, 2**31 - 1], np.int32),
    0x0D: np.array([[[-0.0, 1.5]], [[np.inf, -3.25e-30]]], np.float32),
    0x0E: np.array([np.pi, -1e300, 5e-324, np.nan], np.float64),
}


@pytest.mark.parametrize("code", sorted(SAMPLES))
@pytest.mark.parametrize("gz", [False, True])
def test_every_type_round_trips(tmp_path, code, gz):
    want = SAMPLES[code]
    got = data.load_idx(write(tmp_path / "f", idx_bytes(want, code), gz=gz))
    assert got.dtype == want.dtype and got.dtype.isnative
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    got[...] = 0  # a writable copy, not a view on the file's bytes


@settings(max_examples=40, deadline=None)
@given(code=st.sampled_from(sorted(TYPES)), shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=4),
       data_=st.data())
def test_round_trip_property(tmp_path_factory, code, shape, data_):
    want = data_.draw(hnp.arrays(np.dtype(TYPES[code]).newbyteorder("="), shape))
    path = write(tmp_path_factory.mktemp("idx") / "x", idx_bytes(want, code))
    got = data.load_idx(path)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_d2_int32_labels_are_big_endian(tmp_path):
    raw = b"\x00\x00\x0c\x01" + struct.pack(">I", 2) + struct.pack(">ii", 5, -1)
    got = data.load_idx(write(tmp_path / "labels", raw))
    assert got.dtype == np.int32 and got.tolist() == [5, -1]  # little-endian reading gives 83886080


@pytest.mark.parametrize("name", ["train-images-idx3-ubyte", "images.gz", "no_suffix.bin"])
@pytest.mark.parametrize("how", ["compress", "gzip.open"])
def test_d1_gzip_detected_by_content(tmp_path, name, how):
    want = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw, path = idx_bytes(want, 0x08), tmp_path / name
    if how == "compress":
        path.write_bytes(gzip.compress(raw))  # header 1f 8b 08 00: magic 529205248
    else:
        with gzip.open(path, "wb") as f:  # stores the file name, header 1f 8b 08 08: magic 529205256
            f.write(raw)
    assert int.from_bytes(path.read_bytes()[:4], "big") in (529205248, 529205256)
    np.testing.assert_array_equal(data.load_idx(path), want)


def test_raw_file_with_gz_suffix_is_read_raw(tmp_path):
    want = np.array([3, 1, 4], np.uint8)
    np.testing.assert_array_equal(data.load_idx(write(tmp_path / "labels.gz", idx_bytes(want, 0x08))), want)


def test_d1_labels_where_images_expected_names_both_magics(tmp_path):
    path = write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(np.array([1, 2], np.uint8), 0x08), gz=True)
    with pytest.raises(ValueError, match="magic") as err:
        data.load_idx(path, expected_magic=2051)
    assert "2051" in str(err.value) and "2049" in str(err.value) and str(path) in str(err.value)
    assert data.load_idx(path, expected_magic=2049).tolist() == [1, 2]


def bad_files():
    good = idx_bytes(np.arange(6, dtype=np.int16).reshape(2, 3), 0x0B)  # header 12 bytes, payload 12
    return {
        "short payload": (good[:-1], "payload length", "11 bytes"),
        "payload missing": (good[:12], "payload length", "0 bytes"),
        "long payload": (good + b"\x00", "payload length", "13 bytes"),
        "bad zero bytes": (b"\x01" + good[1:], "zero bytes", "01 00"),
        "bad zero byte 2": (b"\x00\x07" + good[2:], "zero bytes", "00 07"),
        "unknown type": (b"\x00\x00\x0a" + good[3:], "type code", "0x0A"),
        "zero dims": (b"\x00\x00\x08\x00" + b"\x05", "number of dimensions", "0"),
        "short header": (b"\x00\x00\x08\x03" + struct.pack(">I", 5), "header", "8 bytes"),
        "tiny file": (b"\x00\x00", "header", "2 bytes"),
        "empty file": (b"", "header", "0 bytes"),
    }


@pytest.mark.parametrize("case", sorted(bad_files()))
@pytest.mark.parametrize("gz", [False, True])
def test_bad_files_raise_naming_file_field_and_value(tmp_path, case, gz):
    raw, field, found = bad_files()[case]
    path = write(tmp_path / "bad-idx", raw, gz=gz)
    with pytest.raises(ValueError) as err:
        data.load_idx(path)
    msg = str(err.value)
    assert str(path) in msg and field in msg and found in msg and "expected" in msg


@pytest.mark.parametrize("cut", ["truncated", "bad crc"])
def test_broken_gzip_raises_value_error(tmp_path, cut):
    blob = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32), 0x0C))
    blob = blob[: len(blob) // 2] if cut == "truncated" else blob[:-8] + bytes(8)
    path = write(tmp_path / "x-idx1-ubyte", blob)
    with pytest.raises(ValueError, match="gzip") as err:
        data.load_idx(path)
    assert str(path) in str(err.value)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        data.load_idx(tmp_path / "nope")


# ---------------------------------------------------------------- load_mnist on synthetic files


def make_mnist(directory, n_test=30, n_train=None, gz=True, labels=None):
    """Write small MNIST-like IDX files (uint8 28x28 images, uint8 labels); return the arrays."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out = {}
    for prefix, n in (("t10k", n_test), ("train", n_train)):
        if n is None:
            continue
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8) if labels is None else labels
        suffix = ".gz" if gz else ""
        write(directory / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(x, 0x08), gz=gz)
        write(directory / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(y, 0x08), gz=gz)
        out[prefix] = (x, y)
    return out


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_train_and_test(tmp_path, gz):
    arrays = make_mnist(tmp_path, n_test=20, n_train=40, gz=gz)
    m = data.load_mnist(tmp_path)
    assert m.source == "train+t10k"
    for x, y, (rx, ry) in ((m.x_train, m.y_train, arrays["train"]), (m.x_test, m.y_test, arrays["t10k"])):
        assert x.dtype == jnp.float32 and x.shape == rx.shape and y.dtype == jnp.int32
        np.testing.assert_allclose(np.asarray(x), rx.astype(np.float64) / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(y), ry)
    flat = data.load_mnist(tmp_path, flatten=True)
    assert flat.x_train.shape == (40, 784) and flat.x_test.shape == (20, 784)
    np.testing.assert_array_equal(np.asarray(flat.x_test), np.asarray(m.x_test).reshape(20, 784))


def test_load_mnist_t10k_only_splits_and_warns(tmp_path):
    arrays = make_mnist(tmp_path, n_test=50)
    with pytest.warns(UserWarning, match="only the t10k"):
        with pytest.raises(ValueError, match="t10k_split"):  # default 8000/2000 does not fit 50 images
            data.load_mnist(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit split is not warned about
        m = data.load_mnist(tmp_path, t10k_split=(40, 10), flatten=True)
    assert m.source == "t10k split 40/10" and m.x_train.shape == (40, 784) and m.x_test.shape == (10, 784)
    assert np.bincount(np.asarray(m.y_test), minlength=10).tolist() == [1] * 10  # 5 of each digit, 1 of 5 tested
    x, y = arrays["t10k"]
    rows = collections.Counter(zip(map(bytes, x.reshape(50, -1)), y.tolist()))
    got = collections.Counter()
    for xs, ys in ((m.x_train, m.y_train), (m.x_test, m.y_test)):
        px = np.rint(np.asarray(xs) * 255).astype(np.uint8)
        got.update(zip(map(bytes, px), np.asarray(ys).tolist()))
    assert got == rows


@pytest.mark.parametrize("split", [(41, 10), (50, 0), (0, 50), (30, 10)])
def test_load_mnist_bad_t10k_split(tmp_path, split):
    make_mnist(tmp_path, n_test=50)
    with pytest.raises(ValueError, match="t10k_split"):
        data.load_mnist(tmp_path, t10k_split=split)


def test_load_mnist_count_mismatch_names_both_files(tmp_path):
    make_mnist(tmp_path, n_test=20)
    write(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(19, np.uint8), 0x08), gz=True)
    with pytest.raises(ValueError) as err:
        data.load_mnist(tmp_path, t10k_split=(10, 10))
    msg = str(err.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg and "20" in msg and "19" in msg


def test_load_mnist_swapped_files_name_both_magics(tmp_path):
    make_mnist(tmp_path, n_test=20)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(ValueError, match="2051") as err:
        data.load_mnist(tmp_path, t10k_split=(10, 10))
    assert "2049" in str(err.value)


def test_load_mnist_label_out_of_range(tmp_path):
    make_mnist(tmp_path, n_test=20, labels=np.array([10] + [0] * 19, np.uint8))
    with pytest.raises(ValueError, match="0..9"):
        data.load_mnist(tmp_path, t10k_split=(10, 10))


def test_load_mnist_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="JAXNET_DATA_DIR"):
        data.load_mnist(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="t10k"):
        data.load_mnist(tmp_path)  # exists but empty
    make_mnist(tmp_path, n_test=20)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels"):
        data.load_mnist(tmp_path)


def test_load_mnist_default_directories(tmp_path, monkeypatch):
    """Explicit folder, then $JAXNET_DATA_DIR/mnist, then the user cache; never the working directory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("JAXNET_DATA_DIR", raising=False)
    make_mnist(tmp_path / "shared" / "data" / "mnist", n_test=20, n_train=12)  # the old development fallback
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    with pytest.raises(FileNotFoundError) as err:
        data.load_mnist()
    message = str(err.value)
    for place in ("load_mnist(directory=", "JAXNET_DATA_DIR", str(tmp_path / "cache" / "jaxnet" / "mnist")):
        assert place in message
    make_mnist(tmp_path / "cache" / "jaxnet" / "mnist", n_test=20, n_train=8)
    assert data.load_mnist().x_train.shape == (8, 28, 28)
    assert data.mnist_dir() == tmp_path / "cache" / "jaxnet" / "mnist"
    monkeypatch.setenv("JAXNET_DATA_DIR", str(tmp_path / "env"))  # set but without mnist/: the cache is next
    assert data.load_mnist().x_train.shape == (8, 28, 28)
    make_mnist(tmp_path / "env" / "mnist", n_test=20, n_train=10)
    assert data.load_mnist().x_train.shape == (10, 28, 28)
    assert data.load_mnist(tmp_path / "shared" / "data" / "mnist").x_train.shape == (12, 28, 28)
    with pytest.raises(FileNotFoundError, match="absent"):  # an explicit folder is never replaced by a default
        data.load_mnist(tmp_path / "absent")


def test_cache_dir_default(monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert data.cache_dir() == Path.home() / ".cache" / "jaxnet"


def test_mnist_experiment_without_files_is_skipped_in_one_line(tmp_path):
    """From any directory, with no MNIST anywhere it looks (no JAXNET_DATA_DIR, an empty cache), the
    installed `python -m jaxnet_experiments mnist` prints one line naming where to put the files and exits 0;
    an explicit --data-dir that does not exist is an error."""
    env = {k: v for k, v in os.environ.items() if k != "JAXNET_DATA_DIR"} | {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    run = lambda *args: subprocess.run([sys.executable, "-m", "jaxnet_experiments", "mnist", "--quick", *args],  # noqa: E731
                                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    result = run()
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("mnist: skipped")
    assert "JAXNET_DATA_DIR" in result.stdout and str(tmp_path / "cache" / "jaxnet" / "mnist") in result.stdout
    result = run("--data-dir", str(tmp_path / "absent"))
    assert result.returncode == 2 and "--data-dir" in result.stderr and "absent" in result.stderr


# ---------------------------------------------------------------- the real MNIST t10k files


@pytest.fixture(scope="module")
def real_raw():
    images = gzip.decompress((MNIST_DIR / "t10k-images-idx3-ubyte.gz").read_bytes())
    labels = gzip.decompress((MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    return images, labels


@pytest.fixture(scope="module")
def real_mnist():
    with pytest.warns(UserWarning, match="only the t10k"):
        return data.load_mnist(MNIST_DIR)


@needs_mnist
def test_real_headers_and_values(real_raw):
    images, labels = real_raw
    assert hashlib.md5(images).hexdigest() == "2646ac647ad5339dbf082846283269ea"
    assert hashlib.md5(labels).hexdigest() == "27ae3e4e09519cfbb04c329615203637"
    assert struct.unpack(">4I", images[:16]) == (2051, 10000, 28, 28)
    x = data.load_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz", expected_magic=2051)
    y = data.load_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz", expected_magic=2049)
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8 and y.shape == (10000,) and y.dtype == np.uint8
    np.testing.assert_array_equal(x.reshape(-1), np.frombuffer(images, np.uint8, offset=16))
    np.testing.assert_array_equal(y, np.frombuffer(labels, np.uint8, offset=8))
    assert np.bincount(y, minlength=10).tolist() == T10K_COUNTS


@needs_mnist
def test_real_load_mnist_split(real_mnist, real_raw):
    m = real_mnist
    assert m.source == "t10k split 8000/2000"
    assert m.x_train.shape == (8000, 28, 28) and m.x_test.shape == (2000, 28, 28)
    for x in (m.x_train, m.x_test):
        assert x.dtype == jnp.float32 and float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert m.y_train.dtype == jnp.int32 and m.y_test.dtype == jnp.int32
    tr = np.bincount(np.asarray(m.y_train), minlength=10)
    te = np.bincount(np.asarray(m.y_test), minlength=10)
    assert (tr + te).tolist() == T10K_COUNTS and te.sum() == 2000
    assert np.all(np.abs(te - 0.2 * np.array(T10K_COUNTS)) < 1)  # stratified: each class within one row of 20 %
    # disjoint and covering: train + test is exactly the multiset of (image, label) pairs in the files
    images, labels = real_raw
    full = collections.Counter(zip(map(bytes, np.frombuffer(images, np.uint8, offset=16).reshape(10000, 784)),
                                   np.frombuffer(labels, np.uint8, offset=8).tolist()))
    got = collections.Counter()
    for xs, ys in ((m.x_train, m.y_train), (m.x_test, m.y_test)):
        got.update(zip(map(bytes, np.rint(np.asarray(xs).reshape(-1, 784) * 255).astype(np.uint8)),
                       np.asarray(ys).tolist()))
    assert got == full


@needs_mnist
def test_real_split_is_deterministic(real_mnist, monkeypatch):
    monkeypatch.setenv("JAXNET_DATA_DIR", str(MNIST_DIR.parent))  # read through $JAXNET_DATA_DIR/mnist
    again = data.load_mnist(t10k_split=(8000, 2000), flatten=True)
    for a, b in zip(real_mnist[:4], again[:4]):
        np.testing.assert_array_equal(np.asarray(a).reshape(len(b), -1), np.asarray(b).reshape(len(b), -1))


# ---------------------------------------------------------------- one_hot


def test_one_hot_values_and_dtype():
    got = data.one_hot(np.array([2, 0, 1, 2]), 3)
    assert got.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(got), np.eye(3)[[2, 0, 1, 2]])
    assert data.one_hot(jnp.array([[1], [0]], jnp.uint8), 2, dtype=jnp.int32).tolist() == [[[0, 1]], [[1, 0]]]


@pytest.mark.parametrize("labels, first", [([0, 5, -1], "5"), ([1, -1, 3], "-1"), ([3], "3")])
def test_one_hot_out_of_range(labels, first):
    with pytest.raises(ValueError, match=r"^labels: expected class labels in \[0, 3\), found " + first):
        data.one_hot(jnp.array(labels), 3)


@pytest.mark.parametrize("labels", [np.array([0.0, 1.0]), jnp.array([True, False]), [0.5]])
def test_one_hot_rejects_non_integer(labels):
    with pytest.raises(TypeError, match="integer"):
        data.one_hot(labels, 2)


@pytest.mark.parametrize("n", [0, -1, 2.0, True])
def test_one_hot_bad_n_classes(n):
    with pytest.raises(ValueError, match="n_classes"):
        data.one_hot(np.array([0]), n)


def test_one_hot_under_jit_and_vmap():
    labels = jnp.array([3, 0, 2])
    want = np.eye(4)[[3, 0, 2]]
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda labels: data.one_hot(labels, 4))(labels)), want)
    np.testing.assert_array_equal(np.asarray(jax.vmap(lambda labels: data.one_hot(labels, 4))(labels)), want)


def test_one_hot_traced_out_of_range_label_gives_a_nan_row():
    """Under jit no ValueError is possible; the bad row must not be a plausible all-zero target."""
    got = np.asarray(jax.jit(lambda labels: data.one_hot(labels, 3))(jnp.array([1, 3, -1])))
    np.testing.assert_array_equal(got[0], [0, 1, 0])
    assert np.isnan(got[1]).all() and np.isnan(got[2]).all()


# ---------------------------------------------------------------- train_test_split


def test_split_sizes_pairing_and_cover():
    x = np.arange(100).reshape(50, 2)
    y = x[:, 0] * 10
    xtr, xte, ytr, yte = data.train_test_split(jax.random.PRNGKey(0), x, y, test_size=0.3)
    assert xtr.shape == (35, 2) and xte.shape == (15, 2) and ytr.shape == (35,) and yte.shape == (15,)
    np.testing.assert_array_equal(ytr, xtr[:, 0] * 10)
    np.testing.assert_array_equal(yte, xte[:, 0] * 10)
    assert sorted(np.concatenate([xtr[:, 0], xte[:, 0]]).tolist()) == list(range(0, 100, 2))
    assert np.any(np.diff(xtr[:, 0]) < 0) and np.any(np.diff(xte[:, 0]) < 0)  # rows come out shuffled
    assert data.train_test_split(jax.random.PRNGKey(0), x, y, test_size=0.21)[1].shape == (11, 2)  # ceil(10.5)
    assert data.train_test_split(jax.random.PRNGKey(0), x, y, test_size=7)[1].shape == (7, 2)


def test_split_deterministic_and_key_dependent():
    x, y = jnp.arange(200.0), jnp.arange(200)
    a = data.train_test_split(jax.random.PRNGKey(3), x, y)
    b = data.train_test_split(jax.random.PRNGKey(3), x, y)
    c = data.train_test_split(jax.random.key(4), x, y)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    assert not np.array_equal(np.asarray(a[1]), np.asarray(c[1]))
    assert isinstance(a[0], jax.Array)


def test_split_stratified_proportions():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    x = np.arange(100)
    for seed in range(3):
        xtr, xte, ytr, yte = data.train_test_split(jax.random.PRNGKey(seed), x, labels, test_size=0.25, stratify=labels)
        # exact shares 12.5, 7.5, 5 -> floors 12, 7, 5; the one leftover row goes to class 0 (tie, smaller label)
        assert np.bincount(yte, minlength=3).tolist() == [13, 7, 5]
        assert np.bincount(ytr, minlength=3).tolist() == [37, 23, 15]
        np.testing.assert_array_equal(labels[xte], yte)
        assert set(xtr.tolist()).isdisjoint(xte.tolist()) and len(xtr) + len(xte) == 100
    tests = {tuple(sorted(data.train_test_split(jax.random.PRNGKey(seed), x, labels, stratify=labels)[1].tolist()))
             for seed in range(5)}
    assert len(tests) == 5  # the rows tested within each class depend on the key ...
    assert tuple(range(10)) + tuple(range(50, 56)) + tuple(range(80, 84)) not in tests  # ... not the first rows
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 1003)
    _, _, _, yte = data.train_test_split(jax.random.PRNGKey(1), labels, labels, test_size=0.2, stratify=labels)
    counts = np.bincount(labels, minlength=7)
    assert len(yte) == 201 and np.all(np.abs(np.bincount(yte, minlength=7) - counts * 201 / 1003) < 1)


@pytest.mark.parametrize("kwargs, exc, word", [
    (dict(y=np.arange(9)), ValueError, "y must"),
    (dict(test_size=0.0), ValueError, "test_size"),
    (dict(test_size=1.0), ValueError, "test_size"),
    (dict(test_size=-0.2), ValueError, "test_size"),
    (dict(test_size=10), ValueError, "test_size"),
    (dict(test_size=0), ValueError, "test_size"),
    (dict(test_size=True), ValueError, "test_size"),
    (dict(test_size="0.2"), ValueError, "test_size"),
    (dict(stratify=np.arange(9)), ValueError, "stratify"),
    (dict(stratify=np.zeros(10)), TypeError, "stratify"),
])
def test_split_bad_arguments(kwargs, exc, word):
    args = dict(y=np.arange(10))
    args.update(kwargs)
    y = args.pop("y")
    with pytest.raises(exc, match=word):
        data.train_test_split(jax.random.PRNGKey(0), np.arange(10), y, **args)


# ---------------------------------------------------------------- standardize


def test_standardize_uses_training_statistics_only():
    rng = np.random.default_rng(0)
    x_train = rng.normal([1.0, -5.0, 0.0], [2.0, 0.5, 1.0], (500, 3)).astype(np.float32)
    x_train[:, 2] = 0.3  # constant feature: std 1, only centred
    x_test = rng.normal(10.0, 3.0, (200, 3)).astype(np.float32)
    mean, std, tr, te = data.standardize(x_train, x_test)
    m, s = x_train.astype(np.float64).mean(0), x_train.astype(np.float64).std(0)
    s[2] = 1.0
    np.testing.assert_allclose(np.asarray(mean), m, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(std), s, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(tr), (x_train - m) / s, atol=1e-4)
    np.testing.assert_allclose(np.asarray(te), (x_test - m) / s, atol=1e-4)
    assert np.asarray(te)[:, 0].mean() > 1  # test split was not centred with its own mean
    assert tr.dtype == jnp.float32 and np.all(np.abs(np.asarray(tr)[:, 2]) < 1e-6)  # centred, not blown up


def test_standardize_zero_std_and_errors():
    mean, std, tr = data.standardize(np.zeros((4, 2), np.float32))
    assert np.asarray(std).tolist() == [1.0, 1.0] and np.all(np.isfinite(np.asarray(tr)))
    with pytest.raises(ValueError, match="others\\[1\\]"):
        data.standardize(np.ones((4, 2)), np.ones((3, 2)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="x_train"):
        data.standardize(np.ones((0, 2)))


def _features(rng, n, dtype):
    """Columns with a real spread under a large mean (timestamps, prices, a sensor), then columns that
    are constant exactly or up to rounding (0.1 + 0.2 beside 0.3; a value and its next float)."""
    x = np.stack([
        1.7e9 + rng.normal(0, 1.0, n) if dtype == np.float64 else 1e5 + rng.normal(0, 0.5, n),
        1e4 + rng.normal(0, 1.0, n),
        273.15 + rng.normal(0, 0.01, n),
        rng.normal(0, 1.0, n),
        np.full(n, 1.7e9),
        np.zeros(n),
        np.full(n, -3.0),
        np.where(rng.random(n) < 0.5, 0.3, 0.1 + 0.2),
        np.where(rng.random(n) < 0.5, dtype(0.7), np.nextafter(dtype(0.7), dtype(1))),
    ], axis=1).astype(dtype)
    return x, np.array([False] * 4 + [True] * 5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_standardize_constant_features_match_scikit_learn(dtype):
    """Spread under a large mean is scaled, constants up to rounding are not: scikit-learn's
    StandardScaler (float64 accumulators, the same precision rule) is the reference. The former rule
    std <= 1e-5 * |mean| left the first three columns unscaled."""
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    x, constant = _features(np.random.default_rng(0), 1000, dtype)
    with jax.enable_x64(dtype == np.float64):
        mean, std, xs = data.standardize(x)
        jit_std = jax.jit(data.standardize)(x)[1]
    assert std.dtype == dtype and xs.dtype == dtype
    scaler = preprocessing.StandardScaler().fit(x.astype(np.float64))
    ref = scaler.scale_.copy()
    if dtype == np.float32:  # one float32 ulp of spread is rounding in float32; float64 sees a spread
        assert ref[-1] != 1.0
        ref[-1] = 1.0
    np.testing.assert_array_equal(np.asarray(std) == 1.0, constant)
    np.testing.assert_array_equal(ref == 1.0, constant)
    tol = 1e-5 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(np.asarray(std), ref, rtol=tol)
    np.testing.assert_allclose(np.asarray(mean), scaler.mean_, rtol=1e-7 if dtype == np.float32 else 1e-13)
    np.testing.assert_allclose(np.asarray(jit_std), np.asarray(std), rtol=tol)  # XLA may fuse differently
    xs = np.asarray(xs, np.float64)
    np.testing.assert_allclose(xs[:, :4].std(0), 1.0, rtol=1e-3)  # scaled features really have unit spread
    assert np.abs(xs[:, 4:]).max() <= 1e-6 * (dtype == np.float32) + 1e-7  # constants only centred


def test_standardize_under_grad_and_vmap():
    x, _ = _features(np.random.default_rng(1), 50, np.float32)
    grad = jax.grad(lambda x: jnp.sum(data.standardize(x)[2] ** 2))(jnp.asarray(x))
    assert np.all(np.isfinite(np.asarray(grad)))  # the constant columns' sqrt(0) never reaches the gradient
    batched = jax.vmap(lambda x: data.standardize(x)[1])(jnp.stack([x, x[::-1]]))
    np.testing.assert_allclose(np.asarray(batched[1]), np.asarray(data.standardize(x)[1]), rtol=1e-6)


# ---------------------------------------------------------------- toy data sets


def test_xor():
    x, y = data.xor()
    assert x.dtype == jnp.float32 and y.dtype == jnp.float32
    assert x.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]] and y.tolist() == [[0], [1], [1], [0]]
    np.testing.assert_array_equal(np.asarray(y)[:, 0], np.logical_xor(x[:, 0], x[:, 1]))


def test_gaussian_blobs_statistics():
    x, y = data.gaussian_blobs(jax.random.PRNGKey(0), 20000)
    assert x.shape == (20000, 2) and y.shape == (20000, 1) and x.dtype == jnp.float32 and y.dtype == jnp.float32
    x, y = np.asarray(x, np.float64), np.asarray(y)
    assert np.all(y[:10000] == 0) and np.all(y[10000:] == 1)
    for part, mean, cov in ((x[:10000], [2, 2], [[1, 0.5], [0.5, 1]]), (x[10000:], [6, 6], [[1, -0.5], [-0.5, 1]])):
        np.testing.assert_allclose(part.mean(0), mean, atol=0.1)
        np.testing.assert_allclose(np.cov(part.T), cov, atol=0.1)
    assert abs(np.corrcoef(x[:10000, 0], x[10000:, 0])[0, 1]) < 0.05  # the classes use independent keys


def test_gaussian_blobs_keys_and_errors():
    a = data.gaussian_blobs(jax.random.PRNGKey(1), 10)[0]
    assert np.array_equal(np.asarray(a), np.asarray(data.gaussian_blobs(key=jax.random.PRNGKey(1), n=10)[0]))
    assert not np.array_equal(np.asarray(a), np.asarray(data.gaussian_blobs(jax.random.PRNGKey(2), 10)[0]))
    assert data.gaussian_blobs(jax.random.PRNGKey(0), 2)[0].shape == (2, 2)
    for n in (0, 1, 3, 9, -2, 2.0, True, "4"):
        with pytest.raises(ValueError, match="n must be an even int"):
            data.gaussian_blobs(jax.random.PRNGKey(0), n)


def test_digits():
    datasets = pytest.importorskip("sklearn.datasets")
    x, y = data.digits()
    assert x.shape == (1797, 64) and x.dtype == jnp.float32 and y.shape == (1797,) and y.dtype == jnp.int32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    ref = datasets.load_digits()
    np.testing.assert_allclose(np.asarray(x), ref.data / 16.0, rtol=1e-6)
    assert np.bincount(np.asarray(y)).tolist() == np.bincount(ref.target).tolist() and len(np.unique(y)) == 10


def test_breast_cancer():
    datasets = pytest.importorskip("sklearn.datasets")
    x, y = data.breast_cancer()
    assert x.shape == (569, 30) and x.dtype == jnp.float32 and y.shape == (569,) and y.dtype == jnp.int32
    assert np.bincount(np.asarray(y)).tolist() == [212, 357]  # 0 = malignant, 1 = benign
    ref = datasets.load_breast_cancer()
    assert list(ref.target_names) == ["malignant", "benign"]
    np.testing.assert_allclose(np.asarray(x), ref.data, rtol=1e-6)


@pytest.mark.parametrize("loader", [data.digits, data.breast_cancer])
def test_missing_sklearn_message(monkeypatch, loader):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "jaxnet\[experiments\]"'):
        loader()


def test_import_does_not_pull_sklearn_or_matplotlib():
    code = "import sys, jaxnet.data; print(sorted(m for m in ('sklearn', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

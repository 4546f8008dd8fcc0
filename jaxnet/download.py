"""Download MNIST and Fashion-MNIST (IDX files) into a cache folder, verified by checksum.

`download("mnist")` fetches the four files `{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz` into
`$JAXNET_DATA_DIR/mnist` (or the user cache `$XDG_CACHE_HOME/jaxnet/mnist`, by default
`~/.cache/jaxnet/mnist`), trying an ordered list of mirrors until one serves a file whose
*decompressed* content has the published MD5. A file is written under a temporary name in the target
folder and renamed only once it is complete and verified, so an interrupted or corrupt download
never leaves a partial file behind. Files already present (raw or .gz) are verified, not fetched.
`jaxnet.data.load_mnist(directory, download=True)` calls this and then reads the files.

Why the decompressed content: gzip output depends on the compressor and its settings, so a mirror
that re-compresses the same bytes serves a .gz with another MD5; the IDX bytes inside are what
matters, and their digests are the same everywhere.

Only the standard library is used (urllib, gzip, hashlib); a tqdm progress bar is shown when tqdm is
installed (`pip install "jaxnet[experiments]"`).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.parse
import urllib.request
import zlib
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import NamedTuple

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class Dataset(NamedTuple):
    """A downloadable IDX data set: its folder name, the MD5 of each file's decompressed content, and
    the URL prefixes of its mirrors in the order they are tried (file URL = prefix + name + '.gz')."""

    name: str
    md5: Mapping[str, str]
    mirrors: tuple[str, ...]


DATASETS = {
    # MD5 of the decompressed IDX files as published next to the archives' digests by independent
    # MNIST fetchers: secml's CDataLoaderMNIST (TRAIN_DATA_MD5 = 6bbc9ace..., TEST_DATA_MD5 =
    # 2646ac64...), CMake `fetch_mnist` scripts (MNIST_EXTRACTED_FILE_MD5S) and shell fetchers of the
    # PyTorch S3 mirror (MNIST_EXTRACTED_FILES_MD5); the t10k pair was also checked with md5sum
    # against a re-compressed copy. Archive (.gz) MD5s, for reference only
    # (torchvision.datasets.MNIST.resources): f68b3c2d... train images, d53e105e... train labels,
    # 9fb629c4... t10k images, ec29112d... t10k labels.
    # Mirrors: torchvision's PyTorch S3 copy, TensorFlow's Google Cloud Storage copy, then the
    # original site (which has refused downloads at times; the book's repository moved off it).
    "mnist": Dataset("mnist", {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    }, ("https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/")),
    # Fashion-MNIST (Xiao, Rasul, Vollgraf 2017): MD5 of the decompressed files as listed in the
    # `raw_data` tables of torchvision-derived FashionMNIST loaders and checked with md5sum after gunzip
    # in MindSpore's dataset notes. Archive MD5s (zalandoresearch/fashion-mnist README, torchvision):
    # 8d4fb7e6... train images, 25c81989... train labels, bef4ecab... t10k images, bb300cfd... t10k labels.
    # Mirrors: Zalando's own S3 bucket (torchvision's), Keras's, and the GitHub repository.
    "fashion_mnist": Dataset("fashion_mnist", {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    }, ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/")),
}


class DownloadError(OSError):
    """No mirror delivered a file with the expected content; the message lists each URL tried and why
    (network error, HTTP status, truncated or corrupt gzip, or the expected and the found MD5)."""


class ChecksumError(ValueError):
    """A file already in the target folder does not have the expected MD5 (message: path and both digests)."""


def default_directory(name: str) -> Path:
    """Where `download(name)` stores a data set: `$JAXNET_DATA_DIR/<name>` when that variable is set,
    else `$XDG_CACHE_HOME/jaxnet/<name>` (default `~/.cache/jaxnet/<name>`). Never inside the package."""
    if os.environ.get("JAXNET_DATA_DIR"):
        return Path(os.environ["JAXNET_DATA_DIR"]) / name
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jaxnet" / name


def content_md5(data: bytes) -> str:
    """The MD5 (hex) of the IDX content: of the decompressed bytes when `data` is gzip (starts 1f 8b).

    Raises: ValueError for a gzip stream that is truncated or corrupt."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"truncated or corrupt gzip stream ({type(err).__name__}: {err})") from err
    return hashlib.md5(data).hexdigest()


def _existing(directory: Path, name: str) -> Path | None:
    for path in (directory / name, directory / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def _progress(total: int | None, label: str, enabled: bool):
    if enabled:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            pass
        else:
            return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, leave=False)
    return None


def _fetch(url: str, directory: Path, name: str, timeout: float, progress: bool) -> Path:
    """Stream `url` into a temporary file in `directory`; return its path (the caller renames or deletes
    it). Raises OSError (urllib's) on network and HTTP errors, http.client.IncompleteRead or ValueError
    when fewer bytes arrive than the server announced; the temporary file is removed on any error."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            bar, received = _progress(total, name, progress), 0
            try:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    received += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
        if total is not None and received != total:
            raise ValueError(f"truncated download: received {received} of {total} bytes")
        return Path(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def download(dataset: str = "mnist", directory: str | os.PathLike | None = None, *,
             files: Sequence[str] | None = None, mirrors: Sequence[str] | None = None,
             md5: Mapping[str, str] | None = None, timeout: float = 30.0, progress: bool = True) -> Path:
    """Make sure the IDX files of `dataset` are in `directory`, downloading the missing ones.

    For each file: if `name` or `name.gz` is already there, its decompressed MD5 is checked;
    otherwise the mirrors are tried in order (URL = mirror + name + '.gz'), and the first response that
    arrives complete and whose decompressed content has the expected MD5 is renamed into place as
    `name.gz` (a temporary file `.name.*.part` in the same folder until then; it is deleted on any
    failure, so no partial file is ever left).

    Args:
        dataset: 'mnist' or 'fashion_mnist' (keys of `DATASETS`).
        directory: target folder (created if needed); default `default_directory(dataset)`.
        files: which of the four files, default all of `FILES`.
        mirrors: URL prefixes to try in order (each ending in '/'), default the data set's mirrors.
            Only http and https URLs are accepted.
        md5: expected MD5 (hex) of the decompressed content per file name, overriding the published
            ones (e.g. for another copy of the data).
        timeout: seconds to wait for each connection and each read.
        progress: show a tqdm progress bar per file (when tqdm is installed).

    Returns:
        The folder (a `Path`), ready for `jaxnet.data.load_mnist(folder)`.

    Raises:
        ValueError: an unknown data set or file name, a mirror that is not an http(s) URL.
        ChecksumError: a file already present whose content has another MD5 (delete it to re-download).
        DownloadError: every mirror failed for a file; the message names each URL with its error
            (HTTP status, network error, truncated download or gzip, or the expected and found MD5).
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset: expected one of {', '.join(sorted(DATASETS))}, got {dataset!r}")
    spec = DATASETS[dataset]
    names = FILES if files is None else tuple(files)
    for name in names:
        if name not in FILES:
            raise ValueError(f"files: expected names among {', '.join(FILES)}, got {name!r}")
    if isinstance(mirrors, str):
        raise ValueError(f"mirrors: expected a sequence of URL prefixes, got the string {mirrors!r}; wrap it in a list")
    urls = spec.mirrors if mirrors is None else tuple(mirrors)
    for url in urls:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"mirrors: expected http(s) URL prefixes, got {url!r}")
    digests = {**spec.md5, **(md5 or {})}
    folder = Path(directory) if directory is not None else default_directory(dataset)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        expected = digests[name]
        present = _existing(folder, name)
        if present is not None:
            try:
                found = content_md5(present.read_bytes())
            except ValueError as err:
                found = str(err)
            if found != expected:
                raise ChecksumError(f"{present}: expected content MD5 {expected}, found {found}; delete the file "
                                    f"to download it again")
            continue
        _download_file(folder, name, expected, urls, timeout, progress)
    return folder


def _download_file(folder: Path, name: str, expected: str, urls: Sequence[str], timeout: float,
                   progress: bool) -> None:
    failures = []
    for prefix in urls:
        url = f"{prefix}{name}.gz"
        try:
            tmp = _fetch(url, folder, name, timeout, progress)
        except (OSError, ValueError, http.client.HTTPException) as err:  # URLError, HTTPError: OSErrors;
            # IncompleteRead (the connection closed early): HTTPException
            failures.append(f"{url}: {err}")
            continue
        try:
            data = tmp.read_bytes()
            found = content_md5(data)
        except ValueError as err:
            tmp.unlink(missing_ok=True)
            failures.append(f"{url}: {err}")
            continue
        if found != expected:
            tmp.unlink(missing_ok=True)
            failures.append(f"{url}: checksum mismatch: expected content MD5 {expected}, found {found}")
            continue
        target = folder / (f"{name}.gz" if data[:2] == b"\x1f\x8b" else name)
        tmp.chmod(0o644)  # mkstemp creates 0600; a data file is readable by all, as one that was copied
        os.replace(tmp, target)  # atomic on one filesystem: the file appears complete or not at all
        return
    tried = "\n  ".join(failures) or "(no mirrors given)"
    raise DownloadError(f"{name}: no mirror delivered a file with content MD5 {expected}; tried:\n  {tried}")

"""Downloads without the internet: a local HTTP server on 127.0.0.1 serves the t10k files from the
shared MNIST folder (and a corrupted and a truncated copy); the mirror list points at it.

Nothing here contacts any other address: proxies are disabled (no_proxy=*) and every URL is the
local server's. The server runs in a daemon thread, is shut down after each test, and stops itself
after 60 s in any case."""

import functools
import gzip
import hashlib
import http.server
import shutil
import threading

import pytest
from conftest import MNIST_DIR

from jaxnet import data
from jaxnet import download as dl

T10K = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
pytestmark = pytest.mark.skipif(not all((MNIST_DIR / f"{n}.gz").is_file() for n in T10K),
                                reason=f"the t10k files are not in {MNIST_DIR}")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request lines on stderr
        pass


@pytest.fixture(scope="module")
def www(tmp_path_factory):
    """The served folder, built once per module (re-compressing the images takes seconds): good/ (the
    shared files), corrupt/ (one pixel changed, re-compressed: valid gzip, wrong content) and
    truncated/ (half of each .gz). No test writes to it."""
    www = tmp_path_factory.mktemp("www")
    for mirror in ("good", "corrupt", "truncated"):
        (www / mirror).mkdir(parents=True)
    for name in T10K:
        raw = (MNIST_DIR / f"{name}.gz").read_bytes()
        (www / "good" / f"{name}.gz").write_bytes(raw)
        content = bytearray(gzip.decompress(raw))
        content[-1] ^= 0xFF
        (www / "corrupt" / f"{name}.gz").write_bytes(gzip.compress(bytes(content)))
        (www / "truncated" / f"{name}.gz").write_bytes(raw[: len(raw) // 2])
    return www


@pytest.fixture
def server(www, monkeypatch):
    """Serve `www` over HTTP on 127.0.0.1 with four mirrors: its good/, corrupt/ and truncated/, and
    short/ (the connection drops after half of the announced bytes).
    Yields (base URL, list of requested paths)."""
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "*")
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    requests = []

    class Handler(QuietHandler):
        def do_GET(self):
            requests.append(self.path)
            if self.path.startswith("/short/"):  # announce the whole file, send half, hang up
                body = (www / "good" / self.path.split("/")[-1]).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    watchdog = threading.Timer(60, httpd.shutdown)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", requests
    finally:
        watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".part")


def test_success_path_files_verified_and_readable(server, tmp_path):
    base, requests = server
    target = dl.download("mnist", tmp_path / "cache", files=T10K, mirrors=[base + "good/"], progress=False)
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{n}.gz" for n in T10K)
    for name in T10K:  # bytes identical to what the server holds, content MD5 the published one
        assert (target / f"{name}.gz").read_bytes() == (MNIST_DIR / f"{name}.gz").read_bytes()
    assert hashlib.md5(gzip.decompress((target / f"{T10K[0]}.gz").read_bytes())).hexdigest() == \
        "2646ac647ad5339dbf082846283269ea"
    mnist = data.load_mnist(target, t10k_split=(8000, 2000))
    assert mnist.x_train.shape == (8000, 28, 28) and mnist.x_test.shape == (2000, 28, 28)
    # a second call finds the files, verifies them and downloads nothing
    n = len(requests)
    dl.download("mnist", target, files=T10K, mirrors=[base + "good/"], progress=False)
    assert len(requests) == n


def test_fallback_to_the_next_mirror(server, tmp_path):
    base, requests = server
    order = ("missing", "short", "truncated", "corrupt", "good")
    target = dl.download("mnist", tmp_path / "cache", files=T10K, mirrors=[f"{base}{m}/" for m in order],
                         progress=False)
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{n}.gz" for n in T10K)
    assert requests == [f"/{m}/{n}.gz" for n in T10K for m in order]


def test_checksum_error_names_url_and_digests_and_leaves_nothing(server, www, tmp_path):
    base, _ = server
    folder = tmp_path / "cache"
    with pytest.raises(dl.DownloadError) as info:
        dl.download("mnist", folder, files=T10K[:1], mirrors=[base + "corrupt/", base + "truncated/", base + "short/"],
                    progress=False)
    message = str(info.value)
    assert f"{base}short/{T10K[0]}.gz: IncompleteRead" in message or f"{base}short/{T10K[0]}.gz: truncated" in message
    assert f"{base}corrupt/{T10K[0]}.gz: checksum mismatch: expected content MD5 2646ac647ad5339dbf082846283269ea" \
        in message
    assert f"{base}truncated/{T10K[0]}.gz: truncated or corrupt gzip" in message
    assert list(folder.iterdir()) == []  # no partial or temporary file
    # caller-supplied digests: the corrupted copy is accepted when its own MD5 is given
    corrupt = gzip.decompress((www / "corrupt" / f"{T10K[0]}.gz").read_bytes())
    dl.download("mnist", folder, files=T10K[:1], mirrors=[base + "corrupt/"], progress=False,
                md5={T10K[0]: hashlib.md5(corrupt).hexdigest()})
    assert [p.name for p in folder.iterdir()] == [f"{T10K[0]}.gz"]
    # ... and is then refused as an existing file with the published digest
    with pytest.raises(dl.ChecksumError, match=r"expected content MD5 2646ac647ad5339dbf082846283269ea, found "):
        dl.download("mnist", folder, files=T10K[:1], mirrors=[base + "good/"], progress=False)


def test_network_error_and_bad_arguments(server, tmp_path):
    base, _ = server
    folder = tmp_path / "cache"
    closed = "http://127.0.0.1:9/"  # the discard port: nothing listens there, the connection is refused
    with pytest.raises(dl.DownloadError, match=r"http://127\.0\.0\.1:9/t10k-labels-idx1-ubyte\.gz: "):
        dl.download("mnist", folder, files=T10K[1:], mirrors=[closed], progress=False, timeout=5)
    assert leftovers(folder) == []
    with pytest.raises(ValueError, match=r"^mirrors: expected http\(s\) URL prefixes"):
        dl.download("mnist", folder, mirrors=["file:///etc/"])
    with pytest.raises(ValueError, match=r"^mirrors: .*string"):
        dl.download("mnist", folder, mirrors=base)
    with pytest.raises(ValueError, match=r"^dataset: "):
        dl.download("cifar", folder)
    with pytest.raises(ValueError, match=r"^files: "):
        dl.download("mnist", folder, files=["t10k-images"])


def test_load_mnist_download_hook_uses_the_given_mirrors(server, tmp_path):
    base, requests = server
    folder = tmp_path / "cache"
    # the server has no train files: the t10k pair lands, the train files fail with their URL named
    with pytest.raises(dl.DownloadError, match=rf"{base}good/train-images-idx3-ubyte\.gz: HTTP Error 404"):
        data.load_mnist(folder, download=[base + "good/"])
    assert leftovers(folder) == []
    shutil.rmtree(folder)
    folder.mkdir()
    for name in T10K:  # with the t10k files already there, only the train files are requested
        shutil.copy(MNIST_DIR / f"{name}.gz", folder)
    n = len(requests)
    with pytest.raises(dl.DownloadError):
        data.load_mnist(folder, download=[base + "good/"])
    assert requests[n:] == ["/good/train-images-idx3-ubyte.gz"]


def test_default_directory_is_the_env_or_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXNET_DATA_DIR", str(tmp_path / "data"))
    assert dl.default_directory("mnist") == tmp_path / "data" / "mnist"
    monkeypatch.delenv("JAXNET_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert dl.default_directory("fashion_mnist") == tmp_path / "xdg" / "jaxnet" / "fashion_mnist"

"""Checkpoints (jaxnet.checkpoint): exact round trips, no code on load, atomic writes, clear errors on
truncated, corrupted or mismatched files, and resuming a run bitwise (the plateau state included)."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import struct
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxnet import checkpoint, data, fit, mlp, optim

ADAM_PLATEAU = dict(name="adam", learning_rate=0.5, plateau=(0.8, 5))  # decays often on XOR (below)


def bits(a) -> np.ndarray:
    """The raw bytes of an array as unsigned integers: equality is bitwise (NaN payloads, -0.0)."""
    a = np.asarray(a)
    return a.view(f"u{a.dtype.itemsize}") if a.dtype.kind == "f" else a


def assert_bitwise_equal(tree_a, tree_b):
    assert jax.tree.structure(tree_a) == jax.tree.structure(tree_b)
    for a, b in zip(jax.tree.leaves(tree_a), jax.tree.leaves(tree_b)):
        assert np.asarray(a).dtype == np.asarray(b).dtype and np.shape(a) == np.shape(b)
        np.testing.assert_array_equal(bits(a), bits(b))


@pytest.fixture(scope="module")
def trained():
    """A 2-4-1 XOR net after 20 epochs of Adam with the plateau decay: params, optax state, optimizer."""
    net = mlp([2, 4, 1])
    _, params = net.init(jax.random.key(0))
    tx = optim.optimizer(ADAM_PLATEAU["name"], ADAM_PLATEAU["learning_rate"], plateau=ADAM_PLATEAU["plateau"])
    x, y = data.xor()
    params, state, _ = fit(net, params, x, y, loss="mse", optimizer=tx, epochs=20, return_opt_state=True)
    return net, params, state, tx


@pytest.fixture
def saved(tmp_path, trained):
    _, params, state, _ = trained
    return checkpoint.save(tmp_path / "ckpt.npz", params, opt_state=state, config={"lr": 0.5, "sizes": [2, 4, 1]})


# ------------------------------------------------------------------------------------------------
# Round trips
# ------------------------------------------------------------------------------------------------


def test_round_trip_float32_is_bitwise_with_optax_state(saved, trained):
    _, params, state, tx = trained
    loaded = checkpoint.load(saved, like=params, opt_state_like=tx.init(params))
    assert_bitwise_equal(loaded.params, params)
    assert_bitwise_equal(loaded.opt_state, state)  # NamedTuples back, plateau state included
    assert isinstance(loaded.opt_state[1], optim.PlateauDecayState)
    assert loaded.config == {"lr": 0.5, "sizes": [2, 4, 1]}


def test_template_may_be_shapes_only(saved, trained):
    net, params, state, tx = trained
    like = jax.eval_shape(lambda: net.init(jax.random.key(1))[1])
    state_like = jax.eval_shape(tx.init, like)
    loaded = checkpoint.load(saved, like=like, opt_state_like=state_like)
    assert_bitwise_equal(loaded.opt_state, state)


def test_without_template_plain_containers_come_back(saved, trained):
    _, params, state, _ = trained
    loaded = checkpoint.load(saved)
    assert_bitwise_equal(loaded.params, params)  # tuples of dicts, the empty {} of activations included
    plateau = loaded.opt_state[1]
    assert isinstance(plateau, dict) and set(plateau) == {"scale", "plateau", "patience"}
    np.testing.assert_array_equal(plateau["plateau"]["best_value"], state[1].plateau.best_value)


def test_round_trip_float64_is_bitwise(tmp_path):
    with jax.enable_x64(True):
        net = mlp([3, 5, 2], dtype=jnp.float64)
        _, params = net.init(jax.random.key(3))
        params = jax.tree.map(lambda a: a + 1 / 3, params)  # digits that float32 cannot hold
        checkpoint.save(tmp_path / "f64.npz", params)
        loaded = checkpoint.load(tmp_path / "f64.npz", like=params)
        assert_bitwise_equal(loaded.params, params)
        assert loaded.params[0]["W"].dtype == jnp.float64
        assert not np.array_equal(np.asarray(loaded.params[0]["W"], np.float32).astype(np.float64),
                                  np.asarray(params[0]["W"]))
    with pytest.raises(ValueError, match=r"float64.*enable_x64"):  # never silently narrowed to float32
        checkpoint.load(tmp_path / "f64.npz")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values_round_trip_bitwise(tmp_path, dtype):
    nan_payload = np.array([0x7FC00001 if dtype == np.float32 else 0x7FF8000000000001],
                           dtype=f"u{np.dtype(dtype).itemsize}").view(dtype)
    tiny = np.finfo(dtype).smallest_subnormal
    values = np.concatenate([[0.0, -0.0, np.inf, -np.inf, tiny, -tiny, np.finfo(dtype).max], nan_payload])
    tree = {"v": values.astype(dtype), "n": (np.int32(-7), np.uint8(255), np.array(True))}
    with jax.enable_x64(dtype == np.float64):
        checkpoint.save(tmp_path / "s.npz", tree)
        loaded = checkpoint.load(tmp_path / "s.npz", like=tree).params
    assert_bitwise_equal(loaded, tree)


def test_same_contents_give_byte_identical_files(tmp_path, trained):
    _, params, state, _ = trained
    a = checkpoint.save(tmp_path / "a.npz", params, opt_state=state, config={"k": 1}).read_bytes()
    b = checkpoint.save(tmp_path / "b.npz", params, opt_state=state, config={"k": 1}).read_bytes()
    assert a == b


# ------------------------------------------------------------------------------------------------
# Nothing is executed on load; what cannot be stored is refused
# ------------------------------------------------------------------------------------------------


class _Exploit:
    """Unpickling this would create a file: the marker shows whether any code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _npz(entries: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, payload in entries.items():
            archive.writestr(name, payload)
    return buffer.getvalue()


def test_a_pickled_payload_is_refused_and_never_run(tmp_path, saved):
    marker = tmp_path / "pwned"
    npy = io.BytesIO()
    np.lib.format.write_array(npy, np.array([_Exploit(marker)], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(saved) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    entries["params/0.npy"] = npy.getvalue()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(_npz(entries))
    with pytest.raises(ValueError, match="corrupted"):
        checkpoint.load(bad)
    raw = tmp_path / "raw.pkl"  # a bare pickle under a checkpoint's name
    raw.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(ValueError, match="not a jaxnet checkpoint"):
        checkpoint.load(raw)
    assert not marker.exists()


@pytest.mark.parametrize("tree,match", [
    ({"key": jax.random.key(0)}, "key_data"),
    ({"obj": np.array([object()])}, "dtype object"),
    ({1: np.zeros(2)}, "str"),
    ({"s": "text"}, "cannot save a str"),
])
def test_unsupported_leaves_are_refused_on_save(tmp_path, tree, match):
    with pytest.raises(TypeError, match=match):
        checkpoint.save(tmp_path / "x.npz", tree)
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("config", [{"lr": jnp.float32(0.1)}, {"lr": float("nan")}, {"f": print}, [1, 2]])
def test_config_must_be_json(tmp_path, config):
    with pytest.raises(TypeError, match="config"):
        checkpoint.save(tmp_path / "x.npz", {"w": np.zeros(1)}, config=config)


def test_check_config_names_the_differences():
    saved = {"lr": 0.5, "sizes": [2, 4, 1], "epochs": 1000}
    checkpoint.check_config(saved, {"lr": 0.5, "sizes": (2, 4, 1)})  # a tuple equals the list it was saved as
    with pytest.raises(ValueError, match=r"lr: checkpoint 0.5, now 1.0.*seed: absent"):
        checkpoint.check_config(saved, {"lr": 1.0, "seed": 0, "sizes": [2, 4, 1]})
    checkpoint.check_config(saved, {"lr": 1.0}, ignore=["lr"])


# ------------------------------------------------------------------------------------------------
# Truncated, corrupted, foreign and mismatched files
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 3, 100, 0.5, -1])
def test_truncated_files_raise(tmp_path, saved, keep):
    content = saved.read_bytes()
    n = int(len(content) * keep) if isinstance(keep, float) else keep % len(content) if keep < 0 else keep
    cut = tmp_path / "cut.npz"
    cut.write_bytes(content[:n])
    with pytest.raises(ValueError, match="truncated|corrupted|not a jaxnet checkpoint"):
        checkpoint.load(cut)


def _payload_offsets(path):
    """Byte ranges of each member's stored data (its .npy bytes) inside the zip."""
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    raw = path.read_bytes()
    for info in infos:
        name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26: info.header_offset + 30])
        start = info.header_offset + 30 + name_len + extra_len
        yield info.filename, start, start + info.compress_size


@settings(max_examples=30)
@given(st.data())
def test_fuzz_any_byte_flip_raises_or_loads_the_exact_values(tmp_path_factory, data_):
    """D1/D2's kind of fault for checkpoints: damaged bytes never give silently different arrays."""
    net = mlp([2, 3, 1])
    _, params = net.init(jax.random.key(0))
    path = tmp_path_factory.mktemp("flip") / "c.npz"
    checkpoint.save(path, params, config={"note": "x"})
    raw = bytearray(path.read_bytes())
    for _ in range(data_.draw(st.integers(1, 3))):
        i = data_.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data_.draw(st.integers(1, 255))
    path.write_bytes(bytes(raw))
    try:
        loaded = checkpoint.load(path)
    except ValueError as err:
        assert str(path) in str(err)
    else:  # a flip in an unchecked zip field (a timestamp, ...) may leave every array intact
        assert_bitwise_equal(loaded.params, params)
        assert loaded.config == {"note": "x"}


def test_a_flipped_payload_byte_names_the_damage(tmp_path, saved):
    raw = bytearray(saved.read_bytes())
    name, start, end = next(o for o in _payload_offsets(saved) if o[0] == "params/0.npy")
    raw[end - 1] ^= 0x01  # last byte of params[0]['W']'s data
    saved.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupted"):
        checkpoint.load(saved)


def test_a_rewritten_zip_with_changed_values_fails_the_checksum(tmp_path, saved):
    """Changed data with a valid zip CRC (an edited file) is caught by the manifest's SHA-256."""
    with zipfile.ZipFile(saved) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    w = np.lib.format.read_array(io.BytesIO(entries["params/0.npy"]))
    npy = io.BytesIO()
    np.lib.format.write_array(npy, w + 1)
    entries["params/0.npy"] = npy.getvalue()
    saved.write_bytes(_npz(entries))
    with pytest.raises(ValueError, match=r"SHA-256 of params\[0\]\['W'\]"):
        checkpoint.load(saved)


def test_foreign_files_are_named(tmp_path, saved):
    gz = tmp_path / "c.npz.gz"
    gz.write_bytes(gzip.compress(saved.read_bytes()))
    with pytest.raises(ValueError, match="gzip"):
        checkpoint.load(gz)
    idx = tmp_path / "labels"  # an MNIST label file (magic 2049) where a checkpoint is expected
    idx.write_bytes(struct.pack(">II", 2049, 2) + bytes([5, 1]))
    with pytest.raises(ValueError, match="not a jaxnet checkpoint.*00 00 08 01"):
        checkpoint.load(idx)
    plain = tmp_path / "plain.npz"  # someone else's npz
    np.savez(plain, W=np.zeros(3))
    with pytest.raises(ValueError, match="no __manifest__"):
        checkpoint.load(plain)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        checkpoint.load(empty)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        checkpoint.load(tmp_path / "missing.npz")


def test_a_newer_format_version_is_refused(tmp_path, saved):
    with zipfile.ZipFile(saved) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(np.lib.format.read_array(io.BytesIO(entries["__manifest__.npy"])).tobytes())
    manifest["version"] = checkpoint.VERSION + 1
    npy = io.BytesIO()
    np.lib.format.write_array(npy, np.frombuffer(json.dumps(manifest).encode(), np.uint8))
    entries["__manifest__.npy"] = npy.getvalue()
    saved.write_bytes(_npz(entries))
    with pytest.raises(ValueError, match=f"version {checkpoint.VERSION + 1}"):
        checkpoint.load(saved)


def test_mismatched_templates_name_what_differs(saved, trained):
    _, params, _, tx = trained
    _, wider = mlp([2, 5, 1]).init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"params\[0\]\['W'\]: the file has an array float32 \(2, 4\), "
                                         r"the template has an array float32 \(2, 5\)"):
        checkpoint.load(saved, like=wider)
    _, deeper = mlp([2, 4, 4, 1]).init(jax.random.key(0))
    with pytest.raises(ValueError, match="params: the file has a tuple of 4 entries, the template has a tuple of 6"):
        checkpoint.load(saved, like=deeper)
    half = jax.tree.map(lambda a: a.astype(jnp.float16), params)
    with pytest.raises(ValueError, match=r"params\[0\]\['W'\].*float32.*float16"):
        checkpoint.load(saved, like=half)
    with pytest.raises(ValueError, match="opt_state: the file has a tuple of 2 entries, the template has a "
                                         "NamedTuple InjectStatefulHyperparamsState"):
        checkpoint.load(saved, like=params, opt_state_like=optim.sgd(0.1).init(params))
    with pytest.raises(ValueError, match="holds no opt_state"):
        path = checkpoint.save(saved.with_name("p.npz"), params)
        checkpoint.load(path, opt_state_like=tx.init(params))


# ------------------------------------------------------------------------------------------------
# Atomic writes
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_crash_while_saving_leaves_the_old_file_and_no_temporary(tmp_path, trained, monkeypatch, failing):
    _, params, state, tx = trained
    path = checkpoint.save(tmp_path / "ckpt.npz", params, config={"v": 1})
    before = path.read_bytes()
    replaced = []
    real_replace = os.replace

    def spy_replace(src, dst):
        replaced.append((os.path.dirname(src), os.path.dirname(dst)))
        return real_replace(src, dst)

    def crash(*args):
        raise OSError("simulated crash")

    monkeypatch.setattr(os, failing, crash)
    with pytest.raises(OSError, match="simulated crash"):
        checkpoint.save(path, params, opt_state=state, config={"v": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before and checkpoint.load(path).config == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]  # no temporary left behind
    monkeypatch.setattr(os, "replace", spy_replace)
    checkpoint.save(path, params, opt_state=state, config={"v": 3})
    assert replaced == [(str(tmp_path), str(tmp_path))]  # renamed within the same directory
    assert checkpoint.load(path, like=params, opt_state_like=tx.init(params)).config == {"v": 3}


def test_a_missing_directory_is_named(tmp_path, trained):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        checkpoint.save(tmp_path / "nowhere" / "c.npz", trained[1])


# ------------------------------------------------------------------------------------------------
# Resuming
# ------------------------------------------------------------------------------------------------


def test_resuming_2x1000_epochs_equals_2000_in_one_go(tmp_path):
    net = mlp([2, 4, 1])
    _, params = net.init(jax.random.key(0))
    x, y = data.xor()
    tx = optim.optimizer(ADAM_PLATEAU["name"], ADAM_PLATEAU["learning_rate"], plateau=ADAM_PLATEAU["plateau"])
    run = dict(loss="mse", optimizer=tx, epochs=1000, return_opt_state=True)
    p_full, s_full, h_full = fit(net, params, x, y, **{**run, "epochs": 2000})
    p1, s1, h1 = fit(net, params, x, y, **run)
    checkpoint.save(tmp_path / "half.npz", p1, opt_state=s1, config={"epochs": 1000})
    resumed = checkpoint.load(tmp_path / "half.npz", like=params, opt_state_like=tx.init(params))
    p2, s2, h2 = fit(net, resumed.params, x, y, opt_state=resumed.opt_state, **run)
    assert_bitwise_equal(p2, p_full)
    assert_bitwise_equal(s2, s_full)
    np.testing.assert_array_equal(np.concatenate([h1["loss"], h2["loss"]]), h_full["loss"])
    np.testing.assert_array_equal(np.concatenate([h1["learning_rate"], h2["learning_rate"]]), h_full["learning_rate"])
    decays = [epoch for epoch, _ in optim.decays(h_full)]
    assert any(e < 1000 for e in decays) and any(e > 1000 for e in decays)  # the plateau state matters
    # without the saved state (a fresh plateau counter and Adam moments) the run differs
    p_fresh, _, _ = fit(net, resumed.params, x, y, **run)
    assert not np.array_equal(p_fresh[0]["W"], p_full[0]["W"])


def test_xor_experiment_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    from experiments import xor

    monkeypatch.setattr(xor, "SEEDS", 2)  # the seed sweep is not what is tested here
    xor.main(["--quick", "--out", str(tmp_path)])
    first = json.loads((tmp_path / "metrics.json").read_text())
    xor.main(["--quick", "--out", str(tmp_path), "--resume"])
    second = json.loads((tmp_path / "metrics.json").read_text())
    epochs = first["epochs"]
    assert (first["epochs_total"], second["epochs_total"], second["resumed_from_epoch"]) == (epochs, 2 * epochs, epochs)
    saved = checkpoint.load(tmp_path / "checkpoint.npz")
    assert saved.config["epochs"] == 2 * epochs
    net = mlp([2, 4, 1])
    _, params = net.init(jax.random.key(0))
    x, y = data.xor()
    straight, _ = fit(net, params, x, y, loss="mse", optimizer=optim.sgd(xor.LEARNING_RATE), epochs=2 * epochs)
    assert_bitwise_equal(saved.params["true_gradient"], straight)
    with pytest.raises(ValueError, match="seed: checkpoint 0, now 1"):
        xor.main(["--quick", "--out", str(tmp_path), "--resume", "--seed", "1"])

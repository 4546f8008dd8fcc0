"""Checkpoints (jaxnet.checkpoint): exact round trips (every dtype, layer state and optimizer state),
no code on load, atomic writes, clear errors naming the leaf on truncated, corrupted or mismatched
files, and resuming a run bitwise (the plateau state included)."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import struct
import subprocess
import sys
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
    return a.view(f"u{a.dtype.itemsize}") if jnp.issubdtype(a.dtype, jnp.inexact) else a  # bfloat16 too


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
    params, _, state, _ = fit(net, params, x, y, loss="mse", optimizer=tx, epochs=20)
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


def test_without_template_a_flat_dict_by_path_comes_back(saved, trained):
    _, params, state, _ = trained
    loaded = checkpoint.load(saved)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    assert list(loaded.params) == sorted(paths) == sorted(["[0]['W']", "[0]['b']", "[2]['W']", "[2]['b']"])
    for p, leaf in zip(paths, jax.tree.leaves(params)):
        assert_bitwise_equal(loaded.params[p], leaf)
    np.testing.assert_array_equal(loaded.opt_state["[1].plateau.best_value"], state[1].plateau.best_value)
    assert loaded.state is None


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64, jnp.bfloat16, np.float16])
def test_special_values_round_trip_bitwise(tmp_path, dtype):
    dtype = np.dtype(dtype)
    info = jnp.finfo(dtype)
    nan_payload = np.array([int(np.asarray(np.nan, dtype).view(f"u{dtype.itemsize}")) | 1],
                           dtype=f"u{dtype.itemsize}").view(dtype)
    values = np.concatenate([np.array([0.0, -0.0, np.inf, -np.inf, info.smallest_subnormal, -info.smallest_subnormal,
                                       info.max, 1 / 3], dtype), nan_payload])
    tree = {"v": values, "ints": (np.int8(-7), np.uint8(255), np.array([-(2**31), 2**31 - 1], np.int32)),
            "flag": np.array([True, False]), "big_endian": np.arange(3, dtype=">i2")}
    with jax.enable_x64(dtype == np.float64):
        checkpoint.save(tmp_path / "s.npz", tree)
        loaded = checkpoint.load(tmp_path / "s.npz", like=tree).params
    assert_bitwise_equal(loaded["v"], values)
    assert loaded["v"].dtype == dtype and loaded["ints"][0].dtype == np.int8 and loaded["flag"].dtype == np.bool_
    assert_bitwise_equal(loaded["ints"], tree["ints"])
    assert loaded["big_endian"].tolist() == [0, 1, 2] and loaded["big_endian"].dtype == np.int16


def test_same_contents_give_byte_identical_files(tmp_path, trained):
    _, params, state, _ = trained
    a = checkpoint.save(tmp_path / "a.npz", params, opt_state=state, config={"k": 1}).read_bytes()
    b = checkpoint.save(tmp_path / "b.npz", params, opt_state=state, config={"k": 1}).read_bytes()
    assert a == b


def test_layer_state_round_trips_beside_params(tmp_path, trained):
    """The layer state (e.g. BatchNorm running statistics) is a tree of its own; an empty one too."""
    _, params, opt_state, tx = trained
    state = ({}, {"mean": jnp.arange(4.0), "var": jnp.ones(4), "count": jnp.int32(7)}, {}, {})
    path = checkpoint.save(tmp_path / "bn" / "ckpt.npz", params, state=state, opt_state=opt_state)
    loaded = checkpoint.load(path, like=params, state_like=state, opt_state_like=tx.init(params))
    assert_bitwise_equal(loaded.state, state)
    assert_bitwise_equal(loaded.opt_state, opt_state)
    assert sorted(checkpoint.load(path).state) == ["[1]['count']", "[1]['mean']", "[1]['var']"]
    empty = ({}, {}, {}, {})
    path = checkpoint.save(tmp_path / "empty.npz", params, state=empty)
    assert checkpoint.load(path, like=params, state_like=empty).state == empty
    with pytest.raises(ValueError, match=r"state\[1\]\['count'\] is in the template but not in the file"):
        checkpoint.load(path, state_like=state)
    with pytest.raises(ValueError, match="holds no state"):
        checkpoint.load(checkpoint.save(tmp_path / "p.npz", params), state_like=empty)


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
    entries["params[0]['W'].npy"] = npy.getvalue()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(_npz(entries))
    with pytest.raises(ValueError, match=r"corrupted.*params\[0\]\['W'\]"):
        checkpoint.load(bad)
    manifest = json.loads(entries["manifest.json"])  # a manifest that asks for objects is refused too
    manifest["trees"]["params"]["[0]['W']"] = "object"
    entries["manifest.json"] = json.dumps(manifest).encode()
    bad.write_bytes(_npz(entries))
    with pytest.raises(ValueError, match="dtype object is not allowed"):
        checkpoint.load(bad)
    raw = tmp_path / "raw.pkl"  # a bare pickle under a checkpoint's name
    raw.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(ValueError, match="not a jaxnet checkpoint"):
        checkpoint.load(raw)
    assert not marker.exists()


@pytest.mark.parametrize("tree,match", [
    ({"key": jax.random.key(0)}, r"params\['key'\]: PRNG key arrays cannot be saved.*key_data"),
    ({"obj": np.array([object()])}, r"params\['obj'\].*dtype object"),
    ({"s": "text"}, r"params\['s'\]: .*a str"),
])
def test_unsupported_leaves_are_refused_on_save(tmp_path, tree, match):
    with pytest.raises(TypeError, match=match):
        checkpoint.save(tmp_path / "x.npz", tree)
    assert not (tmp_path / "x.npz").exists()


def test_config_takes_numpy_and_jax_scalars(tmp_path):
    config = {"lr": np.float32(0.1), "epochs": np.int64(5), "decay": np.array(0.5), "wd": jnp.float32(0.25),
              "sizes": (2, np.int32(4), 1), "flag": np.bool_(True)}
    path = checkpoint.save(tmp_path / "c.npz", {"w": np.zeros(1, np.float32)}, config=config)
    assert checkpoint.load(path).config == {"lr": float(np.float32(0.1)), "epochs": 5, "decay": 0.5, "wd": 0.25,
                                            "sizes": [2, 4, 1], "flag": True}


@pytest.mark.parametrize("config", [{"lr": float("nan")}, {"lr": np.float32("inf")}, {"f": print},
                                    {"v": np.zeros(2)}, [1, 2]])
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
        loaded = checkpoint.load(path, like=params)
    except ValueError as err:
        assert str(path) in str(err)
    else:  # a flip in an unchecked zip field (a timestamp, ...) may leave every array intact
        assert_bitwise_equal(loaded.params, params)
        assert loaded.config == {"note": "x"}


def test_a_flipped_payload_byte_names_the_damage(tmp_path, saved):
    raw = bytearray(saved.read_bytes())
    name, start, end = next(o for o in _payload_offsets(saved) if o[0] == "params[0]['W'].npy")
    raw[end - 1] ^= 0x01  # last byte of params[0]['W']'s data
    saved.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"corrupted.*CRC.*params\[0\]\['W'\]"):
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
    with pytest.raises(ValueError, match="no manifest.json"):
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
    manifest = json.loads(entries["manifest.json"])
    manifest["version"] = checkpoint.VERSION + 1
    entries["manifest.json"] = json.dumps(manifest).encode()
    saved.write_bytes(_npz(entries))
    with pytest.raises(ValueError, match=f"version {checkpoint.VERSION + 1}"):
        checkpoint.load(saved)


def test_mismatched_templates_name_what_differs(saved, trained):
    _, params, _, tx = trained
    _, wider = mlp([2, 5, 1]).init(jax.random.key(0))
    with pytest.raises(ValueError,
                       match=r"params\[0\]\['W'\]: the file has float32 \(2, 4\), the template float32 \(2, 5\)"):
        checkpoint.load(saved, like=wider)
    _, deeper = mlp([2, 4, 4, 1]).init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"params\[4\]\['W'\] is in the template but not in the file"):
        checkpoint.load(saved, like=deeper)
    with pytest.raises(ValueError, match=r"params\[2\]\['W'\] is in the file but not in the template"):
        checkpoint.load(saved, like=params[:2])
    half = jax.tree.map(lambda a: a.astype(jnp.float16), params)
    with pytest.raises(ValueError, match=r"params\[0\]\['W'\].*float32.*float16"):
        checkpoint.load(saved, like=half)
    with pytest.raises(ValueError, match=r"opt_state\.count is in the template but not in the file \(2 leaves"):
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


def test_missing_parent_directories_are_created(tmp_path, trained):
    path = checkpoint.save(tmp_path / "runs" / "new" / "c.npz", trained[1])
    assert path.is_file() and sorted(p.name for p in path.parent.iterdir()) == ["c.npz"]
    assert_bitwise_equal(checkpoint.load(path, like=trained[1]).params, trained[1])


# ------------------------------------------------------------------------------------------------
# Resuming
# ------------------------------------------------------------------------------------------------


def test_resuming_2x1000_epochs_equals_2000_in_one_go(tmp_path):
    net = mlp([2, 4, 1])
    _, params = net.init(jax.random.key(0))
    x, y = data.xor()
    tx = optim.optimizer(ADAM_PLATEAU["name"], ADAM_PLATEAU["learning_rate"], plateau=ADAM_PLATEAU["plateau"])
    run = dict(loss="mse", optimizer=tx, epochs=1000)
    p_full, _, s_full, h_full = fit(net, params, x, y, **{**run, "epochs": 2000})
    p1, _, s1, h1 = fit(net, params, x, y, **run)
    checkpoint.save(tmp_path / "half.npz", p1, opt_state=s1, config={"epochs": 1000})
    resumed = checkpoint.load(tmp_path / "half.npz", like=params, opt_state_like=tx.init(params))
    p2, _, s2, h2 = fit(net, resumed.params, x, y, opt_state=resumed.opt_state, **run)
    assert_bitwise_equal(p2, p_full)
    assert_bitwise_equal(s2, s_full)
    np.testing.assert_array_equal(np.concatenate([h1["loss"], h2["loss"]]), h_full["loss"])
    np.testing.assert_array_equal(np.concatenate([h1["learning_rate"], h2["learning_rate"]]), h_full["learning_rate"])
    decays = [epoch for epoch, _ in optim.decays(h_full)]
    assert any(e < 1000 for e in decays) and any(e > 1000 for e in decays)  # the plateau state matters
    # without the saved state (a fresh plateau counter and Adam moments) the run differs
    p_fresh, _, _, _ = fit(net, resumed.params, x, y, **run)
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
    net = mlp([2, 4, 1])
    _, params = net.init(jax.random.key(0))
    saved = checkpoint.load(tmp_path / "checkpoint.npz", like={"true_gradient": params, "tutorial_scaling": params})
    assert saved.config["epochs"] == 2 * epochs
    x, y = data.xor()
    straight, _, _, _ = fit(net, params, x, y, loss="mse", optimizer=optim.sgd(xor.LEARNING_RATE), epochs=2 * epochs)
    assert_bitwise_equal(saved.params["true_gradient"], straight)
    with pytest.raises(SystemExit, match="seed: checkpoint 0, now 1"):
        xor.main(["--quick", "--out", str(tmp_path), "--resume", "--seed", "1"])


def test_resume_without_a_checkpoint_is_one_line(tmp_path):
    """The installed `python -m jaxnet_experiments xor --resume` without a checkpoint: exit 1, one stderr line."""
    result = subprocess.run([sys.executable, "-m", "jaxnet_experiments", "xor", "--quick", "--resume", "--out",
                             str(tmp_path / "none")], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "--resume" in result.stderr and str(tmp_path / "none" / "checkpoint.npz") in result.stderr

"""Checkpoints: parameters, optimizer state and a JSON config in one `.npz` file, without pickle.

    checkpoint.save("runs/xor/checkpoint.npz", params, opt_state=opt_state, config={"epochs": 5000})
    ckpt = checkpoint.load("runs/xor/checkpoint.npz", like=params, opt_state_like=optimizer.init(params))
    ckpt.params, ckpt.opt_state, ckpt.config

Format (version 1): a numpy `.npz` archive (an uncompressed zip of `.npy` files, with a fixed timestamp
so that equal contents give byte-identical files) holding

- `params/0`, `params/1`, ... and `opt_state/0`, ...: one array per pytree leaf, in `jax.tree.leaves`
  order, with its exact dtype and shape (so float32 and float64 round-trip bitwise);
- `__manifest__`: UTF-8 JSON (stored as a uint8 array) with the format name and version, the jaxnet
  and jax versions, the config, and for each tree a description of its structure: tuples, lists,
  dicts (str keys), NamedTuples (class name and fields), None, and leaves (dtype, shape and the
  SHA-256 of the bytes).

Why npz and not pickle, safetensors or orbax: `numpy.load(..., allow_pickle=False)` reads only raw
arrays, so opening a file never executes code; numpy is already a dependency (safetensors would add
one and stores a flat dict only, so the structure description would be needed anyway; orbax is a
large dependency for a few small arrays). The structure is described in JSON and rebuilt by this
module, never imported by name: optax states are NamedTuples, which come back exactly when a template
is given (`like=`, `opt_state_like=`: any pytree of the same structure, e.g. `optimizer.init(params)`
or `jax.eval_shape(optimizer.init, params)`). Without a template the plain containers are rebuilt
(tuples, lists, dicts) and a NamedTuple comes back as a dict of its fields: enough to inspect a
file, not to resume an optax state.

Writes are atomic: the archive goes to a temporary file in the target's directory, is flushed and
fsynced, then renamed over the target with `os.replace` (and the directory is fsynced), so a crash
leaves either the old file or the new one under the final name, never half a file.

Loading checks everything it can and raises a ValueError that names what differs: not an npz (e.g.
a gzip file or another format), a truncated or corrupted archive (zip CRC and the SHA-256 of every
array), a missing manifest or array, a newer format version, and, against a template, another
structure (e.g. another architecture), shape or dtype, naming the first leaf that differs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

FORMAT = "jaxnet-checkpoint"
VERSION = 1
_MANIFEST = "__manifest__"
_TREES = ("params", "opt_state")
_ZIP_MAGIC = b"PK\x03\x04"


class Checkpoint(NamedTuple):
    """What `load` returns: the params, the optimizer state (None if none was saved), the config dict."""

    params: Any
    opt_state: Any
    config: dict


# ----------------------------------------------------------------------------------------------
# Describing a pytree as JSON (and rebuilding it)
# ----------------------------------------------------------------------------------------------


def _is_namedtuple(node: Any) -> bool:
    return isinstance(node, tuple) and hasattr(type(node), "_fields")


def _describe(name: str, node: Any, leaves: list) -> dict:
    """A JSON description of `node`; its leaves are appended to `leaves` in jax.tree.leaves order."""
    if node is None:
        return {"t": "none"}
    if _is_namedtuple(node):
        cls = type(node)
        return {"t": "namedtuple", "name": f"{cls.__module__}.{cls.__qualname__}", "fields": list(cls._fields),
                "c": [_describe(f"{name}.{f}", v, leaves) for f, v in zip(cls._fields, node)]}
    if isinstance(node, (tuple, list)):
        return {"t": type(node).__name__, "c": [_describe(f"{name}[{i}]", v, leaves) for i, v in enumerate(node)]}
    if isinstance(node, dict):
        if not all(isinstance(k, str) for k in node):
            raise TypeError(f"{name}: dict keys must be str to be saved, got {sorted(map(repr, node))}")
        keys = sorted(node)  # jax flattens dicts in sorted key order
        return {"t": "dict", "keys": keys, "c": [_describe(f"{name}[{k!r}]", node[k], leaves) for k in keys]}
    if isinstance(node, (jax.Array, np.ndarray, np.generic, int, float, bool, complex)):
        if isinstance(node, jax.Array) and jnp.issubdtype(node.dtype, jax.dtypes.prng_key):
            raise TypeError(f"{name}: PRNG key arrays cannot be saved; save jax.random.key_data(key) instead")
        arr = np.asarray(node)
        if arr.dtype.kind not in "biufc" or not arr.dtype.isbuiltin:
            raise TypeError(f"{name}: dtype {arr.dtype} cannot be saved (bool, int, uint, float, complex only)")
        arr = np.asarray(arr, dtype=arr.dtype.newbyteorder("="), order="C")  # native byte order, same values
        leaves.append(arr)
        return {"t": "leaf", "dtype": arr.dtype.name, "shape": list(arr.shape),
                "sha256": hashlib.sha256(arr.tobytes()).hexdigest()}
    raise TypeError(f"{name}: cannot save a {type(node).__name__} (tuples, lists, dicts with str keys, "
                    f"NamedTuples, None and arrays only)")


def _rebuild(desc: dict, leaves: Iterable) -> Any:
    """The plain-container tree of a description (NamedTuples become dicts of their fields)."""
    kind = desc["t"]
    if kind == "none":
        return None
    if kind == "leaf":
        return next(leaves)
    children = [_rebuild(c, leaves) for c in desc["c"]]
    if kind == "tuple":
        return tuple(children)
    if kind == "list":
        return children
    if kind == "dict":
        return dict(zip(desc["keys"], children))
    if kind == "namedtuple":
        return dict(zip(desc["fields"], children))
    raise ValueError(f"unknown node kind {kind!r} in the checkpoint's manifest")


def _template_leaf(name: str, leaf: Any) -> dict:
    if not hasattr(leaf, "dtype") or not hasattr(leaf, "shape"):
        leaf = np.asarray(leaf)
    return {"t": "leaf", "dtype": np.dtype(leaf.dtype).name, "shape": list(leaf.shape)}


def _describe_template(name: str, node: Any) -> dict:
    """Like `_describe`, for a template whose leaves may be ShapeDtypeStructs (no data, no hashes)."""
    if node is None:
        return {"t": "none"}
    if _is_namedtuple(node):
        cls = type(node)
        return {"t": "namedtuple", "name": f"{cls.__module__}.{cls.__qualname__}", "fields": list(cls._fields),
                "c": [_describe_template(f"{name}.{f}", v) for f, v in zip(cls._fields, node)]}
    if isinstance(node, (tuple, list)):
        return {"t": type(node).__name__, "c": [_describe_template(f"{name}[{i}]", v) for i, v in enumerate(node)]}
    if isinstance(node, dict):
        keys = sorted(node)
        return {"t": "dict", "keys": keys, "c": [_describe_template(f"{name}[{k!r}]", node[k]) for k in keys]}
    return _template_leaf(name, node)


def _kind(desc: dict) -> str:
    kind = desc["t"]
    if kind == "leaf":
        return f"an array {np.dtype(desc['dtype']).name} {tuple(desc['shape'])}"
    if kind == "none":
        return "None"
    if kind == "namedtuple":
        return f"a NamedTuple {desc['name'].rsplit('.', 1)[-1]} with fields {desc['fields']}"
    if kind == "dict":
        return f"a dict with keys {desc['keys']}"
    return f"a {kind} of {len(desc['c'])} entries"


def _first_difference(name: str, found: dict, want: dict) -> str | None:
    """A sentence naming the first place where the file's description differs from the template's."""
    same_kind = found["t"] == want["t"] and all(
        found.get(k) == want.get(k) for k in ("keys", "fields", "name", "dtype", "shape"))
    if not same_kind or len(found.get("c", ())) != len(want.get("c", ())):
        return f"{name}: the file has {_kind(found)}, the template has {_kind(want)}"
    labels = (found.get("fields") and [f".{f}" for f in found["fields"]]) or \
        (found.get("keys") and [f"[{k!r}]" for k in found["keys"]]) or [f"[{i}]" for i in range(len(found.get("c", ())))]
    for label, f, w in zip(labels, found.get("c", ()), want.get("c", ())):
        diff = _first_difference(name + label, f, w)
        if diff:
            return diff
    return None


# ----------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------


def _json_config(config: Any) -> Any:
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise TypeError(f"config: expected a dict of JSON values, got {type(config).__name__}")
    try:
        return json.loads(json.dumps(dict(config), allow_nan=False))
    except (TypeError, ValueError) as err:
        raise TypeError(f"config: expected JSON-serialisable values (str, finite numbers, bools, None, lists, "
                        f"dicts with str keys): {err}") from err


def _write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically: temporary file in the same directory, fsync, os.replace."""
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable (POSIX; not possible everywhere)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def save(path: str | os.PathLike, params: Any, *, opt_state: Any = None, config: Mapping | None = None) -> Path:
    """Save params, an optional optimizer state and a JSON config to `path` (an `.npz` file), atomically.

    Args:
        path: the file to write (its directory must exist); an existing file is replaced only once
            the new one is complete.
        params: a pytree of arrays (tuples, lists, dicts with str keys, NamedTuples, None), e.g. from
            `net.init`; any numeric dtype, stored exactly.
        opt_state: optional optimizer state (an optax state pytree, e.g. `fit(...,
            return_opt_state=True)`'s, including the plateau decay's `PlateauDecayState`).
        config: optional dict of JSON values (str, finite numbers, bools, None, lists, dicts), e.g. the
            settings of the run; tuples come back as lists.

    Returns:
        The path written, as a `Path`.

    Raises:
        TypeError: a leaf or container that cannot be stored (PRNG key arrays, objects, bfloat16,
            non-str dict keys), or a config that is not JSON. FileNotFoundError: no such directory.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"path: directory {path.parent} does not exist")
    arrays, trees = {}, {}
    for name, tree in (("params", params), ("opt_state", opt_state)):
        if name == "opt_state" and tree is None:
            trees[name] = None
            continue
        leaves: list = []
        trees[name] = _describe(name, tree, leaves)
        if len(leaves) != len(jax.tree.leaves(tree)):  # a custom pytree node hidden inside a container
            raise TypeError(f"{name}: holds pytree nodes other than tuples, lists, dicts and NamedTuples")
        arrays.update({f"{name}/{i}": leaf for i, leaf in enumerate(leaves)})
    manifest = {"format": FORMAT, "version": VERSION, "jaxnet": _jaxnet_version(), "jax": jax.__version__,
                "config": _json_config(config), "trees": trees}
    arrays[_MANIFEST] = np.frombuffer(json.dumps(manifest, sort_keys=True).encode(), dtype=np.uint8)
    _write_atomic(path, _npz_bytes(arrays))
    return path


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of an uncompressed `.npz` of `arrays` (as `numpy.savez` writes it, pickling off), with
    a fixed timestamp so that equal contents give byte-identical files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, arr, allow_pickle=False)
    return buffer.getvalue()


def _jaxnet_version() -> str:
    from jaxnet import __version__

    return __version__


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


class _Corrupted(Exception):
    """A structural problem found while reading the archive (reported as a ValueError by `_open`)."""


def _read_npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One `.npy` member, read without pickle and without trusting its header.

    The header is parsed by numpy's `read_array_header_*` (a literal, never evaluated); object and
    other non-numeric dtypes are refused before any data is read; the data must be exactly as long as
    the header says (so a forged shape cannot make us allocate more than the file holds); reading the
    member to its end makes zipfile check its CRC-32.
    """
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise _Corrupted(f"{info.filename}: unsupported .npy version {version}")
        if dtype.hasobject or dtype.kind not in "biufc":
            raise _Corrupted(f"{info.filename}: dtype {dtype} is not allowed (only numeric arrays, never pickle)")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes > info.file_size:
            raise _Corrupted(f"{info.filename}: the header claims {shape} {dtype} ({nbytes} bytes), more than "
                             f"the entry holds")
        payload = f.read()
    if len(payload) != nbytes:
        raise _Corrupted(f"{info.filename}: {len(payload)} bytes of data for shape {shape} {dtype} ({nbytes} bytes)")
    arr = np.frombuffer(payload, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")
    return np.array(arr, dtype=dtype.newbyteorder("="), order="C")  # a writable native-order copy


def _open(path: Path) -> tuple[dict, dict]:
    """Read the manifest and every array of the archive at `path`, checking the zip's CRC-32s."""
    if not path.is_file():
        raise FileNotFoundError(f"path: no checkpoint file at {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != _ZIP_MAGIC:
        what = ("a gzip file (decompress it first)" if head[:2] == b"\x1f\x8b" else
                "an empty file" if not head else f"bytes {head.hex(' ')}")
        raise ValueError(f"{path}: not a jaxnet checkpoint: expected an .npz (zip) file starting with "
                         f"50 4b 03 04, found {what}")
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            names = [info.filename for info in infos]
            if f"{_MANIFEST}.npy" not in names:
                raise ValueError(f"{path}: not a jaxnet checkpoint: no {_MANIFEST} entry (found {names[:8]})")
            if len(set(names)) != len(names) or not all(n.endswith(".npy") for n in names):
                raise _Corrupted(f"duplicate or non-.npy entries {names[:8]}")
            arrays = {info.filename[:-4]: _read_npy(archive, info) for info in infos}
    except _Corrupted as err:
        raise ValueError(f"{path}: corrupted checkpoint: {err}") from err
    except ValueError as err:
        if str(err).startswith(f"{path}: "):
            raise
        raise ValueError(f"{path}: corrupted or truncated checkpoint ({type(err).__name__}: {err})") from err
    except Exception as err:  # noqa: BLE001 - zipfile and numpy raise many types for damaged bytes
        raise ValueError(f"{path}: corrupted or truncated checkpoint ({type(err).__name__}: {err})") from err
    try:
        manifest = json.loads(arrays.pop(_MANIFEST).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: corrupted checkpoint: unreadable manifest ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not a jaxnet checkpoint (manifest format "
                         f"{manifest.get('format') if isinstance(manifest, dict) else None!r})")
    if manifest.get("version") != VERSION:
        raise ValueError(f"{path}: checkpoint format version {manifest.get('version')!r}; this jaxnet reads "
                         f"version {VERSION}")
    return manifest, arrays


def _leaf_descs(desc: dict | None, name: str, out: list) -> list:
    """(path, leaf description) pairs in jax.tree.leaves order."""
    if desc is None or desc["t"] == "none":
        return out
    if desc["t"] == "leaf":
        out.append((name, desc))
        return out
    labels = ([f".{f}" for f in desc["fields"]] if desc["t"] == "namedtuple" else
              [f"[{k!r}]" for k in desc["keys"]] if desc["t"] == "dict" else
              [f"[{i}]" for i in range(len(desc["c"]))])
    for label, child in zip(labels, desc["c"]):
        _leaf_descs(child, name + label, out)
    return out


def _read_leaves(path: Path, name: str, desc: dict, arrays: dict) -> list[np.ndarray]:
    leaves = []
    for i, (leaf_name, leaf) in enumerate(_leaf_descs(desc, name, [])):
        key = f"{name}/{i}"
        if key not in arrays:
            raise ValueError(f"{path}: corrupted checkpoint: the array of {leaf_name} ({key}) is missing")
        arr = arrays.pop(key)
        if arr.dtype.name != leaf["dtype"] or list(arr.shape) != leaf["shape"]:
            raise ValueError(f"{path}: corrupted checkpoint: {leaf_name} is {arr.dtype} {arr.shape}, the manifest "
                             f"says {np.dtype(leaf['dtype'])} {tuple(leaf['shape'])}")
        if hashlib.sha256(arr.tobytes()).hexdigest() != leaf["sha256"]:
            raise ValueError(f"{path}: corrupted checkpoint: the SHA-256 of {leaf_name} does not match the manifest")
        if arr.dtype.itemsize == 8 and arr.dtype.kind in "fiuc" and not jax.config.jax_enable_x64:
            raise ValueError(f"{path}: {leaf_name} is {arr.dtype}, which jax would silently narrow to 32 bits; "
                             f"load it inside `with jax.enable_x64(True):`")
        leaves.append(arr)
    return leaves


def load(path: str | os.PathLike, *, like: Any = None, opt_state_like: Any = None) -> Checkpoint:
    """Load a checkpoint written by `save`, checking it completely; no code is executed.

    Args:
        path: the `.npz` file.
        like: optional template for the params (e.g. `net.init(key)[1]`, or its `jax.eval_shape`):
            the file must have exactly its structure, shapes and dtypes, and the params come back in
            its containers.
        opt_state_like: the same for the optimizer state (e.g. `optimizer.init(params)`); needed to
            get optax's NamedTuple states back (see the module docstring).

    Returns:
        `Checkpoint(params, opt_state, config)`: arrays as jax arrays with the saved dtypes (bitwise
        the saved values); opt_state None when none was saved; config the saved dict ({} if none).

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: not a checkpoint, truncated or corrupted (naming the entry), a format version
            this jaxnet cannot read, 64-bit arrays while `jax_enable_x64` is off, or a file that
            differs from a template (naming the first leaf or container that differs, and both sides).
    """
    path = Path(path)
    manifest, arrays = _open(path)
    trees = manifest.get("trees", {})
    if not isinstance(trees, dict) or "params" not in trees:
        raise ValueError(f"{path}: corrupted checkpoint: the manifest describes no params")
    out = {}
    for name, template in (("params", like), ("opt_state", opt_state_like)):
        desc = trees.get(name)
        if desc is None:
            if template is not None:
                raise ValueError(f"{path}: the file holds no {name}, but a template for it was given")
            out[name] = None
            continue
        leaves = _read_leaves(path, name, desc, arrays)
        if template is None:
            out[name] = _rebuild(desc, iter(jnp.asarray(a) for a in leaves))
            continue
        diff = _first_difference(name, desc, _describe_template(name, template))
        if diff:
            raise ValueError(f"{path}: does not match the template: {diff}")
        treedef = jax.tree.structure(template)
        if treedef.num_leaves != len(leaves):
            raise ValueError(f"{path}: {name}: the template has {treedef.num_leaves} leaves, the file {len(leaves)}")
        out[name] = jax.tree.unflatten(treedef, [jnp.asarray(a) for a in leaves])
    if arrays:
        raise ValueError(f"{path}: corrupted checkpoint: unexpected entries {sorted(arrays)[:8]}")
    config = manifest.get("config", {})
    return Checkpoint(out["params"], out["opt_state"], config if isinstance(config, dict) else {})


def check_config(saved: Mapping, expected: Mapping, *, ignore: Iterable[str] = ()) -> None:
    """Raise ValueError when a checkpoint's config differs from the settings of the run resuming it.

    Every key of `expected` except those in `ignore` must be in `saved` with an equal value, compared
    as JSON (so a tuple equals the list it was saved as). Keys only in `saved` are not compared.

    Raises:
        ValueError: naming each key that differs, with the saved and the current value.
    """
    ignored = set(ignore)
    now = _json_config({k: v for k, v in expected.items() if k not in ignored})
    diffs = [f"{k}: absent from the checkpoint, now {v!r}" if k not in saved else f"{k}: checkpoint {saved[k]!r}, now {v!r}"
             for k, v in now.items() if k not in saved or saved[k] != v]
    if diffs:
        raise ValueError("config: the checkpoint was written with other settings: " + "; ".join(diffs))

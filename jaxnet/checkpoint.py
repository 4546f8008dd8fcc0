"""Checkpoints: params, layer state, optimizer state and a JSON config in one file, without pickle.

    checkpoint.save("runs/xor/checkpoint.npz", params, state=state, opt_state=opt_state, config={"epochs": 5000})
    ckpt = checkpoint.load("runs/xor/checkpoint.npz", like=params, state_like=state,
                           opt_state_like=optimizer.init(params))
    ckpt.params, ckpt.state, ckpt.opt_state, ckpt.config

Format (version 2): an uncompressed zip of `.npy` files (a numpy `.npz`, with fixed timestamps so that
equal contents give byte-identical files): one per pytree leaf, named by its tree and its path
(`jax.tree_util.keystr`), e.g. `params[0]['W'].npy` or `opt_state[0].mu[0]['W'].npy`, plus
`manifest.json`: the format and its version, the jaxnet and jax versions, the config, and for each saved
tree the dtype of every leaf by path. Leaves keep their exact dtype and bits; dtypes that `.npy` cannot
name (bfloat16, float8, int4) are stored as unsigned integers of the same width and viewed back.

Loading follows Equinox's `tree_deserialise_leaves` (equinox/_serialisation.py): a template (`like=`,
`state_like=`, `opt_state_like=`: any pytree of the same structure, e.g. `net.init(key)[1]`,
`optimizer.init(params)` or their `jax.eval_shape`) supplies the structure, NamedTuples included; each
of its leaves is read from the file by path and must have the template's shape and dtype. Without a
template a tree comes back as a flat dict {path: array}, enough to inspect a file. Nothing in the file
is executed or imported: the manifest is JSON, the `.npy` headers are parsed as literals, and only
numeric and bool dtypes are read. Damaged bytes are caught by the zip's CRC-32 of every entry.

Writes are atomic: a temporary file in the target's directory, flushed and fsynced, then renamed over
the target (`os.replace`), so the final name holds the old file or the new one, never half a file.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

FORMAT, VERSION = "jaxnet-checkpoint", 2
_MANIFEST = "manifest.json"
_STAMP = (1980, 1, 1, 0, 0, 0)  # fixed zip timestamps: equal contents give equal bytes


class Checkpoint(NamedTuple):
    """What `load` returns: params, layer state and optimizer state (None when not saved), config dict."""

    params: Any
    state: Any
    opt_state: Any
    config: dict


def _numeric(dtype) -> bool:
    return dtype == np.bool_ or jnp.issubdtype(dtype, jnp.number)


def _encode(arr: np.ndarray) -> np.ndarray:
    """The little-endian array written as a leaf's `.npy`: the leaf itself, or for the dtypes `.npy`
    has no name for (bfloat16, float8, int4) its bits as unsigned integers of the same width."""
    if arr.dtype.kind in "biufc":
        return arr.astype(arr.dtype.newbyteorder("<"))
    return np.ascontiguousarray(arr).view(f"<u{arr.dtype.itemsize}")


def _leaves(name: str, tree: Any) -> dict[str, np.ndarray]:
    """{path: array} for every leaf of `tree`, in `jax.tree.leaves` order; TypeError naming a bad leaf."""
    out = {}
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        path = jax.tree_util.keystr(key_path)
        if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            raise TypeError(f"{name}{path}: PRNG key arrays cannot be saved; save jax.random.key_data(key)")
        arr = np.asarray(leaf)
        if not _numeric(arr.dtype):
            raise TypeError(f"{name}{path}: expected a numeric or bool array, got a {type(leaf).__name__} "
                            f"of dtype {arr.dtype}")
        out[path] = arr
    return out


def _json_config(config: Mapping | None) -> dict:
    """`config` as plain JSON values; numpy and jax scalars and 0-d arrays become Python numbers."""
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise TypeError(f"config: expected a dict of JSON values, got {type(config).__name__}")

    def scalar(value):
        if np.ndim(value) == 0 and hasattr(value, "item"):
            return value.item()
        raise TypeError(f"a {type(value).__name__} is not a JSON value")

    try:
        return json.loads(json.dumps(dict(config), allow_nan=False, default=scalar))
    except (TypeError, ValueError) as err:
        raise TypeError(f"config: expected JSON values (str, finite numbers, bools, None, lists, dicts with "
                        f"str keys; numpy scalars and 0-d arrays are converted): {err}") from err


def save(path: str | os.PathLike, params: Any, *, state: Any = None, opt_state: Any = None,
         config: Mapping | None = None) -> Path:
    """Save params, optional layer state and optimizer state, and a JSON config to `path`, atomically.

    Args:
        path: the file to write (conventionally `.npz`); missing parent directories are created, and an
            existing file is replaced only once the new one is complete.
        params: a pytree of arrays (any pytree: tuples, lists, dicts, NamedTuples, None, registered
            nodes), e.g. from `net.init`; bool and numeric dtypes (bfloat16 and int included), stored
            bit for bit.
        state: optional layer state pytree beside the params (e.g. BatchNorm running statistics; an
            empty tuple of dicts is fine).
        opt_state: optional optimizer state (an optax state, the plateau decay's included).
        config: optional dict of JSON values (str, finite numbers, bools, None, lists, dicts), e.g. the
            run's settings; numpy and jax scalars and 0-d arrays are stored as numbers, tuples as lists.

    Returns:
        The path written, as a `Path`.

    Raises:
        TypeError: a leaf that cannot be stored (PRNG keys, strings, objects; naming its path) or a
            config that is not JSON. OSError: the file cannot be written (the old file is kept).
    """
    path = Path(path)
    trees = {"params": _leaves("params", params)}
    trees.update({name: _leaves(name, tree) for name, tree in (("state", state), ("opt_state", opt_state))
                  if tree is not None})
    from jaxnet import __version__

    manifest = {"format": FORMAT, "version": VERSION, "jaxnet": __version__, "jax": jax.__version__,
                "config": _json_config(config),
                "trees": {name: {p: a.dtype.name for p, a in leaves.items()} for name, leaves in trees.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as archive:
                archive.writestr(zipfile.ZipInfo(_MANIFEST, _STAMP), json.dumps(manifest, sort_keys=True, indent=1))
                for name, leaves in trees.items():
                    for p, arr in leaves.items():
                        with archive.open(zipfile.ZipInfo(f"{name}{p}.npy", _STAMP), "w", force_zip64=True) as npy:
                            np.lib.format.write_array(npy, _encode(arr), version=(1, 0), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable (POSIX; not possible everywhere)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def _read_leaf(archive: zipfile.ZipFile, member: str, dtype_name: str) -> np.ndarray:
    """One leaf: its `.npy` entry (CRC-checked by zipfile), header parsed as a literal, checked against
    the manifest's dtype, never more data than the entry holds."""
    dtype = jnp.dtype(dtype_name)
    if not _numeric(dtype):
        raise ValueError(f"{member}: dtype {dtype_name} is not allowed (numeric and bool only)")
    f = io.BytesIO(archive.read(member))
    if np.lib.format.read_magic(f) != (1, 0):
        raise ValueError(f"{member}: not a version 1.0 .npy entry")
    shape, fortran_order, stored = np.lib.format.read_array_header_1_0(f)
    payload = f.read()
    wrong_size = len(payload) != math.prod(shape) * dtype.itemsize
    if stored != _encode(np.zeros(0, dtype)).dtype or fortran_order or wrong_size:
        raise ValueError(f"{member}: {len(payload)} bytes of {stored} {shape}, the manifest says {dtype_name}")
    arr = np.frombuffer(payload, stored).reshape(shape)
    return arr.astype(dtype) if dtype.kind in "biufc" else arr.view(dtype)


def _read(path: Path) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """The manifest and, per saved tree, {path: array}; ValueError naming the file and what is wrong."""
    if not path.is_file():
        raise FileNotFoundError(f"path: no checkpoint file at {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":
        found = ("a gzip file (decompress it first)" if head[:2] == b"\x1f\x8b" else
                 f"bytes {head.hex(' ')}" if head else "an empty file")
        raise ValueError(f"{path}: not a jaxnet checkpoint: expected a zip file (bytes 50 4b 03 04), found {found}")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if _MANIFEST not in names:
                older = " (written by an older jaxnet, format 1)" if "__manifest__.npy" in names else ""
                raise ValueError(f"{path}: not a jaxnet checkpoint: no {_MANIFEST}{older} among {names[:5]}")
            manifest = json.loads(archive.read(_MANIFEST))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise ValueError(f"{path}: not a jaxnet checkpoint (its manifest names no format {FORMAT!r})")
            if manifest.get("version") != VERSION:
                raise ValueError(f"{path}: checkpoint format version {manifest.get('version')!r}; this jaxnet reads "
                                 f"version {VERSION}")
            trees = {name: {p: _read_leaf(archive, f"{name}{p}.npy", d) for p, d in leaves.items()}
                     for name, leaves in manifest["trees"].items()}
    except Exception as err:  # noqa: BLE001 - zipfile, json and numpy raise many types for damaged bytes
        if isinstance(err, ValueError) and str(err).startswith(f"{path}: "):
            raise
        raise ValueError(f"{path}: corrupted or truncated checkpoint ({type(err).__name__}: {err})") from err
    return manifest, trees


def _as_jax(path: Path, name: str, leaves: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    out = {}
    for p, arr in leaves.items():
        out[p] = jnp.asarray(arr)
        if out[p].dtype != arr.dtype:
            raise ValueError(f"{path}: {name}{p} is {arr.dtype}, which jax would narrow to {out[p].dtype}; load "
                             f"it inside `with jax.enable_x64(True):`")
    return out


def _like(path: Path, name: str, leaves: dict[str, jax.Array], template: Any) -> Any:
    """The template's tree with each leaf replaced by the file's leaf of the same path, whose type
    (array), shape and dtype must be the template's."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    paths = [jax.tree_util.keystr(key_path) for key_path, _ in flat]
    missing, extra = [p for p in paths if p not in leaves], [p for p in leaves if p not in set(paths)]
    if missing or extra:
        first = (f"{name}{missing[0]} is in the template but not in the file" if missing else
                 f"{name}{extra[0]} is in the file but not in the template")
        raise ValueError(f"{path}: does not match the template: {first} ({len(missing)} leaves of the template "
                         f"missing from the file, {len(extra)} leaves of the file not in the template)")
    for p, (_, want) in zip(paths, flat):
        dtype = (np.dtype(want.dtype) if hasattr(want, "dtype") else np.result_type(want)).name  # any byte order
        if leaves[p].shape != np.shape(want) or leaves[p].dtype.name != dtype:
            raise ValueError(f"{path}: does not match the template: {name}{p}: the file has {leaves[p].dtype} "
                             f"{leaves[p].shape}, the template {dtype} {tuple(np.shape(want))}")
    return treedef.unflatten([leaves[p] for p in paths])


def load(path: str | os.PathLike, *, like: Any = None, state_like: Any = None,
         opt_state_like: Any = None) -> Checkpoint:
    """Load a checkpoint written by `save`, checking it; no code in the file is executed.

    Args:
        path: the file written by `save`.
        like: optional template for the params (e.g. `net.init(key)[1]` or its `jax.eval_shape`): the
            params come back in its structure, every leaf of the same path with its shape and dtype.
        state_like: the same for the layer state.
        opt_state_like: the same for the optimizer state (e.g. `optimizer.init(params)`), needed to get
            optax's NamedTuple states back for resuming.

    Returns:
        `Checkpoint(params, state, opt_state, config)`: jax arrays with the saved dtypes and bits, in
        the template's structure, or a flat dict {path: array} for a tree loaded without a template;
        state and opt_state None when not saved; config the saved dict ({} if none).

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError (the message starts with the path): not a checkpoint, truncated or corrupted (naming
            the entry), another format version, 64-bit leaves while `jax_enable_x64` is off, a template
            for a tree that was not saved, or a file that differs from a template (naming the first
            leaf's path and both shapes and dtypes, or a path only one side has).
    """
    path = Path(path)
    manifest, trees = _read(path)
    out = {}
    for name, template in (("params", like), ("state", state_like), ("opt_state", opt_state_like)):
        if name not in trees:
            if template is not None:
                raise ValueError(f"{path}: the file holds no {name}, but a template for it was given")
            out[name] = None
            continue
        leaves = _as_jax(path, name, trees[name])
        out[name] = leaves if template is None else _like(path, name, leaves, template)
    return Checkpoint(out["params"], out["state"], out["opt_state"], manifest.get("config", {}))


def check_config(saved: Mapping, expected: Mapping, *, ignore: Iterable[str] = ()) -> None:
    """Raise ValueError when a checkpoint's config differs from the settings of the run resuming it.

    Every key of `expected` except those in `ignore` must be in `saved` with an equal value, compared
    as JSON (so a tuple equals the list it was saved as). Keys only in `saved` are not compared.

    Raises:
        ValueError: naming each key that differs, with the saved and the current value.
    """
    ignored = set(ignore)
    now = _json_config({k: v for k, v in expected.items() if k not in ignored})
    diffs = [f"{k}: absent from the checkpoint, now {v!r}" if k not in saved
             else f"{k}: checkpoint {saved[k]!r}, now {v!r}"
             for k, v in now.items() if k not in saved or saved[k] != v]
    if diffs:
        raise ValueError("config: the checkpoint was written with other settings: " + "; ".join(diffs))

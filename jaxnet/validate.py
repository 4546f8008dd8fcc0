"""Eager argument checks shared by the public API.

Every check runs in Python before any tracing. Values that are jax tracers (inside `jit`, `vmap`,
`grad`...) are not concrete, so only their shapes and dtypes are checked; value checks (ranges,
finiteness) are skipped for them. Checks therefore cost nothing inside compiled code and never break
a transformation.

Messages start with the argument's name, then give the expected and the received value or shape
(`x: expected shape (n, 2) for mlp[2, 3, 1], ..., got (4, 3)`). Params are checked against a network
by running each layer's `init` under `jax.eval_shape` (shapes only, cached per layer and input shape).
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x: Any) -> bool:
    """True when `x` holds concrete values (not a jax tracer), so its values may be inspected."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


def choose(kind: str, name: str, value: Any, table: dict) -> Any:
    """Look `value` up in `table` when it is a string; raise ValueError listing the valid names."""
    if isinstance(value, str):
        if value not in table:
            valid = ", ".join(sorted(table))
            raise ValueError(f"{name}: unknown {kind} {value!r}; expected one of: {valid}")
        return table[value]
    return value


def as_array(name: str, x: Any, what: str = "an array") -> jax.Array:
    """`jnp.asarray(x)`, with a TypeError naming the argument when x is not array-like (None, str, ...)."""
    if x is None or isinstance(x, (str, bytes)):
        raise TypeError(f"{name}: expected {what}, got {type(x).__name__}")
    try:
        return jnp.asarray(x)
    except (TypeError, ValueError) as err:
        dtype = f" with dtype {x.dtype}" if hasattr(x, "dtype") else ""
        raise TypeError(f"{name}: expected {what}, got {type(x).__name__}{dtype}") from err


def as_float_array(name: str, x: Any, *, ndim: int | Iterable[int] | None = None) -> jax.Array:
    """Return `x` as a jax array, requiring a floating dtype (and optionally a rank).

    Raises:
        TypeError: `x` is not array-like, or its dtype is not floating point.
        ValueError: its rank is not `ndim` (or one of `ndim`).
    """
    arr = as_array(name, x, "an array of floats")
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise TypeError(f"{name}: expected a real floating-point array (float32 or float64), got dtype {arr.dtype}; "
                        f"jaxnet's networks are real-valued: pass {name}.real or jnp.abs({name}) explicitly")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise TypeError(
            f"{name}: expected a floating-point array (float32 or float64), got dtype {arr.dtype}; "
            f"convert it with {name}.astype(jnp.float32)"
        )
    check_ndim(name, arr, ndim)
    return arr


def check_ndim(name: str, arr: Any, ndim: int | Iterable[int] | None) -> None:
    """Raise ValueError when `arr.ndim` is not `ndim` (an int or a collection of ints)."""
    if ndim is None:
        return
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if arr.ndim not in allowed:
        want = " or ".join(str(a) for a in allowed)
        raise ValueError(f"{name}: expected a {want}-D array, got shape {tuple(arr.shape)} ({arr.ndim}-D)")


# Arrays up to this many entries are checked with numpy on the host: a compiled check costs a
# compilation (~20 ms) per new shape, numpy ~1 ns per entry, and a small array's copy is negligible.
_HOST_CHECK_SIZE = 1 << 16


def check_finite(name: str, arr: Any) -> None:
    """Raise ValueError when a concrete floating array holds NaN or infinity, naming the first bad index.

    Tracers, integer arrays and arrays spread over several processes (not fully addressable) are skipped.
    """
    if not _inspectable(arr) or not jnp.issubdtype(jnp.result_type(arr), jnp.inexact):
        return
    if np.size(arr) <= _HOST_CHECK_SIZE:  # small: read on the host, nothing to compile
        finite = np.isfinite(np.asarray(arr))
        if finite.all():
            return
    else:
        with jax.ensure_compile_time_eval():  # concrete values stay concrete inside a user's jit trace
            if bool(_all_finite(arr)):
                return
            finite = jnp.isfinite(arr)
    if not bool(jnp.all(finite)):
        bad = np.argwhere(~np.asarray(finite))
        where = f", the first at index {tuple(int(i) for i in bad[0])}" if np.ndim(arr) else ""
        raise ValueError(f"{name}: expected finite values, found {len(bad)} NaN or infinite "
                         f"entr{'y' if len(bad) == 1 else 'ies'}{where}")


def all_finite(tree: Any) -> jax.Array:
    """True (a bool scalar) when every entry of every floating leaf of `tree` is finite; traceable.

    `sum(leaves * 0)` is NaN exactly when a leaf holds a NaN or an infinity, and 0 otherwise (it
    cannot overflow). The leaves of each dtype are concatenated into one reduction, which XLA can fuse
    with the concatenation (one kernel per dtype rather than one per leaf: `fit`'s divergence guard
    runs it every epoch, and a tiny network's epoch is a few dozen sub-microsecond kernels). Integer
    and bool leaves are always finite.
    """
    groups: dict[Any, list] = {}
    for leaf in jax.tree.leaves(tree):
        leaf = jnp.asarray(leaf)
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            groups.setdefault(leaf.dtype, []).append(leaf.reshape(-1))
    finite = jnp.ones((), bool)
    for leaves in groups.values():
        flat = leaves[0] if len(leaves) == 1 else jnp.concatenate(leaves)
        finite = finite & jnp.isfinite(jnp.sum(flat * 0))
    return finite


_all_finite = jax.jit(all_finite)


def check_positive(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False) -> None:
    """Raise ValueError unless `value` is > 0 (>= 0 with `allow_zero`) and finite (and an int when
    `integer`); TypeError when it is not a real number (a str, None, a bool). Value checks skip tracers."""
    if integer:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name}: expected a positive int, got {value!r}")
        if value <= 0:
            raise ValueError(f"{name}: expected a positive int, got {value}")
        return
    if isinstance(value, (bool, np.bool_, str, bytes)) or value is None or not (
            isinstance(value, numbers.Real) or hasattr(value, "dtype")):
        raise TypeError(f"{name}: expected a positive number, got {type(value).__name__} {value!r}")
    if not (jnp.issubdtype(jnp.result_type(value), jnp.integer)
            or jnp.issubdtype(jnp.result_type(value), jnp.floating)):
        raise TypeError(f"{name}: expected a positive real number, got dtype {jnp.result_type(value)}")
    if not is_concrete(value):
        return
    if np.size(value) == 0:
        raise ValueError(f"{name}: expected a positive finite number, got an empty array")
    v = float(np.asarray(value).max()) if np.ndim(value) else float(value)
    vmin = float(np.asarray(value).min()) if np.ndim(value) else v
    if not math.isfinite(v) or vmin < 0 or (vmin == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name}: expected a {kind} finite number, got {value!r}")


def check_key(name: str, key: Any, *, single: bool = False) -> None:
    """Raise TypeError unless `key` looks like a jax PRNG key (typed key or uint32 array of 2).

    With `single`, exactly one key is required (shape () typed, or (2,) raw); a batch of keys then
    raises ValueError (vmap over keys instead of passing them all to one call). Works on tracers.
    """
    if isinstance(key, (jax.Array, np.ndarray)):
        typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        if typed or (key.dtype == jnp.uint32 and key.shape[-1:] == (2,)):
            batch = key.shape if typed else key.shape[:-1]
            if single and batch:
                raise ValueError(
                    f"{name}: expected one PRNG key, got a batch of keys of shape {tuple(key.shape)}; "
                    f"use jax.vmap over the keys (one key per lane) instead"
                )
            return
    raise TypeError(
        f"{name}: expected a PRNG key from jax.random.key(seed) or jax.random.PRNGKey(seed), "
        f"got {type(key).__name__}"
        + (f" with dtype {key.dtype} and shape {tuple(key.shape)}" if hasattr(key, "dtype") else "")
    )


def _inspectable(x: Any) -> bool:
    """True when the values of `x` can be read on this host: concrete and fully addressable."""
    return is_concrete(x) and all(getattr(leaf, "is_fully_addressable", True) for leaf in jax.tree.leaves(x))


def _path(name: str, path) -> str:
    return name + jax.tree_util.keystr(tuple(path))


# ----------------------------------------------------------------------------------------------
# Parameter pytrees against their network
# ----------------------------------------------------------------------------------------------


def _layer_shapes_uncached(layer: Any, input_shape: tuple[int, ...]) -> tuple[tuple[int, ...], Any]:
    box = {}

    def init(key):
        out_shape, params = layer.init(key, input_shape)
        box["out"] = tuple(int(d) for d in out_shape)
        return params

    params = jax.eval_shape(init, jax.random.key(0))  # shapes only: nothing is computed
    return box["out"], params


_layer_shapes_cached = functools.lru_cache(maxsize=4096)(_layer_shapes_uncached)


def layer_shapes(layer: Any, input_shape: tuple[int, ...]) -> tuple[tuple[int, ...], Any]:
    """`layer.init`'s output shape and params as `jax.ShapeDtypeStruct`s, for this input shape.

    Found with `jax.eval_shape` (no arrays are created) and cached per (layer, input shape).
    """
    try:
        return _layer_shapes_cached(layer, tuple(input_shape))
    except TypeError as err:  # an unhashable layer: compute without the cache
        if "unhashable" not in str(err):
            raise
        return _layer_shapes_uncached(layer, tuple(input_shape))


def _compare_tree(name: str, what: str, expected: Any, found: Any) -> None:
    """Raise when `found` does not have `expected`'s structure, leaf shapes and floating dtypes."""
    exp_leaves, exp_def = jax.tree_util.tree_flatten_with_path(expected)
    try:
        got_leaves, got_def = jax.tree_util.tree_flatten_with_path(found)
    except Exception as err:  # noqa: BLE001 - an exotic object that is not a pytree
        raise TypeError(f"{name}: expected {what}, got {type(found).__name__}") from err
    if exp_def != got_def:
        want = [jax.tree_util.keystr(p) for p, _ in exp_leaves]
        got = [jax.tree_util.keystr(p) for p, _ in got_leaves]
        detail = (f"entries {', '.join(want) or 'none'}, got {', '.join(got) or 'none'}" if want != got
                  else f"structure {exp_def}, got {got_def}")
        raise ValueError(f"{name}: expected {what} with {detail}")
    for (path, e), (_, g) in zip(exp_leaves, got_leaves):
        leaf = _path(name, path)
        if not hasattr(g, "shape") or not hasattr(g, "dtype"):
            try:
                g = np.asarray(g)
            except Exception as err:  # noqa: BLE001
                raise TypeError(f"{leaf}: expected an array, got {type(g).__name__}") from err
        if jnp.issubdtype(e.dtype, jnp.floating) and not jnp.issubdtype(g.dtype, jnp.floating):
            raise TypeError(f"{leaf}: expected a floating-point array for {what}, got dtype {g.dtype}")
        if not jnp.issubdtype(e.dtype, jnp.floating) and g.dtype != e.dtype:  # e.g. an integer counter
            raise TypeError(f"{leaf}: expected dtype {e.dtype} for {what}, got {g.dtype}")
        if tuple(g.shape) != tuple(e.shape):
            raise ValueError(f"{leaf}: expected shape {tuple(e.shape)} for {what}, got {tuple(g.shape)}")


def check_params(net: Any, params: Any, input_shape: tuple[int, ...], *, name: str = "params",
                 input_name: str = "x") -> tuple[int, ...]:
    """Check `params` against `net` (a `jaxnet.Network`) for inputs of `input_shape` (no batch axis).

    The expected params come from `net`'s layers' `init` through `jax.eval_shape` (nothing is
    computed). Shapes and structure only; works on tracers. Returns the network's output shape.

    Raises:
        TypeError: params is not a tuple/list, or a leaf is not a floating array.
        ValueError: the wrong number of per-layer entries, other keys, or a leaf of another shape,
            naming the layer index and the expected and found shapes; or a layer cannot take the
            input shape.
    """
    layers = net.layers
    if not isinstance(params, (tuple, list)):
        raise TypeError(f"{name}: expected a tuple with one entry per layer of {net.name} "
                        f"({len(layers)} entries, as from net.init), got {type(params).__name__}")
    if len(params) != len(layers):
        names = ", ".join(layer.name for layer in layers)
        raise ValueError(f"{name}: expected {len(layers)} entries, one per layer of {net.name} ({names}), "
                         f"got {len(params)}")
    shape = tuple(input_shape)
    for i, (layer, p) in enumerate(zip(layers, params)):
        try:
            out_shape, expected = layer_shapes(layer, shape)
        except Exception as err:  # noqa: BLE001 - whatever the layer's init raises for this shape
            raise ValueError(f"{input_name}: layer {i} ({layer.name}) of {net.name} cannot take input shape "
                             f"{shape}: {err}") from err
        _compare_tree(f"{name}[{i}]", f"layer {i} ({layer.name}) given input shape {shape}", expected, p)
        shape = out_shape
    return shape


def _batch_statistics_layers(net: Any, input_shape: tuple[int, ...], path: str = "") -> list:
    """[(where, layer, values per channel per example)] for each layer that takes batch statistics in
    training (BatchNorm: one channel is input_shape[0], and each example holds prod(input_shape[1:])
    values of it), found by walking `net`'s layers (nested networks too) with their shapes."""
    from jaxnet.nn.normalization import BatchNorm  # validate is imported by the layers: import late

    found, shape = [], tuple(input_shape)
    for i, layer in enumerate(net.layers):
        where = f"{path}layer {i} ({layer.name})"
        if isinstance(layer, BatchNorm):
            found.append((where, layer, math.prod(shape[1:])))
        elif hasattr(layer, "layers"):  # a nested Network
            found += _batch_statistics_layers(layer, shape, f"{where}: ")
        shape = layer_shapes(layer, shape)[0]
    return found


def check_batch_statistics(net: Any, input_shape: tuple[int, ...], batch_size: int | None, n: int) -> None:
    """Raise when a training step would give a BatchNorm layer a single value per channel.

    In training, BatchNorm estimates each channel's mean and variance from the values the channel
    takes in the step's batch: `examples * prod(spatial dims)` of them (features: one per example;
    (C, H, W) maps after a convolution: H W per example). With one value the variance is 0 and the
    step is undefined; with two or more it is not. `fit`'s steps hold `batch_size` examples, then
    a last step of `n % batch_size` when that is not 0 (all n at once when `batch_size` is None).
    So Conv -> BatchNorm trains with a last step of one image, Dense -> BatchNorm does not.

    Args:
        net: a `jaxnet.Network`. input_shape: one example's shape (no batch axis).
        batch_size: examples per step, or None (full batch). n: the number of examples.

    Raises:
        ValueError: naming `batch_size` (or `x` for a full batch of one example), the step size, the
            BatchNorm layer and its values per channel.
    """
    steps = [n] if batch_size is None else sorted({batch_size, n % batch_size} - {0})
    for where, _, per_example in _batch_statistics_layers(net, tuple(input_shape)):
        for examples in steps:
            if examples * per_example < 2:
                if batch_size is None:
                    raise ValueError(f"x: a single example (n = {n}) gives {where} of {net.name} 1 value per "
                                     f"channel in training mode, whose batch variance is undefined; use more "
                                     f"examples")
                raise ValueError(f"batch_size: {batch_size} leaves a step with {examples} example (n = {n}), which "
                                 f"gives {where} of {net.name} {examples * per_example} value per channel in "
                                 f"training mode: its batch variance is undefined; choose a batch size with "
                                 f"batch_size > 1 and n % batch_size != 1")


def check_input_dtype(name: str, x: Any, params: Any, params_name: str = "params") -> None:
    """jaxnet's one dtype rule for data: a floating `x` has the params' floating dtype, as JAX sees both
    (a numpy float64 array is float32 unless x64 is on). Every door follows it: `net.apply`, `forward`
    and `backward`, `backprop`, `autodiff`, `gradcheck`, `fit`, `predict`, `evaluate`. Nothing is
    silently promoted (float32 params with float64 data would compute in float64, unlike the params).
    Works on tracers (dtypes are static).

    Raises:
        TypeError: the dtypes differ; the message gives the cast to write.
    """
    dtype = float_dtype_of(params_name, params)
    x_dtype = np.dtype(jnp.result_type(x))
    if dtype is not None and jnp.issubdtype(x_dtype, jnp.floating) and x_dtype != dtype:
        raise TypeError(f"{name}: dtype {x_dtype} differs from the {params_name}' {dtype}; cast it with "
                        f"{name}.astype(jnp.{dtype}) (or the {params_name} to {x_dtype})")


def check_network_input(net: Any, params: Any, x: Any, *, name: str = "x", params_name: str = "params",
                        batched: bool = True, with_input: bool = False) -> Any:
    """Check params against `net`, `x`'s shape against the network's input and `x`'s dtype against the
    params' (`check_input_dtype`); return the output shape for one example (with `with_input`: the pair
    (example input shape, output shape)).

    `x` is a batch (batch, *input_shape) when `batched`; otherwise one example `input_shape` is
    accepted too. When the params fit the network's construction-time input shape but not `x`, the
    error names `x`; otherwise it names the first params leaf that differs. Works on tracers (shapes
    and dtypes only).

    Raises:
        TypeError: x of a complex dtype (the layers are real-valued: the imaginary part would be
            dropped or would leak into the output without an error).
        ValueError: a shape that does not fit the network, or params that do not fit it.
    """
    dtype = getattr(x, "dtype", None)
    if dtype is None and isinstance(x, (list, tuple, complex)) and jax.tree.leaves(x):
        try:  # nested lists of numbers (or of tracers, under jit)
            dtype = jnp.result_type(*jax.tree.leaves(x))
        except TypeError:
            dtype = None
    if dtype is not None and jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(f"{name}: expected real floating-point inputs (float32 or float64) for {net.name}, got "
                        f"dtype {dtype}; the layers are real-valued: pass {name}.real or jnp.abs({name}) explicitly")
    shape = tuple(np.shape(x))
    candidates = [shape[1:]] if shape else []
    if not batched:
        candidates.append(shape)
    if batched and not shape:
        raise ValueError(f"{name}: expected a batch (n, *input_shape), got a scalar")
    first_error = None
    for candidate in candidates:
        try:
            out_shape = check_params(net, params, candidate, name=params_name, input_name=name)
        except (ValueError, TypeError) as err:
            first_error = first_error or err
        else:
            check_input_dtype(name, x, params, params_name)
            return (candidate, out_shape) if with_input else out_shape
    default = None if net.input_shape is None else tuple(net.input_shape)
    if default is not None and default not in candidates:
        try:
            check_params(net, params, default, name=params_name, input_name=name)
        except (ValueError, TypeError):
            pass
        else:
            want = f"(n, {', '.join(map(str, default))})" + ("" if batched else f" or {default}")
            raise ValueError(f"{name}: expected shape {want} for {net.name}, whose params take inputs of "
                             f"shape {default}, got {shape}{shape_hint(default, shape, name)}") from None
    raise first_error


def shape_hint(expected: tuple[int, ...], got: tuple[int, ...], name: str = "x") -> str:
    """A conversion hint for a batch of shape `got` whose examples should have shape `expected`, or "".

    Channels-last images (n, H, W, C) where channels-first (C, H, W) are expected:
    "; it looks channels-last (n, H, W, C): convert it with x.transpose(0, 3, 1, 2)"; examples with the
    expected number of values in another shape (flattened images, unflattened vectors):
    "; ... reshape it with x.reshape(-1, 1, 28, 28)"."""
    expected, got = tuple(expected), tuple(got)
    example = got[1:]
    if len(expected) == 3 and len(got) == 4 and example == expected[1:] + expected[:1] != expected:
        return (f"; it looks channels-last (n, H, W, C): convert it to channels-first (n, C, H, W) with "
                f"{name}.transpose(0, 3, 1, 2)")
    if got and example != expected and math.prod(example) == math.prod(expected):
        return (f"; its examples hold the expected {math.prod(expected)} values in another shape: reshape it "
                f"with {name}.reshape(-1, {', '.join(map(str, expected))})")
    return ""


def float_dtype_of(name: str, params: Any) -> Any:
    """The one floating dtype of the floating leaves of `params` (None if there are none); TypeError
    naming two leaves whose float dtypes differ, or a leaf that is not an array."""
    seen = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        try:
            dtype = jnp.result_type(leaf)
        except TypeError as err:
            raise TypeError(f"{_path(name, path)}: expected a floating-point array, got {type(leaf).__name__}") from err
        if not jnp.issubdtype(dtype, jnp.floating):
            continue  # integer leaves are checked against the layer's own params (check_params)
        seen.setdefault(np.dtype(dtype), _path(name, path))
    if len(seen) > 1:
        (d1, p1), (d2, p2) = list(seen.items())[:2]
        raise TypeError(f"{name}: mixed dtypes, {p1} is {d1} but {p2} is {d2}; cast every leaf to one, e.g. "
                        f"jax.tree.map(lambda a: a.astype(jnp.float32), {name})")
    return next(iter(seen), None)


def check_finite_tree(name: str, tree: Any) -> None:
    """`check_finite` on every leaf of a pytree, naming the leaf (concrete values only)."""
    if not _inspectable(tree):
        return
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        check_finite(_path(name, path), leaf)


# ----------------------------------------------------------------------------------------------
# Targets against a loss
# ----------------------------------------------------------------------------------------------

def _loss_contract(loss: Any) -> Any:
    """The `jaxnet.losses.Loss` record for `loss` (a record, a loss name, or anything else: then a
    same-shape contract with no value checks, named by its `name` attribute if it has one)."""
    from jaxnet import losses

    if isinstance(loss, losses.Loss):
        return loss
    if isinstance(loss, str) and loss in losses.LOSSES:
        return losses.LOSSES[loss]
    name = loss if isinstance(loss, str) else getattr(loss, "name", "the loss")
    return losses.Loss(name, None, None)


def _first_outside(name: str, values: Any, interval: tuple[float, float], expected: str) -> None:
    """Raise ValueError `{name}: expected {expected}, found v at index i` for the first entry of
    concrete `values` outside the closed `interval`."""
    values = np.asarray(values)
    low, high = interval
    bad = (values < low) | (values > high)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}: expected {expected}, found {values[where]} at index {where}")


def check_targets(name: str, y: Any, pred_shape: tuple[int, ...], loss: Any, pred_name: str = "y_pred",
                  y_pred: Any = None) -> None:
    """Check targets `y` against the contract of `loss` for a prediction of shape `pred_shape`.

    `loss` is a `jaxnet.losses.Loss` (a loss name is looked up; any other object gets the default
    contract: same-shape targets, no value checks). The record says:

    - `targets == "same_shape"`: y has the prediction's shape (no silent broadcasting of, say, (n,)
      against (n, 1)).
    - `targets == "labels"`: integer class labels of shape pred_shape[:-1] in [0, classes), or
      one-hot / probability targets of the prediction's shape.
    - `target_range`: every non-label target lies in that closed interval (e.g. [0, 1]).
    - `prediction_range`: every entry of `y_pred` (when given) lies in that interval.

    y must be numeric (bool, integer or floating) and finite. Shapes and dtypes are checked on
    tracers too; value checks (ranges, finiteness) only on concrete arrays.

    Raises:
        TypeError: y is not numeric. ValueError: another shape, a label outside the range, a value
            outside the loss's range, or NaN / infinity; the message starts with `name` (or
            `pred_name` for the prediction's range).
    """
    contract = _loss_contract(loss)
    shape, dtype = tuple(np.shape(y)), jnp.result_type(y)
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer) or dtype == jnp.bool_):
        raise TypeError(f"{name}: expected numeric targets (float, int or bool), got dtype {dtype}")
    pred_shape = tuple(pred_shape)
    integer = jnp.issubdtype(dtype, jnp.integer)
    if contract.targets == "labels":
        if not pred_shape:
            raise ValueError(f"{pred_name}: {contract.name} expects scores (batch, classes), got a scalar")
        classes = pred_shape[-1]
        want = pred_shape[:-1] if integer else pred_shape
        if shape != want:
            kind = "integer class labels" if integer else "one-hot or probability targets"
            raise ValueError(f"{name}: expected {kind} of shape {want} for {pred_name} of shape {pred_shape}, "
                             f"got {shape}{_label_hint(name, shape, pred_shape, integer)}")
        if integer and _inspectable(y):
            _first_outside(name, y, (0, classes - 1), f"class labels in [0, {classes}) for {classes} output units")
    elif contract.targets == "same_shape":
        if shape != pred_shape:
            hint = (f" (add the output axis: {name}[:, None])" if shape + (1,) == pred_shape else
                    f" (class labels? one-hot them with jaxnet.data.one_hot({name}, {pred_shape[-1]}))"
                    if integer and shape == pred_shape[:-1] and pred_shape[-1] > 1 else "")
            raise ValueError(f"{name}: expected shape {pred_shape} to match {pred_name} for {contract.name}, "
                             f"got {shape}{hint}")
    else:
        raise ValueError(f"loss: {contract.name} has targets={contract.targets!r}; expected 'same_shape' or "
                         f"'labels'")
    if contract.target_range is not None and not integer and _inspectable(y):
        low, high = contract.target_range
        _first_outside(name, y, contract.target_range, f"targets in [{low:g}, {high:g}] for {contract.name}")
    check_finite(name, y)
    if contract.prediction_range is not None and y_pred is not None and _inspectable(y_pred):
        low, high = contract.prediction_range
        _first_outside(pred_name, y_pred, contract.prediction_range,
                       f"probabilities in [{low:g}, {high:g}] for {contract.name} (for logits use a sigmoid "
                       f"output layer or sigmoid_binary_crossentropy)")


def _label_hint(name: str, shape: tuple[int, ...], pred_shape: tuple[int, ...], integer: bool) -> str:
    """A fix for targets of the wrong shape for a class-label loss, or ''."""
    if integer and shape == pred_shape:
        return f" (integer one-hot targets? pass {name}.argmax(-1) or {name}.astype(jnp.float32))"
    if integer and shape == pred_shape[:-1] + (1,):
        return f" (integer labels have no class axis: pass {name}.ravel() or one-hot targets)"
    if not integer and shape in (pred_shape[:-1], pred_shape[:-1] + (1,)):
        return f" (float class labels? cast them to int: {name}.ravel().astype(jnp.int32))"
    return ""


_SQUASHING = ("softmax", "sigmoid")  # outputs in (0, 1): probabilities, not logits
_BOUNDED = ("relu", "tanh")  # outputs that cannot take every real value


def check_output_pairing(net: Any, loss: Any) -> None:
    """Check that the network's output layer suits the loss, as the `Loss` record describes it.

    Reads `net.layers[-1].name` ("softmax", "sigmoid", "identity", "relu", "tanh", "Dense(k)", ...;
    a Dense layer last means an identity output) and the record's `from_logits` and
    `output_activation`. Other layer names are not judged.

    Raises:
        ValueError: a softmax or sigmoid output feeding a loss that takes logits (a double softmax
            or sigmoid: `softmax_cross_entropy`, `sigmoid_binary_crossentropy`), or a loss that
            takes probabilities from a sigmoid (`binary_crossentropy`) after any other known
            output layer; the message names the fix.

    Warns:
        UserWarning: a ReLU or tanh output feeding a logit loss (it bounds the logits, e.g.
            `mlp([4, 8, 3], activation="relu")`, whose output activation defaults to the hidden one).
    """
    contract = _loss_contract(loss)
    if not getattr(net, "layers", None):
        return
    last = str(getattr(net.layers[-1], "name", ""))
    out = "identity" if last.startswith("Dense") else last
    known = out in ("identity", *_SQUASHING, *_BOUNDED)
    if contract.from_logits and out in _SQUASHING:
        alternative = {"softmax": "", "sigmoid": " (or keep it and use loss='binary_crossentropy')"}[out]
        raise ValueError(f"net: its output layer is {out}, but {contract.name} takes logits and applies the {out} "
                         f"itself (a double {out}); build the network with output_activation='identity', e.g. "
                         f"jaxnet.mlp(sizes, output_activation='identity'){alternative}")
    wanted = contract.output_activation
    if not contract.from_logits and wanted in _SQUASHING and known and out != wanted:
        alternative = (" or loss='sigmoid_binary_crossentropy' on identity (logit) outputs"
                       if wanted == "sigmoid" else "")
        raise ValueError(f"net: its output layer is {out}, but {contract.name} expects probabilities in [0, 1] from a "
                         f"{wanted} output layer; use output_activation='{wanted}'{alternative}")
    if contract.from_logits and out in _BOUNDED:
        warnings.warn(f"net: its output layer is {out}, which bounds the logits that {contract.name} expects "
                      f"(mlp's output_activation defaults to the hidden activation); pass "
                      f"output_activation='identity'", UserWarning, stacklevel=2)


def check_data(net: Any, params: Any, x: Any, y: Any, loss: Any, *, x_name: str = "x", y_name: str = "y",
               params_name: str = "params", same_dtype: bool = True, with_output_shape: bool = False) -> tuple:
    """Validate a network's params with a batch of data (x, y) for `loss`; return x, y as arrays (and,
    `with_output_shape`, the network's output shape for one example).

    x: floating (n, *input_shape) with n >= 1 matching the params (`check_network_input`); y: targets
    for the loss with n rows (`check_targets`); params of one floating dtype; x and floating y of the
    params' dtype (`check_input_dtype`; `same_dtype=False` exempts y only); x and y finite. Shape and
    dtype checks run on tracers too; value checks only on concrete arrays.
    """
    x = as_float_array(x_name, x)
    if x.ndim == 0:
        raise ValueError(f"{x_name}: expected a batch (n, *input_shape), got a scalar")
    y = as_array(y_name, y, "an array of targets")
    if x.shape[0] == 0:
        raise ValueError(f"{x_name}: expected at least one example, got an empty array of shape {tuple(x.shape)}")
    out_shape = check_network_input(net, params, x, name=x_name, params_name=params_name)
    dtype = float_dtype_of(params_name, params)
    if y.shape[:1] != x.shape[:1]:
        raise ValueError(f"{y_name}: expected {x.shape[0]} rows to match {x_name} {tuple(x.shape)}, "
                         f"got shape {tuple(y.shape)}")
    check_targets(y_name, y, (x.shape[0], *out_shape), loss, pred_name="the network's output")
    if same_dtype and dtype is not None:
        check_input_dtype(y_name, y, params, params_name)
    check_finite(x_name, x)
    return (x, y, tuple(out_shape)) if with_output_shape else (x, y)

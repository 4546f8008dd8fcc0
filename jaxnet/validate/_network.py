"""Parameter pytrees and inputs against their network: shapes by `jax.eval_shape` of each layer's
`init`, dtypes, batch-statistics layers.

Part of `jaxnet.validate` (see its docstring for the conventions).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnet.validate._arrays import _path


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

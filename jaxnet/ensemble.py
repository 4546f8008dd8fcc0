"""Many networks in one compiled call, and one network over many devices.

- `fit_ensemble` trains N networks at once by `jax.vmap`-ing `jaxnet.train.fit` over *members*: one
  PRNG key (or one set of initial params) per member, and optionally per-member hyperparameters
  (learning rate, momentum, plateau patience, ...). Seeds, ensembles and hyperparameter sweeps become
  one jitted call; members that do not fit in memory at once run in equal chunks, with a progress bar
  between chunks. The member axis can be sharded over devices (`mesh=`).
- `member(tree, i)` takes member i out of the stacked params or histories.
- `fit_data_parallel` trains *one* network with every step's batch split over the devices of a mesh
  (data parallelism); the same call runs on one device, several, or several hosts (see
  `jaxnet.distributed` for the multi-host entry).
- `device_mesh` makes the 1-D mesh both use; `replicate` and `local_copy` move pytrees onto a mesh and
  back, also when the mesh spans several processes.

How sharding is done. Both functions use `jax.sharding` with `AxisType.Auto` meshes, so XLA's SPMD
partitioner splits the same program that runs on one device; no line of the training code changes.
- Ensembles: the stacked member inputs (keys, params, per-member hyperparameters) are placed with
  `NamedSharding(mesh, P(axes))` on their leading axis, the data is replicated, and the outputs are
  constrained to the same sharding. Members are independent, so the compiled program needs no
  cross-device communication (tests/test_ensemble.py checks that each device holds its own members).
- Data parallel: params, optimizer state and data are replicated on every device, and each step's
  batch is constrained to be split over the mesh (`lax.with_sharding_constraint` inside the gradient
  function handed to `fit`). Every device then gathers its slice of the shuffled batch from its own
  copy of the data, and the gradient of the mean loss becomes one all-reduce per step. Merely sharding
  x over the devices (and not the batch) is correct too, but XLA then reassembles every gathered
  batch with an all-reduce and computes the whole step redundantly on each device: no speed-up.
  The price of this layout is that every device holds the whole training set (MNIST: 188 MB float32).

Source: JAX documentation, "Distributed arrays and automatic parallelization" and "Introduction to
parallel programming" (jax.sharding, Mesh, NamedSharding, PartitionSpec); data parallelism as in
Krizhevsky, "One weird trick for parallelizing convolutional neural networks" (2014), section 2.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxnet import losses as losses_lib
from jaxnet import optim
from jaxnet.validate import as_float_array, check_key, check_output_pairing, check_positive
from jaxnet.grad import gradient_fn
from jaxnet.nn.network import Network
from jaxnet.train import fit

Params = Any

HISTORY_MODES = ("full", "last")


# ----------------------------------------------------------------------------------------------
# Meshes and global arrays
# ----------------------------------------------------------------------------------------------


def device_mesh(axis_name: str = "devices", devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over `devices` (default: every device of every process, `jax.devices()`).

    Its axis type is `AxisType.Auto`: XLA propagates shardings through unannotated code, which is
    what lets the unchanged `fit` run sharded. (`jax.make_mesh` would default to `Explicit` axes.)

    Args:
        axis_name: the mesh axis name (a non-empty str).
        devices: the devices, in mesh order; default all of them.

    Returns:
        A `jax.sharding.Mesh` of shape (len(devices),).

    Raises:
        ValueError: an empty axis name or an empty device list.
    """
    if not isinstance(axis_name, str) or not axis_name:
        raise ValueError(f"axis_name: expected a non-empty str, got {axis_name!r}")
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices: expected at least one device, got an empty sequence")
    return Mesh(np.asarray(devices, dtype=object), (axis_name,), axis_types=(AxisType.Auto,))


def _check_mesh(mesh: Any) -> Mesh:
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh: expected a jax.sharding.Mesh (e.g. jaxnet.ensemble.device_mesh()), "
                        f"got {type(mesh).__name__}")
    return mesh


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Copy every array leaf of `tree` onto every device of `mesh` (a fully replicated global array).

    Works when the mesh spans several processes (each process must pass the same values; each
    places only its own devices' copies, via `jax.make_array_from_callback`). Typed PRNG keys are
    kept typed. Non-array leaves (Python numbers, None) are returned unchanged.

    Args:
        tree: a pytree of arrays (numpy or jax, fully addressable).
        mesh: the target mesh.

    Returns:
        The same pytree with `jax.Array` leaves sharded `NamedSharding(mesh, P())`.
    """
    sharding = NamedSharding(_check_mesh(mesh), P())

    def put(leaf):
        if not isinstance(leaf, (jax.Array, np.ndarray)):
            return leaf
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = put(jax.random.key_data(leaf))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree)


def local_copy(tree: Any) -> Any:
    """Host numpy copies of the leaves of `tree`, also for replicated arrays spanning several processes.

    A fully addressable array is copied whole; an array that spans other processes' devices must be
    fully replicated, and this process's first copy is returned.

    Raises:
        ValueError: a leaf is split over devices of other processes (it has no whole local copy).
    """
    def get(leaf):
        if not isinstance(leaf, jax.Array):
            return leaf
        if leaf.is_fully_addressable:
            data = leaf
        elif leaf.sharding.is_fully_replicated:
            data = leaf.addressable_data(0)
        else:
            raise ValueError(f"local_copy: an array of shape {leaf.shape} is split over several processes "
                             f"({leaf.sharding}); gather it with jax.experimental.multihost_utils first")
        if jnp.issubdtype(data.dtype, jax.dtypes.prng_key):
            return data
        return np.asarray(data)

    return jax.tree.map(get, tree)


# ----------------------------------------------------------------------------------------------
# Ensembles: many networks in one call
# ----------------------------------------------------------------------------------------------


class _Config(NamedTuple):
    """Everything static about an ensemble run (the jit cache key of `_fit_members`)."""

    net: Network
    loss: Any
    optimizer: Any  # a name (str) or a callable returning an optax GradientTransformation
    hyper_treedef: Any
    hyper_static: tuple  # (leaf index, value) of shared hyperparameter leaves
    hyper_member: tuple  # leaf indices of per-member hyperparameter leaves
    epochs: int
    grad: Any
    batch_size: int | None
    tutorial_scaling: bool
    history: str
    shared_shuffle: bool
    mesh: Mesh | None


def _build_optimizer(config: _Config, member_leaves) -> optax.GradientTransformation:
    leaves = [None] * (len(config.hyper_static) + len(config.hyper_member))
    for i, value in config.hyper_static:
        leaves[i] = value
    for i, value in zip(config.hyper_member, member_leaves):
        leaves[i] = value
    hyper = jax.tree.unflatten(config.hyper_treedef, leaves)
    if isinstance(config.optimizer, optax.GradientTransformation):
        return config.optimizer
    if isinstance(config.optimizer, str):
        hyper = dict(hyper)
        return optim.optimizer(config.optimizer, hyper.pop("learning_rate"), **hyper)
    return config.optimizer(**hyper)


@functools.partial(jax.jit, static_argnames=("config",))
def _fit_members(params, hyper, shuffle_keys, x, y, val, *, config: _Config):
    """The vmapped `fit` over one chunk of members (leading axis of params/hyper/shuffle_keys)."""

    def one(p, member_hyper, shuffle_key):
        tx = _build_optimizer(config, member_hyper)
        result = fit(config.net, p, x, y, loss=config.loss, optimizer=tx, epochs=config.epochs,
                     grad=config.grad, batch_size=config.batch_size, key=shuffle_key,
                     validation_data=val, tutorial_scaling=config.tutorial_scaling)
        if config.history == "last":
            result = result._replace(history={k: (v if v.ndim == 0 else v[-1]) for k, v in result.history.items()})
        return result

    in_axes = (0, 0, None if config.shared_shuffle else 0)
    out = jax.vmap(one, in_axes=in_axes)(params, hyper, shuffle_keys)
    if config.mesh is not None:
        out = jax.lax.with_sharding_constraint(out, _member_sharding(config.mesh))
    return out


def _init_members(net: Network, keys: jax.Array, input_shape: tuple[int, ...]) -> Params:
    """`net.init(keys[i], input_shape)` for every key, stacked: an eager (op-by-op) vmap, so that each
    lane is bitwise the params of a plain `net.init` call. Initialising inside the
    jitted training program instead lets XLA fuse the sampling arithmetic, which moves some values by
    1 ulp."""
    return jax.vmap(lambda key: net.init(key, input_shape)[1])(keys)


def _member_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (member) axis split over every axis of the mesh; the other axes replicated."""
    return NamedSharding(mesh, P(tuple(mesh.axis_names)))


def _leading(name: str, leaf: Any) -> int:
    shape = np.shape(leaf)
    if len(shape) == 0:
        raise ValueError(f"{name}: expected a leading member axis, got a scalar")
    return shape[0]


def _is_key_array(a: Any) -> bool:
    return isinstance(a, (jax.Array, np.ndarray)) and (
        jnp.issubdtype(a.dtype, jax.dtypes.prng_key) or (a.dtype == jnp.uint32 and a.shape[-1:] == (2,)))


def _key_batch_ndim(a: Any) -> int:
    """Number of batch axes of a key array (typed keys: all axes; raw uint32 keys: all but the last)."""
    return a.ndim if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a.ndim - 1


def _split_hyperparams(hyperparams: Mapping | None, optimizer: Any):
    """Flatten the hyperparameter dict; arrays with ndim >= 1 are per member, the rest shared."""
    if hyperparams is None:
        hyperparams = {}
    if not isinstance(hyperparams, Mapping):
        raise TypeError(f"hyperparams: expected a dict of optimizer arguments, got {type(hyperparams).__name__}")
    if isinstance(optimizer, str) and "learning_rate" not in hyperparams:
        raise ValueError(f"hyperparams: the {optimizer!r} optimizer needs hyperparams['learning_rate'] "
                         "(a float shared by all members, or an array with one rate per member)")
    leaves, treedef = jax.tree.flatten(dict(hyperparams))
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(dict(hyperparams))[0]]
    static, member, arrays = [], [], []
    for i, (path, leaf) in enumerate(zip(paths, leaves)):
        if isinstance(leaf, (jax.Array, np.ndarray)) and np.ndim(leaf) >= 1:
            member.append(i)
            arrays.append((f"hyperparams{path}", leaf))
        else:
            if isinstance(leaf, (jax.Array, np.ndarray)):  # a 0-d array: shared, as a Python scalar
                leaf = leaf.item()
            try:
                hash(leaf)
            except TypeError as err:
                raise TypeError(f"hyperparams{path}: expected a number, bool, str or an array with one value "
                                f"per member, got {type(leaf).__name__}") from err
            static.append((i, leaf))
    return treedef, tuple(static), tuple(member), arrays


def fit_ensemble(
    net: Network,
    x: jax.Array,
    y: jax.Array,
    *,
    keys: jax.Array | None = None,
    params: Params | None = None,
    loss: str | losses_lib.Loss,
    optimizer: str | Callable[..., optax.GradientTransformation] | optax.GradientTransformation = "sgd",
    hyperparams: Mapping[str, Any] | None = None,
    epochs: int,
    grad: str | Callable = "backprop",
    batch_size: int | None = None,
    key: jax.Array | None = None,
    shuffle_keys: jax.Array | None = None,
    validation_data: tuple[jax.Array, jax.Array] | None = None,
    tutorial_scaling: bool = False,
    history: str = "full",
    chunk_size: int | None = None,
    progress: bool | str = False,
    mesh: Mesh | None = None,
):
    """Train N networks in one compiled call: `jax.vmap` of `jaxnet.train.fit` over the members.

    Member i starts from `net.init(keys[i], x.shape[1:])` (bitwise the same params as that call, per
    key; keys are never broadcast, so different keys give different networks) or from `member(params,
    i)`, and trains with the optimizer built from member i's hyperparameters:
    `jaxnet.optim.optimizer(optimizer, **hyperparams_i)` for a name, `optimizer(**hyperparams_i)` for a
    callable. A hyperparameter given as an array with a leading axis of length N is per member (and
    traced, so a new set of values does not recompile); anything else (Python numbers, bools, strings,
    0-d arrays) is shared by every member and is part of the compiled program. Nested dicts work, e.g.
    `{"learning_rate": lrs, "momentum": 0.9, "plateau": {"factor": 0.95, "patience": patiences}}`.
    Per-member values are accepted wherever `jaxnet.optim.optimizer` takes traced values (learning
    rate, momentum, b1, eps, plateau patience, ...; not the plateau factor, a Python float for optax).

    Exactness: the init is bitwise `net.init(keys[i])`; the trained member i equals
    `fit(net, net.init(keys[i])[1], x, y, ...)` with the same settings up to float32 rounding, not
    bitwise: XLA:CPU fuses and vectorises the batched program differently. Measured on XOR (2-4-1
    sigmoid, MSE, SGD lr 1, 32 members, no member bitwise equal): largest absolute difference 2e-9
    after 1 epoch, 5e-7 after 100 and 9e-6 after 5000 (weights up to 7 in magnitude), as training
    amplifies rounding; tests/test_ensemble.py checks 1e-6 after 20 epochs and 4 minibatch epochs.

    Chunks: with `chunk_size`, the members are trained `chunk_size` at a time (the last chunk is padded
    with copies of the last member, so every chunk reuses one compiled program) and a tqdm progress
    bar (if tqdm is installed; a plain line per chunk otherwise) reports between chunks.

    Sharding: with `mesh` (e.g. `device_mesh()`), each chunk's members are split over all the mesh's
    devices (chunk_size is rounded up to a multiple of the device count); data are replicated. Members
    are independent, so this needs no communication; the results equal the unsharded ones up to
    float32 rounding (tests: within 1e-5 on 4 CPU devices).

    Args:
        net: a `jaxnet.Network`.
        x: inputs (n, *input_shape), float. y: targets (n, outputs) or integer labels (n,).
        keys: (N,) PRNG keys (typed, from `jax.random.split`, or raw uint32 (N, 2)), one per member.
        params: instead of keys, stacked initial params: net's params pytree with a leading axis N.
        loss: loss name or `jaxnet.losses.Loss` (shared).
        optimizer: a `jaxnet.optim.optimizer` name ('sgd', 'momentum', 'adam', ...), a callable
            taking the hyperparameters as keyword arguments and returning an optax transformation, or
            an optax transformation shared by every member (then no hyperparams).
        hyperparams: dict of optimizer arguments; for a name it must contain 'learning_rate'.
        epochs: epochs per member (static). grad: 'backprop' or 'autodiff'.
        batch_size: minibatch size (as in `fit`), or None for full batch.
        key: the training key, as `fit`'s `key` (minibatch shuffles, Dropout masks): one PRNG key shared
            by all members (same batch order and masks, as `fit(..., key=key)` for each), or (N,) keys,
            member i training with `key[i]`. Required for minibatches and networks with Dropout.
        shuffle_keys: the former name of `key` (deprecated; pass one or the other).
        validation_data: optional shared (x_val, y_val), as in `fit`.
        tutorial_scaling: as in `fit`.
        history: 'full' (each entry (N, epochs), as `fit` stacked) or 'last' (each entry (N,): the last
            epoch's value only; saves memory for big sweeps).
        chunk_size: members per compiled call (default all N at once).
        progress: show a progress bar between chunks (True, or a str: the bar's label).
        mesh: optional `jax.sharding.Mesh` of this process's devices (e.g. `device_mesh(devices=
            jax.local_devices())`); the member axis is split over all of them. For several hosts,
            give each process its own keys: members need no communication.

    Returns:
        A `FitResult(params, state, opt_state, history)` as `fit`'s, each field stacked with a leading
        axis N (leaf shapes (N, *leaf.shape)); history entries 'loss', 'learning_rate', ... of shape
        (N, epochs), or (N,) with history='last'; 'diverged_epoch' (N,) int32. Use `member(tree, i)`.

    Raises:
        ValueError: neither or both of keys and params; member counts that disagree (naming the
            argument); missing learning rate or shuffle keys; bad epochs, batch_size, chunk_size or
            history. TypeError: bad key, hyperparameter, mesh or optimizer types.

    Example:
        >>> net = jaxnet.mlp([2, 4, 1], "sigmoid")
        >>> x, y = jaxnet.data.xor()
        >>> keys = jax.random.split(jax.random.key(0), 256)
        >>> result = fit_ensemble(net, x, y, keys=keys, loss="mse",
        ...                       hyperparams={"learning_rate": 1.0}, epochs=5000)
        >>> p7 = member(result.params, 7)    # the network trained from keys[7]
    """
    if not isinstance(net, Network):
        raise TypeError(f"net: expected a jaxnet Network (e.g. jaxnet.mlp([...])), got {type(net).__name__}")
    x = as_float_array("x", x)
    y = jnp.asarray(y)
    if y.shape[:1] != x.shape[:1]:
        raise ValueError(f"y: expected {x.shape[0]} rows to match x {tuple(x.shape)}, got shape {tuple(y.shape)}")
    check_positive("epochs", epochs, integer=True)
    if history not in HISTORY_MODES:
        raise ValueError(f"history: expected one of {HISTORY_MODES}, got {history!r}")
    if not (isinstance(optimizer, (str, optax.GradientTransformation)) or callable(optimizer)):
        raise TypeError(f"optimizer: expected an optimizer name, an optax transformation or a callable "
                        f"returning one, got {type(optimizer).__name__}")
    if isinstance(optimizer, optax.GradientTransformation) and hyperparams:
        raise ValueError("hyperparams: an optax transformation carries its own hyperparameters; pass a name "
                         "(e.g. 'sgd') or a callable to vary them per member")
    if key is not None and shuffle_keys is not None:
        raise ValueError("key, shuffle_keys: pass one of them (shuffle_keys is the former name of key)")
    shuffle_keys = key if shuffle_keys is None else shuffle_keys
    check_output_pairing(net, losses_lib.get(loss))
    gradient_fn(grad)
    if mesh is not None:
        _check_mesh(mesh)

    # Members: from keys or from stacked params.
    if (keys is None) == (params is None):
        raise ValueError("keys, params: pass exactly one: (N,) PRNG keys to initialise N members, "
                         "or params stacked with a leading member axis")
    if keys is not None:
        if not _is_key_array(keys) or _key_batch_ndim(keys) != 1:
            raise TypeError("keys: expected a 1-D array of PRNG keys, e.g. jax.random.split(jax.random.key(0), N), "
                            f"got {type(keys).__name__} of shape {tuple(np.shape(keys))}")
        n = keys.shape[0]
    else:
        leaves = jax.tree.leaves(params)
        if not leaves:
            raise ValueError("params: expected a stacked params pytree with at least one array")
        n = _leading("params", leaves[0])
        for leaf in leaves:
            if _leading("params", leaf) != n:
                raise ValueError(f"params: every leaf needs the same leading member axis; found {n} and "
                                 f"{np.shape(leaf)[0]}")
    if n == 0:
        raise ValueError("keys, params: expected at least one member, got 0")

    treedef, hyper_static, hyper_member, hyper_arrays = _split_hyperparams(hyperparams, optimizer)
    for name, arr in hyper_arrays:
        if np.shape(arr)[0] != n:
            raise ValueError(f"{name}: expected one value per member ({n}), got shape {tuple(np.shape(arr))}")
    member_hyper = [jnp.asarray(arr) for _, arr in hyper_arrays]

    if batch_size is not None:
        check_positive("batch_size", batch_size, integer=True)
        if batch_size > x.shape[0]:
            raise ValueError(f"batch_size: expected at most the number of examples {x.shape[0]}, got {batch_size}")
    if batch_size is not None or net.is_random:
        if shuffle_keys is None:
            raise ValueError("key: minibatch training (shuffles) and Dropout (masks) need a PRNG key; pass one "
                             "shared by all members or (N,) keys, e.g. jax.random.split(jax.random.key(1), N)")
    shared_shuffle = True
    if shuffle_keys is not None:
        if not _is_key_array(shuffle_keys) or _key_batch_ndim(shuffle_keys) not in (0, 1):
            raise TypeError("key: expected one PRNG key or a 1-D array of them, "
                            f"got {type(shuffle_keys).__name__} of shape {tuple(np.shape(shuffle_keys))}")
        if _key_batch_ndim(shuffle_keys) == 0:
            check_key("key", shuffle_keys)
        else:
            shared_shuffle = False
            if shuffle_keys.shape[0] != n:
                raise ValueError(f"key: expected one key per member ({n}), got {shuffle_keys.shape[0]}")

    val = None
    if validation_data is not None:
        val = (as_float_array("validation_data[0]", validation_data[0]), jnp.asarray(validation_data[1]))

    if chunk_size is None:
        chunk_size = n
    check_positive("chunk_size", chunk_size, integer=True)
    chunk_size = min(chunk_size, n)
    if mesh is not None:
        chunk_size = math.ceil(chunk_size / mesh.size) * mesh.size
    n_chunks = math.ceil(n / chunk_size)

    config = _Config(net=net, loss=loss, optimizer=optimizer, hyper_treedef=treedef, hyper_static=hyper_static,
                     hyper_member=hyper_member, epochs=epochs, grad=grad, batch_size=batch_size,
                     tutorial_scaling=bool(tutorial_scaling), history=history, shared_shuffle=shared_shuffle,
                     mesh=mesh)
    per_member = (keys, params, member_hyper, None if shared_shuffle else shuffle_keys)
    shared = (shuffle_keys if shared_shuffle else None, x, y, val)
    if mesh is not None:
        shared = jax.device_put(shared, NamedSharding(mesh, P()))

    outputs = []
    bar = _progress(n, n_chunks, progress)
    for c in range(n_chunks):
        # Indices of this chunk; the last one is padded with the last member (results dropped).
        index = np.minimum(np.arange(c * chunk_size, (c + 1) * chunk_size), n - 1)
        k, p, h, s = jax.tree.map(lambda a: a[index], per_member)
        if p is None:
            p = _init_members(net, k, x.shape[1:])
        if mesh is not None:
            p, h, s = jax.device_put((p, h, s), _member_sharding(mesh))
        out = _fit_members(p, h, s if s is not None else shared[0], *shared[1:], config=config)
        real = min(chunk_size, n - c * chunk_size)
        if real < chunk_size:
            out = jax.tree.map(lambda a: a[:real], out)
        if n_chunks > 1:  # wait, so that the bar shows finished work (a single chunk stays asynchronous)
            out = jax.block_until_ready(out)
        outputs.append(out)
        bar(real)
    bar(None)
    if n_chunks == 1:
        return outputs[0]
    return jax.tree.map(lambda *parts: jnp.concatenate(parts), *outputs)


def _progress(total: int, n_chunks: int, enabled: bool | str) -> Callable[[int | None], None]:
    """A progress callback: called with the members finished in a chunk, then with None to close."""
    if not enabled:
        return lambda done: None
    label = enabled if isinstance(enabled, str) else "fit_ensemble"
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: one plain line per chunk instead
        state = {"done": 0, "chunk": 0}

        def plain(done):
            if done is None:
                return
            state["done"] += done
            state["chunk"] += 1
            print(f"{label}: chunk {state['chunk']}/{n_chunks}, {state['done']}/{total} networks",
                  file=sys.stderr, flush=True)
        return plain
    bar = tqdm(total=total, unit="net", desc=label, mininterval=0.0)

    def update(done):
        if done is None:
            bar.close()
        else:
            bar.update(done)
    return update


def member(tree: Any, i: int) -> Any:
    """Member `i` of a stacked pytree (params or history from `fit_ensemble`): every leaf's `[i]`.

    Args:
        tree: a pytree whose array leaves share a leading member axis of length N.
        i: an int in [-N, N) (negative counts from the end, as Python indexing).

    Returns:
        The pytree with each leaf `leaf[i]` (shape leaf.shape[1:]).

    Raises:
        TypeError: i is not an int. ValueError: i out of range, or a leaf without a leading axis.
    """
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
        raise TypeError(f"i: expected an int member index, got {type(i).__name__}")
    leaves = jax.tree.leaves(tree)
    for leaf in leaves:
        n = _leading("tree", leaf)
        if not -n <= i < n:
            raise ValueError(f"i: expected a member index in [{-n}, {n}), got {i}")
    return jax.tree.map(lambda a: a[i], tree)


# ----------------------------------------------------------------------------------------------
# Data parallel: one network, each batch split over the devices
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _DataParallelGrad:
    """`base`'s gradient route with each batch split over `mesh`. A frozen dataclass compared by value
    (mesh and route), so `fit`, which takes the route as a static argument, compiles once per mesh."""

    mesh: Mesh
    base: Any

    @property
    def __name__(self) -> str:
        return f"data_parallel_{getattr(gradient_fn(self.base), '__name__', 'grad')}"

    def __call__(self, net, params, xb, yb, loss_fn, **kwargs):
        batch = NamedSharding(self.mesh, P(tuple(self.mesh.axis_names)))
        xb = jax.lax.with_sharding_constraint(xb, batch)
        yb = jax.lax.with_sharding_constraint(yb, batch)
        return gradient_fn(self.base)(net, params, xb, yb, loss_fn, **kwargs)


def fit_data_parallel(
    net: Network,
    params: Params,
    x: jax.Array,
    y: jax.Array,
    *,
    mesh: Mesh | None = None,
    grad: str | Callable = "backprop",
    key: jax.Array | None = None,
    opt_state: Any = None,
    validation_data: tuple[jax.Array, jax.Array] | None = None,
    **fit_kwargs: Any,
):
    """`jaxnet.train.fit` with every step's batch split over the devices of `mesh` (data parallel).

    The same program as `fit` on one device: XLA partitions it, each device computing the forward
    and backward pass on its slice of each (mini)batch, and the gradient of the *global* mean loss is
    an all-reduce (sum of the per-device partial sums, the 1/batch factor unchanged). The params,
    optimizer state, shuffles and history are therefore those of `fit` up to float32 rounding of the
    reordered sums (tests: within 1e-5 of `fit` on 4 CPU devices and across 2 processes).

    Layout: params, optimizer state, PRNG key and data are replicated on every device (each holds the
    whole training set); only the work on each batch is split. A batch size not divisible by the
    device count works (XLA pads the slices) but wastes the padding. Works unchanged on one device,
    several devices, and meshes that span several processes (call
    `jaxnet.distributed.initialize` first; every process passes the same arguments).

    Args:
        net, params, x, y: as `fit` (numpy or jax arrays; they are copied onto the mesh).
        mesh: a `jax.sharding.Mesh`; default `device_mesh("data")`, all devices of all processes.
        grad: 'backprop' or 'autodiff' (or a callable with their signature), as in `fit`.
        key: PRNG key for the minibatch shuffles (as in `fit`; the same key gives the same batches).
        opt_state: optimizer state to resume from (default `optimizer.init(params)`).
        validation_data: optional (x_val, y_val), replicated as well.
        **fit_kwargs: every other `fit` argument (loss, optimizer, epochs, batch_size, ...).

    Returns:
        As `fit`: a `FitResult(params, state, opt_state, history)` of global arrays replicated over the mesh;
        `local_copy` turns them into numpy arrays on any process.

    Raises:
        TypeError: mesh is not a Mesh. Otherwise as `fit`.
    """
    mesh = device_mesh("data") if mesh is None else _check_mesh(mesh)
    optimizer = fit_kwargs.get("optimizer")
    if opt_state is None and isinstance(optimizer, optax.GradientTransformation):
        opt_state = optimizer.init(params)
    state = fit_kwargs.pop("state", None)
    if state is None:
        state = net.init_state(np.shape(x)[1:])
    params, state, opt_state, x, y, key, validation_data = replicate(
        (params, state, opt_state, x, y, key, validation_data), mesh)
    return fit(net, params, x, y, grad=_DataParallelGrad(mesh, grad), key=key, state=state, opt_state=opt_state,
               validation_data=validation_data, **fit_kwargs)

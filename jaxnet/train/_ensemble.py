"""`fit_ensemble`: N networks trained in one compiled call, the training engine under `jax.vmap`.

Members are the leading axis of params, network state, optimizer state, per-member hyperparameters,
weight decay and (optionally) keys; the data and evaluation sets are shared. The member axis can be
split over devices (`mesh=`): members need no communication, so XLA's SPMD partitioner runs the same
program on each device's members (`NamedSharding(mesh, P(axes))` on the inputs, the outputs
constrained to it). Source: JAX documentation, "Distributed arrays and automatic parallelization".
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxnet import losses as losses_lib
from jaxnet import optim
from jaxnet.nn.network import Network
from jaxnet.train import _checks, _core, _progress
from jaxnet.train._core import FitResult
from jaxnet.validate import as_float_array, check_data, check_finite_tree, check_key, check_positive, float_dtype_of

Params = Any

HISTORY_MODES = ("full", "last")


@dataclasses.dataclass(frozen=True)
class _Optimizer:
    """Member i's optimizer from its hyperparameter leaves: `jaxnet.optim.optimizer(name, **h_i)` or
    `callable(**h_i)`; shared leaves are static (compared by value), per-member ones traced."""

    optimizer: Any  # a name or a callable returning an optax transformation
    treedef: Any
    static: tuple  # (leaf index, value) of shared leaves
    member: tuple  # leaf indices of per-member leaves

    def __call__(self, member_leaves) -> optax.GradientTransformation:
        leaves = [None] * (len(self.static) + len(self.member))
        for i, value in self.static:
            leaves[i] = value
        for i, value in zip(self.member, member_leaves):
            leaves[i] = value
        hyper = dict(jax.tree.unflatten(self.treedef, leaves))
        if isinstance(self.optimizer, str):
            return optim.optimizer(self.optimizer, hyper.pop("learning_rate"), **hyper)
        return self.optimizer(**hyper)


@functools.partial(jax.jit, static_argnames=("plan", "key_axis", "decay_axis", "mesh"))
def _run_members(params, state, opt_state, hyper, weight_decay, x, y, key, eval_sets, bar, *, plan, key_axis,
                 decay_axis, mesh):
    """The engine vmapped over one chunk of members (leading axis of params, state, opt_state, hyper
    and, per their axes, the keys and weight decays)."""
    run = functools.partial(_core.run, plan)
    in_axes = (0, 0, 0, 0, decay_axis, None, None, key_axis, None, None)
    out = jax.vmap(run, in_axes=in_axes)(params, state, opt_state, hyper, weight_decay, x, y, key, eval_sets, bar)
    if mesh is not None:
        out = jax.lax.with_sharding_constraint(out, _member_sharding(mesh))
    return out


def _member_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (member) axis split over every axis of the mesh; the other axes replicated."""
    return NamedSharding(mesh, P(tuple(mesh.axis_names)))


def _init_members(net: Network, keys: jax.Array, input_shape: tuple[int, ...]) -> Params:
    """`net.init(keys[i], input_shape)` for every key, stacked: an eager (op-by-op) vmap, so that each
    lane is bitwise the params of a plain `net.init` call (inside a jitted program XLA would fuse the
    sampling arithmetic, which moves some values by 1 ulp)."""
    return jax.vmap(lambda key: net.init(key, input_shape)[1])(keys)


def _leading(name: str, leaf: Any) -> int:
    shape = np.shape(leaf)
    if len(shape) == 0:
        raise ValueError(f"{name}: expected a leading member axis, got a scalar")
    return shape[0]


def _members(name: str, tree: Any, n: int | None) -> int:
    """The common leading axis of the array leaves of `tree` (equal to n when n is given)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        size = _leading(f"{name}{jax.tree_util.keystr(path)}", leaf)
        if n is None:
            n = size
        elif size != n:
            raise ValueError(f"{name}{jax.tree_util.keystr(path)}: expected a leading member axis of {n}, got "
                             f"{size}")
    return n


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
    flat, treedef = jax.tree_util.tree_flatten_with_path(dict(hyperparams))
    static, member, arrays = [], [], []
    for i, (path, leaf) in enumerate(flat):
        if isinstance(leaf, (jax.Array, np.ndarray)) and np.ndim(leaf) >= 1:
            member.append(i)
            arrays.append((f"hyperparams{jax.tree_util.keystr(path)}", leaf))
            continue
        if isinstance(leaf, (jax.Array, np.ndarray)):  # a 0-d array: shared, as a Python scalar
            leaf = leaf.item()
        try:
            hash(leaf)
        except TypeError as err:
            raise TypeError(f"hyperparams{jax.tree_util.keystr(path)}: expected a number, bool, str or an array with "
                            f"one value per member, got {type(leaf).__name__}") from err
        static.append((i, leaf))
    return treedef, tuple(static), tuple(member), arrays


def _check_members(keys: Any, params: Any) -> int:
    if (keys is None) == (params is None):
        raise ValueError("keys, params: pass exactly one: (N,) PRNG keys to initialise N members, "
                         "or params stacked with a leading member axis")
    if keys is not None:
        if not _is_key_array(keys) or _key_batch_ndim(keys) != 1:
            raise TypeError("keys: expected a 1-D array of PRNG keys, e.g. jax.random.split(jax.random.key(0), N), "
                            f"got {type(keys).__name__} of shape {tuple(np.shape(keys))}")
        n = keys.shape[0]
    else:
        if not jax.tree.leaves(params):
            raise ValueError("params: expected a stacked params pytree with at least one array")
        n = _members("params", params, None)
    if n == 0:
        raise ValueError("keys, params: expected at least one member, got 0")
    return n


def _check_training_keys(key: Any, n: int, required: bool) -> int | None:
    """The key's member axis: None for one key shared by all members, 0 for (N,) keys."""
    if key is None:
        if required:
            raise ValueError("key: minibatch training (shuffles) and Dropout (masks) need a PRNG key; pass one shared "
                             "by all members or (N,) keys, e.g. jax.random.split(jax.random.key(1), N)")
        return None
    if not _is_key_array(key) or _key_batch_ndim(key) not in (0, 1):
        raise TypeError("key: expected one PRNG key or a 1-D array of them, "
                        f"got {type(key).__name__} of shape {tuple(np.shape(key))}")
    if _key_batch_ndim(key) == 0:
        check_key("key", key)
        return None
    if key.shape[0] != n:
        raise ValueError(f"key: expected one key per member ({n}), got {key.shape[0]}")
    return 0


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
    state: Any = None,
    opt_state: Any = None,
    weight_decay: float | jax.Array | None = None,
    validation_data: tuple[jax.Array, jax.Array] | None = None,
    evaluation: Mapping[str, tuple[jax.Array, jax.Array]] | None = None,
    eval_every: int = 1,
    eval_batch_size: int | None = None,
    early_stopping: Any = None,
    sampling: str = "shuffle",
    steps_per_epoch: int | None = None,
    tutorial_scaling: bool = False,
    history: str = "full",
    chunk_size: int | None = None,
    progress: bool | str = False,
    mesh: Mesh | None = None,
) -> FitResult:
    """Train N networks in one compiled call: the engine of `jaxnet.fit` under `jax.vmap` over members.

    Member i starts from `net.init(keys[i], x.shape[1:])` (bitwise the same params as that call, per
    key; keys are never broadcast, so different keys give different networks) or from `member(params,
    i)`, and trains with the optimizer built from member i's hyperparameters:
    `jaxnet.optim.optimizer(optimizer, **hyperparams_i)` for a name, `optimizer(**hyperparams_i)` for a
    callable, or one optax transformation shared by all. A hyperparameter given as an array with a
    leading axis of length N is per member (and traced, so a new set of values does not recompile);
    anything else (Python numbers, bools, strings, 0-d arrays) is shared and part of the compiled
    program. Nested dicts work, e.g. `{"learning_rate": lrs, "momentum": 0.9, "plateau": {"factor":
    0.95, "patience": patiences}}`. Likewise `weight_decay` is one value or (N,) values.

    Everything `fit` does, members do: network state, weight decay, resumed optimizer state,
    evaluation sets, early stopping (per member), Dropout keys, both samplings, progress.

    Exactness: the init is bitwise `net.init(keys[i])`; the trained member i equals
    `fit(net, net.init(keys[i])[1], x, y, ...)` with the same settings up to float32 rounding, not
    bitwise: XLA:CPU fuses and vectorises the batched program differently. Measured on XOR (2-4-1
    sigmoid, MSE, SGD lr 1, 32 members): largest absolute difference 2e-9 after 1 epoch, 5e-7 after
    100 and 9e-6 after 5000 (weights up to 7 in magnitude), as training amplifies rounding;
    tests/test_ensemble.py checks 1e-6 after 20 epochs and 4 minibatch epochs.

    Chunks: with `chunk_size`, the members are trained `chunk_size` at a time (the last chunk is
    padded with copies of the last member, so every chunk reuses one compiled program). Sharding:
    with `mesh` (e.g. `device_mesh()`), each chunk's members are split over the mesh's devices
    (chunk_size is rounded up to a multiple of the device count); data are replicated.

    Args:
        net: a `jaxnet.Network`.
        x: inputs (n, *input_shape), float. y: targets (n, outputs) or integer labels (n,).
        keys: (N,) PRNG keys (typed, from `jax.random.split`, or raw uint32 (N, 2)), one per member.
        params: instead of keys, stacked initial params: net's params pytree with a leading axis N.
        loss: loss name or `jaxnet.losses.Loss` (shared).
        optimizer: a `jaxnet.optim.optimizer` name, a callable taking the hyperparameters as keyword
            arguments and returning an optax transformation, or one optax transformation (then no
            hyperparams).
        hyperparams: dict of optimizer arguments; for a name it must contain 'learning_rate'.
        epochs: epochs per member (static). grad: 'backprop' or 'autodiff' (or a route, `jaxnet.grad`).
        batch_size, sampling, steps_per_epoch, tutorial_scaling: as in `fit`.
        key: the training key, as `fit`'s: one PRNG key shared by all members (same batch order and
            masks), or (N,) keys, member i training with `key[i]`. Required for minibatches and
            networks with Dropout.
        state, opt_state: optional stacked initial network states and optimizer states (leading N).
        weight_decay: the book's L2 lambda, one value or (N,) values.
        validation_data, evaluation, eval_every, eval_batch_size, early_stopping: as in `fit` (shared sets).
        history: 'full' (each entry (N, epochs)) or 'last' (each entry (N,): the last epoch's value).
        chunk_size: members per compiled call (default all N at once).
        progress: a progress bar over all members' epochs (True, or its label).
        mesh: optional `jax.sharding.Mesh` of this process's devices; the member axis is split over it.

    Returns:
        A `FitResult(params, state, opt_state, history)` as `fit`'s, each field stacked with a leading
        axis N; history entries of shape (N, epochs), or (N,) with history='last'; 'diverged_epoch'
        (N,) int32. Use `member(tree, i)`.

    Raises:
        ValueError: neither or both of keys and params; member counts that disagree (naming the
            argument); a missing learning rate or key; the errors of `fit` for the data, options and
            member 0's params, state and optimizer state. TypeError: bad key, hyperparameter, mesh or
            optimizer types.

    Example:
        >>> import jax, jaxnet
        >>> from jaxnet.train import fit_ensemble, member
        >>> net = jaxnet.mlp([2, 4, 1], "sigmoid")
        >>> x, y = jaxnet.data.xor()
        >>> keys = jax.random.split(jax.random.key(0), 8)
        >>> result = fit_ensemble(net, x, y, keys=keys, loss="mse", hyperparams={"learning_rate": 1.0}, epochs=100)
        >>> result.history["loss"].shape
        (8, 100)
        >>> p7 = member(result.params, 7)    # the network trained from keys[7]
    """
    _checks.check_net(net)
    loss_fn = _checks.check_loss(net, loss)
    if history not in HISTORY_MODES:
        raise ValueError(f"history: expected one of {HISTORY_MODES}, got {history!r}")
    if not (isinstance(optimizer, (str, optax.GradientTransformation)) or callable(optimizer)):
        raise TypeError(f"optimizer: expected an optimizer name, an optax transformation or a callable "
                        f"returning one, got {type(optimizer).__name__}")
    if isinstance(optimizer, optax.GradientTransformation) and hyperparams:
        raise ValueError("hyperparams: an optax transformation carries its own hyperparameters; pass a name "
                         "(e.g. 'sgd') or a callable to vary them per member")
    if mesh is not None and not isinstance(mesh, Mesh):
        raise TypeError(f"mesh: expected a jax.sharding.Mesh (e.g. jaxnet.train.device_mesh()), got "
                        f"{type(mesh).__name__}")
    n = _check_members(keys, params)
    x = as_float_array("x", x)
    if params is None:
        params = _init_members(net, keys, x.shape[1:])
    first = jax.tree.map(lambda a: a[0], params)
    # the one params check (member 0: the others share its shapes) and the one targets check
    x, y, out_shape = check_data(net, first, x, y, loss_fn, same_dtype=True, with_output_shape=True)
    check_finite_tree("params", params)
    example_shape = tuple(x.shape[1:])
    steps_per_epoch = _checks.check_minibatches(net, example_shape, x.shape[0], batch_size, sampling, steps_per_epoch)
    key_axis = _check_training_keys(key, n, batch_size is not None or net.is_random)

    treedef, static, member_idx, arrays = _split_hyperparams(hyperparams, optimizer)
    for name, arr in arrays:
        if np.shape(arr)[0] != n:
            raise ValueError(f"{name}: expected one value per member ({n}), got shape {tuple(np.shape(arr))}")
    hyper = [jnp.asarray(arr) for _, arr in arrays]
    if isinstance(optimizer, optax.GradientTransformation):
        update = _core.FixedUpdate(optimizer.update, isinstance(optimizer, optax.GradientTransformationExtraArgs))
        init = lambda p, h: optimizer.init(p)  # noqa: E731
    else:
        make = _Optimizer(optimizer, treedef, static, member_idx)
        make([a[0] for a in hyper])  # builds member 0's optimizer: its argument errors, eagerly
        update = _core.BuiltUpdate(make)
        init = lambda p, h: make(h).init(p)  # noqa: E731

    if state is None:
        state = jax.tree.map(lambda a: jnp.broadcast_to(a, (n, *a.shape)), net.init_state(example_shape))
    else:
        _members("state", state, n)
        net.check_state(jax.tree.map(lambda a: a[0], state), example_shape)
    if opt_state is not None:
        _members("opt_state", opt_state, n)
        _checks.check_opt_state("opt_state", jax.tree.map(lambda a: a[0], opt_state),
                                lambda p: init(p, [a[0] for a in hyper]), first)
    weight_decay = _checks.check_weight_decay(weight_decay)
    decay_axis = None
    if weight_decay is not None and np.ndim(weight_decay) >= 1:
        if np.shape(weight_decay) != (n,):
            raise ValueError(f"weight_decay: expected one value or one per member ({n},), got shape "
                             f"{tuple(np.shape(weight_decay))}")
        weight_decay, decay_axis = jnp.asarray(weight_decay, x.dtype), 0

    sets = _checks.eval_sets(validation_data, evaluation)
    dtype = float_dtype_of("params", first)
    pairs = tuple(_checks.check_eval_set("validation_data" if name == "val" and validation_data is not None
                                         else f"evaluation[{name!r}]", pair, example_shape, out_shape, dtype, loss_fn)
                  for name, pair in sets.items())
    label = _checks.progress_label(progress, "fit_ensemble")
    plan = _checks.make_plan(net, loss_fn, grad, update, epochs=epochs, batch_size=batch_size, sampling=sampling,
                             steps_per_epoch=steps_per_epoch, tutorial_scaling=tutorial_scaling, names=tuple(sets),
                             eval_every=eval_every, eval_batch_size=eval_batch_size, early_stopping=early_stopping,
                             progress=label is not None, keep_history=history)

    chunk_size = n if chunk_size is None else chunk_size
    check_positive("chunk_size", chunk_size, integer=True)
    chunk_size = min(chunk_size, n)
    if mesh is not None:
        chunk_size = math.ceil(chunk_size / mesh.size) * mesh.size
    n_chunks = math.ceil(n / chunk_size)
    per_member = (params, state, opt_state, hyper, weight_decay if decay_axis == 0 else None,
                  key if key_axis == 0 else None)
    shared = (x, y, pairs)
    if mesh is not None:
        shared = jax.device_put(shared, NamedSharding(mesh, P()))
    bar = None if label is None else _progress.open_bar(label, epochs, runs=n_chunks)
    outputs = []
    try:
        for c in range(n_chunks):
            index = np.minimum(np.arange(c * chunk_size, (c + 1) * chunk_size), n - 1)  # last chunk padded
            p, s, o, h, wd, k = jax.tree.map(lambda a: a[index], per_member)
            if o is None:
                o = jax.vmap(init)(p, h)
            if mesh is not None:
                p, s, o, h, wd, k = jax.device_put((p, s, o, h, wd, k), _member_sharding(mesh))
            out = _run_members(p, s, o, h, wd if decay_axis == 0 else weight_decay, shared[0], shared[1],
                               k if key_axis == 0 else key, shared[2], _progress.bar_operand(bar), plan=plan,
                               key_axis=key_axis, decay_axis=decay_axis, mesh=mesh)
            real = min(chunk_size, n - c * chunk_size)
            if real < chunk_size:
                out = jax.tree.map(lambda a: a[:real], out)
            if n_chunks > 1 or bar is not None:  # wait, so that progress shows finished work
                out = jax.block_until_ready(out)
            outputs.append(out)
    finally:
        _progress.close(bar)
    out = outputs[0] if n_chunks == 1 else jax.tree.map(lambda *parts: jnp.concatenate(parts), *outputs)
    return FitResult(*out)


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
    for leaf in jax.tree.leaves(tree):
        n = _leading("tree", leaf)
        if not -n <= i < n:
            raise ValueError(f"i: expected a member index in [{-n}, {n}), got {i}")
    return jax.tree.map(lambda a: a[i], tree)

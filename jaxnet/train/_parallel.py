"""One network over many devices and hosts: data parallelism with the same engine.

`fit_data_parallel` validates like `fit`, copies params, optimizer state, key and data onto every
device of a mesh, and runs the engine with `Plan.batch_sharding`: every step's batch is constrained
to be split over the mesh (`lax.with_sharding_constraint`), so XLA's SPMD partitioner has each
device compute the forward and backward pass on its slice, and the gradient of the mean loss becomes
one all-reduce per step. Every device gathers its slice of the shuffled batch from its own copy of
the data (merely sharding x would make XLA reassemble each gathered batch with an all-reduce and
compute the whole step redundantly on each device: no speed-up); the price is that every device
holds the whole training set (MNIST: 188 MB in float32).

`fit_multihost` first joins the processes with `jax.distributed.initialize` (gloo collectives on
CPU), after which the mesh spans every process's devices; arrays are made global with
`jax.experimental.multihost_utils` (every process passes the same values) and read back with
`process_allgather`.

Source: JAX documentation, "Distributed arrays and automatic parallelization", "Multi-process
environments"; data parallelism as in Krizhevsky, "One weird trick for parallelizing convolutional
neural networks" (2014), section 2.
"""

from __future__ import annotations

import inspect
from typing import Any
from collections.abc import Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxnet.nn.network import Network
from jaxnet.train import _fit
from jaxnet.train._core import FitResult

CPU_COLLECTIVES = ("gloo", "mpi")


def device_mesh(axis_name: str = "devices", devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over `devices` (default: every device of every process, `jax.devices()`).

    Its axis type is `AxisType.Auto`: XLA propagates shardings through unannotated code, which is
    what lets the unchanged engine run sharded. (`jax.make_mesh` would default to `Explicit` axes.)

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


def _replicated(tree: Any, mesh: Mesh) -> Any:
    """Every array leaf of `tree` copied onto every device of `mesh` (also across processes, which
    must pass equal values)."""
    return multihost_utils.host_local_array_to_global_array(tree, mesh, P())


def _to_host(tree: Any) -> Any:
    """Numpy copies of the (replicated) leaves of `tree`, on any process."""
    def get(leaf):
        if not isinstance(leaf, jax.Array):
            return leaf
        return np.asarray(leaf) if leaf.is_fully_addressable else multihost_utils.process_allgather(leaf, tiled=True)
    return jax.tree.map(get, tree)


def fit_data_parallel(net: Network, params: Any, x: Any, y: Any, *, mesh: Mesh | None = None,
                      **fit_kwargs: Any) -> FitResult:
    """`jaxnet.fit` with every step's batch split over the devices of `mesh` (data parallel).

    The same program as `fit` on one device: XLA partitions it, each device computing the forward
    and backward pass on its slice of each (mini)batch, and the gradient of the *global* mean loss is
    an all-reduce (sum of the per-device partial sums, the 1/batch factor unchanged). The params,
    optimizer state, shuffles and history are therefore those of `fit` up to float32 rounding of the
    reordered sums (tests: within 1e-5 of `fit` on 4 CPU devices and across 2 processes).

    A batch size not divisible by the device count works (XLA pads the slices) but wastes the
    padding. Works unchanged on one device, several devices, and meshes that span several processes
    (call `initialize` first; every process passes the same arguments).

    Args:
        net, params, x, y: as `fit` (numpy or jax arrays; they are copied onto the mesh).
        mesh: a `jax.sharding.Mesh`; default `device_mesh("data")`, all devices of all processes.
        **fit_kwargs: every other `fit` argument (loss, optimizer, epochs, batch_size, key, state,
            opt_state, validation_data, early_stopping, progress, ...).

    Returns:
        As `fit`: a `FitResult` of global arrays replicated over the mesh.

    Raises:
        TypeError: mesh is not a Mesh; an argument `fit` does not take. Otherwise as `fit`.
    """
    mesh = device_mesh("data") if mesh is None else mesh
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh: expected a jax.sharding.Mesh (e.g. jaxnet.train.device_mesh()), got "
                        f"{type(mesh).__name__}")
    taken = set(inspect.signature(_fit.fit).parameters) - {"net", "params", "x", "y"}
    unknown = sorted(set(fit_kwargs) - taken)
    if unknown:
        raise TypeError(f"fit_data_parallel: unexpected keyword argument {unknown[0]!r}; it takes fit's: "
                        f"{', '.join(sorted(taken))}")
    batches = NamedSharding(mesh, P(tuple(mesh.axis_names)))
    setup = _fit.prepare(net, params, x, y, door="fit_data_parallel", batch_sharding=batches, **fit_kwargs)
    arrays = _replicated((setup.params, setup.state, setup.opt_state, setup.weight_decay, setup.x, setup.y,
                          setup.key, setup.eval_sets), mesh)
    return _fit.execute(setup._replace(**dict(zip(("params", "state", "opt_state", "weight_decay", "x", "y", "key",
                                                   "eval_sets"), arrays))))


def initialize(coordinator_address: str, num_processes: int, process_id: int, *,
               local_device_ids: list[int] | None = None, initialization_timeout: int = 300,
               cpu_collectives: str = "gloo") -> None:
    """Join this process to a multi-process JAX job (`jax.distributed.initialize`).

    Must run before anything else touches JAX (no array may exist yet: JAX raises otherwise). Process
    0 also starts the coordinator service at `coordinator_address`; the others connect to it and
    wait (up to `initialization_timeout` seconds) until all `num_processes` have joined. On CPU the
    cross-process collectives use `cpu_collectives` (config `jax_cpu_collectives_implementation`;
    gloo is built into jaxlib, mpi needs an MPI library).

    Args:
        coordinator_address: 'host:port' of process 0, reachable by every process (e.g.
            '127.0.0.1:12345' on one machine).
        num_processes: number of processes, an int >= 1.
        process_id: this process's index, an int in [0, num_processes).
        local_device_ids: which local accelerators this process uses (default: all it sees).
        initialization_timeout: seconds to wait for the other processes.
        cpu_collectives: 'gloo' (default) or 'mpi'.

    Raises:
        TypeError / ValueError: a malformed address, count or id, naming the argument.
        RuntimeError (from JAX): called twice, or after JAX computations have run.
    """
    if not isinstance(coordinator_address, str) or ":" not in coordinator_address:
        raise ValueError(f"coordinator_address: expected 'host:port', got {coordinator_address!r}")
    port = coordinator_address.rsplit(":", 1)[1]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"coordinator_address: expected a port in 1..65535 after ':', got {coordinator_address!r}")
    for name, value in (("num_processes", num_processes), ("process_id", process_id)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name}: expected an int, got {value!r}")
    if num_processes < 1:
        raise ValueError(f"num_processes: expected an int >= 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id: expected an int in [0, {num_processes}), got {process_id}")
    if cpu_collectives not in CPU_COLLECTIVES:
        raise ValueError(f"cpu_collectives: expected one of {CPU_COLLECTIVES}, got {cpu_collectives!r}")
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=int(num_processes),
                               process_id=int(process_id), local_device_ids=local_device_ids,
                               initialization_timeout=initialization_timeout)


def fit_multihost(net: Network, x: np.ndarray, y: np.ndarray, *, coordinator_address: str | None,
                  num_processes: int = 1, process_id: int = 0, seed: int = 0,
                  local_device_ids: list[int] | None = None, **fit_kwargs: Any) -> FitResult:
    """Initialise the distributed runtime, then train data-parallel over every device of every process.

    Runs `initialize(coordinator_address, num_processes, process_id)` (skipped when
    `coordinator_address` is None: a single process on its local devices), initialises the params
    and trains with `fit_data_parallel` over `device_mesh("data")` (all devices). The run is the
    single-process `k_init, k_shuffle = jax.random.split(jax.random.key(seed)); fit(net,
    net.init(k_init)[1], x, y, key=k_shuffle, **fit_kwargs)` up to float32 rounding
    (tests/test_distributed.py: within 1e-5, and the processes end with bitwise identical params).

    Every process passes the same arguments and the same data. Create no JAX array before calling
    (pass x and y as numpy arrays; `jaxnet.optim` optimizers create none until `init`).

    Args:
        net: the network. x, y: the whole training set, numpy, identical on every process.
        coordinator_address, num_processes, process_id: see `initialize`.
        seed: int seed of the init and shuffle keys (above).
        local_device_ids: see `initialize`.
        **fit_kwargs: `fit` arguments: loss, optimizer, epochs, batch_size, validation_data, ...

    Returns:
        `fit`'s `FitResult(params, state, opt_state, history)` as numpy arrays (this process's copy;
        every process gets the same values).

    Raises:
        As `initialize` and `fit`.
    """
    if coordinator_address is not None:
        initialize(coordinator_address, num_processes, process_id, local_device_ids=local_device_ids)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {seed!r}")
    init_key, shuffle_key = jax.random.split(jax.random.key(int(seed)))
    _, params = net.init(init_key, np.shape(x)[1:])
    if fit_kwargs.get("batch_size") is None and not net.is_random:
        shuffle_key = None
    out = fit_data_parallel(net, params, x, y, mesh=device_mesh("data"), key=shuffle_key, **fit_kwargs)
    return FitResult(*_to_host(tuple(out)))

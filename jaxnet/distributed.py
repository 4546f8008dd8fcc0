"""Several hosts: JAX's own distributed runtime, then the same data-parallel training.

Every process (one per host, or several on one machine) runs the same program with its own
`process_id`:

    from jaxnet import distributed
    params, history = distributed.fit_multihost(
        net, x, y, coordinator_address="10.0.0.1:1234", num_processes=2, process_id=0,
        seed=0, loss="softmax_cross_entropy", optimizer=jaxnet.optim.sgd(0.1), epochs=10, batch_size=128)

`initialize` calls `jax.distributed.initialize`, after which `jax.devices()` lists the devices of all
processes; `jaxnet.ensemble.fit_data_parallel` then splits each batch over all of them and XLA turns
the gradient mean into a cross-process all-reduce (NCCL on GPUs, the TPU interconnect on TPUs, gloo
over TCP on CPUs). Every process ends with the same params. The command-line entry is
`python -m experiments train_distributed --coordinator-address HOST:PORT --num-processes N
--process-id I`.

Source: JAX documentation, "Multi-process environments" (jax.distributed.initialize,
jax.make_array_from_callback).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jaxnet.nn.network import Network

CPU_COLLECTIVES = ("gloo", "mpi")


def initialize(
    coordinator_address: str,
    num_processes: int,
    process_id: int,
    *,
    local_device_ids: list[int] | None = None,
    initialization_timeout: int = 300,
    cpu_collectives: str = "gloo",
) -> None:
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


def fit_multihost(
    net: Network,
    x: np.ndarray,
    y: np.ndarray,
    *,
    coordinator_address: str | None,
    num_processes: int = 1,
    process_id: int = 0,
    seed: int = 0,
    local_device_ids: list[int] | None = None,
    **fit_kwargs: Any,
):
    """Initialise the distributed runtime, then train data-parallel over every device of every process.

    Runs `initialize(coordinator_address, num_processes, process_id)` (skipped when
    `coordinator_address` is None: a single process on its local devices), initialises the params
    and trains with `jaxnet.ensemble.fit_data_parallel` over `device_mesh("data")` (all devices). The
    run is the single-process
    `k_init, k_shuffle = jax.random.split(jax.random.key(seed)); fit(net, net.init(k_init)[1], x, y,
    key=k_shuffle, **fit_kwargs)` up to float32 rounding (tests/test_distributed.py: within 1e-5, and
    the processes end with bitwise identical params).

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
    from jaxnet.ensemble import device_mesh, fit_data_parallel, local_copy

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {seed!r}")
    init_key, shuffle_key = jax.random.split(jax.random.key(int(seed)))
    _, params = net.init(init_key, np.shape(x)[1:])
    if fit_kwargs.get("batch_size") is None and not net.is_random:
        shuffle_key = None
    out = fit_data_parallel(net, params, x, y, mesh=device_mesh("data"), key=shuffle_key, **fit_kwargs)
    return local_copy(out)

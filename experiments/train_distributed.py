"""`train_distributed`: data-parallel training over every device of one or several processes (hosts).

Start one process per host with the same options and its own `--process-id`; process 0 serves as
coordinator at `--coordinator-address` (host:port, reachable from all). On one machine, e.g.:

    python -m experiments train_distributed --coordinator-address 127.0.0.1:12345 \
        --num-processes 2 --process-id 0 &
    python -m experiments train_distributed --coordinator-address 127.0.0.1:12345 \
        --num-processes 2 --process-id 1

Without `--coordinator-address` it runs as a single process on its local devices. The network is
an MLP (input-hidden-10, ReLU, softmax cross-entropy) trained with minibatch SGD by
`jaxnet.train.fit_multihost` (each batch split over all devices, gradients all-reduced).
Process 0 writes metrics.json and params.npz; with `--save-all-params` every process writes
params_process{ID}.npz (the test compares them).

Datasets: `digits` (scikit-learn's 8x8 digits, 80/20 split), `mnist` (the IDX files from `--data-dir`,
see `jaxnet.data.load_mnist`), or `synthetic` (MNIST-shaped random images labelled by a fixed random
linear teacher: no files needed).
"""

from __future__ import annotations

import time

import numpy as np

from ._common import parser, write_metrics

DATASETS = ("digits", "mnist", "synthetic")


def synthetic_mnist(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-shaped data: x float32 (n, 784) uniform in [0, 1), labels int32 (n,) in 0..9.

    The labels are the arg-max of a fixed random linear map of x (numpy `default_rng(seed)`), so the
    task is learnable; the same n and seed give the same arrays on every process.
    """
    rng = np.random.default_rng(seed)
    x = rng.random((n, 784), dtype=np.float32)
    teacher = rng.standard_normal((784, 10)).astype(np.float32)
    return x, np.argmax((x - 0.5) @ teacher, axis=1).astype(np.int32)


def load(name: str, seed: int, n_synthetic: int = 2048, data_dir=None):
    """(x_train, y_train, x_test, y_test) as numpy float32 (n, features) / int32 (n,)."""
    if name == "synthetic":
        x, y = synthetic_mnist(n_synthetic + n_synthetic // 4, seed)
        return x[:n_synthetic], y[:n_synthetic], x[n_synthetic:], y[n_synthetic:]
    import jax

    from jaxnet import data
    if name == "mnist":
        m = data.load_mnist(data_dir, flatten=True)
        return tuple(np.asarray(a) for a in (m.x_train, m.y_train, m.x_test, m.y_test))
    x, labels = data.digits()
    x_tr, x_te, y_tr, y_te = data.train_test_split(jax.random.key(seed), np.asarray(x), np.asarray(labels),
                                                   test_size=0.2, stratify=np.asarray(labels))
    return np.asarray(x_tr), np.asarray(y_tr), np.asarray(x_te), np.asarray(y_te)


def flat_params(params) -> dict:
    """Params pytree -> {'0/W': array, ...} for np.savez (layer index / name)."""
    import jax
    return {"/".join(str(getattr(k, "idx", getattr(k, "key", k))) for k in path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}


def main(argv: list[str] | None = None) -> dict:
    p = parser("train_distributed", __doc__.splitlines()[0])
    p.add_argument("--coordinator-address", default=None,
                   help="host:port of process 0 (omit to run as a single process)")
    p.add_argument("--num-processes", type=int, default=1, help="number of processes (default 1)")
    p.add_argument("--process-id", type=int, default=0, help="this process's index, 0..num-processes-1")
    p.add_argument("--dataset", choices=DATASETS, default="digits", help="training data (default digits)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 20; 3 with --quick)")
    p.add_argument("--batch-size", type=int, default=64, help="global minibatch size, split over all devices")
    p.add_argument("--learning-rate", type=float, default=0.1, help="SGD learning rate (true gradients)")
    p.add_argument("--hidden", type=int, default=100, help="hidden units (default 100)")
    p.add_argument("--save-all-params", action="store_true", help="every process writes params_process{ID}.npz")
    args = p.parse_args(argv)
    epochs = args.epochs or (3 if args.quick else 20)

    # Nothing may touch JAX before jax.distributed.initialize: data are loaded as numpy first (the
    # digits split needs JAX, so it is loaded after initialisation).
    from jaxnet import train
    if args.coordinator_address is not None:
        train.initialize(args.coordinator_address, args.num_processes, args.process_id)
    import jax

    from jaxnet import evaluate, mlp, optim
    x_tr, y_tr, x_te, y_te = load(args.dataset, args.seed, 512 if args.quick else 2048, args.data_dir)
    net = mlp([x_tr.shape[1], args.hidden, 10], activation="relu", output_activation="identity")
    start = time.perf_counter()
    params, _, _, history = train.fit_multihost(
        net, x_tr, y_tr, coordinator_address=None, seed=args.seed, loss="softmax_cross_entropy",
        optimizer=optim.sgd(args.learning_rate), epochs=epochs, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    test = {k: float(v) for k, v in evaluate(net, params, x_te, y_te, "softmax_cross_entropy").items()}

    pid = jax.process_index()
    if args.save_all_params:
        args.out.mkdir(parents=True, exist_ok=True)
        np.savez(args.out / f"params_process{pid}.npz", **flat_params(params))
    metrics = {
        "dataset": args.dataset, "processes": jax.process_count(), "devices": jax.device_count(),
        "epochs": epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
        "train_examples": int(x_tr.shape[0]), "loss": history["loss"], "test_loss": test["loss"],
        "test_accuracy": test["accuracy"], "seconds": seconds,
    }
    if pid == 0:
        write_metrics(args.out, metrics)
        np.savez(args.out / "params.npz", **flat_params(params))
        print(f"{args.dataset}: {jax.process_count()} process(es), {jax.device_count()} device(s), "
              f"{epochs} epochs in {seconds:.1f} s; final loss {history['loss'][-1]:.4f}, "
              f"test accuracy {test['accuracy']:.4f}")
    return {"test_accuracy": test["accuracy"], "devices": jax.device_count(), "seconds": seconds}

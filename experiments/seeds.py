"""`seeds`: how much does the seed matter? The digits network trained from 64 seeds in one call.

The 64-100-10 ReLU network with softmax cross-entropy on scikit-learn's 8x8 digits (1437 train /
360 test, a stratified split with a fixed key, the same for every seed), minibatch SGD (batch 32,
learning rate 0.5 on the true gradient, 30 epochs). Each seed gives the member its own init key and
its own shuffle key; one `jaxnet.train.fit_ensemble` call trains all of them. Writes
test_accuracy.png (the distribution of test accuracy: histogram with every seed marked, and the
training-loss band) and metrics.json (every seed's accuracy and the summary statistics).
`--quick` uses 16 seeds and 10 epochs.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from ._common import parser, write_metrics
from jaxnet import data, mlp, plot
from jaxnet.train import fit_ensemble

SEEDS, QUICK_SEEDS = 64, 16
EPOCHS, QUICK_EPOCHS = 30, 10
BATCH_SIZE, LEARNING_RATE = 32, 0.5
SPLIT_SEED = 0


def main(argv: list[str] | None = None) -> dict:
    p = parser("seeds", __doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=None,
                   help=f"number of seeds (default {SEEDS}; {QUICK_SEEDS} with --quick)")
    args = p.parse_args(argv)
    n_seeds = args.seeds or (QUICK_SEEDS if args.quick else SEEDS)
    epochs = QUICK_EPOCHS if args.quick else EPOCHS

    x, labels = data.digits()
    x_train, x_test, y_train, y_test = data.train_test_split(jax.random.key(SPLIT_SEED), x, labels,
                                                             test_size=0.2, stratify=labels)
    net = mlp([64, 100, 10], activation="relu", output_activation="identity")
    init_keys, shuffle_keys = (jax.random.split(k, n_seeds) for k in jax.random.split(jax.random.key(args.seed)))

    start = time.perf_counter()
    _, _, _, history = fit_ensemble(net, x_train, y_train, keys=init_keys, key=shuffle_keys,
                              loss="softmax_cross_entropy", hyperparams={"learning_rate": LEARNING_RATE},
                              epochs=epochs, batch_size=BATCH_SIZE, validation_data=(x_test, y_test),
                              chunk_size=16, progress="seeds")
    seconds = time.perf_counter() - start
    accuracy = np.asarray(history["val_accuracy"][:, -1])
    losses = np.asarray(history["loss"])
    stats = {"mean": float(accuracy.mean()), "std": float(accuracy.std(ddof=1)) if n_seeds > 1 else 0.0,
             "min": float(accuracy.min()), "max": float(accuracy.max()), "median": float(np.median(accuracy)),
             "worst_seed": int(np.argmin(accuracy)), "best_seed": int(np.argmax(accuracy))}

    fig, (ax_hist, ax_loss) = plot.figure(1, 2, size=(10, 3.8))
    n_test = int(y_test.shape[0])
    edges = (np.arange(np.floor(accuracy.min() * n_test) - 0.5, np.ceil(accuracy.max() * n_test) + 1.5)) / n_test
    ax_hist.hist(accuracy * 100, bins=edges * 100, color="tab:blue", alpha=0.7, edgecolor="white")
    ax_hist.plot(accuracy * 100, np.full_like(accuracy, -0.4), "|", color="k", markersize=10)
    ax_hist.axvline(stats["mean"] * 100, color="tab:red", label=f"mean {stats['mean'] * 100:.2f}%")
    ax_hist.set_xlabel(f"test accuracy (%), {n_test} test digits (one bar = one digit)")
    ax_hist.set_ylabel("seeds")
    ax_hist.set_title(f"digits 64-100-10 ReLU, {n_seeds} seeds")
    ax_hist.legend()
    plot.loss_curve(ax_loss, losses, label=f"mean, min-max over {n_seeds} seeds")
    ax_loss.set_title("training loss (softmax cross-entropy)")
    path = plot.save(fig, args.out / "test_accuracy.png")

    metrics = {"seeds": n_seeds, "epochs": epochs, "batch_size": BATCH_SIZE, "learning_rate": LEARNING_RATE,
               "train_examples": int(y_train.shape[0]), "test_examples": n_test,
               "test_accuracy": accuracy, "test_accuracy_stats": stats, "final_train_loss": losses[:, -1],
               "diverged_runs": int(np.sum(np.asarray(history["diverged_epoch"]) >= 0)),
               "seconds": seconds, "figure": str(path)}
    write_metrics(args.out, metrics)
    print(f"{n_seeds} seeds x {epochs} epochs in {seconds:.1f} s: test accuracy mean {stats['mean'] * 100:.2f}% "
          f"(std {stats['std'] * 100:.2f}), min {stats['min'] * 100:.2f}%, max {stats['max'] * 100:.2f}%")
    print(f"wrote {path} and {args.out / 'metrics.json'}")
    return {"mean_accuracy": stats["mean"], "min_accuracy": stats["min"], "max_accuracy": stats["max"],
            "seconds": seconds}

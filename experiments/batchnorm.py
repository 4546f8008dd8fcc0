"""`batchnorm`: training accuracy with and without BatchNorm at 16 weight scales, 32 runs in 2 calls (book 6.3.2).

The book's batch_norm_test.py (Deep Learning from Scratch 6.3.2, figure 6-19): the first 1000 MNIST
training images, a 784-(100 x 5)-10 ReLU network with or without a BatchNorm layer between every
hidden Dense layer and its ReLU (the book's MultiLayerNetExtend; `BatchNorm(book=True)`: momentum 0.9,
eps 1e-6, running statistics from zero), every weight matrix `scale * N(0, 1)` for 16 scales
`logspace(0, -4, 16)`, biases zero, SGD at learning rate 0.01 on minibatches of 100, 20 epochs. The
accuracy on the 1000 training images is recorded after every epoch in evaluation mode (running
statistics), as the book does. The 16 scales of one architecture train together (`jax.vmap` of
`jaxnet.fit` over the stacked params inside one compiled `lax.scan`), so the 32 runs are two calls.
The runs of one scale start from the same N(0, 1) draw and see the same batches. Unlike the book,
an epoch is fit's: a fresh shuffle and 10 minibatches without replacement (the book draws each
batch with replacement).

Figure: a 4 x 4 grid of training-accuracy curves per scale, with BatchNorm (solid) and without
(dashed). Book: without BatchNorm the accuracy stays at 0.10-0.12 at 13 of the 16 scales; with
BatchNorm it reaches 0.42-1.0. Target: BatchNorm ahead (higher final training accuracy) at 14 or more
of the 16 scales.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from . import _techniques as tech
from ._common import write_metrics
from jaxnet import BatchNorm, Dense, Relu, mlp, serial

HIDDEN, LAYERS, N_TRAIN, EPOCHS, QUICK_EPOCHS, BATCH_SIZE, LEARNING_RATE = 100, 5, 1000, 20, 2, 100, 0.01
SCALES = np.logspace(0, -4, 16)
TARGET_AHEAD = 14
STUCK = 0.2  # a final training accuracy below this is chance level (the commonest digit is ~0.11 of the images)


def networks():
    """(with BatchNorm, without): the book's MultiLayerNetExtend with and without use_batchnorm."""
    hidden = [layer for _ in range(LAYERS) for layer in (Dense(HIDDEN), BatchNorm(book=True), Relu)]
    return (serial(*hidden, Dense(10), input_shape=(784,), name="784-(100 BN ReLU)x5-10"),
            mlp([784] + [HIDDEN] * LAYERS + [10], activation="relu", output_activation="identity"))


def grid_figure(acc_bn: np.ndarray, acc_plain: np.ndarray, path):
    panels = [(f"W: {scale:.2g}", acc_bn[i], acc_plain[i]) for i, scale in enumerate(SCALES)]
    return tech.curves_grid(panels, path, columns=4, labels=("BatchNorm", "without"), size=(11, 9.5),
                            title="Training accuracy per initial weight scale (book figure 6-19)")


def main(argv: list[str] | None = None) -> dict:
    args, mnist, start = tech.start("batchnorm", __doc__, argv)
    if mnist is None:
        return tech.skipped("batchnorm")
    epochs = QUICK_EPOCHS if args.quick else EPOCHS
    key = jax.random.key(args.seed)
    x, y = np.asarray(mnist.x_train)[:N_TRAIN], np.asarray(mnist.y_train)[:N_TRAIN]
    runs = {}
    for label, net in zip(("bn", "plain"), networks()):
        params = tech.book_scaled_params(net, jax.random.fold_in(key, 0), (784,), SCALES)
        runs[label] = tech.train_members(net, params, x, y, make_optimizer=tech.sgd, rounds=epochs,
                                         batch_size=BATCH_SIZE, key=jax.random.fold_in(key, 1),
                                         eval_sets={"train": (x, y)},
                                         progress=f"batchnorm ({'with' if label == 'bn' else 'without'})")
        warning = tech.divergence_line(runs[label]["diverged_round"], [f"W {s:.2g}" for s in SCALES],
                                       f"batchnorm ({label})")
        if warning:
            print(warning)
    acc_bn, acc_plain = runs["bn"]["train_accuracy"], runs["plain"]["train_accuracy"]
    final_bn, final_plain = tech.last_finite(acc_bn), tech.last_finite(acc_plain)
    ahead = int(np.sum(final_bn > final_plain))
    chance = float(np.bincount(np.asarray(y)).max() / N_TRAIN)  # always predicting the commonest digit
    stuck = int(np.sum(final_plain < STUCK))
    figure = grid_figure(acc_bn, acc_plain, args.out / "batchnorm.png")
    seconds = time.perf_counter() - start
    train_seconds = sum(r["seconds"] for r in runs.values())
    compile_seconds = sum(r["compile_seconds"] for r in runs.values())
    write_metrics(args.out, {
        "seed": args.seed, "source": mnist.source, "n_train": N_TRAIN, "epochs": epochs, "batch_size": BATCH_SIZE,
        "learning_rate": LEARNING_RATE, "scales": SCALES, "train_accuracy_bn": acc_bn,
        "train_accuracy_plain": acc_plain, "final_bn": final_bn, "final_plain": final_plain, "bn_ahead": ahead,
        "plain_below_0.2": stuck, "commonest_digit_fraction": chance, "target_bn_ahead": TARGET_AHEAD,
        "target_met": ahead >= TARGET_AHEAD,
        "diverged_round_bn": runs["bn"]["diverged_round"], "diverged_round_plain": runs["plain"]["diverged_round"],
        "compile_seconds": compile_seconds, "train_seconds": train_seconds, "seconds": seconds})
    met = "met" if ahead >= TARGET_AHEAD else "NOT met" + (" (a --quick run is too short)" if args.quick else "")
    print(f"batchnorm: after {epochs} epochs, without BatchNorm the training accuracy stays at chance (< {STUCK}; the "
          f"commonest digit is {chance:.2f}) at {stuck} of 16 scales (book: 0.10-0.12 at 13 of 16), with BatchNorm "
          f"{final_bn.min():.2f}-{final_bn.max():.2f} (book "
          f"0.42-1.0); BatchNorm ahead at {ahead} of 16 scales (target >= {TARGET_AHEAD}: {met})")
    print(f"  {N_TRAIN} images ({mnist.source}), 2 vmapped calls of 16 runs: {compile_seconds:.1f} s compiling, "
          f"{train_seconds:.1f} s training; {seconds:.1f} s in all; figure: {figure}")
    return {"bn_ahead": ahead, "plain_stuck": stuck, "bn_min": float(final_bn.min())}


if __name__ == "__main__":
    main()

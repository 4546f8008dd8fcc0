"""`batchnorm_dropout`: a small MLP on scikit-learn's digits with and without BatchNorm and Dropout.

Data: 300 training images (a stratified draw, small enough to overfit) and 360 test images of the
8x8 digits, standardised with the training split's statistics. Network: 64-100-100-10 with ReLU,
logits and `softmax_cross_entropy`, He initialisation; four variants: plain, BatchNorm after each
hidden Dense layer, Dropout(0.2) after each hidden ReLU, and both. Training: SGD, learning rate 0.05,
minibatches of 30, in training mode (batch statistics, dropout masks from fit's key); the test
split is scored after each epoch in evaluation mode (running statistics, no dropout). Figures:
training loss and test accuracy per epoch for the four variants, and the final train-test accuracy
gap. Source: Deep Learning from Scratch 6.3 (Batch Normalization) and 6.4.3 (Dropout).
"""

from __future__ import annotations

import time

import jax
import numpy as np

from ._common import parser, write_metrics
from jaxnet import BatchNorm, Dense, Dropout, Relu, data, evaluate, fit, plot, serial

EPOCHS, BATCH_SIZE, LEARNING_RATE, N_TRAIN, RATE = 40, 30, 0.05, 300, 0.2
LOSS = "softmax_cross_entropy"


def network(batchnorm: bool, dropout: bool):
    """64-100-100-10 ReLU MLP, optionally with BatchNorm after each hidden Dense and Dropout after each ReLU."""
    layers = []
    for _ in range(2):
        layers += [Dense(100)] + ([BatchNorm()] if batchnorm else []) + [Relu] + ([Dropout(RATE)] if dropout else [])
    name = "plain" if not (batchnorm or dropout) else " + ".join(n for n, on in (("BatchNorm", batchnorm),
                                                                                ("Dropout", dropout)) if on)
    return serial(*layers, Dense(10), input_shape=(64,), name=name)


def main(argv: list[str] | None = None) -> dict:
    args = parser("batchnorm_dropout", __doc__.splitlines()[0]).parse_args(argv)
    start = time.perf_counter()
    epochs = 5 if args.quick else EPOCHS
    key = jax.random.key(args.seed)
    x, labels = data.digits()
    x_rest, x_test_raw, y_rest, y_test = data.train_test_split(jax.random.fold_in(key, 0), x, labels,
                                                               test_size=0.2, stratify=labels)
    x_train_raw, _, y_train, _ = data.train_test_split(jax.random.fold_in(key, 1), x_rest, y_rest,
                                                       test_size=1 - N_TRAIN / x_rest.shape[0], stratify=y_rest)
    _, _, x_train, x_test = data.standardize(x_train_raw, x_test_raw)

    runs = {}
    for batchnorm in (False, True):
        for dropout in (False, True):
            net = network(batchnorm, dropout)
            _, params = net.init(jax.random.fold_in(key, 2), (64,))  # the same Dense weights for every variant
            result = fit(net, params, x_train, y_train, loss=LOSS, optimizer="sgd",
                         hyperparams={"learning_rate": LEARNING_RATE}, epochs=epochs, batch_size=BATCH_SIZE,
                         key=jax.random.fold_in(key, 3), validation_data=(x_test, y_test))
            train = evaluate(net, result.params, x_train, y_train, LOSS, state=result.state)
            runs[net.name] = {
                "train_loss": np.asarray(result.history["loss"]),
                "test_accuracy": np.asarray(result.history["val_accuracy"]),
                "final_train_accuracy": float(train["accuracy"]),
                "final_test_accuracy": float(result.history["val_accuracy"][-1]),
                "diverged_epoch": int(result.history["diverged_epoch"]),
            }
    for run in runs.values():
        run["gap"] = run["final_train_accuracy"] - run["final_test_accuracy"]

    fig, (ax_loss, ax_acc) = plot.figure(1, 2, size=(11, 4))
    for name, run in runs.items():
        plot.loss_curve(ax_loss, run["train_loss"], label=name)
        ax_acc.plot(np.arange(1, epochs + 1), run["test_accuracy"], label=name)
    ax_loss.set_title("training loss (training mode)")
    ax_acc.set_title("test accuracy (evaluation mode)")
    ax_acc.set_xlabel("epoch")
    ax_acc.legend()
    figure = plot.save(fig, args.out / "batchnorm_dropout.png")
    seconds = time.perf_counter() - start
    write_metrics(args.out, {"epochs": epochs, "batch_size": BATCH_SIZE, "learning_rate": LEARNING_RATE,
                             "n_train": int(x_train.shape[0]), "n_test": int(x_test.shape[0]), "dropout_rate": RATE,
                             "runs": runs, "seconds": seconds})
    print(f"batchnorm_dropout ({epochs} epochs, {x_train.shape[0]} training digits, {seconds:.1f} s; figure {figure}):")
    for name, run in runs.items():
        print(f"  {name:<22} train acc {run['final_train_accuracy']:.3f}  test acc {run['final_test_accuracy']:.3f}"
              f"  gap {run['gap']:+.3f}  final train loss {run['train_loss'][-1]:.3g}")
    return {name: run["final_test_accuracy"] for name, run in runs.items()}


if __name__ == "__main__":
    main()

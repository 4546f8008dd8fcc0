"""`digits`: scikit-learn's 8x8 handwritten digits, a 64-100-10 ReLU network with softmax cross-entropy.

Data: the 1797 bundled images (pixels / 16), a stratified 80/20 split (1437 train / 360 test), features
standardised with the training split's mean and standard deviation. Network: 64-100-10, ReLU hidden
layer, identity output (logits) and `softmax_cross_entropy`, He-normal initialisation. Training:
minibatches of 32 reshuffled every epoch, AdamW for 30 epochs: Adam (Kingma & Ba 2015) with decoupled
weight decay 0.3 on the weight matrices only, biases excluded (Loshchilov & Hutter 2019;
`jaxnet.regularization.adamw`). This is not the book's L2 regulariser of 6.4.1 (`fit(weight_decay=)`),
which adds 0.5 lambda sum W^2 to the loss: under Adam the two are different updates. Five seeds
(init and shuffles) are trained together in one compiled run with `jax.vmap`; the test split is scored
after every epoch but never used to choose anything. Reports test accuracy, mean and spread over the
seeds. Figures: learning curves, confusion matrix and misclassified test digits of the first seed.
"""

from __future__ import annotations

import time

import jax

from . import _classification as cls
from ._common import parser, write_metrics
from jaxnet import data, mlp, regularization

EPOCHS, BATCH_SIZE, LEARNING_RATE, WEIGHT_DECAY, SEEDS, TARGET = 30, 32, 3e-3, 0.3, 5, 0.97
LOSS = "softmax_cross_entropy"
NET = mlp([64, 100, 10], activation="relu", output_activation="identity")


def adamw(learning_rate: float, weight_decay: float):
    """AdamW decaying NET's weight matrices only (`jaxnet.regularization.adamw`, masked by `NET.decay_mask`)."""
    return regularization.adamw(NET, learning_rate, weight_decay)


def main(argv: list[str] | None = None) -> dict:
    args = parser("digits", __doc__.splitlines()[0]).parse_args(argv)
    start = time.perf_counter()
    epochs, seeds = (5, 2) if args.quick else (EPOCHS, SEEDS)
    key = jax.random.key(args.seed)
    x, labels = data.digits()
    x_train_raw, x_test_raw, y_train, y_test = data.train_test_split(
        jax.random.fold_in(key, 0), x, labels, test_size=0.2, stratify=labels)
    _, _, x_train, x_test = data.standardize(x_train_raw, x_test_raw)

    net = NET
    params, history = cls.train_seeds(net, jax.random.fold_in(key, 1), seeds, (x_train, y_train), (x_test, y_test),
                                      loss=LOSS, optimizer=adamw,
                                      hyperparams={"learning_rate": LEARNING_RATE, "weight_decay": WEIGHT_DECAY},
                                      epochs=epochs, batch_size=BATCH_SIZE)
    cls.warn_if_diverged(history, "digits")
    stats = cls.summary(cls.accuracies(net, params, x_test, y_test, LOSS))

    out = args.out
    figures = [cls.curves_figure(history, f"digits, {seeds} seeds", out / "curves.png")]
    predicted = cls.predictions(net, cls.first_seed(params), x_test)
    matrix, path = cls.confusion_figure(y_test, predicted, 10, "digits: test confusion (first seed)",
                                        out / "confusion.png")
    figures.append(path)
    figures.append(cls.misclassified_figure(x_test_raw, y_test, predicted, (8, 8),
                                            "digits: misclassified test images (first seed)",
                                            out / "misclassified.png"))
    seconds = time.perf_counter() - start
    metrics = {
        "seed": args.seed, "seeds": seeds, "epochs": epochs, "batch_size": BATCH_SIZE,
        "optimizer": "adamw (decoupled decay, weights only)", "learning_rate": LEARNING_RATE,
        "weight_decay": WEIGHT_DECAY,
        "layer_sizes": [64, 100, 10], "n_train": int(x_train.shape[0]), "n_test": int(x_test.shape[0]),
        **stats, "target": TARGET, "final_train_loss": history["loss"][:, -1],
        "final_test_loss": history["val_loss"][:, -1], "confusion_first_seed": matrix,
        "diverged_epoch": history["diverged_epoch"], "seconds": seconds,
    }
    write_metrics(out, metrics)
    print(cls.describe("digits", stats, seeds, TARGET, args.quick))
    print(f"  {metrics['n_train']} train / {metrics['n_test']} test images, {epochs} epochs; "
          f"{seconds:.1f} s; figures: {', '.join(str(f) for f in figures)}")
    return {"acc_mean": stats["test_accuracy_mean"], "acc_std": stats["test_accuracy_std"]}


if __name__ == "__main__":
    main()

"""`breast_cancer`: scikit-learn's Wisconsin breast cancer set, a 30-16-1 sigmoid network with BCE.

Data: 569 tumours, 30 features, labels 0 = malignant, 1 = benign; a stratified 80/20 split (455 train
/ 114 test); features standardised with the training split's mean and standard deviation only.
Network: 30-16-1, sigmoid hidden and output units (as in the tutorial), He-normal initialisation,
`binary_crossentropy` on the output probability. Training: minibatch SGD, learning rate 0.1, 100
epochs of 13 batches of 35 (455 = 13 x 35, so no partial last batch). Five seeds (init and shuffles)
trained together with `jax.vmap`. Reports test accuracy, mean and spread over the seeds. Figures:
learning curves, confusion matrix of the first seed.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from . import _classification as cls
from ._common import parser, write_metrics
from jaxnet import data, mlp

EPOCHS, BATCH_SIZE, LEARNING_RATE, SEEDS, TARGET = 100, 35, 0.1, 5, 0.95
LOSS = "binary_crossentropy"
CLASS_NAMES = ["malignant", "benign"]


def main(argv: list[str] | None = None) -> dict:
    args = parser("breast_cancer", __doc__.splitlines()[0]).parse_args(argv)
    start = time.perf_counter()
    epochs, seeds = (10, 2) if args.quick else (EPOCHS, SEEDS)
    key = jax.random.key(args.seed)
    x, labels = data.breast_cancer()
    x_train, x_test, y_train, y_test = data.train_test_split(
        jax.random.fold_in(key, 0), x, labels, test_size=0.2, stratify=labels)
    _, _, x_train, x_test = data.standardize(x_train, x_test)
    # BCE takes float targets shaped like the single output unit: (n, 1).
    t_train, t_test = (y[:, None].astype(jnp.float32) for y in (y_train, y_test))

    net = mlp([30, 16, 1], activation="sigmoid")
    params, history = cls.train_seeds(net, jax.random.fold_in(key, 1), seeds, (x_train, t_train), (x_test, t_test),
                                      loss=LOSS, optimizer="sgd", hyperparams={"learning_rate": LEARNING_RATE},
                                      epochs=epochs, batch_size=BATCH_SIZE)
    cls.warn_if_diverged(history, "breast_cancer")
    stats = cls.summary(cls.accuracies(net, params, x_test, t_test, LOSS))

    out = args.out
    figures = [cls.curves_figure(history, f"breast cancer, {seeds} seeds", out / "curves.png")]
    predicted = cls.predictions(net, cls.first_seed(params), x_test, from_logits=False)
    matrix, path = cls.confusion_figure(y_test, predicted, 2, "breast cancer: test (first seed)",
                                        out / "confusion.png", labels=CLASS_NAMES)
    figures.append(path)
    seconds = time.perf_counter() - start
    metrics = {
        "seed": args.seed, "seeds": seeds, "epochs": epochs, "batch_size": BATCH_SIZE, "optimizer": "sgd",
        "learning_rate": LEARNING_RATE, "layer_sizes": [30, 16, 1], "n_train": int(x_train.shape[0]),
        "n_test": int(x_test.shape[0]), **stats, "target": TARGET,
        "final_train_loss": history["loss"][:, -1], "final_test_loss": history["val_loss"][:, -1],
        "confusion_first_seed": matrix, "class_names": CLASS_NAMES,
        "diverged_epoch": history["diverged_epoch"], "seconds": seconds,
    }
    write_metrics(out, metrics)
    print(cls.describe("breast_cancer", stats, seeds, TARGET, args.quick))
    print(f"  {metrics['n_train']} train / {metrics['n_test']} test tumours, {epochs} epochs; "
          f"{seconds:.1f} s; figures: {', '.join(str(f) for f in figures)}")
    return {"acc_mean": stats["test_accuracy_mean"], "acc_std": stats["test_accuracy_std"]}


if __name__ == "__main__":
    main()

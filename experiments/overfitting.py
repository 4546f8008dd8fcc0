"""`overfitting`: 300 MNIST images, a 6 x 100 ReLU net; no regularisation vs L2 weight decay vs dropout (book 6.4).

The book's overfit_weight_decay.py and overfit_dropout.py (Deep Learning from Scratch 6.4.1-6.4.3,
figures 6-20, 6-21 and 6-23): the first 300 MNIST training images, a 784-(100 x 6)-10 ReLU network
with He initialisation, softmax cross-entropy, SGD at learning rate 0.01 on minibatches of 100, 200
epochs; three settings: no regularisation, the book's L2 weight decay with lambda 0.1 (`fit(...,
weight_decay=0.1)`: 0.5 lambda sum W^2 over the 7 weight matrices), and dropout with rate 0.2 after
every hidden ReLU (the book's variant, `Dropout(0.2, book=True)`; the book trains this one for 300
epochs, `--full` does too). Training and test accuracy are recorded after every epoch in evaluation
mode. All three start from the same weights (dropout has no params) and see the same batches; the
first two train together (`jax.vmap` of `jaxnet.fit` over weight_decay = [0, 0.1]), dropout, a different
network, in a second call.

Book, lambda 0.1 at epoch 200: train 0.927, test 0.721; dropout (300 epochs): train 0.67, test
0.548; without regularisation the training accuracy reaches 1.0 (figure 6-20). Target: each
regulariser shrinks the train-test gap against no regularisation.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from . import _techniques as tech
from ._common import write_metrics
from jaxnet import Dense, Dropout, Relu, mlp, serial

HIDDEN, LAYERS, N_TRAIN, BATCH_SIZE, LEARNING_RATE = 100, 6, 300, 100, 0.01  # tech.sgd's default rate
EPOCHS, DROPOUT_EPOCHS_FULL, QUICK_EPOCHS = 200, 300, 3
WEIGHT_DECAY, DROPOUT = 0.1, 0.2
BOOK = {"weight decay": {"train": 0.927, "test": 0.721}, "dropout": {"train": 0.67, "test": 0.548}}


def dropout_params(net, plain_params):
    """The dropout network's params holding the plain network's Dense params, in order (also for params
    stacked over members)."""
    dense = iter(p for p in plain_params if p)
    return tuple(next(dense) if isinstance(layer, Dense) else {} for layer in net.layers)


def curves_figure(curves: dict, path):
    panels = [(f"{label}: gap {train[-1] - test[-1]:.3f}", train, test) for label, (train, test) in curves.items()]
    return tech.curves_grid(panels, path, columns=len(panels), labels=("train", "test"), size=(12.6, 3.6),
                            title=f"{N_TRAIN} training images, 6 x 100 ReLU, SGD 0.01 (book figures 6-20, 6-21, 6-23)")


def main(argv: list[str] | None = None) -> dict:
    args, mnist, start = tech.start("overfitting", __doc__, argv, full="dropout for 300 epochs")
    if mnist is None:
        return tech.skipped("overfitting")
    epochs = QUICK_EPOCHS if args.quick else EPOCHS
    dropout_epochs = DROPOUT_EPOCHS_FULL if args.full and not args.quick else epochs
    key = jax.random.key(args.seed)
    x, y = np.asarray(mnist.x_train)[:N_TRAIN], np.asarray(mnist.y_train)[:N_TRAIN]
    eval_sets = {"train": (x, y), "test": (mnist.x_test, mnist.y_test)}
    net = mlp([784] + [HIDDEN] * LAYERS + [10], activation="relu", output_activation="identity")
    both = tech.init_members([net, net], jax.random.fold_in(key, 0))  # numpy arrays: slicing compiles nothing
    shared = dict(make_optimizer=tech.sgd, batch_size=BATCH_SIZE, key=jax.random.fold_in(key, 1), eval_sets=eval_sets)
    plain = tech.train_members(net, both, x, y, weight_decay=jnp.array([0.0, WEIGHT_DECAY]),
                               rounds=epochs, progress="overfitting (none, weight decay)", **shared)
    drop_net = serial(*[layer for _ in range(LAYERS) for layer in (Dense(HIDDEN), Relu, Dropout(DROPOUT, book=True))],
                      Dense(10), input_shape=(784,), name="784-(100 ReLU dropout)x6-10")
    drop = tech.train_members(drop_net, dropout_params(drop_net, jax.tree.map(lambda a: a[:1], both)), x, y,
                              rounds=dropout_epochs,
                              progress="overfitting (dropout)", **shared)
    curves = {"none": (plain["train_accuracy"][0], plain["test_accuracy"][0]),
              f"weight decay {WEIGHT_DECAY:g}": (plain["train_accuracy"][1], plain["test_accuracy"][1]),
              f"dropout {DROPOUT:g}": (drop["train_accuracy"][0], drop["test_accuracy"][0])}
    for run, labels in ((plain, ["none", "weight decay"]), (drop, ["dropout"])):
        warning = tech.divergence_line(run["diverged_round"], labels, "overfitting")
        if warning:
            print(warning)
    final = {label: {"train": float(tr[-1]), "test": float(te[-1]), "gap": float(tr[-1] - te[-1]), "epochs": len(tr)}
             for label, (tr, te) in curves.items()}
    labels = list(curves)
    if dropout_epochs != epochs:  # the dropout run at the others' epoch count too
        tr, te = curves[labels[2]][0][epochs - 1], curves[labels[2]][1][epochs - 1]
        final[labels[2]][f"at_epoch_{epochs}"] = {"train": float(tr), "test": float(te), "gap": float(tr - te)}
    gaps = {label: final[label]["gap"] for label in labels}
    targets = {f"{label} shrinks the gap": gaps[label] < gaps["none"] for label in labels[1:]}
    figure = curves_figure(curves, args.out / "overfitting.png")
    seconds = time.perf_counter() - start
    compile_seconds = plain["compile_seconds"] + drop["compile_seconds"]
    train_seconds = plain["seconds"] + drop["seconds"]
    write_metrics(args.out, {
        "seed": args.seed, "source": mnist.source, "n_train": N_TRAIN, "n_test": int(mnist.x_test.shape[0]),
        "epochs": epochs, "dropout_epochs": dropout_epochs, "batch_size": BATCH_SIZE, "learning_rate": LEARNING_RATE,
        "weight_decay": WEIGHT_DECAY, "dropout": DROPOUT, "final": final, "book": BOOK, "targets": targets,
        "curves": {label: {"train": tr, "test": te} for label, (tr, te) in curves.items()},
        "compile_seconds": compile_seconds, "train_seconds": train_seconds, "seconds": seconds})
    f = [final[label] for label in labels]
    met = ", ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in targets.items())
    print(f"overfitting: train / test / gap: none {f[0]['train']:.3f} / {f[0]['test']:.3f} / {f[0]['gap']:.3f} "
          f"(book: train 1.0); weight decay {WEIGHT_DECAY:g} {f[1]['train']:.3f} / {f[1]['test']:.3f} / "
          f"{f[1]['gap']:.3f} (book 0.927 / 0.721 / 0.206 at epoch 200); dropout {DROPOUT:g} after {dropout_epochs} "
          f"epochs {f[2]['train']:.3f} / {f[2]['test']:.3f} / {f[2]['gap']:.3f} (book 0.67 / 0.548 / 0.122 after "
          f"300); targets{' (a --quick run is too short)' if args.quick else ''}: {met}")
    print(f"  {N_TRAIN} training and {mnist.x_test.shape[0]} test images ({mnist.source}); {compile_seconds:.1f} s "
          f"compiling, {train_seconds:.1f} s training; {seconds:.1f} s in all; figure: {figure}")
    return {f"gap_{label.split()[0]}": round(gap, 4) for label, gap in gaps.items()}


if __name__ == "__main__":
    main()

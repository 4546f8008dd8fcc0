"""`cnn`: the book's SimpleConvNet on MNIST (chapter 7): im2col convolution and pooling, hand backward, Adam.

Network (`jaxnet.simple_convnet`): Conv2D 30 filters 5 x 5, stride 1, no padding -> ReLU -> max-pool
2 x 2 stride 2 -> Flatten -> Dense 100 -> ReLU -> Dense 10 (logits), softmax cross-entropy, He-normal
initialisation; Adam at learning rate 1e-3 on minibatches of 100 reshuffled every epoch, gradients by
the layers' hand-derived backward passes (`jaxnet.fit`, grad="backprop"). Images are channels first,
(n, 1, 28, 28), pixels in [0, 1]. As the book's ch07/train_convnet.py, except for the initialisation
(the book's `0.01 * randn`, `--init book`, learns more slowly at first; its filters end up smoother,
as in the book's figure 7-24).

Data: the IDX files in `--data-dir`, else `jaxnet.data.load_mnist`'s default folder
(`$JAXNET_DATA_DIR/mnist`), downloaded first with `--download`. By default the stratified 8,000 /
2,000 split of the 10,000 t10k images (the split `jaxnet.data.load_mnist` makes, used even when the
training files are present), 20 epochs (1,600 steps; the book's count), target test accuracy 0.975;
`python -m experiments all` runs 8 epochs (`--epochs 8`) to stay within its time budget. `--full`:
the standard 60,000 / 10,000 split for 20 epochs (the book's run, 98.96% in the book; target 0.989).
`--quick`: 500 training and 500 test images, 1 epoch (a smoke test of the pipeline).

Figures: the 30 first-layer filters before and after training (the book's figure 7-24), the 30
feature maps of one test digit after the convolution and ReLU, the learning curves, the confusion
matrix and the misclassified test digits. A progress bar counts epochs (one `jaxnet.fit` call, with
the test curve evaluated inside it).
"""

from __future__ import annotations

import time

import jax
import numpy as np
from matplotlib.figure import Figure

import jaxnet
from . import _classification as cls
from ._common import mnist_or_skip, parser, write_metrics
from jaxnet import data, fit, metrics, optim, plot

BATCH_SIZE, LEARNING_RATE = 100, 1e-3
EPOCHS = {"t10k": 20, "full": 20, "quick": 1}  # 20: the book's train_convnet.py
TARGET = {"t10k": 0.975, "full": 0.989}
QUICK_SIZE = 500
EVAL_BATCH = 1000  # evaluation in chunks: the im2col columns of 10,000 images would take 576 MB
LOSS = "softmax_cross_entropy"
T10K_SPLIT = (8000, 2000)


def predict_classes(net, params, x) -> np.ndarray:
    """Arg-max classes (n,) of `net` on x, evaluated `EVAL_BATCH` images at a time."""
    apply = jax.jit(net.apply)
    return np.concatenate([np.asarray(metrics.predicted_classes(apply(params, x[i:i + EVAL_BATCH])))
                           for i in range(0, x.shape[0], EVAL_BATCH)])


def load(p, args) -> tuple[data.MNIST | None, str]:
    """`(mnist, where)`: MNIST from --data-dir, else `jaxnet.data.load_mnist`'s default folder, fetched
    first with --download; `(None, message)` (printed) when the default folder holds no MNIST files,
    so `python -m experiments all` runs anywhere. A --data-dir without the files is an error."""
    mnist = mnist_or_skip("cnn", p, args.data_dir, hint=", or add --download", t10k_split=T10K_SPLIT,
                          download=args.download)
    if mnist is None:
        return None, "no MNIST files"
    return mnist, str(args.data_dir or "the default MNIST folder")


def split(mnist: data.MNIST, full: bool, quick: bool):
    """(x_train, y_train, x_test, y_test, source): images as (n, 1, 28, 28). Without `full`, the t10k
    split even when the training files are there (the split `load_mnist` makes from t10k alone)."""
    if mnist.source == "train+t10k" and not full:
        x_tr, x_te, y_tr, y_te = data.train_test_split(
            jax.random.PRNGKey(data.MNIST_SPLIT_SEED), mnist.x_test, mnist.y_test, test_size=T10K_SPLIT[1],
            stratify=np.asarray(mnist.y_test))
        source = f"t10k split {T10K_SPLIT[0]}/{T10K_SPLIT[1]}"
    else:
        x_tr, y_tr, x_te, y_te, source = mnist
    if quick:
        x_tr, y_tr, x_te, y_te = x_tr[:QUICK_SIZE], y_tr[:QUICK_SIZE], x_te[:QUICK_SIZE], y_te[:QUICK_SIZE]
    return x_tr[:, None], y_tr, x_te[:, None], y_te, source


def filters_figure(before, after, path, init="he"):
    """The first layer's filters (FN, 1, FH, FW) before and after training and their change, each
    filter scaled to its own range, 10 per row (the book's figure 7-24, plus the change: after He
    initialisation much of a filter's random pattern survives training). `init` ("he" or "book") is
    named in the titles."""
    before, after = np.asarray(before), np.asarray(after)
    rows = -(-before.shape[0] // 10)
    fig = Figure(figsize=(8.0, 6.6 * rows / 3), layout="constrained")
    panels = ((before, "before training"), (after, "after training"), (after - before, "change (after - before)"))
    for sub, (W, title) in zip(fig.subfigures(3, 1), panels):
        axes = sub.subplots(rows, 10, squeeze=False)
        for ax in axes.ravel():
            ax.set_axis_off()
        for ax, w in zip(axes.ravel(), W[:, 0]):
            ax.imshow(w, cmap="gray_r", interpolation="nearest")
        start = "He init" if init == "he" else "the book's init (0.01 randn)"
        sub.suptitle(f"first-layer filters {W.shape[2]} x {W.shape[3]} from {start}, {title}", fontsize=10)
    return plot.save(fig, path)


def feature_maps_figure(image, maps, label, path):
    """One input digit (1, 28, 28) and its feature maps (FN, OH, OW) after the convolution and ReLU."""
    maps = np.asarray(maps)
    columns = 10
    rows = 1 + -(-maps.shape[0] // columns)
    fig, axes = plot.figure(rows, columns, size=(1.0 * columns, 1.05 * rows + 0.3), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    axes[0, 0].imshow(np.asarray(image)[0], cmap="gray_r")
    axes[0, 0].set_title(f"input ({label})", fontsize=8)
    for i, (ax, m) in enumerate(zip(axes[1:].ravel(), maps)):
        ax.imshow(m, cmap="gray_r")
        ax.set_title(f"filter {i}", fontsize=7)
    fig.suptitle("feature maps after Conv2D + ReLU (24 x 24 each)", fontsize=10)
    return plot.save(fig, path)


def curves_figure(history: dict, target: float, title: str, path):
    """Training and test loss per epoch; test accuracy per epoch against the target."""
    fig, (ax_loss, ax_acc) = plot.figure(1, 2, size=(9.5, 3.8))
    fig.suptitle(title, fontsize=11)
    plot.loss_curve(ax_loss, history["loss"], label="training (minibatch mean)")
    plot.loss_curve(ax_loss, history["val_loss"], label="test, end of epoch")
    plot.loss_curve(ax_acc, history["val_accuracy"], label="test", log=False)
    ax_acc.axhline(target, color="gray", linestyle=":", label=f"target {target}")
    ax_acc.set_ylabel("accuracy")
    ax_acc.legend()
    return plot.save(fig, path)


def main(argv: list[str] | None = None) -> dict:
    p = parser("cnn", __doc__.splitlines()[0])
    p.add_argument("--download", action="store_true",
                   help="download missing MNIST files (checksum-verified) into --data-dir or the default folder")
    p.add_argument("--full", action="store_true", help="train on the 60,000 training images (needs the train files)")
    p.add_argument("--init", choices=("he", "book"), default="he",
                   help="weight initialisation: He-normal (default) or the book's 0.01 * randn")
    p.add_argument("--epochs", type=int, default=None,
                   help="override the number of epochs (ignored with --quick; `all` runs 8)")
    args = p.parse_args(argv)
    start = time.perf_counter()
    mnist, directory = load(p, args)
    if mnist is None:
        return {"skipped": directory}
    if args.full and mnist.source != "train+t10k":
        p.error(f"--full: {directory} holds only the t10k files; add train-*-ubyte[.gz] or use --download")
    x_train, y_train, x_test, y_test, source = split(mnist, args.full, args.quick)
    kind = "quick" if args.quick else "full" if args.full else "t10k"
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs: expected a positive int, got {args.epochs}")
    epochs = EPOCHS[kind] if args.quick or args.epochs is None else args.epochs
    target = TARGET.get(kind, TARGET["t10k"])

    net = jaxnet.simple_convnet(W_init="he_normal" if args.init == "he" else "normal")
    init_key, shuffle_key = jax.random.split(jax.random.key(args.seed))
    params = jax.jit(lambda k: net.init(k)[1])(init_key)  # one compilation instead of many eager ops
    filters_before = params[0]["W"]
    optimizer = optim.optimizer("adam", LEARNING_RATE)
    validation = (x_test[:2000], y_test[:2000])  # per-epoch curve; the final accuracy uses every test image
    train_start = time.perf_counter()
    result = fit(net, params, x_train, y_train, loss=LOSS, optimizer=optimizer, epochs=epochs, batch_size=BATCH_SIZE,
                 key=shuffle_key, validation_data=validation, eval_batch_size=EVAL_BATCH, progress="cnn")
    params, history = result.params, {k: np.asarray(v) for k, v in jax.device_get(result.history).items()}
    diverged_at = None if history["diverged_epoch"] < 0 else int(history["diverged_epoch"])
    if diverged_at is not None:  # fit kept the params from before the diverging epoch; the later ones are NaN
        history = {k: v[:diverged_at] for k, v in history.items() if k in ("loss", "val_loss", "val_accuracy")}
    train_seconds = time.perf_counter() - train_start
    predicted = predict_classes(net, params, x_test)
    y_test = np.asarray(y_test)
    accuracy = float(np.mean(predicted == y_test))

    out = args.out
    figures = [filters_figure(filters_before, params[0]["W"], out / "filters.png", args.init)]
    digit = x_test[:1]
    feature_maps = jax.jit(lambda p, x: net.forward(p, x)[2])(params, digit)[0]  # after Conv2D and ReLU
    figures.append(feature_maps_figure(digit[0], feature_maps, int(y_test[0]),
                                       out / "feature_maps.png"))
    figures.append(curves_figure(history, target, f"SimpleConvNet on MNIST ({source}), Adam 1e-3, batch 100",
                                 out / "curves.png"))
    matrix, path = cls.confusion_figure(y_test, predicted, 10, "SimpleConvNet: test confusion", out / "confusion.png")
    figures.append(path)
    figures.append(cls.misclassified_figure(x_test, y_test, predicted, (28, 28), "SimpleConvNet: misclassified test "
                                            "digits", out / "misclassified.png"))
    seconds = time.perf_counter() - start
    metrics_ = {
        "seed": args.seed, "data_dir": str(directory), "source": source, "n_train": int(x_train.shape[0]),
        "n_test": int(x_test.shape[0]), "epochs": epochs, "iterations": epochs * -(-x_train.shape[0] // BATCH_SIZE),
        "batch_size": BATCH_SIZE, "optimizer": "adam", "learning_rate": LEARNING_RATE, "network": net.name,
        "init": args.init,
        "test_accuracy": accuracy, "target": target, "val_accuracy_per_epoch": history["val_accuracy"],
        "train_loss_per_epoch": history["loss"], "val_loss_per_epoch": history["val_loss"],
        "diverged_epoch": -1 if diverged_at is None else diverged_at, "confusion": matrix,
        "train_seconds": train_seconds, "seconds": seconds,
    }
    write_metrics(out, metrics_)
    short = " (a --quick run is too short to reach it)" if args.quick else (
        f" (a shortened run: {epochs} of {EPOCHS[kind]} epochs)" if epochs < EPOCHS[kind] else "")
    met = "met" if accuracy >= target else f"NOT met{short}"
    print(f"cnn ({source}): test accuracy {accuracy:.4f} after {epochs} epochs; target >= {target}: {met}")
    if diverged_at is not None:
        print(f"warning: cnn diverged (non-finite loss or params) in epoch {diverged_at}: training stopped there")
    print(f"  {metrics_['n_train']} train / {metrics_['n_test']} test images from {directory}; "
          f"{train_seconds:.1f} s training, {seconds:.1f} s in all; figures: {', '.join(str(f) for f in figures)}")
    return {"acc": accuracy, "epochs": epochs}


if __name__ == "__main__":
    main()

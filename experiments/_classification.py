"""Shared plumbing for the classification experiments (digits, breast_cancer, mnist).

`train_seeds` trains several networks at once (`jaxnet.train.fit_ensemble`: `jax.vmap` over PRNG
keys of init + fit, one compiled run); `accuracies` scores them; the figure helpers draw the learning
curves of all seeds, a confusion matrix and a grid of misclassified images.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnet import Network, evaluate, metrics, plot
from jaxnet.train import fit_ensemble
from jaxnet.train import divergence_warning


def train_seeds(net: Network, key: jax.Array, n_seeds: int, train: tuple, test: tuple, *, loss: str,
                optimizer: Any, hyperparams: dict, epochs: int, batch_size: int) -> tuple[Any, dict]:
    """Train `n_seeds` networks together in one compiled call (`jaxnet.train.fit_ensemble`, a
    `jax.vmap` of init + fit over PRNG keys).

    Seed i uses `key_i = jax.random.split(key, n_seeds)[i]`: it initialises its params from
    `split(key_i)[0]` and shuffles its minibatches with `split(key_i)[1]`; every seed records the loss
    and accuracy on `test` after each epoch.

    Args:
        optimizer, hyperparams: as `fit_ensemble` takes them (a `jaxnet.optim` name or a callable, and
            its keyword arguments, shared by all seeds).

    Returns:
        `(params, history)`: params with a leading seed axis (n_seeds, ...); history arrays of shape
        (n_seeds, epochs) ('loss', 'val_loss', 'val_accuracy', 'learning_rate') and
        'diverged_epoch' (n_seeds,).
    """
    init_keys, shuffle_keys = jax.vmap(jax.random.split, out_axes=1)(jax.random.split(key, n_seeds))
    result = fit_ensemble(net, *train, keys=init_keys, key=shuffle_keys, loss=loss, optimizer=optimizer,
                          hyperparams=hyperparams, epochs=epochs, batch_size=batch_size, validation_data=test)
    return result.params, result.history


def warn_if_diverged(history: dict, name: str) -> None:
    """Print `jaxnet.train.divergence_warning`'s line when any seed's run diverged."""
    warning = divergence_warning(history, name)
    if warning:
        print(warning)


def accuracies(net: Network, params: Any, x: jax.Array, y: jax.Array, loss: str) -> np.ndarray:
    """Accuracy of each seed's params (leading seed axis) on (x, y): float array (n_seeds,)."""
    return np.asarray(jax.vmap(lambda p: evaluate(net, p, x, y, loss)["accuracy"])(params))


def summary(acc: np.ndarray) -> dict:
    """Mean, sample standard deviation (ddof 1; 0 for one seed), min and max of per-seed accuracies."""
    acc = np.asarray(acc, np.float64)
    return {"test_accuracy": acc, "test_accuracy_mean": float(acc.mean()),
            "test_accuracy_std": float(acc.std(ddof=1)) if acc.size > 1 else 0.0,
            "test_accuracy_min": float(acc.min()), "test_accuracy_max": float(acc.max())}


def first_seed(tree: Any) -> Any:
    """Lane 0 of a pytree with a leading seed axis."""
    return jax.tree.map(lambda a: a[0], tree)


def predictions(net: Network, params: Any, x: jax.Array, *, from_logits: bool = True) -> np.ndarray:
    """Predicted classes (n,) int32 of one network (see `jaxnet.metrics.predicted_classes`)."""
    return np.asarray(metrics.predicted_classes(net.apply(params, x), from_logits=from_logits))


def curves_figure(history: dict, title: str, path):
    """Two panels over epochs, mean and min-max band over seeds: training and test loss; test accuracy."""
    fig, (ax_loss, ax_acc) = plot.figure(1, 2, size=(9.5, 3.9))
    fig.suptitle(f"{title}: mean and min-max band over seeds", fontsize=11)
    plot.loss_curve(ax_loss, history["loss"], label="training (minibatch mean)")
    plot.loss_curve(ax_loss, history["val_loss"], label="test, end of epoch")
    ax_loss.set_title("loss")
    plot.loss_curve(ax_acc, history["val_accuracy"], label="test", log=False)
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_title("test accuracy")
    return plot.save(fig, path)


def confusion_figure(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, title: str, path,
                     labels=None) -> tuple[np.ndarray, Any]:
    """The confusion matrix of one network (true class on rows) as an int array and a PNG."""
    matrix = np.asarray(metrics.confusion_matrix(jnp.asarray(y_true), jnp.asarray(y_pred), n_classes))
    size = (4.6, 4.2) if n_classes > 2 else (3.6, 3.2)
    fig, ax = plot.figure(1, 1, size=size)
    plot.confusion(ax, matrix, labels=labels)
    ax.set_title(title, fontsize=10)
    return matrix, plot.save(fig, path)


def misclassified_figure(images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, image_shape: tuple,
                         title: str, path, *, max_images: int = 24, columns: int = 8):
    """A grid of up to `max_images` misclassified images (test order), each titled 'true -> predicted'."""
    wrong = np.flatnonzero(y_true != y_pred)[:max_images]
    rows = max(1, -(-len(wrong) // columns))
    fig, axes = plot.figure(rows, columns, size=(1.2 * columns, 1.35 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, i in zip(axes.ravel(), wrong):
        ax.imshow(np.asarray(images[i]).reshape(image_shape), cmap="gray_r")
        ax.set_title(f"{int(y_true[i])} -> {int(y_pred[i])}", fontsize=9, color="firebrick")
    fig.suptitle(f"{title}: {len(wrong)} of {int(np.sum(y_true != y_pred))}", fontsize=10)
    return plot.save(fig, path)


def describe(name: str, stats: dict, n_seeds: int, target: float, quick: bool = False) -> str:
    """One line: 'name: test accuracy mean +- std (min .. max) over N seeds; target >= t met/NOT met'."""
    met = "met" if stats["test_accuracy_mean"] >= target else "NOT met"
    if quick:
        met += " (a --quick run is too short to reach it)"
    return (f"{name}: test accuracy {stats['test_accuracy_mean']:.4f} +- {stats['test_accuracy_std']:.4f} "
            f"(min {stats['test_accuracy_min']:.4f}, max {stats['test_accuracy_max']:.4f}) over {n_seeds} seeds "
            f"trained together with jax.vmap; target >= {target}: {met}")

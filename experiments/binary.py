"""`binary`: the tutorial's two-Gaussian classification, 2-8-4-1 sigmoid, BCE, 2000 epochs, lr 0.5.

1000 training points (500 per class: means (2, 2) and (6, 6), covariances [[1, .5], [.5, 1]] and
[[1, -.5], [-.5, 1]]), standardised with the training statistics, and 1000 held-out points from the
same distributions. Trained with the tutorial's gradient scaling (its numpy code, = lr 0.5 / 1000)
and with the true gradient; reports held-out accuracy for both. Figure: data, predicted classes,
loss curves, decision boundary.

Both runs are saved to `OUT/checkpoint.npz` (params, optimizer states, settings); `--resume`
continues them from there for another EPOCHS epochs.
"""

from __future__ import annotations

import jax
import numpy as np

from ._common import parser, save_runs, start_or_resume, write_metrics
from jaxnet import data, evaluate, fit, mlp, optim, plot
from jaxnet.train import divergence_warning

EPOCHS, LEARNING_RATE, N = 2000, 0.5, 1000


def main(argv: list[str] | None = None) -> dict:
    p = parser("binary", __doc__.splitlines()[0])
    p.add_argument("--resume", action="store_true",
                   help="continue both runs from OUT/checkpoint.npz for another EPOCHS epochs")
    args = p.parse_args(argv)
    epochs = 500 if args.quick else EPOCHS
    k_train, k_test, k_init = jax.random.split(jax.random.key(args.seed), 3)
    x_raw, y = data.gaussian_blobs(k_train, N)
    x_test_raw, y_test = data.gaussian_blobs(k_test, N)
    _, _, x, x_test = data.standardize(x_raw, x_test_raw)

    net = mlp([2, 8, 4, 1], activation="sigmoid")
    _, params0 = net.init(k_init)
    optimizer = optim.sgd(LEARNING_RATE)
    config = {"experiment": "binary", "layer_sizes": [2, 8, 4, 1], "activation": "sigmoid",
              "loss": "binary_crossentropy", "optimizer": "sgd", "learning_rate": LEARNING_RATE, "seed": args.seed,
              "n_train": N}
    start, states, done = start_or_resume(
        args, {"true_gradient": params0, "tutorial_scaling": params0}, optimizer, config)
    runs = {}
    for label, scaling in (("true_gradient", False), ("tutorial_scaling", True)):
        params, _, states[label], history = fit(net, start[label], x, y, loss="binary_crossentropy",
                                             optimizer=optimizer, epochs=epochs, tutorial_scaling=scaling,
                                             opt_state=states[label])
        if (warning := divergence_warning(history, f"binary ({label})")):
            print(warning)
        runs[label] = (params, history, evaluate(net, params, x_test, y_test, "binary_crossentropy"))
    save_runs(args, {k: r[0] for k, r in runs.items()}, states, config, done + epochs)

    params, history, _ = runs["true_gradient"]
    fig, axes = plot.figure(2, 2, size=(9, 8))
    xs, ys = np.asarray(x), np.asarray(y).ravel()
    axes[0, 0].scatter(xs[:, 0], xs[:, 1], c=ys, cmap="RdBu_r", s=8, edgecolors="none")
    axes[0, 0].set_title("training data (standardised)")
    predicted = np.asarray(net.apply(params, x)).ravel() > 0.5
    axes[0, 1].scatter(xs[:, 0], xs[:, 1], c=predicted, cmap="RdBu_r", s=8, edgecolors="none")
    axes[0, 1].set_title("predicted classes (true gradient)")
    for label, (_, hist, _) in runs.items():
        plot.loss_curve(axes[1, 0], hist["loss"], label=label.replace("_", " "))
    axes[1, 0].set_title("BCE per epoch" + (f" (resumed after {done} epochs)" if done else ""))
    plot.decision_boundary(axes[1, 1], lambda g: net.apply(params, g), x_test, y_test)
    axes[1, 1].set_title("decision boundary, held-out points")
    figure = plot.save(fig, args.out / "binary.png")

    metrics = {"epochs": epochs, "epochs_total": done + epochs, "resumed_from_epoch": done,
               "learning_rate": LEARNING_RATE, "seed": args.seed, "n_train": N, "n_test": N}
    for label, (_, hist, ev) in runs.items():
        metrics[f"test_accuracy_{label}"] = float(ev["accuracy"])
        metrics[f"test_loss_{label}"] = float(ev["loss"])
        metrics[f"final_train_loss_{label}"] = float(hist["loss"][-1])
        metrics[f"diverged_epoch_{label}"] = int(hist["diverged_epoch"])
    write_metrics(args.out, metrics)
    print(f"binary: held-out accuracy {metrics['test_accuracy_true_gradient']:.4f} with the true gradient, "
          f"{metrics['test_accuracy_tutorial_scaling']:.4f} with the tutorial's scaling "
          f"(final BCE {metrics['final_train_loss_true_gradient']:.4f} vs "
          f"{metrics['final_train_loss_tutorial_scaling']:.4f}); figure {figure}")
    return {"acc_true": metrics["test_accuracy_true_gradient"],
            "acc_tutorial": metrics["test_accuracy_tutorial_scaling"]}


if __name__ == "__main__":
    main()

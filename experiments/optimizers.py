"""`optimizers`: the book's comparison of SGD, Momentum, AdaGrad and Adam (Deep Learning from Scratch 6.1.7).

Part 1, f(x, y) = x^2 / 20 + y^2 from (-7, 2), 30 steps, with the book's rules (`book=True`) and
rates (SGD 0.95, Momentum 0.1, AdaGrad 1.5, Adam 0.3): a 2x2 figure of the paths over the contours
and each optimizer's final distance to the minimum (0, 0). Part 2, the book's second comparison on
real data: scikit-learn's 8x8 digits (1400 training and 397 test images, stratified), a 64-100-10
ReLU network with softmax cross-entropy, minibatches of 100, 30 epochs, the book's default rates
(SGD, Momentum and AdaGrad 0.01, Adam 0.001): the training loss per epoch of each optimizer and its
test accuracy. Part 2 is skipped, with a message, when scikit-learn is not installed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._common import parser, write_metrics
from jaxnet import data, evaluate, fit, mlp, optim, plot

START, STEPS = (-7.0, 2.0), 30
PATH_RATES = {"sgd": 0.95, "momentum": 0.1, "adagrad": 1.5, "adam": 0.3}  # the book's figure 6-8
DIGITS_RATES = {"sgd": 0.01, "momentum": 0.01, "adagrad": 0.01, "adam": 0.001}  # the book's defaults
DIGITS_EPOCHS, BATCH = 30, 100
LABELS = {"sgd": "SGD", "momentum": "Momentum", "adagrad": "AdaGrad", "adam": "Adam"}


def f(p: jax.Array) -> jax.Array:
    """The book's test function x^2 / 20 + y^2 (eq. 6.2), minimum 0 at (0, 0)."""
    return p[0] ** 2 / 20.0 + p[1] ** 2


def path(name: str, learning_rate: float, steps: int = STEPS) -> np.ndarray:
    """The (steps + 1, 2) points visited by the book's rule `name` from START."""
    tx = optim.optimizer(name, learning_rate, book=True)

    def step(carry, _):
        p, state = carry
        updates, state = tx.update(jax.grad(f)(p), state, p)
        p = optax.apply_updates(p, updates)
        return (p, state), p

    p0 = jnp.array(START)
    _, points = jax.lax.scan(step, (p0, tx.init(p0)), None, length=steps)
    return np.concatenate([np.asarray(p0)[None], np.asarray(points)])


def paths_figure(paths: dict, out):
    fig, axes = plot.figure(2, 2, size=(9, 7))
    gx, gy = np.meshgrid(np.linspace(-10, 10, 200), np.linspace(-5, 5, 200))
    for ax, (name, points) in zip(axes.ravel(), paths.items()):
        ax.contour(gx, gy, gx ** 2 / 20 + gy ** 2, levels=np.geomspace(0.05, 30, 12), colors="0.7", linewidths=0.8)
        ax.plot(points[:, 0], points[:, 1], "o-", color="C3", markersize=3, linewidth=1)
        ax.plot(0, 0, "+", color="k", markersize=10)
        ax.set(xlim=(-10, 10), ylim=(-5, 5), xlabel="x", ylabel="y",
               title=f"{LABELS[name]} (lr {PATH_RATES[name]:g})")
    fig.suptitle(f"f(x, y) = x²/20 + y², {STEPS} steps from {START}")
    return plot.save(fig, out / "optimizers_paths.png")


def digits_comparison(key: jax.Array, epochs: int):
    """Train the 64-100-10 ReLU net with each optimizer; returns {name: (history, test metrics)}."""
    x, labels = data.digits()
    k_split, k_init, k_batches = jax.random.split(key, 3)
    # 397 test rows leave 1400 for training: 14 full batches, no smaller last batch to compile.
    x_train, x_test, y_train, y_test = data.train_test_split(k_split, x, labels, test_size=397, stratify=labels)
    net = mlp([64, 100, 10], activation="relu", output_activation="identity")
    _, params = net.init(k_init)
    results = {}
    for name, lr in DIGITS_RATES.items():
        trained, _, _, history = fit(net, params, x_train, y_train, loss="softmax_cross_entropy", batch_size=BATCH,
                               key=k_batches, optimizer=optim.optimizer(name, lr, book=True), epochs=epochs)
        results[name] = (history, evaluate(net, trained, x_test, y_test, "softmax_cross_entropy"))
    return results


def main(argv: list[str] | None = None) -> dict:
    args = parser("optimizers", __doc__.splitlines()[0]).parse_args(argv)
    paths = {name: path(name, lr) for name, lr in PATH_RATES.items()}
    distances = {name: float(np.hypot(*points[-1])) for name, points in paths.items()}
    figure = paths_figure(paths, args.out)
    metrics: dict = {"start": START, "steps": STEPS, "rates": PATH_RATES,
                     "rules": "book=True (Deep Learning from Scratch 6.1)",
                     "final_point": {n: p[-1] for n, p in paths.items()}, "final_distance_to_minimum": distances}
    print("optimizers: f(x, y) = x^2/20 + y^2 from (-7, 2), 30 steps; final distance to the minimum:")
    for name, d in distances.items():
        print(f"  {LABELS[name]:<9} lr {PATH_RATES[name]:<5g} {d:.4g}")
    summary = {f"dist_{n}": d for n, d in distances.items()}

    try:
        results = digits_comparison(jax.random.key(args.seed), DIGITS_EPOCHS // 3 if args.quick else DIGITS_EPOCHS)
    except ImportError as err:
        print(f"optimizers: skipping the digits comparison ({err})")
        results = None
    if results is not None:
        fig, ax = plot.figure(1, 1, size=(6, 4))
        for name, (history, _) in results.items():
            plot.loss_curve(ax, history["loss"], label=f"{LABELS[name]} (lr {DIGITS_RATES[name]:g})")
        ax.set_title("digits, 64-100-10 ReLU: training loss per epoch")
        plot.save(fig, args.out / "optimizers_digits.png")
        metrics["digits"] = {
            "layers": [64, 100, 10], "batch_size": BATCH, "rates": DIGITS_RATES,
            "final_train_loss": {n: float(h["loss"][-1]) for n, (h, _) in results.items()},
            "test_accuracy": {n: float(ev["accuracy"]) for n, (_, ev) in results.items()},
        }
        print("  digits (64-100-10 ReLU): final training loss / test accuracy")
        for name in results:
            print(f"  {LABELS[name]:<9} {metrics['digits']['final_train_loss'][name]:.4f} / "
                  f"{metrics['digits']['test_accuracy'][name]:.4f}")
        summary["digits_acc_adam"] = metrics["digits"]["test_accuracy"]["adam"]
    write_metrics(args.out, metrics)
    print(f"optimizers: figure {figure}")
    return summary


if __name__ == "__main__":
    main()

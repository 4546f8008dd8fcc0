"""`xor`: the tutorial's XOR network, 2-4-1 sigmoid, MSE, 5000 epochs, learning rate 1.0.

Trains one network (true gradient, and the tutorial's scaling for comparison), prints the four
predictions, saves the loss curves and the decision boundary; then trains 100 seeds at once with
`jax.vmap` and counts how many solve XOR (all four outputs on the right side of 0.5), with the
tutorial's gradient scaling and with the true gradient.

The two single runs are saved to `OUT/checkpoint.npz` (params, optimizer states, settings);
`--resume` continues them from there for another EPOCHS epochs (the seed sweep always restarts).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._common import parser, save_runs, start_or_resume, write_metrics
from jaxnet import data, fit, mlp, optim, plot
from jaxnet.train import divergence_warning

EPOCHS, LEARNING_RATE, SEEDS = 5000, 1.0, 100


def train(net, key, x, y, epochs, tutorial_scaling):
    """Init from `key` and train; a pure function of the key, so it vmaps over seeds."""
    _, params = net.init(key)
    return fit(net, params, x, y, loss="mse", optimizer=optim.sgd(LEARNING_RATE), epochs=epochs,
               tutorial_scaling=tutorial_scaling)


def solved(net, params, x, y) -> jax.Array:
    """True where all four XOR outputs fall on the right side of 0.5."""
    return jnp.all((net.apply(params, x) > 0.5) == (y > 0.5))


def main(argv: list[str] | None = None) -> dict:
    p = parser("xor", __doc__.splitlines()[0])
    p.add_argument("--resume", action="store_true",
                   help="continue the two single runs from OUT/checkpoint.npz for another EPOCHS epochs")
    args = p.parse_args(argv)
    epochs = 1000 if args.quick else EPOCHS
    net = mlp([2, 4, 1], activation="sigmoid")
    x, y = data.xor()
    key = jax.random.key(args.seed)

    optimizer = optim.sgd(LEARNING_RATE)
    config = {"experiment": "xor", "layer_sizes": [2, 4, 1], "activation": "sigmoid", "loss": "mse",
              "optimizer": "sgd", "learning_rate": LEARNING_RATE, "seed": args.seed}
    _, params0 = net.init(key)
    start, states, done = start_or_resume(
        args, {"true_gradient": params0, "tutorial_scaling": params0}, optimizer, config)
    runs = {}
    for label, scaling in (("true_gradient", False), ("tutorial_scaling", True)):
        runs[label] = fit(net, start[label], x, y, loss="mse", optimizer=optimizer, epochs=epochs,
                          tutorial_scaling=scaling, opt_state=states[label])
        if (warning := divergence_warning(runs[label].history, f"xor ({label})")):
            print(warning)
    save_runs(args, {k: r.params for k, r in runs.items()}, {k: r.opt_state for k, r in runs.items()}, config,
              done + epochs)
    params, history = runs["true_gradient"].params, runs["true_gradient"].history
    history_tutorial = runs["tutorial_scaling"].history
    predictions = np.asarray(net.apply(params, x)).ravel()
    for xi, p in zip(np.asarray(x), predictions):
        print(f"  xor({int(xi[0])}, {int(xi[1])}) = {p:.4f}")

    keys = jax.random.split(jax.random.fold_in(key, 1), SEEDS)
    counts = {}
    for label, scaling in (("true_gradient", False), ("tutorial_scaling", True)):
        stacked, _, _, sweep = jax.vmap(lambda k: train(net, k, x, y, epochs, scaling))(keys)
        if (warning := divergence_warning(sweep, f"xor seed sweep ({label})")):
            print(warning)
        counts[label] = int(jnp.sum(jax.vmap(lambda p: solved(net, p, x, y))(stacked)))

    fig, (ax_loss, ax_boundary) = plot.figure(1, 2, size=(9, 3.8))
    plot.loss_curve(ax_loss, history["loss"], label="true gradient, lr 1.0")
    plot.loss_curve(ax_loss, history_tutorial["loss"], label="tutorial scaling (= lr 0.25)")
    ax_loss.set_title("XOR: MSE per epoch" + (f" (resumed after {done} epochs)" if done else ""))
    plot.decision_boundary(ax_boundary, lambda g: net.apply(params, g), x, y, margin=0.25)
    ax_boundary.set_title("decision boundary (true gradient)")
    figure = plot.save(fig, args.out / "xor.png")

    metrics = {
        "epochs": epochs, "epochs_total": done + epochs, "resumed_from_epoch": done,
        "diverged_epoch": int(history["diverged_epoch"]), "learning_rate": LEARNING_RATE, "seed": args.seed,
        "predictions": predictions, "final_loss": float(history["loss"][-1]),
        "final_loss_tutorial_scaling": float(history_tutorial["loss"][-1]),
        "seeds": SEEDS, "solved_true_gradient": counts["true_gradient"],
        "solved_tutorial_scaling": counts["tutorial_scaling"],
    }
    write_metrics(args.out, metrics)
    print(f"xor: final loss {metrics['final_loss']:.3g} "
          f"(tutorial scaling {metrics['final_loss_tutorial_scaling']:.3g}); "
          f"solved {counts['true_gradient']}/{SEEDS} seeds with the true gradient, "
          f"{counts['tutorial_scaling']}/{SEEDS} with the tutorial's scaling; figure {figure}")
    return {"solved_true": counts["true_gradient"], "solved_tutorial": counts["tutorial_scaling"],
            "final_loss": metrics["final_loss"]}


if __name__ == "__main__":
    main()

"""`lr_decay`: the tutorial's plateau decay (factor 0.95, patience 100) against a constant rate.

Two full-batch tasks trained with plain SGD at a rate too high for a constant schedule (lr 70): XOR
(2-4-1 sigmoid, MSE, 5000 epochs) and the two-Gaussian task (1000 standardised points, 2-8-4-1
sigmoid, MSE, 2000 epochs), each from 4 initialisations, once with a constant rate and once with the
plateau decay. Prints the decays of the first initialisation as the tutorial prints them; the figure
shows every run's loss and learning rate; the metrics count the decays and the runs that reach a
loss below 0.01.

At such rates training is chaotic: a difference in the last bit changes which runs converge, and plain
`optax.sgd` and the same SGD chained with the decay already round differently (XLA fuses the two
programs differently). So the constant-rate runs use the same chain with a patience longer than the
run (it never fires): both schedules take bitwise the same steps until the first decay, and every
difference between them is the decay's doing.
"""

from __future__ import annotations

import jax
import numpy as np

from ._common import parser, write_metrics
from jaxnet import data, fit, mlp, optim, plot

FACTOR, PATIENCE, LEARNING_RATE, INITS, SOLVED_BELOW = 0.95, 100, 70.0, 4, 0.01
TASKS = {"xor": ([2, 4, 1], 5000), "gaussian": ([2, 8, 4, 1], 2000)}  # layer sizes, epochs


def task_data(name: str, key: jax.Array):
    """XOR, or 1000 points of the two Gaussians standardised with their own statistics."""
    if name == "xor":
        return data.xor()
    x, y = data.gaussian_blobs(key, 1000)
    _, _, x = data.standardize(x)
    return x, y


def train(net, x, y, key, epochs, plateau):
    """Init from `key`, then full-batch SGD at LEARNING_RATE, with the plateau decay or with a constant
    rate (the same chain with a patience that cannot be reached in `epochs`)."""
    _, params = net.init(key)
    opt = optim.optimizer("sgd", LEARNING_RATE, plateau=(FACTOR, PATIENCE if plateau else epochs + 1))
    _, _, state, history = fit(net, params, x, y, loss="mse", optimizer=opt, epochs=epochs)
    return history, optim.decays(history, state)


def main(argv: list[str] | None = None) -> dict:
    args = parser("lr_decay", __doc__.splitlines()[0]).parse_args(argv)
    key = jax.random.key(args.seed)
    fig, axes = plot.figure(2, 2, size=(10, 7.5))
    metrics: dict = {"learning_rate": LEARNING_RATE, "factor": FACTOR, "patience": PATIENCE, "seed": args.seed,
                     "initialisations": INITS, "solved_below": SOLVED_BELOW}
    summary = {}
    for row, (name, (sizes, epochs)) in enumerate(TASKS.items()):
        epochs = epochs // 4 if args.quick else epochs
        k_data, k_init = jax.random.split(jax.random.fold_in(key, row))
        x, y = task_data(name, k_data)
        net = mlp(sizes, activation="sigmoid")
        runs = {(i, plateau): train(net, x, y, jax.random.fold_in(k_init, i), epochs, plateau)
                for i in range(INITS) for plateau in (False, True)}

        print(f"{name}: SGD lr {LEARNING_RATE:g}, {epochs} epochs; plateau decay (factor {FACTOR}, "
              f"patience {PATIENCE}), initialisation 0:")
        for epoch, rate in runs[0, True][1]:
            print(f"  Epoch {epoch}: learning rate decayed to {rate:.6g}")

        ax_loss, ax_lr = axes[row]
        for (i, plateau), (history, _) in runs.items():
            style = dict(color=f"C{i}", linestyle="-" if plateau else ":")
            label = f"init {i}, {'plateau' if plateau else 'constant'}"
            ax_loss.plot(np.asarray(history["loss"]), **style, label=label)
            if plateau:
                ax_lr.plot(np.asarray(history["learning_rate"]), **style, label=f"init {i}")
        ax_loss.set_yscale("log")
        ax_loss.set(xlabel="epoch", ylabel="MSE", title=f"{name}: loss (dotted: constant rate)")
        ax_loss.legend(fontsize=6, ncol=2)
        ax_lr.set(xlabel="epoch", ylabel="learning rate", title=f"{name}: learning rate with the plateau decay")
        ax_lr.legend(fontsize=7)

        final = {k: float(h["loss"][-1]) for k, (h, _) in runs.items()}
        solved = {p: sum(final[i, p] < SOLVED_BELOW for i in range(INITS)) for p in (False, True)}
        metrics[name] = {
            "layer_sizes": sizes, "epochs": epochs,
            "final_loss_constant": [final[i, False] for i in range(INITS)],
            "final_loss_plateau": [final[i, True] for i in range(INITS)],
            "decays_plateau": [len(runs[i, True][1]) for i in range(INITS)],
            "decays_init0_epoch_and_rate": runs[0, True][1],
            f"solved_of_{INITS}_constant": solved[False], f"solved_of_{INITS}_plateau": solved[True],
        }
        summary[f"{name}_decays"] = sum(metrics[name]["decays_plateau"])
        summary[f"{name}_solved"] = f"{solved[False]}->{solved[True]}/{INITS}"
        print(f"  decays per initialisation {metrics[name]['decays_plateau']}; loss < {SOLVED_BELOW} in "
              f"{solved[False]}/{INITS} runs with a constant rate, {solved[True]}/{INITS} with the decay")

    figure = plot.save(fig, args.out / "lr_decay.png")
    write_metrics(args.out, metrics)
    print(f"lr_decay: figure {figure}")
    return summary


if __name__ == "__main__":
    main()

"""`xor_sweep`: how often does XOR train? 16 learning rates x 4 hidden sizes x 256 seeds = 16,384 networks.

The tutorial's XOR network (2-H-1, sigmoid hidden and output, MSE, full-batch gradient descent on the
four examples, He-normal init, 5000 epochs) with the *true* gradient of the mean loss. The tutorial's
code divides the gradient by the batch size m = 4 once more (see `jaxnet.reference`), so its learning
rate is 4 x the rate on this axis: its default 1.0 sits at lr = 0.25 here.

A network succeeds when all four outputs fall on the right side of 0.5 after the last epoch.
Each hidden size is one `jaxnet.train.fit_ensemble` call over (learning rate, seed) members, run in
chunks with a progress bar. The same 256 init keys serve every learning rate, so the columns differ
only in the rate. Writes success.png (heatmap and curves) and metrics.json (the success table, the
number of diverged runs and the wall time). `--quick` uses 32 seeds (2,048 networks).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from ._common import parser, write_metrics
from jaxnet import data, mlp, plot
from jaxnet.train import fit_ensemble

EPOCHS = 5000
LEARNING_RATES = np.geomspace(0.01, 10.0, 16).astype(np.float32)
HIDDEN_SIZES = (2, 3, 4, 8)
SEEDS, QUICK_SEEDS = 256, 32
CHUNK = 1024


def sweep_hidden_size(hidden: int, seed_keys: jax.Array, x, y, epochs: int) -> dict:
    """Train every (learning rate, seed) pair for one hidden size; success and divergence per pair.

    Member m = r * S + s trains with LEARNING_RATES[r] from seed_keys[s] (S seeds).

    Returns:
        {"success": bool (16, S), "diverged": bool (16, S), "final_loss": float32 (16, S)}.
    """
    n_seeds = seed_keys.shape[0]
    net = mlp([2, hidden, 1], activation="sigmoid")
    keys = seed_keys[np.tile(np.arange(n_seeds), len(LEARNING_RATES))]
    rates = jnp.asarray(np.repeat(LEARNING_RATES, n_seeds))
    params, _, _, history = fit_ensemble(net, x, y, keys=keys, loss="mse", hyperparams={"learning_rate": rates},
                                   epochs=epochs, history="last", chunk_size=CHUNK, progress=f"hidden {hidden}")
    correct = jax.vmap(lambda p: jnp.all((net.apply(p, x) > 0.5) == (y > 0.5)))(params)
    shape = (len(LEARNING_RATES), n_seeds)
    return {"success": np.asarray(correct).reshape(shape),
            "diverged": np.asarray(history["diverged_epoch"] >= 0).reshape(shape),
            "final_loss": np.asarray(history["loss"]).reshape(shape)}


def figure(rates: np.ndarray, out) -> str:
    """Heatmap of success rates (hidden size x learning rate) and one curve per hidden size."""
    fig, (ax_map, ax_curve) = plot.figure(1, 2, size=(12, 3.8), gridspec_kw={"width_ratios": [1.6, 1]})
    image = ax_map.imshow(rates * 100, aspect="auto", cmap="viridis", vmin=0, vmax=100, origin="lower")
    ax_map.set_xticks(range(len(LEARNING_RATES)), [f"{lr:.2g}" for lr in LEARNING_RATES], rotation=60)
    ax_map.set_yticks(range(len(HIDDEN_SIZES)), [str(h) for h in HIDDEN_SIZES])
    ax_map.set_xlabel("learning rate (true gradient; the tutorial's lr = 4 x this)")
    ax_map.set_ylabel("hidden units")
    for i in range(rates.shape[0]):
        for j in range(rates.shape[1]):
            ax_map.text(j, i, f"{rates[i, j] * 100:.0f}", ha="center", va="center", fontsize=7,
                        color="black" if rates[i, j] > 0.6 else "white")
    fig.colorbar(image, ax=ax_map)  # the title says what the colours are; the curves' axis is labelled
    ax_map.set_title("XOR solved after 5000 epochs (% of seeds)")
    for h, row in zip(HIDDEN_SIZES, rates):
        ax_curve.plot(LEARNING_RATES, row * 100, marker="o", markersize=3, label=f"2-{h}-1")
    ax_curve.set_xscale("log")
    ax_curve.set_xlabel("learning rate")
    ax_curve.set_ylabel("success rate (%)")
    ax_curve.legend()
    return str(plot.save(fig, out / "success.png"))


def main(argv: list[str] | None = None) -> dict:
    p = parser("xor_sweep", __doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=None,
                   help=f"seeds per cell (default {SEEDS}; {QUICK_SEEDS} with --quick)")
    args = p.parse_args(argv)
    n_seeds = args.seeds or (QUICK_SEEDS if args.quick else SEEDS)
    x, y = data.xor()
    seed_keys = jax.random.split(jax.random.key(args.seed), n_seeds)

    start = time.perf_counter()
    results, seconds = {}, {}
    for h in HIDDEN_SIZES:
        t0 = time.perf_counter()
        results[h] = sweep_hidden_size(h, seed_keys, x, y, EPOCHS)
        seconds[h] = time.perf_counter() - t0
    wall = time.perf_counter() - start
    rates = np.stack([results[h]["success"].mean(axis=1) for h in HIDDEN_SIZES])
    best = np.unravel_index(np.argmax(rates), rates.shape)
    networks = len(HIDDEN_SIZES) * len(LEARNING_RATES) * n_seeds

    print(f"{networks} networks ({n_seeds} seeds x {len(LEARNING_RATES)} rates x {len(HIDDEN_SIZES)} sizes), "
          f"{EPOCHS} epochs each, in {wall:.1f} s")
    print("success rate (%) by learning rate:")
    print("  lr      " + " ".join(f"{lr:>5.2g}" for lr in LEARNING_RATES))
    for h, row in zip(HIDDEN_SIZES, rates):
        print(f"  2-{h}-1   " + " ".join(f"{v * 100:>5.0f}" for v in row))
    path = figure(rates, args.out)
    metrics = {
        "epochs": EPOCHS, "seeds": n_seeds, "networks": networks,
        "learning_rates": LEARNING_RATES, "hidden_sizes": list(HIDDEN_SIZES),
        "learning_rate_convention": "true gradient of the mean MSE; the tutorial's lr = 4 x this",
        "success_rate": {str(h): row for h, row in zip(HIDDEN_SIZES, rates)},
        "diverged_runs": {str(h): int(results[h]["diverged"].sum()) for h in HIDDEN_SIZES},
        "median_final_loss": {str(h): np.nanmedian(results[h]["final_loss"], axis=1) for h in HIDDEN_SIZES},
        "best": {"hidden": HIDDEN_SIZES[best[0]], "learning_rate": float(LEARNING_RATES[best[1]]),
                 "success_rate": float(rates[best])},
        "seconds_per_hidden_size": {str(h): s for h, s in seconds.items()},
        "wall_seconds": wall, "networks_per_second": networks / wall, "figure": path,
    }
    write_metrics(args.out, metrics)
    print(f"best: 2-{HIDDEN_SIZES[best[0]]}-1 at lr {LEARNING_RATES[best[1]]:.3g}: {rates[best] * 100:.0f}% solved")
    print(f"wrote {path} and {args.out / 'metrics.json'}")
    return {"networks": networks, "best_success": float(rates[best]), "seconds": wall}

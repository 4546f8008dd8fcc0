"""`init_histograms`: activation histograms of a 5-layer net for four weight scales and three activations (book 6.2).

The book's weight_init_activation_histogram.py (Deep Learning from Scratch 6.2.1-6.2.3, figures 6-10 to
6-14): 1000 Gaussian inputs of 100 features through 5 layers of 100 units without biases, weights
`std * N(0, 1)` with std 1, 0.01, Xavier `sqrt(1 / 100)` (the book's Xavier, `1 / sqrt(n)` for n inputs)
and He `sqrt(2 / 100)`; sigmoid, tanh and ReLU. Each activation's four scales run as one compiled
forward pass vmapped over the scale (`jaxnet.mlp` and `Network.forward`; zero biases are no biases).

Per setting and layer it reports the fraction of *saturated* activations (sigmoid within 0.01 of 0
or 1, tanh within 0.01 of -1 or 1: their gradient is below ~0.01), for ReLU the fraction of *dead*
units (0 for all 1000 inputs) and of zero activations, and the activations' standard deviation (a
vanishing spread is the book's "loss of expressiveness", figure 6-11). Figure: a 12 x 5 grid of
histograms (rows: activation and scale; columns: layers), 30 bins over (0, 1) for sigmoid and ReLU
(as the book) and (-1, 1) for tanh; the ReLU rows' counts are clipped at 7000 as in figure 6-14.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from ._common import parser, write_metrics
from ._techniques import book_scaled_params
from jaxnet import mlp, plot

N_INPUTS, UNITS, LAYERS = 1000, 100, 5
SCALES = {"std 1": 1.0, "std 0.01": 0.01, "Xavier": float(np.sqrt(1 / UNITS)), "He": float(np.sqrt(2 / UNITS))}
ACTIVATIONS = ("sigmoid", "tanh", "relu")
RANGES = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "relu": (0.0, 1.0)}
# What the book's figures show (Deep Learning from Scratch 6.2): figure number and shape.
BOOK = {("sigmoid", "std 1"): "6-10: piled at 0 and 1",
        ("sigmoid", "std 0.01"): "6-11: all near 0.5",
        ("sigmoid", "Xavier"): "6-13: spread out",
        ("relu", "std 0.01"): "6-14: tiny values",
        ("relu", "Xavier"): "6-14: shrinking with depth",
        ("relu", "He"): "6-14: the same in every layer"}


def layer_activations(activation: str, key: jax.Array, x: jax.Array) -> jax.Array:
    """Activations (scales, layers, N_INPUTS, UNITS) of the 5-layer net for every scale of SCALES."""
    net = mlp([UNITS] * (LAYERS + 1), activation=activation)
    params = book_scaled_params(net, key, (UNITS,), jnp.array(list(SCALES.values())))
    return jax.jit(jax.vmap(lambda p: jnp.stack(net.forward(p, x)[2::2])))(params)


def statistics(activation: str, a: np.ndarray) -> dict:
    """Per layer (arrays of length LAYERS): saturated or dead fractions and the spread of `a` (layers, n, units)."""
    stats = {"std": a.std(axis=(1, 2))}
    if activation == "relu":
        stats["zero_fraction"] = (a == 0).mean(axis=(1, 2))
        stats["dead_unit_fraction"] = (a == 0).all(axis=1).mean(axis=1)
    else:
        low, high = RANGES[activation]
        stats["saturated_fraction"] = ((a < low + 0.01) | (a > high - 0.01)).mean(axis=(1, 2))
    return stats


def histogram_figure(acts: dict, path):
    rows = [(act, scale) for act in ACTIVATIONS for scale in SCALES]
    fig, axes = plot.figure(len(rows), LAYERS, size=(2.0 * LAYERS + 1.2, 1.25 * len(rows) + 0.6), squeeze=False)
    for r, (act, scale) in enumerate(rows):
        a = acts[act][r % len(SCALES)]
        for layer in range(LAYERS):
            ax = axes[r, layer]
            counts, edges = np.histogram(a[layer], bins=30, range=RANGES[act])
            ax.stairs(counts, edges, fill=True, color="C0")
            ax.set_yticks([])
            ax.tick_params(labelsize=6)
            if act == "relu":  # the zeros (half the values) would flatten the rest; the book clips too
                ax.set_ylim(0, 7000)
            if r == 0:
                ax.set_title(f"layer {layer + 1}", fontsize=9)
        axes[r, 0].set_ylabel(f"{act}\n{scale}", fontsize=8)
    fig.suptitle("Activations of 1000 Gaussian inputs through 5 layers of 100 units (book figures 6-10 to 6-14)",
                 fontsize=10)
    return plot.save(fig, path)


def main(argv: list[str] | None = None) -> dict:
    args = parser("init_histograms", __doc__.splitlines()[0]).parse_args(argv)
    start = time.perf_counter()
    key = jax.random.key(args.seed)
    x = jax.random.normal(jax.random.fold_in(key, 0), (N_INPUTS, UNITS))
    acts = {act: np.asarray(layer_activations(act, jax.random.fold_in(key, 1), x)) for act in ACTIVATIONS}
    stats = {act: {scale: statistics(act, acts[act][i]) for i, scale in enumerate(SCALES)} for act in ACTIVATIONS}
    figure = histogram_figure(acts, args.out / "init_histograms.png")
    seconds = time.perf_counter() - start
    write_metrics(args.out, {"seed": args.seed, "n_inputs": N_INPUTS, "units": UNITS, "layers": LAYERS,
                             "scales": SCALES, "statistics": stats,
                             "book": {f"{a} {s}": v for (a, s), v in BOOK.items()},
                             "seconds": seconds})
    sig, relu = stats["sigmoid"], stats["relu"]
    print(f"init_histograms: layer 5, sigmoid: saturated {sig['std 1']['saturated_fraction'][-1]:.2f} with std 1 "
          f"(book 6-10: piled at 0 and 1), spread {sig['std 0.01']['std'][-1]:.4f} with std 0.01 (book 6-11: all "
          f"near 0.5), saturated {sig['Xavier']['saturated_fraction'][-1]:.3f} and spread "
          f"{sig['Xavier']['std'][-1]:.3f} with Xavier (book 6-13: spread out); ReLU spread layer 1 -> 5: "
          f"Xavier {relu['Xavier']['std'][0]:.3f} -> {relu['Xavier']['std'][-1]:.3f} (book 6-14: shrinking), He "
          f"{relu['He']['std'][0]:.3f} -> {relu['He']['std'][-1]:.3f} (book 6-14: the same), std 0.01 "
          f"{relu['std 0.01']['std'][-1]:.1e} (book: tiny)")
    print(f"  {seconds:.1f} s; figure: {figure}")
    return {"sigmoid_std1_saturated_L5": float(sig["std 1"]["saturated_fraction"][-1]),
            "relu_he_std_L5": float(relu["He"]["std"][-1])}


if __name__ == "__main__":
    main()

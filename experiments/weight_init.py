"""`weight_init`: MNIST training loss with weights std 0.01, Xavier and He, in one vmapped call (book 6.2.4).

The book's weight_init_compare.py (Deep Learning from Scratch 6.2.4, figure 6-15): a 784-100-100-100-
100-10 ReLU network, softmax cross-entropy, SGD at learning rate 0.01, 2000 iterations of 128 images
drawn with replacement; initial weights `0.01 * N(0, 1)`, the book's Xavier `N(0, 1 / n)` (n the
layer's inputs: LeCun normal, `variance_scaling(1, "fan_in")`) and He `N(0, 2 / n)`, biases zero.
The three networks start from the same standard-normal draw, see the same batches, and train
together: `jax.vmap` of `jaxnet.fit` over the stacked initial params, inside one compiled `lax.scan`
over the iterations. The recorded loss of an iteration is its batch's loss before the step.

Data: MNIST from `--data-dir` or `$JAXNET_DATA_DIR/mnist` (the full 60,000 training images when
present; with only the t10k files, 8,000 of them: `jaxnet.data.load_mnist`'s split). Without MNIST the
experiment prints one line and is skipped. Figure: the smoothed loss curves (the book's `smooth_curve`).
Book at iteration 1900: std 0.01 2.30 (no learning), Xavier 0.38, He 0.29. Targets: std 0.01 stays
above 2.2, He ends below Xavier, both below 0.5 (on the mean of the last 100 iterations).
"""

from __future__ import annotations

import time

import jax

from . import _techniques as tech
from ._common import write_metrics
from jaxnet import initializers, mlp

SIZES = [784, 100, 100, 100, 100, 10]
INITIALIZERS = {"std=0.01": initializers.normal(0.01),
                "Xavier": jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal"),
                "He": initializers.he_normal}
BOOK = {"std=0.01": 2.30, "Xavier": 0.38, "He": 0.29}  # the book's printout at iteration 1900


def main(argv: list[str] | None = None) -> dict:
    args, mnist, start = tech.start("weight_init", __doc__, argv)
    if mnist is None:
        return tech.skipped("weight_init")
    net = mlp(SIZES, activation="relu", output_activation="identity")
    # the same key for each: the same N(0, 1) draw, scaled by each initialiser's std
    params = tech.init_members([mlp(SIZES, "relu", "identity", initializer=init) for init in INITIALIZERS.values()],
                               jax.random.fold_in(jax.random.key(args.seed), 0))
    result = tech.compare_iterations("weight_init", args, mnist, net, params, list(INITIALIZERS), BOOK,
                                     title=f"MNIST ({mnist.source}), 4 x 100 ReLU, SGD 0.01, batch 128")
    last = result["last"]
    targets = {"std=0.01 stays above 2.2": last["std=0.01"] > 2.2, "He ends below Xavier": last["He"] < last["Xavier"],
               "Xavier and He below 0.5": max(last["Xavier"], last["He"]) < 0.5}
    seconds = time.perf_counter() - start
    write_metrics(args.out, {**result["metrics"], "learning_rate": 0.01, "layer_sizes": SIZES, "targets": targets,
                             "seconds": seconds})
    met = ", ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in targets.items())
    print(result["summary"] + f"; targets{' (a --quick run is too short for them)' if args.quick else ''}: {met}")
    print(result["timing"] + f"; {seconds:.1f} s in all")
    return {label: round(value, 4) for label, value in last.items()}


if __name__ == "__main__":
    main()

"""`optimizers_mnist`: SGD, Momentum, AdaGrad and Adam on MNIST, the four networks in one vmapped call (book 6.1.8).

The book's optimizer_compare_mnist.py (Deep Learning from Scratch 6.1.8, figure 6-9): a 784-100-100-
100-100-10 ReLU network with He initialisation, softmax cross-entropy, 2000 iterations of 128 images
drawn with replacement, the book's update rules and default rates (`jaxnet.optim.optimizer(name, lr,
book=True)`: SGD 0.01, Momentum 0.01 with momentum 0.9, AdaGrad 0.01, Adam 0.001). The four networks
start from the same params, see the same batches and train together: `jax.vmap` of `jaxnet.fit`
over the members, each member's optimizer chosen by a traced index (`_techniques.select_optimizer`:
every member carries the four optimizer states and uses its own), inside one compiled `lax.scan`
over the iterations. (`python -m experiments optimizers` is the book's other comparison, the paths on
x^2 / 20 + y^2, plus scikit-learn's digits.)

Data: as `weight_init`. Figure: the smoothed loss curves. Book at iteration 1900: SGD 0.150,
Momentum 0.050, AdaGrad 0.016, Adam 0.032 (single-batch losses, so noisy).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from . import _techniques as tech
from ._common import write_metrics
from jaxnet import mlp, optim

SIZES = [784, 100, 100, 100, 100, 10]
RATES = {"SGD": ("sgd", 0.01), "Momentum": ("momentum", 0.01), "AdaGrad": ("adagrad", 0.01), "Adam": ("adam", 0.001)}
BOOK = {"SGD": 0.150, "Momentum": 0.050, "AdaGrad": 0.016, "Adam": 0.032}  # the book's printout at iteration 1900


def book_optimizer(index: jax.Array):
    """Member `index`'s optimizer among RATES (the book's rules and rates), as one transformation."""
    return tech.select_optimizer([optim.optimizer(name, lr, book=True) for name, lr in RATES.values()], index)


def main(argv: list[str] | None = None) -> dict:
    args, mnist, start = tech.start("optimizers_mnist", __doc__, argv)
    if mnist is None:
        return tech.skipped("optimizers_mnist")
    net = mlp(SIZES, activation="relu", output_activation="identity")
    labels = list(RATES)
    params = tech.init_members([net] * len(labels), jax.random.fold_in(jax.random.key(args.seed), 0))
    result = tech.compare_iterations("optimizers_mnist", args, mnist, net, params, labels, BOOK,
                                     make_optimizer=book_optimizer, hyper={"index": jnp.arange(len(labels))},
                                     title=f"MNIST ({mnist.source}), 4 x 100 ReLU, batch 128, book rates", ylim=(0, 1))
    last = result["last"]
    ranking = sorted(labels, key=last.get)
    seconds = time.perf_counter() - start
    write_metrics(args.out, {**result["metrics"], "rates": RATES, "layer_sizes": SIZES, "ranking": ranking,
                             "seconds": seconds})
    print(result["summary"] + f"; lowest first: {' < '.join(ranking)} (book: AdaGrad < Adam < Momentum < SGD)")
    print(result["timing"] + f"; {seconds:.1f} s in all")
    return {label: round(value, 4) for label, value in last.items()}


if __name__ == "__main__":
    main()

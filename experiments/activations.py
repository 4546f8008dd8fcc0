"""`activations`: sigmoid, ReLU and tanh with their derivatives on [-5, 5], one figure of three panels.

The derivatives are jaxnet's hand-written ones. The independent reference is `jax.grad` of jax's own
`jax.nn.sigmoid`, `jax.nn.relu` and `jnp.tanh` (jaxnet's sigmoid and tanh carry custom derivative
rules, so `jax.grad` of *them* would only repeat the hand derivative); the figure marks it at a few
points and the metrics record the largest difference over the plotted grid.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from experiments._common import parser, write_metrics
from jaxnet import activations, plot

NAMES = ("sigmoid", "relu", "tanh")
REFERENCE = {"sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "tanh": jnp.tanh}  # not jaxnet's functions


def main(argv: list[str] | None = None) -> dict:
    args = parser("activations", __doc__.splitlines()[0]).parse_args(argv)
    x = jnp.linspace(-5.0, 5.0, 1001)
    fig, axes = plot.figure(1, 3, size=(12, 3.6))
    metrics = {}
    for ax, name in zip(axes, NAMES):
        act = activations.ACTIVATIONS[name]
        hand = act.derivative(x)
        auto = jax.vmap(jax.grad(REFERENCE[name]))(x)
        metrics[f"{name}_max_abs_diff_hand_vs_jax_grad"] = float(jnp.max(jnp.abs(hand - auto)))
        ax.plot(x, act.fn(x), label=f"{name}(x)")
        ax.plot(x, hand, "--", label=f"{name}'(x)")
        ax.plot(x[::100], auto[::100], "k.", label=f"jax.grad of {REFERENCE[name].__module__.split('.')[0]}'s {name}")
        ax.axhline(0, color="0.8", lw=0.8)
        ax.set_title(name)
        ax.set_xlabel("x")
        ax.legend(fontsize=8)
    path = plot.save(fig, args.out / "activations.png")
    write_metrics(args.out, metrics)
    worst = max(metrics.values())
    print(f"activations: figure {path}; max |hand derivative - jax.grad| on [-5, 5] = {worst:.3g}")
    return {"max_diff_vs_jax_grad": worst}


if __name__ == "__main__":
    main()

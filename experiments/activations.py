"""`activations`: sigmoid, ReLU and tanh with their derivatives on [-5, 5], one figure of three panels.

The derivatives are jaxnet's hand-written ones. The independent reference is `jax.grad` of jax's own
`jax.nn.sigmoid`, `jax.nn.relu` and `jnp.tanh` (jaxnet's sigmoid and tanh carry custom derivative
rules, so `jax.grad` of *them* would only repeat the hand derivative); the figure marks it at a few
points and the metrics record the largest difference over the plotted grid.

The grid holds x = 0 exactly (x = i / 100), and ReLU's derivative is drawn as what it is: 0 left of 0,
1 right of it, no line across the jump, and at 0 the convention jaxnet and `jax.nn.relu` use, 0 (a
filled dot; the open dot is the limit from the right).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._common import parser, write_metrics
from jaxnet import activations, plot

NAMES = ("sigmoid", "relu", "tanh")
REFERENCE = {"sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "tanh": jnp.tanh}  # not jaxnet's functions


def main(argv: list[str] | None = None) -> dict:
    args = parser("activations", __doc__.splitlines()[0]).parse_args(argv)
    x = jnp.arange(-500, 501, dtype=jnp.float32) / 100  # 0 exactly at x[500] (linspace's is 4.15e-7)
    fig, axes = plot.figure(1, 3, size=(12, 3.6))
    metrics = {}
    for ax, name in zip(axes, NAMES):
        act = activations.ACTIVATIONS[name]
        hand = act.derivative(x)
        auto = jax.vmap(jax.grad(REFERENCE[name]))(x)
        metrics[f"{name}_max_abs_diff_hand_vs_jax_grad"] = float(jnp.max(jnp.abs(hand - auto)))
        ax.plot(x, act.fn(x), label=f"{name}(x)")
        if name == "relu":  # a jump at 0: no line across it, the value at 0 marked
            at_zero = float(act.derivative(jnp.zeros((), jnp.float32)))
            metrics["relu_derivative_at_0"] = at_zero
            ax.plot(x, jnp.where(x == 0, jnp.nan, hand), "--", label=f"{name}'(x)")
            ax.plot([0.0], [at_zero], "o", color="C1", label=f"relu'(0) = {at_zero:g} (convention)")
            ax.plot([0.0], [1.0], "o", color="C1", markerfacecolor="white")
        else:
            ax.plot(x, hand, "--", label=f"{name}'(x)")
        ax.plot(x[::100], auto[::100], "k.", label=f"jax.grad of {REFERENCE[name].__module__.split('.')[0]}'s {name}")
        ax.axhline(0, color="0.8", lw=0.8)
        ax.set_title(name)
        ax.set_xlabel("x")
        ax.legend(fontsize=8)
    path = plot.save(fig, args.out / "activations.png")
    write_metrics(args.out, metrics)
    worst = max(v for k, v in metrics.items() if k.endswith("_vs_jax_grad"))
    print(f"activations: figure {path}; max |hand derivative - jax.grad| on [-5, 5] = {worst:.3g}")
    return {"max_diff_vs_jax_grad": worst}


if __name__ == "__main__":
    main()

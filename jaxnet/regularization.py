"""Weight decay two ways: the book's L2 regulariser, and decoupled weight decay (AdamW) with a mask.

The book's L2 (Deep Learning from Scratch 6.4.1) adds `0.5 * lambda * sum(W**2)` over the weight
matrices to the loss, so every optimizer sees the gradient `g + lambda * W`. In jaxnet it is `fit(...,
weight_decay=lambda)` (`jaxnet.grad.l2_penalty` and `l2_gradient`; the hand gradient in `backprop`,
`jax.grad` in `autodiff`), and the recorded loss includes the penalty.

Decoupled weight decay (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019)
leaves the loss alone and shrinks the weights in the update itself, after the optimizer's own
rescaling: optax's `adamw` computes `W <- W - lr * (adam_step(g) + lambda * W)`. `adamw` below is that,
with a mask so that only weights decay (never biases, BatchNorm's gamma and beta, or state: the same
`decay_mask` as the L2 term).

The two are the same update for plain SGD and different for Adam. One step from W = 1 with zero data
gradient, learning rate 0.1 and lambda 0.5:
    SGD, L2:         W <- 1 - 0.1 * (0 + 0.5 * 1)                         = 0.95
    SGD, decoupled:  W <- 1 - 0.1 * (0 + 0.5 * 1)                         = 0.95
    Adam, L2:        g = 0.5, m_hat = 0.5, v_hat = 0.25,
                     W <- 1 - 0.1 * 0.5 / (sqrt(0.25) + 1e-8)              = 0.9   (Adam normalises
                     the decay term away: the step is lr whatever lambda is)
    Adam, decoupled: W <- 1 - 0.1 * (0 / (0 + 1e-8) + 0.5 * 1)            = 0.95
and the bias b stays where it is in all four (zero data gradient, not decayed). The L2 term for
W = ones(2, 3) and lambda 0.5 is 0.5 * 0.5 * 6 = 1.5. tests/test_regularization.py checks these and
longer runs against numpy transcriptions of Adam with L2 and of AdamW.
"""

from __future__ import annotations

import dataclasses

from typing import Any

import jax
import optax

from jaxnet.validate import check_positive
from jaxnet.nn.network import Network

__all__ = ["adamw", "decoupled_weight_decay"]


def _check_net(net: Any) -> Network:
    if not isinstance(net, Network):
        raise TypeError(f"net: expected a jaxnet Network (its decay_mask says which params are weights), "
                        f"got {type(net).__name__}")
    return net


def decoupled_weight_decay(net: Network, weight_decay: float | jax.Array) -> optax.GradientTransformation:
    """`optax.add_decayed_weights(weight_decay, mask=net.decay_mask)`: adds `weight_decay * W` to the
    updates of the weights only (not biases or BatchNorm parameters).

    Chain it *before* an optimizer to get L2's gradient `g + lambda W` (what `fit(weight_decay=)` does),
    or after the optimizer's rescaling and before the learning rate for decoupled decay (as `adamw`).

    Args:
        net: the network whose `decay_mask` selects the weights.
        weight_decay: lambda >= 0 (float, or a traced array under jit/vmap).

    Returns:
        An optax `GradientTransformation` (stateless).

    Raises:
        TypeError: net not a jaxnet Network, weight_decay not a real number.
        ValueError: a concrete weight_decay that is negative or not finite.
    """
    _check_net(net)
    check_positive("weight_decay", weight_decay, allow_zero=True)
    return optax.add_decayed_weights(weight_decay, mask=net.decay_mask)


def adamw(
    net: Network,
    learning_rate: float | jax.Array,
    weight_decay: float | jax.Array,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> optax.GradientTransformationExtraArgs:
    """Adam with decoupled weight decay on the weights only: optax's `adamw` masked by `net.decay_mask`.

    Update (optax conventions; t the step, from 1):
        m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2,
        m_hat = m / (1 - b1^t),  v_hat = v / (1 - b2^t),
        W <- W - learning_rate * (m_hat / (sqrt(v_hat) + eps) + weight_decay * W)   for weights,
        p <- p - learning_rate *  m_hat / (sqrt(v_hat) + eps)                        for biases and
                                                                                     BatchNorm's gamma, beta.
    Unlike `fit(..., optimizer="adam", weight_decay=lambda)` (the book's L2: Adam of g + lambda W), the
    decay is not divided by sqrt(v_hat); see the module docstring for a worked step.

    The numeric hyperparameters live in the optimizer state (`optax.inject_hyperparams`), so a new or
    vmapped learning rate or weight decay does not recompile `fit`, and `jaxnet.optim.learning_rate_of`
    reads the rate.

    Args:
        net: the network whose `decay_mask` selects the weights.
        learning_rate: > 0. weight_decay: lambda >= 0 (both floats or traced arrays).
        b1, b2, eps: Adam's moment decay rates and denominator offset (optax's defaults).

    Returns:
        An `optax.GradientTransformationExtraArgs` for `fit(..., optimizer=...)`.

    Raises:
        TypeError: net not a jaxnet Network; a hyperparameter that is not a real number.
        ValueError: a concrete learning_rate <= 0, weight_decay < 0, or either not finite.

    Source: Loshchilov & Hutter 2019, Algorithm 2; Kingma & Ba 2015 (Adam); optax.adamw.
    """
    _check_net(net)
    check_positive("learning_rate", learning_rate)
    check_positive("weight_decay", weight_decay, allow_zero=True)
    update = _AdamWUpdate(_DecayMask(net), float(b1), float(b2), float(eps))
    return optax.GradientTransformationExtraArgs(update.transform(learning_rate, weight_decay).init, update)


@dataclasses.dataclass(frozen=True)
class _DecayMask:
    """`net.decay_mask` as a value: equal networks give equal masks (a bound method compares by identity)."""

    net: Network

    def __call__(self, params: Any) -> Any:
        return self.net.decay_mask(params)


@dataclasses.dataclass(frozen=True)
class _AdamWUpdate:
    """`adamw`'s update, compared by value, so that `fit` (which takes it as a static argument) compiles
    once for equal settings whatever the learning rate and weight decay (they are read from the state)."""

    mask: _DecayMask
    b1: float
    b2: float
    eps: float

    def transform(self, learning_rate: Any, weight_decay: Any) -> optax.GradientTransformationExtraArgs:
        return optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
            learning_rate=learning_rate, b1=self.b1, b2=self.b2, eps=self.eps, weight_decay=weight_decay,
            mask=self.mask)

    def __call__(self, updates, state, params=None, **extra_args):
        # optax 0.2.8's bias correction mixes its int32 step count with floats, which jax's strict
        # promotion mode rejects: run it under standard promotion (the dtypes stay those of the params)
        with jax.numpy_dtype_promotion("standard"):
            return self.transform(0.0, 0.0).update(updates, state, params)

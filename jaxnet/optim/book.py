"""The book's optimizer rules (Deep Learning from Scratch 6.1, its common/optimizer.py) as optax pieces.

Each is exact, not approximated: tests/test_optim.py runs a numpy transcription of the book's classes
beside them (float64, 50 steps: equal to 1e-10 relative; AdaGrad also at gradients of 1e-8 to 1e3).
`optimizer(name, lr, book=True)` selects them (`BOOK_OPTIMIZERS`); a factory takes its
hyperparameters as keyword arguments, so `optax.inject_hyperparams` can keep them in the state (a
new or vmapped learning rate does not recompile `fit`).

- sgd: `W -= lr g` (optax.sgd).
- momentum: `v = momentum v - lr g; W += v` (the rate inside the velocity).
- nesterov: `v = momentum v - lr g; W += momentum^2 v - (1 + momentum) lr g` (the book's code).
- adagrad: `h += g^2; W -= lr g / (sqrt(h) + 1e-7)`, h from 0 (`book_adagrad`; optax's adagrad puts
  its eps inside the root and starts h at 0.1).
- rmsprop: `h = 0.99 h + 0.01 g^2; W -= lr g / (sqrt(h) + 1e-7)` (optax.rmsprop, eps outside the root).
- adam: optax.adam with the book's epsilon as a schedule (`BookAdamEps`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class BookAdamEps:
    """The book's Adam epsilon as a schedule for optax's Adam: `eps_t = eps / sqrt(1 - b2^t)`.

    The book updates `W -= lr_t m / (sqrt(v) + eps)` with `lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)` on the
    uncorrected moments m, v; that is `lr m_hat / (sqrt(v_hat) + eps / sqrt(1 - b2^t))` on optax's
    bias-corrected ones. Called with optax's step count (0 for the first update, so t = count + 1).
    """

    eps: float = 1e-7
    b2: float = 0.999

    def __call__(self, count: jax.Array) -> jax.Array:
        t = (count + 1).astype(jnp.result_type(float))  # float32, or float64 under jax.enable_x64
        return self.eps / jnp.sqrt(1.0 - self.b2 ** t)


def _book_momentum(learning_rate, momentum=0.9) -> optax.GradientTransformation:
    """The book's Momentum, `v <- momentum v - lr g; W <- W + v` (the rate inside the velocity)."""
    return optax.chain(optax.scale_by_learning_rate(learning_rate), optax.trace(decay=momentum))


def _book_nesterov(learning_rate, momentum=0.9) -> optax.GradientTransformation:
    """The book's Nesterov: `v <- momentum v - lr g; W <- W + momentum^2 v - (1 + momentum) lr g`.

    This is the book's code (common/optimizer.py), not quite the rule of the paper it cites (Bengio et
    al. 2013, arXiv:1212.0901: `W += momentum^2 v_old + (1 + momentum) u`, which optax's `nesterov=True`
    implements, with the rate outside the velocity): with `u = -lr g`,
    the book's step is `(1 + momentum) u + momentum^2 v_new`. A thin wrapper over `optax.trace`.
    """
    trace = optax.trace(decay=momentum)

    def update_fn(updates, state, params=None):
        velocity, state = trace.update(updates, state, params)
        step = jax.tree.map(lambda u, v: (1 + momentum) * u + momentum**2 * v, updates, velocity)
        return step, state

    return optax.chain(optax.scale_by_learning_rate(learning_rate),
                       optax.GradientTransformation(trace.init, update_fn))


# name -> (factory, defaults, whether the rate sits inside the velocity): optax's conventions (optax's defaults except


class BookAdaGradState(NamedTuple):
    """State of `book_adagrad`. h: the sum of the squared gradients so far (params' structure, zeros
    before the first step, the optimizer state's dtype)."""

    h: Any


def book_adagrad(learning_rate: float | jax.Array, eps: float | jax.Array = 1e-7) -> optax.GradientTransformation:
    """The book's AdaGrad, exactly: `h <- h + g * g;  update = -learning_rate * g / (sqrt(h) + eps)`.

    h starts at 0 and eps sits *outside* the square root, as in the book's `AdaGrad` class
    (`params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)`). optax's `adagrad` is a
    different rule (h from 0.1, `g / sqrt(h + eps)`): the first steps at gradients of 1e-8 differ by
    39% (the two agree only where sqrt(h) >> eps). Step t of a constant gradient g moves the weight
    by `learning_rate * |g| / (sqrt(t) |g| + eps)`: `learning_rate / sqrt(t)` for |g| >> eps, and the
    bounded `learning_rate |g| / eps` for tiny |g| (1e-8: lr / 11 on the first step).

    Args:
        learning_rate: > 0 (a float, or an array: traced under jit and vmap).
        eps: the book's 1e-7 by default.

    Returns:
        An `optax.GradientTransformation` with state `BookAdaGradState`; updates have the gradients'
        dtype. Called through `optimizer("adagrad", lr, book=True)`, the hyperparameters live in the
        state (`optax.inject_hyperparams`).

    Source: Duchi, Hazan & Singer, "Adaptive Subgradient Methods", JMLR 2011; Deep Learning from
    Scratch 6.1.5 (common/optimizer.py `AdaGrad`).

    >>> import jax.numpy as jnp
    >>> tx = book_adagrad(0.1)
    >>> updates, state = tx.update(jnp.array([1e-8, 2.0]), tx.init(jnp.zeros(2)))
    >>> [round(float(u), 7) for u in updates]  # -0.1 * 1e-8 / (1e-8 + 1e-7), -0.1 * 2 / (2 + 1e-7)
    [-0.0090909, -0.1]
    """

    def init_fn(params):
        return BookAdaGradState(h=optax.tree_utils.tree_zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        h = jax.tree.map(lambda h, g: h + g * g, state.h, updates)

        def step(g, h):
            return -(jnp.asarray(learning_rate, g.dtype) * g) / (jnp.sqrt(h) + jnp.asarray(eps, g.dtype))

        return jax.tree.map(step, updates, h), BookAdaGradState(h=h)

    return optax.GradientTransformation(init_fn, update_fn)


# name -> (factory, defaults, whether the rate sits inside the velocity): the book's rules and defaults
# (Deep Learning from Scratch 6.1); `jaxnet.optim.optimizer(name, lr, book=True)` reads this table.
BOOK_OPTIMIZERS = {
    "sgd": (optax.sgd, {}, False),
    "momentum": (_book_momentum, {"momentum": 0.9}, True),
    "nesterov": (_book_nesterov, {"momentum": 0.9}, True),
    "adagrad": (book_adagrad, {"eps": 1e-7}, False),
    "rmsprop": (optax.rmsprop, {"decay": 0.99, "eps": 1e-7, "eps_in_sqrt": False}, False),
    "adam": (optax.adam, {"b1": 0.9, "b2": 0.999, "eps": 1e-7}, False),
}

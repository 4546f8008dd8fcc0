"""Dropout, with the mask drawn from an explicit key and shared by the forward and backward passes.

Source: Srivastava et al., "Dropout: a simple way to prevent neural networks from overfitting", JMLR
2014; Deep Learning from Scratch 6.4.3 (the book's variant).
"""

from __future__ import annotations

import dataclasses
import numbers

import jax
import jax.numpy as jnp

from jaxnet.nn._layer import Layer, as_shape, require_key


@dataclasses.dataclass(frozen=True)
class Dropout(Layer):
    """Dropout: in training, each unit is zeroed with probability `rate`.

    `rate` is the *drop* probability, as in PyTorch, Flax and Equinox (jax.example_libraries.stax's
    `Dropout(rate)` takes the *keep* probability instead).

    - Default (inverted dropout): training `y = x * mask / (1 - rate)`, mask ~ Bernoulli(1 - rate)
      drawn from `key`; evaluation `y = x` exactly. The expected training output equals x.
    - `book=True` (Deep Learning from Scratch 6.4.3): training `y = x * mask` (no scaling),
      evaluation `y = x * (1 - rate)`.

    Backward: `dx = dy * mask / (1 - rate)` (book: `dy * mask`) with the forward's mask, which is
    recomputed from the same key; evaluation: `dx = dy` (book: `dy * (1 - rate)`). No params.
    Shapes: any -> the same shape and dtype.

    Args:
        rate: drop probability in [0, 1) (a Python float).
        book: the book's variant (see above).

    Raises:
        ValueError: rate outside [0, 1); training mode (`train=True`) without a key.
        TypeError: rate not a real number.
    """

    rate: float
    book: bool = dataclasses.field(default=False, kw_only=True)
    is_random = True

    def __post_init__(self):
        if isinstance(self.rate, bool) or not isinstance(self.rate, numbers.Real):
            raise TypeError(f"rate: expected the drop probability as a float in [0, 1), got {self.rate!r}")
        if not 0.0 <= float(self.rate) < 1.0:
            raise ValueError(f"rate: expected the drop probability in [0, 1), got {self.rate!r}")
        object.__setattr__(self, "rate", float(self.rate))

    @property
    def name(self) -> str:
        return f"Dropout({self.rate:g}{', book' if self.book else ''})"

    def init(self, key, input_shape):
        del key
        return as_shape("input_shape", input_shape), {}

    def _scale(self, x, key, train):
        """The factor y / x: mask / (1 - rate) (book: mask) in training, 1 (book: 1 - rate) in evaluation."""
        if not train:
            return jnp.asarray(1.0 - self.rate if self.book else 1.0, x.dtype)
        require_key(self.name, key, train)
        keep = jax.random.bernoulli(key, 1.0 - self.rate, x.shape)
        return jnp.where(keep, jnp.asarray(1.0 if self.book else 1.0 / (1.0 - self.rate), x.dtype),
                         jnp.zeros((), x.dtype))

    def apply(self, params, x, *, state=None, key=None, train=False):
        del params, state
        if not train and not self.book:
            return x
        return x * self._scale(x, key, train)

    def backward(self, params, x, y, dy, *, state=None, key=None, train=False):
        del params, y, state
        if not train and not self.book:
            return {}, dy
        return {}, dy * self._scale(x, key, train)

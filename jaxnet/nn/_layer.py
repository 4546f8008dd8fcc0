"""The layer contract, written once.

A layer is a small frozen dataclass: its fields are its configuration (sizes, rates, initialiser
names, dtype), it compares and hashes by value (two `Dense(4)` are equal, so a rebuilt network never
recompiles a jitted function that takes it as a static argument), and its methods are pure functions
of arrays:

- `init(key, input_shape) -> (output_shape, params)`: shapes exclude the batch axis; `params` is a
  dict of arrays (`{}` for a layer without parameters).
- `init_state(input_shape) -> state`: non-trainable state such as BatchNorm's running statistics
  (`{}` for most layers). State lives beside params: optax and weight decay never see it.
- `apply(params, x, *, state=None, key=None, train=False) -> y`: x is a batch `(batch, *input_shape)`
  (most layers also take one example). `train=False` is inference (evaluation) mode and is
  deterministic; `train=True` draws randomness from `key` (Dropout) and uses batch statistics
  (BatchNorm). The output never depends on `state` in training mode.
- `backward(params, x, y, dy, *, state=None, key=None, train=False) -> (dparams, dx)`: given the
  layer's input x, its output y and dL/dy, return dL/dparams (params' structure, shapes and dtypes)
  and dL/dx (x's shape). Derived by hand, like the tutorial's delta equations; it receives the same
  state, key and mode as `apply`, so it sees the same dropout mask and the same statistics.
  `jax.vjp` of `apply` is the independent check (`jaxnet.check_layer`).
- `update_state(params, state, x, *, key=None) -> new_state`: the state after a training step on the
  batch x (BatchNorm: the running statistics moved towards the batch's). Pure and separate from
  `apply`, so both gradient routes differentiate the same function. `params` and `key` are there so
  that networks, whose inner layers see the output of earlier ones, follow the same contract.

Which params are *weights* (the params weight decay applies to: the book's L2 term in
`fit(weight_decay=)` and `gradcheck(weight_decay=)`, and `jaxnet.regularization`'s decoupled decay,
all through `decay_mask`) is decided by one rule for every layer, present and future:

- by default, a param with two or more axes is a weight (Dense's W (n_in, n_out), Conv2D's W
  (FN, C, FH, FW)) and a param with one axis or none is not (biases, BatchNorm's gamma and beta,
  per-channel slopes such as PReLU's), as in PyTorch's and nanoGPT's usual parameter groups and
  optax's `p.ndim > 1` masks;
- a layer whose params break that rule sets the class attribute `decayed` to the tuple of the names
  of its weights (`()`: none). The names are checked: a non-tuple or a non-string raises TypeError
  when the class is defined, and a name the layer's params do not have raises ValueError when the
  mask is computed, so a typo cannot silently drop a weight out of regularisation.

So a new layer needs to declare nothing for its matrices and kernels to decay. The rule reads the
shape of one network's params: for params stacked over ensemble members, compute the mask inside
the `jax.vmap` (as `fit_ensemble` does), where every leaf has its per-member shape.

A layer without state or randomness ignores `state`, `key` and `train`. Subclass `Layer` (as a
`@dataclasses.dataclass(frozen=True)`) to write your own; the README's "Write your own layer"
section has a complete example.

Source: Deep Learning from Scratch, chapter 5 (layers with forward and backward) and 6.3-6.4
(BatchNorm, Dropout); jax.example_libraries.stax (init returns the output shape).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar
from collections.abc import Mapping

import jax
import numpy as np

Params = Any  # a pytree of arrays
State = Any


@dataclasses.dataclass(frozen=True)
class Layer:
    """Base class of layers: the contract in the module docstring. Subclasses are frozen dataclasses.

    Class attributes a subclass may set: `has_state` (True when `init_state` returns arrays that
    `update_state` changes), `is_random` (True when training mode needs a `key`) and `decayed`
    (None, the default: weight decay applies to the params with two or more axes; or a tuple of the
    names of the params it applies to, for a layer whose weights break that rule; see the module
    docstring).

    Raises:
        TypeError: when a subclass is defined with a `decayed` that is neither None nor a tuple of str.
    """

    has_state: ClassVar[bool] = False
    is_random: ClassVar[bool] = False
    decayed: ClassVar[tuple[str, ...] | None] = None  # None: the shape rule (ndim >= 2 is a weight)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        decayed = cls.decayed
        if decayed is not None and not (isinstance(decayed, tuple) and all(isinstance(n, str) for n in decayed)):
            raise TypeError(f"decayed: {cls.__name__}.decayed must be None (the shape rule: params with two or "
                            f"more axes are weights) or a tuple of param names such as ('W',), got {decayed!r}")

    @property
    def name(self) -> str:
        """A short label for reports and error messages."""
        return type(self).__name__

    def init(self, key: jax.Array, input_shape: tuple[int, ...]) -> tuple[tuple[int, ...], Params]:
        raise NotImplementedError(f"{self.name}: a layer must define init(key, input_shape)")

    def init_state(self, input_shape: tuple[int, ...]) -> State:
        del input_shape
        return {}

    def apply(self, params: Params, x: jax.Array, *, state: State = None, key: jax.Array | None = None,
              train: bool = False) -> jax.Array:
        raise NotImplementedError(f"{self.name}: a layer must define apply(params, x, ...)")

    def backward(self, params: Params, x: jax.Array, y: jax.Array, dy: jax.Array, *, state: State = None,
                 key: jax.Array | None = None, train: bool = False) -> tuple[Params, jax.Array]:
        raise NotImplementedError(f"{self.name}: a layer must define backward(params, x, y, dy, ...)")

    def update_state(self, params: Params, state: State, x: jax.Array, *, key: jax.Array | None = None) -> State:
        del params, x, key
        return state

    def decay_mask(self, params: Params) -> Any:
        """A pytree of Python bools like `params`: True for the weights that weight decay applies to,
        False for biases and normalisation parameters.

        The rule (module docstring): with `decayed = None` (the default), True exactly for the leaves
        with two or more axes; otherwise True for the params named in `decayed` (every leaf under
        such a name), False for the others. Shapes only: works on arrays, tracers and
        `jax.ShapeDtypeStruct`s, under jit, vmap and grad.

        Raises:
            ValueError: `decayed` names a param that `params` does not have.
            TypeError: `decayed` is set but `params` is not a dict of params.
        """
        if self.decayed is None:
            return jax.tree.map(lambda p: len(getattr(p, "shape", np.shape(p))) >= 2, params)
        if not isinstance(params, Mapping):
            raise TypeError(f"params: {self.name}.decayed = {self.decayed!r} names params, so its params must be a "
                            f"dict, got {type(params).__name__}")
        missing = [name for name in self.decayed if name not in params]
        if missing:
            raise ValueError(f"decayed: {self.name}.decayed names {missing}, which are not among its params "
                             f"{sorted(params)}; weight decay would silently skip them")
        return {name: jax.tree.map(lambda _, d=name in self.decayed: d, p) for name, p in params.items()}


def require_key(layer_name: str, key: Any, train: bool) -> None:
    """Raise ValueError when training mode needs a PRNG key and none was given (static: works under jit)."""
    if train and key is None:
        raise ValueError(f"key: {layer_name} draws random numbers in training mode (train=True) and needs a "
                         f"PRNG key, e.g. key=jax.random.key(0); evaluation (train=False) needs none")


def as_shape(name: str, shape: Any) -> tuple[int, ...]:
    """`shape` as a tuple of Python ints; TypeError naming the argument when it is not a sequence of ints."""
    try:
        out = tuple(int(d) for d in shape)
    except TypeError as err:
        raise TypeError(f"{name}: expected a shape (a tuple of ints such as (2,)), got {shape!r}") from err
    if any(d < 0 for d in out):
        raise ValueError(f"{name}: expected non-negative sizes, got {shape!r}")
    return out

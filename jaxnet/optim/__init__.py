"""Optimizers: by name (optax, with traced hyperparameters), the book's exact rules, and the tutorial's
plateau learning-rate decay.

- `optimizer(name, learning_rate, *, book=False, plateau=None, **options)`, `sgd`, `OptimizerSpec`,
  `OPTIMIZERS` (`jaxnet.optim._named`): an optimizer by name as an optax transformation whose
  hyperparameters live in its state, so a new or vmapped learning rate does not recompile `fit`.
- `book_adagrad`, `BookAdaGradState`, `BookAdamEps`, `BOOK_OPTIMIZERS` (`jaxnet.optim.book`): the
  update rules of Deep Learning from Scratch 6.1 (`book=True`), exact.
- `plateau_decay`, `PlateauDecay`, `PlateauDecayState`, `EXACT_RTOL`, `learning_rate_of`, `decays`
  (`jaxnet.optim.plateau`): the tutorial's plateau decay and the learning rate read back from a state.
- `state_dtype`: the optimizer states' precision (float32, or float64 for float64 params).

Source: Deep Learning from Scratch 6.1; the tutorial's schedule class; optax.
"""

from jaxnet.optim._named import OPTAX_OPTIMIZERS, OPTIMIZERS, OptimizerSpec, optimizer, sgd
from jaxnet.optim._precision import state_dtype
from jaxnet.optim.book import BOOK_OPTIMIZERS, BookAdaGradState, BookAdamEps, book_adagrad
from jaxnet.optim.plateau import (EXACT_RTOL, PlateauDecay, PlateauDecayState, decays, learning_rate_of,
                                  plateau_decay)

__all__ = ["optimizer", "sgd", "OptimizerSpec", "OPTIMIZERS", "OPTAX_OPTIMIZERS", "BOOK_OPTIMIZERS",
           "book_adagrad", "BookAdaGradState", "BookAdamEps", "plateau_decay", "PlateauDecay",
           "PlateauDecayState", "EXACT_RTOL", "learning_rate_of", "decays", "state_dtype"]

"""Training: one engine under every trainer.

- `jaxnet.fit` (one network), `fit_ensemble` (N networks in one compiled call: the engine under
  `jax.vmap`), `fit_data_parallel` (each batch split over devices), `fit_multihost` (several
  processes) are thin doors: each validates its arguments once, then calls the engine
  (`jaxnet/train/_core.py`), a pure step and epoch runner that checks nothing.
- `FitResult` is what they return; `EarlyStopping` configures early stopping; `epoch_keys` derives
  the key streams of a run; `member` takes one member out of `fit_ensemble`'s results;
  `device_mesh` makes the 1-D mesh of the sharded trainers; `initialize` joins a multi-process job;
  `divergence_warning` names the epoch where a run diverged.

`docs/architecture.md` shows how data flows through one `fit` call.
"""

from jaxnet.train._core import EarlyStopping, FitResult, epoch_keys
from jaxnet.train._ensemble import fit_ensemble, member
from jaxnet.train._fit import divergence_warning
from jaxnet.train._parallel import device_mesh, fit_data_parallel, fit_multihost, initialize

__all__ = ["EarlyStopping", "FitResult", "device_mesh", "divergence_warning", "epoch_keys", "fit_data_parallel",
           "fit_ensemble", "fit_multihost", "initialize", "member"]

"""Shared test configuration.

- hypothesis: a CI profile with a bounded number of examples and no deadline (first calls compile).
- `x64`: a fixture that runs a test with float64 enabled (`jax.enable_x64`), as gradient checks need.
- `REPO` and `MNIST_DIR`: the repository root and the shared MNIST files beside it (may be absent).
"""

from __future__ import annotations

from pathlib import Path

import jax
import pytest
from hypothesis import HealthCheck, Phase, settings

settings.register_profile(
    "jaxnet",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
    # no shrinking: each example compiles, so shrinking a failure could take many minutes in CI;
    # the failing example is printed as found
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
settings.load_profile("jaxnet")

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield

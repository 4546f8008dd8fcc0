"""Shared test configuration.

- 4 fake CPU devices for the whole run (`--xla_force_host_platform_device_count=4`, set in `XLA_FLAGS`
  here, before anything imports jax: pytest imports this file first), so the sharding tests run in
  this process instead of a subprocess each. Single-device code still runs on device 0.
- Faster XLA compiles for the test run (see `TEST_XLA_FLAGS`); numerics stay within every test's
  tolerance against its independent reference.
- No persistent compilation cache for `python -m experiments` runs (`JAXNET_COMPILE_CACHE=0`).
- JAX's strict dtype promotion for the whole run (`jax_numpy_dtype_promotion="strict"`): an implicit
  promotion between array dtypes (int32 with float32, bfloat16 with float32, ...) raises instead of
  silently widening, so every dtype change in the library is explicit.
- hypothesis: a CI profile with a bounded number of examples and no deadline (first calls compile).
- `x64`: a fixture that runs a test with float64 enabled (`jax.enable_x64`), as gradient checks need.
- Under xdist (`-n 2`), work-stealing scheduling instead of `load` (`pytest_xdist_make_scheduler`).
- `REPO` and `MNIST_DIR`: the repository root and the shared MNIST files beside it (may be absent).
- `user_env()`: the environment of a user's process, for the docs and the notebook run in
  subprocesses: without this run's `JAX_DISABLE_MOST_OPTIMIZATIONS` and fake devices.
"""

from __future__ import annotations

import os
from pathlib import Path

FAKE_DEVICES = 4
os.environ["JAXNET_COMPILE_CACHE"] = "0"  # `python -m experiments` runs (in-process or not) stay hermetic
# Faster compiles for the test run only (most of the suite's time is XLA compiling small programs):
# XLA's classic CPU loop emitters instead of the MLIR fusion emitters, one codegen thread per program,
# and `jax_disable_most_optimizations` (backend optimisation level 0, no expensive LLVM passes).
# Set in the environment, so `python -m experiments` and doc subprocesses compile the same way (the
# cross-process bitwise tests compare like with like). The library and the CLI are unchanged.
TEST_XLA_FLAGS = {
    "xla_force_host_platform_device_count": str(FAKE_DEVICES),
    "xla_cpu_use_fusion_emitters": "false",
    "xla_cpu_parallel_codegen_split_count": "1",
}
os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
# read once, when jax starts its CPU backend (on first use, after this file has run)
os.environ["XLA_FLAGS"] = " ".join(
    [flag for flag in os.environ.get("XLA_FLAGS", "").split()
     if flag.lstrip("-").split("=")[0] not in TEST_XLA_FLAGS]
    + [f"--{name}={value}" for name, value in TEST_XLA_FLAGS.items()])

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, Phase, settings  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")

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


def user_env() -> dict:
    """The environment of a user who runs a doc's block or the notebook: XLA's optimisations on (they
    change the rounding of long runs, so the docs state what a default configuration prints), one
    device, no MPLBACKEND, the shared MNIST files in $JAXNET_DATA_DIR. Kept from the test run: the
    faster XLA emitters of TEST_XLA_FLAGS, which give the same numbers in every doc block here."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MPLBACKEND", "JAXNET_DATA_DIR", "JAX_DISABLE_MOST_OPTIMIZATIONS", "XLA_FLAGS")}
    flags = [flag for flag in os.environ.get("XLA_FLAGS", "").split()
             if flag.lstrip("-").split("=")[0] != "xla_force_host_platform_device_count"]
    if flags:
        env["XLA_FLAGS"] = " ".join(flags)
    env["JAXNET_DATA_DIR"] = str(MNIST_DIR.parent)  # $JAXNET_DATA_DIR/mnist holds the shared files
    return env


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`-n 2` without `--dist` (the README's command) schedules by work stealing: each worker starts on
    one contiguous half of the tests and an idle worker takes the back half of the other's queue, so a
    few long tests cannot leave one worker waiting at the end (xdist's default `load` scheduling
    queues tests on a worker that another, idle worker cannot take). Any other `--dist` is kept."""
    if config.getvalue("dist") == "load":
        from xdist.scheduler import WorkStealingScheduling

        return WorkStealingScheduling(config, log)
    return None

"""Shared plumbing for experiments: option parsing, MNIST or the one line that skips, metrics files,
timing a compiled call."""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable

import jax
import numpy as np

from jaxnet import checkpoint, data

MNIST_HOW_TO = ("pass --data-dir DIR (the folder of the IDX files; `python -m experiments all --data-dir DIR` "
                "passes it on) or set JAXNET_DATA_DIR so that $JAXNET_DATA_DIR/mnist holds them")


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every experiment takes: --seed, --out, --quick and
    --data-dir (so that `python -m experiments all --data-dir DIR` reaches the experiments that read files)."""
    p = argparse.ArgumentParser(prog=f"python -m experiments {name}", description=description)
    p.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    p.add_argument("--out", type=Path, default=Path("runs") / name,
                   help=f"output directory (default runs/{name} in the current directory)")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for smoke tests")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder holding the MNIST IDX files, for the experiments that read MNIST (default: "
                        "$JAXNET_DATA_DIR/mnist, else ~/.cache/jaxnet/mnist; see jaxnet.data.mnist_dir)")
    return p


def mnist_or_skip(name: str, p: argparse.ArgumentParser, data_dir: Path | None, *, hint: str = "",
                  **load_options) -> data.MNIST | None:
    """MNIST for experiment `name`, or None after printing the one line every experiment prints without it.

    From `data_dir` (`--data-dir`) if given: a folder without the files is an error (`p.error`). Else from
    `jaxnet.data.load_mnist`'s default folders ($JAXNET_DATA_DIR/mnist, then ~/.cache/jaxnet/mnist); when
    they hold no MNIST files, prints `NAME: skipped, no MNIST files (...); pass --data-dir DIR ...` (+ `hint`)
    and returns None, so that `python -m experiments all` runs anywhere. `load_options` go to `load_mnist`
    (`download=True` fetches the files instead of skipping).
    """
    if data_dir is not None:
        if not Path(data_dir).is_dir() and not load_options.get("download"):
            p.error(f"--data-dir {data_dir}: no such directory")
        try:
            return data.load_mnist(data_dir, **load_options)
        except FileNotFoundError as err:
            p.error(f"--data-dir: {err}")
    env = os.environ.get("JAXNET_DATA_DIR")
    places = ([Path(env) / "mnist"] if env else []) + [data.cache_dir() / "mnist"]  # as data.mnist_dir
    if not load_options.get("download") and not any(place.is_dir() for place in places):
        reason = f"no folder {' or '.join(map(str, places))}"
    else:
        try:
            return data.load_mnist(None, **load_options)
        except FileNotFoundError as err:
            reason = str(err)
    print(f"{name}: skipped, no MNIST files ({reason}); {MNIST_HOW_TO}{hint}")
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(np.asarray(value).tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def write_metrics(out: Path, metrics: dict) -> Path:
    """Write `metrics` (numbers, arrays, nested dicts) as `out/metrics.json`; NaN becomes null."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "metrics.json"
    path.write_text(json.dumps(_jsonable(metrics), indent=2) + "\n")
    return path


def start_or_resume(args: argparse.Namespace, start: dict, optimizer: Any, config: dict) -> tuple[dict, dict, int]:
    """Starting params, optimizer states and epochs already done for the runs in `start` (label -> params).

    Fresh (`optimizer.init` of each) unless `args.resume`: then those saved in `OUT/checkpoint.npz` by
    `save_runs`, whose config must equal `config` (`checkpoint.check_config` names what differs).
    A missing, damaged or mismatched checkpoint exits with one line (SystemExit), not a traceback."""
    states = {label: optimizer.init(params) for label, params in start.items()}
    if not args.resume:
        return start, states, 0
    path = args.out / "checkpoint.npz"
    if not path.is_file():
        raise SystemExit(f"--resume: no checkpoint at {path}; run once without --resume (same --out) first")
    try:
        saved = checkpoint.load(path, like=start, opt_state_like=states)
        checkpoint.check_config(saved.config, config)
    except ValueError as err:
        raise SystemExit(f"--resume: cannot resume from {path}: {err}") from None
    return saved.params, saved.opt_state, saved.config["epochs"]


def save_runs(args: argparse.Namespace, params: dict, states: dict, config: dict, epochs_total: int) -> None:
    """Save the runs' params and optimizer states (label -> tree) to `OUT/checkpoint.npz` for `--resume`."""
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint.save(args.out / "checkpoint.npz", params, opt_state=states, config={**config, "epochs": epochs_total})


COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def timed(fn: Callable, *args: Any, **kwargs: Any) -> tuple[Any, float, float]:
    """`(fn(*args, **kwargs), seconds, compile_seconds)`: the call's wall time (waiting for its result)
    and the part of it XLA spent compiling (jax's compile-duration events, `jax.monitoring`)."""
    compiling = [0.0]

    def listen(event: str, duration: float, **_: Any) -> None:
        if event == COMPILE_EVENT:
            compiling[0] += duration

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        start = time.perf_counter()
        out = jax.block_until_ready(fn(*args, **kwargs))
        seconds = time.perf_counter() - start
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return out, seconds, compiling[0]

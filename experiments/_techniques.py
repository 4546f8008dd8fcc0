"""Shared plumbing for the training-techniques experiments (Deep Learning from Scratch, chapter 6).

- `load_mnist_or_skip`: MNIST from `--data-dir`, else `$JAXNET_DATA_DIR/mnist` or ~/.cache/jaxnet/mnist;
  without them the experiment prints one line and is skipped, so `python -m experiments all` runs on a
  fresh machine.
- `train_members`: N networks trained together by one `jaxnet.train.fit_ensemble` call (rounds are
  epochs, or the book's iterations drawn with replacement), timed, with per-round accuracies.
- `select_optimizer`: one optax transformation that runs member i's choice among several, so that
  networks trained with different optimizers can be vmapped.
- `smooth_curve`: the book's smoothing of loss curves (its common/util.py).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._common import mnist_or_skip, parser, timed
from jaxnet import data, optim
from jaxnet.train import fit_ensemble
from jaxnet import Network

LOSS = "softmax_cross_entropy"
T10K_SPLIT = (8000, 2000)


def add_data_dir(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give `p` a `--data-dir` option unless it has one already (the common parser may add it)."""
    try:
        p.add_argument("--data-dir", type=Path, default=None,
                       help="folder with the MNIST IDX files (default $JAXNET_DATA_DIR/mnist)")
    except argparse.ArgumentError:
        pass
    return p


def add_full(p: argparse.ArgumentParser, what: str) -> argparse.ArgumentParser:
    """Give `p` the `--full` option: the book's sizes instead of the defaults chosen for `all`."""
    p.add_argument("--full", action="store_true", help=f"the book's sizes ({what}); slower")
    return p


def start(name: str, doc: str, argv: list[str] | None, *, full: str | None = None):
    """Parse experiment `name`'s options (--seed, --out, --quick, --data-dir, and --full when `full` says
    what it does) and load MNIST (`load_mnist_or_skip`). Returns (args, mnist or None, start time)."""
    p = add_data_dir(parser(name, doc.splitlines()[0]))
    if full is not None:
        add_full(p, full)
    args = p.parse_args(argv)
    started = time.perf_counter()
    return args, load_mnist_or_skip(p, args, name), started


def sgd(learning_rate: float | jax.Array = 0.01) -> optax.GradientTransformation:
    """SGD (the book's default rate 0.01), with the rate traced: `make_optimizer` for `train_members`."""
    return optim.optimizer("sgd", learning_rate)


def load_mnist_or_skip(p: argparse.ArgumentParser, args: argparse.Namespace, name: str) -> data.MNIST | None:
    """MNIST (flattened, pixels in [0, 1]) from `args.data_dir`, else from `$JAXNET_DATA_DIR/mnist` or
    ~/.cache/jaxnet/mnist (`experiments._common.mnist_or_skip`).

    With only the t10k files the 10,000 images are split 8,000 train / 2,000 test (`jaxnet.data.load_mnist`,
    stratified and deterministic). An explicit `--data-dir` that does not hold MNIST is an error (`p.error`);
    without MNIST files one line is printed and None returned: the caller returns `skipped(name)`.
    """
    return mnist_or_skip(name, p, getattr(args, "data_dir", None), flatten=True, t10k_split=T10K_SPLIT)


def skipped(name: str) -> dict:
    """The summary an experiment returns when MNIST is absent (the line printed says how to add it)."""
    return {"skipped": "no MNIST files"}


def book_scaled_params(net: Network, key: jax.Array, input_shape: tuple[int, ...], scales: jax.Array) -> Any:
    """Initial params with every weight matrix `scales[i] * N(0, 1)` (the book's `weight_init_std`), stacked
    over members i; biases zero and BatchNorm's gamma, beta (ones, zeros) as `net.init` makes them.

    The weights are the params that `net.decay_mask` marks (Dense's W). They are cut, in order, from one
    N(0, 1) draw of their total size: all members, and two networks whose weight matrices have the same
    shapes in the same order (with and without BatchNorm), share the same standard-normal values and
    differ only by the scale. Returns leaves (len(scales), ...).
    """
    @jax.jit
    def scaled(key, scales):
        params = net.init(key, input_shape)[1]
        leaves, treedef = jax.tree.flatten(params)
        mask = jax.tree.leaves(net.decay_mask(params))
        draw = jax.random.normal(key, (sum(p.size for p, m in zip(leaves, mask) if m),), leaves[0].dtype)
        unit, offset = [], 0
        for p, m in zip(leaves, mask):
            unit.append(draw[offset:offset + p.size].reshape(p.shape) if m else p)
            offset += p.size if m else 0
        return jax.vmap(lambda s: jax.tree.unflatten(treedef, [s * p if m else p for p, m in zip(unit, mask)]))(scales)

    return jax.tree.map(np.asarray, scaled(key, jnp.asarray(scales, jnp.float32)))


def select_optimizer(transforms: Sequence[optax.GradientTransformation],
                     index: jax.Array) -> optax.GradientTransformation:
    """One optax transformation that applies `transforms[index]`; `index` may be traced (vmapped).

    The state holds every transformation's state and every update computes all of them (elementwise
    work, small beside a network's matrix products), so members of a vmap can each follow their own
    rule: lane i's params only ever receive `transforms[index_i]`'s updates. Extra arguments (loss
    values) are not forwarded: use it with transformations that take none.
    """
    transforms = tuple(transforms)

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None):
        results = [t.update(updates, s, params) for t, s in zip(transforms, state)]
        chosen = jax.tree.map(lambda *u: jnp.stack(u)[index], *[r[0] for r in results])
        return chosen, tuple(r[1] for r in results)

    return optax.GradientTransformation(init, update)


def train_members(
    net: Network,
    params: Any,
    x: jax.Array,
    y: jax.Array,
    *,
    make_optimizer: Callable[..., optax.GradientTransformation],
    hyper: Mapping[str, jax.Array] | None = None,
    weight_decay: jax.Array | None = None,
    rounds: int,
    batch_size: int,
    key: jax.Array,
    sampling: str = "epochs",
    eval_sets: Mapping[str, tuple[jax.Array, jax.Array]] | None = None,
    progress: str | None = None,
) -> dict:
    """N networks (params stacked on a leading member axis) trained together by one
    `jaxnet.train.fit_ensemble` call, timed (`_common.timed`), its history as arrays.

    sampling="epochs": a round is one epoch (a fresh shuffle, `n // batch_size` minibatches of
        `batch_size` plus a smaller one with the rest).
    sampling="iterations": a round is one of the book's iterations: one step on `batch_size` examples
        drawn with replacement (`fit_ensemble(..., sampling="replacement", steps_per_epoch=1)`); the
        recorded loss is that batch's, before the step.
    Every member sees the same batches and dropout masks (one key), as the book's comparisons do;
    member i's optimizer is `make_optimizer(**hyper_i)`; `eval_sets` are scored after every round.

    Returns:
        {"params", "state": final stacked trees; "loss": (N, rounds); "<name>_accuracy": (N, rounds)
        for each eval set; "diverged_round": (N,) int, -1 if the member never met a non-finite epoch;
        "compile_seconds", "seconds": the call's compiling and remaining (training) wall times}.
    """
    if sampling not in ("epochs", "iterations"):
        raise ValueError(f"sampling: expected 'epochs' or 'iterations', got {sampling!r}")
    result, seconds, compile_seconds = timed(
        fit_ensemble, net, x, y, params=params, loss=LOSS, optimizer=make_optimizer, hyperparams=hyper,
        weight_decay=weight_decay, epochs=rounds, batch_size=batch_size, key=key, evaluation=eval_sets,
        sampling="replacement" if sampling == "iterations" else "shuffle",
        steps_per_epoch=1 if sampling == "iterations" else None, progress=progress or False)
    history = {k: np.asarray(v) for k, v in result.history.items()}
    return {"params": result.params, "state": result.state, "loss": history.pop("loss"),
            **{k: v for k, v in history.items() if k.endswith("_accuracy")},
            "diverged_round": history["diverged_epoch"], "compile_seconds": compile_seconds,
            "seconds": seconds - compile_seconds}


def last_finite(values: np.ndarray) -> np.ndarray:
    """Per row of `values` (members, epochs), its last non-NaN entry (NaN for a row without any): a
    member whose run diverged or stopped early has NaN records after that epoch."""
    values = np.asarray(values, np.float64)
    finite = ~np.isnan(values)
    last = values.shape[-1] - 1 - np.argmax(finite[..., ::-1], axis=-1)
    out = np.take_along_axis(values, last[..., None], axis=-1)[..., 0]
    return np.where(finite.any(axis=-1), out, np.nan)


def divergence_line(diverged_round: np.ndarray, labels: Sequence[str], name: str) -> str | None:
    """One line naming the members whose run met a non-finite epoch (fit then keeps the params from before it)."""
    bad = [f"{labels[i]} (round {int(r)})" for i, r in enumerate(np.asarray(diverged_round)) if r >= 0]
    if not bad:
        return None
    return f"warning: {name}: {len(bad)} of {len(labels)} runs met a non-finite loss: {', '.join(bad)}"


def smooth_curve(x: np.ndarray) -> np.ndarray:
    """The book's `smooth_curve` (common/util.py): an 11-point Kaiser window (beta 2), mirrored ends.

    x: (T,) with T >= 11; returns (T,).
    """
    x = np.asarray(x, np.float64)
    window = 11
    s = np.r_[x[window - 1:0:-1], x, x[-1:-window:-1]]
    w = np.kaiser(window, 2)
    y = np.convolve(w / w.sum(), s, mode="valid")
    return y[5:len(y) - 5]


def loss_curves_figure(losses: Mapping[str, np.ndarray], title: str, path, *, ylim=(0.0, 2.5)):
    """The book's figure 6-9/6-15 style: per-iteration training losses, smoothed (`smooth_curve`), one line each."""
    from jaxnet import plot

    fig, ax = plot.figure(1, 1, size=(6.4, 4.2))
    for i, (label, loss) in enumerate(losses.items()):
        ax.plot(np.arange(len(loss)), smooth_curve(loss), label=label, color=f"C{i}", linewidth=1.2)
    ax.set(xlabel="iteration", ylabel="training loss (smoothed)", ylim=ylim, title=title)
    ax.legend()
    return plot.save(fig, path)


def iteration_report(losses: Mapping[str, np.ndarray], book: Mapping[str, float], at: int = 1900) -> tuple[dict, str]:
    """Per label: the batch loss at iteration `at` (the book prints that one) and the mean of the last
    100 iterations; and a text 'label L (book B)' for the summary line."""
    numbers, parts = {}, []
    for label, loss in losses.items():
        i = min(at, len(loss) - 1)
        numbers[label] = {"loss_at": float(loss[i]), "at": i, "last_100_mean": float(np.mean(loss[-100:])),
                          "book_at_1900": book[label]}
        parts.append(f"{label} {loss[i]:.3f} (book {book[label]:.3f})")
    return numbers, ", ".join(parts)


def compare_iterations(name: str, args: argparse.Namespace, mnist: data.MNIST, net: Network, params: Any,
                       labels: Sequence[str], book: Mapping[str, float], *, title: str,
                       make_optimizer: Callable[..., optax.GradientTransformation] = sgd,
                       hyper: Mapping[str, jax.Array] | None = None, ylim=(0.0, 2.5)) -> dict:
    """The book's iteration-based comparisons on MNIST (6.1.8, 6.2.4): the members `labels` (params stacked
    in that order) train together for 2000 iterations of 128 images drawn with replacement (60 with
    --quick), key `fold_in(key(seed), 1)`; then the smoothed loss curves figure `OUT/NAME.png`.

    Returns {"losses": label -> (iterations,), "numbers": `iteration_report`'s, "last": label -> mean of
    the last 100 losses, "summary": "NAME: loss at iteration 1900: ...; mean of the last 100: ...",
    "timing": the line on sizes and times, "metrics": the common metrics.json entries}.
    """
    iterations = 60 if args.quick else 2000
    run = train_members(net, params, mnist.x_train, mnist.y_train, make_optimizer=make_optimizer, hyper=hyper,
                        rounds=iterations, batch_size=128, key=jax.random.fold_in(jax.random.key(args.seed), 1),
                        sampling="iterations", progress=name)
    warning = divergence_line(run["diverged_round"], labels, name)
    if warning:
        print(warning)
    losses = dict(zip(labels, run["loss"]))
    numbers, text = iteration_report(losses, book)
    last = {label: numbers[label]["last_100_mean"] for label in labels}
    figure = loss_curves_figure(losses, title, args.out / f"{name}.png", ylim=ylim)
    n_train = int(mnist.x_train.shape[0])
    return {
        "losses": losses, "numbers": numbers, "last": last,
        "summary": (f"{name}: loss at iteration {numbers[labels[0]]['at']}: {text}; mean of the last 100: "
                    + ", ".join(f"{label} {value:.3f}" for label, value in last.items())),
        "timing": (f"  {iterations} iterations of 128 from {n_train} images ({mnist.source}), the {len(labels)} "
                   f"networks in one vmapped call: {run['compile_seconds']:.1f} s compiling, {run['seconds']:.1f} s "
                   f"training; figure: {figure}"),
        "metrics": {"seed": args.seed, "source": mnist.source, "n_train": n_train, "iterations": iterations,
                    "batch_size": 128, "results": numbers, "loss": losses, "diverged_round": run["diverged_round"],
                    "compile_seconds": run["compile_seconds"], "train_seconds": run["seconds"]}}


def stack(trees: Sequence[Any]) -> Any:
    """Pytrees of equal structure stacked on a new leading (member) axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def init_members(nets: Sequence[Network], key: jax.Array) -> Any:
    """`nets[i].init(key)[1]` stacked over i, as host (numpy) arrays: networks with params of one
    structure (e.g. differing only by initialiser) from the same key, in one compiled call rather than
    op by op (each eager op compiles on its own)."""
    return jax.tree.map(np.asarray, jax.jit(lambda k: stack([net.init(k)[1] for net in nets]))(key))


def curves_grid(panels: Sequence[tuple[str, np.ndarray, np.ndarray]], path, *, columns: int, labels: tuple[str, str],
                title: str, size: tuple[float, float]):
    """A grid of accuracy curves over epochs: per panel (title, solid curve, dashed curve), y in [0, 1]."""
    from jaxnet import plot

    rows = -(-len(panels) // columns)
    fig, axes = plot.figure(rows, columns, size=size, squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.set_axis_off()
    for i, (ax, (name, solid, dashed)) in enumerate(zip(axes.ravel(), panels)):
        epochs = np.arange(1, len(solid) + 1)
        ax.plot(epochs, solid, color="C0", label=labels[0])
        ax.plot(epochs, dashed, "--", color="C1", label=labels[1])
        ax.set(ylim=(0, 1.02), title=name)
        ax.title.set_fontsize(8 if "\n" in name else 9)
        ax.tick_params(labelsize=7)
        if i % columns:
            ax.set_yticklabels([])
        if i >= len(panels) - columns:
            ax.set_xlabel("epoch", fontsize=8)
    axes[0, 0].set_ylabel("accuracy", fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    return plot.save(fig, path)

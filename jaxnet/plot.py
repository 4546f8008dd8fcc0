"""Figures, headless-safe: matplotlib's object-oriented `Figure`, never `pyplot`.

No backend is selected or forced and no window can open: `Figure.savefig` renders PNGs with Agg
whatever `MPLBACKEND` says, and figures are never registered with pyplot, so nothing accumulates and
nothing blocks. `save` writes the file and releases the figure's artists.

Importing `jaxnet` does not import this module (it imports matplotlib); `jaxnet.plot` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from matplotlib.figure import Figure


def figure(nrows: int = 1, ncols: int = 1, *, size: tuple[float, float] | None = None, **kwargs):
    """A new `(Figure, axes)` pair (axes squeezed as in pyplot.subplots), size in inches."""
    size = size or (4.2 * ncols, 3.6 * nrows)
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, **kwargs)
    return fig, axes


def save(fig: Figure, path: str | Path, *, dpi: int = 110) -> Path:
    """Write `fig` as a PNG at `path` (parent directories created) and clear it; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    fig.clear()
    return path


def loss_curve(ax, losses: Sequence[float] | np.ndarray, *, label: str | None = None, log: bool = True) -> None:
    """Plot per-epoch losses (epochs on x) on `ax`; logarithmic y by default."""
    losses = np.asarray(losses)
    if losses.ndim == 1:
        ax.plot(np.arange(losses.size), losses, label=label)
    else:  # one curve per row: mean and min-max band
        mean = np.nanmean(losses, axis=0)
        ax.plot(mean, label=label)
        ax.fill_between(np.arange(mean.size), np.nanmin(losses, 0), np.nanmax(losses, 0), alpha=0.25)
    if log and np.all(losses[np.isfinite(losses)] > 0):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if label:
        ax.legend()


def decision_boundary(
    ax,
    predict: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    *,
    threshold: float = 0.5,
    resolution: int = 200,
    margin: float = 0.5,
) -> None:
    """Shade `predict` (a function of (n, 2) points returning (n, 1) scores) over the data's box, draw
    the `threshold` contour and scatter the points (x (n, 2), y (n,) or (n, 1) in {0, 1})."""
    x, y = np.asarray(x), np.asarray(y).reshape(-1)
    lo, hi = x.min(0) - margin, x.max(0) + margin
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = np.stack([g0.ravel(), g1.ravel()], axis=1).astype(np.float32)
    z = np.asarray(predict(grid)).reshape(g0.shape)
    ax.contourf(g0, g1, z, levels=20, cmap="RdBu_r", alpha=0.6)
    ax.contour(g0, g1, z, levels=[threshold], colors="k", linewidths=1.5)
    ax.scatter(x[:, 0], x[:, 1], c=y, cmap="RdBu_r", edgecolors="k", s=25, vmin=0, vmax=1)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")


def confusion(ax, matrix: np.ndarray, *, labels: Sequence[str] | None = None) -> None:
    """Draw a confusion matrix (true class on rows, predicted on columns) with its counts."""
    matrix = np.asarray(matrix)
    ax.imshow(matrix, cmap="Blues")
    n = matrix.shape[0]
    labels = labels or [str(i) for i in range(n)]
    ax.set_xticks(range(n), labels)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    big = matrix.max() / 2 if matrix.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if matrix[i, j] > big else "black")

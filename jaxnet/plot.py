"""Figures, headless-safe: matplotlib's object-oriented `Figure`, never `pyplot`.

No backend is selected or forced and no window can open: `Figure.savefig` renders PNGs with Agg
whatever `MPLBACKEND` says, and figures are never registered with pyplot, so nothing accumulates and
nothing blocks. `save` writes the file and releases the figure's artists. In Jupyter a figure shows
itself when it is the value of a cell (`fig` on the last line), rendered the same way, without pyplot
or `%matplotlib inline` (`NotebookFigure`).

Importing `jaxnet` does not import this module (it imports matplotlib); `jaxnet.plot` does.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


class NotebookFigure(Figure):
    """A matplotlib `Figure` that Jupyter displays: IPython shows an object's `_repr_png_` as an image.

    A plain `Figure` made without pyplot shows in a notebook only as `<Figure size ...>` text, unless
    pyplot was imported first (its inline backend registers the display). This one renders itself to a
    PNG with Agg, as `save` does: no backend is selected, nothing is registered with pyplot, and outside
    IPython nothing calls it.
    """

    def _repr_png_(self) -> bytes | None:
        """The figure as PNG bytes (110 dpi, trimmed to its content); None once `save` has cleared it."""
        if not self.axes and not self.subfigs and not self.texts and not self.images:
            return None
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        return buffer.getvalue()


def figure(nrows: int = 1, ncols: int = 1, *, size: tuple[float, float] | None = None, **kwargs):
    """A new matplotlib `Figure` (constrained layout, not registered with pyplot) and its axes.

    The figure is a `NotebookFigure`: the value of a Jupyter cell (`fig`) shows as an image.

    Args:
        nrows, ncols: the grid of axes.
        size: (width, height) in inches; default (4.2 * ncols, 3.6 * nrows).
        **kwargs: passed to `Figure.subplots` (e.g. sharex=True).

    Returns:
        `(fig, axes)`: axes squeezed as `pyplot.subplots` does (one `Axes` for 1 x 1, a 1-D array for
        one row or column, else 2-D).

    Raises:
        ValueError: from matplotlib, for a grid smaller than 1 x 1.
    """
    size = size or (4.2 * ncols, 3.6 * nrows)
    fig = NotebookFigure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, **kwargs)
    return fig, axes


def save(fig: Figure, path: str | Path, *, dpi: int = 110) -> Path:
    """Write `fig` to `path` (PNG unless the suffix names another format matplotlib writes), creating
    missing parent directories, then clear the figure so that its artists are released.

    Args:
        fig: a `Figure`, e.g. from `figure`.
        path: the file to write; an existing file is overwritten.
        dpi: resolution in dots per inch (size in pixels = size in inches * dpi).

    Returns:
        The path written, as a `Path`.

    Raises:
        OSError: the file cannot be written. ValueError: a suffix matplotlib has no writer for.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    fig.clear()
    return path


def loss_curve(ax, losses: Sequence[float] | np.ndarray, *, label: str | None = None, log: bool = True) -> None:
    """Plot losses against the epoch (0, 1, ...) on `ax`, e.g. `history["loss"]` from `fit`.

    Args:
        ax: a matplotlib `Axes`.
        losses: (epochs,) one run, or (runs, epochs) several (e.g. vmapped seeds): then the mean over
            runs is drawn with a band from the minimum to the maximum; NaN entries (epochs after a
            divergence) are left out of the mean and band. Any float dtype; the loss's own units.
        label: legend entry (a legend is drawn when given).
        log: logarithmic y axis, used only when every finite loss is > 0.

    Raises:
        ValueError: if `losses` is not 1-D or 2-D.
    """
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim not in (1, 2):
        raise ValueError(f"losses: expected shape (epochs,) or (runs, epochs), got {losses.shape}")
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
    """Shade a binary classifier's score over the plane, draw its `threshold` contour and the data.

    The grid spans the data's bounding box widened by `margin` on every side, `resolution` points
    per axis; `predict` is called once on all `resolution**2` points.

    Args:
        ax: a matplotlib `Axes`.
        predict: maps float32 points (m, 2) to scores (m,) or (m, 1), e.g.
            `lambda g: net.apply(params, g)` for a sigmoid output in [0, 1].
        x: (n, 2) points, in the units of the features. y: (n,) or (n, 1) labels in {0, 1}.
        threshold: the score drawn as the boundary (0.5 for probabilities, 0 for logits).
        resolution: grid points per axis, an int >= 2. margin: widening of the box, in feature units.

    Raises:
        ValueError: if `x` is not (n, 2) with n >= 1, `y` has not n entries, or `resolution` < 2.
    """
    x, y = np.asarray(x), np.asarray(y).reshape(-1)
    if x.ndim != 2 or x.shape[1] != 2 or len(x) == 0:
        raise ValueError(f"x: expected shape (n, 2) with n >= 1, got {x.shape}")
    if y.size != len(x):
        raise ValueError(f"y: expected {len(x)} labels (shape (n,) or (n, 1)), got {np.shape(y)}")
    if resolution < 2:
        raise ValueError(f"resolution: expected an int >= 2, got {resolution}")
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
    """Draw a confusion matrix with its counts: true class on rows, predicted class on columns.

    Args:
        ax: a matplotlib `Axes`.
        matrix: (k, k) counts (any integer or float dtype; drawn as integers), e.g.
            `sklearn.metrics.confusion_matrix(y_true, y_pred)`.
        labels: k tick labels; default "0" .. "k-1".

    Raises:
        ValueError: if `matrix` is not square or `labels` has not k entries.
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix: expected a square (k, k) array, got shape {matrix.shape}")
    n = matrix.shape[0]
    labels = [str(i) for i in range(n)] if labels is None else list(labels)
    if len(labels) != n:
        raise ValueError(f"labels: expected {n} labels, got {len(labels)}")
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), labels)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    big = matrix.max() / 2 if matrix.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if matrix[i, j] > big else "black")

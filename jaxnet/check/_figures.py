"""Figures of the checks (matplotlib through `jaxnet.plot`, imported only when a figure is asked for):
the per-layer report's errors, and the delta trace drawn on the network's graph."""

from __future__ import annotations

import numpy as np

STYLE = {"dx": ("o", "tab:blue"), "dy_pred": ("o", "tab:blue"), "dW": ("s", "tab:orange"), "db": ("^", "tab:green")}
FLOOR = 1e-18  # where exact zeros are drawn


def layer_report_figure(report, ax=None):
    """Two panels: backward vs jax.vjp (max relative error, log scale, rtol dashed; exact zeros at
    the bottom) and finite differences vs jax.vjp (error over tolerance, 1 dashed), one column per
    layer, one marker per quantity (dx, dW, db, ...); a failing quantity is circled in red. Returns
    the Figure (a one-panel figure on `ax` when given: the first panel only)."""
    from jaxnet import plot

    if ax is None:
        fig, axes = plot.figure(1, 2, size=(max(8.0, 1.3 * len(report.rows) + 3), 3.8))
    else:
        fig, axes = ax.figure, [ax]
    labels = [f"{r.label}\n{r.name}" for r in report.rows]
    seen = set()
    for i, row in enumerate(report.rows):
        for q in row.quantities:
            marker, color = STYLE.get(q.name, ("D", "tab:purple"))
            name = None if q.name in seen else q.name
            seen.add(q.name)
            points = [(axes[0], q.hand.max_rel, not q.hand.passed)]
            if len(axes) > 1 and not np.isnan(q.fd_ratio):
                points.append((axes[1], q.fd_ratio, not q.fd.passed))
            for a, value, bad in points:
                a.scatter(i, max(value, FLOOR), marker=marker, color=color, label=name if a is axes[0] else None,
                          zorder=3, s=36)
                if bad:
                    a.scatter(i, max(value, FLOOR), s=220, facecolors="none", edgecolors="tab:red", linewidths=1.5,
                              zorder=4)
        if row.note:
            axes[0].annotate("wrong\nstructure", (i, 1e-2), color="tab:red", ha="center", fontsize=7)
    t = report.tolerances
    axes[0].axhline(t["rtol"], ls="--", color="gray", lw=1)
    axes[0].text(-0.45, t["rtol"] * 3, f"rtol {t['rtol']:g}", fontsize=7, color="gray")
    axes[0].set_ylabel("backward vs jax.vjp\nmax relative error (0 drawn at 1e-18)")
    axes[0].set_title("PASSED" if report.passed else f"FAILED: {report.faulty[0].where}", fontsize=9)
    if len(axes) > 1:
        axes[1].axhline(1.0, ls="--", color="gray", lw=1)
        axes[1].set_ylabel("finite differences vs jax.vjp\nerror / tolerance (<= 1 passes)")
        axes[1].set_title(f"{t['directions']} random unit directions per quantity, eps {t['eps']:g}", fontsize=9)
    for a in axes:
        a.set_yscale("log")
        a.set_xticks(range(len(labels)), labels, fontsize=7, rotation=30, ha="right")
        a.set_xlim(-0.6, len(labels) - 0.4)
        a.grid(True, axis="y", alpha=0.3)
    axes[0].legend(fontsize=7, loc="center left", bbox_to_anchor=(0.0, 0.55))
    return fig

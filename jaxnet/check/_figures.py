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


def delta_trace_figure(trace, examples=None):
    """The network's graph, one panel per example (up to `examples`, default all of a batch of at
    most 8) and one for the batch. Nodes: inputs a0, then each layer's units, labelled with a (the
    forward value) and delta = dL/dz (the backward value) of that example, filled by a; edges from
    unit i of a_{l-1} to unit j of layer l drawn by the example's share a_i delta_j of dW (blue
    positive, red negative, width and opacity by size); the batch panel's edges are dW = sum of the
    shares, its nodes show db = sum of the deltas. Returns the Figure."""
    from matplotlib import colormaps, colors

    from jaxnet import plot

    acts = [trace[f"a{l}"] for l in range(trace.layers + 1)]
    deltas = [trace[f"delta{l}"] for l in range(1, trace.layers + 1)]
    m = acts[0].shape[0]
    shown = min(m, 8) if examples is None else min(int(examples), m)
    panels = shown + 1
    fig, axes = plot.figure(1, panels, size=(3.0 * panels, 3.6))
    axes = np.atleast_1d(axes)
    widths = [a.shape[1] for a in acts]
    pos = [[(l, (w - 1) / 2 - i) for i in range(w)] for l, w in enumerate(widths)]
    dWs = [trace[f"dW{l}"] for l in range(1, trace.layers + 1)]
    scale = max(float(np.max(np.abs(d))) for d in dWs) or 1.0
    share_scale = max(float(np.max(np.abs(acts[l][:, :, None] * deltas[l][:, None, :]))) for l in range(trace.layers))
    share_scale = share_scale or 1.0
    cmap = colormaps["Greens"]
    for k, ax in enumerate(axes):
        batch = k == shown
        for l in range(trace.layers):
            edges = dWs[l] if batch else acts[l][k][:, None] * deltas[l][k][None, :]
            top = scale if batch else share_scale
            for i, (x0, y0) in enumerate(pos[l]):
                for j, (x1, y1) in enumerate(pos[l + 1]):
                    v = float(edges[i, j])
                    ax.plot([x0, x1], [y0, y1], color="tab:blue" if v >= 0 else "tab:red",
                            lw=0.5 + 4 * abs(v) / top, alpha=0.15 + 0.85 * abs(v) / top, zorder=1)
        for l, layer_pos in enumerate(pos):
            for i, (x0, y0) in enumerate(layer_pos):
                a = float(acts[l][k, i]) if not batch else None
                face = cmap(colors.Normalize(0, 1)(np.clip(a, 0, 1))) if a is not None else "white"
                ax.scatter([x0], [y0], s=1100, color=face, edgecolors="k", zorder=2)
                if batch:
                    text = "" if l == 0 else f"db\n{float(trace[f'db{l}'][i]):.2g}"
                else:
                    text = f"a {a:.2f}" + ("" if l == 0 else f"\nδ {float(deltas[l - 1][k, i]):.1e}")
                ax.annotate(text, (x0, y0), ha="center", va="center", fontsize=6, zorder=3,
                            color="white" if a is not None and a > 0.6 else "black")
        title = ("batch: edges dW, nodes db" if batch else
                 f"x = {np.array2string(acts[0][k], precision=2)}: edges a_i δ_j")
        ax.set_title(title, fontsize=8)
        ax.set_xlim(-0.5, trace.layers + 0.5)
        ax.set_ylim(-max(widths) / 2 - 0.2, max(widths) / 2 + 0.2)
        ax.axis("off")
    fig.suptitle(f"{trace.network}, loss {trace.loss}: forward values a and deltas δ = dL/dz (blue +, red -)",
                 fontsize=9)
    return fig

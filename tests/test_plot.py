"""Field case P1: headless plotting. With no display and no MPLBACKEND, importing jaxnet and saving
a loss curve and a decision boundary writes PNGs, never imports pyplot or forces a backend."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import REPO

SCRIPT = textwrap.dedent("""
    import sys, jax, numpy as np
    import jaxnet
    assert "matplotlib" not in sys.modules, "import jaxnet must not import matplotlib"
    from jaxnet import plot
    net = jaxnet.mlp([2, 3, 1])
    _, params = net.init(jax.random.key(0))
    x, y = jaxnet.data.xor()
    fig, (a, b) = plot.figure(1, 2)
    plot.loss_curve(a, np.linspace(1, 0.1, 50))
    plot.decision_boundary(b, lambda g: net.apply(params, g), x, y, resolution=30)
    assert fig._repr_png_()[1:4] == b"PNG"  # what a notebook shows for `fig`
    p1 = plot.save(fig, sys.argv[1] + "/curve.png")
    assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
    print("ok", p1)
""")


def test_p1_headless_plotting(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND", "WAYLAND_DISPLAY")}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    png = (tmp_path / "curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_figures_display_in_jupyter_without_pyplot():
    """IPython's PNG formatter (what a notebook calls for a cell's value) renders a jaxnet figure; a
    plain matplotlib Figure made without pyplot has no PNG representation unless pyplot's inline
    backend was set up first."""
    formatters = pytest.importorskip("IPython.core.formatters")
    from matplotlib.figure import Figure

    from jaxnet import plot

    fig, ax = plot.figure()
    ax.plot([0.5, 0.25, 0.125])
    png = formatters.PNGFormatter()(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert formatters.PNGFormatter()(Figure()) is None  # the reference: without jaxnet's figure, no image
    fig.clear()  # what save does after writing the file
    assert formatters.PNGFormatter()(fig) is None  # a saved (cleared) figure shows as text, not a blank image


def test_saved_figures_are_released_and_written(tmp_path):
    from jaxnet import plot

    fig, ax = plot.figure()
    plot.confusion(ax, np.array([[5, 1], [0, 7]]), labels=["no", "yes"])
    path = plot.save(fig, tmp_path / "new" / "dir" / "confusion.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not fig.axes  # parents created, figure cleared


def test_loss_curve_draws_the_nan_ignoring_mean_of_runs():
    from jaxnet import plot

    fig, (one, many) = plot.figure(1, 2)
    plot.loss_curve(one, [0.5, 0.25, 0.125])
    plot.loss_curve(many, np.array([[1.0, 2.0, np.nan], [3.0, 4.0, 5.0]]), label="2 runs")
    np.testing.assert_array_equal(one.lines[0].get_ydata(), [0.5, 0.25, 0.125])
    np.testing.assert_array_equal(many.lines[0].get_ydata(), [2.0, 3.0, 5.0])  # run 0 diverged after epoch 1
    assert one.get_yscale() == "log" and many.get_legend() is not None
    _, linear = plot.figure()
    plot.loss_curve(linear, [1.0, 0.0, -1.0])  # a non-positive loss: linear axis
    assert linear.get_yscale() == "linear"


@pytest.mark.parametrize("call,name", [
    (lambda plot, ax: plot.loss_curve(ax, np.zeros((2, 2, 2))), "losses"),
    (lambda plot, ax: plot.decision_boundary(ax, lambda g: g[:, :1], np.zeros((4, 3)), np.zeros(4)), "x"),
    (lambda plot, ax: plot.decision_boundary(ax, lambda g: g[:, :1], np.zeros((4, 2)), np.zeros(3)), "y"),
    (lambda plot, ax: plot.decision_boundary(ax, lambda g: g[:, :1], np.zeros((4, 2)), np.zeros(4), resolution=1),
     "resolution"),
    (lambda plot, ax: plot.confusion(ax, np.zeros((2, 3))), "matrix"),
    (lambda plot, ax: plot.confusion(ax, np.zeros((2, 2)), labels=["a"]), "labels"),
])
def test_bad_input_names_the_argument(call, name):
    from jaxnet import plot

    _, ax = plot.figure()
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        call(plot, ax)

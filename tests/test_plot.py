"""Field case P1: headless plotting. With no display and no MPLBACKEND, importing jaxnet and saving
a loss curve and a decision boundary writes PNGs, never imports pyplot or forces a backend."""

import os
import subprocess
import sys
import textwrap

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

"""Check an installed jaxnet (a wheel, not the source tree): every module imports from the install.

    python installed_smoke.py ROOT [--experiment OUT]

Run it with the Python that has the install, from a directory outside the repository (so that the source
tree is not on sys.path). It imports every module of the packages `jaxnet` and `jaxnet_experiments` (the repository's
experiments/ folder, installed under that name) and fails
unless each one's file lies under ROOT (the virtual environment, or a `pip install --target` folder put on
PYTHONPATH). With `--experiment OUT` it then runs `jaxnet-experiments xor --quick --out OUT` (the console
script) and checks that the run wrote its metrics and a figure, and that no top-level `experiments`
package was installed. `.ci/run` and `tests/test_packaging.py` use it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path


def import_everything(root: Path) -> list[str]:
    """Import every module of jaxnet and jaxnet_experiments; return their names. Raises if one is not under root."""
    names = []
    for top in ("jaxnet", "jaxnet_experiments"):
        package = importlib.import_module(top)
        modules = [top] + [info.name for info in pkgutil.walk_packages(package.__path__, f"{top}.")]
        for name in modules:
            module = importlib.import_module(name)
            where = Path(module.__file__).resolve()
            if not where.is_relative_to(root):
                raise SystemExit(f"{name} was imported from {where}, not from the install under {root}")
            names.append(name)
    return names


def main(argv: list[str]) -> int:
    root = Path(argv[0]).resolve()
    names = import_everything(root)
    missing = {"jaxnet.nn", "jaxnet_experiments.bench"} - set(names)  # the two the first wheel left out
    if missing:
        raise SystemExit(f"not installed: {sorted(missing)}")
    if importlib.util.find_spec("experiments") is not None:
        raise SystemExit("a top-level `experiments` package is importable: it would clash with a learner's own")
    print(f"imported {len(names)} modules from {root}")
    if len(argv) > 2 and argv[1] == "--experiment":
        out = Path(argv[2])
        env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # headless: no display, no backend set
        script = Path(sys.executable).with_name("jaxnet-experiments")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "jaxnet_experiments"]
        subprocess.run([*command, "xor", "--quick", "--out", str(out)], check=True, env=env)
        metrics = json.loads((out / "metrics.json").read_text())
        figures = sorted(p.name for p in out.glob("*.png"))
        if "final_loss" not in metrics or not figures:
            raise SystemExit(f"the xor run wrote metrics {sorted(metrics)} and figures {figures}")
        print(f"xor --quick from the install: final loss {metrics['final_loss']:.4g}, figures {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The wheel holds the whole library: `pip install .` gives a jaxnet that imports outside the repository.

The first wheels listed only the top-level packages and left out `jaxnet.nn` and `experiments.bench`
(`import jaxnet` failed after a normal install). pyproject.toml lists every package, and a test here
fails, naming the folder, when one is missing; the experiments are installed as `jaxnet_experiments`
(a top-level `experiments` would clash with a learner's own folder). This test builds a wheel from
the tracked files alone (a copy, as a fresh clone has them; `pip wheel --no-deps
--no-build-isolation`, offline), checks that it holds exactly the tracked `.py` files of jaxnet/ and
experiments/, installs it into a folder outside the repository and imports every module from there.
`.ci/run` does the same in a fresh virtual environment and runs an experiment from it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO


def tracked_files():
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    return [name for name in listed.decode().split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    source = tmp_path_factory.mktemp("clone")
    for name in tracked_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "-w", str(dist), str(source)], check=True, capture_output=True, timeout=300)
    (path,) = dist.glob("jaxnet-*.whl")
    return path


def test_wheel_holds_every_tracked_module(wheel):
    installed_as = {"jaxnet": "jaxnet", "experiments": "jaxnet_experiments"}  # pyproject's package-dir
    tracked = {installed_as[name.split("/")[0]] + name[name.index("/"):] for name in tracked_files()
               if name.endswith(".py") and name.split("/")[0] in installed_as}
    assert {"jaxnet/nn/__init__.py", "jaxnet_experiments/bench/__init__.py"} <= tracked
    in_wheel = {name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".py")}
    assert in_wheel == tracked, (f"missing from the wheel: {sorted(tracked - in_wheel)}; "
                                 f"in the wheel but not tracked: {sorted(in_wheel - tracked)}")


def test_installed_wheel_imports_every_module(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"  # not the repository: its source tree must not be importable
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}  # before site-packages, where the editable install is
    result = subprocess.run([sys.executable, str(REPO / ".ci" / "installed_smoke.py"), str(target)], cwd=elsewhere,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "imported" in result.stdout


def test_pyproject_lists_every_package_folder():
    """The packages are listed in pyproject.toml (the experiments are installed under another name, which
    setuptools' find cannot do): a new package folder must be added there, and this says which."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    installed_as = {"jaxnet": "jaxnet", "experiments": "jaxnet_experiments"}
    folders = set()
    for top, name in installed_as.items():
        for path in (REPO / top).rglob("*.py"):
            if "__pycache__" not in path.parts:
                folders.add(".".join((name, *path.parent.relative_to(REPO / top).parts)))
    assert listed == folders, (f"add to [tool.setuptools] packages: {sorted(folders - listed)}; "
                               f"listed but not a folder of modules: {sorted(listed - folders)}")


def test_every_library_module_is_under_500_lines():
    """docs/architecture.md promises small modules, each owning one thing; a module that outgrows 500
    lines is split (as validate/ and check/ were)."""
    long = {str(path.relative_to(REPO)): n for path in (REPO / "jaxnet").rglob("*.py")
            if (n := len(path.read_text().splitlines())) > 500}
    assert not long, long

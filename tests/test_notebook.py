"""The tutorial notebook: docs/tutorial.py (jupytext percent format) is the source, docs/tutorial.ipynb
is made from it (`jupytext --to ipynb docs/tutorial.py`); the two hold the same cells, the committed
notebook holds no outputs, and the notebook runs in a Jupyter kernel without errors, showing every
figure its cells end with (jaxnet's figures display without pyplot)."""

from __future__ import annotations

import pytest
from conftest import REPO, user_env

jupytext = pytest.importorskip("jupytext")
nbformat = pytest.importorskip("nbformat")

SOURCE, NOTEBOOK = REPO / "docs" / "tutorial.py", REPO / "docs" / "tutorial.ipynb"


def cells(notebook):
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def test_the_notebook_is_made_from_the_script():
    committed = nbformat.read(NOTEBOOK, as_version=4)
    assert cells(committed) == cells(jupytext.read(SOURCE)), \
        "docs/tutorial.ipynb differs from docs/tutorial.py: run `jupytext --to ipynb docs/tutorial.py`"
    assert not any(cell.get("outputs") for cell in committed.cells), "commit the notebook without outputs"


def test_the_notebook_runs_and_shows_its_figures(tmp_path):
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute(env=user_env())
    outputs = [(cell.source, output) for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    errors = [output for _, output in outputs if output.output_type == "error"]
    assert not errors, errors
    figure_cells = [cell.source for cell in notebook.cells
                    if cell.cell_type == "code" and cell.source.rstrip().endswith("\nfig")]
    shown = [source for source, output in outputs if "image/png" in output.get("data", {})]
    assert len(figure_cells) >= 5 and shown == figure_cells  # one image per figure cell, none elsewhere
    text = "".join(output.get("text", "") for _, output in outputs)
    for line in ["gradcheck passed: True", "jaxnet.backprop == the equations above: True",
                 "tutorial dW1 * m == true dW1: True", "learning rate decayed to 66.5"]:
        assert line in text, text

"""Smoke tests of the main job's experiments: each runs (--quick) headless, writes metrics.json and
PNG figures, and reports numbers that are checked against what the experiment claims."""

import importlib
import json

import pytest

from experiments import ALL
from experiments.__main__ import main as cli

CORE = ["activations", "xor", "binary"]


@pytest.mark.parametrize("name", CORE)
def test_core_experiment_writes_metrics_and_figures(name, tmp_path):
    summary = importlib.import_module(f"experiments.{name}").main(["--quick", "--out", str(tmp_path)])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    pngs = list(tmp_path.glob("*.png"))
    assert pngs and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    assert isinstance(summary, dict) and summary
    if name == "activations":
        assert max(metrics.values()) == 0.0  # hand derivatives are jax.grad's, bitwise
    if name == "xor":
        assert metrics["solved_true_gradient"] <= metrics["seeds"]
        assert len(metrics["predictions"]) == 4
    if name == "binary":
        assert metrics["test_accuracy_true_gradient"] > 0.9


def test_cli_lists_and_rejects(capsys):
    assert cli(["--help"]) == 0
    assert "xor" in capsys.readouterr().out
    assert cli(["nonexistent"]) == 2
    assert set(CORE) <= set(ALL)

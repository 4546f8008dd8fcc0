"""The benchmark script runs end to end in its tiny `--quick` mode and writes well-formed results.

Nothing here asserts a speed. What is checked: the files exist and hold what the doc says (per-round
times, ratios recomputed independently from those times, targets with a verdict), every contender of
W1 and W4 runs the same SGD as the numpy reference (equal final losses), and importing
jaxnet pulls in neither matplotlib nor scikit-learn.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from experiments import EXTRA, bench

ROUNDS = 2


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    # w2 runs the same code as w1 (full_batch_workload); leaving it out saves two compilations
    summary = bench.main(["--quick", "--rounds", str(ROUNDS), "--no-torch", "--batch-sizes", "100",
                          "--workloads", "w1,w3,w4,cold", "--out", str(out)])
    return summary, json.loads((out / "results.json").read_text()), out


def test_registered_outside_the_main_job():
    assert "bench" in EXTRA


def test_writes_results_metrics_and_chart(run):
    summary, results, out = run
    assert (out / "ratios.png").stat().st_size > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["targets"] == summary["targets"] == len(results["targets"])
    assert set(results) >= {"machine", "config", "w1", "w3", "w4", "cold", "targets"}
    assert results["config"]["rounds"] == ROUNDS
    assert results["machine"]["cpu_count"] >= 1 and results["machine"]["devices"]


def test_times_are_per_round_and_summarised(run):
    _, results, _ = run
    for workload in ("w1", "w3", "w4"):
        for name, t in results[workload]["times_s"].items():
            values = np.asarray(t["values"])
            assert values.shape == (ROUNDS,), (workload, name)
            assert np.all(values > 0)
            assert t["min"] == values.min() and t["max"] == values.max()
            assert t["median"] == pytest.approx(np.median(values))


def test_ratios_are_taken_inside_each_round(run):
    _, results, _ = run
    w1 = results["w1"]
    numpy_t, backprop_t = (np.asarray(w1["times_s"][k]["values"]) for k in ("numpy", "backprop"))
    np.testing.assert_allclose(w1["ratios"]["speedup_vs_numpy"]["values"], numpy_t / backprop_t, rtol=1e-12)
    w3 = results["w3"]
    flops = 6 * (784 * 100 + 100 + 100 * 10 + 10) * bench.QUICK.mnist_n
    assert w3["flops_per_epoch"] == flops
    rate = 2 * bench.QUICK.matmul_n**3 / np.asarray(w3["times_s"]["matmul"]["values"])
    fraction = flops / np.asarray(w3["times_s"]["backprop b100"]["values"]) / rate
    np.testing.assert_allclose(w3["ratios"]["backprop_fraction_of_matmul b100"]["values"], fraction, rtol=1e-9)


def test_contenders_run_the_same_sgd(run):
    _, results, _ = run
    for workload in ("w1", "w4"):  # W4: the first networks of the ensemble against the numpy loop
        losses = results[workload]["final_loss"]
        assert losses["backprop"] == pytest.approx(losses["numpy"], rel=1e-3), workload
        assert losses["autodiff"] == pytest.approx(losses["numpy"], rel=1e-3), workload


def test_targets_carry_a_verdict(run):
    _, results, _ = run
    names = [row["target"] for row in results["targets"]]
    assert "W1 speed-up over numpy" in names and "import jaxnet / import jax, optax" in names
    for row in results["targets"]:
        assert isinstance(row["met"], bool)


def test_importing_jaxnet_loads_no_matplotlib_or_sklearn(run):
    _, results, _ = run
    heavy = set(results["cold"]["heavy_modules_imported_by_jaxnet"])
    assert not heavy & {"matplotlib", "sklearn"}
    assert all(v > 0 for v in results["cold"]["import_s"]["jaxnet"]["values"])


def test_torch_contender_runs_the_same_sgd():
    torch = pytest.importorskip("torch")
    result = bench.w1(bench.QUICK, jax.random.key(0), 1, torch)
    assert result["final_loss"]["torch"] == pytest.approx(result["final_loss"]["numpy"], rel=1e-3)


def test_unknown_workload_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="--workloads"):
        bench.main(["--quick", "--workloads", "w9", "--out", str(tmp_path)])


def test_missing_torch_is_skipped_with_a_note(monkeypatch, capsys):
    real_find_spec = bench.importlib.util.find_spec
    monkeypatch.setattr(bench.importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real_find_spec(name, *a))
    assert bench.load_torch(None) is None
    assert "PyTorch is not installed" in capsys.readouterr().out
    assert bench.load_torch(False) is None

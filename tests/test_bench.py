"""The benchmark runs end to end in its tiny `--quick` mode (through the command line) and writes
well-formed results.

Nothing here asserts a speed. What is checked: the files exist and hold what the doc says (per-round
times, ratios recomputed independently from those times, targets with a verdict, XLA's memory
figures), and the contenders do the same work: equal final losses for numpy, jaxnet and the plain JAX
loop on full-batch W1 and W4, and for jaxnet and the plain loop on W3's shuffled minibatches (the same
batches, so the same losses up to float32 rounding).
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from experiments import EXTRA
from experiments import bench
from experiments.__main__ import main as cli
from experiments.bench import workloads

ROUNDS = 2


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    # --quick runs w1, w3, w4, w5 (skipped) and devices; cold start has its own test below
    assert cli(["bench", "--quick", "--rounds", str(ROUNDS), "--no-torch", "--batch-sizes", "100",
                "--out", str(out), "--no-compile-cache"]) == 0
    return json.loads((out / "results.json").read_text()), out


def test_registered_outside_the_main_job():
    assert {"bench", "train_distributed"} <= set(EXTRA)


def test_writes_results_metrics_and_chart(run):
    results, out = run
    assert (out / "ratios.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["targets"] == len(results["targets"]) > 0
    assert set(results) >= {"machine", "config", "w1", "w3", "w4", "w5", "devices", "targets"}
    w5 = results["w5"]  # jaxnet's im2col CNN and the lax.conv one train the same epoch: equal losses
    assert set(w5["times_s"]) == {"backprop", "lax.conv", "numpy"}
    assert w5["final_loss"]["backprop"] == pytest.approx(w5["final_loss"]["lax.conv"], rel=1e-4)
    np.testing.assert_allclose(w5["ratios"]["speedup_vs_numpy"]["values"],
                               np.asarray(w5["times_s"]["numpy"]["values"]) / w5["times_s"]["backprop"]["values"])
    assert results["config"]["rounds"] == ROUNDS and results["machine"]["devices"]


def test_times_are_per_round_and_summarised(run):
    results, _ = run
    for workload in ("w1", "w3", "w4", "devices"):
        for name, t in results[workload]["times_s"].items():
            values = np.asarray(t["values"])
            assert values.shape == (ROUNDS,) and np.all(values > 0), (workload, name)
            assert t["min"] == values.min() and t["max"] == values.max()
            assert t["median"] == pytest.approx(np.median(values))


def test_ratios_are_taken_inside_each_round(run):
    results, _ = run
    for workload, suffix in (("w1", ""), ("w3", " b100"), ("w4", "")):
        times = {k: np.asarray(v["values"]) for k, v in results[workload]["times_s"].items()}
        ratios = results[workload]["ratios"]
        np.testing.assert_allclose(ratios["speedup_vs_numpy" + suffix]["values"],
                                   times["numpy" + suffix] / times["backprop" + suffix], rtol=1e-12)
        np.testing.assert_allclose(ratios["backprop_over_plain" + suffix]["values"],
                                   times["backprop" + suffix] / times["plain" + suffix], rtol=1e-12)
    w4 = results["w4"]
    numpy_per_network = np.asarray(w4["times_s"]["numpy"]["values"]) / w4["workload"]["networks"]
    assert np.all(numpy_per_network > 0)  # extrapolated: the loop's time times networks / numpy_networks


def test_contenders_do_the_same_work(run):
    results, _ = run
    for workload in ("w1", "w4"):  # W4: the first networks of the ensemble against the numpy loop
        losses = results[workload]["final_loss"]
        for name in ("backprop", "autodiff", "plain", "plain_nn"):  # plain_nn: jax.nn.sigmoid's derivative
            assert losses[name] == pytest.approx(losses["numpy"], rel=1e-3), (workload, name)
    assert results["w4"]["final_loss"]["one"] == pytest.approx(results["w4"]["final_loss"]["numpy"], rel=1e-3)
    w3 = results["w3"]["final_loss"]  # the plain loop draws fit's shuffled minibatches
    assert w3["plain b100"] == pytest.approx(w3["backprop b100"], rel=1e-4)
    assert w3["autodiff b100"] == pytest.approx(w3["backprop b100"], rel=1e-4)
    devices = results["devices"]["final_loss"]
    assert devices["ensemble 4 devices"] == pytest.approx(devices["ensemble 1 device"], rel=1e-4)
    assert devices["data parallel 4 devices"] == pytest.approx(devices["fit 1 device"], rel=1e-4)


def test_memory_of_one_epoch_is_xla_s_analysis(run):
    results, _ = run
    w3 = workloads.QUICK["w3"]
    memory = results["w3"]["memory"]["b100"]
    assert memory["dataset_bytes"] == w3.n * 784 * 4 + w3.n * 4  # float32 images, int32 labels
    for who in ("jaxnet", "plain"):
        m = memory[who]
        assert m["argument"] >= memory["dataset_bytes"] and m["temp"] >= 0
        assert m["total"] == m["argument"] + m["output"] + m["temp"] - m["alias"]
    assert memory["temp_over_dataset"] == pytest.approx(memory["jaxnet"]["temp"] / memory["dataset_bytes"])


def test_targets_carry_a_verdict(run):
    results, _ = run
    rows = {row["target"]: row for row in results["targets"]}
    assert {"W1 speed-up over numpy", "W1 jaxnet backprop / plain JAX loop"} <= set(rows)
    for row in rows.values():
        median = row["median"]
        assert row["met"] == (median >= row["bound"] if row["op"] == ">=" else median <= row["bound"])


def test_cold_start_probes_time_fresh_interpreters():
    cold = bench.probes.cold_start(repeats=1, epochs=5)
    assert not {"matplotlib", "sklearn"} & set(cold["heavy_modules_imported_by_jaxnet"])
    first = cold["w1_first_call_s"]
    ratio = first["backprop"]["median"] / first["plain"]["median"]
    assert cold["w1_first_call_ratio"]["median"] == pytest.approx(ratio)
    assert all(v > 0 for t in cold["import_s"].values() for v in t["values"])


def test_torch_contender_runs_the_same_sgd():
    torch = pytest.importorskip("torch")
    result = workloads.run_workload(workloads.QUICK["w1"], jax.random.key(0), 1, torch)
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

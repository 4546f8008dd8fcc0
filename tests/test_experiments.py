"""Smoke tests of the main job's experiments: each runs (--quick) headless, writes metrics.json and
PNG figures, and reports numbers that are checked against what the experiment claims."""

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from conftest import MNIST_DIR, REPO
from experiments import ALL, EXTRA
from experiments.__main__ import compile_cache_dir, xla_flags
from experiments.__main__ import main as cli

CORE = ["activations", "xor", "binary"]


@pytest.mark.parametrize("name", CORE)
def test_core_experiment_writes_metrics_and_figures(name, tmp_path):
    summary = importlib.import_module(f"experiments.{name}").main(["--quick", "--out", str(tmp_path)])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    pngs = list(tmp_path.glob("*.png"))
    assert pngs and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    if name == "activations":
        # the experiment compares the hand derivatives with jax.grad of jax's own sigmoid, relu and tanh
        # (an independent reference): float32 rounding apart, they agree
        diffs = {f"{n}_max_abs_diff_hand_vs_jax_grad" for n in ("sigmoid", "relu", "tanh")}
        assert set(metrics) == diffs | {"relu_derivative_at_0"}
        assert summary["max_diff_vs_jax_grad"] == max(metrics[k] for k in diffs) < 1e-6
        # the figure shows the derivative at 0 itself (the grid's middle point was 4.15e-7, drawn as 1):
        # the convention of jax.nn.relu, whose derivative jax computes independently
        assert metrics["relu_derivative_at_0"] == float(jax.grad(jax.nn.relu)(0.0)) == 0.0
    if name == "xor":
        predictions = np.asarray(metrics["predictions"])
        np.testing.assert_array_equal(predictions > 0.5, [False, True, True, False])  # the single run solves XOR
        # the reported final loss is the MSE of the reported predictions (one step earlier: 5%)
        assert np.mean((predictions - np.array([0.0, 1.0, 1.0, 0.0])) ** 2) == pytest.approx(metrics["final_loss"],
                                                                                              rel=0.05)
        # the experiment's claim: the true gradient (4x the tutorial's step) solves far more seeds
        assert metrics["solved_true_gradient"] >= 0.8 * metrics["seeds"]
        assert metrics["solved_true_gradient"] > metrics["solved_tutorial_scaling"]
        assert summary["solved_true"] == metrics["solved_true_gradient"]
    if name == "binary":
        assert metrics["test_accuracy_true_gradient"] > 0.9
        assert metrics["test_accuracy_true_gradient"] > metrics["test_accuracy_tutorial_scaling"]
        assert summary["acc_true"] == metrics["test_accuracy_true_gradient"]


def test_cli_lists_and_rejects(capsys):
    assert cli(["--help"]) == 0
    assert "xor" in capsys.readouterr().out
    assert cli(["nonexistent"]) == 2
    assert set(CORE) <= set(ALL)


# The rest of the main job: each runs its --quick mode (with fewer seeds where the experiment takes
# --seeds), writes metrics.json and its figures, and its summary numbers are recomputed here from the
# per-run values it reports.
REST = ["xor_sweep", "seeds", "lr_decay", "optimizers", "digits", "breast_cancer", "mnist", "batchnorm_dropout",
        "deep_convnet"]
# smoke-tested beside their library code: tests/test_techniques.py (chapter 6), tests/test_conv.py (cnn)
ELSEWHERE = ["init_histograms", "weight_init", "optimizers_mnist", "batchnorm", "overfitting",
             "hyperparameter_search", "cnn"]
EXTRA_ARGS = {"xor_sweep": ["--seeds", "2"], "seeds": ["--seeds", "4"], "mnist": ["--data-dir", str(MNIST_DIR)],
              "deep_convnet": ["--data-dir", str(MNIST_DIR), "--augment"]}


def _check_classification(metrics):
    accuracy = np.asarray(metrics["test_accuracy"])
    assert metrics["test_accuracy_mean"] == pytest.approx(accuracy.mean(), rel=1e-6)
    confusion = np.asarray(metrics["confusion_first_seed"])
    assert confusion.sum() == metrics["n_test"]
    assert np.trace(confusion) / metrics["n_test"] == pytest.approx(accuracy[0], abs=1e-6)
    assert accuracy.min() > 0.5  # far above chance (0.1 or 0.5) even after a few epochs


@pytest.mark.parametrize("name", REST)
def test_every_experiment_of_the_main_job_runs_quick(name, tmp_path):
    assert set(REST) | set(CORE) | set(ELSEWHERE) == set(ALL)
    if name in ("mnist", "deep_convnet") and not any(MNIST_DIR.glob("t10k-images-idx3-ubyte*")):
        pytest.skip(f"no MNIST files in {MNIST_DIR}")
    # digits trains with optax.adamw itself, whose bias correction (optax 0.2.8) mixes an int32 count
    # with floats, which the test run's strict dtype promotion rejects
    promotion = jax.numpy_dtype_promotion("standard" if name == "digits" else "strict")
    with promotion:
        importlib.import_module(f"experiments.{name}").main(["--quick", "--out", str(tmp_path),
                                                             *EXTRA_ARGS.get(name, [])])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    pngs = list(tmp_path.glob("*.png"))
    assert pngs and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    if name == "xor_sweep":
        rates = np.asarray([metrics["success_rate"][h] for h in ("2", "3", "4", "8")])
        assert metrics["networks"] == 2 * rates.size and np.all((rates * 2) % 1 == 0)  # 2 seeds per cell
    elif name == "seeds":
        accuracy = np.asarray(metrics["test_accuracy"])
        assert accuracy.shape == (4,) and metrics["test_accuracy_stats"]["mean"] == pytest.approx(accuracy.mean())
        assert metrics["test_accuracy_stats"]["worst_seed"] == int(np.argmin(accuracy))
    elif name == "lr_decay":  # each decay multiplies the rate by the factor (the tutorial's rule)
        decays = metrics["xor"]["decays_init0_epoch_and_rate"]
        assert len(decays) == metrics["xor"]["decays_plateau"][0] > 0
        np.testing.assert_allclose([rate for _, rate in decays],
                                   metrics["learning_rate"] * metrics["factor"] ** np.arange(1, len(decays) + 1),
                                   rtol=1e-5)
        assert all(b - a >= metrics["patience"] for (a, _), (b, _) in zip(decays, decays[1:]))
    elif name == "batchnorm_dropout":  # four variants; accuracies count test images; gap = train - test
        runs = metrics["runs"]
        assert set(runs) == {"plain", "BatchNorm", "Dropout", "BatchNorm + Dropout"}
        for run in runs.values():
            assert run["gap"] == pytest.approx(run["final_train_accuracy"] - run["final_test_accuracy"])
            assert run["final_test_accuracy"] * metrics["n_test"] == pytest.approx(
                round(run["final_test_accuracy"] * metrics["n_test"]), abs=1e-3)
            assert len(run["train_loss"]) == metrics["epochs"]
            assert run["test_accuracy"][-1] == run["final_test_accuracy"]
    elif name == "deep_convnet":  # one augmented run; its accuracy is its misclassified count's
        (label, run), = metrics["runs"].items()
        assert run["augmented"] and metrics["n_test"] == 500 and metrics["epochs"] == 1
        assert run["test_accuracy"] == pytest.approx(1 - run["misclassified"] / metrics["n_test"])
        # the accuracy fit recorded in its run (float32) and the one of the evaluation after training
        assert run["val_accuracy_per_epoch"] == [pytest.approx(run["test_accuracy"], abs=1e-6)]
        assert np.isfinite(run["train_loss_per_epoch"]).all() and run["stopped_epoch"] == run["diverged_epoch"] == -1
        assert metrics["test_accuracy"]["augmented"]["mean"] == run["test_accuracy"]
        assert {p.name for p in pngs} == {"curves.png", "misclassified.png", "augmentation.png"}
        assert len(metrics["first_misclassified"]) == min(20, run["misclassified"])
    elif name == "optimizers":  # the minimum of x^2 / 20 + y^2 is the origin
        for optimizer, point in metrics["final_point"].items():
            assert metrics["final_distance_to_minimum"][optimizer] == pytest.approx(np.hypot(*point), rel=1e-6)
    else:
        _check_classification(metrics)


def test_compile_cache_location_and_opt_out(tmp_path):
    home = {"XDG_CACHE_HOME": str(tmp_path)}
    assert compile_cache_dir(home) == tmp_path / "jaxnet" / "jax-cache"
    assert compile_cache_dir({**home, "JAX_COMPILATION_CACHE_DIR": "/elsewhere"}) == Path("/elsewhere")
    for off in ("0", "off", "False"):
        assert compile_cache_dir({**home, "JAXNET_COMPILE_CACHE": off}) is None
    assert compile_cache_dir(home, disabled=True) is None


def test_xla_cpu_thread_pool_flag_and_opt_outs():
    single = "--xla_cpu_multi_thread_eigen=false"
    assert xla_flags({}) == single
    assert xla_flags({"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}) == \
        f"--xla_force_host_platform_device_count=4 {single}"
    assert xla_flags({}, threads=True) == ""
    for on in ("1", "true", "ON"):
        assert xla_flags({"JAXNET_XLA_CPU_THREADS": on, "XLA_FLAGS": "--a=1"}) == "--a=1"
    mine = "--xla_cpu_multi_thread_eigen=true"  # the user's own setting is never overridden
    assert xla_flags({"XLA_FLAGS": mine}) == mine


def test_the_command_line_fills_the_compile_cache(tmp_path):
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != "JAXNET_COMPILE_CACHE"}
    env.update(JAX_COMPILATION_CACHE_DIR=str(cache), PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "experiments", "activations", "--quick", "--out", str(tmp_path / "out")]
    subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)
    assert len(list(cache.iterdir())) > 0


def test_no_compile_cache_turns_off_jax_s_own_cache_too():
    # off even where JAX_COMPILATION_CACHE_DIR (read by jax itself) is set
    before = jax.config.jax_enable_compilation_cache
    try:
        assert cli(["--no-compile-cache", "--help"]) == 0
        assert jax.config.jax_enable_compilation_cache is False
    finally:
        jax.config.update("jax_enable_compilation_cache", before)


MNIST_READERS = ["mnist", "cnn", "weight_init", "optimizers_mnist", "batchnorm", "overfitting",
                 "hyperparameter_search"]
SKIP_LINE = (r"{name}: skipped, no MNIST files \(no folder {cache}/jaxnet/mnist\); pass --data-dir DIR \(the folder "
             r"of the IDX files; `python -m experiments all --data-dir DIR` passes it on\) or set JAXNET_DATA_DIR so "
             r"that \$JAXNET_DATA_DIR/mnist holds them(, or add --download)?")


@pytest.mark.parametrize("name", MNIST_READERS)
def test_without_mnist_every_experiment_prints_the_same_line(name, tmp_path, monkeypatch, capsys):
    """One wording, with a command-line hint (not a Python one), and a short summary for `all`."""
    monkeypatch.delenv("JAXNET_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    summary = importlib.import_module(f"experiments.{name}").main(["--quick", "--out", str(tmp_path / "out")])
    assert summary == {"skipped": "no MNIST files"}
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(SKIP_LINE.format(name=name, cache=re.escape(str(tmp_path / "cache"))), line), line
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_summary_lines_fit_120_characters():
    from experiments.__main__ import summary_line

    assert summary_line("xor", 1.25, {"solved_true": 97, "final_loss": 0.00123456}) == \
        f"{'xor':<22}{1.25:>9.1f}  solved_true=97, final_loss=0.001235"
    long = summary_line("hyperparameter_search", 12.0, {"skipped": "x" * 300, "best_val": 0.8})
    assert long == f"{'hyperparameter_search':<22}{12.0:>9.1f}  ..."
    many = summary_line("seeds", 3.0, {f"value_{i}": i / 3 for i in range(20)})
    assert len(many) <= 120 and many.endswith(", ...") and "value_0=0, value_1=0.3333" in many


def test_xor_sweep_figure_labels_the_success_rate_once(tmp_path, monkeypatch):
    """The heatmap's colour bar and the curves' y axis sat side by side, both labelled 'success rate (%)'."""
    from jaxnet import plot
    from experiments import xor_sweep

    drawn = []
    monkeypatch.setattr(plot, "save", lambda fig, path, **kw: drawn.append(fig) or path)
    rates = np.linspace(0, 1, len(xor_sweep.HIDDEN_SIZES) * len(xor_sweep.LEARNING_RATES))
    xor_sweep.figure(rates.reshape(len(xor_sweep.HIDDEN_SIZES), -1), tmp_path)
    (fig,) = drawn
    labels = [text for ax in fig.axes for text in (ax.get_xlabel(), ax.get_ylabel())]
    assert labels.count("success rate (%)") == 1 and len(fig.axes) == 3, labels  # heatmap, colour bar, curves


def test_checks_experiment_draws_the_readme_figures(tmp_path):
    """`python -m experiments checks --parts figures` (the README's per-layer report and delta trace)."""
    importlib.import_module("experiments.checks").main(["--parts", "figures", "--out", str(tmp_path)])
    metrics = json.loads((tmp_path / "metrics.json").read_text())["figures"]
    assert metrics["layer_report_passed"] is False and metrics["faulty"] == ["2"]  # the Swish that forgets beta
    assert {p.name for p in tmp_path.glob("*.png")} == {"layer_report.png", "delta_trace_xor.png"}
WEIGHTS_DIR = REPO.parent / "shared" / "data" / "dlfs-weights"


@pytest.mark.skipif(not (MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file() or not WEIGHTS_DIR.is_dir(),
                    reason="no MNIST t10k files or no book weights in ../shared/data")
def test_book_quick_writes_the_table(tmp_path):
    """`book --quick`: the table in report.md and metrics.json; the checked rows pass; the first digits
    the book's DeepConvNet misclassifies among the first 500 are those of the book's numpy layers."""
    from jaxnet import reference_cnn

    from experiments import book

    assert "book" in EXTRA and "book" not in ALL
    summary = book.main(["--quick", "--data-dir", str(MNIST_DIR), "--weights-dir", str(WEIGHTS_DIR),
                         "--runs", str(tmp_path / "none"), "--out", str(tmp_path)])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    text = (tmp_path / "report.md").read_text()
    rows = metrics["rows"]
    assert summary == {"passed": metrics["passed"], "checked": metrics["checked"]}
    assert metrics["passed"] == metrics["checked"] == sum(r["passed"] is not None for r in rows) >= 6
    assert all(r["quantity"] in text and r["jaxnet"] in text for r in rows)
    chapters = {r["chapter"] for r in rows}
    assert {"3", "4", "5", "6", "7", "8", "4-5"} <= chapters
    assert sum("needs the 60,000 training images" in r["jaxnet"] for r in rows) == 3  # no train files in ../shared
    assert (tmp_path / "misclassified_book.png").read_bytes()[:4] == b"\x89PNG"
    net = reference_cnn.DeepConvNet()
    net.load_params(dict(np.load(WEIGHTS_DIR / "deep_convnet_2016.npz")))
    from experiments.deep_convnet import t10k_images

    x, y = t10k_images(MNIST_DIR)
    predicted = np.concatenate([net.predict(x[i:i + 100]).argmax(1) for i in range(0, 500, 100)])
    expected = [[int(i), int(y[i]), int(predicted[i])] for i in np.flatnonzero(predicted != y[:500])]
    assert metrics["book_deep_convnet_first_misclassified"] == expected

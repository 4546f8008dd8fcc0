"""Check the numbers the docs quote from full experiment runs against those runs' metrics.json.

    python .ci/doc_numbers.py [RUNS]        (RUNS defaults to runs/)

The quoted numbers come from runs too long for the test suite, so this is run by hand after the runs
are regenerated (not by the tests, which only check that every claim below still finds its text):

    python -m experiments all --data-dir DIR                         # runs/NAME for every NAME of the main job
    python -m experiments cnn --data-dir DIR --out runs/cnn_20       # the 20-epoch runs the docs quote
    python -m experiments cnn --data-dir DIR --init book --out runs/cnn_20_book
    python -m experiments overfitting --data-dir DIR --full --out runs/overfitting_full
    python .ci/doc_numbers.py runs

Each claim is a doc, a regular expression whose groups are the quoted numbers, a run (a folder under
RUNS) and a function of its metrics that gives the values (a percentage quoted as a whole number is
rounded first). A number matches as printed output does in
tests/test_docs.py: within one unit of its last written digit (0.977 matches 0.9774), an integer only
itself. Exit status 1 if a claim's text is not found exactly once in its doc or a number differs;
claims whose run is absent are listed as not checked. Timings (seconds, speed-ups) are not claims here:
they are measured by `python -m experiments bench` and depend on the machine.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pct(*values):
    return tuple(100 * v for v in values)


def _stats(m):
    return m["test_accuracy_mean"], m["test_accuracy_std"]


def _range(m):
    return m["test_accuracy_mean"], m["test_accuracy_std"], m["test_accuracy_min"], m["test_accuracy_max"]


def _sweep_at_least(m, hidden, min_rate):
    rates = [row for lr, row in zip(m["learning_rates"], m["success_rate"][str(hidden)]) if lr >= min_rate]
    return 100 * min(rates)


N = r"([-+]?\d+(?:\.\d+)?)"  # a quoted number

# (doc, pattern, run, values(metrics))
CLAIMS = [
    ("README.md", rf"the digits network from 64 seeds: test accuracy {N} ± {N}", "seeds",
     lambda m: (m["test_accuracy_stats"]["mean"], m["test_accuracy_stats"]["std"])),
    ("README.md", rf"20 epochs: BatchNorm ahead at {N} of 16", "batchnorm", lambda m: (m["bn_ahead"],)),
    ("README.md", rf"train-test gaps {N} / {N} / {N} \|", "overfitting",
     lambda m: tuple(m["final"][k]["gap"] for k in ("none", "weight decay 0.1", "dropout 0.2"))),
    ("README.md", rf"best val {N} \(book 0.84\)", "hyperparameter_search", lambda m: (m["best"]["val_accuracy"],)),
    ("README.md", rf"8 epochs in `all`: test accuracy {N} \|", "cnn", lambda m: (m["test_accuracy"],)),
    ("README.md", rf"loss at iteration 1900: std 0.01 / Xavier / He \| {N} / {N} / {N} \|", "weight_init",
     lambda m: tuple(m["results"][k]["loss_at"] for k in ("std=0.01", "Xavier", "He"))),
    ("README.md", rf"loss at 1900: SGD / Momentum / AdaGrad / Adam \| {N} / {N} / {N} / {N} \|", "optimizers_mnist",
     lambda m: tuple(m["results"][k]["loss_at"] for k in ("SGD", "Momentum", "AdaGrad", "Adam"))),
    ("README.md", rf"where BatchNorm is ahead; without BN at chance \| {N}; {N} of 16", "batchnorm",
     lambda m: (m["bn_ahead"], m["plain_below_0.2"])),
    ("README.md", rf"weight decay 0.1 at epoch 200: train / test \| {N} / {N} \|", "overfitting",
     lambda m: (m["final"]["weight decay 0.1"]["train"], m["final"]["weight decay 0.1"]["test"])),
    ("README.md", rf"dropout 0.2 at epoch 300 \(`--full`\): train / test \| {N} / {N} \|", "overfitting_full",
     lambda m: (m["final"]["dropout 0.2"]["train"], m["final"]["dropout 0.2"]["test"])),
    ("README.md", rf"best validation accuracy of 100 trials \| {N} \|", "hyperparameter_search",
     lambda m: (m["best"]["val_accuracy"],)),
    ("README.md", rf"\*\*test accuracy {N} after 20 epochs\*\*", "cnn_20", lambda m: (m["test_accuracy"],)),
    ("README.md", rf"\({N} after the 8 epochs `all` runs", "cnn", lambda m: (m["test_accuracy"],)),
    ("README.md", rf"\| `digits` \|[^\n]*\| {N} ± {N} \|", "digits", _stats),
    ("README.md", rf"\| `breast_cancer` \|[^\n]*\| {N} ± {N} \|", "breast_cancer", _stats),
    ("README.md", rf"\| `mnist` \|[^\n]*\| {N} ± {N} \|", "mnist", _stats),
    ("README.md", rf"held-out accuracy {N} after 2000 epochs, against {N} with the true gradient", "binary",
     lambda m: (m["test_accuracy_tutorial_scaling"], m["test_accuracy_true_gradient"])),
    ("README.md", rf"distances to the optimum are SGD {N},\s+Momentum {N}, AdaGrad {N}, Adam {N}\.", "optimizers",
     lambda m: tuple(m["final_distance_to_minimum"][k] for k in ("sgd", "momentum", "adagrad", "adam"))),
    ("docs/real_data.md", rf"\| `digits` [^\n]*\| {N} ± {N} \({N} to {N}\)", "digits", _range),
    ("docs/real_data.md", rf"\| `breast_cancer` [^\n]*\| {N} ± {N} \({N} to {N}\)", "breast_cancer", _range),
    ("docs/real_data.md", rf"\| `mnist` [^\n]*\| {N} ± {N} \({N} to {N}\)", "mnist", _range),
    ("docs/real_data.md", rf"test accuracy {N} ± {N} over five seeds \(target 0.93\)", "mnist", _stats),
    ("docs/cnn.md", rf"\| He-normal init \(default\) \| {N} \| 20 \|", "cnn_20", lambda m: (m["test_accuracy"],)),
    ("docs/cnn.md", rf"\| the book's init \(`--init book`\) \| {N} \| 20 \|", "cnn_20_book",
     lambda m: (m["test_accuracy"],)),
    ("docs/cnn.md", rf"\| `all` \(`--epochs 8`\) \| {N} \| 8 \|", "cnn", lambda m: (m["test_accuracy"],)),
    ("docs/ensembles.md", rf"2-2-1 solves XOR from at most {N}% of the seeds", "xor_sweep",
     lambda m: (round(100 * max(m["success_rate"]["2"])),)),
    ("docs/ensembles.md", rf"2-3-1 and 2-4-1 from {N}-100% at every lr >= 0.4", "xor_sweep",
     lambda m: (round(min(_sweep_at_least(m, 3, 0.4), _sweep_at_least(m, 4, 0.4))),)),
    ("docs/ensembles.md", rf"at lr\s+0.01 at most {N}% are solved", "xor_sweep",
     lambda m: (round(100 * max(row[0] for row in m["success_rate"].values())),)),
    ("docs/ensembles.md", rf"test accuracy\s+{N}% on average \(std {N} points, {N}% to {N}%\)", "seeds",
     lambda m: _pct(*(m["test_accuracy_stats"][k] for k in ("mean", "std", "min", "max")))),
]


def _tolerance(written: str) -> float:
    return 10.0 ** -len(written.partition(".")[2]) if "." in written else 0.0


def agrees(written: str, value: float) -> bool:
    """Whether `value` is within one unit of the last digit of `written` (an integer: equal)."""
    tol = _tolerance(written)
    return abs(float(value) - float(written)) <= tol * (1 + 1e-9) if tol else round(float(value), 9) == int(written)


def find(doc: str, pattern: str) -> list[re.Match]:
    return list(re.finditer(pattern, (REPO / doc).read_text()))


def check(runs: Path) -> tuple[list[str], list[str], list[str]]:
    """(lines of claims that agree, that differ or are not found, and that could not be checked)."""
    ok, wrong, unchecked = [], [], []
    for doc, pattern, run, values in CLAIMS:
        found = find(doc, pattern)
        if len(found) != 1:
            wrong.append(f"{doc}: {len(found)} matches (expected 1) for {pattern!r}")
            continue
        metrics_path = runs / run / "metrics.json"
        if not metrics_path.exists():
            unchecked.append(f"{doc}: {found[0].group(0)!r}: no {metrics_path}")
            continue
        got = values(json.loads(metrics_path.read_text()))
        quoted = found[0].groups()
        line = f"{doc}: {found[0].group(0)!r} vs {run}: {', '.join(f'{v:.6g}' for v in got)}"
        (ok if all(agrees(q, v) for q, v in zip(quoted, got, strict=True)) else wrong).append(line)
    return ok, wrong, unchecked


def main(argv: list[str]) -> int:
    runs = Path(argv[0]) if argv else Path("runs")
    ok, wrong, unchecked = check(runs)
    for title, lines in (("agree", ok), ("DIFFER or not found", wrong), ("not checked (run absent)", unchecked)):
        print(f"{title}: {len(lines)}")
        print("".join(f"  {line}\n" for line in lines), end="")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Runnable experiments over jaxnet: `python -m experiments NAME [options]` or `python -m experiments all`.

Each experiment is a module with `main(argv=None) -> dict` that parses its options (`--help`,
`--seed`, `--out`, default `runs/NAME/`), runs, writes `metrics.json` and PNG figures into the output
directory, prints a short summary, and returns the headline numbers for the `all` summary table.
"""

# The main job, in order. Experiments that need data which may be absent skip themselves.
ALL = [
    "activations",
    "xor",
    "binary",
    "xor_sweep",
    "seeds",
    "lr_decay",
    "optimizers",
    "digits",
    "breast_cancer",
    "mnist",
    "batchnorm_dropout",
    "init_histograms",
    "weight_init",
    "optimizers_mnist",
    "batchnorm",
    "overfitting",
    "hyperparameter_search",
    "cnn",
    "deep_convnet",
]

# Options an experiment gets in `all` on top of those given to `all`, to keep the job within its budget.
ALL_OPTIONS: dict[str, list[str]] = {"cnn": ["--epochs", "8"], "deep_convnet": ["--epochs", "2"]}

# Runnable by name, not part of `all`.
EXTRA: list[str] = ["bench", "train_distributed", "checks", "book"]

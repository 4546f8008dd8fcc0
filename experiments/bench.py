"""`bench`: jaxnet against the tutorial's numpy code, `jax.grad` and PyTorch eager, side by side.

Workloads (float32; times are steady state, after compilation and a warm-up run):

- W1: XOR, 2-4-1 sigmoid, MSE, full batch, 5000 epochs of SGD.
- W2: the tutorial's two-Gaussian task, 1000 points, 2-8-4-1 sigmoid, binary cross-entropy, full
  batch, 2000 epochs of SGD.
- W3: an MNIST-shaped TwoLayerNet: 60,000 x 784 synthetic inputs (uniform in [0, 1), random labels),
  784-100-10 ReLU + softmax cross-entropy, one epoch of shuffled minibatch SGD at batch 100 and 1000.
- W4: 1024 XOR networks (W1 each) from 1024 seeds in one vmapped call. The numpy side trains a few of
  them one after another and its time is extrapolated linearly to 1024 (it has no other way).

Contenders: the tutorial's algorithm in numpy (`jaxnet.reference`, float32 arrays), `jaxnet.fit` with
`grad="backprop"` (hand-derived) and `grad="autodiff"` (`jax.grad`), and PyTorch eager (a plain
`nn.Sequential` + `torch.optim.SGD` loop) when torch is installed. Every contender of a workload starts
from the same parameters; numpy's learning rate is multiplied by the batch size, which undoes the
tutorial's second division by the batch size, so all of them run the same SGD (the final losses of the
full-batch workloads are printed side by side as a check).

Method: every contender runs once untimed (compilation, caches); then each round runs every contender
once, in an order rotated from round to round, and each ratio is taken inside a round, between runs
seconds apart. The machine is shared and noisy, so these side-by-side ratios are the figures that
count, not absolute seconds. Reported: the median and the min-max over rounds. Threads: numpy's BLAS
and PyTorch each race with whichever of their default pool or a single thread was faster in a trial
run (the choice is printed and recorded); jaxnet runs with XLA's defaults.

Machine ceiling: a 4096 x 4096 float32 matrix product through jax runs in every W3 round; W3 is also
reported as a fraction of that rate, counting 6 x parameters x samples FLOPs per training epoch (the
usual convention: 2PN forward, 4PN backward, which includes the first layer's input gradient that no
implementation computes, so the true work is about 4PN).

Cold start: `import jaxnet` against `import jax, optax`, each in fresh interpreters, alternating; which
heavy modules `import jaxnet` pulled in (matplotlib and scikit-learn must not be among them); and, in a
fresh interpreter, the first W1 `fit` call (trace, compile, run) minus a steady-state call.

Writes `OUT/results.json` (every time, ratio, target and the machine), `OUT/metrics.json` (the
headline) and `OUT/ratios.png`; prints the tables. It prints whether each target is met and asserts
nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxnet
from experiments._common import _jsonable, parser, write_metrics
from jaxnet import reference

WORKLOADS = ("w1", "w2", "w3", "w4", "cold")
HEAVY_MODULES = ("matplotlib", "sklearn", "scipy", "pandas", "torch")
IMPL_LABELS = {"numpy": "numpy (tutorial)", "backprop": "jaxnet backprop", "autodiff": "jaxnet autodiff",
               "torch": "PyTorch eager", "matmul": "jax matmul"}


class Sizes(NamedTuple):
    """Problem sizes: the full benchmark, or the tiny `--quick` smoke test."""

    xor_epochs: int = 5000
    gauss_n: int = 1000
    gauss_epochs: int = 2000
    mnist_n: int = 60_000
    mnist_batches: tuple[int, ...] = (100, 1000)
    networks: int = 1024
    numpy_networks: int = 4
    matmul_n: int = 4096
    cold_repeats: int = 5
    rounds: int = 7


QUICK = Sizes(xor_epochs=50, gauss_n=64, gauss_epochs=20, mnist_n=2_000, mnist_batches=(100, 1000),
              networks=16, numpy_networks=1, matmul_n=256, cold_repeats=1, rounds=1)


class Contender(NamedTuple):
    """One implementation of a workload.

    `run()` trains from scratch, blocks until done and returns the final recorded loss (NaN where
    none is comparable). Its times are multiplied by `scale` (the numpy loop of W4 times a few
    networks and is extrapolated). `threads(n)`, for numpy and PyTorch, is a context manager that
    limits the library's thread pool to n threads (None: its default); see `race`.
    """

    name: str
    run: Callable[[], float]
    scale: float = 1.0
    threads: Callable[[int | None], contextlib.AbstractContextManager] | None = None


# ----------------------------------------------------------------------------------------- timing


def timed(run: Callable[[], float], limit: contextlib.AbstractContextManager) -> float:
    """Seconds one `run()` takes inside `limit` (a thread limit; entering it is not timed)."""
    with limit:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start


def race(contenders: list[Contender], rounds: int) -> tuple[dict[str, list[float]], dict[str, float], dict]:
    """Warm every contender up once, then time `rounds` rounds, rotating the order each round.

    A contender with a `threads` limiter (numpy's BLAS, PyTorch) is also timed once with its default
    thread pool and once with one thread after the warm-up, and races with the faster setting: on
    these small matrices a pool can cost more than it gains, and on a busy machine spin-waiting pools
    stall (PyTorch eager on W2 took 58 s per run with its 2 default threads here, 3 s with one).
    Each competitor thus runs in its better configuration; jaxnet runs with XLA's defaults.

    Returns (times, losses, threads): seconds per round for each contender (times `scale`), each
    contender's final loss from the warm-up run, and the thread setting each limiter chose.
    """
    losses, chosen = {}, {}
    for c in contenders:
        if c.threads is None:
            losses[c.name] = c.run()
            continue
        with c.threads(1):
            losses[c.name] = c.run()
        trial = {n: timed(c.run, c.threads(n)) for n in (None, 1)}
        chosen[c.name] = min(trial, key=trial.get)
    times: dict[str, list[float]] = {c.name: [] for c in contenders}
    for r in range(rounds):
        k = r % len(contenders)
        for c in contenders[k:] + contenders[:k]:
            limit = c.threads(chosen[c.name]) if c.threads else contextlib.nullcontext()
            times[c.name].append(timed(c.run, limit) * c.scale)
    threads = {name: "default" if n is None else n for name, n in chosen.items()}
    return times, losses, threads


def stats(values) -> dict:
    """Median, min and max of per-round values, with the values themselves."""
    values = np.asarray(values, dtype=float)
    return {"median": float(np.median(values)), "min": float(values.min()), "max": float(values.max()),
            "values": values.tolist()}


def ratios(times: dict[str, list[float]], pairs: dict[str, tuple[str, str]]) -> dict[str, dict]:
    """Per-round ratios `times[a][r] / times[b][r]` for each `label: (a, b)` whose contenders ran."""
    return {label: stats(np.asarray(times[a]) / np.asarray(times[b]))
            for label, (a, b) in pairs.items() if a in times and b in times}


def blocked_loss(out) -> float:
    """Wait for a `fit` result `(params, history)` and return its last recorded loss."""
    _, history = jax.block_until_ready(out)
    return float(history["loss"][-1])


# ---------------------------------------------------------------------------------- contenders


def blas_threads(n: int | None) -> contextlib.AbstractContextManager:
    """Limit numpy's BLAS pool to n threads (threadpoolctl, when installed); None leaves it as is."""
    if n is None or importlib.util.find_spec("threadpoolctl") is None:
        return contextlib.nullcontext()
    import threadpoolctl

    return threadpoolctl.threadpool_limits(limits=n, user_api="blas")


def torch_threads(torch) -> Callable[[int | None], contextlib.AbstractContextManager]:
    """A limiter for PyTorch's intra-op pool: `torch_threads(torch)(1)` runs a block on one thread."""
    default = torch.get_num_threads()

    @contextlib.contextmanager
    def limit(n: int | None):
        torch.set_num_threads(n or default)
        try:
            yield
        finally:
            torch.set_num_threads(default)

    return limit


def numpy_full_batch(params, x, y, *, epochs, learning_rate, loss, activation="sigmoid") -> Callable[[], float]:
    """The tutorial's full-batch loop; lr times the batch size undoes its double division."""
    weights, biases = reference.from_jaxnet_params(params)
    xn, yn = np.asarray(x, np.float32), np.asarray(y, np.float32)

    def run():
        result = reference.train(weights, biases, xn, yn, epochs=epochs, learning_rate=learning_rate * len(xn),
                                 loss=loss, activation=activation, dtype=np.float32)
        return float(result.losses[-1])

    return run


def jaxnet_fit(net, params, x, y, *, grad, loss, learning_rate, epochs, batch_size=None, key=None):
    """`jaxnet.fit` for one run, blocked until done."""
    optimizer = jaxnet.optim.sgd(learning_rate)
    return lambda: blocked_loss(jaxnet.fit(net, params, x, y, loss=loss, optimizer=optimizer, epochs=epochs,
                                           grad=grad, batch_size=batch_size, key=key))


def torch_model(torch, params, activation: str, output_activation: str | None):
    """An `nn.Sequential` of Linear layers holding jaxnet's parameters (W transposed)."""
    dense = [p for p in params if p]
    modules = []
    for i, p in enumerate(dense):
        linear = torch.nn.Linear(*np.shape(p["W"]))
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.array(p["W"]).T))
            linear.bias.copy_(torch.from_numpy(np.array(p["b"])))
        modules.append(linear)
        name = output_activation if i == len(dense) - 1 else activation
        if name is not None:
            modules.append({"sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU}[name]())
    return torch.nn.Sequential(*modules)


def torch_full_batch(torch, params, x, y, *, epochs, learning_rate, loss) -> Callable[[], float]:
    """PyTorch eager, the idiomatic loop: zero_grad, forward, loss, backward, step, per epoch."""
    xt, yt = torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y))
    loss_fn = {"mse": torch.nn.MSELoss(), "bce": torch.nn.BCELoss()}[loss]

    def run():
        model = torch_model(torch, params, "sigmoid", "sigmoid")
        optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
        for _ in range(epochs):
            optimizer.zero_grad()
            value = loss_fn(model(xt), yt)
            last = value.item()
            value.backward()
            optimizer.step()
        return last

    return run


def torch_minibatch_epoch(torch, params, x, labels, *, batch_size, learning_rate, seed) -> Callable[[], float]:
    """PyTorch eager, one shuffled epoch of minibatch SGD with `F.cross_entropy` on the logits."""
    xt, lt = torch.from_numpy(np.array(x)), torch.from_numpy(np.array(labels, np.int64))
    generator = torch.Generator().manual_seed(seed)

    def run():
        model = torch_model(torch, params, "relu", None)
        optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), batch_size):
            idx = order[start:start + batch_size]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), lt[idx]).backward()
            optimizer.step()
        return float("nan")

    return run


def numpy_minibatch_epoch(params, x, labels, *, batch_size, learning_rate, seed) -> Callable[[], float]:
    """The tutorial's minibatch epoch (ReLU, fused softmax + cross-entropy), float32 arrays."""
    weights, biases = reference.from_jaxnet_params(params)
    weights = [w.astype(np.float32) for w in weights]
    biases = [b.astype(np.float32) for b in biases]
    xn = np.asarray(x, np.float32)
    targets = np.eye(weights[-1].shape[1], dtype=np.float32)[np.asarray(labels)]
    rng = np.random.default_rng(seed)

    def run():
        reference.train_minibatch_epoch([w.copy() for w in weights], [b.copy() for b in biases], xn, targets,
                                        batch_size=batch_size, learning_rate=learning_rate * batch_size, rng=rng)
        return float("nan")

    return run


def ensemble_fit(net, keys, x, y, *, grad, learning_rate, epochs, compare: int) -> Callable[[], float]:
    """Init and train one network per key in a single call; returns the mean final loss of the first
    `compare` networks (those the numpy loop trains).

    Uses `jaxnet.ensemble.fit_ensemble` where that module exists, else `jax.vmap` of init + `fit`.
    """
    if importlib.util.find_spec("jaxnet.ensemble") is not None:
        from jaxnet.ensemble import fit_ensemble

        def trained():
            return fit_ensemble(net, x, y, keys=keys, loss="mse", optimizer="sgd",
                                hyperparams={"learning_rate": learning_rate}, epochs=epochs, grad=grad)
    else:
        optimizer = jaxnet.optim.sgd(learning_rate)

        def one(key):
            _, params = net.init(key)
            return jaxnet.fit(net, params, x, y, loss="mse", optimizer=optimizer, epochs=epochs, grad=grad)

        vmapped = jax.jit(jax.vmap(one))

        def trained():
            return vmapped(keys)

    def run():
        _, history = jax.block_until_ready(trained())
        return float(jnp.mean(history["loss"][:compare, -1]))

    return run


# ------------------------------------------------------------------------------------ workloads


def full_batch_workload(net, x, y, *, loss, numpy_loss, learning_rate, epochs, key, rounds, torch) -> dict:
    """W1 / W2: every contender trains the same network from the same start, full batch."""
    _, params = net.init(key)
    contenders = [
        Contender("numpy", numpy_full_batch(params, x, y, epochs=epochs, learning_rate=learning_rate, loss=numpy_loss),
                  threads=blas_threads),
        *[Contender(g, jaxnet_fit(net, params, x, y, grad=g, loss=loss, learning_rate=learning_rate, epochs=epochs))
          for g in ("backprop", "autodiff")],
    ]
    if torch is not None:
        contenders.append(Contender("torch", torch_full_batch(torch, params, x, y, epochs=epochs,
                                                              learning_rate=learning_rate, loss=numpy_loss),
                                    threads=torch_threads(torch)))
    return summarize(*race(contenders, rounds), {
        "speedup_vs_numpy": ("numpy", "backprop"), "autodiff_speedup_vs_numpy": ("numpy", "autodiff"),
        "speedup_vs_torch": ("torch", "backprop"), "torch_speedup_vs_numpy": ("numpy", "torch"),
        "backprop_over_autodiff": ("backprop", "autodiff"),
    })


def w1(sizes: Sizes, key, rounds, torch) -> dict:
    """W1: XOR, 2-4-1 sigmoid, MSE, SGD at learning rate 1 (numpy: 4, the tutorial's scaling)."""
    x, y = jaxnet.data.xor()
    result = full_batch_workload(jaxnet.mlp([2, 4, 1], "sigmoid"), x, y, loss="mse", numpy_loss="mse",
                                 learning_rate=1.0, epochs=sizes.xor_epochs, key=key, rounds=rounds, torch=torch)
    return {"title": f"W1 XOR 2-4-1 sigmoid MSE, full batch, {sizes.xor_epochs} epochs", **result}


def w2(sizes: Sizes, key, rounds, torch) -> dict:
    """W2: two Gaussians, 2-8-4-1 sigmoid, binary cross-entropy on probabilities, SGD at 0.5."""
    x, y = jaxnet.data.gaussian_blobs(jax.random.fold_in(key, 1), sizes.gauss_n)
    result = full_batch_workload(jaxnet.mlp([2, 8, 4, 1], "sigmoid"), x, y, loss="binary_crossentropy",
                                 numpy_loss="bce", learning_rate=0.5, epochs=sizes.gauss_epochs, key=key,
                                 rounds=rounds, torch=torch)
    return {"title": f"W2 Gaussians n={sizes.gauss_n} 2-8-4-1 sigmoid BCE, full batch, {sizes.gauss_epochs} epochs",
            **result}


def w3(sizes: Sizes, key, rounds, torch) -> dict:
    """W3 with the matmul ceiling inside the same race, so each round has its own rate."""
    k_x, k_y, k_init, k_fit = jax.random.split(key, 4)
    x = jax.random.uniform(k_x, (sizes.mnist_n, 784), jnp.float32)
    labels = jax.random.randint(k_y, (sizes.mnist_n,), 0, 10)
    net = jaxnet.mlp([784, 100, 10], "relu", output_activation="identity")
    _, params = net.init(k_init)
    learning_rate = 0.1
    contenders, pairs = [], {}
    for b in sizes.mnist_batches:
        contenders += [
            Contender(f"numpy b{b}", numpy_minibatch_epoch(params, x, labels, batch_size=b,
                                                           learning_rate=learning_rate, seed=0),
                      threads=blas_threads),
            *[Contender(f"{g} b{b}", jaxnet_fit(net, params, x, labels, grad=g, loss="softmax_cross_entropy",
                                                learning_rate=learning_rate, epochs=1, batch_size=b, key=k_fit))
              for g in ("backprop", "autodiff")],
        ]
        if torch is not None:
            contenders.append(Contender(f"torch b{b}", torch_minibatch_epoch(
                torch, params, x, labels, batch_size=b, learning_rate=learning_rate, seed=0),
                threads=torch_threads(torch)))
        pairs |= {f"speedup_vs_numpy b{b}": (f"numpy b{b}", f"backprop b{b}"),
                  f"autodiff_speedup_vs_numpy b{b}": (f"numpy b{b}", f"autodiff b{b}"),
                  f"speedup_vs_torch b{b}": (f"torch b{b}", f"backprop b{b}"),
                  f"torch_speedup_vs_numpy b{b}": (f"numpy b{b}", f"torch b{b}"),
                  f"backprop_over_autodiff b{b}": (f"backprop b{b}", f"autodiff b{b}")}
    a = jax.random.normal(key, (sizes.matmul_n, sizes.matmul_n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    contenders.append(Contender("matmul", lambda: float(matmul(a, a).block_until_ready()[0, 0] * 0)))
    times, losses, threads = race(contenders, rounds)
    result = summarize(times, losses, threads, pairs)

    n_params = sum(leaf.size for leaf in jax.tree.leaves(params))
    rate = 2 * sizes.matmul_n**3 / np.asarray(times["matmul"])
    result["matmul"] = {"n": sizes.matmul_n, "gflops": stats(rate / 1e9)}
    result["flops_per_epoch"] = 6 * n_params * sizes.mnist_n
    for b in sizes.mnist_batches:
        for g in ("backprop", "autodiff"):
            achieved = result["flops_per_epoch"] / np.asarray(times[f"{g} b{b}"])
            result["ratios"][f"{g}_fraction_of_matmul b{b}"] = stats(achieved / rate)
    result["title"] = (f"W3 TwoLayerNet {sizes.mnist_n}x784, 784-100-10 ReLU softmax-CE, one epoch "
                       f"(FLOPs counted as 6 x {n_params} params x {sizes.mnist_n} samples)")
    return result


def w4(sizes: Sizes, key, rounds, torch) -> dict:
    """W4: `sizes.networks` XOR networks in one call; numpy loops over the first few, extrapolated."""
    del torch  # a PyTorch loop over networks would be W1's loop times 1024; not run
    x, y = jaxnet.data.xor()
    net = jaxnet.mlp([2, 4, 1], "sigmoid")
    keys = jax.random.split(key, sizes.networks)
    loops = [numpy_full_batch(net.init(k)[1], x, y, epochs=sizes.xor_epochs, learning_rate=1.0, loss="mse")
             for k in keys[:sizes.numpy_networks]]
    contenders = [
        Contender("numpy", lambda: float(np.mean([run() for run in loops])),
                  scale=sizes.networks / sizes.numpy_networks, threads=blas_threads),
        *[Contender(g, ensemble_fit(net, keys, x, y, grad=g, learning_rate=1.0, epochs=sizes.xor_epochs,
                                    compare=sizes.numpy_networks))
          for g in ("backprop", "autodiff")],
    ]
    result = summarize(*race(contenders, rounds), {"speedup_vs_numpy": ("numpy", "backprop"),
                                       "autodiff_speedup_vs_numpy": ("numpy", "autodiff"),
                                       "backprop_over_autodiff": ("backprop", "autodiff")})
    result["title"] = (f"W4 {sizes.networks} XOR networks in one vmapped call; numpy: a loop over "
                       f"{sizes.numpy_networks}, time x {sizes.networks / sizes.numpy_networks:g}")
    result["ensemble"] = ("jaxnet.ensemble.fit_ensemble" if importlib.util.find_spec("jaxnet.ensemble")
                          else "jax.vmap of init + jaxnet.fit")
    result["note"] = (f"final losses: the mean over the first {sizes.numpy_networks} networks on both sides; "
                      "PyTorch is not run here (it would be W1's loop, once per network)")
    return result


def summarize(times, losses, threads, pairs) -> dict:
    """A race's results: time statistics, final losses, thread settings and the ratios of `pairs`."""
    return {"times_s": {name: stats(t) for name, t in times.items()}, "final_loss": losses,
            "threads": threads, "ratios": ratios(times, pairs)}


# ------------------------------------------------------------------------------------- cold start

IMPORT_PROBE = (
    "import time; t0 = time.perf_counter(); import {modules}; seconds = time.perf_counter() - t0\n"
    "import json, sys; print(json.dumps({{'seconds': seconds, "
    "'heavy': sorted(m for m in {heavy!r} if m in sys.modules)}}))"
)

COMPILE_PROBE = """
import json, time
import jax
from jax import monitoring
import jaxnet
x, y = jaxnet.data.xor()
net = jaxnet.mlp([2, 4, 1], "sigmoid")
_, params = net.init(jax.random.key(0))
optimizer = jaxnet.optim.sgd(1.0)
jax.block_until_ready(params)
run = lambda: jax.block_until_ready(
    jaxnet.fit(net, params, x, y, loss="mse", optimizer=optimizer, epochs={epochs}))
events = {{}}
def listen(event, seconds, **kwargs):
    name = event.rsplit("/", 1)[-1]
    events[name] = events.get(name, 0.0) + seconds
monitoring.register_event_duration_secs_listener(listen)
cpu, wall = time.process_time(), time.perf_counter()
run()
first, first_cpu = time.perf_counter() - wall, time.process_time() - cpu
wall = time.perf_counter()
run()
print(json.dumps({{"first": first, "first_cpu": first_cpu, "steady": time.perf_counter() - wall, "events": events}}))
"""


def probe(code: str) -> dict:
    """Run `code` in a fresh interpreter that finds this jaxnet, and parse the JSON it prints last."""
    root = str(Path(jaxnet.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
               JAX_ENABLE_COMPILATION_CACHE="false")  # a persistent cache would hide the compile time
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def cold_start(sizes: Sizes) -> dict:
    """Import times in fresh interpreters (alternating), heavy modules pulled in, and W1's compile time."""
    imports: dict[str, list[float]] = {"jaxnet": [], "jax, optax": []}
    heavy: set[str] = set()
    for _ in range(sizes.cold_repeats):
        for modules in imports:
            out = probe(IMPORT_PROBE.format(modules=modules, heavy=HEAVY_MODULES))
            imports[modules].append(out["seconds"])
            if modules == "jaxnet":
                heavy |= set(out["heavy"])
    compiles = [probe(COMPILE_PROBE.format(epochs=sizes.xor_epochs)) for _ in range(max(1, min(3, sizes.cold_repeats)))]
    events = sorted({name for c in compiles for name in c["events"]})
    return {
        "import_s": {m: stats(t) for m, t in imports.items()},
        "import_ratio": stats(np.asarray(imports["jaxnet"]) / np.asarray(imports["jax, optax"])),
        "heavy_modules_imported_by_jaxnet": sorted(heavy),
        "w1_compile_s": stats([c["first"] - c["steady"] for c in compiles]),
        "w1_first_call_s": stats([c["first"] for c in compiles]),
        "w1_first_call_cpu_s": stats([c["first_cpu"] for c in compiles]),
        "w1_compile_events_s": {e: stats([c["events"].get(e, 0.0) for c in compiles]) for e in events},
    }


# ---------------------------------------------------------------------------------------- targets


def targets(results: dict, batches: tuple[int, ...]) -> list[dict]:
    """Each target with its measured median (and min-max), and whether the median meets it."""
    rows = []

    def add(name, where, key, op, bound):
        found = results.get(where, {})
        value = found.get("ratios", {}).get(key) if where != "cold" else found.get(key)
        if value is None:
            return
        median = value["median"]
        met = median >= bound if op == ">=" else median <= bound if op == "<=" else median < bound
        rows.append({"target": name, "op": op, "bound": bound, "median": median, "min": value["min"],
                     "max": value["max"], "met": bool(met)})

    add("W1 speed-up over numpy", "w1", "speedup_vs_numpy", ">=", 30)
    add("W2 speed-up over numpy", "w2", "speedup_vs_numpy", ">=", 6)
    if 100 in batches:
        add("W3 speed-up over numpy, batch 100", "w3", "speedup_vs_numpy b100", ">=", 1.4)
        add("W3 fraction of matmul rate (6PN), batch 100", "w3", "backprop_fraction_of_matmul b100", ">=", 0.75)
    if 1000 in batches:
        add("W3 fraction of matmul rate (6PN), batch 1000", "w3", "backprop_fraction_of_matmul b1000", ">=", 0.9)
    for b in batches:
        add(f"W3 speed-up over PyTorch eager, batch {b}", "w3", f"speedup_vs_torch b{b}", ">=", 1.0)
    add("W4 speed-up over the numpy loop", "w4", "speedup_vs_numpy", ">=", 500)
    for w in ("w1", "w2", "w4"):
        add(f"{w.upper()} backprop time / autodiff time", w, "backprop_over_autodiff", "<=", 1.1)
    for b in batches:
        add(f"W3 backprop time / autodiff time, batch {b}", "w3", f"backprop_over_autodiff b{b}", "<=", 1.1)
    add("import jaxnet / import jax, optax", "cold", "import_ratio", "<=", 1.2)
    add("W1 compile time, s (first fit minus a steady one)", "cold", "w1_compile_s", "<", 0.5)
    if "cold" in results:
        heavy = results["cold"]["heavy_modules_imported_by_jaxnet"]
        rows.append({"target": "import jaxnet loads no matplotlib / scikit-learn", "op": "==", "bound": "none",
                     "median": ", ".join(heavy) or "none", "min": None, "max": None,
                     "met": not ({"matplotlib", "sklearn"} & set(heavy))})
    return rows


# ------------------------------------------------------------------------------------------ output


def fmt(x: float) -> str:
    """Three significant digits, or '-' for a missing or non-finite value."""
    return "-" if x is None or not np.isfinite(x) else f"{x:.3g}"


def print_workload(result: dict) -> None:
    """The table of one workload: each contender's times and final loss, then the ratios."""
    print(f"\n{result['title']}")
    print(f"  {'contender':<34}{'median s':>10}{'min-max s':>20}{'final loss':>12}")
    for name, t in result["times_s"].items():
        impl, _, batch = name.partition(" ")
        label = IMPL_LABELS[impl] + (f" b{batch[1:]}" if batch else "")
        if name in result["threads"]:
            label += f" [{result['threads'][name]} thr]"
        loss = result["final_loss"].get(name)
        loss_text = fmt(loss) if impl != "matmul" else f"{fmt(result['matmul']['gflops']['median'])} GF/s"
        print(f"  {label:<34}{t['median']:>10.4g}{fmt(t['min']) + '-' + fmt(t['max']):>20}{loss_text:>12}")
    print(f"  {'ratio (per round)':<34}{'median':>10}{'min-max':>20}")
    for name, r in result["ratios"].items():
        print(f"  {name:<34}{r['median']:>10.3g}{fmt(r['min']) + '-' + fmt(r['max']):>20}")


def print_cold(cold: dict) -> None:
    """Import times, the heavy modules `import jaxnet` loaded, and W1's compile time."""
    print("\nCold start (fresh interpreters)")
    for modules, t in cold["import_s"].items():
        print(f"  import {modules:<14}{t['median']:>8.3f} s  ({fmt(t['min'])}-{fmt(t['max'])})")
    heavy = ", ".join(cold["heavy_modules_imported_by_jaxnet"]) or "none"
    print(f"  heavy modules pulled in by `import jaxnet`: {heavy}")
    c = cold["w1_compile_s"]
    print(f"  W1 first fit minus steady: {c['median']:.3f} s ({fmt(c['min'])}-{fmt(c['max'])}); "
          + ", ".join(f"{e} {v['median']:.3f} s" for e, v in cold["w1_compile_events_s"].items()))


def print_targets(rows: list[dict]) -> None:
    """One line per target: goal, measured median and min-max, met or not."""
    print(f"\n{'target':<52}{'goal':>10}{'median':>10}{'min-max':>16}  met")
    for row in rows:
        goal = f"{row['op']} {row['bound']}"
        spread = "" if row["min"] is None else f"{fmt(row['min'])}-{fmt(row['max'])}"
        median = row["median"] if isinstance(row["median"], str) else f"{row['median']:.3g}"
        print(f"{row['target']:<52}{goal:>10}{median:>10}{spread:>16}  {'yes' if row['met'] else 'NO'}")


def chart(results: dict, path: Path) -> Path | None:
    """Speed-ups over numpy per workload, and backprop / autodiff, with min-max bars and targets."""
    from jaxnet import plot

    rows = []  # (label, workload, batch suffix, target speed-up)
    for w, target in (("w1", 30), ("w2", 6), ("w3", None), ("w4", 500)):
        for key in results.get(w, {}).get("ratios", {}):
            if key.startswith("speedup_vs_numpy"):
                suffix = key.removeprefix("speedup_vs_numpy").strip()
                rows.append((f"{w.upper()} {suffix}".strip(), w, suffix, target or {"b100": 1.4}.get(suffix)))
    if not rows:
        return None
    fig, (ax_speed, ax_grad) = plot.figure(1, 2, size=(11, 0.6 * len(rows) + 2.2))
    series = (("speedup_vs_numpy", "jaxnet backprop"), ("autodiff_speedup_vs_numpy", "jaxnet autodiff"),
              ("torch_speedup_vs_numpy", "PyTorch eager"))
    for ax, specs, title, log in (
        (ax_speed, series, "speed-up over the numpy tutorial code (x, median and min-max)", True),
        (ax_grad, (("backprop_over_autodiff", "backprop / autodiff"),), "backprop time / autodiff time", False),
    ):
        height = 0.8 / len(specs)
        for j, (prefix, label) in enumerate(specs):
            ys, meds, lo, hi = [], [], [], []
            for i, (_, w, suffix, _) in enumerate(rows):
                r = results[w]["ratios"].get(f"{prefix} {suffix}".strip())
                if r:
                    ys.append(i - 0.4 + height * (j + 0.5))
                    meds.append(r["median"])
                    lo.append(r["median"] - r["min"])
                    hi.append(r["max"] - r["median"])
            if ys:
                ax.barh(ys, meds, height=height * 0.9, xerr=[lo, hi], label=label, capsize=2)
        ax.set_yticks(range(len(rows)), [r[0] for r in rows])
        ax.invert_yaxis()
        ax.set_title(title)
        ax.axvline(1.0, color="0.5", lw=0.8)
        if log:
            ax.set_xscale("log")
            marks = [(i, b) for i, (_, _, _, b) in enumerate(rows) if b]
            ax.plot([b for _, b in marks], [i for i, _ in marks], "|", color="crimson", markersize=22,
                    markeredgewidth=2.5, label="target")
        else:
            ax.axvline(1.1, color="k", lw=1, ls="--", label="target 1.1")
        ax.legend(fontsize=7)
    return plot.save(fig, path)


def machine() -> dict:
    """What the numbers were measured on: CPU, devices, versions, BLAS, environment, load."""
    cpu = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "jax": jax.__version__, "numpy": np.__version__,
        "devices": [str(d) for d in jax.devices()], "backend": jax.default_backend(),
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
                                               "OPENBLAS_NUM_THREADS", "XLA_FLAGS")},
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    try:
        import threadpoolctl

        info["blas"] = [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
                        for p in threadpoolctl.threadpool_info()]
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
    return info


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def load_torch(wanted: bool | None):
    """torch when wanted (None: when installed), else None; prints a note when it is missing."""
    if wanted is False:
        return None
    if importlib.util.find_spec("torch") is None:
        print("note: PyTorch is not installed; its comparison is skipped (pip install torch to include it)")
        return None
    import torch

    return torch


# -------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """The common experiment options plus --workloads, --rounds, --torch, --batch-sizes, --networks."""
    p = parser("bench", __doc__.splitlines()[0])
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all)")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds per workload (default 7; 1 with --quick)")
    p.add_argument("--torch", action=argparse.BooleanOptionalAction, default=None,
                   help="include PyTorch eager (default: when it is installed)")
    p.add_argument("--batch-sizes", default=None,
                   help="W3 batch sizes, comma-separated (default 100,1000; e.g. 1000,8192 on a GPU)")
    p.add_argument("--networks", type=int, default=None, help="W4 ensemble size (default 1024)")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    chosen = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(chosen) - set(WORKLOADS))
    if unknown:
        raise ValueError(f"--workloads: unknown {unknown}; expected a subset of {list(WORKLOADS)}")
    sizes = QUICK if args.quick else Sizes()
    if args.batch_sizes:
        sizes = sizes._replace(mnist_batches=tuple(int(b) for b in args.batch_sizes.split(",")))
    if args.networks:
        sizes = sizes._replace(networks=args.networks)
    rounds = args.rounds or sizes.rounds
    if rounds < 1:
        raise ValueError(f"--rounds: expected a positive number, got {rounds}")
    torch = load_torch(args.torch) if {"w1", "w2", "w3"} & set(chosen) else None
    key = jax.random.key(args.seed)
    start = time.perf_counter()

    results = {"machine": machine(), "config": {"workloads": chosen, "rounds": rounds, "quick": args.quick,
                                                "sizes": sizes._asdict(), "seed": args.seed}}
    if torch is not None:
        results["machine"]["torch"] = {"version": torch.__version__, "threads": torch.get_num_threads()}
    runners = {"w1": w1, "w2": w2, "w3": w3, "w4": w4}
    for name in chosen:
        print(f"[bench] {name} ...", flush=True)
        if name == "cold":
            results["cold"] = cold_start(sizes)
            print_cold(results["cold"])
        else:
            results[name] = runners[name](sizes, jax.random.fold_in(key, WORKLOADS.index(name)), rounds, torch)
            print_workload(results[name])
    results["targets"] = targets(results, sizes.mnist_batches)
    results["machine"]["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    results["seconds"] = time.perf_counter() - start
    print_targets(results["targets"])

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(_jsonable(results), indent=2) + "\n")
    figure = chart(results, args.out / "ratios.png")
    headline = {row["target"]: row["median"] for row in results["targets"]}
    summary = {"targets_met": sum(r["met"] for r in results["targets"]), "targets": len(results["targets"]),
               "seconds": results["seconds"]}
    write_metrics(args.out, {**summary, "medians": headline})
    print(f"\nbench: {summary['targets_met']}/{summary['targets']} targets met in {results['seconds']:.0f} s; "
          f"{args.out / 'results.json'}" + (f", {figure}" if figure else ""))
    return summary


if __name__ == "__main__":
    main()

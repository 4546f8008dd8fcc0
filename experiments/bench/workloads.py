"""The benchmark's workloads as data, and the contenders that race on them.

Contenders, all from the same initial parameters and running the same SGD:
- `numpy`: the tutorial's algorithm (`jaxnet.reference`, float32 arrays); its learning rate is
  multiplied by the batch size, which undoes the tutorial's second division by the batch size.
- `backprop`, `autodiff`: `jaxnet.fit` (or `jaxnet.train.fit_ensemble`) with each gradient route.
- `plain`: a hand-written JAX loop: `lax.scan` over epochs (and over the same shuffled minibatches as
  `fit`, gathered per step), `jax.value_and_grad` of a jax.nn forward pass, `p - lr * g`. No jaxnet
  code runs in it, so `backprop / plain` is jaxnet's own overhead. Its sigmoid has jaxnet's accurate
  derivative `sigmoid(z) sigmoid(-z)` (the same math); `plain_nn`, on sigmoid workloads, is the same
  loop with `jax.nn.sigmoid`'s cheaper `s (1 - s)`.
- `torch`: PyTorch eager (`nn.Sequential` + `torch.optim.SGD`), when installed.
- `one` (ensembles only): one network of the ensemble trained alone with `jaxnet.fit`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxnet
from .harness import SETTLE_S, Contender, blas_threads, race, ratios, stats, torch_threads
from jaxnet import reference


class Workload(NamedTuple):
    """One benchmark workload (float32).

    `model` and `dataset` name entries of MODELS and DATASETS; `architecture` is read by the model
    (layer sizes for "mlp"). `batch_sizes`: None is full batch; each size is raced separately (its
    contenders' names end in " b<size>"). `networks` > 1 trains an ensemble in one call; numpy then
    trains `numpy_networks` of them one after another and its time is extrapolated linearly.
    """

    name: str
    title: str
    model: str
    architecture: tuple
    activation: str
    output_activation: str | None
    dataset: str
    n: int
    loss: str
    learning_rate: float
    epochs: int = 1
    batch_sizes: tuple = (None,)
    networks: int = 1
    numpy_networks: int = 1


WORKLOADS = {
    "w1": Workload("w1", "XOR, 2-4-1 sigmoid, MSE, full batch", "mlp", (2, 4, 1), "sigmoid", "sigmoid", "xor", 4,
                   "mse", 1.0, epochs=5000),
    "w2": Workload("w2", "two Gaussians, 2-8-4-1 sigmoid, binary cross-entropy, full batch", "mlp", (2, 8, 4, 1),
                   "sigmoid", "sigmoid", "gaussians", 1000, "binary_crossentropy", 0.5, epochs=2000),
    "w3": Workload("w3", "MNIST-shaped random data, 784-100-10 ReLU, softmax cross-entropy, one epoch of "
                   "shuffled minibatch SGD", "mlp", (784, 100, 10), "relu", "identity", "mnist_shaped", 60_000,
                   "softmax_cross_entropy", 0.1, batch_sizes=(100, 1000)),
    "w4": Workload("w4", "XOR networks (W1 each) from one seed each, in one call", "mlp", (2, 4, 1), "sigmoid",
                   "sigmoid", "xor", 4, "mse", 1.0, epochs=5000, networks=1024, numpy_networks=4),
    # The book's SimpleConvNet: its contenders come from experiments/cnn_w5.py (run_w5 below).
    "w5": Workload("w5", "SimpleConvNet on MNIST-shaped images, one epoch of shuffled minibatch Adam", "cnn", (),
                   "relu", "identity", "mnist_images", 10_000, "softmax_cross_entropy", 1e-3, batch_sizes=(100,)),
    # The book's DeepConvNet: its contenders come from experiments/bench/deep_cnn.py (run_w6 below).
    "w6": Workload("w6", "DeepConvNet on MNIST-shaped images, one epoch of shuffled minibatch Adam", "deep_cnn", (),
                   "relu", "identity", "mnist_images", 10_000, "softmax_cross_entropy", 1e-3, batch_sizes=(100,)),
}
QUICK = {  # the `--quick` smoke sizes
    "w1": WORKLOADS["w1"]._replace(epochs=50),
    "w2": WORKLOADS["w2"]._replace(n=64, epochs=20),
    "w3": WORKLOADS["w3"]._replace(n=2_000),
    "w4": WORKLOADS["w4"]._replace(epochs=50, networks=16, numpy_networks=1),
    "w5": WORKLOADS["w5"]._replace(n=200),
    "w6": WORKLOADS["w6"]._replace(n=200),
}

# Ratios reported for each batch size (suffix): label -> (numerator contender, denominator contender).
PAIRS = {
    "speedup_vs_numpy": ("numpy", "backprop"),
    "autodiff_speedup_vs_numpy": ("numpy", "autodiff"),
    "plain_speedup_vs_numpy": ("numpy", "plain"),
    "backprop_over_plain": ("backprop", "plain"),
    "autodiff_over_plain": ("autodiff", "plain"),
    "plain_nn_speedup_vs_numpy": ("numpy", "plain_nn"),
    "backprop_over_plain_nn": ("backprop", "plain_nn"),
    "autodiff_over_plain_nn": ("autodiff", "plain_nn"),
    "backprop_over_autodiff": ("backprop", "autodiff"),
    "speedup_vs_torch": ("torch", "backprop"),
    "torch_speedup_vs_numpy": ("numpy", "torch"),
    "ensemble_over_one": ("backprop", "one"),
}


# ------------------------------------------------------------------------------------ jaxnet adapters


@functools.cache
def _compiled_init(net) -> Callable:
    return jax.jit(lambda key: net.init(key)[1])


def _init_params(net, key: jax.Array):
    """Initial params of `net` for one key (the only call of jaxnet's init API here), in one compiled
    program rather than one per eager random op."""
    return _compiled_init(net)(key)


def _params_and_history(result) -> tuple[Any, dict]:
    """Params and history of a `fit` / `fit_ensemble` result: `(params, history)` today, and
    `FitResult(params, state, opt_state, history)` too (first and last entries)."""
    return result[0], result[-1]


# ----------------------------------------------------------------------------------- models and data

@jax.custom_jvp
def accurate_sigmoid(z):
    """`jax.nn.sigmoid` whose derivative is `sigmoid(z) sigmoid(-z)`: the same math as jaxnet's sigmoid
    (accurate in both tails), written here from the definition. `jax.nn.sigmoid`'s own derivative is
    `s (1 - s)`, which is 0 for z > 17 in float32 and costs one transcendental less per element."""
    return jax.nn.sigmoid(z)


@accurate_sigmoid.defjvp
def _accurate_sigmoid_jvp(primals, tangents):
    (z,), (dz,) = primals, tangents
    s = jax.nn.sigmoid(z)
    return s, dz * s * jax.nn.sigmoid(-z)


# the plain loop's activations: the same math as jaxnet's ("plain"), and jax.nn's sigmoid ("plain_nn")
ACTIVATIONS = {"sigmoid": accurate_sigmoid, "relu": jax.nn.relu, "tanh": jnp.tanh, "identity": lambda z: z}
NN_ACTIVATIONS = {**ACTIVATIONS, "sigmoid": jax.nn.sigmoid}


def _clipped_bce(p, y):
    eps = jnp.finfo(p.dtype).eps
    p = jnp.clip(p, eps, 1 - eps)
    return -jnp.mean(y * jnp.log(p) + (1 - y) * jnp.log1p(-p))


PLAIN_LOSSES = {  # written from the definitions, not jaxnet's code
    "mse": lambda out, y: jnp.mean(jnp.square(out - y)),
    "binary_crossentropy": _clipped_bce,
    "softmax_cross_entropy": lambda logits, labels: -jnp.mean(
        jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)),
}
NUMPY_LOSSES = {"mse": "mse", "binary_crossentropy": "bce", "softmax_cross_entropy": "cross_entropy"}


def _mlp_forward(w: Workload, activations: dict = ACTIVATIONS) -> Callable:
    """`forward(params, x)` of an mlp in plain jax.nn, on jaxnet's params layout ({"W", "b"} per Dense)."""
    hidden, output = activations[w.activation], activations[w.output_activation or w.activation]

    def forward(params, x):
        dense = [p for p in params if p]
        for i, p in enumerate(dense):
            x = (output if i == len(dense) - 1 else hidden)(x @ p["W"] + p["b"])
        return x

    return forward


class Model(NamedTuple):
    """How to build a workload's jaxnet network and its plain-JAX forward pass."""

    net: Callable[[Workload], Any]
    forward: Callable[[Workload], Callable]


@functools.cache
def _mlp(architecture: tuple, activation: str, output_activation: str | None):
    """One network per architecture: workloads that share one (W1 and W4's lone network; W3, W4 and
    the devices workload) share `fit`'s compiled programs, since jit caches on the network."""
    return jaxnet.mlp(list(architecture), activation, output_activation)


MODELS = {"mlp": Model(lambda w: _mlp(w.architecture, w.activation, w.output_activation), _mlp_forward)}


@functools.partial(jax.jit, static_argnums=1)
def _mnist_shaped(key, w: Workload):
    k_x, k_y = jax.random.split(key)
    return (jax.random.uniform(k_x, (w.n, w.architecture[0]), jnp.float32),
            jax.random.randint(k_y, (w.n,), 0, w.architecture[-1]))


DATASETS = {
    "xor": lambda key, w: jaxnet.data.xor(),
    "gaussians": lambda key, w: jaxnet.data.gaussian_blobs(key, w.n),
    "mnist_shaped": _mnist_shaped,
}


def available(w: Workload) -> bool:
    """Whether the workload's model and data exist here (W5's come from experiments/cnn_w5.py, W6's from
    experiments/bench/deep_cnn.py)."""
    return w.name in ("w5", "w6") or (w.model in MODELS and w.dataset in DATASETS)


# ------------------------------------------------------------------------------------ the plain loop


def epoch_batches(key: jax.Array, n: int, batch_size: int) -> jax.Array:
    """The minibatch indices (steps, batch_size) of one epoch as `jaxnet.fit` draws them: a permutation
    from the epoch's shuffle key (`jax.random.split(jax.random.fold_in(key, 0), epochs)[epoch]`, the
    derivation `jaxnet.train.epoch_keys` documents), full batches only (every workload here divides
    evenly)."""
    perm = jax.random.permutation(key, n)
    steps = n // batch_size
    return perm[: steps * batch_size].reshape(steps, batch_size)


def plain_trainer(w: Workload, batch_size: int | None, nn_sigmoid: bool = False) -> Callable:
    """A hand-written JAX training run `train(params, x, y, key) -> (params, loss per epoch)`, with the
    same sigmoid derivative as jaxnet, or with `jax.nn.sigmoid`'s cheaper one (`nn_sigmoid`)."""
    forward = MODELS[w.model].forward(w, NN_ACTIVATIONS) if nn_sigmoid else MODELS[w.model].forward(w)
    loss_fn, lr = PLAIN_LOSSES[w.loss], w.learning_rate

    def step(params, xb, yb):
        loss, grads = jax.value_and_grad(lambda p: loss_fn(forward(p, xb), yb))(params)
        return jax.tree.map(lambda p, g: p - lr * g, params, grads), loss

    def train(params, x, y, key):
        if batch_size is None:
            return jax.lax.scan(lambda p, _: step(p, x, y), params, None, length=w.epochs)

        def epoch(params, epoch_key):
            batches = epoch_batches(epoch_key, x.shape[0], batch_size)
            params, losses = jax.lax.scan(lambda p, i: step(p, x[i], y[i]), params, batches)
            return params, jnp.mean(losses)

        return jax.lax.scan(epoch, params, jax.random.split(jax.random.fold_in(key, 0), w.epochs))

    return train


# ---------------------------------------------------------------------------------------- contenders


def _plain_variants(w: Workload) -> dict[str, bool]:
    """The plain loops raced on `w`: "plain" (jaxnet's math), and for sigmoid networks also "plain_nn"
    (`jax.nn.sigmoid`'s cheaper derivative), name -> whether it uses jax.nn's sigmoid."""
    uses_sigmoid = "sigmoid" in (w.activation, w.output_activation)
    return {"plain": False, **({"plain_nn": True} if uses_sigmoid else {})}


def _last_loss(losses, compare: int | None = None) -> float:
    """The last epoch's loss (the mean over the first `compare` members of an ensemble)."""
    losses = jax.block_until_ready(losses)
    return float(jnp.mean(losses[:compare, -1]) if compare else losses[-1])


def _fit_run(w, net, params, x, y, grad, batch_size, key) -> Callable[[], float]:
    optimizer = jaxnet.optim.sgd(w.learning_rate)
    minibatch = {} if batch_size is None else {"batch_size": batch_size, "key": key}

    def run():
        result = jaxnet.fit(net, params, x, y, loss=w.loss, optimizer=optimizer, epochs=w.epochs, grad=grad,
                            **minibatch)
        return _last_loss(_params_and_history(result)[1]["loss"])

    return run


def _fit_ensemble_run(w, net, params, x, y, grad) -> Callable[[], float]:
    from jaxnet.train import fit_ensemble

    def run():
        result = fit_ensemble(net, x, y, params=params, loss=w.loss, optimizer="sgd",
                              hyperparams={"learning_rate": w.learning_rate}, epochs=w.epochs, grad=grad)
        return _last_loss(_params_and_history(result)[1]["loss"], w.numpy_networks)

    return run


def _numpy_run(w, params, x, y, batch_size) -> Callable[[], float]:
    """The tutorial's loop; lr times the batch size undoes its double division."""
    weights, biases = ([np.asarray(a, np.float32) for a in arrays] for arrays in reference.from_jaxnet_params(params))
    xn, yn = np.asarray(x, np.float32), np.asarray(y)
    kwargs = {"loss": NUMPY_LOSSES[w.loss], "activation": w.activation}
    if batch_size is None:
        def run():
            result = reference.train(weights, biases, xn, yn.astype(np.float32), epochs=w.epochs, dtype=np.float32,
                                     learning_rate=w.learning_rate * len(xn), output_activation=w.output_activation,
                                     **kwargs)
            return float(result.losses[-1])
        return run
    targets = np.eye(weights[-1].shape[1], dtype=np.float32)[yn]  # the tutorial's fused softmax + CE
    rng = np.random.default_rng(0)

    def run():
        for _ in range(w.epochs):
            reference.train_minibatch_epoch([a.copy() for a in weights], [b.copy() for b in biases], xn, targets,
                                            batch_size=batch_size, learning_rate=w.learning_rate * batch_size,
                                            rng=rng, output_activation="softmax", **kwargs)
        return float("nan")  # other batches than jaxnet's: no comparable loss

    return run


def _torch_run(torch, w, params, x, y, batch_size) -> Callable[[], float]:
    """PyTorch eager, the idiomatic loop: zero_grad, forward, loss, backward, step."""
    xt, yt = torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y))
    activations = {"sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU, "identity": torch.nn.Identity}
    loss_fn = {"mse": torch.nn.MSELoss(), "binary_crossentropy": torch.nn.BCELoss(),
               "softmax_cross_entropy": lambda logits, labels: torch.nn.functional.cross_entropy(logits, labels.long())}
    generator = torch.Generator().manual_seed(0)

    def model():
        dense, modules = [p for p in params if p], []
        for i, p in enumerate(dense):
            linear = torch.nn.Linear(*np.shape(p["W"]))
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(np.array(p["W"]).T))
                linear.bias.copy_(torch.from_numpy(np.array(p["b"])))
            last = i == len(dense) - 1
            modules += [linear, activations[(w.output_activation or w.activation) if last else w.activation]()]
        return torch.nn.Sequential(*modules)

    def batches():
        if batch_size is None:
            yield xt, yt
            return
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), batch_size):
            idx = order[start:start + batch_size]
            yield xt[idx], yt[idx]

    def run():
        net = model()
        optimizer = torch.optim.SGD(net.parameters(), lr=w.learning_rate)
        for _ in range(w.epochs):
            for xb, yb in batches():
                optimizer.zero_grad()
                value = loss_fn[w.loss](net(xb), yb)
                value.backward()
                optimizer.step()
        return value.item() if batch_size is None else float("nan")  # other batches than jaxnet's

    return run


def memory(compiled) -> dict:
    """XLA's memory analysis of a compiled program (`jax.jit(f).lower(...).compile()`): bytes of
    arguments, outputs, aliased buffers and temporaries (a shuffled copy of the data per epoch would
    show here), and their total."""
    m = compiled.memory_analysis()
    out = {k: int(getattr(m, f"{k}_size_in_bytes")) for k in ("argument", "output", "alias", "temp")}
    return {**out, "total": out["argument"] + out["output"] + out["temp"] - out["alias"]}


def ensemble_params(w: Workload, net, key: jax.Array):
    """The stacked initial params of `w.networks` members, one key each (split from `key`)."""
    return jax.vmap(functools.partial(_init_params, net))(jax.random.split(key, w.networks))


def run_workload(w: Workload, key: jax.Array, rounds: int, torch=None, *, settle: float = SETTLE_S) -> dict:
    """Race every contender of `w` (per batch size), and measure W3-style epochs' compiled memory."""
    k_data, k_init, k_fit = jax.random.split(key, 3)
    x, y = DATASETS[w.dataset](k_data, w)
    net = MODELS[w.model].net(w)
    contenders, pairs, memories = [], {}, {}
    if w.networks > 1:
        params = ensemble_params(w, net, k_init)
        first = [jax.tree.map(lambda a, i=i: a[i], params) for i in range(w.numpy_networks)]
        loops = [_numpy_run(w, p, x, y, None) for p in first]
        plains = {name: jax.jit(jax.vmap(plain_trainer(w, None, nn), in_axes=(0, None, None, None)))
                  for name, nn in _plain_variants(w).items()}
        contenders = [
            Contender("numpy", lambda: float(np.mean([run() for run in loops])), scale=w.networks / w.numpy_networks,
                      threads=blas_threads),
            *[Contender(g, _fit_ensemble_run(w, net, params, x, y, g)) for g in ("backprop", "autodiff")],
            *[Contender(name, lambda plain=plain: _last_loss(plain(params, x, y, k_fit)[1], w.numpy_networks))
              for name, plain in plains.items()],
            Contender("one", _fit_run(w, net, first[0], x, y, "backprop", None, None)),
        ]
        pairs = dict(PAIRS)
    else:
        params = _init_params(net, k_init)
        for b in w.batch_sizes:
            suffix = "" if b is None else f" b{b}"
            plains = {name: jax.jit(plain_trainer(w, b, nn)).lower(params, x, y, k_fit).compile()
                      for name, nn in _plain_variants(w).items()}
            plain = plains["plain"]
            contenders += [
                Contender("numpy" + suffix, _numpy_run(w, params, x, y, b), threads=blas_threads),
                *[Contender(g + suffix, _fit_run(w, net, params, x, y, g, b, k_fit)) for g in ("backprop", "autodiff")],
                *[Contender(name + suffix, lambda compiled=compiled: _last_loss(compiled(params, x, y, k_fit)[1]))
                  for name, compiled in plains.items()],
            ]
            if torch is not None:
                contenders.append(Contender("torch" + suffix, _torch_run(torch, w, params, x, y, b),
                                            threads=torch_threads(torch)))
            pairs |= {label + suffix: (a + suffix, c + suffix) for label, (a, c) in PAIRS.items()}
            if b is not None:
                optimizer = jaxnet.optim.sgd(w.learning_rate)
                fit = functools.partial(jaxnet.fit, net, loss=w.loss, optimizer=optimizer, epochs=w.epochs,
                                        batch_size=b)
                jaxnet_memory = memory(jax.jit(lambda p, x, y, k: fit(p, x, y, key=k)).lower(params, x, y, k_fit)
                                       .compile())
                dataset = int(x.nbytes + y.nbytes)
                memories[f"b{b}"] = {"dataset_bytes": dataset, "jaxnet": jaxnet_memory, "plain": memory(plain),
                                     "temp_over_dataset": jaxnet_memory["temp"] / dataset}
    times, losses, threads = race(contenders, rounds, settle)
    size = f"{w.networks} networks" if w.networks > 1 else f"n={w.n}"
    epochs = f"{w.epochs} epochs" if w.epochs > 1 else "one epoch"
    result = {"title": f"{w.name.upper()} {w.title} ({size}, {epochs})", "workload": w._asdict(),
              "times_s": {name: stats(t) for name, t in times.items()}, "final_loss": losses, "threads": threads,
              "ratios": ratios(times, pairs)}
    if memories:
        result["memory"] = memories
    return result


W5_PAIRS = {"speedup_vs_numpy": ("numpy", "backprop"), "backprop_over_lax_conv": ("backprop", "lax.conv")}


def run_w5(w: Workload, rounds: int, *, settle: float = SETTLE_S) -> dict:
    """W5: one epoch of SimpleConvNet at batch 100 for jaxnet's im2col layers (hand backward, in `fit`),
    the same network with `lax.conv` and `jax.grad`, and the book's numpy im2col code; plus the compiled
    memory of one training step of the two JAX contenders."""
    from .. import cnn_w5

    batch = w.batch_sizes[0]
    runs = cnn_w5.w5_contenders(*cnn_w5.mnist_shaped(w.n), batch_size=batch)
    contenders = [Contender("backprop", runs["jaxnet im2col"]), Contender("lax.conv", runs["lax.conv + jax.grad"]),
                  Contender("numpy", runs["numpy (book)"], threads=blas_threads)]
    # the lax.conv contender uses optax.adam, whose bias correction mixes an int32 count with floats:
    # trace it under standard promotion even where strict promotion is on (the test run)
    with jax.numpy_dtype_promotion("standard"):
        times, losses, threads = race(contenders, rounds, settle)
        memory_by_step = cnn_w5.w5_step_memory(batch)
    return {"title": f"W5 {w.title} (n={w.n}, batch {batch})", "workload": w._asdict(),
            "times_s": {name: stats(t) for name, t in times.items()}, "final_loss": losses, "threads": threads,
            "ratios": ratios(times, W5_PAIRS), "memory": {"step": memory_by_step}}


def run_w6(w: Workload, rounds: int, *, settle: float = SETTLE_S) -> dict:
    """W6: one epoch of the book's DeepConvNet at batch 100 for jaxnet's im2col layers (hand backward, in
    `fit`), the same network with `lax.conv` and `jax.grad` (the same batches and dropout masks), and the
    book's numpy layers; plus the compiled memory of one training step of the two JAX contenders."""
    from . import deep_cnn
    from ..cnn_w5 import mnist_shaped

    batch = w.batch_sizes[0]
    runs = deep_cnn.w6_contenders(*mnist_shaped(w.n), batch_size=batch)
    contenders = [Contender("backprop", runs["jaxnet im2col"]), Contender("lax.conv", runs["lax.conv + jax.grad"]),
                  Contender("numpy", runs["numpy (book)"], threads=blas_threads)]
    with jax.numpy_dtype_promotion("standard"):  # optax.adam's int32 count, as in run_w5
        times, losses, threads = race(contenders, rounds, settle)
        memory_by_step = deep_cnn.w6_step_memory(batch)
    return {"title": f"W6 {w.title} (n={w.n}, batch {batch})", "workload": w._asdict(),
            "times_s": {name: stats(t) for name, t in times.items()}, "final_loss": losses, "threads": threads,
            "ratios": ratios(times, W5_PAIRS), "memory": {"step": memory_by_step}}


def first_call_run(contender: str, epochs: int) -> Callable[[], float]:
    """W1 with `epochs` epochs, data and params ready: `fit` ("backprop") or the plain loop ("plain"),
    for timing a first call (trace, compile, run) in a fresh interpreter."""
    w = WORKLOADS["w1"]._replace(epochs=epochs)
    x, y = DATASETS[w.dataset](jax.random.key(0), w)
    net = MODELS[w.model].net(w)
    params = jax.block_until_ready(_init_params(net, jax.random.key(1)))
    if contender == "plain":
        train = jax.jit(plain_trainer(w, None))
        return lambda: _last_loss(train(params, x, y, None)[1])
    return _fit_run(w, net, params, x, y, contender, None, None)

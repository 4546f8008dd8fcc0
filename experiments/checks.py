"""`checks`: the gradient checks measured: the bug zoo's detection rate per mode, the random-direction
mode on one wrong coordinate of a large tensor, the cost of each mode, and the README's figures.

Parts (`--parts`, default all):
- `figures`: the per-layer report of the issue's example (Dense -> BatchNorm -> a Swish whose dx
  forgets its beta -> Dense, at init params, so beta = 1 and only the perturbed params expose it):
  `layer_report.png` and its table; the delta trace of the XOR 2-4-1 network: `delta_trace_xor.png`.
  (docs/figures/ holds copies.)
- `zoo`: every bug of `jaxnet.check.zoo` on `--seeds` random draws of params and data, through each
  mode: `check_layer` (at the faulty layer's real input), `gradcheck` (coordinate-wise, and with
  `fd='directions'`), `layer_report`, and the finite differences alone (`route_fd`, the route
  compared with finite differences without jax.grad, as PyTorch's gradcheck): the fraction flagged and
  the fraction that named the faulty layer.
- `directions`: `gradcheck(fd='directions')` on SimpleConvNet with a route wrong in one random
  coordinate of the 4320 x 100 Dense weight (432,000 entries), by k times the leaf's RMS gradient:
  how often the finite differences alone (`route_fd`) catch it, over `--trials` coordinates, for 4 and
  16 directions per leaf (the comparison with jax.grad catches every one).
- `costs`: seconds of each mode on SimpleConvNet and on a DeepConvNet-sized network (six 3x3 convs
  16-16-32-32-64-64, pad 1 except the 4th, pad 2; three 2x2 max-pools; Dense 50, ReLU, Dropout 0.5,
  Dense 10; input (1, 28, 28)), batch 10, training mode: the first call (tracing and compiling
  included) and a second one.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from ._common import parser, write_metrics
from jaxnet import (Conv2D, Dense, Dropout, Flatten, MaxPool2D, Relu, backprop, check, data, mlp, plot, serial,
                    simple_convnet)
from jaxnet.check import zoo

PARTS = ("figures", "zoo", "directions", "costs")
MODES = ("check_layer", "gradcheck", "gradcheck directions", "layer_report", "fd only, coordinates",
         "fd only, directions")


def deep_like():
    """A DeepConvNet-sized network from the layers (the book's DeepConvNet, 8.1)."""
    conv = lambda n, p=1: [Conv2D(n, 3, padding=p), Relu]  # noqa: E731
    return serial(*conv(16), *conv(16), MaxPool2D(2), *conv(32), *conv(32, 2), MaxPool2D(2), *conv(64), *conv(64),
                  MaxPool2D(2), Flatten(), Dense(50), Relu, Dropout(0.5), Dense(10), input_shape=(1, 28, 28),
                  name="DeepConvNet-sized")


def figures(out):
    c = zoo.BUGS["Swish forgets beta"].case(jax.random.key(0))
    report = check.layer_report(c.net, c.params, c.x, c.y, c.loss, state=c.state, key=c.key, train=c.train)
    print(report)
    paths = [plot.save(report.figure(), out / "layer_report.png")]
    net = mlp([2, 4, 1])
    x, y = data.xor()
    trace = check.trace_deltas(net, net.init(jax.random.key(0))[1], x, y, "mse")
    paths.append(plot.save(trace.figure(), out / "delta_trace_xor.png"))
    return {"layer_report_passed": report.passed, "faulty": [r.label for r in report.faulty],
            "figures": [str(p) for p in paths]}


def _named(case, text):
    if case.faulty == "route":
        return "itself is wrong" in text
    if case.faulty == "loss":
        return "the loss (" in text
    return f"layer {case.faulty} (" in text


def _gradcheck(case, **kw):
    """(flagged, named, fd only flagged) of gradcheck on a case."""
    try:
        report = check.gradcheck(case.net, case.params, case.x, case.y, case.loss, **case.kwargs(), **kw)
    except ValueError as err:  # a backward of the wrong structure: named in the error
        return True, _named(case, str(err)), True
    fd_only = not all(leaf.route_fd.passed for leaf in report.leaves)
    return not report.passed, (not report.passed) and _named(case, report.blame), fd_only


def zoo_rates(seeds):
    rates = {}
    for name, bug in zoo.BUGS.items():
        counts = {mode: [0, 0, 0] for mode in MODES}  # flagged, named, applicable
        for seed in range(seeds):
            case = bug.case(jax.random.key(seed))
            found = zoo.layer_input(case)
            if found is not None:
                layer, x, params, state, key = found
                try:
                    flagged = not check.check_layer(layer, x, params=params, state=state, key=key,
                                                    train=case.train).passed
                except ValueError:
                    flagged = True
                counts["check_layer"] = [a + b for a, b in zip(counts["check_layer"], (flagged, flagged, 1))]
            for mode, kw in (("gradcheck", {}), ("gradcheck directions", {"fd": "directions"})):
                flagged, named, fd_only = _gradcheck(case, **kw)
                counts[mode] = [a + b for a, b in zip(counts[mode], (flagged, named, 1))]
                fd_mode = "fd only, " + ("directions" if kw else "coordinates")
                counts[fd_mode] = [a + b for a, b in zip(counts[fd_mode], (fd_only, fd_only, 1))]
            if case.faulty != "route":
                report = check.layer_report(case.net, case.params, case.x, case.y, case.loss, state=case.state,
                                            key=case.key, train=case.train)
                named = [r.label for r in report.faulty] == [case.faulty]
                counts["layer_report"] = [a + b for a, b in zip(counts["layer_report"], (not report.passed, named, 1))]
        rates[name] = {mode: (None if n == 0 else {"flagged": f / n, "named": m / n})
                       for mode, (f, m, n) in counts.items()}
        print(f"  {name:<48}" + "  ".join("  n/a" if r is None else f"{r['flagged']:.2f}/{r['named']:.2f}"
                                          for r in rates[name].values()), flush=True)
    return rates


def single_coordinate(trials, quick):
    net = simple_convnet()
    _, params = net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (8, 1, 28, 28))
    y = jax.random.randint(jax.random.key(2), (8,), 0, 10)
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        g = np.asarray(backprop(net, p64, x.astype(jnp.float64), y, "softmax_cross_entropy")[1][4]["W"])
    rms = float(np.sqrt(np.mean(np.square(g))))
    rng = np.random.default_rng(0)
    coords = [tuple(int(i) for i in np.unravel_index(rng.integers(g.size), g.shape)) for _ in range(trials)]
    out = {"leaf": "[4]['W'] (4320, 100)", "rms_gradient": rms, "trials": trials}
    for directions in ((4,) if quick else (4, 16)):
        for k in (1e-3, 1e-4, 1e-5):
            caught = 0
            for c in coords:
                def route(net, params, x, y, loss, c=c, k=k, **kw):
                    value, grads = backprop(net, params, x, y, loss, **kw)
                    bad = dict(grads[4], W=grads[4]["W"].at[c].add(k * rms))
                    return value, grads[:4] + (bad,) + grads[5:]
                report = check.gradcheck(net, params, x, y, "softmax_cross_entropy", grad=route, fd="directions",
                                         directions=directions, blame=False, perturb=None)
                caught += not {leaf.path: leaf for leaf in report.leaves}["[4]['W']"].route_fd.passed
            out[f"{directions} directions, error {k} x rms"] = caught / trials
            print(f"  {directions:>2} directions per leaf, one coordinate off by {k:g} x rms gradient ({k * rms:.1e}): "
                  f"caught by finite differences alone in {caught}/{trials}", flush=True)
    return out


def _time(fn):
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    start = time.perf_counter()
    fn()
    return first, time.perf_counter() - start


def costs(quick):
    out = {}
    nets = {"SimpleConvNet": simple_convnet()}
    if not quick:
        nets["DeepConvNet-sized"] = deep_like()
    for label, net in nets.items():
        _, params = net.init(jax.random.key(0))
        x = jax.random.normal(jax.random.key(1), (10, 1, 28, 28))
        y = jax.random.randint(jax.random.key(2), (10,), 0, 10)
        kw = dict(key=jax.random.key(3), train=True)
        n = sum(a.size for a in jax.tree.leaves(params))
        modes = {
            "gradcheck, 4096 coordinates": lambda: check.gradcheck(net, params, x, y, "softmax_cross_entropy", **kw),
            "gradcheck, directions (4 per leaf + 4)":
                lambda: check.gradcheck(net, params, x, y, "softmax_cross_entropy", fd="directions", **kw),
            "layer_report (2 directions per quantity)": lambda: check.layer_report(net, params, x, y,
                                                                                   "softmax_cross_entropy", **kw),
            "gradgradcheck (3 directions)": lambda: check.gradgradcheck(net, params, x, y, "softmax_cross_entropy",
                                                                        **kw),
        }
        out[label] = {"params": n}
        for mode, fn in modes.items():
            first, second = _time(fn)
            out[label][mode] = {"first_s": first, "second_s": second}
            print(f"  {label} ({n:,} params), {mode}: {first:.1f} s first call, {second:.1f} s again", flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = parser("checks", __doc__.splitlines()[0])
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated parts among {', '.join(PARTS)}")
    p.add_argument("--seeds", type=int, default=5, help="random draws per bug (default 5)")
    p.add_argument("--trials", type=int, default=40, help="wrong coordinates tried in `directions` (default 40)")
    args = p.parse_args(argv)
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        p.error(f"--parts: unknown {sorted(unknown)}; choose among {', '.join(PARTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    metrics = {}
    if "figures" in parts:
        metrics["figures"] = figures(args.out)
    if "zoo" in parts:
        print("bug zoo, flagged/named per mode:", ", ".join(MODES))
        metrics["zoo"] = zoo_rates(1 if args.quick else args.seeds)
    if "directions" in parts:
        metrics["directions"] = single_coordinate(5 if args.quick else args.trials, args.quick)
    if "costs" in parts:
        print("costs (this machine, under load):")
        metrics["costs"] = costs(args.quick)
    write_metrics(args.out, metrics)
    return {part: "done" for part in parts}


if __name__ == "__main__":
    main()

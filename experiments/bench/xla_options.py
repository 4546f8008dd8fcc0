"""XLA CPU options against the MNIST-shaped epoch at batch 1000 (issue 18): for each XLA_FLAGS setting,
a fresh interpreter times (a) a (1000, 784) @ (784, 100) float32 matmul and its two gradient products
and (b) one jaxnet.fit epoch (784-100-10 sigmoid, softmax CE, SGD, 10,000 examples, batch 1000),
median of repeats; and numpy (OpenBLAS) on the same matmuls.
Usage: python -m experiments.bench.xla_options [repeats]   (docs/benchmarks.md quotes one run)
"""
import json
import os
import subprocess
import sys

SETTINGS = {
    "default": "",
    "no eigen pool": "--xla_cpu_multi_thread_eigen=false",
    "xnnpack": "--xla_cpu_use_xnnpack=true",
    "onednn": "--xla_cpu_use_onednn=true",
    "xnn fusion dot": "--xla_cpu_experimental_xnn_fusion_type=XNN_FUSION_TYPE_DOT",
    "ynn fusion": "--xla_cpu_experimental_ynn_fusion_type=YNN_FUSION_TYPE_DOT",
    "vector 512": "--xla_cpu_prefer_vector_width=512",
    "fast min max": "--xla_cpu_enable_fast_min_max=true",
}

CHILD = r'''
import time, json, sys
import numpy as np, jax, jax.numpy as jnp, jaxnet
reps = int(sys.argv[1])
rng = np.random.default_rng(0)
a = rng.standard_normal((1000, 784), dtype=np.float32); w = rng.standard_normal((784, 100), dtype=np.float32)
d = rng.standard_normal((1000, 100), dtype=np.float32)
f = jax.jit(lambda a, w, d: (a @ w, a.T @ d, d @ w.T))
aj, wj, dj = map(jnp.asarray, (a, w, d))
jax.block_until_ready(f(aj, wj, dj))
def med(fn):
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return float(np.median(ts))
mm = med(lambda: jax.block_until_ready(f(aj, wj, dj)))
x = rng.random((10000, 784), dtype=np.float32); y = rng.integers(0, 10, 10000).astype(np.int32)
net = jaxnet.mlp([784, 100, 10], "sigmoid", "identity")
p = net.init(jax.random.key(0))[1]
opt = jaxnet.optim.sgd(0.1)
run = lambda: jax.block_until_ready(jaxnet.fit(net, p, x, y, loss="softmax_cross_entropy", optimizer=opt, epochs=1,
                                             batch_size=1000, key=jax.random.key(1)).params)
run()
ep = med(run)
print(json.dumps({"matmuls_s": mm, "gflops": 3 * 2 * 1000 * 784 * 100 / mm / 1e9, "epoch_s": ep}))
'''

NUMPY = r'''
import time, json, sys, numpy as np
reps = int(sys.argv[1])
rng = np.random.default_rng(0)
a = rng.standard_normal((1000, 784), dtype=np.float32); w = rng.standard_normal((784, 100), dtype=np.float32)
d = rng.standard_normal((1000, 100), dtype=np.float32)
ts = []
for _ in range(reps):
    t = time.perf_counter(); a @ w; a.T @ d; d @ w.T; ts.append(time.perf_counter() - t)
mm = float(np.median(ts))
print(json.dumps({"matmuls_s": mm, "gflops": 3 * 2 * 1000 * 784 * 100 / mm / 1e9}))
'''


def main(argv: list[str]) -> dict:
    reps = argv[0] if argv else "20"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = {"numpy": json.loads(subprocess.run([sys.executable, "-c", NUMPY, reps], capture_output=True, text=True,
                                              env=env).stdout)}
    for name, flags in SETTINGS.items():
        proc = subprocess.run([sys.executable, "-c", CHILD, reps], capture_output=True, text=True,
                              env={**env, "XLA_FLAGS": flags})
        ok = proc.returncode == 0
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1]) if ok else {"error": proc.stderr[-300:]}
        print(name, out[name], flush=True)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])

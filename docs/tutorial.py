# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The tutorial, section by section, with jaxnet
#
# This notebook walks the numpy tutorial that jaxnet reimplements, in its order: activations and
# their derivatives, forward propagation, the losses, the delta equations (checked against
# `jax.grad`), training, XOR, the two-Gaussian task, the plateau learning-rate decay and
# initialisation. Each step is a few lines of jaxnet and a check you can see.
#
# `docs/tutorial.py` is the source (jupytext's percent format, plain Python: `python docs/tutorial.py`
# runs it too); `docs/tutorial.ipynb` is made from it with `jupytext --to ipynb docs/tutorial.py`, and
# `tests/test_notebook.py` runs it and checks that the two agree. Figures from `jaxnet.plot.figure()`
# show in Jupyter without importing pyplot: end a cell with `fig`.

# %%
import jax
import jax.numpy as jnp
import numpy as np

import jaxnet
from jaxnet import activations as act
from jaxnet import initializers, losses, plot, reference

# %% [markdown]
# ## 1. Activations and their derivatives
#
# Each activation comes with its derivative, side by side (`sigmoid` and `sigmoid_derivative`, ...).
# `jax.grad` of JAX's own functions (`jax.nn.sigmoid`, `jax.nn.relu`, `jnp.tanh`), taken point by
# point with `jax.vmap`, is an independent second route to the same numbers (equal up to float32
# rounding). At 0 ReLU has no derivative; jaxnet (like `jax.nn.relu`) uses 0 there, drawn as a dot.

# %%
z = jnp.arange(-500, 501, dtype=jnp.float32) / 100  # x = -5, -4.99, ..., 5, with 0 exactly
fig, axes = plot.figure(1, 3, size=(11, 3))
for ax, (name, reference_fn) in zip(axes, [("sigmoid", jax.nn.sigmoid), ("relu", jax.nn.relu), ("tanh", jnp.tanh)]):
    f, df = getattr(act, name), getattr(act, f"{name}_derivative")
    by_grad = jax.vmap(jax.grad(reference_fn))(z)
    print(f"{name:8s} largest |hand derivative - jax.grad| on [-5, 5]: {float(jnp.max(jnp.abs(df(z) - by_grad))):.1e}")
    ax.plot(z, f(z), label=name)
    ax.plot(z, jnp.where(z == 0, jnp.nan, df(z)) if name == "relu" else df(z), "--", label="derivative")
    ax.legend()
axes[1].plot([0], [float(act.relu_derivative(jnp.zeros(())))], "o", color="C1")  # relu'(0) = 0
axes[1].plot([0], [1], "o", color="C1", markerfacecolor="white")  # the limit from the right
fig

# %% [markdown]
# ## 2. Forward propagation
#
# A layer computes `z = a W + b` for a batch `a` of shape (m, n_in) and weights `W` (n_in, n_out),
# then `a' = f(z)`. `net.forward` returns every intermediate array, alternating z and a, as the
# tutorial's `z_values` and `activations`; the matrix products written out give the same numbers.

# %%
net = jaxnet.mlp([2, 4, 1], activation="sigmoid")
_, params = net.init(jax.random.key(0))
x, y = jaxnet.data.xor()
x_, z1, a1, z2, a2 = net.forward(params, x)
W1, b1, W2, b2 = params[0]["W"], params[0]["b"], params[2]["W"], params[2]["b"]
print("shapes: W1", W1.shape, "b1", b1.shape, "W2", W2.shape, "b2", b2.shape, "output", a2.shape)
by_hand = act.sigmoid(act.sigmoid(x @ W1 + b1) @ W2 + b2)
print("output by hand == net.forward:", bool(jnp.allclose(by_hand, a2)), "== net.apply:",
      bool(jnp.allclose(net.apply(params, x), a2)))

# %% [markdown]
# ## 3. The losses
#
# MSE is the mean over the batch and the output units; binary cross-entropy likewise, with
# predictions clipped to the float type's machine epsilon. Each loss has its gradient with respect to
# the prediction beside it (`mse_derivative`, ...), which `jax.grad` confirms.

# %%
print("MSE of the untrained network:", float(losses.mse(a2, y)))
print("binary cross-entropy:        ", float(losses.binary_crossentropy(a2, y)))
for name in ["mse", "binary_crossentropy"]:
    hand = getattr(losses, f"{name}_derivative")(a2, y)
    auto = jax.grad(lambda p: getattr(losses, name)(p, y))(a2)
    print(f"{name}: largest |hand gradient - jax.grad| = {float(jnp.max(jnp.abs(hand - auto))):.1e}")

# %% [markdown]
# ## 4. The delta equations, checked against `jax.grad`
#
# Backpropagation by hand: the output delta is dL/da times f'(z); each layer's weight gradient is
# `a_prev^T delta`, its bias gradient the sum of delta over the batch, and the delta one layer down is
# `(delta W^T) * f'(z_prev)`. Written out for the 2-4-1 network:

# %%
delta2 = losses.mse_derivative(a2, y) * act.sigmoid_derivative(z2)  # dL/dz2, (4, 1)
dW2, db2 = a1.T @ delta2, delta2.sum(axis=0)
delta1 = (delta2 @ W2.T) * act.sigmoid_derivative(z1)  # dL/dz1, (4, 4)
dW1, db1 = x.T @ delta1, delta1.sum(axis=0)

grads = jax.grad(lambda p: losses.mse(net.apply(p, x), y))(params)  # the independent route
for label, hand, auto in [("W1", dW1, grads[0]["W"]), ("b1", db1, grads[0]["b"]),
                          ("W2", dW2, grads[2]["W"]), ("b2", db2, grads[2]["b"])]:
    print(f"d{label}: largest |delta equations - jax.grad| = {float(jnp.max(jnp.abs(hand - auto))):.1e}")

loss, backprop_grads = jaxnet.backprop(net, params, x, y, "mse")  # jaxnet's delta recursion, any depth
print("jaxnet.backprop == the equations above:", bool(jnp.allclose(backprop_grads[0]["W"], dW1)))

# %% [markdown]
# The tutorial divides by the batch size m twice: its loss derivative already carries 1/m, and it
# divides `a_prev^T delta` by m again. Its "gradients" are the true gradient divided by m, as the
# numpy transcription in `jaxnet.reference` shows (float64). `gradcheck` compares jaxnet's route with
# `jax.grad` and with finite differences in float64:

# %%
weights, biases = reference.from_jaxnet_params(params)
acts, zs = reference.forward(weights, biases, np.asarray(x, np.float64))
tutorial_dW, _ = reference.backward(weights, acts, zs, np.asarray(y, np.float64))
print("tutorial dW1 * m == true dW1:", np.allclose(tutorial_dW[0] * 4, dW1, atol=1e-6))
report = jaxnet.gradcheck(net, params, x, y, "mse")
print("gradcheck passed:", report.passed)

# %% [markdown]
# ## 5. Training, and 6. XOR
#
# `fit` runs the whole training as one compiled loop and returns a `FitResult` (params, state,
# optimizer state, history). XOR with the tutorial's 2-4-1 sigmoid network, MSE, SGD at learning rate
# 1.0 for 5000 epochs:

# %%
result = jaxnet.fit(net, params, x, y, loss="mse", optimizer=jaxnet.optim.sgd(1.0), epochs=5000)
print("predictions:", np.asarray(net.apply(result.params, x)).ravel().round(3), "targets:", np.asarray(y).ravel())
fig, (ax_loss, ax_xor) = plot.figure(1, 2, size=(9, 3.5))
plot.loss_curve(ax_loss, result.history["loss"], label="XOR, lr 1.0")
plot.decision_boundary(ax_xor, lambda g: net.apply(result.params, g), x, y)
fig

# %% [markdown]
# ## 7. The Gaussian task
#
# Two Gaussian clouds, 1000 points, a 2-8-4-1 sigmoid network with binary cross-entropy at learning
# rate 0.5. The true gradient learns; the tutorial's scaling (its double division by m = 800, so an
# effective rate of 0.5 / 800) has barely moved after the same number of epochs.

# %%
xg, yg = jaxnet.data.gaussian_blobs(jax.random.key(1), 1000)
x_tr, x_te, y_tr, y_te = jaxnet.data.train_test_split(jax.random.key(2), xg, yg, test_size=0.2)
gnet = jaxnet.mlp([2, 8, 4, 1], activation="sigmoid")
_, gparams = gnet.init(jax.random.key(3))
for scaling in [False, True]:
    run = jaxnet.fit(gnet, gparams, x_tr, y_tr, loss="binary_crossentropy", optimizer=jaxnet.optim.sgd(0.5),
                     epochs=500, tutorial_scaling=scaling)
    scores = jaxnet.evaluate(gnet, run.params, x_te, y_te, "binary_crossentropy")
    print(f"tutorial_scaling={scaling!s:5}: held-out accuracy {float(scores['accuracy']):.3f}")
    if not scaling:
        trained = run.params
fig, ax = plot.figure(size=(4.5, 3.8))
plot.decision_boundary(ax, lambda g: gnet.apply(trained, g), x_te, y_te)
fig

# %% [markdown]
# ## 8. The plateau decay
#
# The tutorial lowers the learning rate by a factor 0.95 when the loss has not improved for 100
# epochs. `optim.optimizer(..., plateau=True)` is that rule on optax; `decays` lists the decays as the
# tutorial prints them. At lr 70, far too high for XOR, the loss soon stops improving:

# %%
opt = jaxnet.optim.optimizer("sgd", 70.0, plateau=True)  # factor 0.95, patience 100
hot = jaxnet.fit(net, params, x, y, loss="mse", optimizer=opt, epochs=1000)
for epoch, rate in list(jaxnet.optim.decays(hot.history, hot.opt_state))[:3]:
    print(f"Epoch {epoch}: learning rate decayed to {rate:g}")
fig, ax = plot.figure(size=(5, 3))
ax.plot(hot.history["learning_rate"])
ax.set(xlabel="epoch", ylabel="learning rate", title="SGD at lr 70 with the plateau decay")
fig

# %% [markdown]
# ## 9. Initialisation
#
# The tutorial's "Xavier" initialisation, `randn(n_in, n_out) * sqrt(2 / n_in)`, is He (Kaiming)
# scaling: `initializers.he_normal`, the default of `mlp`. Glorot/Xavier is `sqrt(2 / (n_in + n_out))`.
# For W of shape (300, 100):

# %%
for name in ["xavier_normal", "he_normal"]:
    W = getattr(initializers, name)(jax.random.key(4), (300, 100))
    print(f"{name:13s} std {float(W.std()):.4f}")
print("sqrt(2 / 400) =", round(float(np.sqrt(2 / 400)), 4), " sqrt(2 / 300) =", round(float(np.sqrt(2 / 300)), 4))

# %% [markdown]
# What the scale does to a deep network's activations (the book's figures 6-10 to 6-14): five layers
# of 100 sigmoid units on 1000 random inputs. With std 1 the activations pile up at 0 and 1 (the
# gradient vanishes there), with std 0.01 at 0.5 (every unit alike); Xavier keeps them spread.

# %%
inputs = jax.random.normal(jax.random.key(5), (1000, 100))
inits = {"std 1": initializers.normal(1.0), "std 0.01": initializers.normal(0.01),
         "Xavier": initializers.xavier_normal, "He": initializers.he_normal}
fig, axes = plot.figure(1, 4, size=(12, 2.8), sharey=True)
for ax, (label, init) in zip(axes, inits.items()):
    deep = jaxnet.mlp([100] * 6, activation="sigmoid", initializer=init)
    _, deep_params = deep.init(jax.random.key(6))
    layer_outputs = deep.forward(deep_params, inputs)[2::2]  # the activations of the 5 layers
    for i, a in enumerate(layer_outputs):
        ax.hist(np.asarray(a).ravel(), bins=30, range=(0, 1), histtype="step", label=f"layer {i + 1}")
    ax.set(title=label, xlabel="activation")
axes[0].legend(fontsize=7)
fig

"""Optimizers and the tutorial's plateau decay (jaxnet.optim), checked against independent references:
the tutorial's schedule class in plain Python (tests/tutorial_schedule.py), a numpy transcription of
the book's optimizers (Deep Learning from Scratch, common/optimizer.py), hand-computed values."""

from __future__ import annotations

import dataclasses

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jaxnet import data, fit, mlp, optim, reference
from jaxnet import Layer, serial
from jaxnet.reference_cnn import Adam as BookAdam  # the book's common/optimizer.py Adam, in numpy
from tutorial_schedule import schedule_rates, train_with_schedule

NAN, INF = math.nan, math.inf
# optax 0.2.8's own reduce_on_plateau and adam mix int32 counts with floats, which the test run's strict
# dtype promotion (conftest.py) rejects; tests that call them directly allow it around those calls.
def optax_promotion():
    return jax.numpy_dtype_promotion("standard")
MAX_LEN = 400  # every loss sequence is padded to this length (one compiled run per dtype and factor)


# ----------------------------------------------------------------------------------------------
# The plateau decay against the tutorial's class
# ----------------------------------------------------------------------------------------------


def _make_runner(factor: float):
    """A jitted run of `optimizer('sgd', lr, plateau=(factor, patience))` over a (MAX_LEN,) loss
    sequence, gradient 1 at every step. Returns per step: the recorded rate (learning_rate_of), the
    actual update (-rate), and the rate already decided for the next step."""

    @jax.jit
    def run(losses, patience, lr):
        tx = optim.optimizer("sgd", lr, plateau=(factor, patience))
        params = jnp.zeros((), losses.dtype)

        def step(state, loss):
            update, state = tx.update(jnp.ones((), losses.dtype), state, params, value=loss)
            dtype = losses.dtype
            return state, (optim.learning_rate_of(state, dtype), update,
                           optim.learning_rate_of(state, dtype, upcoming=True))

        _, out = jax.lax.scan(step, tx.init(params), losses)
        return out

    return run


RUNNERS = {factor: _make_runner(factor) for factor in (0.95, 0.5, 0.9)}


def _run_plateau(losses, patience, factor, lr, dtype):
    n = len(losses)
    padded = np.full(MAX_LEN, np.nan)
    padded[:n] = losses
    used, update, upcoming = RUNNERS[factor](jnp.asarray(padded, dtype), jnp.int32(patience), jnp.asarray(lr, dtype))
    return np.asarray(used, np.float64)[:n], np.asarray(update, np.float64)[:n], np.asarray(upcoming, np.float64)[:n]


def _flushes_subnormals(dtype) -> bool:
    """Whether this XLA backend reads subnormal floats as zero (XLA's CPU backend does, in float32
    and float64: every comparison in a compiled run sees |x| < finfo.tiny as +/-0)."""
    tiny = np.finfo(dtype).smallest_subnormal
    return not bool(jax.jit(lambda a, b: b < a)(jnp.asarray(tiny, dtype), jnp.zeros((), dtype)))


def as_xla_sees_it(losses, dtype) -> list[float]:
    """The losses as a compiled run compares them: subnormals become signed zeros where the backend
    flushes them. (A loss computed by XLA is never subnormal there: results are flushed too.)"""
    values = np.asarray(losses, np.float64)
    if _flushes_subnormals(dtype):
        subnormal = (values != 0) & (np.abs(values) < np.finfo(dtype).tiny)
        values = np.where(subnormal, np.copysign(0.0, values), values)
    return values.tolist()


def _decays_from(used, upcoming):
    return [(int(t), float(upcoming[t])) for t in np.flatnonzero(upcoming < used)]


finite = st.floats(allow_nan=False, allow_infinity=False)
special = st.sampled_from([0.0, -0.0, NAN, INF, -INF, 1.0, -1.0, 5e-324, -5e-324, 1e308])
any_value = st.one_of(finite, special)
count = st.integers(1, 160)


def _steps(start: float, n: int, direction: float) -> list[float]:
    """n values from `start`, each the next float towards `direction` (ulp steps)."""
    out = [start]
    for _ in range(n - 1):
        out.append(float(np.nextafter(out[-1], direction)))
    return out


segment = st.one_of(
    st.lists(any_value, min_size=1, max_size=60),  # random, with NaN and infinities
    st.lists(st.sampled_from([0.0, 0.5, 1.0, -2.0, NAN, INF]), min_size=1, max_size=120),  # exact ties
    st.builds(lambda v, n: [v] * n, any_value, count),  # constant
    st.lists(finite, min_size=1, max_size=60).map(sorted),  # increasing
    st.lists(finite, min_size=1, max_size=60).map(lambda v: sorted(v, reverse=True)),  # decreasing
    st.builds(lambda v, n: _steps(v, n, -INF), finite, count),  # decreasing by one ulp per step
    st.builds(lambda v, n: _steps(v, n, INF), finite, count),  # increasing by one ulp per step
    st.builds(lambda v, n: [-abs(x) for x in _steps(v, n, -INF)], finite, count),  # negative
)
loss_sequences = st.lists(segment, min_size=1, max_size=8).map(lambda s: sum(s, [])[:MAX_LEN])

S1 = [1.0] * 301
S2_NAN = [1.0] + [NAN] * 100
S2_LATE = [1.0] * 50 + [0.5] * 101


@settings(max_examples=40)
@given(losses=loss_sequences, patience=st.integers(1, 150), factor=st.sampled_from([0.95, 0.5, 0.9]),
       lr=st.floats(1e-3, 10.0))
@example(losses=S1, patience=100, factor=0.95, lr=1.0)
@example(losses=S2_NAN, patience=100, factor=0.95, lr=1.0)
@example(losses=S2_LATE, patience=100, factor=0.95, lr=1.0)
@example(losses=[0.0, -0.0, 0.0, -0.0], patience=1, factor=0.5, lr=1.0)
@example(losses=[-INF, -INF, 1.0, NAN], patience=1, factor=0.5, lr=1.0)
@example(losses=[5e-324, 0.0, -5e-324, -5e-324], patience=1, factor=0.5, lr=1.0)
def test_plateau_decay_equals_the_tutorial_float64(losses, patience, factor, lr):
    with jax.enable_x64(True):
        used, update, upcoming = _run_plateau(losses, patience, factor, lr, jnp.float64)
        ref = schedule_rates(as_xla_sees_it(losses, np.float64), lr, factor, patience)
    np.testing.assert_allclose(used, ref.used, rtol=1e-12, atol=0)  # the rate of each epoch's update
    np.testing.assert_allclose(-update, ref.used, rtol=1e-12, atol=0)  # the update really uses it
    np.testing.assert_allclose(upcoming, ref.after, rtol=1e-12, atol=0)
    ours = _decays_from(used, upcoming)
    assert len(ours) == len(ref.decays)
    assert [t for t, _ in ours] == [t for t, _ in ref.decays]
    np.testing.assert_allclose([r for _, r in ours], [r for _, r in ref.decays], rtol=1e-12, atol=0)


@settings(max_examples=30)
@given(losses=loss_sequences, patience=st.integers(1, 150), lr=st.floats(1e-3, 10.0))
@example(losses=S1, patience=100, lr=1.0)
@example(losses=[1.0, float(np.nextafter(np.float32(1.0), np.float32(0.0)))] + [1.0] * 3, patience=2, lr=1.0)
def test_plateau_decay_equals_the_tutorial_float32(losses, patience, lr):
    with np.errstate(over="ignore"):  # what a float32 run sees: beyond float32's range is +/-inf
        losses32 = np.asarray(losses, np.float64).astype(np.float32)
    used, update, upcoming = _run_plateau(losses32, patience, 0.95, lr, jnp.float32)
    ref = schedule_rates(as_xla_sees_it(losses32, np.float32), lr, 0.95, patience)  # exact float32 values
    # Same decisions at the same epochs; the rates differ only by float32 rounding of the products.
    assert [t for t, _ in _decays_from(used, upcoming)] == [t for t, _ in ref.decays]
    np.testing.assert_allclose(used, ref.used, rtol=1e-4, atol=0)
    np.testing.assert_allclose(-update, used, rtol=1e-6, atol=0)
    np.testing.assert_allclose(upcoming, ref.after, rtol=1e-4, atol=0)


# ----------------------------------------------------------------------------------------------
# Field cases S1-S3
# ----------------------------------------------------------------------------------------------


def test_s1_constant_loss_decays_every_patience_epochs():
    used, _, upcoming = _run_plateau(S1, 100, 0.95, 1.0, jnp.float32)
    decided = _decays_from(used, upcoming)
    assert [t for t, _ in decided] == [100, 200, 300]  # never one drop per step after the first
    np.testing.assert_allclose([r for _, r in decided], [0.95, 0.9025, 0.857375], rtol=1e-6)
    # The tutorial updates first and then steps its schedule: epoch 100's update still uses 1.0.
    assert used[100] == 1.0 and used[101] == np.float32(0.95)
    assert np.all(used[:101] == 1.0) and np.all(used[101:201] == np.float32(0.95))


def test_s2_nan_and_inf_never_improve_and_never_raise():
    used, _, upcoming = _run_plateau(S2_NAN, 100, 0.95, 1.0, jnp.float32)
    assert [t for t, _ in _decays_from(used, upcoming)] == [100]
    used, _, upcoming = _run_plateau([1.0] + [INF] * 100, 100, 0.95, 1.0, jnp.float32)
    assert [t for t, _ in _decays_from(used, upcoming)] == [100]
    used, _, upcoming = _run_plateau(S2_LATE, 100, 0.95, 1.0, jnp.float32)
    assert [t for t, _ in _decays_from(used, upcoming)] == [150]  # 0.5 at index 50 restarted the count


def test_s3_optax_refuses_zero_tolerances_and_its_default_changes_the_rule():
    with pytest.raises(ValueError):
        optax.contrib.reduce_on_plateau(rtol=0.0, atol=0.0)
    # A relative decrease of 5e-5 is an improvement for the tutorial, not for optax's default rtol 1e-4:
    losses = jnp.array([1.0, 0.99995, 0.99995], jnp.float32)
    default = optax.contrib.reduce_on_plateau(factor=0.5, patience=2)
    state, update = default.init(jnp.zeros(())), jax.jit(default.update)
    with optax_promotion():
        for loss in losses:
            _, state = update(jnp.ones(()), state, value=loss)
    assert float(state.scale) == 0.5  # optax's default: two non-improving steps, one decay
    used, _, upcoming = _run_plateau(np.asarray(losses), 2, 0.5, 1.0, jnp.float32)
    assert upcoming[-1] == 1.0  # jaxnet: 0.99995 improved, only one non-improving step since
    assert schedule_rates(np.asarray(losses, np.float64), 1.0, 0.5, 2).after[-1] == 1.0


def test_subnormal_losses_are_read_as_zero_where_xla_flushes_them(x64):
    # Not a property of the schedule: every XLA comparison on this backend does the same.
    losses = [5e-324, 0.0, -5e-324, -5e-324]
    used, _, upcoming = _run_plateau(losses, 1, 0.5, 1.0, jnp.float64)
    np.testing.assert_array_equal(upcoming, schedule_rates(as_xla_sees_it(losses, np.float64), 1.0, 0.5, 1).after)
    if _flushes_subnormals(np.float64):  # 0.0 does not improve on a flushed 5e-324, nor -5e-324 on 0
        assert upcoming.tolist() == [1.0, 0.5, 0.25, 0.125]


def test_exact_rtol_leaves_the_comparison_strict():
    assert 1.0 - optim.EXACT_RTOL == 1.0 and np.float32(1.0 - optim.EXACT_RTOL) == 1.0


# ----------------------------------------------------------------------------------------------
# The plateau decay inside fit
# ----------------------------------------------------------------------------------------------


def _xor_params(seed, dtype):
    weights, biases = reference.init_params([2, 4, 1], np.random.default_rng(seed))
    params = ({"W": weights[0], "b": biases[0]}, {}, {"W": weights[1], "b": biases[1]}, {})
    return weights, biases, jax.tree.map(lambda a: jnp.asarray(a, dtype), params)


def test_fit_records_the_tutorial_rates_float64(x64):
    # A rate high enough for XOR's loss to oscillate, so that decays happen in a short run.
    net = mlp([2, 4, 1], activation="sigmoid", dtype=jnp.float64)
    _, _, params = _xor_params(2, jnp.float64)
    x, y = data.xor(jnp.float64)
    opt = optim.optimizer("sgd", 100.0, plateau=(0.8, 5))
    _, _, state, history = fit(net, params, x, y, loss="mse", optimizer=opt, epochs=400)
    ref = schedule_rates(np.asarray(history["loss"]), 100.0, 0.8, 5)
    assert len(ref.decays) >= 5  # the run really exercises the decay
    np.testing.assert_allclose(history["learning_rate"], ref.used, rtol=1e-12, atol=0)
    ours = optim.decays(history, state)
    assert [t for t, _ in ours] == [t for t, _ in ref.decays]
    np.testing.assert_allclose([r for _, r in ours], [r for _, r in ref.decays], rtol=1e-12)


def test_fit_records_the_tutorial_rates_float32():
    net = mlp([2, 4, 1], activation="sigmoid")
    _, _, params = _xor_params(2, jnp.float32)
    x, y = data.xor()
    opt = optim.optimizer("sgd", 100.0, plateau=(0.8, 5))
    _, _, _, history = fit(net, params, x, y, loss="mse", optimizer=opt, epochs=400)
    ref = schedule_rates(np.asarray(history["loss"], np.float64), 100.0, 0.8, 5)
    assert len(ref.decays) >= 5
    assert [t for t, _ in optim.decays(history)] == [t for t, _ in ref.decays if t < 399]
    np.testing.assert_allclose(history["learning_rate"], ref.used, rtol=1e-5)


def test_fit_reproduces_the_tutorial_loop_with_its_schedule(x64):
    # End to end: the numpy tutorial loop (update with the current rate, then step the schedule)
    # against fit with the tutorial's gradient scaling; losses, rates and decays all agree.
    weights, biases, params = _xor_params(1, jnp.float64)
    x, y = data.xor(jnp.float64)
    losses, used, ref_decays = train_with_schedule(weights, biases, np.asarray(x), np.asarray(y), epochs=600,
                                                   learning_rate=200.0, decay_rate=0.7, patience=4)
    net = mlp([2, 4, 1], activation="sigmoid", dtype=jnp.float64)
    _, _, state, history = fit(net, params, x, y, loss="mse", optimizer=optim.optimizer("sgd", 200.0, plateau=(0.7, 4)),
                            epochs=600, tutorial_scaling=True)
    assert len(ref_decays) >= 3
    np.testing.assert_allclose(history["loss"], losses, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(history["learning_rate"], used, rtol=1e-12, atol=0)
    assert [t for t, _ in optim.decays(history, state)] == [t for t, _ in ref_decays]


def test_decays_reads_a_history_as_the_tutorial_prints():
    rates = np.array([1.0, 1.0, 0.5, 0.5, 0.25])
    assert optim.decays({"learning_rate": rates}) == [(1, 0.5), (3, 0.25)]
    assert optim.decays(np.full(3, np.nan)) == []
    with pytest.raises(ValueError, match="history"):
        optim.decays(np.ones((2, 3)))


def test_learning_rate_of_reads_optax_reduce_on_plateau_and_reports_nan_without_a_rate():
    tx = optax.chain(optax.sgd(0.5), optax.contrib.reduce_on_plateau(factor=0.5, patience=1))
    state = tx.init(jnp.zeros(()))
    with optax_promotion():
        _, state = tx.update(jnp.ones(()), state, value=1.0)
        _, state = tx.update(jnp.ones(()), state, value=1.0)  # optax: scales this very step
    assert float(optim.learning_rate_of(optim.optimizer("sgd", 0.5).init(jnp.zeros(())))) == 0.5
    assert float(optim.learning_rate_of(state[1])) == 0.5  # the scale alone (no injected rate there)
    assert math.isnan(float(optim.learning_rate_of(optax.sgd(0.5).init(jnp.zeros(())))))


# ----------------------------------------------------------------------------------------------
# The book's optimizers (numpy transcription of Deep Learning from Scratch, common/optimizer.py)
# ----------------------------------------------------------------------------------------------


class BookSGD:
    def __init__(self, lr=0.01):
        self.lr = lr

    def update(self, params, grads):
        for key in params:
            params[key] -= self.lr * grads[key]


class BookMomentum:
    def __init__(self, lr=0.01, momentum=0.9):
        self.lr, self.momentum, self.v = lr, momentum, None

    def update(self, params, grads):
        if self.v is None:
            self.v = {k: np.zeros_like(v) for k, v in params.items()}
        for key in params:
            self.v[key] = self.momentum * self.v[key] - self.lr * grads[key]
            params[key] += self.v[key]


class BookNesterov:
    def __init__(self, lr=0.01, momentum=0.9):
        self.lr, self.momentum, self.v = lr, momentum, None

    def update(self, params, grads):
        if self.v is None:
            self.v = {k: np.zeros_like(v) for k, v in params.items()}
        for key in params:
            self.v[key] *= self.momentum
            self.v[key] -= self.lr * grads[key]
            params[key] += self.momentum * self.momentum * self.v[key]
            params[key] -= (1 + self.momentum) * self.lr * grads[key]


class BookAdaGrad:
    def __init__(self, lr=0.01):
        self.lr, self.h = lr, None

    def update(self, params, grads):
        if self.h is None:
            self.h = {k: np.zeros_like(v) for k, v in params.items()}
        for key in params:
            self.h[key] += grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


class BookRMSprop:
    def __init__(self, lr=0.01, decay_rate=0.99):
        self.lr, self.decay_rate, self.h = lr, decay_rate, None

    def update(self, params, grads):
        if self.h is None:
            self.h = {k: np.zeros_like(v) for k, v in params.items()}
        for key in params:
            self.h[key] *= self.decay_rate
            self.h[key] += (1 - self.decay_rate) * grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


BOOK = {"sgd": BookSGD, "momentum": BookMomentum, "nesterov": BookNesterov, "adagrad": BookAdaGrad,
        "rmsprop": BookRMSprop, "adam": BookAdam}
RATES = {"sgd": 0.3, "momentum": 0.1, "nesterov": 0.1, "adagrad": 0.3, "rmsprop": 0.02, "adam": 0.05}
STEPS = 50


def _problem():
    """A fixed smooth non-convex problem: a 3-2 tanh layer fitted to 8 random targets (float64)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    start = {"W": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}

    def loss(p):
        return jnp.mean((jnp.tanh(x @ p["W"] + p["b"]) - y) ** 2)

    return start, jax.jit(loss), jax.jit(jax.grad(loss))


def _book_run(name, lr, rates=None):
    start, _, grad = _problem()
    params = {k: v.copy() for k, v in start.items()}
    book = BOOK[name](lr)
    for t in range(STEPS):
        if rates is not None:
            book.lr = rates[t]
        book.update(params, {k: np.asarray(v) for k, v in grad(params).items()})
    return params


def _optax_run(tx, values=None):
    start, _, grad = _problem()
    params = jax.tree.map(jnp.asarray, start)
    state = tx.init(params)
    update = jax.jit(tx.update)
    for t in range(STEPS):
        extra = {} if values is None else {"value": values[t]}
        updates, state = update(grad(params), state, params, **extra)
        params = optax.apply_updates(params, updates)
    return params


def _relative_difference(a, b):
    return max(float(np.max(np.abs(np.asarray(a[k]) - b[k])) / np.max(np.abs(b[k]))) for k in b)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"])
def test_book_rules_equal_the_numpy_book(name, x64):
    ours = _optax_run(optim.optimizer(name, RATES[name], book=True))
    assert _relative_difference(ours, _book_run(name, RATES[name])) < 1e-10


def _adagrad_gradients(scale, steps=6):
    """Gradients of mixed signs and sizes (0.3 to 3 times `scale`), one (3,)-vector per step."""
    rng = np.random.default_rng(int(-np.log10(scale) * 10) % 97)
    return [scale * rng.uniform(0.3, 3.0, 3) * rng.choice([-1.0, 1.0], 3) for _ in range(steps)]


@pytest.mark.parametrize("scale", [1e-8, 1e-7, 1e-3, 1.0, 1e3])
def test_book_adagrad_equals_the_book_at_tiny_ordinary_and_large_gradients(scale, x64):
    # Reference: the book's AdaGrad class (numpy, above), with h from 0 and eps 1e-7 outside the root.
    # The old approximation 1/sqrt(h + 1e-14) was 39% off at gradients of 1e-8 and 1e-7.
    grads = _adagrad_gradients(scale)
    book, params = BookAdaGrad(0.1), {"w": np.zeros(3)}
    tx = optim.optimizer("adagrad", 0.1, book=True)
    w, state, update = jnp.zeros(3), tx.init(jnp.zeros(3)), jax.jit(tx.update)
    for g in grads:
        book.update(params, {"w": g})
        step, state = update(jnp.asarray(g), state)
        w = w + step
        np.testing.assert_allclose(w, params["w"], rtol=1e-12, atol=0)
    # float32 (the default) follows the float64 book to float32 rounding
    with jax.enable_x64(False):
        tx = optim.optimizer("adagrad", 0.1, book=True)
        w32, state = jnp.zeros(3), tx.init(jnp.zeros(3))
        for g in grads:
            step, state = tx.update(jnp.asarray(g, jnp.float32), state)
            w32 = w32 + step
        assert w32.dtype == jnp.float32
        np.testing.assert_allclose(w32, params["w"], rtol=1e-5)


def test_book_adagrad_first_steps_by_hand():
    # the case: a constant gradient, lr 0.1, three steps: sum_t 0.1 g / (sqrt(t) |g| + 1e-7)
    for g, moved in ((1e-8, 0.0263756), (1e-7, 0.1280239)):  # the issue: 0.0264, 0.1280
        by_hand = sum(0.1 * g / (math.sqrt(t) * g + 1e-7) for t in (1, 2, 3))
        assert abs(by_hand - moved) < 1e-7
        tx = optim.optimizer("adagrad", 0.1, book=True)
        w, state = jnp.zeros(()), tx.init(jnp.zeros(()))
        for _ in range(3):
            step, state = tx.update(jnp.asarray(g, jnp.float32), state)
            w = w + step
        np.testing.assert_allclose(-w, by_hand, rtol=1e-6)
        assert isinstance(state.inner_state, optim.BookAdaGradState)


def test_book_adagrad_vmaps_over_learning_rates_without_recompiling():
    grads = [jnp.asarray(g, jnp.float32) for g in _adagrad_gradients(1.0)]

    def run(lr):
        tx = optim.optimizer("adagrad", lr, book=True)
        w, state = jnp.zeros(3), tx.init(jnp.zeros(3))
        for g in grads:
            step, state = tx.update(g, state)
            w = w + step
        return w

    lrs = jnp.array([0.01, 0.1, 0.5])
    lanes = jax.jit(jax.vmap(run))(lrs)
    for lr, lane in zip((0.01, 0.1, 0.5), lanes):
        book, params = BookAdaGrad(lr), {"w": np.zeros(3)}
        for g in grads:
            book.update(params, {"w": np.asarray(g, np.float64)})
        np.testing.assert_allclose(lane, params["w"], rtol=1e-5)
    a, b = optim.optimizer("adagrad", 0.1, book=True), optim.optimizer("adagrad", 0.7, book=True)
    assert a.update == b.update and hash(a.update) == hash(b.update)  # one compiled fit for both rates


@pytest.mark.parametrize("name", ["momentum", "rmsprop", "adam"])
def test_optax_defaults_differ_from_the_book_where_documented(name, x64):
    book = _book_run(name, RATES[name])
    difference = _relative_difference(_optax_run(optim.optimizer(name, RATES[name])), book)
    if name == "momentum":  # the same rule while the rate is constant (velocity convention aside)
        assert difference < 1e-10
    else:  # rmsprop: decay 0.9 vs 0.99; adam: epsilon 1e-8 on the corrected root vs 1e-7 on the raw one
        assert difference > 1e-10


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adagrad", "adam"])
def test_book_rules_with_the_plateau_decay_equal_the_book_with_a_changing_rate(name, x64):
    # The tutorial's schedule changes the book optimizer's lr between steps; a constant loss value
    # makes it decay every 3 steps. Momentum and Nesterov keep lr g inside their velocity.
    values = [1.0] * STEPS
    rates = schedule_rates(values, RATES[name], 0.5, 3).used
    ours = _optax_run(optim.optimizer(name, RATES[name], book=True, plateau=(0.5, 3)), values)
    assert _relative_difference(ours, _book_run(name, RATES[name], rates)) < 1e-10
    if name == "momentum":  # optax's convention scales the whole velocity by the current rate
        theirs = _optax_run(optim.optimizer(name, RATES[name], plateau=(0.5, 3)), values)
        assert _relative_difference(theirs, _book_run(name, RATES[name], rates)) > 1e-6


# ----------------------------------------------------------------------------------------------
# Compilation: one trace per shape, whatever the rate (J2)
# ----------------------------------------------------------------------------------------------


def counting(tx, counter: list, wrappers: dict):
    """`tx` with an update that counts its traces. One wrapper per distinct update function, so fit
    reuses its compiled run exactly when `optimizer` shared the update (fit never calls update
    outside the compiled run, so every count is a trace of that run)."""
    update = tx.update
    if update not in wrappers:
        def counted(*args, **kwargs):
            counter[0] += 1
            return update(*args, **kwargs)

        wrappers[update] = counted
    return optax.GradientTransformationExtraArgs(tx.init, wrappers[update])


# Every optax-convention optimizer, and the book variants whose chains differ in structure (the decay
# before the velocity for momentum and nesterov; adam's epsilon schedule).
VARIANTS = [(name, False) for name in optim.OPTIMIZERS] + [("momentum", True), ("nesterov", True), ("adam", True)]


@pytest.mark.parametrize(("name", "book"), VARIANTS)
def test_fit_compiles_once_per_shape_with_each_optimizer_and_the_plateau_decay(name, book):
    counter, wrappers = [0], {}
    net = mlp([3, 2], activation="identity")
    _, params = net.init(jax.random.key(0))
    x, y = jax.random.normal(jax.random.key(1), (6, 3)), jnp.zeros((6, 2))

    def run(lr, x, y):
        opt = counting(optim.optimizer(name, lr, book=book, plateau=(0.5, 3)), counter, wrappers)
        return fit(net, params, x, y, loss="mse", optimizer=opt, epochs=12).history

    run(0.1, x, y)
    traces = counter[0]
    assert traces > 0
    history = run(0.05, x, y)  # a new rate: the same compiled run
    assert counter[0] == traces
    np.testing.assert_allclose(history["learning_rate"], schedule_rates(history["loss"], 0.05, 0.5, 3).used, rtol=1e-6)
    if name == "sgd":  # a new shape: a new trace (the counter does count compilations)
        run(0.05, x[:4], y[:4])
        assert counter[0] > traces


def _square_net():
    """One weight w with output w * x: the MSE against target 0 at x = 1 is f(w) = w^2."""

    return serial(_Scale(), input_shape=(1,))


@dataclasses.dataclass(frozen=True)
class _Scale(Layer):
    """y = w x with one weight w (a layer written against jaxnet's layer contract)."""

    def init(self, key, input_shape):
        del key
        return tuple(input_shape), {"w": jnp.array(2.0)}

    def apply(self, params, x, **_):
        return params["w"] * x

    def backward(self, params, x, y, dy, **_):
        del y
        return {"w": jnp.sum(x * dy)}, params["w"] * dy


def test_j2_vmapped_learning_rates_and_static_epochs():
    net = _square_net()
    _, params = net.init(jax.random.key(0))
    x, y = jnp.ones((1, 1)), jnp.zeros((1, 1))

    def run(lr):
        return fit(net, params, x, y, loss="mse", optimizer=optim.sgd(lr), epochs=10).params[0]["w"]

    w = jax.vmap(run)(jnp.array([0.1, 0.25, 0.5]))
    np.testing.assert_allclose(w, [0.21474836, 0.001953125, 0.0], rtol=1e-6, atol=1e-12)  # 2 (1 - 2 lr)^10
    for epochs in (100, 200):
        _, _, _, history = fit(net, params, x, y, loss="mse", optimizer=optim.sgd(0.1), epochs=epochs)
        assert history["loss"].shape == (epochs,) and history["learning_rate"].shape == (epochs,)


def test_j2_a_new_learning_rate_does_not_recompile():
    counter, wrappers = [0], {}
    net = _square_net()
    _, params = net.init(jax.random.key(0))
    x, y = jnp.ones((1, 1)), jnp.zeros((1, 1))
    fit(net, params, x, y, loss="mse", optimizer=counting(optim.sgd(0.1), counter, wrappers), epochs=10)
    traces = counter[0]
    assert traces > 0
    for lr in (0.25, 0.5):
        fit(net, params, x, y, loss="mse", optimizer=counting(optim.sgd(lr), counter, wrappers), epochs=10)
    assert counter[0] == traces


# ----------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------


def test_bad_arguments_raise_naming_them():
    with pytest.raises(ValueError, match="^optimizer: unknown optimizer .adamw."):
        optim.optimizer("adamw", 0.1)
    with pytest.raises(TypeError, match="momentum"):
        optim.optimizer("adam", 0.1, momentum=0.9)
    with pytest.raises(ValueError, match="learning_rate"):
        optim.optimizer("sgd", -1.0)
    with pytest.raises(ValueError, match="plateau"):
        optim.optimizer("sgd", 0.1, plateau=(0.5,))
    with pytest.raises(ValueError, match="factor"):
        optim.plateau_decay(1.0, 10)
    with pytest.raises(ValueError, match="patience"):
        optim.plateau_decay(0.5, 0)
    with pytest.raises(TypeError, match="patience"):
        optim.plateau_decay(0.5, 2.5)


def test_equal_settings_share_one_update():
    # Value semantics: equal specifications are equal and hash equal (fit's compile cache key),
    # whatever their numeric hyperparameters and plateau patience, which live in the state.
    assert optim.plateau_decay(0.9, 7).update == optim.plateau_decay(0.9, 3).update
    assert optim.plateau_decay(0.9, 7).update != optim.plateau_decay(0.5, 7).update
    a = optim.optimizer("rmsprop", 0.1, book=True, plateau=True)
    b = optim.optimizer("rmsprop", 0.3, book=True, plateau=(0.95, 7), decay=0.5)
    assert a.update == b.update and hash(a.update) == hash(b.update)
    assert optim.optimizer("rmsprop", 0.1).update != a.update
    assert optim.optimizer("rmsprop", 0.1, centered=True).update != optim.optimizer("rmsprop", 0.1).update
    assert optim.optimizer("sgd", 0.1, plateau=True).update == optim.optimizer("sgd", 0.2, plateau=(0.95, 100)).update
    assert optim.optimizer("adam", 0.1, book=True).update == optim.optimizer("adam", 0.2, book=True).update
    assert optim.optimizer("adam", 0.1, book=True).update != optim.optimizer("adam", 0.1, book=True, eps=1e-6).update


def test_structural_options_must_be_hashable():
    with pytest.raises(TypeError, match="mu_dtype: expected a number, bool, str, dtype or None"):
        optim.optimizer("adam", 0.1, mu_dtype=["float32"])


def test_learning_rate_of_multiplies_every_rate_and_plateau_scale():
    # Two injected rates (0.5 and 0.2) and the tutorial's decay, which halves after each
    # non-improving step (patience 1): after two equal losses the current scale is 0.5 and the
    # next one 0.25 (hand-computed: the second loss is the first that does not improve).
    tx = optax.chain(optim.optimizer("sgd", 0.5, plateau=(0.5, 1)), optim.optimizer("sgd", 0.2))
    params = jnp.zeros(3)
    state = tx.init(params)
    assert float(optim.learning_rate_of(state)) == pytest.approx(0.1)
    for _ in range(3):
        _, state = tx.update(jnp.ones(3), state, params, value=1.0)
    assert float(optim.learning_rate_of(state)) == pytest.approx(0.5 * 0.2 * 0.5)
    assert float(optim.learning_rate_of(state, upcoming=True)) == pytest.approx(0.5 * 0.2 * 0.25)
    assert optim.learning_rate_of(state, jnp.bfloat16).dtype == jnp.bfloat16


# ----------------------------------------------------------------------------------------------
# Low-precision params: bfloat16 and float16
# ----------------------------------------------------------------------------------------------

LOW_STEPS, LOW_LR = 6, 0.01
LOW_DTYPES = {"bfloat16": jnp.bfloat16, "float16": jnp.float16}
GRADIENT_SCALES = (1.0, 1e-3)


def _updates(tx, grads, params, plateau):
    """The updates of `tx` over a gradient sequence, in a scan (whose carry requires the state to
    keep its dtypes from step to step)."""

    def step(state, g):
        extra = {"value": jnp.float32(1.0)} if plateau else {}  # a constant loss: the decay halves every step
        updates, state = tx.update({"W": g}, state, params, **extra)
        return state, updates["W"]

    return jax.lax.scan(step, tx.init(params), grads)[1]


def _low_precision_runs(tx, plateau):
    """For each low dtype and gradient scale: the updates with params and gradients in that dtype,
    and those of float32 params fed the same (rounded) gradients. One compiled program."""

    @jax.jit
    def run(grads, start):
        out = {}
        for label, dtype in LOW_DTYPES.items():
            for scale in GRADIENT_SCALES:
                rounded = (scale * grads).astype(dtype)
                low = _updates(tx, rounded, {"W": start.astype(dtype)}, plateau)
                ref = _updates(tx, rounded.astype(jnp.float32), {"W": start}, plateau)
                out[label, scale] = (low, ref)
        return out

    rng = np.random.default_rng(0)
    return run(jnp.asarray(rng.standard_normal((LOW_STEPS, 3, 2)), jnp.float32),
               jnp.asarray(rng.standard_normal((3, 2)), jnp.float32))


@pytest.mark.parametrize(("name", "book"), [(n, b) for n in optim.OPTIMIZERS for b in (False, True)])
def test_low_precision_params_follow_the_float32_run(name, book):
    # bfloat16 used to round Adam's b2 = 0.999 to 1.0 (NaN at the first step); float16 Adam lost its
    # second moments (1 - b2) g^2 to underflow for small gradients (scale 1e-3) and its eps = 1e-8.
    # With float32 hyperparameters and states the updates are the float32 run's, rounded to dtype.
    for plateau in (None, (0.5, 1)):
        runs = _low_precision_runs(optim.optimizer(name, LOW_LR, book=book, plateau=plateau), plateau)
        for (label, scale), (low, ref) in runs.items():
            dtype = LOW_DTYPES[label]
            assert low.dtype == dtype
            low = np.asarray(low.astype(jnp.float32))
            assert np.all(np.isfinite(low)), (label, plateau, scale)
            # float16 updates of 1e-5 are subnormal there (absolute resolution 6e-8)
            atol = 1e-4 * LOW_LR * scale + float(jnp.finfo(dtype).smallest_subnormal)
            np.testing.assert_allclose(low, ref, rtol=2e-2, atol=atol,
                                       err_msg=f"{label} plateau={plateau} scale={scale}")


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bfloat16", "float16"])
def test_fit_trains_low_precision_params_with_adam(dtype):
    net = mlp([2, 4, 1], activation="sigmoid", dtype=dtype)
    _, params = net.init(jax.random.key(0))
    x, y = data.xor()
    history = fit(net, params, x.astype(dtype), y.astype(dtype), loss="mse",
                  optimizer=optim.optimizer("adam", 0.05), epochs=300).history
    losses = np.asarray(history["loss"].astype(jnp.float32))
    assert int(history["diverged_epoch"]) == -1 and np.all(np.isfinite(losses))
    assert losses[-1] < 0.1 * losses[0]

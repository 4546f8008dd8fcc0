"""The tutorial's learning-rate schedule class and training loop, in plain Python/numpy: the reference.

Nothing here uses JAX or optax. The class is the tutorial's rule, written as plainly as the tutorial
writes it; `schedule_rates` runs it in the tutorial loop's order (epoch t: forward, loss, backward and
weight update with the current rate, *then* `scheduler.step(loss)`), and `train_with_schedule` is that
loop for the tutorial's network (jaxnet.reference's numpy forward and backward).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from jaxnet import reference


class LearningRateScheduler:
    """Keep the best loss; a strictly lower loss resets the wait counter, any other loss (equal,
    higher, NaN) increments it; when it reaches `patience` the rate is multiplied by `decay_rate`
    and the counter restarts (the best loss is kept)."""

    def __init__(self, learning_rate: float, decay_rate: float = 0.95, patience: int = 100):
        self.learning_rate = learning_rate
        self.decay_rate = decay_rate
        self.patience = patience
        self.best_loss = math.inf
        self.wait = 0

    def step(self, loss: float) -> float:
        if loss < self.best_loss:
            self.best_loss = loss
            self.wait = 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.learning_rate *= self.decay_rate
                self.wait = 0
        return self.learning_rate


class ScheduleTrace(NamedTuple):
    used: list[float]  # used[t]: the rate of epoch t's weight update
    after: list[float]  # after[t]: the rate after scheduler.step(loss_t) (used from epoch t + 1)
    decays: list[tuple[int, float]]  # (epoch whose loss triggered it, new rate), as the tutorial prints


def schedule_rates(losses, learning_rate: float, decay_rate: float = 0.95, patience: int = 100) -> ScheduleTrace:
    """Feed `losses` (one per epoch) to the scheduler in the tutorial loop's order."""
    scheduler = LearningRateScheduler(learning_rate, decay_rate, patience)
    used, after, decays = [], [], []
    for epoch, loss in enumerate(losses):
        used.append(scheduler.learning_rate)  # the weight update happens before the step
        before = scheduler.learning_rate
        after.append(scheduler.step(float(loss)))
        if after[-1] != before:
            decays.append((epoch, after[-1]))
    return ScheduleTrace(used, after, decays)


def train_with_schedule(weights, biases, x, y, *, epochs, learning_rate, decay_rate, patience,
                        loss="mse", activation="sigmoid"):
    """The tutorial's full-batch loop with its schedule, in float64 numpy: per epoch forward, record
    the loss, backward (its double division by m), update with the current rate, step the schedule.

    Returns (losses, used_rates, decays)."""
    weights = [np.array(W, np.float64) for W in weights]
    biases = [np.array(b, np.float64) for b in biases]
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    scheduler = LearningRateScheduler(learning_rate, decay_rate, patience)
    losses, used, decays = [], [], []
    for epoch in range(epochs):
        acts, zs = reference.forward(weights, biases, x, activation)
        losses.append(reference.loss_value(loss, acts[-1], y))
        dWs, dbs = reference.backward(weights, acts, zs, y, loss, activation)
        rate = scheduler.learning_rate
        used.append(rate)
        for i in range(len(weights)):
            weights[i] -= rate * dWs[i]
            biases[i] -= rate * dbs[i]
        if scheduler.step(losses[-1]) != rate:
            decays.append((epoch, scheduler.learning_rate))
    return np.array(losses), np.array(used), decays

"""Learning-rate callbacks: ReduceLROnPlateau and LearningRateScheduler.

Both change `model.optimizer.learning_rate`, which the trainer keeps as an array
in the optimizer state (optax `inject_hyperparams`): no recompilation.
"""

from __future__ import annotations

import inspect
import numbers

import numpy as np

from ._monitor import Monitor
from .base import Callback


def _current_lr(model) -> float:
    return float(model.optimizer.learning_rate)


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by `factor` once `monitor` has not improved by
    more than `min_delta` for `patience` epochs, then waits `cooldown` epochs
    before counting again; never goes below `min_lr`.
    """

    _lazy_logs = True  # reads logs through the lazy view (base.Logs)

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0, **kwargs):
        super().__init__()
        if "epsilon" in kwargs:  # the Keras 2 name of min_delta
            min_delta = kwargs.pop("epsilon")
        if kwargs:
            raise TypeError(f"ReduceLROnPlateau got unexpected arguments {sorted(kwargs)}")
        if factor >= 1.0:
            raise ValueError(
                f"ReduceLROnPlateau does not support a factor >= 1.0 (got {factor}): the "
                "learning rate would not decrease."
            )
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = int(patience)
        self.verbose = verbose
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self._monitor = Monitor("ReduceLROnPlateau", monitor, mode, min_delta)
        self.mode = self._monitor.mode
        self.min_delta = self._monitor.min_delta
        self._reset()

    def _reset(self) -> None:
        self.best = None
        self.wait = 0
        self.cooldown_counter = 0

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_train_begin(self, logs=None):
        self._reset()
        self._monitor.resolve(self.model, type(self).__name__)  # see EarlyStopping

    def on_epoch_end(self, epoch, logs=None):
        self._monitor.resolve(self.model, type(self).__name__)
        lr = _current_lr(self.model)
        if logs is not None:
            logs["learning_rate"] = lr
        current = self._monitor.value(logs)
        if current is None:
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._monitor.improved(current, self.best):
            self.best = current
            self.wait = 0
            return
        if self.in_cooldown():
            return
        self.wait += 1
        if self.wait >= self.patience and lr > np.float32(self.min_lr):
            new_lr = max(lr * self.factor, self.min_lr)
            self.model.optimizer.learning_rate = new_lr
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to "
                      f"{new_lr}.")
            self.cooldown_counter = self.cooldown
            self.wait = 0

    def get_state(self) -> dict:
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def set_state(self, state: dict) -> None:
        best = state.get("best")
        self.best = None if best is None else float(best)
        self.wait = int(state.get("wait", 0))
        self.cooldown_counter = int(state.get("cooldown_counter", 0))


def _takes_lr(schedule) -> bool:
    """Whether `schedule` accepts `(epoch, lr)` (the Keras 2.x form) or only `(epoch)`."""
    try:
        params = list(inspect.signature(schedule).parameters.values())
    except (TypeError, ValueError):
        return True
    positional = [p for p in params
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return True
    return len(positional) >= 2


class LearningRateScheduler(Callback):
    """Sets the learning rate at the start of each epoch to `schedule(epoch)` or
    `schedule(epoch, lr)` (epochs count from 0, lr is the current rate)."""

    _lazy_logs = True  # reads logs through the lazy view (base.Logs)

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be callable, got "
                            f"{type(schedule).__name__}")
        self.schedule = schedule
        self.verbose = verbose
        self._with_lr = _takes_lr(schedule)

    def on_epoch_begin(self, epoch, logs=None):
        if self._with_lr:
            lr = self.schedule(epoch, _current_lr(self.model))
        else:
            lr = self.schedule(epoch)
        is_scalar = isinstance(lr, numbers.Real) or (
            np.ndim(lr) == 0 and np.issubdtype(np.asarray(lr).dtype, np.number))
        if isinstance(lr, bool) or not is_scalar:
            raise ValueError(
                f"The output of the schedule function should be a float, got {lr!r} "
                f"({type(lr).__name__})"
            )
        lr = float(lr)
        self.model.optimizer.learning_rate = lr
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _current_lr(self.model)

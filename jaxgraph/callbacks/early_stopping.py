"""EarlyStopping: stop when a monitored quantity stops improving."""

from __future__ import annotations

import numpy as np

from ._monitor import Monitor
from .base import Callback


class EarlyStopping(Callback):
    """Stops `fit` once `monitor` has not improved by more than `min_delta` for
    `patience` epochs (epochs before `start_from_epoch` are a warm-up and ignored).

    With a `baseline`, patience only resets when the value also beats the baseline.
    With `restore_best_weights`, the model ends training with the weights of its
    best epoch, whether or not training stopped early.
    """

    _lazy_logs = True  # reads logs through the lazy view (base.Logs)

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor = monitor
        self.patience = int(patience)
        self.verbose = verbose
        self.baseline = None if baseline is None else float(baseline)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)
        self._monitor = Monitor("EarlyStopping", monitor, mode, min_delta)
        self.mode = self._monitor.mode
        self.min_delta = self._monitor.min_delta
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_train_begin(self, logs=None):
        self._reset()
        # Before any step runs: a monitor whose direction is unknown fails now, not
        # after the first epoch (Keras 3 raises the same error there).
        self._monitor.resolve(self.model, type(self).__name__)

    def on_epoch_end(self, epoch, logs=None):
        self._monitor.resolve(self.model, type(self).__name__)  # a subclass skipped the above
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            # Until something improves, the first monitored epoch is the best one.
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._monitor.improved(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._monitor.improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def get_monitor_value(self, logs):
        """Keras's hook for subclasses: the monitored value, or None (with a warning)."""
        return self._monitor.value(logs)

    # State a resumed run needs (BackupAndRestore).
    def get_state(self) -> dict:
        state = {"wait": self.wait, "stopped_epoch": self.stopped_epoch, "best": self.best,
                 "best_epoch": self.best_epoch}
        if self.best_weights is not None:
            state["best_weights"] = [np.asarray(w) for w in self.best_weights]
        return state

    def set_state(self, state: dict) -> None:
        self.wait = int(state.get("wait", 0))
        self.stopped_epoch = int(state.get("stopped_epoch", 0))
        best = state.get("best")
        self.best = None if best is None else float(best)
        self.best_epoch = int(state.get("best_epoch", 0))
        weights = state.get("best_weights")
        self.best_weights = None if weights is None else [np.asarray(w) for w in weights]

"""History: the per-epoch record that `fit` returns."""

from __future__ import annotations

from .base import Callback


class History(Callback):
    """Collects every epoch's logs as floats: `history[key]` is one value per epoch.

    The trainer adds one to every `fit` and returns it (also as `model.history`).
    `history` persists across `fit` calls on the same instance, as in Keras, while
    `epoch` lists the epochs of the latest run.
    """

    _lazy_logs = True  # reads logs through the lazy view (base.Logs)

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def set_model(self, model) -> None:
        super().set_model(model)
        if model is not None:
            model.history = self

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        if self.model is not None:
            self.model.history = self

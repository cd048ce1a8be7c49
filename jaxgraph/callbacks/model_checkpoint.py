"""ModelCheckpoint: save the model (or its weights) during training."""

from __future__ import annotations

import os
import shutil
import string
import uuid

from ._monitor import Monitor
from .base import Callback


def template_fields(template: str) -> list[str]:
    """The log keys a `str.format` template names (`{val_loss:.2f}` -> `val_loss`)."""
    fields = []
    for _, field, _, _ in string.Formatter().parse(template):
        if field:
            root = field.split(".", 1)[0].split("[", 1)[0]
            if root and root not in fields:
                fields.append(root)
    return fields


def format_filepath(template: str, epoch: int, batch: int | None, logs) -> str:
    """Fill a filepath template; only the keys it names are read from the logs."""
    logs = logs or {}
    values = {}
    for key in template_fields(template):
        if key == "epoch":
            values[key] = epoch + 1
        elif key == "batch":
            values[key] = None if batch is None else batch + 1
        elif key in logs:
            values[key] = logs[key]
        else:
            raise KeyError(
                f"Failed to format the checkpoint filepath {template!r}: {key!r} is not in the "
                f"logs. Available keys: {sorted(['epoch', 'batch', *logs.keys()])}"
            )
    return template.format(**values)


def atomic_write(path: str, write) -> None:
    """Call `write(tmp)` on a sibling temporary path, then rename it to `path`.

    The temporary name keeps the full basename at its end, so suffix-based format
    detection (`.h5`, `.keras`, `.weights.h5`) sees the same suffix. If `write`
    raises, whatever it left behind is removed and `path` is untouched.
    """
    directory, base = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex[:8]}-{base}")
    try:
        write(tmp)
        if not os.path.exists(tmp):
            raise FileNotFoundError(f"saving to {tmp!r} produced no file")
        if os.path.isdir(tmp) and os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
        raise


class ModelCheckpoint(Callback):
    """Saves the model every epoch (or every `save_freq` batches) to `filepath`.

    `filepath` may name any log key and `epoch`/`batch` as format fields, e.g.
    `'w.{epoch:02d}-{val_loss:.2f}.h5'`; any suffix is accepted. With
    `save_best_only`, only saves when `monitor` improves on the best value so far
    (starting from `initial_value_threshold` if given); when `monitor` is not in the
    logs it warns and saves, as Keras 3 does. Each write goes to a
    temporary file renamed into place, so a crash never leaves a half-written file.
    """

    _lazy_logs = True  # reads logs through the lazy view (base.Logs)

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq > 0):
            raise ValueError(
                f"ModelCheckpoint: save_freq must be 'epoch' or a positive integer (a number "
                f"of batches), got {save_freq!r}"
            )
        self.save_freq = save_freq
        self._monitor = Monitor("ModelCheckpoint", monitor, mode)
        self.mode = self._monitor.mode
        self.initial_value_threshold = initial_value_threshold
        self.best = None if initial_value_threshold is None else float(initial_value_threshold)
        self._current_epoch = 0
        self._batches_since_save = 0

    def wants_batches(self) -> bool:
        """Batch hooks are needed only for `save_freq=<int>`."""
        return self.save_freq != "epoch"

    def on_train_begin(self, logs=None):
        # As Keras 3, even without save_best_only: see EarlyStopping.
        self._monitor.resolve(self.model, type(self).__name__)
        self._batches_since_save = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches_since_save += 1
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save(self._current_epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._monitor.resolve(self.model, type(self).__name__)  # a subclass skipped the above
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def _save(self, epoch: int, batch: int | None, logs) -> None:
        filepath = format_filepath(self.filepath, epoch, batch, logs)
        if self.save_best_only:
            # Keras 3: without the monitored value there is no "best" to keep, so the
            # model is saved anyway (with a warning), as if save_best_only were False.
            current = self._monitor.value(logs, what="can save best model only with")
            if current is not None:
                previous = self.best
                best_text = "None" if previous is None else f"{previous:.5f}"
                if not self._monitor.improved(current, previous):
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from "
                              f"{best_text}")
                    return
                self.best = current
                if self.verbose > 0:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {best_text} "
                          f"to {current:.5f}, saving model to {filepath}")
        elif self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: saving model to {filepath}")
        if self.save_weights_only:
            atomic_write(filepath, lambda p: self.model.save_weights(p))
        else:
            atomic_write(filepath, lambda p: self.model.save(p))
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: finished saving model to {filepath}")

    def get_state(self) -> dict:
        return {"best": self.best}

    def set_state(self, state: dict) -> None:
        best = state.get("best")
        self.best = None if best is None else float(best)

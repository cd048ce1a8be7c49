"""The callback base class and the hook runner.

Only hooks that some callback overrides are ever called: the trainer asks the
runner which hook families are live and compiles its loop accordingly (several
steps per dispatch when nobody listens to batches). Logs hold device arrays and
become Python floats only when a callback reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

HOOKS = (
    "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
    "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
    "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
    "on_predict_batch_begin", "on_predict_batch_end",
)


class Logs(Mapping):
    """A read-only view of metric values that syncs device scalars on first read."""

    def __init__(self, values: Mapping[str, Any] | None = None):
        self._raw = dict(values or {})
        self._cache: dict[str, float] = {}

    def __getitem__(self, key):
        if key not in self._cache:
            if key not in self._raw:
                raise KeyError(key)
            # One device->host transfer for everything not yet read.
            pending = {k: v for k, v in self._raw.items() if k not in self._cache}
            for k, v in jax.device_get(pending).items():
                self._cache[k] = v if isinstance(v, str) else float(np.asarray(v))
        return self._cache[key]

    def __iter__(self):
        return iter(self._raw)

    def __len__(self):
        return len(self._raw)

    def __setitem__(self, key, value):  # Keras callbacks may add entries (e.g. 'lr')
        self._raw[key] = value
        self._cache.pop(key, None)

    def pop(self, key, *default):
        self._cache.pop(key, None)
        return self._raw.pop(key, *default)

    def update(self, other):
        for k, v in dict(other).items():
            self[k] = v

    def copy(self) -> dict:
        return dict(self.items())

    def __repr__(self):
        return f"Logs({dict(self.items())})"


class Callback:
    """Base class: override the hooks you need; the others cost nothing."""

    def __init__(self):
        self.model = None
        self.params: dict = {}
        self.validation_data = None
        self._chief_worker_only = None

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    # Keras 2 names: on_batch_* alias the training ones.
    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs)

    def on_test_begin(self, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass

    def on_test_batch_begin(self, batch, logs=None):
        pass

    def on_test_batch_end(self, batch, logs=None):
        pass

    def on_predict_begin(self, logs=None):
        pass

    def on_predict_end(self, logs=None):
        pass

    def on_predict_batch_begin(self, batch, logs=None):
        pass

    def on_predict_batch_end(self, batch, logs=None):
        pass

    # Training state a callback may need to save and restore (BackupAndRestore).
    def get_state(self) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        pass


def overrides(callback: Callback, hook: str) -> bool:
    """Whether `callback` does something in `hook` (directly or via a Keras 2 alias)."""
    cls = type(callback)
    if getattr(cls, hook) is not getattr(Callback, hook):
        return True
    alias = {"on_train_batch_begin": "on_batch_begin", "on_train_batch_end": "on_batch_end"}
    if hook in alias:
        return getattr(cls, alias[hook]) is not getattr(Callback, alias[hook])
    return False


class CallbackList:
    """Runs the hooks of several callbacks; knows which hooks anyone listens to.

    `before_hook` lets the trainer publish its current variables to the model just
    before a callback looks at them, and `after_hook` lets it pick up any edits a
    callback made, so callbacks never see stale weights nor have edits ignored.
    """

    def __init__(self, callbacks=None, model=None, params=None, before_hook=None,
                 after_hook=None):
        self.callbacks: list[Callback] = list(callbacks or [])
        self.before_hook = before_hook
        self.after_hook = after_hook
        self.live = {h: [c for c in self.callbacks if overrides(c, h)] for h in HOOKS}
        if model is not None:
            for c in self.callbacks:
                c.set_model(model)
        if params is not None:
            for c in self.callbacks:
                c.set_params(params)

    def wants(self, hook: str) -> bool:
        return bool(self.live[hook])

    @property
    def wants_train_batches(self) -> bool:
        return self.wants("on_train_batch_begin") or self.wants("on_train_batch_end")

    def call(self, hook: str, *args) -> None:
        targets = self.live[hook]
        if not targets:
            return
        if self.before_hook is not None:
            self.before_hook()
        for c in targets:
            getattr(c, hook)(*args)
        if self.after_hook is not None:
            self.after_hook()

    def __iter__(self):
        return iter(self.callbacks)

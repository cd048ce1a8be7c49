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


def _host_value(v):
    """Keras's `pythonify_logs`: scalars become Python floats, the rest stays as is."""
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float, np.generic)) or (isinstance(v, np.ndarray) and v.ndim == 0):
        try:
            return float(v)
        except (TypeError, ValueError):
            return v
    return v


class Logs(Mapping):
    """A view of metric values that syncs device scalars on first read.

    jaxgraph's own callbacks (classes marked `_lazy_logs`) get this view, so a hook
    that reads nothing costs no device->host sync. Every other callback gets a plain
    `dict` of Python floats (`as_dict`), and what it changes there comes back here
    (`merge`), so the callbacks after it and History see its edits.
    """

    def __init__(self, values: Mapping[str, Any] | None = None):
        self._raw = dict(values or {})
        self._cache: dict[str, Any] = {}

    def _read_pending(self) -> None:
        # One device->host transfer for everything not yet read.
        pending = {k: v for k, v in self._raw.items() if k not in self._cache}
        if pending:
            for k, v in jax.device_get(pending).items():
                self._cache[k] = _host_value(v)

    def __getitem__(self, key):
        if key not in self._cache:
            if key not in self._raw:
                raise KeyError(key)
            self._read_pending()
        return self._cache[key]

    def __iter__(self):
        return iter(self._raw)

    def __len__(self):
        return len(self._raw)

    def __contains__(self, key):
        return key in self._raw

    def __setitem__(self, key, value):  # Keras callbacks may add entries (e.g. 'lr')
        self._raw[key] = value
        if isinstance(value, jax.Array):
            self._cache.pop(key, None)  # read when (if ever) someone looks
        else:
            self._cache[key] = _host_value(value)

    def __delitem__(self, key):
        del self._raw[key]
        self._cache.pop(key, None)

    def pop(self, key, *default):
        self._cache.pop(key, None)
        return self._raw.pop(key, *default)

    def update(self, other):
        for k, v in dict(other).items():
            self[k] = v

    def as_dict(self) -> dict:
        """A plain dict of host values (Python floats for scalars), in key order."""
        self._read_pending()
        return {k: self._cache[k] for k in self._raw}

    copy = as_dict

    def sync_to(self, view: dict) -> None:
        """Make `view` (an earlier `as_dict`) equal to this again, in place."""
        for k in [k for k in view if k not in self._raw]:
            del view[k]
        self._read_pending()
        for k in self._raw:
            v = self._cache[k]
            if k not in view or view[k] is not v:
                view[k] = v

    def merge(self, view: dict) -> None:
        """Take in a callback's edits of `view`: keys added, changed or deleted."""
        for k in [k for k in self._raw if k not in view]:
            del self[k]
        for k, v in view.items():
            if k not in self._cache or self._cache[k] is not v:
                self._raw[k] = v
                self._cache[k] = v
        if list(self._raw) != list(view):  # keys deleted and added again: view's order
            self._raw = {k: self._raw[k] for k in view}

    def __repr__(self):
        return f"Logs({self.as_dict()})"


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


_ALIASES = {"on_train_batch_begin": "on_batch_begin", "on_train_batch_end": "on_batch_end"}


def overrides(callback: Callback, hook: str) -> bool:
    """Whether `callback` does something in `hook` (directly or via a Keras 2 alias)."""
    cls = type(callback)
    if getattr(cls, hook) is not getattr(Callback, hook):
        return True
    if hook in _ALIASES:
        return getattr(cls, _ALIASES[hook]) is not getattr(Callback, _ALIASES[hook])
    return False


def reads_logs_lazily(callback: Callback, hook: str) -> bool:
    """Whether the code that runs for `hook` is jaxgraph's own and takes a `Logs` view.

    The class that defines the hook (or its Keras 2 alias) must say so itself with
    `_lazy_logs = True`: a user's subclass of a built-in that overrides the hook, a
    LambdaCallback, or a function set on the instance gets a plain dict.
    """
    if hook in vars(callback) or _ALIASES.get(hook, hook) in vars(callback):
        return False
    cls = type(callback)
    name = hook
    if getattr(cls, hook) is getattr(Callback, hook) and hook in _ALIASES:
        name = _ALIASES[hook]
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass).get("_lazy_logs", False) is True
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
        logs = args[-1] if args and isinstance(args[-1], Logs) else None
        view = None  # the plain dict that the user callbacks of this call share
        for c in targets:
            if logs is None or reads_logs_lazily(c, hook):
                getattr(c, hook)(*args)
                continue
            # A user callback gets a real dict of Python floats (one sync, as in Keras)
            # and its edits flow back, to the callbacks after it and to History.
            if view is None:
                view = logs.as_dict()
            else:
                logs.sync_to(view)  # edits of the lazy callbacks since the last one
            getattr(c, hook)(*args[:-1], view)
            logs.merge(view)
        if self.after_hook is not None:
            self.after_hook()

    def __iter__(self):
        return iter(self.callbacks)

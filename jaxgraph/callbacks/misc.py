"""Small callbacks: TerminateOnNaN and LambdaCallback."""

from __future__ import annotations

import math

from .base import HOOKS, Callback


class TerminateOnNaN(Callback):
    """Stops training as soon as a batch's loss is NaN or infinite.

    Its job needs every batch's loss, so it is one of the few callbacks that makes
    the trainer sync once per step. With `raise_error=True` it raises instead of
    stopping gracefully (so no `on_train_end` cleanup runs, e.g. a backup is kept).
    """

    _lazy_logs = True  # reads logs through the lazy view (base.Logs)

    def __init__(self, raise_error: bool = False):
        super().__init__()
        self.raise_error = bool(raise_error)

    def on_batch_end(self, batch, logs=None):
        if not logs or "loss" not in logs:
            return
        loss = float(logs["loss"])
        if math.isfinite(loss):
            return
        if self.raise_error:
            raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. "
                               f"Loss value: {loss}. Terminating training immediately.")
        print(f"Batch {batch}: Invalid loss, terminating training")
        self.model.stop_training = True


_LAMBDA_HOOKS = HOOKS + ("on_batch_begin", "on_batch_end")


def _hook_method(name: str, fn):
    def hook(self, *args):
        return fn(*args)

    hook.__name__ = name
    hook.__qualname__ = f"LambdaCallback.{name}"
    return hook


class LambdaCallback(Callback):
    """A callback made of plain functions, e.g.
    `LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch))`.

    Epoch hooks take `(epoch, logs)`, batch hooks `(batch, logs)`, the others
    `(logs)`. Each instance is built as its own subclass that defines only the hooks
    given, so the trainer still skips every hook nobody asked for (a lone
    `on_epoch_end` keeps the fast multi-step loop).
    """

    def __new__(cls, **hooks):
        given = {name: fn for name, fn in hooks.items() if fn is not None}
        unknown = sorted(set(given) - set(_LAMBDA_HOOKS))
        if unknown:
            raise TypeError(
                f"LambdaCallback got unknown hooks {unknown}; valid hooks are "
                f"{sorted(_LAMBDA_HOOKS)}"
            )
        for name, fn in given.items():
            if not callable(fn):
                raise TypeError(f"LambdaCallback: {name} must be callable, got "
                                f"{type(fn).__name__}")
        methods = {name: _hook_method(name, fn) for name, fn in given.items()}
        methods["__module__"] = cls.__module__
        methods["__doc__"] = cls.__doc__
        subclass = type(cls.__name__, (cls,), methods)
        return super().__new__(subclass)

    def __init__(self, **hooks):
        super().__init__()
        self.hooks = {name: fn for name, fn in hooks.items() if fn is not None}

    def __reduce__(self):
        return (_rebuild_lambda_callback, (self.hooks,))


def _rebuild_lambda_callback(hooks):
    return LambdaCallback(**hooks)

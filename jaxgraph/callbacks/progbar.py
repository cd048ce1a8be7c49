"""ProgbarLogger: the progress display that `fit`, `evaluate` and `predict` add at
verbose=1 and 2.

A live bar needs per-batch values, and every per-batch read is a device sync
that also stops the trainer from running several steps per dispatch. So the bar
listens to batches only when someone can watch it (verbose=1 on a terminal or
a notebook) and says so through `wants_batches()`; the loops then call its batch
hooks once per dispatched chunk of several batches, and it reads their logs at
most every `refresh_interval` seconds. Otherwise it prints one line at the end:
per epoch in `fit`, once for `evaluate` and `predict`, in Keras's format.
"""

from __future__ import annotations

import shutil
import sys
import time

import numpy as np
from tqdm import tqdm

from .base import Callback

# A fixed-width bar: while running, the line is trimmed to the terminal; at the end
# of an epoch it is redrawn in full with every metric.
_BAR_FORMAT = "{desc} {n_fmt}/{total_fmt} [{bar:30}] {elapsed}<{remaining}, {rate_fmt}{postfix}"


def _interactive() -> bool:
    """Whether stdout is watched live (a terminal or a Jupyter kernel)."""
    try:
        if sys.stdout.isatty():
            return True
    except (AttributeError, ValueError):
        return False
    return "ipykernel" in sys.modules


def format_value(value) -> str:
    """Keras's verbose=2 rule: 4 decimals above 1e-3, else scientific (zero and
    negative values included, as Keras's line prints them)."""
    if isinstance(value, str):
        return value
    value = float(value)
    return f"{value:.4f}" if value > 1e-3 else f"{value:.4e}"


def format_logs(logs, keys=None, fmt=format_value) -> str:
    keys = list(logs.keys()) if keys is None else keys
    return " - ".join(f"{k}: {fmt(logs[k])}" for k in keys if k in logs)


def _per_step(seconds: float) -> str:
    """Keras's Progbar unit: `2s/step`, `3ms/step` or `450us/step`."""
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


def _format_time(seconds: float, steps) -> str:
    text = f"{seconds:.0f}s"
    if steps:
        text += f" - {_per_step(seconds / steps)}"
    return text


def summary_line(steps, elapsed: float, logs) -> str:
    """Keras's verbose=2 line: `5/5 - 2s - 3ms/step - loss: 0.6938 - ...`."""
    line = (f"{steps}/{steps} - " if steps else "") + _format_time(elapsed, steps)
    text = format_logs(logs or {})
    return line + (f" - {text}" if text else "")


def _bar_value(value) -> str:
    """Keras's bar (verbose=1) rule: 4 decimals above 1e-3 in magnitude, else scientific."""
    if isinstance(value, str):
        return value
    value = float(np.mean(value))
    return f"{value:.4f}" if abs(value) > 1e-3 else f"{value:.4e}"


def bar_line(steps, elapsed: float, logs, width: int = 20) -> str:
    """Keras's finished bar: `4/4 ━━━━━━━━━━━━━━━━━━━━ 0s 3ms/step - loss: 0.6931`."""
    head = f"{steps}/{steps} {'━' * width}" if steps else f"{0:7d}/Unknown"
    line = f"{head} {elapsed:.0f}s {_per_step(elapsed / steps if steps else 0.0)}"
    for key, value in (logs or {}).items():
        line += f" - {key}: {_bar_value(value)}"
    return line


class ProgbarLogger(Callback):
    """Prints metrics to stdout: a live bar with ETA (verbose=1 on a terminal), or one
    line per epoch (verbose=2, or verbose=1 when stdout is a file or a pipe).
    `evaluate` and `predict` end with Keras's line: its finished bar at verbose=1,
    `N/N - Xs - Yms/step - ...` at verbose=2.

    Counts steps (as Keras 3 does); the metrics shown are the trainer's running
    averages. The live bar reads batch logs at most every `refresh_interval` seconds.
    """

    _lazy_logs = True  # reads logs through the lazy view (base.Logs)

    def __init__(self, refresh_interval: float = 0.1):
        super().__init__()
        self.refresh_interval = float(refresh_interval)
        self.verbose = 1
        self.epochs = 1
        self.target = None
        self._live = False
        self._bar = None
        self._in_fit = False
        self._epoch_start = 0.0
        self._last_read = 0.0
        self._seen = 0

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else int(verbose or 0)
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")
        self._live = self.verbose == 1 and _interactive()

    def wants_batches(self) -> bool:
        """Whether the trainer should call this callback's batch hooks at all: for the
        live bar, or to count the batches of data whose length is unknown."""
        return self._live or bool(self.verbose and self.target is None)

    # ------------------------------------------------------------------ the bar

    def _open(self, desc: str, total) -> None:
        self._close()
        self._seen = 0
        self._epoch_start = time.perf_counter()
        self._last_read = 0.0
        if self._live:
            # A pseudo-terminal may report a 0x0 size, which would hide the bar.
            size = shutil.get_terminal_size((100, 24))
            self._bar = tqdm(total=total, desc=desc, unit="step", file=sys.stdout,
                             ncols=size.columns, nrows=size.lines, leave=True,
                             mininterval=self.refresh_interval,
                             bar_format=_BAR_FORMAT if desc else _BAR_FORMAT[len("{desc} "):])

    def _advance(self, batch: int, logs) -> None:
        step = batch + 1
        self._seen = max(self._seen, step)
        if self._bar is None:
            return
        self._bar.update(step - self._bar.n)
        now = time.perf_counter()
        if logs and now - self._last_read >= self.refresh_interval:
            self._last_read = now
            self._bar.set_postfix_str(format_logs(logs, fmt=_bar_value), refresh=False)

    def _finish(self, logs, steps) -> float:
        """Close the bar with the final values, or print the one-line summary."""
        elapsed = time.perf_counter() - self._epoch_start
        if self._bar is not None:
            if steps is not None and self._bar.n < steps:
                self._bar.update(steps - self._bar.n)
            self._bar.set_postfix_str(format_logs(logs or {}, fmt=_bar_value), refresh=False)
            self._bar.ncols = None  # the final line shows every metric, untrimmed
            self._close()
        return elapsed

    def _close(self, leave: bool = True) -> None:
        if self._bar is not None:
            self._bar.leave = leave
            self._bar.close()
            self._bar = None

    # ------------------------------------------------------------------ fit

    def on_train_begin(self, logs=None):
        self._in_fit = True

    def on_epoch_begin(self, epoch, logs=None):
        if self.verbose:
            self._open(f"Epoch {epoch + 1}/{self.epochs}", self.target)

    def on_train_batch_end(self, batch, logs=None):
        self._advance(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if not self.verbose:
            return
        steps = self.target or self._seen or None
        elapsed = self._finish(logs, steps)
        if not self._live:
            # Keras's verbose=2: the epoch's title, then its summary on a line of its own.
            print(f"Epoch {epoch + 1}/{self.epochs}", flush=True)
            print(summary_line(steps, elapsed, logs), flush=True)

    def on_train_end(self, logs=None):
        self._close()
        self._in_fit = False

    # ------------------------------------------------------------------ evaluate / predict

    def on_test_begin(self, logs=None):
        if self.verbose and not self._in_fit:
            self._open("", self.target)

    def on_test_batch_end(self, batch, logs=None):
        if not self._in_fit:
            self._advance(batch, logs)

    def on_test_end(self, logs=None):
        if self.verbose and not self._in_fit:
            self._report(logs)

    def on_predict_begin(self, logs=None):
        if self.verbose:
            self._open("", self.target)

    def on_predict_batch_end(self, batch, logs=None):
        self._advance(batch, None)

    def on_predict_end(self, logs=None):
        if self.verbose:
            self._report(None)

    def _report(self, logs) -> None:
        """Keras's last line of evaluate / predict; the live bar makes way for it."""
        steps = self.target or self._seen or None
        elapsed = time.perf_counter() - self._epoch_start
        self._close(leave=False)
        if self.verbose == 1:
            print(bar_line(steps, elapsed, logs), flush=True)
        else:
            print(summary_line(steps, elapsed, logs), flush=True)

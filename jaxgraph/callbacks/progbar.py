"""ProgbarLogger: the progress display that `fit`, `evaluate` and `predict` add at
verbose=1 and 2, written character for character as Keras 3's (its
`keras.utils.Progbar` driven by its `ProgbarLogger`): colours, `\\b`/`\\r` redraws,
bar width, ETA, time per step, metric order and the `Unknown` count.

A live bar needs per-batch values, and every per-batch read is a device sync that
also stops the trainer from running several steps per dispatch. So the bar listens
to batches only when someone can watch it move (verbose=1 on a terminal, in a
notebook or in PyCharm) and says so through `wants_batches()`; the loops then call
its batch hooks once per dispatched chunk of several batches, and it reads their
logs only for the frames it draws (at most every `refresh_interval` seconds).
Otherwise it draws each epoch's last frame only (and evaluate's, predict's), in
the same bytes as Keras's last frame.
"""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np

from .base import Callback


def _dynamic_display() -> bool:
    """Keras's rule for redrawing a frame in place (`\\b`s and `\\r`) rather than on a
    new line. Its `posix` clause makes every stdout on Linux and macOS count, pipes
    and files included."""
    try:
        tty = sys.stdout.isatty()
    except (AttributeError, ValueError):
        tty = False
    return (tty or "ipykernel" in sys.modules or "posix" in sys.modules
            or "PYCHARM_HOSTED" in os.environ)


def _watched() -> bool:
    """Whether someone can watch the bar move: Keras's rule without its `posix` clause,
    so that output to a file or a pipe costs no per-chunk dispatch nor sync."""
    try:
        tty = sys.stdout.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty or "ipykernel" in sys.modules or "PYCHARM_HOSTED" in os.environ


def _write(message: str) -> None:
    """Keras's `io_utils.print_msg`: a stdout that cannot encode `━` gets `=`."""
    try:
        sys.stdout.write(message)
    except UnicodeEncodeError:
        encoding = sys.stdout.encoding or "utf-8"
        message = message.replace("━", "=").encode(encoding, errors="ignore").decode(encoding)
        sys.stdout.write(message)
    sys.stdout.flush()


def format_value(value) -> str:
    """Keras's verbose=2 rule: 4 decimals above 1e-3, else scientific (zero and
    negative values included, as Keras's line prints them)."""
    if isinstance(value, str):
        return value
    value = float(np.mean(value))
    return f"{value:.4f}" if value > 1e-3 else f"{value:.4e}"


def _bar_value(value) -> str:
    """Keras's bar (verbose=1) rule: 4 decimals above 1e-3 in magnitude, else scientific."""
    if isinstance(value, str):
        return value
    value = float(np.mean(value))
    return f"{value:.4f}" if abs(value) > 1e-3 else f"{value:.4e}"


def _format_time(time_per_unit: float, unit_name: str) -> str:
    """Keras's unit: ` 2s/step`, ` 3ms/step` or ` 450us/step`."""
    if time_per_unit >= 1 or time_per_unit == 0:
        return f" {time_per_unit:.0f}s/{unit_name}"
    if time_per_unit >= 1e-3:
        return f" {time_per_unit * 1000.0:.0f}ms/{unit_name}"
    return f" {time_per_unit * 1000000.0:.0f}us/{unit_name}"


def _format_eta(eta: float) -> str:
    """Keras's ETA: `1:02:03`, `2:03` or `45s` (whole seconds, truncated)."""
    if eta > 3600:
        return f"{int(eta // 3600)}:{int((eta % 3600) // 60):02d}:{int(eta % 60):02d}"
    if eta > 60:
        return f"{int(eta // 60)}:{int(eta % 60):02d}"
    return f"{int(eta)}s"


class Progbar:
    """Keras's `keras.utils.Progbar` as its ProgbarLogger drives it (every metric shown
    as logged), taking logs as mappings and reading them only for the frames it draws,
    so that a lazy `Logs` view syncs with the device at most once per frame.

    It reads the clock as often as Keras's does (once when made, once per update), so
    the same clock gives the same bytes.
    """

    def __init__(self, target, width=20, verbose=1, interval=0.05, unit_name="step"):
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        self._dynamic_display = _dynamic_display()
        self._seen_so_far = 0
        self._sources = {}  # metric name -> the logs holding its latest value, in order
        self._start = time.time()
        self._last_update = 0
        self._time_after_first_step = None
        self._prev_total_width = 0

    def _values(self) -> dict:
        return {k: logs[k] for k, logs in self._sources.items()}

    def update(self, current, logs=None, finalize=None):
        """Keras's `Progbar.update`, with `logs` a mapping of the latest values."""
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        for k in logs or {}:
            self._sources[k] = logs
        self._seen_so_far = current
        # The last frame's values first: its time then counts the device's work.
        values = self._values() if finalize and self.verbose else None
        now = time.time()
        time_per_unit = self._estimate_step_duration(current, now)

        if self.verbose == 1:
            if now - self._last_update < self.interval and not finalize:
                return
            if values is None:
                values = self._values()
            message = ("\b" * self._prev_total_width + "\r") if self._dynamic_display else "\n"
            special_char_len = 0
            if self.target is not None and self.target > 0:
                numdigits = int(math.log10(self.target)) + 1
                bar = f"\x1b[1m{int(current):{numdigits}d}/{int(self.target)}\x1b[0m "
                special_char_len += 8
                prog_width = int(self.width * (float(current) / self.target))
                if prog_width > 0:
                    bar += f"\33[32m{'━' * prog_width}\x1b[0m"
                    special_char_len += 9
                bar += f"\33[37m{'━' * (self.width - prog_width)}\x1b[0m"
                special_char_len += 9
            else:
                bar = f"{int(current):7d}/Unknown"
            message += bar

            if self.target is not None and self.target > 0 and not finalize:
                info = f" \x1b[1m{_format_eta(time_per_unit * (self.target - current))}\x1b[0m"
            else:
                info = f" \x1b[1m{now - self._start:.0f}s\x1b[0m"
            special_char_len += 8
            info += _format_time(time_per_unit, self.unit_name)
            for k, value in values.items():
                info += f" - {k}: {_bar_value(value)}"
            message += info

            total_width = len(bar) + len(info) - special_char_len
            if self._prev_total_width > total_width:
                message += " " * (self._prev_total_width - total_width)
            if finalize:
                message += "\n"
            _write(message)
            self._prev_total_width = total_width

        elif self.verbose == 2:
            if finalize and self.target is not None and self.target > 0:
                numdigits = int(math.log10(self.target)) + 1
                count = f"{int(current):{numdigits}d}/{int(self.target)}"
                info = f"{count} - {now - self._start:.0f}s"
                info += f" -{_format_time(time_per_unit, self.unit_name)}"
                for k, value in values.items():
                    info += f" - {k}: {format_value(value)}"
                _write(info + "\n")

        self._last_update = now

    def _estimate_step_duration(self, current, now) -> float:
        """Keras's estimate: past the first step, the first one (compilation) is left out."""
        if not current:
            return 0
        if self._time_after_first_step is not None and current > 1:
            time_per_unit = (now - self._time_after_first_step) / (current - 1)
        else:
            time_per_unit = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return time_per_unit


class ProgbarLogger(Callback):
    """Prints metrics to stdout as Keras 3's ProgbarLogger does: per epoch of `fit`
    (`Epoch i/n` when there are several), and for `evaluate` and `predict`, a bar at
    verbose=1, `N/N - Xs - Yms/step - ...` at verbose=2.

    Counts steps (as Keras 3 does); the metrics shown are the trainer's running
    averages. The bar moves only where someone watches it (see `wants_batches`); it
    draws a frame at most every `refresh_interval` seconds (Keras's Progbar interval).
    """

    _lazy_logs = True  # reads logs through the lazy view (base.Logs)

    def __init__(self, refresh_interval: float = 0.05):
        super().__init__()
        self.refresh_interval = float(refresh_interval)
        self.verbose = 1
        self.epochs = 1
        self.target = None
        self._seen = 0
        self._progbar = None
        self._live = False
        self._in_fit = False

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else int(verbose or 0)
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")
        self._live = self.verbose == 1 and _watched()

    def wants_batches(self) -> bool:
        """Whether the trainer should call this callback's batch hooks at all: for the
        live bar, or to count the batches of data whose length is unknown."""
        return self._live or bool(self.verbose and self.target is None)

    def _reset(self) -> None:
        self._seen = 0
        self._progbar = Progbar(self.target, verbose=self.verbose,
                               interval=self.refresh_interval)

    def _update(self, batch, logs) -> None:
        self._seen = batch + 1  # one-indexed; a chunk's hook gets its last batch
        if self._live and self._progbar is not None:
            self._progbar.update(self._seen, logs, finalize=False)

    def _finalize(self, logs) -> None:
        if self._progbar is None:
            self._reset()
        if self.target is None:  # Keras: the count of the first epoch sizes the next ones
            self.target = self._seen
            self._progbar.target = self.target
        self._progbar.update(self.target, logs, finalize=True)
        self._progbar = None

    # ------------------------------------------------------------------ fit

    def on_train_begin(self, logs=None):
        self._in_fit = True  # validation inside fit prints nothing (as in Keras)

    def on_epoch_begin(self, epoch, logs=None):
        self._reset()
        if self.verbose and self.epochs > 1:
            _write(f"Epoch {epoch + 1}/{self.epochs}\n")

    def on_train_batch_end(self, batch, logs=None):
        self._update(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._finalize(logs)

    def on_train_end(self, logs=None):
        self._in_fit = False

    # ------------------------------------------------------------------ evaluate / predict

    def on_test_begin(self, logs=None):
        if not self._in_fit:
            self._reset()

    def on_test_batch_end(self, batch, logs=None):
        if not self._in_fit:
            self._update(batch, logs)

    def on_test_end(self, logs=None):
        if not self._in_fit:
            self._finalize(logs)

    def on_predict_begin(self, logs=None):
        self._reset()

    def on_predict_batch_end(self, batch, logs=None):
        self._update(batch, None)  # Keras shows no predictions

    def on_predict_end(self, logs=None):
        self._finalize(None)

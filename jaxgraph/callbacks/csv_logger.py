"""CSVLogger: one row of epoch results per epoch, in a CSV file."""

from __future__ import annotations

import collections.abc
import csv
import os

from .base import Callback


def _cell(value):
    if isinstance(value, str):
        return value
    if isinstance(value, collections.abc.Iterable):
        return f"\"[{', '.join(str(v) for v in value)}]\""
    return value


class CSVLogger(Callback):
    """Streams epoch results to `filename` (columns: `epoch` then the sorted log keys).

    The columns are fixed by the first epoch logged (or, with `append=True`, by the
    existing file's header); if that epoch has no validation values, a `val_` column
    is added for each key, as Keras does. A key missing in an epoch (validation that
    did not run) is written as `NA`.
    """

    _lazy_logs = True  # reads logs through the lazy view (base.Logs)

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = bool(append)
        self.keys = None
        self.writer = None
        self.csv_file = None
        self._write_header = True

    def on_train_begin(self, logs=None):
        self.keys = None
        self._write_header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename, newline="") as f:
                header = f.readline().rstrip("\r\n")
            if header:
                self._write_header = False
                columns = header.split(self.sep)
                if columns and columns[0] == "epoch":
                    self.keys = columns[1:]
        directory = os.path.dirname(os.path.abspath(self.filename))
        os.makedirs(directory, exist_ok=True)
        self.csv_file = open(self.filename, "a" if self.append else "w", newline="")
        self.writer = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs.keys())
            # Keras: a first epoch without validation (validation_freq > 1) still makes
            # room for the validation columns of the epochs that have it.
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys += [f"val_{k}" for k in self.keys]
        if self.writer is None:
            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch", *self.keys],
                                         delimiter=self.sep)
            if self._write_header:
                self.writer.writeheader()
        row = {"epoch": epoch}
        for key in self.keys:
            row[key] = _cell(logs[key]) if key in logs else "NA"
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file is not None:
            self.csv_file.close()
        self.csv_file = None
        self.writer = None

"""`timeseries_dataset_from_array`: sliding windows over an array as `(x, y)` batches.

Keras returns a `tf.data.Dataset`; here the result is a plain Python iterable that
`fit`, `evaluate` and `predict` take directly (`len()` is the number of batches).
Windows, targets, batching and the argument checks (with their messages) follow
Keras 3 (`keras/src/utils/timeseries_dataset_utils.py`). Each batch is gathered
with one NumPy fancy index when it is drawn, so a long series is never copied
whole nor expanded into all its overlapping windows at once.

Shuffling differs on purpose: Keras permutes the window starts once with NumPy and
then shuffles through a tf.data buffer of `8 * batch_size` windows (TensorFlow's
RNG, reshuffled every pass). Here every pass is a full permutation of the windows,
deterministic in `(seed, pass)`: the same windows, in an order TensorFlow's RNG
could not reproduce anyway.
"""

from __future__ import annotations

import math

import numpy as np

from .dataset import BatchDataset, epoch_order


class TimeseriesDataset(BatchDataset):
    """Batches of windows `data[p], data[p + r], ...` (and `targets[p]`) drawn lazily.

    Attributes: `start_positions` (each window's first index into `data`, in
    chronological order), `sequence_length`, `sampling_rate`, `batch_size`.
    """

    def __init__(self, data, targets, start_positions, sequence_length, sampling_rate,
                 batch_size, shuffle, seed):
        self.data = data
        self.targets = targets
        self.start_positions = start_positions
        self.sequence_length = int(sequence_length)
        self.sampling_rate = int(sampling_rate)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self._offsets = np.arange(self.sequence_length) * self.sampling_rate
        self._epoch = 0

    @property
    def num_samples(self) -> int:
        return len(self.start_positions)

    def __len__(self):
        n = self.num_samples
        return n if self.batch_size is None else math.ceil(n / self.batch_size)

    def __iter__(self):
        order = epoch_order(self.num_samples, self.shuffle, self.seed, self._epoch)
        if self.shuffle:
            self._epoch += 1
        positions = self.start_positions[order]
        step = self.batch_size or 1
        for start in range(0, len(positions), step):
            pos = positions[start:start + step]
            x = self.data[pos[:, None] + self._offsets]
            y = None if self.targets is None else self.targets[pos]
            if self.batch_size is None:
                x = x[0]
                y = None if y is None else y[0]
            yield x if y is None else (x, y)

    def __repr__(self):
        return (f"<TimeseriesDataset {self.num_samples} windows of {self.sequence_length} "
                f"steps, {len(self)} batches of {self.batch_size}>")


def _as_array(a):
    """An array view of `a` (no copy for NumPy arrays and memmaps)."""
    return a if isinstance(a, np.ndarray) else np.asarray(a)


def timeseries_dataset_from_array(data, targets, sequence_length, sequence_stride=1,
                                  sampling_rate=1, batch_size=128, shuffle=False, seed=None,
                                  start_index=None, end_index=None):
    """Windows of `sequence_length` steps over `data` (axis 0 is time), as Keras makes them.

    `targets[i]` is the target of the window that starts at `data[i]`; `targets=None`
    yields the windows alone. Windows start every `sequence_stride` steps and take
    every `sampling_rate`-th step, within `data[start_index:end_index]`.
    `batch_size=None` yields single windows. A `seed` of None draws one from
    jaxgraph's seed stream, so `utils.set_random_seed` makes the order reproducible.
    """
    if start_index:
        if start_index < 0:
            raise ValueError("`start_index` must be 0 or greater. Received: "
                             f"start_index={start_index}")
        if start_index >= len(data):
            raise ValueError("`start_index` must be lower than the length of the data. "
                             f"Received: start_index={start_index}, for data of length "
                             f"{len(data)}")
    if end_index:
        if start_index and end_index <= start_index:
            raise ValueError("`end_index` must be higher than `start_index`. Received: "
                             f"start_index={start_index}, and end_index={end_index} ")
        if end_index >= len(data):
            raise ValueError("`end_index` must be lower than the length of the data. "
                             f"Received: end_index={end_index}, for data of length "
                             f"{len(data)}")
        if end_index <= 0:
            raise ValueError(f"`end_index` must be higher than 0. Received: end_index={end_index}")
    for name, value in (("sampling_rate", sampling_rate), ("sequence_stride", sequence_stride)):
        if value <= 0:
            raise ValueError(f"`{name}` must be higher than 0. Received: {name}={value}")
        if value >= len(data):
            raise ValueError(f"`{name}` must be lower than the length of the data. "
                             f"Received: {name}={value}, for data of length {len(data)}")
    data = _as_array(data)
    targets = None if targets is None else _as_array(targets)
    start = 0 if start_index is None else int(start_index)
    end = len(data) if end_index is None else int(end_index)
    num_seqs = end - start - (sequence_length - 1) * sampling_rate
    if targets is not None:
        num_seqs = min(num_seqs, len(targets))
    # Keras indexes `data[start:end]` and `targets[start:]` by these relative starts;
    # absolute ones index the full arrays the same way without slicing them.
    start_positions = start + np.arange(0, max(num_seqs, 0), sequence_stride, dtype=np.int64)
    if targets is not None and len(start_positions) and start_positions[-1] >= len(targets):
        last = int(start_positions[-1])
        raise ValueError(f"`targets` has {len(targets)} entries, too few for these windows: "
                         f"the last one starts at data[{last}] and needs targets[{last}]")
    if shuffle and seed is None:
        from ..random import next_seed

        seed = next_seed()
    return TimeseriesDataset(data, targets, start_positions, sequence_length, sampling_rate,
                             batch_size, bool(shuffle), seed)


__all__ = ["TimeseriesDataset", "timeseries_dataset_from_array"]

"""From whatever the user passed to fit/evaluate/predict to checked, staged arrays.

Everything here runs on the host before any compilation, so mistakes (wrong number
of inputs, unknown names, mismatched sample counts, wrong dtypes or shapes) are
reported in the user's terms instead of as a tracing error.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import jax
import numpy as np


def is_array_like(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def is_batch_stream(x) -> bool:
    """A generator / iterator / iterable of batches rather than arrays."""
    if x is None or is_array_like(x) or isinstance(x, (dict, list, tuple, str, bytes)):
        return False
    return isinstance(x, (Iterator, Iterable))


def flatten_x(model, x) -> list[np.ndarray]:
    if x is None:
        raise ValueError(f"Model {model.name!r} needs input data x, got None")
    names = model.input_names
    flat = model._input_struct.unpack(x, names, "inputs")
    out = []
    for name, t, a in zip(names, model.inputs, flat):
        if a is None:
            raise ValueError(f"Input {name!r} is None")
        a = np.asarray(a)
        want = np.dtype(t.dtype) if t.dtype != "string" else a.dtype
        if a.dtype != want:
            if np.issubdtype(want, np.integer) and np.issubdtype(a.dtype, np.floating):
                if a.size and not np.all(np.isfinite(a) & (a == np.round(a))):
                    raise ValueError(
                        f"Input {name!r} is declared {t.dtype} (integer indices, e.g. for an "
                        f"Embedding), but the data given is {a.dtype} with non-integer values"
                    )
            a = a.astype(want)
        _check_shape(f"Input {name!r}", t.shape, a.shape)
        out.append(a)
    return out


def _check_shape(what, expected, got):
    if len(expected) != len(got) and not (len(expected) == len(got) + 1 and expected[-1] == 1):
        raise ValueError(
            f"{what} expects arrays of shape {expected}, but the data has shape {tuple(got)}"
        )
    if len(expected) == len(got):
        for axis in range(1, len(got)):
            if expected[axis] is not None and expected[axis] != got[axis]:
                raise ValueError(
                    f"{what} expects arrays of shape {expected}, but the data has shape "
                    f"{tuple(got)} (axis {axis} differs)"
                )


def flatten_y(model, y, loss_outputs: list[bool]) -> list[np.ndarray | None]:
    """Targets in output order (None for outputs without a loss)."""
    names = model.output_names
    n = len(names)
    if isinstance(y, dict):
        unknown = [k for k in y if k not in names]
        if unknown:
            raise ValueError(
                f"Unknown target name(s) {unknown}: the model's outputs are {names}"
            )
        flat = [y.get(k) for k in names]
    elif isinstance(y, (list, tuple)) and n > 1:
        if len(y) != n:
            raise ValueError(
                f"The model has {n} outputs ({names}), but {len(y)} target arrays were given"
            )
        flat = list(y)
    else:
        if n > 1:
            raise ValueError(
                f"The model has {n} outputs ({names}); give targets as a list or a dict "
                "keyed by output name"
            )
        flat = [y]
    out = []
    for name, a, has_loss in zip(names, flat, loss_outputs):
        if a is None:
            if has_loss:
                raise ValueError(f"Output {name!r} has a loss but no target was given")
            out.append(None)
            continue
        a = np.asarray(a)
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        elif a.dtype == np.int64:
            a = a.astype(np.int32)
        elif a.dtype == np.bool_:
            a = a.astype(np.float32)
        out.append(a)
    return out


def sample_count(named_arrays: list[tuple[str, np.ndarray]]) -> int:
    counts = {name: int(a.shape[0]) for name, a in named_arrays if a is not None}
    if not counts:
        raise ValueError("No data arrays were given")
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{k}: {v}" for k, v in counts.items())
        raise ValueError(f"Data cardinality is ambiguous: arrays have different sample counts "
                         f"({detail}). Make sure all arrays contain the same number of samples.")
    return next(iter(counts.values()))


def sample_weights(model, sample_weight, class_weight, ys, n) -> list[np.ndarray | None]:
    """One weight array per output, combining sample_weight and class_weight: (n,) per
    sample, or (n, steps, ...) per element of a sequence output, as Keras takes them.

    An output with neither gets None, not ones: the compiled step then has no weight
    array to stage, gather and multiply by."""
    names = model.output_names
    if sample_weight is None:
        per = [None for _ in names]
    elif isinstance(sample_weight, dict):
        unknown = [k for k in sample_weight if k not in names]
        if unknown:
            raise ValueError(f"sample_weight has unknown output name(s) {unknown}; "
                             f"outputs are {names}")
        per = [np.asarray(sample_weight.get(k, np.ones(n)), np.float32) for k in names]
    elif isinstance(sample_weight, (list, tuple)) and len(names) > 1:
        if len(sample_weight) != len(names):
            raise ValueError(f"sample_weight has {len(sample_weight)} entries but the model has "
                             f"{len(names)} outputs ({names})")
        per = [np.asarray(w, np.float32) for w in sample_weight]
    else:
        w = np.asarray(sample_weight, np.float32)
        per = [w for _ in names]
    for name, w in zip(names, per):
        if w is not None and (w.ndim == 0 or w.shape[0] != n):
            raise ValueError(f"sample_weight for output {name!r} must have {n} rows: shape "
                             f"({n},) per sample, or ({n}, steps) per step; got {w.shape}")
    if class_weight:
        if len(names) > 1 and not isinstance(class_weight, dict):
            raise ValueError("class_weight must be a dict {class: weight}")
        if isinstance(class_weight, dict) and set(class_weight) <= set(names) and class_weight:
            cws = [class_weight.get(k) for k in names]
        elif len(names) > 1:
            raise ValueError(
                f"class_weight {{class: weight}} is only supported for models with a single "
                f"output (as in Keras); model {model.name!r} has outputs {names}. Key it by "
                "output name, {output: {class: weight}}, or pass sample_weight")
        else:
            cws = [class_weight]
        for i, cw in enumerate(cws):
            if not cw or ys[i] is None:
                continue
            labels = ys[i]
            if labels.ndim > 1 and labels.shape[-1] > 1:
                labels = labels.argmax(-1)
            labels = labels.reshape(labels.shape[0], -1)[:, 0]
            if labels.size and (not np.all(np.isfinite(labels)) or labels.min() < 0
                                or not np.all(labels == np.round(labels))):
                raise ValueError(
                    f"class_weight for output {names[i]!r} needs class labels (integers >= 0 "
                    "or one-hot rows), but its targets hold other values, e.g. "
                    f"{labels[np.flatnonzero((labels < 0) | (labels != np.round(labels)))[:3]]}")
            labels = labels.astype(np.int64)
            table = np.ones(int(max(max(cw), labels.max(initial=0))) + 1, np.float32)
            for cls, weight in cw.items():
                table[int(cls)] = weight
            by_class = table[labels]
            if per[i] is not None:
                by_class = per[i] * by_class.reshape((-1,) + (1,) * (per[i].ndim - 1))
            per[i] = by_class
    return per


def split_validation(arrays: list, fraction: float):
    """Keras's validation_split: the last `fraction` of the samples, before shuffling."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation_split must be in (0, 1), got {fraction}")
    n = next((a.shape[0] for a in arrays if a is not None), None)
    if n is None:  # e.g. no sample weights at all
        return list(arrays), list(arrays)
    cut = int(n * (1.0 - fraction))
    if cut == 0 or cut == n:
        raise ValueError(f"validation_split={fraction} leaves no data on one side ({n} samples)")
    train = [None if a is None else a[:cut] for a in arrays]
    val = [None if a is None else a[cut:] for a in arrays]
    return train, val


@dataclass
class Staged:
    """Arrays on the device plus the sample count; batches are gathered from them."""

    xs: list
    ys: list
    sws: list
    n: int

    @classmethod
    def put(cls, xs, ys, sws, sharding=None):
        def put(a):
            if a is None:
                return None
            return jax.device_put(a) if sharding is None else jax.device_put(a, sharding)

        n = xs[0].shape[0] if xs else ys[0].shape[0]
        return cls([put(a) for a in xs], [put(a) for a in ys], [put(a) for a in sws], n)


def _aligned_empty(shape, dtype) -> np.ndarray:
    """An uninitialised array on a 64-byte boundary: XLA:CPU then adopts the buffer
    without copying it (`jax.device_put` aliases aligned host memory)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + 64, np.uint8)
    offset = -raw.ctypes.data % 64
    return raw[offset:offset + nbytes].view(dtype).reshape(shape)


@dataclass
class HostStaged:
    """Training arrays kept in host memory; each chunk's rows are gathered there.

    On the CPU backend a row gather inside the step program costs more than the step's
    arithmetic on small models (XLA:CPU gathers element by element): gathering the next
    chunk with NumPy while the device runs the current one, and slicing batches out of
    it in the program, hides that cost.
    """

    xs: list
    ys: list
    sws: list
    n: int

    @classmethod
    def put(cls, xs, ys, sws):
        def host(a):
            return None if a is None else np.ascontiguousarray(np.asarray(a))

        n = xs[0].shape[0] if xs else ys[0].shape[0]
        return cls([host(a) for a in xs], [host(a) for a in ys], [host(a) for a in sws], n)

    def rows(self, idx: np.ndarray):
        """The rows `idx` of every array, on the device, in that order."""
        def take(a):
            if a is None:
                return None
            out = _aligned_empty((len(idx),) + a.shape[1:], a.dtype)
            np.take(a, idx, axis=0, out=out, mode="clip")  # in range by construction
            return jax.device_put(out)

        return [take(a) for a in self.xs], [take(a) for a in self.ys], [take(a) for a in self.sws]


class EpochPlan:
    """Which rows each step of an epoch uses, shaped (chunks, k, batch).

    As in Keras, `steps` below the batches of one pass (`steps_per_epoch`) makes epochs
    take consecutive batches of a continuing sequence of passes: epoch `base + r` runs
    batches [j * steps, (j + 1) * steps) of pass r // E, j = r % E, where E epochs make a
    pass; the pass's last epoch stops at its end (fewer steps, with the partial batch)
    and the next epoch begins a new pass, with its own permutation. `base` is the epoch
    the data started at (fit's initial_epoch). Everything is deterministic in (seed,
    epoch, base): each pass's permutation is drawn from (seed, the pass's first epoch).

    The validity and activity masks never change and are staged once (one pair, or two
    when a pass ends with a shorter epoch); each epoch only its row order travels to the
    device. The last batch wraps around with weight 0 and trailing steps of a chunk are
    inactive, so every dispatch has the same shapes. When every batch of every epoch is
    full, `valid` is None and the step has no row mask at all.
    """

    def __init__(self, n: int, batch_size: int, steps: int, k: int, shuffle: bool,
                 sharding=None):
        self.per_pass = math.ceil(n / batch_size)
        steps = max(1, min(int(steps), self.per_pass))
        self.n, self.batch_size, self.steps, self.k, self.shuffle = n, batch_size, steps, k, shuffle
        self.chunks = math.ceil(steps / k)
        self.total = steps * batch_size
        self.epochs_per_pass = math.ceil(self.per_pass / steps)
        # (steps, rows) of an epoch inside a pass, and of the pass's last epoch.
        head = self.epochs_per_pass - 1
        kinds = [(steps, min(n, self.total)),
                 (self.per_pass - head * steps, n - head * self.total)]
        if self.epochs_per_pass == 1:
            kinds = kinds[1:]
        self._sharding = sharding
        masks = []
        for length, rows in kinds:
            valid = np.arange(self.chunks * k * batch_size) < rows
            active = np.arange(self.chunks * k) < length
            masks.append((valid, active, length))
        # A mask on one kind means a mask on all: one program for every epoch.
        use_valid = not all(v.all() for v, _, _ in masks)
        self._masks = [
            (self._put(v.astype(np.float32).reshape(self.chunks, k, batch_size))
             if use_valid else None, self._put(a.reshape(self.chunks, k)), length)
            for v, a, length in masks]
        # Some chunk has inactive steps: the program must skip them.
        self.masked = any(length % k for _, _, length in masks)
        self.valid, self.active, _ = self._masks[0]  # the first epoch of a pass
        self._in_order = {}  # unshuffled layouts by place in the pass, staged once
        self._order = None  # (seed, first epoch of the pass, its permutation)

    def _put(self, a):
        return jax.device_put(a) if self._sharding is None else jax.device_put(a, self._sharding)

    def _place(self, epoch: int, base: int) -> tuple[int, int]:
        """(place of `epoch` in its pass, the pass's first epoch)."""
        j = (int(epoch) - int(base)) % self.epochs_per_pass
        return j, int(epoch) - j

    def epoch_steps(self, epoch: int, base: int = 0) -> int:
        """How many steps `epoch` runs."""
        return self._masks[-1][2] if self._last(epoch, base) else self.steps

    def _last(self, epoch, base) -> bool:
        return self._place(epoch, base)[0] == self.epochs_per_pass - 1

    def masks(self, epoch: int, base: int = 0):
        """(valid, active, chunks) of `epoch`: a pass's last epoch may run fewer chunks."""
        valid, active, length = self._masks[-1] if self._last(epoch, base) else self._masks[0]
        return valid, active, math.ceil(length / self.k)

    def _pass_order(self, seed: int, first: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        if self._order is None or self._order[:2] != (seed, first):
            self._order = (seed, first, np.random.default_rng([seed, first]).permutation(self.n))
        return self._order[2]

    def host_indices(self, seed: int, epoch: int, base: int = 0) -> np.ndarray:
        """The epoch's rows, (chunks, k * batch), on the host."""
        j, first = self._place(epoch, base)
        order = self._pass_order(seed, first)
        start = j * self.total
        rows = order[start:min(self.n, start + self.total)]
        size = self.epoch_steps(epoch, base) * self.batch_size
        idx = np.zeros(self.chunks * self.k * self.batch_size, np.int32)
        idx[:size] = np.resize(rows, size)  # a partial batch wraps around, with weight 0
        return idx.reshape(self.chunks, self.k * self.batch_size)

    def indices(self, seed: int, epoch: int, base: int = 0):
        j = self._place(epoch, base)[0]
        if not self.shuffle and j in self._in_order:
            return self._in_order[j]
        staged = self._put(self.host_indices(seed, epoch, base).reshape(
            self.chunks, self.k, self.batch_size))
        if not self.shuffle:
            self._in_order[j] = staged
        return staged


def pad_batch(arrays: list, size: int):
    """Pad a short batch to `size` rows (repeating rows) and return the validity mask."""
    n = next(a.shape[0] for a in arrays if a is not None)
    valid = np.zeros((size,), np.float32)
    valid[:n] = 1.0
    if n == size:
        return arrays, valid
    if n > size:
        raise ValueError(f"A batch of {n} samples is larger than the first batch ({size}); "
                         "batches from a generator must not grow")
    idx = np.resize(np.arange(n), size)
    return [None if a is None else a[idx] for a in arrays], valid


def peek_stream(x):
    """(first batch, a stream equal to x): a one-shot iterator is given back with the
    peeked batch in front; an indexable or re-iterable one is left as it was."""
    if hasattr(x, "__getitem__") and hasattr(x, "__len__"):
        return x[0], x
    if isinstance(x, Iterator):
        first = next(x)
        return first, itertools.chain([first], x)
    return next(iter(x)), x


def unpack_batch(batch):
    """(x, y, sample_weight) from a generator's item."""
    if isinstance(batch, tuple):
        if len(batch) == 2:
            return batch[0], batch[1], None
        if len(batch) == 3:
            return batch
        if len(batch) == 1:
            return batch[0], None, None
    if isinstance(batch, list) and len(batch) in (2, 3):
        return (*batch, None)[:3]
    return batch, None, None

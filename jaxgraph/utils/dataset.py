"""What every `*_dataset_from_*` loader shares: Keras's directory indexing, split and
label encoding, and a small dataset protocol (`len`, `map`, `cardinality`,
`as_numpy_iterator`) that `fit`, `adapt` and book code written for tf.data use.

Indexing, class order, shuffling before the split and the split itself follow Keras
(`keras/src/utils/dataset_utils.py`).
"""

from __future__ import annotations

import math
import os

import numpy as np


def _valid_files(directory, follow_links, formats):
    for root, _, files in sorted(os.walk(directory, followlinks=follow_links),
                                 key=lambda t: t[0]):
        for fname in sorted(files):
            if fname.lower().endswith(formats):
                yield os.path.join(root, fname)


def index_directory(directory, labels, class_names=None, shuffle=True, seed=None,
                    follow_links=False, verbose=True, *, formats):
    """(file_paths, labels, class_names) exactly as Keras indexes a directory.

    `formats`: the allowed file name endings (lower case) of the loader's file type.
    """
    if not os.path.isdir(directory):
        raise ValueError(f"Directory {directory!r} does not exist or is not a directory")
    if labels == "inferred":
        subdirs = [d for d in sorted(os.listdir(directory))
                   if os.path.isdir(os.path.join(directory, d)) and not d.startswith(".")]
        if class_names is not None:
            if not set(class_names).issubset(subdirs):
                raise ValueError(
                    "The `class_names` passed did not match the names of the subdirectories "
                    f"of the target directory. Expected: {subdirs} (or a subset of it), but "
                    f"received: class_names={class_names}")
            subdirs = list(class_names)
        class_names = subdirs
        paths, label_list = [], []
        for index, sub in enumerate(subdirs):
            found = list(_valid_files(os.path.join(directory, sub), follow_links, formats))
            paths += found
            label_list += [index] * len(found)
        labels = np.asarray(label_list, np.int32)
    else:
        if class_names is not None:
            raise ValueError("You can only pass `class_names` if `labels='inferred'`.")
        paths = list(_valid_files(directory, follow_links, formats))
        if labels is None:
            class_names = None
        else:
            if len(labels) != len(paths):
                raise ValueError(
                    "Expected the lengths of `labels` to match the number of files in the "
                    f"target directory. len(labels) is {len(labels)} while we found "
                    f"{len(paths)} files in directory {directory}.")
            class_names = [str(label) for label in sorted(set(labels))]
            labels = np.asarray(labels)
    if verbose:
        if labels is None:
            print(f"Found {len(paths)} files.")
        else:
            print(f"Found {len(paths)} files belonging to {len(class_names)} classes.")
    if shuffle:
        if seed is None:
            seed = np.random.randint(1e6)
        np.random.RandomState(seed).shuffle(paths)
        if labels is not None:
            np.random.RandomState(seed).shuffle(labels)
    return paths, labels, class_names


def check_validation_split_arg(validation_split, subset, shuffle, seed):
    """Keras's checks of the split arguments, with its messages (`dataset_utils`)."""
    if validation_split and not 0 < validation_split < 1:
        raise ValueError(f"`validation_split` must be between 0 and 1, received: "
                         f"{validation_split}")
    if bool(validation_split) != bool(subset):
        raise ValueError("If `subset` is set, `validation_split` must be set, and inversely.")
    if subset not in ("training", "validation", "both", None):
        raise ValueError('`subset` must be either "training", "validation" or "both", '
                         f"received: {subset}")
    if validation_split and shuffle and seed is None:
        raise ValueError("If using `validation_split` and shuffling the data, you must provide "
                         "a `seed` argument, to make sure that there is no overlap between the "
                         "training and validation subset.")


def _split(paths, labels, validation_split, subset, verbose):
    if not validation_split:
        return paths, labels
    n_val = int(validation_split * len(paths))
    if subset == "training":
        if verbose:
            print(f"Using {len(paths) - n_val} files for training.")
        end = len(paths) - n_val
        return paths[:end], None if labels is None else labels[:end]
    if verbose:
        print(f"Using {n_val} files for validation.")
    start = len(paths) - n_val
    return paths[start:], None if labels is None else labels[start:]


def split_subsets(paths, labels, validation_split, subset, verbose, no_files_error):
    """[(subset name, paths, labels)]: one entry, or two for `subset='both'`.

    `no_files_error(name)` is the message for an empty subset (name None without a
    split), so each loader keeps Keras's wording for its file type.
    """
    names = ("training", "validation") if subset == "both" else (subset,)
    out = []
    for name in names:
        p, lab = _split(paths, labels, validation_split, name, verbose)
        if not p:
            raise ValueError(no_files_error(name))
        out.append((name, p, lab))
    return out


def directory_datasets(directory, *, labels, label_mode, class_names, shuffle, seed,
                       validation_split, subset, follow_links, verbose, formats, no_files,
                       make):
    """What `*_dataset_from_directory` does after checking its own arguments: Keras's
    split checks, the seed, the index, then `make(paths, labels, class_names, shuffle,
    seed)` per subset (a pair for `subset='both'`, whose validation half, as in Keras,
    is never shuffled)."""
    check_validation_split_arg(validation_split, subset, shuffle, seed)
    if seed is None:
        from ..random import next_seed

        seed = next_seed()
    paths, label_array, names = index_directory(
        directory, labels, class_names=class_names, shuffle=shuffle, seed=seed,
        follow_links=follow_links, verbose=verbose, formats=formats)
    if label_mode == "binary" and len(names) != 2:
        raise ValueError('When passing `label_mode="binary"`, there must be exactly 2 '
                         f"class_names. Received: class_names={names}")
    datasets = [make(p, lab, names, shuffle and not (subset == "both" and i == 1), seed)
                for i, (_, p, lab) in enumerate(split_subsets(
                    paths, label_array, validation_split, subset, verbose, no_files))]
    return tuple(datasets) if subset == "both" else datasets[0]


def encode_labels(labels, label_mode, num_classes) -> np.ndarray:
    """Integer labels in Keras's encoding: int32, float32 `(n, 1)` or float32 one-hot.

    One-hot rows of labels outside `[0, num_classes)` are zeros, as `tf.one_hot` makes
    them (explicit `labels=` lists may hold such values).
    """
    labels = np.asarray(labels)
    if label_mode == "binary":
        return labels.astype(np.float32)[..., None]
    if label_mode == "categorical":
        return (labels[..., None] == np.arange(num_classes)).astype(np.float32)
    return labels.astype(np.int32)


def epoch_order(n, shuffle, seed, epoch) -> np.ndarray:
    """The sample order of pass `epoch`: a new permutation every pass (as tf.data
    reshuffles each iteration), deterministic in `(seed, epoch)`."""
    if not shuffle:
        return np.arange(n)
    return np.random.RandomState([seed, epoch]).permutation(n)


class BatchDataset:
    """What Keras's tf.data datasets offer that `fit`, `adapt` and book code use.

    A subclass defines `__iter__` (one pass, a fresh one per call) and `__len__`
    (batches per pass); this adds `cardinality()`, `as_numpy_iterator()` and `map()`.
    """

    def cardinality(self) -> int:
        """The number of batches (an int: the count is always known here)."""
        return len(self)

    def as_numpy_iterator(self):
        """One pass; batches already are NumPy arrays (tf.data code calls this)."""
        return iter(self)

    def map(self, map_func, num_parallel_calls=None, deterministic=None):
        """A dataset of `map_func(*element)` (a tuple element is unpacked, as in tf.data).

        Applied lazily, batch by batch, in this process: `num_parallel_calls` and
        `deterministic` are accepted for tf.data code and change nothing.
        """
        return MappedDataset(self, map_func)


class MappedDataset(BatchDataset):
    """`source.map(fn)`: the same batches, transformed as they are drawn."""

    def __init__(self, source, map_func):
        self.source = source
        self.map_func = map_func

    def __len__(self):
        return len(self.source)

    def __iter__(self):
        fn = self.map_func
        for element in self.source:
            yield fn(*element) if isinstance(element, tuple) else fn(element)

    def __repr__(self):
        return f"<MappedDataset of {self.source!r}>"


class FileDataset(BatchDataset):
    """Batches of files read lazily, with their labels encoded as Keras encodes them.

    Iterating is one pass over the files; every new pass reshuffles them (when
    `shuffle`), deterministically from `seed`. A subclass reads one file (`_load`) and
    may change how a batch of them is assembled (`_collate`).
    """

    def __init__(self, file_paths, labels, label_mode, class_names, batch_size, shuffle, seed):
        self.file_paths = list(file_paths)
        self.labels = labels
        self.label_mode = label_mode
        self.class_names = class_names
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self._epoch = 0

    def __len__(self):
        n = len(self.file_paths)
        return n if self.batch_size is None else math.ceil(n / self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.file_paths)

    def _targets(self, indices):
        return encode_labels(np.asarray(self.labels)[indices], self.label_mode,
                             len(self.class_names))

    def _order(self) -> np.ndarray:
        order = epoch_order(len(self.file_paths), self.shuffle, self.seed, self._epoch)
        if self.shuffle:
            self._epoch += 1
        return order

    def _collate(self, items):
        return np.stack(items)

    def __iter__(self):
        order = self._order()
        step = self.batch_size or 1
        for start in range(0, len(order), step):
            idx = order[start:start + step]
            x = self._collate([self._load(self.file_paths[i]) for i in idx])
            y = None if self.labels is None else self._targets(idx)
            if self.batch_size is None:
                x = x[0]
                y = None if y is None else y[0]
            yield x if y is None else (x, y)


__all__ = ["BatchDataset", "FileDataset", "MappedDataset", "check_validation_split_arg",
           "directory_datasets", "encode_labels", "epoch_order", "index_directory", "split_subsets"]

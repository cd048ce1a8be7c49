"""`text_dataset_from_directory`: a folder of `.txt` files as `(texts, labels)` batches.

Keras returns a `tf.data.Dataset` of `tf.string` tensors; here the result is a plain
Python iterable whose text batches are 1-D NumPy object arrays of Python `str`
(what `layers.TextVectorization` and `fit` take), read lazily one batch at a time.
File indexing, class order, the shuffle before the split, the split itself, label
encodings and argument errors follow Keras 3 (`keras/src/utils/text_dataset_utils.py`,
through `dataset.index_directory`). `max_length` truncates the file's UTF-8
bytes, as `tf.strings.substr` does in Keras, then drops a character cut in half.

As for images, each pass is a full reshuffle deterministic in `(seed, pass)`, where
Keras shuffles through a tf.data buffer of `8 * batch_size` files with TensorFlow's
RNG: the same files per subset, in an order TensorFlow's RNG alone decides there.
"""

from __future__ import annotations

import codecs

import numpy as np

from .dataset import FileDataset, directory_datasets

TEXT_FORMATS = (".txt",)


class TextDataset(FileDataset):
    """Batches `(texts, labels)` (or texts alone) read lazily from text files.

    Attributes: `class_names`, `file_paths`, `labels`, `batch_size`, `max_length`.
    """

    def __init__(self, file_paths, labels, label_mode, class_names, batch_size, max_length,
                 shuffle, seed):
        super().__init__(file_paths, labels, label_mode, class_names, batch_size, shuffle, seed)
        self.max_length = max_length

    def load_text(self, path) -> str:
        """One file's text, at most `max_length` UTF-8 bytes of it."""
        with open(path, "rb") as f:
            raw = f.read() if self.max_length is None else f.read(self.max_length)
        try:
            if self.max_length is None:
                return raw.decode("utf-8")
            # Not final: bytes of a character cut by the truncation are left out.
            return codecs.getincrementaldecoder("utf-8")().decode(raw, final=False)
        except UnicodeDecodeError as e:
            raise ValueError(f"Text file {path} is not valid UTF-8: {e}") from None

    def _load(self, path):
        return self.load_text(path)

    def _collate(self, items):
        return np.array(items, dtype=object)

    def __repr__(self):
        return (f"<TextDataset {len(self.file_paths)} files, {len(self)} batches of "
                f"{self.batch_size}, classes={self.class_names}>")


def text_dataset_from_directory(directory, labels="inferred", label_mode="int",
                                class_names=None, batch_size=32, max_length=None, shuffle=True,
                                seed=None, validation_split=None, subset=None,
                                follow_links=False, verbose=True):
    """A streaming `TextDataset` of a directory with one sub-folder per class.

    `label_mode`: 'int' (int32 class indices), 'categorical' (float32 one-hot),
    'binary' (float32 `(n, 1)`, exactly two classes) or None (texts only).
    `subset='both'` returns `(training, validation)`. A `seed` of None draws one from
    jaxgraph's seed stream, so `utils.set_random_seed` makes the order reproducible.
    """
    inferred = isinstance(labels, str) and labels == "inferred"
    if not inferred and labels is not None:
        if not isinstance(labels, (list, tuple)):
            raise ValueError(
                "`labels` argument should be a list/tuple of integer labels, of the same size "
                "as the number of text files in the target directory. If you wish to infer "
                "the labels from the subdirectory names in the target directory, pass "
                '`labels="inferred"`. If you wish to get a dataset that only contains text '
                f"samples (no labels), pass `labels=None`. Received: labels={labels}")
        if class_names:
            raise ValueError('You can only pass `class_names` if `labels="inferred"`. '
                             f"Received: labels={labels}, and class_names={class_names}")
    if label_mode not in ("int", "categorical", "binary", None):
        raise ValueError('`label_mode` argument must be one of "int", "categorical", '
                         f'"binary", or None. Received: label_mode={label_mode}')
    if labels is None or label_mode is None:
        labels, label_mode = None, None
        if class_names is not None:
            raise ValueError("When `labels=None` (no labels), argument `class_names` cannot "
                             "be specified.")
    def no_files(name):
        which = f"{name} " if subset == "both" else ""
        return f"No {which}text files found in directory {directory}. Allowed format: .txt"

    return directory_datasets(
        directory, labels=labels, label_mode=label_mode, class_names=class_names,
        shuffle=shuffle, seed=seed, validation_split=validation_split, subset=subset,
        follow_links=follow_links, verbose=verbose, formats=TEXT_FORMATS, no_files=no_files,
        make=lambda p, lab, names, shuffle_it, seed_: TextDataset(
            p, lab, label_mode, names, batch_size, max_length, shuffle_it, seed_))

__all__ = ["TextDataset", "text_dataset_from_directory"]

"""IMDB movie-review sentiment (Maas et al. 2011) from the standard `imdb.npz`.

Reviews are lists of word indices ranked by frequency (1 = most frequent); the
transformations below follow keras.datasets.imdb so book code gives the same data.
"""

import itertools
import json

import numpy as np

from jaxgraph.datasets import _files

FILENAME = "imdb.npz"
# The SHA-256 Keras publishes for this file.
SHA256 = "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"
WORD_INDEX = "imdb_word_index.json"
WORD_INDEX_MD5 = "bfafd718b763782e994055a2d397834f"  # the hash Keras publishes
KEYS = ("x_train", "y_train", "x_test", "y_test")


def _object_array(items):
    """A 1-D object array of lists, even when every list has the same length."""
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def _transform(seqs, num_words, skip_top, maxlen, start_char, oov_char, index_from):
    """Shift, mark, filter and cut the words of all reviews at once on flat arrays."""
    lengths = np.fromiter((len(s) for s in seqs), np.int64, len(seqs))
    flat = np.fromiter(itertools.chain.from_iterable(seqs), np.int64, int(lengths.sum()))
    if index_from:
        flat += index_from
    if start_char is not None:
        flat = np.insert(flat, np.cumsum(lengths) - lengths, start_char)
        lengths += 1
    keep = lengths < maxlen if maxlen else np.ones(len(lengths), bool)
    flat, lengths = flat[np.repeat(keep, lengths)], lengths[keep]
    # Keras lets num_words=None exclude the top index itself; its docs say "all words
    # are kept", which is what happens here.
    limit = num_words if num_words else (int(flat.max()) + 1 if flat.size else 0)
    inside = (flat >= skip_top) & (flat < limit)
    if oov_char is not None:
        flat = np.where(inside, flat, oov_char)
    else:
        owner = np.repeat(np.arange(len(lengths)), lengths)
        lengths = np.bincount(owner[inside], minlength=len(lengths))
        flat = flat[inside]
    pieces = np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []
    return [p.tolist() for p in pieces], keep


def _load_raw(path):
    local = _files.fetch(FILENAME, _files.KERAS_ORIGIN + FILENAME, path=path,
                         checksum=("sha256", SHA256))
    arrays = _files.load_npz(local, KEYS)
    _files.check_pairs(arrays, local)
    return arrays


def load_data(path=None, num_words=None, skip_top=0, maxlen=None, seed=113,
              start_char=1, oov_char=2, index_from=3):
    """Return `(x_train, y_train), (x_test, y_test)`; x are object arrays of index lists.

    As in Keras: each split is shuffled with `np.random.RandomState(seed)`, word indices
    are shifted by `index_from` and each review starts with `start_char`; reviews with
    `maxlen` or more entries are dropped; indices outside `[skip_top, num_words)` become
    `oov_char` (or are removed when it is None). `path` is `imdb.npz` or its directory;
    otherwise `$JAXGRAPH_HOME/datasets/` is searched and the file downloaded when missing.
    """
    arrays = _load_raw(path)
    rng = np.random.RandomState(seed)
    splits = []
    for split in ("train", "test"):
        order = np.arange(len(arrays["x_" + split]))
        rng.shuffle(order)
        splits.append((arrays["x_" + split][order], arrays["y_" + split][order]))
    (x_train, y_train), (x_test, y_test) = splits
    xs, keep = _transform(list(x_train) + list(x_test), num_words, skip_top, maxlen,
                          start_char, oov_char, index_from)
    keep_train, keep_test = keep[: len(x_train)], keep[len(x_train):]
    if maxlen and not (keep_train.any() and keep_test.any()):
        raise ValueError(
            f"After filtering for sequences shorter than maxlen={maxlen}, no sequence "
            "was kept in the train or test split. Increase maxlen."
        )
    n_train = int(keep_train.sum())
    return ((_object_array(xs[:n_train]), y_train[keep_train]),
            (_object_array(xs[n_train:]), y_test[keep_test]))


def get_word_index(path=None):
    """Return the dict word -> rank (1 = most frequent) from `imdb_word_index.json`.

    A rank r appears in load_data()'s sequences as r + index_from.
    """
    local = _files.fetch(WORD_INDEX, _files.KERAS_ORIGIN + WORD_INDEX, path=path,
                         checksum=("md5", WORD_INDEX_MD5))
    with open(local, encoding="utf-8") as f:
        index = json.load(f)
    if not isinstance(index, dict) or not all(isinstance(v, int) for v in index.values()):
        raise ValueError(f"{local} is not a word index: expected a JSON object of word: rank")
    return index

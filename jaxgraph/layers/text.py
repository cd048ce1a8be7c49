"""`TextVectorization`: strings to token ids or bag-of-words vectors, on the host.

JAX arrays cannot hold strings, so this layer never runs inside `jit` or inside a
model graph. It is the step *before* the model: adapt it on the training texts,
call it on strings to get NumPy arrays, and feed those to `fit` / `predict`::

    vectorizer = layers.TextVectorization(max_tokens=2000, output_mode="multi_hot")
    vectorizer.adapt(train_texts)
    model.fit(vectorizer(train_texts), train_labels, ...)
    model.predict(vectorizer(new_texts))

Calling it on a symbolic tensor (`vectorizer(Input(...))`) raises a `TypeError`
that says so. Everything else follows what Keras 3's `TextVectorization` actually
outputs (tests/test_text_keras_parity.py runs both on shared corpora): the same
standardization (ASCII lower-casing, as `tf.strings.lower`; the same punctuation
set), whitespace or character splitting, n-grams joined by a space, the reserved
tokens `''` (padding, index 0, int mode only) and `'[UNK]'` (out of vocabulary),
a vocabulary sorted by descending frequency with ties broken by descending token
(UTF-8 bytes), TF-IDF weights `log(1 + num_docs / (1 + doc_freq))` with the mean
weight for `'[UNK]'`, and vocabulary files read line by line as terms.

Known differences from Keras (kept on purpose):

* dtypes: int ids are int64 and the other modes float32, the dtypes Keras declares
  (`compute_output_spec`). Keras's eager tensors are int64 on the TensorFlow backend
  (int32 on JAX) for 'int', 'multi_hot', 'count' and 'one_hot' too; the values are
  the same, and float32 halves the memory of a bag-of-words matrix.
* `split=None` with a rank-1 batch `["a b", "c"]`: every string is one document
  here, as it is in Keras for the same batch shaped `(n, 1)` and in Keras's
  `adapt`. Keras's `call` instead treats the batch axis of a rank-1 batch as the
  token axis: 'int' returns shape `(n,)` (and `output_sequence_length` trims or pads
  the *batch*), and the bag modes fold the whole batch into one row.
* `adapt` on texts with no tokens gives an empty vocabulary (every token is
  `'[UNK]'`, whose TF-IDF weight is then 0) where Keras leaves the layer unusable
  (calling it fails; with only reserved tokens, `adapt` itself fails).
* In the bag modes without `pad_to_max_tokens`, `adapt` / `set_vocabulary` may
  change the vocabulary size of a layer that already has one; Keras refuses, to keep
  the static output shape of its graphs, which this host-side layer does not have.
* Callables: `standardize` gets a 1-D NumPy array of str, as in Keras on non-TF
  backends (Keras passes shape `(n, 1)` during `adapt`); `split` also gets a NumPy
  array and returns one token list per string (Keras hands it a `tf.Tensor`).
"""

from __future__ import annotations

import collections
import math
import os
import re
from collections.abc import Iterable

import numpy as np

from ..graph.node import flatten_call
from ..graph.tensor import is_symbolic
from .base import Layer

MASK_TOKEN = ""
OOV_TOKEN = "[UNK]"
_PUNCTUATION = re.compile(r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_WHITESPACE = re.compile(r"[ \t\n\v\f\r]+")
_STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation")
_SPLIT = ("whitespace", "character")
_MODES = ("int", "multi_hot", "count", "tf_idf", "one_hot")


def _as_text(s) -> str:
    if isinstance(s, bytes):
        return s.decode("utf-8")
    if isinstance(s, np.ndarray) and s.ndim == 0:
        return _as_text(s.item())
    if not isinstance(s, str):
        raise TypeError(f"TextVectorization expects strings, got {type(s).__name__}: {s!r}")
    return s


def _as_batch(inputs) -> tuple[list[str], bool]:
    """A flat list of documents, and whether the input was a single string."""
    if isinstance(inputs, (str, bytes)):
        return [_as_text(inputs)], True
    arr = np.asarray(inputs, dtype=object)
    if arr.ndim == 0:
        return [_as_text(arr.item())], True
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            "TextVectorization expects a list of strings (shape (n,) or (n, 1)); got an "
            f"array of shape {arr.shape}"
        )
    return [_as_text(s) for s in arr], False


def _read_vocabulary_file(path, owner: str) -> list[str]:
    """One term per line, as TensorFlow's `TextFileInitializer` (used by Keras) reads it."""
    with open(path, "rb") as f:
        lines = f.read().decode("utf-8").split("\n")
    if lines[-1] == "":  # the file's final newline
        lines.pop()
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    for i, line in enumerate(lines):
        if line == "":
            raise ValueError(f"{owner}: empty line {i + 1} in vocabulary file {path}; every "
                             "line must be a term (reserved tokens cannot be given in a file).")
    return lines


class TextVectorization(Layer):
    """Host-side text vectorization with Keras's arguments (see the module docstring).

    `output_mode`: 'int' (token ids, padded with 0 to `output_sequence_length` or to
    the longest text of the batch), 'multi_hot', 'count' or 'tf_idf' (one row of
    vocabulary size, or `max_tokens` with `pad_to_max_tokens=True`), or 'one_hot'
    (the same rows for one token per text: `split=None` only, as Keras's call fails on
    split texts; Keras's docstring leaves it out but accepts it). A callable
    `standardize` receives a NumPy array of str and returns strings; a callable `split`
    receives that array and returns one token list per string. The layer must have a
    vocabulary (`adapt`, `vocabulary=` or `set_vocabulary`) before it is called, in
    every mode, as in Keras.
    """

    def __init__(self, max_tokens=None, standardize="lower_and_strip_punctuation",
                 split="whitespace", ngrams=None, output_mode="int",
                 output_sequence_length=None, pad_to_max_tokens=False, vocabulary=None,
                 idf_weights=None, sparse=False, ragged=False, encoding="utf-8", name=None,
                 **kwargs):
        kwargs.pop("vocabulary_size", None)  # present in Keras configs; derived here
        super().__init__(name=name, **kwargs)
        owner = f"TextVectorization {self.name!r}"
        if not (standardize is None or callable(standardize) or standardize in _STANDARDIZE):
            raise ValueError(f"{owner}: standardize must be one of {_STANDARDIZE}, None or a "
                             f"callable; got {standardize!r}")
        if not (split is None or callable(split) or split in _SPLIT):
            raise ValueError(f"{owner}: split must be one of {_SPLIT}, None or a callable; "
                             f"got {split!r}")
        if output_mode == "binary":
            output_mode = "multi_hot"
        if output_mode == "tf-idf":
            output_mode = "tf_idf"
        if output_mode not in _MODES:
            raise ValueError(f"{owner}: output_mode must be one of {_MODES}, got {output_mode!r}")
        if output_mode == "one_hot" and split is not None:
            raise ValueError(f"{owner}: output_mode='one_hot' encodes one token per text and "
                             f"needs split=None (Keras fails on split texts); got split={split!r}")
        if isinstance(ngrams, bool) or not (
            ngrams is None or isinstance(ngrams, int)
            or (isinstance(ngrams, (tuple, list)) and all(isinstance(n, int) for n in ngrams))
        ):
            raise ValueError(f"{owner}: ngrams must be None, an integer, or a tuple of "
                             f"integers; got {ngrams!r}")
        if output_mode == "int":
            if output_sequence_length is not None and not isinstance(output_sequence_length,
                                                                     int):
                raise ValueError(f"{owner}: output_sequence_length must be None or an int, "
                                 f"got {output_sequence_length!r}")
        elif output_sequence_length is not None:
            raise ValueError(f"{owner}: output_sequence_length must not be set if output_mode "
                             f"is not 'int'; got {output_sequence_length!r}")
        if max_tokens is not None and max_tokens <= 1:
            raise ValueError(f"{owner}: max_tokens, if set, must be greater than 1; "
                             f"got {max_tokens!r}")
        if pad_to_max_tokens and max_tokens is None:
            raise ValueError(f"{owner}: pad_to_max_tokens=True needs max_tokens")
        if sparse or ragged:
            raise ValueError(f"{owner}: sparse=True and ragged=True need the TensorFlow "
                             "backend in Keras and are not supported here")
        if encoding.lower().replace("-", "") != "utf8":
            raise ValueError(f"{owner}: only encoding='utf-8' is supported, got {encoding!r}")
        self.max_tokens = max_tokens
        self.standardize = standardize
        self.split = split
        self.ngrams = ngrams
        self._ngram_widths = (tuple(range(1, ngrams + 1)) if isinstance(ngrams, int)
                              else None if ngrams is None else tuple(ngrams))
        self.output_mode = output_mode
        self.output_sequence_length = output_sequence_length
        self.pad_to_max_tokens = bool(pad_to_max_tokens)
        self.encoding = encoding
        self._tokens: list[str] | None = None
        self._index: dict[str, int] = {}
        self._idf: np.ndarray | None = None
        self._has_input_vocabulary = vocabulary is not None
        if vocabulary is not None:
            self.set_vocabulary(vocabulary, idf_weights)
        elif idf_weights is not None:
            raise ValueError(f"{owner}: idf_weights needs a vocabulary")
        self.built = True

    # ------------------------------------------------------------------ tokenizing

    def _token_start(self) -> int:
        """Index of the first learned token: after '' (int mode) and '[UNK]'."""
        return 2 if self.output_mode == "int" else 1

    def _standardize(self, texts: list[str]) -> list[str]:
        if self.standardize in ("lower", "lower_and_strip_punctuation"):
            texts = [t.translate(_ASCII_LOWER) for t in texts]
        if self.standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
            texts = [_PUNCTUATION.sub("", t) for t in texts]
        if callable(self.standardize):
            out = self.standardize(np.asarray(texts, dtype=str))
            texts = [_as_text(t) for t in np.asarray(out, dtype=object).reshape(-1)]
        return texts

    def _split(self, texts: list[str]) -> list[list[str]]:
        if self.split is None:
            return [[t] for t in texts]
        if self.split == "whitespace":
            return [[tok for tok in _WHITESPACE.split(t) if tok] for t in texts]
        if self.split == "character":
            return [list(t) for t in texts]
        out = self.split(np.asarray(texts, dtype=str))
        docs = [[_as_text(tok) for tok in np.asarray(doc, dtype=object).reshape(-1)]
                for doc in out]
        if len(docs) != len(texts):
            raise ValueError(f"The split callable returned {len(docs)} token lists for "
                             f"{len(texts)} strings")
        return docs

    def _ngrams(self, tokens: list[str]) -> list[str]:
        if self._ngram_widths is None:
            return tokens
        out = []
        for width in self._ngram_widths:
            out.extend(" ".join(tokens[i:i + width]) for i in range(len(tokens) - width + 1))
        return out

    def tokenize(self, texts) -> list[list[str]]:
        """The token (or n-gram) list of each text, after standardization and splitting."""
        docs, _ = _as_batch(texts)
        return [self._ngrams(toks) for toks in self._split(self._standardize(docs))]

    # ------------------------------------------------------------------ vocabulary

    def adapt(self, data, batch_size=None, steps=None):
        """Learn the vocabulary (and document frequencies for 'tf_idf') from texts.

        `data` is a string, a list / array of strings, or an iterable of such batches
        (at most `steps` of them).
        """
        if self._has_input_vocabulary:
            raise ValueError(f"Cannot adapt layer {self.name!r}: it was built with a static "
                             "vocabulary (the `vocabulary` argument).")
        if isinstance(data, (str, bytes, list, tuple, np.ndarray)):
            batches = [data]
        elif isinstance(data, Iterable):
            batches = data
        else:
            raise TypeError(f"adapt() expects strings or an iterable of batches of strings, "
                            f"got {type(data).__name__}")
        counts: collections.Counter = collections.Counter()
        doc_counts: collections.Counter = collections.Counter()
        num_docs = 0
        for i, batch in enumerate(batches):
            if steps is not None and i >= steps:
                break
            for toks in self.tokenize(batch):
                counts.update(toks)
                doc_counts.update(set(toks))
                num_docs += 1
        for special in (MASK_TOKEN, OOV_TOKEN):
            counts.pop(special, None)
        ranked = sorted(counts.items(), key=lambda kv: (kv[1], kv[0].encode("utf-8")),
                        reverse=True)
        if self.max_tokens:
            ranked = ranked[:max(self.max_tokens - self._token_start(), 0)]
        tokens = [tok for tok, _ in ranked]
        idf = None
        if self.output_mode == "tf_idf":
            learned = np.array([math.log(1 + num_docs / (1 + doc_counts[t])) for t in tokens],
                               np.float32)
            oov = float(np.mean(learned)) if learned.size else 0.0
            idf = np.concatenate([np.full((self._token_start(),), oov, np.float32), learned])
        self._install(tokens, idf)

    def _install(self, tokens: list[str], idf: np.ndarray | None) -> None:
        self._tokens = list(tokens)
        start = self._token_start()
        self._index = {tok: start + i for i, tok in enumerate(self._tokens)}
        if idf is not None and self.pad_to_max_tokens and self.max_tokens is not None:
            idf = np.pad(idf, (0, self.max_tokens - idf.size))
        self._idf = idf

    def set_vocabulary(self, vocabulary, idf_weights=None):
        """Set the vocabulary (a list of tokens or a file with one per line) directly.

        In a list, the reserved tokens may be included at the start in Keras's order
        (`['', '[UNK]', ...]` in int mode, `['[UNK]', ...]` otherwise) or left out.
        A file is read as Keras reads it (a TensorFlow text-file table): every line
        (LF or CRLF terminated) is a term taken verbatim, so a `'[UNK]'` line is an
        ordinary term, and empty or repeated lines are errors. 'tf_idf' needs
        `idf_weights`, one per given token, and a list.
        """
        owner = f"TextVectorization {self.name!r}"
        from_file = isinstance(vocabulary, (str, os.PathLike))
        if from_file:
            if not os.path.exists(vocabulary):
                raise ValueError(f"{owner}: vocabulary file {vocabulary} does not exist.")
            if self.output_mode == "tf_idf":
                raise ValueError(f"{owner}: output_mode 'tf_idf' does not support loading a "
                                 "vocabulary from file.")
            vocabulary = _read_vocabulary_file(vocabulary, owner)
        vocab = [_as_text(t) for t in np.asarray(vocabulary, dtype=object).reshape(-1)]
        if not vocab:
            raise ValueError(f"{owner}: cannot set an empty vocabulary.")
        if self.output_mode == "tf_idf" and idf_weights is None:
            raise ValueError(f"{owner}: idf_weights must be set if output_mode is 'tf_idf'.")
        if self.output_mode != "tf_idf" and idf_weights is not None:
            raise ValueError(f"{owner}: idf_weights should only be set if output_mode is "
                             f"'tf_idf', got output_mode={self.output_mode!r}")
        start = self._token_start()
        special = [MASK_TOKEN, OOV_TOKEN][2 - start:]
        found_special = not from_file and vocab[:start] == special
        tokens = vocab[start:] if found_special else vocab
        repeated = [t for t, c in collections.Counter(tokens).items() if c > 1]
        if repeated:
            raise ValueError(f"{owner}: the vocabulary has repeated terms: {repeated}")
        if MASK_TOKEN in tokens:
            raise ValueError(f"{owner}: found the reserved padding token '' at an unexpected "
                             f"location; put the reserved tokens first, in order {special}, "
                             "or leave them out.")
        size = start + len(tokens)
        if self.max_tokens is not None and size > self.max_tokens:
            raise ValueError(f"{owner}: vocabulary size {size} (with reserved tokens) is larger "
                             f"than max_tokens={self.max_tokens}")
        idf = None
        if idf_weights is not None:
            weights = np.asarray(idf_weights, np.float32).reshape(-1)
            if weights.size != len(vocab):
                raise ValueError(f"{owner}: idf_weights must be the same length as the "
                                 f"vocabulary ({weights.size} vs {len(vocab)})")
            if not found_special:
                weights = np.concatenate([np.full((start,), weights.mean(), np.float32),
                                          weights])
            idf = weights
        self._install(tokens, idf)

    def get_vocabulary(self, include_special_tokens=True) -> list[str]:
        """The vocabulary; with the reserved tokens, a token's position is its index."""
        tokens = list(self._tokens or [])
        if not include_special_tokens:
            return tokens
        return [MASK_TOKEN, OOV_TOKEN][2 - self._token_start():] + tokens

    def vocabulary_size(self) -> int:
        return self._token_start() + len(self._tokens or [])

    @property
    def is_adapted(self) -> bool:
        return self._tokens is not None

    @property
    def idf_weights(self) -> np.ndarray | None:
        return None if self._idf is None else self._idf.copy()

    # ------------------------------------------------------------------ calling

    def _depth(self) -> int:
        return self.max_tokens if self.pad_to_max_tokens else self.vocabulary_size()

    def __call__(self, inputs, *args, **kwargs):
        leaves, _ = flatten_call((inputs,), {})
        if any(is_symbolic(x) for x in leaves):
            raise TypeError(
                f"TextVectorization {self.name!r} works on Python/NumPy strings on the host and "
                "cannot be part of a jaxgraph model (JAX has no string arrays). Call it on the "
                "texts first and feed its output to the model: "
                "`model.fit(vectorizer(texts), y)`, `model.predict(vectorizer(texts))`."
            )
        return self.vectorize(inputs)

    def call(self, w, inputs):
        return self.vectorize(inputs)

    def vectorize(self, texts) -> np.ndarray:
        """Token ids `(n, length)` (int64) or vectors `(n, depth)` (float32)."""
        if self._tokens is None:
            raise RuntimeError(
                f"TextVectorization {self.name!r} has no vocabulary yet: call adapt() or "
                "set_vocabulary(), or pass vocabulary= (Keras fails here too, in every mode).")
        _, single = _as_batch(texts)
        docs = self.tokenize(texts)
        if self.output_mode == "int":
            out = self._int_ids(docs)
        elif self.output_mode == "one_hot":
            return self._one_hot(docs)  # (n, depth) even for one string, as Keras
        else:
            out = self._bag(docs)
        return out[0] if single else out

    def _int_ids(self, docs):
        ids = [[0 if t == MASK_TOKEN else self._index.get(t, 1) for t in toks] for toks in docs]
        length = self.output_sequence_length
        if length is None:
            length = max((len(r) for r in ids), default=0)
        out = np.zeros((len(ids), length), np.int64)
        for i, row in enumerate(ids):
            row = row[:length]
            out[i, :len(row)] = row
        return out

    def _bag(self, docs):
        depth = self._depth()
        out = np.zeros((len(docs), depth), np.float32)
        for i, toks in enumerate(docs):
            for t in toks:
                if t == MASK_TOKEN:
                    continue
                j = self._index.get(t, 0)
                if j < depth:
                    out[i, j] += 1.0
        if self.output_mode == "multi_hot":
            out = np.minimum(out, 1.0)
        elif self.output_mode == "tf_idf":
            out = out * self._idf[:depth]
        return out

    def _one_hot(self, docs):
        if any(len(toks) > 1 for toks in docs):
            raise ValueError(f"TextVectorization {self.name!r}: output_mode='one_hot' needs "
                             "one token per text; use 'multi_hot' or 'count' for more")
        return self._bag(docs)

    def compute_output_shape(self, input_shape):
        batch = input_shape[0] if input_shape else None
        if self.output_mode == "int":
            return (batch, self.output_sequence_length)
        return (batch, self._depth())

    # ------------------------------------------------------------------ config

    def get_config(self):
        """Arguments plus the learned vocabulary (and IDF weights), so a copy needs no adapt.

        Callable `standardize` / `split` are saved by name (module-level functions or
        ones registered with `jaxgraph.saving.register_function`), never as code.
        """
        from .serialization import function_name

        def fn(value):
            return function_name(value, self.name) if callable(value) else value

        config = {
            "name": self.name,
            "trainable": self.trainable,
            "max_tokens": self.max_tokens,
            "standardize": fn(self.standardize),
            "split": fn(self.split),
            "ngrams": list(self.ngrams) if isinstance(self.ngrams, tuple) else self.ngrams,
            "output_mode": self.output_mode,
            "output_sequence_length": self.output_sequence_length,
            "pad_to_max_tokens": self.pad_to_max_tokens,
            "vocabulary": None,
            "idf_weights": None,
            "encoding": self.encoding,
        }
        if self._tokens is not None:
            config["vocabulary"] = self.get_vocabulary()
            if self._idf is not None:
                config["idf_weights"] = self._idf[:self.vocabulary_size()].tolist()
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if isinstance(config.get("ngrams"), list):
            config["ngrams"] = tuple(config["ngrams"])
        for key in ("sparse", "ragged", "vocabulary_size", "has_input_vocabulary"):
            config.pop(key, None)
        for key in ("standardize", "split"):
            value = config.get(key)
            if isinstance(value, str) and value not in _STANDARDIZE + _SPLIT:
                from .serialization import resolve_function

                config[key] = resolve_function(value, custom_objects, owner=config.get("name"))
        return cls(**config)


__all__ = ["TextVectorization"]

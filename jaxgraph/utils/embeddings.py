"""Pretrained word vectors (GloVe's text format) as an `Embedding` layer's weights.

The book's recipe (DLwP 6.1.3): parse `glove.6B.100d.txt` into a dict, build an
`(num_words, dim)` matrix whose row `i` is the vector of the word with index `i`
(zeros for words GloVe lacks and for the reserved index 0), load it into an
`Embedding` layer and freeze it::

    glove = load_glove("glove.6B.100d.txt")
    layer = pretrained_embedding(tokenizer.word_index, glove, max_tokens=10000)
    # or, with a TextVectorization layer: pretrained_embedding(vec.get_vocabulary(), glove)
"""

from __future__ import annotations

import os

import numpy as np


def load_glove(path, vocabulary=None, dtype="float32") -> dict[str, np.ndarray]:
    """`{word: vector}` from a GloVe / word2vec text file (one `word v1 ... vd` per line).

    A word2vec header line (`count dim`) is skipped; words containing spaces (as in
    GloVe 840B) are kept whole. `vocabulary`, if given, keeps only those words, which
    saves memory with large files.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No word-vector file at {path!r}. Download GloVe (e.g. glove.6B.zip from "
            "https://nlp.stanford.edu/projects/glove/) and pass the path of a .txt file.")
    keep = None if vocabulary is None else set(vocabulary)
    vectors: dict[str, np.ndarray] = {}
    dim = None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if lineno == 0 and len(parts) == 2 and all(p.isdigit() for p in parts):
                dim = int(parts[1])
                continue
            if len(parts) < 2:
                continue
            if dim is None:
                dim = len(parts) - 1
            if len(parts) < dim + 1:
                raise ValueError(f"{path}:{lineno + 1}: expected a word and {dim} numbers, "
                                 f"got {len(parts)} fields")
            word = " ".join(parts[:-dim])
            if keep is not None and word not in keep:
                continue
            vectors[word] = np.asarray(parts[-dim:], dtype=dtype)
    if not vectors:
        raise ValueError(f"{path} holds no word vectors"
                         + ("" if keep is None else " for the given vocabulary"))
    return vectors


def _indexed_words(word_index_or_vocabulary):
    """(word, index) pairs from a Tokenizer's `word_index` or a list of tokens."""
    if isinstance(word_index_or_vocabulary, dict):
        return list(word_index_or_vocabulary.items())
    return [(w, i) for i, w in enumerate(word_index_or_vocabulary)]


def embedding_matrix(word_index_or_vocabulary, vectors, dim=None, max_tokens=None):
    """`(num_tokens, dim)` float32 matrix: row `i` is the vector of the word of index `i`.

    `word_index_or_vocabulary` is a `{word: index}` dict (Keras's `Tokenizer.word_index`,
    index 0 reserved) or a list whose positions are the indices (`TextVectorization.
    get_vocabulary()`). `num_tokens` is `max_tokens` if given (words of higher index are
    left out, as in the book), else the largest index + 1. Unknown words get zeros.
    """
    pairs = _indexed_words(word_index_or_vocabulary)
    if dim is None:
        if not vectors:
            raise ValueError("embedding_matrix needs `dim` when `vectors` is empty")
        dim = int(np.asarray(next(iter(vectors.values()))).shape[-1])
    rows = int(max_tokens) if max_tokens is not None else max((i for _, i in pairs),
                                                              default=-1) + 1
    matrix = np.zeros((rows, dim), np.float32)
    for word, i in pairs:
        if i >= rows:
            continue
        vec = vectors.get(word)
        if vec is not None:
            vec = np.asarray(vec, np.float32)
            if vec.shape != (dim,):
                raise ValueError(f"The vector of {word!r} has shape {vec.shape}, expected "
                                 f"({dim},)")
            matrix[i] = vec
    return matrix


def pretrained_embedding(word_index_or_vocabulary, vectors, dim=None, max_tokens=None,
                         trainable=False, mask_zero=False, input_length=None, name=None):
    """A built `Embedding` layer holding `embedding_matrix(...)`, frozen by default.

    The weights are set with `set_weights`, so they are what `model.variables`, `fit`
    and `predict` use (a fresh `model.init(key)` draws new random values instead).
    """
    from ..layers import Embedding

    matrix = embedding_matrix(word_index_or_vocabulary, vectors, dim=dim, max_tokens=max_tokens)
    kwargs = {"name": name} if name is not None else {}
    if input_length is not None:
        kwargs["input_length"] = input_length
    layer = Embedding(matrix.shape[0], matrix.shape[1], mask_zero=mask_zero, **kwargs)
    layer(np.zeros((1, 1), np.int32))  # builds the layer so its weights exist
    layer.set_weights([matrix])
    layer.trainable = bool(trainable)
    return layer


__all__ = ["embedding_matrix", "load_glove", "pretrained_embedding"]

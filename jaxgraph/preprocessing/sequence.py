"""Sequence utilities with keras.utils.pad_sequences semantics (numpy only)."""

import numpy as np


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre",
                  value=0.0):
    """Pad (or cut) each sequence to `maxlen` and stack them into one array.

    Returns `(len(sequences), maxlen, *sample_shape)`, where sample_shape comes from the
    first non-empty sequence (sequences of vectors keep their trailing dims). 'pre' pads
    or cuts at the start, as in Keras, so recurrent layers see the real data last.
    For strings pass a string dtype or `dtype=object` and a string `value`.
    """
    for name, choice in (("padding", padding), ("truncating", truncating)):
        if choice not in ("pre", "post"):
            raise ValueError(f"{name}={choice!r} not understood: use 'pre' or 'post'")
    if maxlen is not None and maxlen < 0:
        raise ValueError(f"maxlen must be a non-negative integer, got {maxlen}")
    try:
        sequences = list(sequences)
    except TypeError:
        raise ValueError(
            f"`sequences` must be a list of sequences, got {type(sequences).__name__}"
        ) from None
    lengths, sample_shape = [], None
    for i, seq in enumerate(sequences):
        try:
            lengths.append(len(seq))
        except TypeError:
            raise ValueError(
                f"`sequences` must be a list of sequences; item {i} is not one: {seq!r}"
            ) from None
        if sample_shape is None and len(seq):
            sample_shape = np.asarray(seq).shape[1:]
    sample_shape = sample_shape or ()
    maxlen = max(lengths, default=0) if maxlen is None else int(maxlen)
    dtype = np.dtype(dtype)
    if isinstance(value, str) and dtype.kind not in "OSU":
        raise ValueError(
            f"dtype {dtype} cannot hold the string padding value {value!r}; use a string "
            "dtype, or dtype=object for strings of any length."
        )
    out = np.full((len(sequences), maxlen, *sample_shape), value, dtype=dtype)
    for i, (seq, n) in enumerate(zip(sequences, lengths, strict=True)):
        kept = min(n, maxlen)
        if not kept:
            continue
        part = seq[n - kept:] if truncating == "pre" else seq[:kept]
        part = np.asarray(part, dtype=dtype)
        if part.shape[1:] != sample_shape:
            raise ValueError(
                f"sequence {i} has elements of shape {part.shape[1:]} but the first "
                f"non-empty sequence has {sample_shape}"
            )
        if padding == "post":
            out[i, :kept] = part
        else:
            out[i, maxlen - kept:] = part
    return out

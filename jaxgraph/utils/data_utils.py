"""Label and array helpers with Keras's semantics (numpy only)."""

import numpy as np


def to_categorical(y, num_classes=None, dtype="float32"):
    """One-hot encode integer labels; the class axis is added last.

    A trailing axis of size 1 (labels shaped (n, 1)) is replaced, as in Keras. Labels
    must be integers in [0, num_classes): a stray label raises instead of silently
    landing in the wrong column.
    """
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise ValueError(f"to_categorical needs integer class labels, got dtype {y.dtype}")
    if y.dtype.kind == "f":
        bad = y[~np.isfinite(y) | (y != np.round(y))]
        if bad.size:
            raise ValueError(f"to_categorical needs integer class labels, got {bad.flat[0]!r}")
    shape = y.shape[:-1] if y.ndim > 1 and y.shape[-1] == 1 else y.shape
    labels = y.reshape(-1).astype(np.int64)
    if labels.size and labels.min() < 0:
        raise ValueError(f"Class labels must be >= 0, got label {labels.min()}")
    if not num_classes:
        if not labels.size:
            raise ValueError("Cannot infer num_classes from an empty label array; pass it.")
        num_classes = int(labels.max()) + 1
    elif labels.size and labels.max() >= num_classes:
        raise ValueError(
            f"Label {labels.max()} is out of range for num_classes={num_classes} "
            f"(labels must lie in 0..{num_classes - 1})"
        )
    out = np.zeros((labels.size, num_classes), dtype=dtype)
    out[np.arange(labels.size), labels] = 1
    return out.reshape((*shape, num_classes))


def normalize(x, axis=-1, order=2):
    """Scale `x` to unit `order`-norm along `axis`; all-zero slices are left as zeros."""
    x = np.asarray(x)
    if not isinstance(axis, (int, np.integer)):
        raise TypeError(f"normalize needs a single integer axis, got {axis!r}")
    norm = np.linalg.norm(x, ord=order, axis=axis, keepdims=True)
    norm[norm == 0] = 1
    return x / norm

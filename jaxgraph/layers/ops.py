"""Arithmetic and indexing on symbolic tensors (`x + y`, `x * 2`, `x[:, 0]`).

Each operator becomes a small serializable layer, so graphs built with plain Python
operators still save, load and print like any other.
"""

from __future__ import annotations

import jax.numpy as jnp

from .base import Layer

_BINARY = {
    "add": jnp.add,
    "subtract": jnp.subtract,
    "multiply": jnp.multiply,
    "divide": jnp.divide,
    "matmul": jnp.matmul,
    "power": jnp.power,
}
_UNARY = {"negative": jnp.negative, "absolute": jnp.abs}


class TensorOp(Layer):
    """`op(x, y)` for a symbolic `x` and a symbolic or constant `y`."""

    def __init__(self, op: str, constant=None, reverse: bool = False, **kwargs):
        super().__init__(**kwargs)
        if op not in _BINARY and op not in _UNARY:
            raise ValueError(f"Unknown tensor op {op!r}")
        self.op = op
        self.constant = constant
        self.reverse = reverse

    def call(self, w, inputs):
        if self.op in _UNARY:
            return _UNARY[self.op](inputs)
        if isinstance(inputs, (list, tuple)):
            a, b = inputs
        else:
            a, b = inputs, jnp.asarray(self.constant, dtype=inputs.dtype)
        if self.reverse:
            a, b = b, a
        return _BINARY[self.op](a, b)


def symbolic_op(op, x, other=None, reverse=False):
    from ..graph.tensor import is_symbolic

    if op in _UNARY:
        return TensorOp(op)(x)
    if is_symbolic(other):
        pair = [other, x] if reverse else [x, other]
        return TensorOp(op)(pair)
    if hasattr(other, "tolist"):
        other = other.tolist()
    return TensorOp(op, constant=other, reverse=reverse)(x)


def _encode_key(key):
    if isinstance(key, tuple):
        return {"tuple": [_encode_key(k) for k in key]}
    if isinstance(key, slice):
        return {"slice": [key.start, key.stop, key.step]}
    if key is None:
        return {"newaxis": True}
    if key is Ellipsis:
        return {"ellipsis": True}
    if isinstance(key, int):
        return key
    raise TypeError(f"Unsupported index {key!r} on a symbolic tensor (use ints and slices)")


def _decode_key(key):
    if isinstance(key, dict):
        if "tuple" in key:
            return tuple(_decode_key(k) for k in key["tuple"])
        if "slice" in key:
            return slice(*key["slice"])
        if "newaxis" in key:
            return None
        if "ellipsis" in key:
            return Ellipsis
    return key


class GetItem(Layer):
    """`x[key]` with ints, slices, `None` and `...`."""

    def __init__(self, key, **kwargs):
        super().__init__(**kwargs)
        self.key = key if isinstance(key, (dict, int)) else _encode_key(key)

    def call(self, w, x):
        return x[_decode_key(self.key)]


def symbolic_getitem(x, key):
    return GetItem(_encode_key(key))(x)

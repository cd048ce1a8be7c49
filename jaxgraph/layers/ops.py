"""Arithmetic, indexing and `jaxgraph.ops` calls on symbolic tensors (`x + y`, `x[:, 0]`,
`ops.expand_dims(x, -1)`).

Each becomes a small serializable layer, so graphs built with plain Python operators
and ops still save, load and print like any other.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..graph.tensor import SymbolicTensor
from .base import Layer, unique_name

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


# `jaxgraph.ops` on symbolic tensors: one layer for every op. Its config holds the op's
# name and its constant arguments, with {"tensor": i} where the i-th input goes; loading
# resolves the name in `jaxgraph.ops.OPS` only, never by importing what a file names.


def _encode_arg(value, tensors: list, op: str):
    if type(value) is SymbolicTensor:
        tensors.append(value)
        return {"tensor": len(tensors) - 1}
    if isinstance(value, (list, tuple)):
        return [_encode_arg(v, tensors, op) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (type, np.dtype)):  # np.float32 has `shape` and `dtype` too
        return {"dtype": jnp.dtype(value).name}
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        array = np.asarray(value)
        return {"array": array.tolist(), "dtype": array.dtype.name}
    try:
        return {"dtype": jnp.dtype(value).name}
    except TypeError:
        raise TypeError(f"ops.{op}: cannot record argument {value!r} in a graph (use "
                        "tensors, numbers, strings, dtypes or tuples of them)") from None


def _decode_arg(value, tensors):
    if isinstance(value, list):  # JSON has no tuples; shapes and axes want them
        return tuple(_decode_arg(v, tensors) for v in value)
    if isinstance(value, dict):
        if "tensor" in value:
            return tensors[value["tensor"]]
        if "array" in value:
            return np.asarray(value["array"], dtype=value["dtype"])
        if "dtype" in value:
            return value["dtype"]
    return value


class OpLayer(Layer):
    """`jaxgraph.ops.<op>(...)` applied to symbolic tensors: a node of the graph."""

    def __init__(self, op: str, args=(), kwargs=None, **layer_kwargs):
        from .. import ops

        super().__init__(**layer_kwargs)
        if op not in ops.OPS:
            raise ValueError(f"Unknown op {op!r}: not a function of jaxgraph.ops")
        self.op = op
        self.op_args = list(args)
        self.op_kwargs = dict(kwargs or {})
        self._fn = ops.OPS[op]

    def call(self, w, inputs):
        args = [_decode_arg(a, inputs) for a in self.op_args]
        kwargs = {k: _decode_arg(v, inputs) for k, v in self.op_kwargs.items()}
        return self._fn(*args, **kwargs)

    def compute_output_spec(self, *args, **kwargs):
        try:
            return super().compute_output_spec(*args, **kwargs)
        except (ValueError, TypeError, IndexError) as e:
            shapes = [t.shape for t in args[0]]
            raise ValueError(f"ops.{self.op} (layer {self.name!r}) cannot be applied to "
                             f"inputs with shapes {shapes}: {e}") from e


def symbolic_call(op: str, args, kwargs):
    """The graph node for `jaxgraph.ops.<op>(*args, **kwargs)` with symbolic tensors."""
    tensors: list = []
    encoded_args = [_encode_arg(a, tensors, op) for a in args]
    encoded_kwargs = {k: _encode_arg(v, tensors, op) for k, v in kwargs.items()}
    return OpLayer(op, encoded_args, encoded_kwargs, name=unique_name(op))(tensors)

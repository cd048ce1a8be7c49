"""Symbolic tensors: what a layer call returns while a graph is being defined.

A symbolic tensor records only its static shape (batch dim `None`), its dtype and
which node produced it (node, output index). Values never live here: the graph is
a description, evaluated later by `jaxgraph.lowering`.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp


def canonical_dtype(dtype: Any) -> str:
    """'float32', 'int32', ... from any dtype spelling."""
    if dtype is None:
        return "float32"
    if isinstance(dtype, str) and dtype in ("string", "str"):
        return "string"
    try:
        return jnp.dtype(dtype).name
    except TypeError as e:
        raise TypeError(f"Unknown dtype {dtype!r}") from e


def canonical_shape(shape: Any) -> tuple[int | None, ...]:
    if shape is None:
        raise ValueError("A shape is required, got None")
    if isinstance(shape, int):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError as e:
        raise TypeError(f"A shape must be a tuple of ints or None, got {shape!r}") from e
    out = []
    for d in dims:
        if d is None:
            out.append(None)
        elif isinstance(d, (int,)) or hasattr(d, "__index__"):
            d = int(d)
            if d < 0:
                raise ValueError(f"Negative dimension {d} in shape {shape!r}")
            out.append(d)
        else:
            raise TypeError(f"A shape must be a tuple of ints or None, got {shape!r}")
    return tuple(out)


class SymbolicTensor:
    """A placeholder for a value flowing through a graph: shape, dtype, producer."""

    __slots__ = ("shape", "dtype", "node", "index", "name", "__weakref__")

    def __init__(self, shape, dtype="float32", node=None, index: int = 0, name=None):
        self.shape = canonical_shape(shape)
        self.dtype = canonical_dtype(dtype)
        self.node = node
        self.index = index
        self.name = name

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def layer(self):
        """The layer whose call produced this tensor."""
        return None if self.node is None else self.node.layer

    def __repr__(self) -> str:
        return f"<SymbolicTensor {self.name!r} shape={self.shape} dtype={self.dtype}>"

    def __len__(self):
        raise TypeError(
            f"Symbolic tensor {self.name!r} has no length; it is a placeholder in a graph "
            "definition. Use a layer (or layers.Lambda) to transform it."
        )

    def __bool__(self):
        raise TypeError(
            f"Symbolic tensor {self.name!r} has no truth value while the graph is defined."
        )

    def __iter__(self):
        raise TypeError(
            f"Cannot iterate over symbolic tensor {self.name!r}; it is a placeholder in a "
            "graph definition. Layers that return several tensors return a list."
        )

    # Arithmetic builds graph nodes, as in Keras: `x + y`, `2 * x`, `x[:, 0]`.
    def _op(self, name, other=None, reverse=False):
        from ..layers.ops import symbolic_op

        return symbolic_op(name, self, other, reverse)

    def __add__(self, o):
        return self._op("add", o)

    def __radd__(self, o):
        return self._op("add", o, True)

    def __sub__(self, o):
        return self._op("subtract", o)

    def __rsub__(self, o):
        return self._op("subtract", o, True)

    def __mul__(self, o):
        return self._op("multiply", o)

    def __rmul__(self, o):
        return self._op("multiply", o, True)

    def __truediv__(self, o):
        return self._op("divide", o)

    def __rtruediv__(self, o):
        return self._op("divide", o, True)

    def __matmul__(self, o):
        return self._op("matmul", o)

    def __rmatmul__(self, o):
        return self._op("matmul", o, True)

    def __pow__(self, o):
        return self._op("power", o)

    def __neg__(self):
        return self._op("negative")

    def __abs__(self):
        return self._op("absolute")

    def __getitem__(self, key):
        from ..layers.ops import symbolic_getitem

        return symbolic_getitem(self, key)


def is_symbolic(x) -> bool:
    return isinstance(x, SymbolicTensor)

"""`Input(...)`: the entry points of a graph."""

from __future__ import annotations

from ..layers.base import Layer
from .node import Node
from .tensor import SymbolicTensor, canonical_dtype, canonical_shape


class InputLayer(Layer):
    """Holds the placeholder tensor that `Input` returns; has no weights."""

    is_input_layer = True

    def __init__(self, shape=None, dtype="float32", batch_size=None, name=None, sparse=False,
                 batch_shape=None, input_shape=None, **kwargs):
        kwargs.pop("trainable", None)
        super().__init__(name=name, **kwargs)
        if shape is None and input_shape is not None:
            shape = input_shape
        if batch_shape is not None:
            batch_shape = canonical_shape(batch_shape)
            batch_size, shape = batch_shape[0], batch_shape[1:]
        if shape is None:
            raise ValueError("Input needs a shape, e.g. Input(shape=(784,))")
        if sparse:
            raise ValueError(f"Input {self.name!r}: sparse inputs are not supported")
        self.shape = canonical_shape(shape)
        self.batch_size = batch_size
        self.input_dtype = canonical_dtype(dtype)
        self.built = True
        node = Node(self, (), {})
        node.set_outputs(SymbolicTensor((batch_size,) + self.shape, self.input_dtype))
        node.output_tensors[0].name = self.name
        self._nodes.append(node)

    @property
    def output(self):
        return self._nodes[0].outputs

    def call(self, w, inputs):
        return inputs

    def get_config(self):
        return {
            "batch_shape": [self.batch_size, *self.shape],
            "dtype": self.input_dtype,
            "name": self.name,
        }


def Input(shape=None, dtype="float32", name=None, batch_size=None, batch_shape=None,
          sparse=False, tensor=None):
    """A symbolic input: `Input(shape=(784,))`, `Input(shape=(None,), dtype='int32')`."""
    if tensor is not None:
        raise ValueError("Input(tensor=...) is not supported; pass shape and dtype")
    if shape is None and batch_shape is None:
        raise ValueError("Input needs a shape, e.g. Input(shape=(784,))")
    layer = InputLayer(shape=shape, dtype=dtype, name=name, batch_size=batch_size,
                       batch_shape=batch_shape, sparse=sparse)
    return layer.output

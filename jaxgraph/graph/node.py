"""A node is one call of a layer on symbolic tensors.

Separating the layer (which owns the parameters) from the node (one use of it)
is what lets the same layer be called many times without cycles: every output
tensor points at its node, every node at its layer and input tensors.
"""

from __future__ import annotations

import jax

from .tensor import SymbolicTensor, is_symbolic


def flatten_call(args, kwargs):
    """Flatten (args, kwargs) keeping symbolic tensors and non-array values as leaves."""
    leaves, treedef = jax.tree_util.tree_flatten((tuple(args), dict(kwargs)), is_leaf=is_symbolic)
    return leaves, treedef


class Node:
    """One call of `layer`: which tensors went in, which came out."""

    __slots__ = ("layer", "leaves", "treedef", "input_tensors", "outputs", "output_tensors")

    def __init__(self, layer, args, kwargs):
        self.layer = layer
        self.leaves, self.treedef = flatten_call(args, kwargs)
        self.input_tensors: list[SymbolicTensor] = [x for x in self.leaves if is_symbolic(x)]
        self.outputs = None
        self.output_tensors: list[SymbolicTensor] = []

    def set_outputs(self, outputs):
        """Attach output specs, turning them into tensors produced by this node."""
        flat, treedef = jax.tree_util.tree_flatten(outputs, is_leaf=is_symbolic)
        tensors = []
        base = self.layer.name
        for i, spec in enumerate(flat):
            if not is_symbolic(spec):
                raise TypeError(
                    f"Layer {base!r} returned {type(spec).__name__} from compute_output_spec; "
                    "expected symbolic tensors"
                )
            name = base if len(flat) == 1 else f"{base}_{i}"
            tensors.append(SymbolicTensor(spec.shape, spec.dtype, node=self, index=i, name=name))
        self.output_tensors = tensors
        self.outputs = jax.tree_util.tree_unflatten(treedef, tensors)
        return self.outputs

    def call_args(self, value_of):
        """Rebuild (args, kwargs) with each symbolic tensor replaced by `value_of(t)`."""
        leaves = [value_of(x) if is_symbolic(x) else x for x in self.leaves]
        args, kwargs = jax.tree_util.tree_unflatten(self.treedef, leaves)
        return args, kwargs

    @property
    def is_input(self) -> bool:
        return getattr(self.layer, "is_input_layer", False)

    def __repr__(self):
        ins = [t.name for t in self.input_tensors]
        return f"<Node {self.layer.name} inputs={ins}>"

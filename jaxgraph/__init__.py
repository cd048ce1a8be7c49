"""jaxgraph: the Keras functional API, lowered to pure JAX functions."""

from . import activations, constraints, initializers, layers, regularizers
from .graph.input_layer import Input
from .models import Model, Sequential

__version__ = "0.1.0"

__all__ = [
    "Input",
    "Model",
    "Sequential",
    "activations",
    "constraints",
    "initializers",
    "layers",
    "regularizers",
]

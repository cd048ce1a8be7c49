"""jaxgraph: the Keras functional API, lowered to pure JAX functions.

Build graphs with `Input`, layers and `Model`; every model is also a pure function:
`variables = model.init(key)`, `outputs, state = model.apply(variables, x)`.
"""

import sys as _sys

from . import activations, constraints, dtype_policy, initializers, layers, regularizers
from .graph.input_layer import Input
from .models import Model, Sequential
from .training import losses, metrics, optimizers

# `jaxgraph.losses` etc. are the training modules themselves, importable by Keras's names.
for _name, _mod in (("losses", losses), ("metrics", metrics), ("optimizers", optimizers)):
    _sys.modules[f"{__name__}.{_name}"] = _mod

from . import (  # noqa: E402
    applications,
    callbacks,
    datasets,
    distribution,
    ensemble,
    models,
    ops,
    preprocessing,
    saving,
    tune,
    utils,
    vis,
)

mixed_precision = dtype_policy
__version__ = "0.1.0"

__all__ = [
    "Input",
    "Model",
    "Sequential",
    "activations",
    "applications",
    "callbacks",
    "constraints",
    "datasets",
    "distribution",
    "ensemble",
    "initializers",
    "layers",
    "losses",
    "metrics",
    "mixed_precision",
    "models",
    "ops",
    "optimizers",
    "preprocessing",
    "regularizers",
    "saving",
    "tune",
    "utils",
    "vis",
]

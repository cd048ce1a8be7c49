"""Lowering: graphs become pure JAX functions over a variables pytree."""

from .executor import (
    apply_model,
    constraints,
    gather_variables,
    init_variables,
    layout,
    regularization_loss,
    run_model,
    scatter_variables,
    trainable_mask,
)

__all__ = [
    "apply_model",
    "constraints",
    "gather_variables",
    "init_variables",
    "layout",
    "regularization_loss",
    "run_model",
    "scatter_variables",
    "trainable_mask",
]

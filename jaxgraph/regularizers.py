"""Weight penalties with Keras 3 names, defaults and configs.

A regularizer is a pure callable ``w -> scalar`` whose value the training loop adds to
the loss. Factors are plain Python floats, so regularizers are static under jit.
"""

import math

import jax.numpy as jnp

from ._registry import Configurable, Registry

_EPSILON = 1e-7  # Keras's backend.epsilon(), the floor on row norms


def _factor(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(f"Regularizer argument {name} must be a non-negative float, "
                         f"got {value!r}")
    return float(value)


class Regularizer(Configurable):
    """Base class: subclasses implement ``__call__(w)`` returning a scalar penalty."""

    def __call__(self, x):
        return jnp.zeros((), jnp.asarray(x).dtype)


class L1L2(Regularizer):
    """``l1 * sum(|w|) + l2 * sum(w**2)``."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(0.0 if l1 is None else l1, "l1")
        self.l2 = _factor(0.0 if l2 is None else l2, "l2")

    def __call__(self, x):
        x = jnp.asarray(x)
        penalty = jnp.zeros((), x.dtype)
        if self.l1:
            penalty = penalty + self.l1 * jnp.sum(jnp.abs(x))
        if self.l2:
            penalty = penalty + self.l2 * jnp.sum(jnp.square(x))
        return penalty

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(Regularizer):
    """``l1 * sum(|w|)``: pushes weights to exactly zero (sparsity)."""

    def __init__(self, l1=0.01):
        self.l1 = _factor(0.01 if l1 is None else l1, "l1")

    def __call__(self, x):
        return self.l1 * jnp.sum(jnp.abs(jnp.asarray(x)))

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    """``l2 * sum(w**2)``: weight decay folded into the loss."""

    def __init__(self, l2=0.01):
        self.l2 = _factor(0.01 if l2 is None else l2, "l2")

    def __call__(self, x):
        return self.l2 * jnp.sum(jnp.square(jnp.asarray(x)))

    def get_config(self):
        return {"l2": self.l2}


class OrthogonalRegularizer(Regularizer):
    """Penalizes the mean |cosine| between distinct rows (or columns) of a 2D weight."""

    def __init__(self, factor=0.01, mode="rows"):
        self.factor = _factor(factor, "factor")
        if mode not in ("rows", "columns"):
            raise ValueError(f"OrthogonalRegularizer mode must be 'rows' or 'columns', "
                             f"got {mode!r}")
        self.mode = mode

    def __call__(self, x):
        x = jnp.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"OrthogonalRegularizer needs a rank-2 weight, got shape {x.shape}")
        vectors = x if self.mode == "rows" else x.T
        norms = jnp.linalg.norm(vectors, axis=1, keepdims=True)
        unit = vectors / jnp.maximum(norms, _EPSILON)
        size = unit.shape[0]
        cosines = jnp.abs(unit @ unit.T) * (1.0 - jnp.eye(size, dtype=x.dtype))
        num_pairs = size * (size - 1) / 2.0
        return self.factor * 0.5 * jnp.sum(cosines) / num_pairs

    def get_config(self):
        return {"factor": self.factor, "mode": self.mode}


# Keras's lowercase spellings, usable as constructors: regularizers.l2(0.001).
l1, l2, l1_l2, orthogonal_regularizer = L1, L2, L1L2, OrthogonalRegularizer

_REGISTRY = Registry("regularizer", "jaxgraph.regularizers")
register = _REGISTRY.register
serialize = _REGISTRY.serialize


def get(identifier):
    """Resolve None, a name, a {'class_name', 'config'} dict, a class or a callable."""
    if identifier is None:
        return None
    if isinstance(identifier, str) and identifier == "l1_l2":  # Keras documents 0.01 for both
        return L1L2(l1=0.01, l2=0.01)
    return _REGISTRY.get(identifier)


for _cls, _names in [(Regularizer, ("regularizer",)), (L1, ("l1",)), (L2, ("l2",)),
                     (L1L2, ("l1_l2", "l1l2")),
                     (OrthogonalRegularizer, ("orthogonal_regularizer",))]:
    _REGISTRY.add_builtin(_cls, _cls.__name__, *_names)

"""Weight constraints with Keras 3 names, defaults and configs.

A constraint is a pure callable ``w -> projected w`` that the training loop applies
after each optimizer update.
"""

import jax.numpy as jnp

from ._registry import Configurable, Registry

_EPSILON = 1e-7  # Keras's backend.epsilon(), keeps zero-norm slices finite


def _axis(axis):
    return tuple(axis) if isinstance(axis, (list, tuple)) else axis


def _norms(w, axis):
    return jnp.sqrt(jnp.sum(jnp.square(w), axis=_axis(axis), keepdims=True))


class Constraint(Configurable):
    """Base class (and the identity constraint): subclasses implement ``__call__(w)``."""

    def __call__(self, w):
        return jnp.asarray(w)


class MaxNorm(Constraint):
    """Rescales each slice along ``axis`` whose L2 norm exceeds ``max_value``.

    ``axis=0`` constrains each unit of a Dense kernel (in, out); use ``[0, 1, 2]`` for
    the filters of a Conv2D kernel (kh, kw, in, out).
    """

    def __init__(self, max_value=2, axis=0):
        self.max_value, self.axis = max_value, axis

    def __call__(self, w):
        w = jnp.asarray(w)
        norms = _norms(w, self.axis)
        return w * (jnp.clip(norms, 0, self.max_value) / (_EPSILON + norms))

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(Constraint):
    """Clips negative weights to zero."""

    def __call__(self, w):
        return jnp.maximum(jnp.asarray(w), 0)


class UnitNorm(Constraint):
    """Scales each slice along ``axis`` to unit L2 norm."""

    def __init__(self, axis=0):
        self.axis = axis

    def __call__(self, w):
        w = jnp.asarray(w)
        return w / (_EPSILON + _norms(w, self.axis))

    def get_config(self):
        return {"axis": self.axis}


class MinMaxNorm(Constraint):
    """Moves each slice's norm toward [min_value, max_value]; ``rate`` < 1 moves it part way."""

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value, self.max_value, self.rate, self.axis = min_value, max_value, rate, axis

    def __call__(self, w):
        w = jnp.asarray(w)
        norms = _norms(w, self.axis)
        clipped = jnp.clip(norms, self.min_value, self.max_value)
        desired = self.rate * clipped + (1 - self.rate) * norms
        return w * (desired / (_EPSILON + norms))

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}


# Keras's lowercase spellings, usable as constructors: constraints.max_norm(3).
max_norm, non_neg, unit_norm, min_max_norm = MaxNorm, NonNeg, UnitNorm, MinMaxNorm

_REGISTRY = Registry("constraint", "jaxgraph.constraints")
register = _REGISTRY.register
serialize = _REGISTRY.serialize


def get(identifier):
    """Resolve None, a name, a {'class_name', 'config'} dict, a class or a callable."""
    return None if identifier is None else _REGISTRY.get(identifier)


for _cls, _names in [(Constraint, ("constraint",)), (MaxNorm, ("max_norm",)),
                     (NonNeg, ("non_neg",)), (UnitNorm, ("unit_norm",)),
                     (MinMaxNorm, ("min_max_norm",))]:
    _REGISTRY.add_builtin(_cls, _cls.__name__, *_names)

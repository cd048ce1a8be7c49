"""Weight constraints with Keras 3 names, defaults and configs.

A constraint is a pure callable ``w -> projected w`` that the training loop applies
after each optimizer update.
"""

import jax.numpy as jnp

_EPSILON = 1e-7  # Keras's backend.epsilon(), keeps zero-norm slices finite


def _axis(axis):
    return tuple(axis) if isinstance(axis, (list, tuple)) else axis


def _norms(w, axis):
    return jnp.sqrt(jnp.sum(jnp.square(w), axis=_axis(axis), keepdims=True))


class Constraint:
    """Base class (and the identity constraint): subclasses implement ``__call__(w)``."""

    def __call__(self, w):
        return jnp.asarray(w)

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


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

_OBJECTS = {}
_BUILTIN = set()


def register(name, obj=None):
    """Make ``get(name)`` and configs naming ``name`` resolve to ``obj`` (usable as decorator)."""
    if obj is None:
        return lambda o: register(name, o)
    if not isinstance(name, str) or not name:
        raise TypeError(f"register needs a non-empty string name, got {name!r}")
    if not callable(obj):
        raise TypeError(f"register({name!r}, ...) needs a class or callable, got {obj!r}")
    if name in _BUILTIN and _OBJECTS[name] is not obj:
        raise ValueError(f"{name!r} is a built-in constraint name; pick another")
    _OBJECTS[name] = obj
    return obj


def _lookup(name):
    if name not in _OBJECTS:
        raise ValueError(f"Unknown constraint {name!r}. Accepted: {', '.join(sorted(_OBJECTS))}")
    return _OBJECTS[name]


def get(identifier):
    """Resolve None, a name, a {'class_name', 'config'} dict, a class or a callable."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        identifier = _lookup(identifier)
    elif isinstance(identifier, dict):
        if "class_name" not in identifier:
            raise ValueError(f"Constraint config needs a 'class_name' key, got {identifier!r}")
        obj = _lookup(identifier["class_name"])
        config = identifier.get("config") or {}
        return obj.from_config(config) if isinstance(obj, type) else obj
    if isinstance(identifier, type):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret constraint identifier {identifier!r}")


def _name_of(obj):
    own = getattr(obj, "__name__", None)
    if _OBJECTS.get(own) is obj:
        return own
    for name, candidate in _OBJECTS.items():
        if candidate is obj:
            return name
    raise ValueError(f"{obj!r} is not registered; call jaxgraph.constraints.register(name, obj)"
                     " so it can be serialized")


def serialize(constraint):
    """JSON-able form that ``get`` turns back into an equal constraint."""
    if constraint is None:
        return None
    if isinstance(constraint, type) or not hasattr(constraint, "get_config"):
        return _name_of(constraint)
    return {"class_name": _name_of(type(constraint)), "config": constraint.get_config()}


for _cls, _names in [(Constraint, ("constraint",)), (MaxNorm, ("max_norm",)),
                     (NonNeg, ("non_neg",)), (UnitNorm, ("unit_norm",)),
                     (MinMaxNorm, ("min_max_norm",))]:
    for _name in (_cls.__name__, *_names):
        register(_name, _cls)
        _BUILTIN.add(_name)

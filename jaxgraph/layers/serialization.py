"""Turning layer constructor arguments into JSON and back.

Objects with `get_config` become `{'class_name', 'config'}`; activation functions
become their names. Constructors accept both forms (via `initializers.get`, ...),
so `from_config` is just `cls(**config)`.
"""

from __future__ import annotations

import numpy as np

from .. import activations


def serialize_value(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [serialize_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): serialize_value(v) for k, v in value.items()}
    if hasattr(value, "variable_dtype") and hasattr(value, "name"):  # a dtype policy
        return value.name
    if hasattr(value, "get_config"):
        return {"class_name": type(value).__name__, "config": value.get_config()}
    if callable(value):
        return activations.serialize(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Cannot serialize {value!r} of type {type(value).__name__} into a config")


def deserialize_layer(config, custom_objects=None):
    """Rebuild a layer from `{'class_name', 'config'}` (a layer instance passes through)."""
    from .base import Layer, get_layer_class

    if isinstance(config, Layer):
        return config
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"Expected a layer config {{'class_name', 'config'}}, got {config!r}")
    cls = get_layer_class(config["class_name"], custom_objects)
    inner = dict(config.get("config", {}))
    if custom_objects and hasattr(cls, "from_config"):
        try:
            return cls.from_config(inner, custom_objects=custom_objects)
        except TypeError:
            pass
    return cls.from_config(inner)


def serialize_layer(layer) -> dict:
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


# Functions referenced by configs (Lambda layers, custom losses): by name only, never code.
_FUNCTIONS: dict[str, object] = {}
_SAFE_MODULES = ("jax.numpy", "jax.nn", "jax.lax", "jax.scipy.special", "jaxgraph.")


def register_function(fn=None, name: str | None = None):
    """Make `fn` saveable by name in Lambda layers and configs (usable as a decorator)."""

    def deco(f):
        _FUNCTIONS[name or f"{f.__module__}.{f.__qualname__}"] = f
        return f

    return deco(fn) if fn is not None else deco


def function_name(fn, owner: str) -> str:
    for key, value in _FUNCTIONS.items():
        if value is fn:
            return key
    module = getattr(fn, "__module__", "") or ""
    qualname = getattr(fn, "__qualname__", "")
    if "<lambda>" in qualname or "<locals>" in qualname or not module:
        raise ValueError(
            f"Layer {owner!r} wraps an anonymous or local function, which cannot be saved "
            "without executing code. Define it at module level and decorate it with "
            "@jaxgraph.saving.register_function, or pass it via custom_objects when loading."
        )
    return f"{module}.{qualname}"


def resolve_function(name: str, custom_objects: dict | None = None):
    import importlib

    if custom_objects and name in custom_objects:
        return custom_objects[name]
    if name in _FUNCTIONS:
        return _FUNCTIONS[name]
    module, _, attr = name.rpartition(".")
    if module and (module in _SAFE_MODULES or module.startswith("jaxgraph.")):
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"Cannot resolve function {name!r}: {e}") from e
    raise ValueError(
        f"Unknown function {name!r}: register it with @jaxgraph.saving.register_function "
        "before loading, or pass custom_objects={name: fn}"
    )

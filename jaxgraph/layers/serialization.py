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
    cls = get_layer_class(config["class_name"], custom_objects,
                          registered_name=config.get("registered_name"),
                          module=config.get("module"))
    inner = dict(config.get("config", {}))
    if custom_objects and hasattr(cls, "from_config"):
        try:
            return cls.from_config(inner, custom_objects=custom_objects)
        except TypeError:
            pass
    return cls.from_config(inner)


def serialize_layer(layer) -> dict:
    """`{'class_name', 'config'}`, plus `module` / `registered_name` for non-builtin classes."""
    from .base import class_metadata

    return {"class_name": type(layer).__name__, **class_metadata(type(layer)),
            "config": layer.get_config()}


def serialize_object(obj):
    """Keras's `serialize_keras_object` for what a get_config holds: a layer or model as
    its record, containers element by element, plain values as they are."""
    from .base import Layer

    if isinstance(obj, Layer):
        return serialize_layer(obj)
    if isinstance(obj, (list, tuple)):
        return [serialize_object(v) for v in obj]
    if isinstance(obj, dict):
        return {k: serialize_object(v) for k, v in obj.items()}
    return serialize_value(obj)


def deserialize_object(config, custom_objects=None):
    """Keras's `deserialize_keras_object`, the inverse of `serialize_object`."""
    if isinstance(config, dict) and "class_name" in config and "config" in config:
        return deserialize_layer(config, custom_objects)
    if isinstance(config, list):
        return [deserialize_object(v, custom_objects) for v in config]
    if isinstance(config, dict):
        return {k: deserialize_object(v, custom_objects) for k, v in config.items()}
    return config


# Functions referenced by configs (Lambda layers, TextVectorization, custom losses): by
# name only, never code. A name resolves through `custom_objects`, the functions
# registered here, or the fixed table of pure array functions below; loading never
# imports a module a file names.
_FUNCTIONS: dict[str, object] = {}
#: The public modules whose functions a file may name ("jax.numpy.tanh"): pure array
#: functions only. Their objects are looked up in tables built from these modules
#: (imported by jaxgraph itself), never by importing what the file says.
_SAFE_MODULES = ("jax.numpy", "jax.numpy.linalg", "jax.nn", "jax.lax", "jax.scipy.special",
                 "jaxgraph.activations")
#: Functions of those modules that touch files, wrap Python callables or change
#: global state: never resolvable from a file.
_UNSAFE_NAMES = frozenset({
    "load", "save", "savez", "savez_compressed", "fromfile", "tofile", "from_dlpack",
    "frompyfunc", "fromfunction", "fromiter", "vectorize", "piecewise", "printoptions",
    "set_printoptions", "apply_along_axis", "apply_over_axes", "get", "register",
    "serialize", "deserialize",
})
_SAFE_TABLE: dict[str, object] | None = None


def _safe_table() -> dict[str, object]:
    global _SAFE_TABLE
    if _SAFE_TABLE is None:
        import types

        import jax
        import jax.nn
        import jax.numpy
        import jax.numpy.linalg
        import jax.scipy.special

        from .. import activations as jg_activations

        modules = {
            "jax.numpy": jax.numpy,
            "jax.numpy.linalg": jax.numpy.linalg,
            "jax.nn": jax.nn,
            "jax.lax": jax.lax,
            "jax.scipy.special": jax.scipy.special,
            "jaxgraph.activations": jg_activations,
        }
        assert set(modules) == set(_SAFE_MODULES)
        table = {}
        for module_name, module in modules.items():
            for attr, value in vars(module).items():
                if attr.startswith("_") or attr in _UNSAFE_NAMES:
                    continue
                if isinstance(value, (types.ModuleType, type)) or not callable(value):
                    continue
                table[f"{module_name}.{attr}"] = value
        _SAFE_TABLE = table
    return _SAFE_TABLE


def register_function(fn=None, name: str | None = None):
    """Make `fn` saveable by name in Lambda layers and configs (usable as a decorator).

    Registering again under the same name replaces the old function (a re-run cell).
    """

    def deco(f):
        _FUNCTIONS[name or f"{f.__module__}.{f.__qualname__}"] = f
        return f

    return deco(fn) if fn is not None else deco


def registered_function_name(fn) -> str | None:
    """The name `fn` is registered under (or its allow-listed public name), else None."""
    for key, value in reversed(list(_FUNCTIONS.items())):
        if value is fn:
            return key
    for key, value in _safe_table().items():
        if value is fn:
            return key
    return None


def function_name(fn, owner: str) -> str:
    name = registered_function_name(fn)
    if name is not None:
        return name
    module = getattr(fn, "__module__", "") or ""
    qualname = getattr(fn, "__qualname__", "")
    if "<lambda>" in qualname or "<locals>" in qualname or not module:
        raise ValueError(
            f"Layer {owner!r} wraps an anonymous or local function, which cannot be saved "
            "without executing code. Define it at module level and decorate it with "
            "@jaxgraph.saving.register_serializable(), or pass it via custom_objects when "
            "loading."
        )
    # Unregistered module-level function: saved by name; loading needs it registered
    # or passed as custom_objects (by this name or its short name).
    return f"{module}.{qualname}"


def short_function_name(name: str) -> str:
    """'pkg>fn' and 'module.fn' -> 'fn': the key `custom_objects` may use."""
    return name.rpartition(">")[2].rpartition(".")[2]


def resolve_function(name: str, custom_objects: dict | None = None, owner: str | None = None):
    """The function a config names: from `custom_objects` (by the full or the short name),
    the registered functions, or the fixed table of pure array functions (`_SAFE_MODULES`).

    Nothing is imported: any other name raises a ValueError that names `owner` (the
    layer) and tells how to make the function loadable.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"{owner or 'Config'}: a function name must be a non-empty string, "
                         f"got {name!r}")
    if custom_objects:
        for key in (name, short_function_name(name)):
            if key in custom_objects:
                return custom_objects[key]
    if name in _FUNCTIONS:
        return _FUNCTIONS[name]
    table = _safe_table()
    if name in table:
        return table[name]
    where = f"Layer {owner!r}" if owner else "The config"
    short = short_function_name(name)
    raise ValueError(
        f"{where} names the function {name!r}, which is not registered. Loading never "
        "imports modules or runs code named by a file; only registered functions and the "
        f"pure array functions of {', '.join(_SAFE_MODULES)} resolve by name. Decorate the "
        "function with @jaxgraph.saving.register_serializable() (or register_function) "
        f"before loading, or pass custom_objects={{{short!r}: {short}}}."
    )

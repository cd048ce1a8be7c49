"""Whole-model files: architecture, weights, compile settings and optimizer state in one zip.

The archive holds
  - `config.json`: format tag, jaxgraph version, the model's class name and config;
  - `model.weights.h5`: the weights in Keras 3's layout (see `weights_io`);
  - `compile.json`: the arguments `compile` was called with (when compiled);
  - `optimizer.npz`: the optimizer state as a list of plain arrays (when asked).
The suffix does not matter (`.h5`, `.keras`, `.jgraph`, none). Loading reads JSON
and numeric arrays only: classes and functions are looked up in registries by
name, never imported or unpickled from the file.
"""

from __future__ import annotations

import io
import json
import os
import time
import warnings
import zipfile

import numpy as np

from ..graph.functional import Functional
from ..layers.base import Layer, get_layer_class, register_layer
from ..layers.serialization import register_function
from .atomic import atomic_write
from .weights_io import WEIGHTS_MEMBER, apply_weights_h5, weights_to_bytes

FORMAT = "jaxgraph.model"
FORMAT_VERSION = 1
CONFIG_MEMBER = "config.json"
COMPILE_MEMBER = "compile.json"
OPTIMIZER_MEMBER = "optimizer.npz"


# ---------------------------------------------------------------------------- registration


def register_serializable(package: str = "Custom", name: str | None = None):
    """Decorator making a Layer subclass or a function loadable by name.

    A layer class is registered under its class name (what configs record) and
    `'<package>>name'`; a function under `'<package>>name'`, which is then the name
    its configs (Lambda layers, losses) store.
    """

    def decorator(obj):
        if isinstance(obj, type):
            if not issubclass(obj, Layer):
                raise TypeError(
                    f"register_serializable registers Layer subclasses or functions, "
                    f"got class {obj.__name__}"
                )
            register_layer(obj.__name__)(obj)
            register_layer(f"{package}>{name or obj.__name__}")(obj)
            if name:
                register_layer(name)(obj)
            return obj
        if callable(obj):
            fn_name = name or getattr(obj, "__name__", None)
            if not fn_name or fn_name == "<lambda>":
                raise ValueError("register_serializable needs name= for an anonymous function")
            return register_function(obj, name=f"{package}>{fn_name}")
        raise TypeError(f"register_serializable cannot register {obj!r}")

    return decorator


# ---------------------------------------------------------------------------- saving


def _json_bytes(value, what: str, path: str) -> bytes:
    try:
        return json.dumps(value, indent=1).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise TypeError(f"Cannot save {path!r}: the {what} is not JSON-serializable ({e})") from e


def _optimizer_arrays(model, path: str) -> list[np.ndarray] | None:
    getter = getattr(model, "get_optimizer_state", None)
    if not callable(getter):
        return None
    state = getter()
    if state is None:
        return None
    arrays = [np.asarray(a) for a in state]
    for i, a in enumerate(arrays):
        if a.dtype.kind in "OV":
            raise TypeError(
                f"Cannot save {path!r}: optimizer state array {i} has dtype {a.dtype}; "
                "only numeric arrays are saved"
            )
    return arrays


def save_model(model, path, include_optimizer: bool = True) -> None:
    """Write `model` (architecture, weights, compile settings, optimizer state) to one file."""
    from .. import __version__

    if not isinstance(model, Functional):
        raise TypeError(f"save_model expects a jaxgraph Model, got {type(model).__name__}")
    path = os.fspath(path)
    model._require_graph()
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "jaxgraph_version": __version__,
        "date_saved": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "class_name": type(model).__name__,
        "config": model.get_config(),
    }
    members = [(CONFIG_MEMBER, _json_bytes(config, "model config", path), zipfile.ZIP_DEFLATED)]
    members.append((WEIGHTS_MEMBER, weights_to_bytes(model), zipfile.ZIP_STORED))
    compile_config = getattr(model, "_compile_config", None)
    if compile_config is not None:
        members.append((COMPILE_MEMBER, _json_bytes(compile_config, "compile config", path),
                        zipfile.ZIP_DEFLATED))
        arrays = _optimizer_arrays(model, path) if include_optimizer else None
        if arrays is not None:
            buffer = io.BytesIO()
            np.savez(buffer, **{f"state_{i:06d}": a for i, a in enumerate(arrays)})
            members.append((OPTIMIZER_MEMBER, buffer.getvalue(), zipfile.ZIP_STORED))
    with atomic_write(path) as f:
        with zipfile.ZipFile(f, "w") as archive:
            for member, data, compression in members:
                archive.writestr(member, data, compress_type=compression)


# ---------------------------------------------------------------------------- loading


def _unknown_classes(config, custom_objects) -> list[str]:
    """Class names of layer configs (dicts with a name) that no registry resolves."""
    missing: list[str] = []

    def visit(value):
        if isinstance(value, dict):
            cls, inner = value.get("class_name"), value.get("config")
            if isinstance(cls, str) and isinstance(inner, dict) and "name" in inner:
                try:
                    get_layer_class(cls, custom_objects)
                except ValueError:
                    if cls not in missing:
                        missing.append(cls)
            for v in value.values():
                visit(v)
        elif isinstance(value, list):
            for v in value:
                visit(v)

    visit(config)
    return missing


def read_npz_arrays(data: bytes, source: str) -> list[np.ndarray]:
    """Arrays of an npz in key order; object arrays (pickles) are refused."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return [npz[key] for key in sorted(npz.files)]
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise ValueError(
                f"{source}: the file holds an object (pickled) array; jaxgraph never "
                "unpickles data, so it cannot be loaded"
            ) from e
        raise ValueError(f"{source}: unreadable array archive ({e})") from e


def _read_member_json(archive, member: str, source: str):
    try:
        return json.loads(archive.read(member).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{source}: {member} is not valid JSON ({e})") from e


def _check_archive(path: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such model file: {path!r}")
    if zipfile.is_zipfile(path):
        return
    with open(path, "rb") as f:
        head = f.read(8)
    if head == b"\x89HDF\r\n\x1a\n":
        raise ValueError(
            f"{path!r} is an HDF5 file, not a model saved by jaxgraph's model.save(). For a "
            "weights file build the model and call model.load_weights(path); for a Keras "
            "file call jaxgraph.saving.load_keras_weights(model, path)."
        )
    raise ValueError(f"{path!r} is not a jaxgraph model file (not a zip archive)")


def _build(config: dict, custom_objects, source: str):
    from .. import models  # noqa: F401  (registers Model and Sequential)

    try:
        cls = get_layer_class(config["class_name"], custom_objects)
        try:
            return cls.from_config(config["config"], custom_objects=custom_objects)
        except TypeError as e:
            if "custom_objects" not in str(e):
                raise
            return cls.from_config(config["config"])
    except ValueError as e:
        if "Unknown layer class" in str(e):
            missing = _unknown_classes(config, custom_objects)
            if config["class_name"] not in missing:
                try:
                    get_layer_class(config["class_name"], custom_objects)
                except ValueError:
                    missing.insert(0, config["class_name"])
            raise ValueError(
                f"Cannot load {source!r}: unknown class(es) {missing}. Import the module that "
                "defines them (decorate the classes with "
                "@jaxgraph.saving.register_serializable()) or pass "
                f"custom_objects={{{', '.join(repr(m) + ': ...' for m in missing)}}}."
            ) from e
        raise ValueError(f"Cannot load {source!r}: {e}") from e


def load_model(path, custom_objects: dict | None = None, compile: bool = True):
    """Rebuild a model written by `save_model`, with its weights (and compile state)."""
    source = os.fspath(path)
    _check_archive(source)
    with zipfile.ZipFile(source) as archive:
        names = set(archive.namelist())
        if CONFIG_MEMBER not in names:
            raise ValueError(f"{source!r} is a zip archive without {CONFIG_MEMBER}")
        config = _read_member_json(archive, CONFIG_MEMBER, source)
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            if "metadata.json" in names:
                raise ValueError(
                    f"{source!r} is a Keras .keras archive. jaxgraph does not rebuild Keras "
                    "configs: build the same architecture with jaxgraph and call "
                    "jaxgraph.saving.load_keras_weights(model, path)."
                )
            raise ValueError(f"{source!r}: {CONFIG_MEMBER} is not a jaxgraph model config")
        if config.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(
                f"{source!r} was written by a newer jaxgraph ({config.get('jaxgraph_version')}) "
                f"in format version {config['format_version']}; this one reads up to "
                f"{FORMAT_VERSION}"
            )
        model = _build(config, custom_objects, source)
        if WEIGHTS_MEMBER not in names:
            raise ValueError(f"{source!r} has no {WEIGHTS_MEMBER}")
        import h5py

        with h5py.File(io.BytesIO(archive.read(WEIGHTS_MEMBER)), "r") as f:
            apply_weights_h5(model, f, source)
        compile_config = None
        if compile and COMPILE_MEMBER in names:
            compile_config = _read_member_json(archive, COMPILE_MEMBER, source)
        optimizer_arrays = None
        if compile_config is not None and OPTIMIZER_MEMBER in names:
            optimizer_arrays = read_npz_arrays(archive.read(OPTIMIZER_MEMBER),
                                               f"{source}:{OPTIMIZER_MEMBER}")
    if compile_config is not None:
        if not callable(getattr(model, "compile", None)):
            warnings.warn(
                f"{source!r} was saved compiled, but {type(model).__name__} has no compile(); "
                "returning the model uncompiled",
                stacklevel=2,
            )
            return model
        if not isinstance(compile_config, dict):
            raise ValueError(f"{source!r}: {COMPILE_MEMBER} must hold a dict of compile args")
        model.compile(**compile_config)
        if optimizer_arrays is not None:
            setter = getattr(model, "set_optimizer_state", None)
            if callable(setter):
                setter(optimizer_arrays)
            else:
                warnings.warn(
                    f"{source!r} holds optimizer state, but {type(model).__name__} cannot "
                    "take it (no set_optimizer_state); the optimizer starts fresh",
                    stacklevel=2,
                )
    return model

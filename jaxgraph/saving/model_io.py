"""Whole-model files: architecture, weights, compile settings and optimizer state in one zip.

The archive holds
  - `config.json`: format tag, jaxgraph version, the model's class name and config;
  - `model.weights.h5`: the weights in Keras 3's layout (see `weights_io`);
  - `compile.json`: the arguments `compile` was called with (when compiled), with the
    current `model.loss_weights`;
  - `optimizer.npz`: the optimizer state as a list of plain arrays (when asked).
The suffix does not matter (`.h5`, `.keras`, `.jgraph`, none). `load_model` also
rebuilds a Keras 3 `.keras` archive (uncompiled) whose layers and ops jaxgraph has.
Loading reads JSON and numeric arrays only: classes and functions are looked up in
registries by name, never imported or unpickled from the file.

Custom objects, as in Keras:
  - a layer class registered with `register_serializable(package=...)` is recorded
    by its `'package>Name'` (and module) and found by it; an unregistered class by
    its name and module, so two classes of the same name never stand in for each
    other silently (an ambiguous name raises an error naming both);
  - a loss or metric function is recorded by its registered name (losses/metrics
    `register`, `register_serializable`) or else its `__name__`; loading resolves it
    through `custom_objects` or those registries, else raises a ValueError naming it
    and the fixes (`custom_objects`, registering, or `compile=False`);
  - an optimizer without a config (an `optax.GradientTransformation`) cannot be
    saved: `save_model` warns and writes no optimizer state, and `load_model`
    compiles with the saved loss and metrics, the default optimizer ('rmsprop') and
    a warning that the optimizer was not restored (recompile to choose one).
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
from ..layers.base import Layer, class_metadata, get_layer_class, register_layer_name
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

    A layer class is registered under Keras's `'<package>>name'`, which configs
    record next to the class name and loading resolves first (so `pkgA>Block` and
    `pkgB>Block` stay apart; registering a redefined class again replaces the old
    one); a function under `'<package>>name'`, which is then the name its configs
    (Lambda layers, losses, metrics) store.
    """

    def decorator(obj):
        if isinstance(obj, type):
            if not issubclass(obj, Layer):
                raise TypeError(
                    f"register_serializable registers Layer subclasses or functions, "
                    f"got class {obj.__name__}"
                )
            register_layer_name(obj, f"{package}>{name or obj.__name__}")
            return obj
        if callable(obj):
            fn_name = name or getattr(obj, "__name__", None)
            if not fn_name or fn_name == "<lambda>":
                raise ValueError("register_serializable needs name= for an anonymous function")
            return register_function(obj, name=f"{package}>{fn_name}")
        raise TypeError(f"register_serializable cannot register {obj!r}")

    return decorator


# ---------------------------------------------------------------------------- saving


def architecture(model) -> dict:
    """`{'class_name', ['module', 'registered_name',] 'config'}`: what rebuilds `model`.

    The one serializer of a model's architecture: `save_model` writes it into the
    file's config.json and `model.to_json()` returns it as a string; `_build`
    rebuilds a model from it.
    """
    from ..graph.config import layer_record

    _check_rebuildable(model, "save")
    return {"class_name": layer_record(model)["class_name"], **class_metadata(type(model)),
            "config": model.get_config()}


def _build_config(model) -> dict | None:
    """Keras's `build_config`: the input specs a Keras-style subclass, made again by
    `cls(**get_config())` without a graph, is traced on when loaded."""
    if model._keras_style_call() is None or model._input_struct is None:
        return None
    struct = model._input_struct
    return {"kind": struct.kind, "keys": struct.keys,
            "inputs": [{"shape": list(t.shape), "dtype": t.dtype} for t in struct.flat]}


def _build_from_config(model, build_config) -> None:
    if not build_config or getattr(model, "_input_struct", True) is not None:
        return
    from ..graph.input_layer import Input

    specs = [Input(shape=tuple(spec["shape"][1:]), dtype=spec["dtype"])
             for spec in build_config["inputs"]]
    kind = build_config["kind"]
    sample = (dict(zip(build_config["keys"], specs)) if kind == "dict"
              else specs if kind == "list" else specs[0])
    model._build_from_call(sample)


def _check_rebuildable(model, what: str) -> None:
    """A Keras-style subclass without its own get_config is written as the graph its
    `call` wires and comes back as a plain Model of it. Layers it holds outside that
    graph (a VAE's decoder used in compute_loss) would be lost, and their weights would
    have no place on loading: refuse here, as Keras refuses such a model's get_config."""
    if type(model).get_config is not Functional.get_config:
        return
    held = model._extra_layers()
    if held:
        cls = type(model).__name__
        attrs = {id(v): k for k, v in vars(model).items() if isinstance(v, Layer)}
        named = [f"self.{attrs[id(layer)]} (layer {layer.name!r})" if id(layer) in attrs
                 else f"layer {layer.name!r}" for layer in held]
        raise NotImplementedError(
            f"Cannot {what} model {model.name!r}: {cls} holds layers its call does not wire "
            f"({', '.join(named)}), and without a get_config "
            f"of its own it would be rebuilt as a plain Model of the graph its call wires, "
            f"without them. Implement {cls}.get_config() returning its __init__ arguments "
            f"(and from_config if they need deserializing), or use save_weights().")


def model_to_json(model, **kwargs) -> str:
    """The model's architecture as a JSON string, in Keras 3's layout.

    `{"module", "class_name", "config", "registered_name"}` with Keras's modules and
    tensor references, and op nodes as Keras's Operation records, so
    `keras.models.model_from_json` reads models of built-in layers and ops; user
    classes keep their own module; `kwargs` go to `json.dumps`.
    `model_from_json` rebuilds it with fresh weights.
    """
    if not isinstance(model, Functional):
        raise TypeError(f"to_json expects a jaxgraph Model, got {type(model).__name__}")
    from ..graph.config import keras_layer_record

    _check_rebuildable(model, "convert to JSON")
    arch = keras_layer_record(model)
    record = {"module": arch.get("module"), "class_name": arch["class_name"],
              "config": arch["config"], "registered_name": arch.get("registered_name")}
    try:
        return json.dumps(record, **kwargs)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"Cannot convert model {model.name!r} to JSON: its config is not "
            f"JSON-serializable ({e})"
        ) from e


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


def _unserializable_entries(value, where: str):
    """(where, description, reason) of every '__unserializable__' marker in a compile config."""
    from ..training.trainer import UNSERIALIZABLE

    if isinstance(value, dict):
        if value.get("class_name") == UNSERIALIZABLE:
            config = value.get("config") or {}
            yield where, config.get("description"), config.get("reason")
            return
        for v in value.values():
            yield from _unserializable_entries(v, where)
    elif isinstance(value, list):
        for v in value:
            yield from _unserializable_entries(v, where)


def _current_compile_config(model):
    """The compile record to save, with the loss weights the model uses now."""
    compile_config = getattr(model, "_compile_config", None)
    # compile()'s record keeps the complete file form (functions by name, markers for
    # what cannot be saved) in `saved`; a plain dict is saved as it is.
    compile_config = getattr(compile_config, "saved", compile_config)
    if not isinstance(compile_config, dict):
        return compile_config
    compile_config = dict(compile_config)
    if getattr(model, "_trainer", None) is not None and "loss_weights" in compile_config:
        try:
            current = [float(w) for w in model.loss_weights]
        except (AttributeError, RuntimeError, TypeError, ValueError):
            return compile_config
        saved = compile_config["loss_weights"]
        if saved is None and all(w == 1.0 for w in current):
            return compile_config
        names = list(getattr(model, "output_names", []) or [])
        if isinstance(saved, dict) and len(names) == len(current):
            compile_config["loss_weights"] = dict(zip(names, current))
        else:
            compile_config["loss_weights"] = current
    return compile_config


def save_model(model, path, include_optimizer: bool = True) -> None:
    """Write `model` (architecture, weights, compile settings, optimizer state) to one file.

    An optimizer that has no config (an `optax.GradientTransformation`) is not saved:
    a warning says so, no optimizer state is written, and `load_model` compiles with
    the default optimizer. Loss and metric functions are saved by name (see the
    module docstring).
    """
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
        **architecture(model),
    }
    build_config = _build_config(model)
    if build_config is not None:
        config["build_config"] = build_config
    members = [(CONFIG_MEMBER, _json_bytes(config, "model config", path), zipfile.ZIP_DEFLATED)]
    members.append((WEIGHTS_MEMBER, weights_to_bytes(model), zipfile.ZIP_STORED))
    compile_config = _current_compile_config(model)
    if compile_config is not None:
        members.append((COMPILE_MEMBER, _json_bytes(compile_config, "compile config", path),
                        zipfile.ZIP_DEFLATED))
        lost_optimizer = False
        if isinstance(compile_config, dict):
            for key in ("optimizer", "loss", "metrics", "weighted_metrics"):
                for where, description, reason in _unserializable_entries(
                        compile_config.get(key), key):
                    lost_optimizer = lost_optimizer or where == "optimizer"
                    then = ("load_model will compile with the default optimizer ('rmsprop') "
                            "and the optimizer state is not saved; call model.compile("
                            "optimizer=...) after loading to train with it again"
                            if where == "optimizer" else
                            "load_model will need compile=False")
                    warnings.warn(
                        f"Saving {path!r}: the {where} {description} cannot be serialized "
                        f"({reason}); {then}.",
                        stacklevel=2,
                    )
        arrays = (_optimizer_arrays(model, path)
                  if include_optimizer and not lost_optimizer else None)
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
                    get_layer_class(cls, custom_objects,
                                    registered_name=value.get("registered_name"),
                                    module=value.get("module"))
                except ValueError as e:
                    if "Ambiguous" in str(e):
                        raise
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

    def top_class():
        return get_layer_class(config["class_name"], custom_objects,
                               registered_name=config.get("registered_name"),
                               module=config.get("module"))

    try:
        cls = top_class()
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
                    top_class()
                except ValueError:
                    missing.insert(0, config["class_name"])
            raise ValueError(
                f"Cannot load {source!r}: unknown class(es) {missing}. Import the module that "
                "defines them (decorate the classes with "
                "@jaxgraph.saving.register_serializable()) or pass "
                f"custom_objects={{{', '.join(repr(m) + ': ...' for m in missing)}}}."
            ) from e
        raise ValueError(f"Cannot load {source!r}: {e}") from e


def model_from_json(json_string, custom_objects: dict | None = None):
    """A new model (fresh weights) with the architecture `model.to_json()` describes.

    Also reads the JSON Keras 3's `model.to_json()` writes for Functional and
    Sequential models of layers and `keras.ops` calls jaxgraph has. Class names resolve only through
    jaxgraph's layer registry, registered custom classes and `custom_objects`:
    nothing named in the string is ever imported or executed.
    """
    from .keras_interop import is_keras_config, keras_model_config

    source = "model JSON"
    if isinstance(json_string, (bytes, bytearray)):
        json_string = bytes(json_string).decode("utf-8")
    if not isinstance(json_string, str):
        raise TypeError(
            f"model_from_json expects a JSON string, got {type(json_string).__name__}"
        )
    try:
        config = json.loads(json_string)
    except ValueError as e:
        raise ValueError(f"model_from_json: not valid JSON ({e})") from e
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str) \
            or not isinstance(config.get("config"), dict):
        raise ValueError(
            "model_from_json: expected a model's JSON ({\"class_name\": ..., \"config\": "
            "{...}}), as model.to_json() returns it"
        )
    if is_keras_config(config):
        config = keras_model_config(config)
    return _build(config, custom_objects, source)


def _resolve_compile_config(compile_config: dict, custom_objects, source: str):
    """Compile arguments with function references and custom classes resolved.

    Returns `(arguments, optimizer_restored)`. Names resolve through `custom_objects`
    (full or short name), then the loss / metric / `register_serializable`
    registries; an unresolvable function raises a ValueError that names it.
    """
    from ..layers.serialization import _FUNCTIONS, _safe_table, short_function_name
    from ..training import losses as losses_mod
    from ..training import metrics as metrics_mod
    from ..training.trainer import FUNCTION_REF, UNSERIALIZABLE

    custom_objects = custom_objects or {}

    def function(ref, kind):
        name = ref.get("config")
        module = ref.get("module") or ""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{source!r}: {COMPILE_MEMBER} has a malformed {kind} "
                             f"function entry {ref!r}")
        short = short_function_name(name)
        for key in (name, short):
            if key in custom_objects:
                return custom_objects[key]
        registries = [losses_mod._CUSTOM, metrics_mod._CUSTOM]
        if kind != "loss":
            registries.reverse()
        registries += [_FUNCTIONS, _safe_table()]
        if module == "jaxgraph" or module.startswith("jaxgraph."):
            registries += [metrics_mod._FUNCTIONS, losses_mod._FUNCTIONS]
        for registry in registries:
            if name in registry:
                return registry[name]
        plural = "losses" if kind == "loss" else "metrics"
        raise ValueError(
            f"Cannot compile the model loaded from {source!r}: its {kind} {name!r} (a "
            f"function from module {module!r}) is not registered. Pass "
            f"custom_objects={{{short!r}: {short}}} to load_model, register it before "
            f"loading (@jaxgraph.saving.register_serializable() or "
            f"jaxgraph.{plural}.register({short!r}, fn)), or load with compile=False."
        )

    def resolve(value, kind, top=True):
        if isinstance(value, str):
            return custom_objects.get(value, value) if top else value
        if isinstance(value, list):
            return [resolve(v, kind, top) for v in value]
        if not isinstance(value, dict):
            return value
        if "class_name" in value and "config" in value:
            cls = value["class_name"]
            if cls == FUNCTION_REF:
                return function(value, kind)
            if cls == UNSERIALIZABLE:
                what = (value.get("config") or {}).get("description")
                raise ValueError(
                    f"Cannot compile the model loaded from {source!r}: its {kind} {what} "
                    "could not be saved. Load with compile=False and call compile() again."
                )
            config = value["config"]
            if isinstance(config, dict):
                config = {k: resolve(v, kind, top=(k == "fn")) for k, v in config.items()}
            obj = custom_objects.get(cls) if isinstance(cls, str) else None
            if isinstance(obj, type) and hasattr(obj, "from_config"):
                return obj.from_config(config or {})
            value = {**value, "config": config}
            if not top:
                return value
            # A Loss / Metric config becomes the object: compile() would read a dict
            # as one entry per output.
            try:
                return (losses_mod.get if kind == "loss" else metrics_mod.get)(value)
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"Cannot compile the model loaded from {source!r}: its {kind} {cls!r} "
                    f"cannot be rebuilt ({e}). Pass custom_objects={{{cls!r}: {cls}}} to "
                    "load_model, register the class before loading, or load with "
                    "compile=False."
                ) from e
        return {k: resolve(v, kind, top) for k, v in value.items()}

    resolved = dict(compile_config)
    for key, kind in (("loss", "loss"), ("metrics", "metric"),
                      ("weighted_metrics", "weighted metric")):
        if key in resolved:
            resolved[key] = resolve(resolved[key], kind)
    restored = True
    if "optimizer" in resolved:
        optimizer = resolved["optimizer"]
        if optimizer is None or (isinstance(optimizer, dict)
                                 and optimizer.get("class_name") == UNSERIALIZABLE):
            what = "" if optimizer is None else \
                f" {(optimizer.get('config') or {}).get('description')}"
            warnings.warn(
                f"{source!r}: the optimizer{what} was not saved (it has no config), so it "
                "was not restored: the model is compiled with the default optimizer "
                "('rmsprop') and fresh optimizer state. Call model.compile(optimizer=...) "
                "to train with your own.",
                stacklevel=3,
            )
            resolved["optimizer"] = "rmsprop"
            restored = False
        elif isinstance(optimizer, dict) and optimizer.get("class_name") in custom_objects:
            obj = custom_objects[optimizer["class_name"]]
            if isinstance(obj, type) and hasattr(obj, "from_config"):
                resolved["optimizer"] = obj.from_config(optimizer.get("config") or {})
    return resolved, restored


def _load_keras_archive(config, custom_objects, compile: bool, source: str):
    """A model saved by Keras 3 (`.keras`): its architecture rebuilt from the config (as
    `model_from_json` does) and its weights matched by layer name. Keras's compile
    settings name Keras objects, so the model comes back uncompiled."""
    from .keras_interop import keras_model_config, load_keras_weights

    try:
        if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
            raise ValueError(f"{CONFIG_MEMBER} is not a model config")
        model = _build(keras_model_config(config), custom_objects, source)
        load_keras_weights(model, source)
    except (ValueError, TypeError, KeyError, OSError) as e:
        reason = f"its config has no entry {e}" if isinstance(e, KeyError) else str(e)
        raise ValueError(
            f"{source!r} is a Keras .keras archive that jaxgraph cannot load ({reason}). "
            "If its layers are not ones jaxgraph rebuilds, build the same architecture "
            "with jaxgraph and call jaxgraph.saving.load_keras_weights(model, path)."
        ) from e
    if compile and config.get("compile_config"):
        warnings.warn(f"{source!r} was saved compiled by Keras; jaxgraph loads it "
                      "uncompiled: call model.compile(...) to train it", stacklevel=3)
    return model


def load_model(path, custom_objects: dict | None = None, compile: bool = True):
    """Rebuild a model written by `save_model`, with its weights (and compile state).

    Also reads a Keras 3 `.keras` archive of layers and ops jaxgraph has (uncompiled).

    `custom_objects` maps names to layer classes, functions (Lambda layers, losses,
    metrics) and classes the file refers to but no registry knows. A loss or metric
    function that cannot be resolved raises a ValueError naming it (`compile=False`
    loads the model uncompiled); an optimizer that could not be saved (optax) is
    replaced by the default one, with a warning.
    """
    source = os.fspath(path)
    _check_archive(source)
    with zipfile.ZipFile(source) as archive:
        names = set(archive.namelist())
        if CONFIG_MEMBER not in names:
            raise ValueError(f"{source!r} is a zip archive without {CONFIG_MEMBER}")
        config = _read_member_json(archive, CONFIG_MEMBER, source)
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            if "metadata.json" in names:
                return _load_keras_archive(config, custom_objects, compile, source)
            raise ValueError(f"{source!r}: {CONFIG_MEMBER} is not a jaxgraph model config")
        if config.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(
                f"{source!r} was written by a newer jaxgraph ({config.get('jaxgraph_version')}) "
                f"in format version {config['format_version']}; this one reads up to "
                f"{FORMAT_VERSION}"
            )
        model = _build(config, custom_objects, source)
        _build_from_config(model, config.get("build_config"))
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
        arguments, optimizer_restored = _resolve_compile_config(compile_config,
                                                                custom_objects, source)
        if not optimizer_restored:
            optimizer_arrays = None
        try:
            model.compile(**arguments)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"Cannot compile the model loaded from {source!r} with its saved settings: "
                f"{e} Pass the missing objects as custom_objects={{name: object}} (or "
                "register them) before loading, or load with compile=False."
            ) from e
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

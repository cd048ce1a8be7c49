"""Load weights saved by Keras into the equivalent jaxgraph model, matching layers by name.

`load_weights` follows Keras and matches by position, which breaks as soon as the
two models list their layers differently. Here every layer is found by its name
(and, for nested models, the names of the models around it), whatever the order,
and everything that does not line up, on either side, is reported in one error.

Sources: Keras 3 `.weights.h5` files and `.keras` archives (layer names come from
the `name` attribute of each `vars` group, or, in archives written before Keras
stored it, from the archive's `config.json`), and Keras 2 / legacy HDF5 files
(`model.save('m.h5')`), whose weights are listed per layer by name.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os

import numpy as np

from ..graph.functional import Functional
from ..layers.ops import is_keras_operation_record, layer_entry_from_keras
from ..lowering.executor import layout
from .weights_io import (
    WEIGHTS_MEMBER,
    _child,
    _join,
    assign_by_name,
    describe,
    get_group,
    is_legacy_h5,
    keras_snake_case,
    leaf_slots,
    open_weights_file,
    read_vars,
    vars_groups,
)


@dataclasses.dataclass
class _FileLayer:
    """A layer as the file records it: its name path and its weights by sub-group."""

    name: str
    name_path: tuple
    where: str  # for messages: the group path in the file
    groups: dict  # relative sub-group path ('' = own) -> list of arrays
    names: list | None = None  # legacy files: each array's weight name, owner prefix dropped

    @property
    def n_weights(self) -> int:
        return sum(len(v) for v in self.groups.values())


def _attr_name(group) -> str | None:
    value = group.attrs.get("name") if group is not None else None
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return value if isinstance(value, str) and value else None


# ---------------------------------------------------------------------------- Keras 3 files


def _config_names(config: dict) -> dict[str, str]:
    """Group path -> layer name, replaying Keras's naming over an archive's config."""
    names: dict[str, str] = {}

    def walk(entry, path):
        if not isinstance(entry, dict):
            return
        cls = entry.get("class_name")
        layers = (entry.get("config") or {}).get("layers")
        if not isinstance(layers, list):
            return
        used: dict[str, int] = {}
        for child in layers:
            if not isinstance(child, dict) or not isinstance(child.get("class_name"), str):
                continue
            if cls == "Sequential" and child["class_name"] == "InputLayer":
                continue  # Sequential.layers leaves its input out
            key = keras_snake_case(child["class_name"])
            if key in used:
                used[key] += 1
                key = f"{key}_{used[key]}"
            else:
                used[key] = 0
            child_path = _join(path, "layers", key)
            name = (child.get("config") or {}).get("name") or child.get("name")
            if isinstance(name, str):
                names.setdefault(child_path, name)
            walk(child, child_path)

    walk(config, "")
    return names


def _keras3_layers(f, source: str, archive) -> list[_FileLayer]:
    fallback: dict[str, str] = {}
    if archive is not None and "config.json" in archive.namelist():
        try:
            fallback = _config_names(json.loads(archive.read("config.json")))
        except (ValueError, UnicodeDecodeError):
            fallback = {}
    groups = vars_groups(f, source)
    out: list[_FileLayer] = []
    nameless: list[str] = []

    def walk(model_path: str, prefix: tuple):
        container = get_group(f, _join(model_path, "layers"), source)
        if container is None:
            return
        for key in container.keys():
            path = _join(model_path, "layers", key)
            name = _attr_name(get_group(f, f"{path}/vars", source)) or fallback.get(path)
            if get_group(f, f"{path}/layers", source) is not None:  # a nested model
                walk(path, prefix + ((name or key),))
                continue
            own = {p[len(path):].lstrip("/"): g for p, g in groups.items()
                   if p == path or p.startswith(path + "/")}
            if not own:
                continue
            if name is None:
                nameless.append(path)
                continue
            arrays = {rel: read_vars(g, source) for rel, g in own.items()}
            out.append(_FileLayer(name, prefix + (name,), path, arrays))

    walk("", ())
    if nameless:
        raise ValueError(
            f"{source!r} does not record layer names (written by an early Keras 3 release) "
            f"for {nameless}; load it by position with model.load_weights(path) instead"
        )
    return out


# ---------------------------------------------------------------------------- legacy files


def _legacy_layers(f, source: str, leaf_names: set[str]) -> list[_FileLayer]:
    """Keras 2 HDF5: `layer_names` at the root, `weight_names` per layer group."""
    root = f["model_weights"] if "model_weights" in f else f

    def text(v):
        return v.decode("utf-8") if isinstance(v, bytes) else str(v)

    per_layer: dict[str, list] = collections.OrderedDict()
    names: dict[str, list] = {}
    where: dict[str, str] = {}
    for group_name in (text(n) for n in root.attrs["layer_names"]):
        group = get_group(root, group_name, source)
        if group is None:
            raise ValueError(f"{source}: layer group {group_name!r} is listed but missing")
        for weight_name in (text(n) for n in group.attrs.get("weight_names", [])):
            parts = weight_name.split(":")[0].split("/")
            # The owning layer: the first path component that names a layer of the model
            # (a nested model's group lists its layers' weights as `<layer>/<weight>`).
            owner = next((p for p in parts[:-1] if p in leaf_names), None)
            if owner is None:  # a wrapper lists its wrapped model's `<layer>/<weight>`
                owner = group_name if group_name in leaf_names or len(parts) == 1 else parts[0]
            folder, _, leaf = weight_name.rpartition("/")
            holder = get_group(group, folder, source) if folder else group
            if holder is None or leaf not in holder:
                raise ValueError(
                    f"{source}: weight {weight_name!r} of layer {group_name!r} is listed "
                    "but missing"
                )
            value = np.asarray(_child(holder, leaf, source)[()])
            if value.dtype.kind in "OV":
                raise ValueError(f"{source}: weight {weight_name!r} is not numeric")
            per_layer.setdefault(owner, []).append(value)
            names.setdefault(owner, []).append(
                "/".join(parts[1:] if parts[0] == owner else parts))
            where.setdefault(owner, group_name)
    return [_FileLayer(name, (name,), where[name], {"": arrays}, names[name])
            for name, arrays in per_layer.items()]


# ---------------------------------------------------------------------------- matching


def load_keras_weights(model, path) -> None:
    """Load a Keras `.weights.h5`, `.keras` or legacy `.h5` file into `model` by layer name.

    Nothing is assigned unless every weighted layer on both sides finds its
    counterpart with the same number and shapes of weights; otherwise one
    `ValueError` lists every unmatched or mismatched layer and weight.
    """
    if not isinstance(model, Functional):
        raise TypeError(f"load_keras_weights expects a jaxgraph Model, got {type(model)!r}")
    source = os.fspath(path)
    entries, _ = layout(model)
    with open_weights_file(source) as (f, archive):
        legacy = is_legacy_h5(f)
        if legacy:
            file_layers = _legacy_layers(f, source, {layer.name for layer, _ in entries})
        else:
            if archive is not None and WEIGHTS_MEMBER not in archive.namelist():
                raise ValueError(f"{source!r} has no {WEIGHTS_MEMBER}")
            file_layers = _keras3_layers(f, source, archive)

    by_path = {fl.name_path: fl for fl in file_layers}
    by_name: dict[str, list[_FileLayer]] = collections.defaultdict(list)
    for fl in file_layers:
        by_name[fl.name].append(fl)
    taken: set[int] = set()
    problems: list[str] = []
    loaded: dict[int, dict[str, np.ndarray]] = {}

    pairs = []
    for layer, lpath in entries:
        fl = None if legacy else by_path.get(tuple(lpath))
        if fl is None:
            candidates = [c for c in by_name.get(layer.name, []) if id(c) not in taken]
            if len(candidates) > 1:
                problems.append(
                    f"model layer {describe(layer)} at {'/'.join(lpath)}: the file has "
                    f"{len(candidates)} layers named {layer.name!r} "
                    f"({[c.where for c in candidates]}); cannot tell which"
                )
                continue
            fl = candidates[0] if candidates else None
        if fl is None:
            problems.append(
                f"model layer {describe(layer)} at {'/'.join(lpath)} "
                f"({len(layer.weights)} weights): no layer of that name in the file"
            )
            continue
        taken.add(id(fl))
        pairs.append((layer, fl))

    for layer, fl in pairs:
        specs = {w.name: w for w in layer.weights}
        if legacy:
            order = [w.name for w in layer.weights]
            if sorted(fl.names) == sorted(order):  # Keras 2 listed trainable weights first
                order = fl.names
            plan = [("", order)]
        else:
            plan = [(s.path, s.weights) for s in leaf_slots(layer, "") if s.weights]
        ok = True
        expected_groups = {rel for rel, _ in plan}
        for rel in fl.groups:
            if rel not in expected_groups:
                problems.append(
                    f"layer {describe(layer)}: the file has weights at "
                    f"{_join(fl.where, rel, 'vars')} ({len(fl.groups[rel])}) that the model "
                    "layer does not have"
                )
                ok = False
        values = {}
        for rel, names in plan:
            arrays = fl.groups.get(rel, [])
            where = _join(fl.where, rel)
            if len(arrays) != len(names):
                problems.append(
                    f"layer {describe(layer)}: expects {len(names)} weights {names} "
                    f"(file group {where}), the file has {len(arrays)}"
                )
                ok = False
                continue
            for name, value in zip(names, arrays):
                want = tuple(specs[name].shape)
                if tuple(value.shape) != want:
                    problems.append(
                        f"layer {describe(layer)} weight {name!r}: expected shape {want}, "
                        f"the file ({where}) has {tuple(value.shape)}"
                    )
                    ok = False
                values[name] = value
        if ok:
            loaded[id(layer)] = values

    for fl in file_layers:
        if id(fl) not in taken and fl.n_weights:
            problems.append(
                f"file layer {fl.name!r} at {fl.where} ({fl.n_weights} weights): no layer "
                "of that name in the model"
            )
    if problems:
        raise ValueError(
            f"Cannot load Keras weights from {source!r} into model {model.name!r} by layer "
            f"name ({len(problems)} problem(s)):\n  " + "\n  ".join(problems)
        )
    assign_by_name(model, loaded)


# ---------------------------------------------------------------------------- Keras JSON configs

#: Keras 3 layer config entries jaxgraph's layers do not take, with the value that
#: means "feature unused" (anything else is kept, and the layer says it cannot).
_KERAS_ONLY_DEFAULTS = {"quantization_config": None, "lora_rank": None, "lora_alpha": None,
                        "ragged": False, "optional": False}
_KERAS_TENSOR = "__keras_tensor__"


def _is_keras_module(module) -> bool:
    return isinstance(module, str) and (module == "keras" or module.startswith("keras."))


def is_keras_config(config) -> bool:
    """Whether a model config (`{'class_name', 'config', ...}`) was written by Keras."""
    def visit(value) -> bool:
        if isinstance(value, dict):
            if _is_keras_module(value.get("module")) or value.get("class_name") == _KERAS_TENSOR:
                return True
            return any(visit(v) for v in value.values())
        if isinstance(value, list):
            return any(visit(v) for v in value)
        return False

    return visit(config)


def _keras_ref(value) -> bool:
    return (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)
            and all(isinstance(v, int) for v in value[1:]))


def _keras_struct(value, where: str, models=frozenset()) -> dict:
    """Keras's `input_layers` / `output_layers` as jaxgraph's single / list / dict form.

    Keras counts a nested functional model's own node as its node 0 in these
    references (not in call arguments), so references to `models` shift down by one.
    """
    def ref(r):
        if not _keras_ref(r):
            raise ValueError(f"Keras config: malformed tensor reference {r!r} in {where}")
        name, node, index = r
        if name in models and node > 0:
            node -= 1
        return {"__tensor__": [name, node, index]}

    if _keras_ref(value):
        return {"single": ref(value)}
    if isinstance(value, dict):
        return {"dict": {str(k): ref(v) for k, v in value.items()}}
    if isinstance(value, list):
        return {"list": [ref(v) for v in value]}
    raise ValueError(f"Keras config: malformed {where} {value!r}")


def keras_model_config(config: dict) -> dict:
    """A Keras 3 model config (`model.to_json()`, a `.keras` config.json) in jaxgraph's form.

    A plain rewrite of dicts: tensor references (`__keras_tensor__` with its
    `keras_history`) become jaxgraph's, `input_layers` / `output_layers` take the
    single / list / dict form, dtype policies become their names, Keras's modules
    and build/compile records are dropped, and so are config entries Keras writes for
    features left unused (`quantization_config: null`, `ragged: false`, ...). A
    `training=False` (or None) Keras recorded for a call is dropped too: Keras lets
    the model's own `training` override it, which is what jaxgraph does without it.
    Operation records (`keras.ops` calls, the mask ops Keras inserts) become op nodes
    through jaxgraph's fixed table of Keras op classes. Class names then resolve
    through jaxgraph's registry like any config; nothing is imported.
    """
    def convert(value, key=None):
        if isinstance(value, list):
            return [convert(v) for v in value]
        if not isinstance(value, dict):
            return value
        cls = value.get("class_name")
        inner = value.get("config")
        if is_keras_operation_record(value):  # a `keras.ops` call: an op node
            return layer_entry_from_keras({k: convert(v, k) if k != "module" else v
                                           for k, v in value.items()})
        if cls == _KERAS_TENSOR and isinstance(inner, dict):
            history = inner.get("keras_history")
            if not _keras_ref(history):
                raise ValueError(f"Keras config: tensor without a keras_history: {value!r}")
            return {"__tensor__": list(history)}
        if cls in ("DTypePolicy", "FloatDTypePolicy") and isinstance(inner, dict) \
                and isinstance(inner.get("name"), str):
            return inner["name"]
        out = {}
        for k, v in value.items():
            if k in ("build_config", "compile_config"):
                continue
            if k == "module" and (v is None or _is_keras_module(v)):
                continue
            # Keras's built-ins record their own class name ("Functional"); only a
            # "package>Name" is a registration that may choose the class.
            if k == "registered_name" and (v is None or v == cls or ">" not in str(v)):
                continue
            if k in _KERAS_ONLY_DEFAULTS and v == _KERAS_ONLY_DEFAULTS[k] and key == "config":
                continue
            out[k] = convert(v, k)
        if isinstance(out.get("kwargs"), dict) and "args" in out \
                and out["kwargs"].get("training", True) in (False, None):
            out["kwargs"] = {k: v for k, v in out["kwargs"].items() if k != "training"}
        if isinstance(out.get("layers"), list) and "input_layers" in out \
                and "output_layers" in out:
            models = frozenset(
                entry.get("name") for entry in value["layers"] if isinstance(entry, dict)
                and entry.get("class_name") in ("Functional", "Model")
                and _is_keras_module(entry.get("module")))
            out["input_layers"] = _keras_struct(value["input_layers"], "input_layers", models)
            out["output_layers"] = _keras_struct(value["output_layers"], "output_layers",
                                                 models)
        return out

    return convert(config)

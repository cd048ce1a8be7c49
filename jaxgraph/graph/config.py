"""get_config / from_config for functional graphs.

A graph is saved as its layers (class and constructor config) plus, for each layer,
the calls made of it inside this graph; a call's arguments keep their structure with
each tensor replaced by a reference `[layer_name, call_index, output_index]`.
Rebuilding replays the calls in dependency order, so shared layers stay shared.
"""

from __future__ import annotations

import jax

from ..layers.ops import OpNode
from ..layers.serialization import deserialize_layer, serialize_layer, serialize_value
from .tensor import is_symbolic

_REF = "__tensor__"
_KERAS_TENSOR = "__keras_tensor__"
#: Keras's record of a plain functional model (its `Functional` class lives there).
FUNCTIONAL_RECORD = {"module": "keras.src.models.functional", "class_name": "Functional",
                     "registered_name": "Functional"}


def _is_plain_model(layer) -> bool:
    """jaxgraph's own `Model(inputs, outputs)` (not Sequential, not a user subclass)."""
    return type(layer).__module__ in ("jaxgraph.models", "jaxgraph.graph.functional") \
        and type(layer).__name__ in ("Model", "Functional")


def layer_record(layer) -> dict:
    """`serialize_layer`, naming a plain functional model "Functional" as Keras 3 does."""
    entry = serialize_layer(layer)
    if _is_plain_model(layer):
        entry["class_name"] = "Functional"
    return entry


def keras_layer_record(layer) -> dict:
    """The record Keras 3 writes for `layer` (`module`, `class_name`, `config`,
    `registered_name`), so `keras.models.model_from_json` can read it; user classes
    keep jaxgraph's record (their module), which Keras cannot know anyway."""
    from ..layers.base import _is_builtin
    from .sequential import Sequential

    if _is_plain_model(layer):
        return {**FUNCTIONAL_RECORD, "config": functional_config(layer, keras=True)}
    if isinstance(layer, Sequential) and _is_builtin(type(layer)):
        config = layer.get_config()
        config["layers"] = [keras_layer_record(sub) for sub in layer._stack]
        return {"module": "keras", "class_name": "Sequential", "config": config,
                "registered_name": None}
    entry = serialize_layer(layer)
    if not _is_builtin(type(layer)):
        return entry
    return {"module": "keras.layers", "class_name": entry["class_name"],
            "config": _keras_inner_layers(entry["config"]), "registered_name": None}


def _keras_inner_layers(value):
    """Give the layer records inside a config (a Bidirectional's `layer`, an RNN's
    `cell`) Keras's module: Keras looks nested layers up by module, not by name."""
    from ..layers.base import _DEFINED_LAYERS, _is_builtin

    if isinstance(value, list):
        return [_keras_inner_layers(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _keras_inner_layers(v) for k, v in value.items()}
    if "module" not in value and isinstance(value.get("config"), dict) and any(
            _is_builtin(c) for c in _DEFINED_LAYERS.get(value.get("class_name"), {}).values()):
        out = {"module": "keras.layers", **out, "registered_name": None}
    return out


def _node_lists(model):
    """For each layer (by id): this graph's calls of it, in order."""
    calls: dict[int, list] = {}
    for t in model.inputs:
        calls.setdefault(id(t.node.layer), []).append(t.node)
    for node in model._nodes_in_order:
        calls.setdefault(id(node.layer), []).append(node)
    return calls


def functional_config(model, keras: bool = False) -> dict:
    """The graph's config; `keras=True` writes Keras 3's layout (tensor references as
    `__keras_tensor__` with shape and dtype, `input_layers` / `output_layers` as bare
    references, layer records with Keras's modules, op nodes as Keras's Operation
    records) for `to_json`."""
    calls = _node_lists(model)
    where = {}
    for nodes in calls.values():
        for i, node in enumerate(nodes):
            where[id(node)] = i

    def ref(t):
        history = [t.node.layer.name, where[id(t.node)], t.index]
        if keras:
            return {"class_name": _KERAS_TENSOR, "config": {
                "shape": list(t.shape), "dtype": t.dtype, "keras_history": history}}
        return {_REF: history}

    def keras_ref(t):
        # Keras counts a nested functional model's own node first in these references.
        offset = 1 if _is_plain_model(t.node.layer) else 0
        return [t.node.layer.name, where[id(t.node)] + offset, t.index]

    layers = []
    for layer in model.layers:
        # Op nodes (`ops.mean(x)`, `x + y`, `x[0]`) in Keras's layout: Keras's Operation
        # record (constant arguments in its config) and Keras's call arguments.
        operation = keras and isinstance(layer, OpNode) and layer.keras_compatible()
        inbound = []
        for node in calls.get(id(layer), []):
            if node.is_input:
                continue
            args, kwargs = node.call_args(ref)
            if operation:
                args, kwargs = layer.keras_call_args(args[0])
            inbound.append({"args": serialize_value(list(args)),
                            "kwargs": serialize_value(kwargs)})
        if operation:
            entry = layer.keras_record()
        else:
            entry = keras_layer_record(layer) if keras else layer_record(layer)
        entry["name"] = layer.name
        entry["inbound_nodes"] = inbound
        layers.append(entry)

    def struct(s):
        if keras:
            refs = [keras_ref(t) for t in s.flat]
            if s.kind == "dict":
                return dict(zip(s.keys, refs))
            return refs if s.kind == "list" else refs[0]
        refs = [ref(t) for t in s.flat]
        if s.kind == "dict":
            return {"dict": dict(zip(s.keys, refs))}
        if s.kind == "list":
            return {"list": refs}
        return {"single": refs[0]}

    return {
        "name": model.name,
        "trainable": model.trainable,
        "layers": layers,
        "input_layers": struct(model._input_struct),
        "output_layers": struct(model._output_struct),
    }


def functional_from_config(cls, config: dict, custom_objects=None):
    layers = {}
    pending = []
    for entry in config["layers"]:
        layer = deserialize_layer(entry, custom_objects)
        if layer.name != entry["name"]:
            raise ValueError(f"Layer config names {entry['name']!r} but built {layer.name!r}")
        layers[entry["name"]] = layer
        pending.append((layer, list(entry.get("inbound_nodes", []))))
    produced: dict[tuple, list] = {}
    for layer in layers.values():
        if layer.is_input_layer:
            produced[(layer.name, 0)] = [layer.output]

    def resolve(value):
        if isinstance(value, dict) and _REF in value:
            name, idx, out = value[_REF]
            return produced[(name, idx)][out]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return value

    def ready(value):
        if isinstance(value, dict) and _REF in value:
            name, idx, _ = value[_REF]
            return (name, idx) in produced
        if isinstance(value, dict):
            return all(ready(v) for v in value.values())
        if isinstance(value, list):
            return all(ready(v) for v in value)
        return True

    done_calls = {layer.name: (1 if layer.is_input_layer else 0) for layer in layers.values()}
    remaining = sum(len(nodes) for _, nodes in pending)
    while remaining:
        progressed = False
        for layer, nodes in pending:
            while nodes and ready(nodes[0]):
                call = nodes.pop(0)
                outputs = layer(*resolve(call["args"]), **resolve(call["kwargs"]))
                flat = jax.tree_util.tree_leaves(outputs, is_leaf=is_symbolic)
                produced[(layer.name, done_calls[layer.name])] = flat
                done_calls[layer.name] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            stuck = [layer.name for layer, nodes in pending if nodes]
            raise ValueError(f"Model config is inconsistent: cannot rebuild calls of {stuck}")

    def unstruct(s):
        if "dict" in s:
            return {k: resolve(v) for k, v in s["dict"].items()}
        if "list" in s:
            return [resolve(v) for v in s["list"]]
        return resolve(s["single"])

    return cls(unstruct(config["input_layers"]), unstruct(config["output_layers"]),
               name=config.get("name"), trainable=config.get("trainable", True))

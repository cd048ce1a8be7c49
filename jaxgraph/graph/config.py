"""get_config / from_config for functional graphs.

A graph is saved as its layers (class and constructor config) plus, for each layer,
the calls made of it inside this graph; a call's arguments keep their structure with
each tensor replaced by a reference `[layer_name, call_index, output_index]`.
Rebuilding replays the calls in dependency order, so shared layers stay shared.
"""

from __future__ import annotations

import jax

from ..layers.serialization import deserialize_layer, serialize_layer, serialize_value
from .tensor import is_symbolic

_REF = "__tensor__"


def _node_lists(model):
    """For each layer (by id): this graph's calls of it, in order."""
    calls: dict[int, list] = {}
    for t in model.inputs:
        calls.setdefault(id(t.node.layer), []).append(t.node)
    for node in model._nodes_in_order:
        calls.setdefault(id(node.layer), []).append(node)
    return calls


def functional_config(model) -> dict:
    calls = _node_lists(model)
    where = {}
    for nodes in calls.values():
        for i, node in enumerate(nodes):
            where[id(node)] = i

    def ref(t):
        return {_REF: [t.node.layer.name, where[id(t.node)], t.index]}

    layers = []
    for layer in model.layers:
        inbound = []
        for node in calls.get(id(layer), []):
            if node.is_input:
                continue
            args, kwargs = node.call_args(ref)
            inbound.append({"args": serialize_value(list(args)),
                            "kwargs": serialize_value(kwargs)})
        entry = serialize_layer(layer)
        entry["name"] = layer.name
        entry["inbound_nodes"] = inbound
        layers.append(entry)

    def struct(s):
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

"""Weights files in Keras 3's `.weights.h5` layout, so files move between the two.

Keras 3 addresses weights by position, not by layer name: it walks `model.layers`
and stores each layer under `layers/<snake_case(class name)>[_<n>]/vars/<i>`,
counting repeated class names in the order of `model.layers`; nested models add a
`layers/...` level of their own, recurrent layers keep their weights in a `cell`
sub-group and wrappers in `forward_layer`/`backward_layer`/`layer` sub-groups.
Every `vars` group carries the object's name as an attribute. A layer reached a
second time (a layer shared by an outer and a nested model) is stored once, at
its first position. This module reproduces that walk for a jaxgraph model (with
Keras's ordering of a functional graph's layers), so a file written here loads in
Keras and the other way round, for the same architecture.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import warnings
import zipfile

import numpy as np

from ..graph.functional import Functional
from ..graph.sequential import Sequential as _SequentialGraph
from ..layers.base import Layer
from .atomic import write_bytes_atomic

WEIGHTS_MEMBER = "model.weights.h5"  # the weights inside a `.keras` / jaxgraph archive

# Classes whose Keras counterpart keeps its weights in a `cell` sub-layer.
_RNN_CLASSES = frozenset(
    {"RNN", "SimpleRNN", "GRU", "LSTM", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"}
)
# Groups Keras may write inside a layer that hold no model weights (random-generator state).
_IGNORED_GROUPS = frozenset({"seed_generator"})


# ---------------------------------------------------------------------------- naming


def keras_snake_case(name: str) -> str:
    """The group name Keras derives from a class name (`Conv2D` -> `conv2d`).

    Differs from `layers.base.to_snake_case` on digits: Keras never splits `2D`.
    """
    name = re.sub(r"\W+", "", name)
    # An underscore before each capitalised word (not at the start) ...
    name = re.sub(r"(?<=.)([A-Z][a-z]+)", r"_\1", name)
    # ... and between a lower-case letter and the capital that follows it.
    name = re.sub(r"(?<=[a-z])([A-Z])", r"_\1", name)
    return name.lower()


def keras_class_key(layer) -> str:
    """The class name Keras would record for the equivalent object."""
    cls_name = type(layer).__name__
    if isinstance(layer, Functional) and not isinstance(layer, _SequentialGraph):
        # `keras.Model(inputs, outputs)` is a `Functional`; subclasses keep their name.
        return "Functional" if cls_name in ("Model", "Functional") else cls_name
    return cls_name


def _mro_names(layer) -> set[str]:
    return {c.__name__ for c in type(layer).__mro__}


# ---------------------------------------------------------------------------- ordering


def keras_layer_order(model) -> list[Layer]:
    """`model.layers` in the order Keras would list the same graph.

    Keras sorts a functional graph's operations by decreasing depth (distance to
    the outputs, the largest over all calls of a layer), breaking ties by the
    order a depth-first walk from the outputs first reaches them. Repeated class
    names are numbered in this order, so it decides which file group is which.
    """
    if isinstance(model, _SequentialGraph):
        return list(model.layers)
    model._require_graph()
    # Depth-first from each output: pre-order index of layers, post-order of nodes.
    first_seen: dict[int, int] = {}
    post_order: list = []
    finished: set[int] = set()
    for out in model.outputs:
        node = out.node
        if node is None or id(node) in finished:
            continue
        stack = [(node, iter(node.input_tensors if not node.is_input else ()))]
        in_progress = {id(node)}
        first_seen.setdefault(id(node.layer), len(first_seen))
        while stack:
            current, pending = stack[-1]
            advanced = False
            for tensor in pending:
                child = tensor.node
                if child is None or id(child) in finished or id(child) in in_progress:
                    continue
                first_seen.setdefault(id(child.layer), len(first_seen))
                in_progress.add(id(child))
                stack.append((child, iter(child.input_tensors if not child.is_input else ())))
                advanced = True
                break
            if not advanced:
                stack.pop()
                in_progress.discard(id(current))
                finished.add(id(current))
                post_order.append(current)
    in_graph = {id(n) for n in post_order}
    node_depth: dict[int, int] = {}
    layer_depth: dict[int, int] = {}
    for node in reversed(post_order):
        depth = node_depth.setdefault(id(node), 0)
        depth = max(depth, layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = depth
        node_depth[id(node)] = depth
        if node.is_input:
            continue
        for tensor in node.input_tensors:
            parent = tensor.node
            if parent is not None and id(parent) in in_graph:
                node_depth[id(parent)] = max(depth + 1, node_depth.get(id(parent), 0))
    for tensor in model.inputs:  # inputs no output depends on still belong to the model
        layer = tensor.node.layer
        if id(layer) not in layer_depth:
            layer_depth[id(layer)] = 0
            first_seen[id(layer)] = -1
    layers = list(model.layers)
    known = [lay for lay in layers if id(lay) in layer_depth]
    ordered = sorted(known, key=lambda lay: (-layer_depth[id(lay)], first_seen[id(lay)]))
    return ordered + [lay for lay in layers if id(lay) not in layer_depth]


# ---------------------------------------------------------------------------- layout


@dataclasses.dataclass
class Slot:
    """One `vars` group of the file and which weights of which layer it holds."""

    path: str  # the group holding `vars` ('' for the root)
    name: str  # the `name` attribute Keras writes on `vars`
    layer: Layer | None = None  # the jaxgraph layer that owns the weights
    weights: list[str] = dataclasses.field(default_factory=list)  # names in file order

    @property
    def vars_path(self) -> str:
        return f"{self.path}/vars" if self.path else "vars"


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def _wrapper_parts(layer) -> dict[int, str]:
    """id(inner layer) -> the prefix the wrapper puts before its weight names."""
    parts = getattr(layer, "_parts", None)
    if not callable(parts):
        return {}
    try:
        return {id(sub): prefix for prefix, sub in parts()}
    except (NotImplementedError, TypeError, AttributeError):
        return {}


def _sub_slots(obj, path: str, prefix: str, leaf: Layer) -> list[Slot]:
    """Slots for `obj` (a leaf layer or a layer inside a wrapper), Keras's nesting."""
    fwd, bwd = getattr(obj, "forward_layer", None), getattr(obj, "backward_layer", None)
    if isinstance(fwd, Layer) and isinstance(bwd, Layer):
        prefixes = _wrapper_parts(obj)
        out = [Slot(path, obj.name, leaf)]
        for attr, sub, default in (("forward_layer", fwd, "forward_"),
                                   ("backward_layer", bwd, "backward_")):
            out += _sub_slots(sub, _join(path, attr), prefix + prefixes.get(id(sub), default),
                              leaf)
        return out
    inner = getattr(obj, "layer", None)
    if isinstance(inner, Functional) and getattr(obj, "__dict__", {}).get("_all_inner") == [
            inner]:  # a wrapped model: Keras writes the model's own walk under `layer`
        prefixes = _wrapper_parts(obj)
        slots = [Slot(path, obj.name, leaf)]
        _walk_model(inner, _join(path, "layer"), {id(inner)}, slots,
                    lambda child, child_path: _sub_slots(
                        child, child_path, prefix + prefixes.get(id(child), ""), leaf))
        return slots
    if isinstance(inner, Layer) and id(inner) in _wrapper_parts(obj):
        sub_prefix = _wrapper_parts(obj)[id(inner)]
        return [Slot(path, obj.name, leaf)] + _sub_slots(inner, _join(path, "layer"),
                                                          prefix + sub_prefix, leaf)
    groups = getattr(obj, "keras_weight_groups", None)
    if callable(groups):  # e.g. MultiHeadAttention: projections stored as sublayers
        return [Slot(_join(path, group), names[0].split("/")[0] if group else obj.name, leaf,
                     [prefix + n for n in names])
                for group, names in groups().items()]
    names = [prefix + w.name for w in obj.weights]
    if _mro_names(obj) & _RNN_CLASSES:
        cell = getattr(obj, "cell", None)
        cell_name = cell.name if isinstance(cell, Layer) else \
            f"{keras_snake_case(type(obj).__name__)}_cell"
        return [Slot(path, obj.name, leaf), Slot(_join(path, "cell"), cell_name, leaf, names)]
    return [Slot(path, obj.name, leaf, names)]


def leaf_slots(layer: Layer, path: str) -> list[Slot]:
    """The groups a (non-model) layer's weights occupy, relative to the file root."""
    slots = _sub_slots(layer, path, "", layer)
    covered = [n for s in slots for n in s.weights]
    own = [w.name for w in layer.weights]
    if sorted(covered) != sorted(own):  # an unfamiliar wrapper: keep it flat
        return [Slot(path, layer.name, layer, own)]
    return slots


def weight_plan(model) -> list[Slot]:
    """Every `vars` group Keras would write for `model`, in walk order."""
    if not isinstance(model, Functional):
        raise TypeError(f"Expected a jaxgraph Model, got {type(model).__name__}")
    model._require_graph()
    slots: list[Slot] = []
    _walk_model(model, "", {id(model)}, slots, leaf_slots)
    return slots


def _walk_model(m, path: str, visited: set[int], slots: list[Slot], leaf_fn) -> None:
    """Append the slots of model `m` at `path`; `leaf_fn(layer, path)` gives a leaf's."""
    slots.append(Slot(path, m.name))
    used: dict[str, int] = {}
    # Then the layers a subclass holds as attributes but does not wire (a VAE's decoder):
    # their weights are the model's too.
    for child in keras_layer_order(m) + m._extra_layers():
        key = keras_snake_case(keras_class_key(child))
        if key in used:
            used[key] += 1
            key = f"{key}_{used[key]}"
        else:
            used[key] = 0
        if id(child) in visited:
            continue
        visited.add(id(child))
        child_path = _join(path, "layers", key)
        if isinstance(child, Functional):
            _walk_model(child, child_path, visited, slots, leaf_fn)
        else:
            slots.extend(leaf_fn(child, child_path))


def describe(layer: Layer) -> str:
    return f"{layer.name!r} ({type(layer).__name__})"


# ---------------------------------------------------------------------------- writing


def _write_dataset(group, key: str, value: np.ndarray) -> None:
    if value.dtype.name == "bfloat16":  # stored as opaque 2-byte values, as Keras does
        ds = group.create_dataset(key, data=value)
        ds.attrs["dtype"] = "bfloat16"
    else:
        group.create_dataset(key, data=value)


def weights_to_bytes(model) -> bytes:
    """The model's weights as the bytes of a Keras-layout HDF5 file."""
    import h5py

    plan = weight_plan(model)
    values: dict[int, dict[str, np.ndarray]] = {}
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        for slot in plan:
            group = f.create_group(slot.vars_path)
            group.attrs["name"] = slot.name
            if not slot.weights:
                continue
            layer = slot.layer
            if id(layer) not in values:
                arrays = layer.get_weights()
                values[id(layer)] = {w.name: a for w, a in zip(layer.weights, arrays)}
            for i, name in enumerate(slot.weights):
                _write_dataset(group, str(i), np.asarray(values[id(layer)][name]))
    return buffer.getvalue()


def save_weights(model, path) -> None:
    """Write the model's weights to `path` (any suffix) in Keras 3's `.weights.h5` layout."""
    write_bytes_atomic(path, weights_to_bytes(model))


# ---------------------------------------------------------------------------- reading


def _is_hdf5(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"


@contextlib.contextmanager
def open_weights_file(path):
    """Open an HDF5 weights file, or the weights inside a `.keras`/jaxgraph archive.

    Yields `(h5py.File, archive or None)`; the archive stays open for readers that
    also want its `config.json`.
    """
    import h5py

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such weights file: {path!r}")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if WEIGHTS_MEMBER not in archive.namelist():
                raise ValueError(
                    f"{path!r} is a zip archive without {WEIGHTS_MEMBER!r}; it is not a "
                    f"Keras .keras file nor a file written by jaxgraph's model.save()"
                )
            data = archive.read(WEIGHTS_MEMBER)
            with h5py.File(io.BytesIO(data), "r") as f:
                yield f, archive
        return
    if not _is_hdf5(path):
        raise ValueError(
            f"{path!r} is neither an HDF5 weights file nor a .keras/jaxgraph archive"
        )
    with h5py.File(path, "r") as f:
        yield f, None


def _child(group, name: str, source: str):
    """`group[name]`, refusing links that could point outside the file."""
    import h5py

    kind = group.get(name, default=None, getlink=True)
    if isinstance(kind, (h5py.ExternalLink, h5py.SoftLink)):
        raise ValueError(f"{source}: refusing to follow the link {group.name}/{name}")
    return group[name]


def get_group(f, path: str, source: str):
    """The group at `path` or None, following no links."""
    import h5py

    node = f
    for part in path.split("/"):
        if not isinstance(node, h5py.Group) or part not in node:
            return None
        node = _child(node, part, source)
    return node if isinstance(node, h5py.Group) else None


def read_vars(group, source: str) -> list[np.ndarray]:
    """The datasets `0, 1, ...` of a `vars` group, in order."""
    import h5py

    keys = [k for k in group.keys() if isinstance(_child(group, k, source), h5py.Dataset)]
    try:
        keys.sort(key=int)
    except ValueError as e:
        raise ValueError(
            f"{source}: group {group.name} holds datasets {sorted(keys)}, expected "
            "numbered variables 0, 1, ... (Keras 3 layout)"
        ) from e
    out = []
    for k in keys:
        ds = _child(group, k, source)
        value = ds[()]
        if ds.attrs.get("dtype") in ("bfloat16", b"bfloat16"):
            import ml_dtypes

            value = np.frombuffer(np.ascontiguousarray(value).tobytes(),
                                  dtype=ml_dtypes.bfloat16).reshape(ds.shape)
        elif value.dtype.kind in "OV":
            raise ValueError(
                f"{source}: dataset {ds.name} has dtype {value.dtype}, which is not numeric"
            )
        out.append(np.asarray(value))
    return out


def is_legacy_h5(f) -> bool:
    """Keras 2 / tf.keras HDF5 files list layers in a `layer_names` attribute."""
    root = f["model_weights"] if "model_weights" in f else f
    return "layer_names" in root.attrs


def vars_groups(f, source: str, under: str = "layers") -> dict[str, object]:
    """path -> `vars` group for every group below `under` that holds datasets."""
    import h5py

    found: dict[str, object] = {}
    start = get_group(f, under, source)
    if start is None:
        return found

    def visit(group, path):
        for name in group.keys():
            child = _child(group, name, source)
            if not isinstance(child, h5py.Group):
                continue
            if name in _IGNORED_GROUPS:
                continue
            if name == "vars":
                if any(isinstance(_child(child, k, source), h5py.Dataset) for k in child):
                    found[path] = child
            else:
                visit(child, _join(path, name))

    visit(start, under)
    return found


def load_weights(model, path, skip_mismatch: bool = False) -> None:
    """Load a Keras-layout weights file (or the weights of a `.keras`/jaxgraph archive).

    Layers are matched by position as Keras does; every shape or count mismatch is
    reported at once. With `skip_mismatch=True` the mismatching layers keep their
    current weights (with a warning) and the rest load.
    """
    source = os.fspath(path)
    with open_weights_file(source) as (f, _):
        if is_legacy_h5(f):
            raise ValueError(
                f"{source!r} is a Keras 2 (legacy HDF5) weights file; load it with "
                "jaxgraph.saving.load_keras_weights(model, path), which matches layers by name"
            )
        apply_weights_h5(model, f, source, skip_mismatch=skip_mismatch)


def apply_weights_h5(model, f, source: str, skip_mismatch: bool = False) -> None:
    """Assign the weights of an open Keras-layout file to `model`, matching by position."""
    plan = weight_plan(model)
    problems: list[str] = []
    bad_layers: set[int] = set()
    loaded: dict[int, dict[str, np.ndarray]] = {}
    consumed: set[str] = set()
    for slot in plan:
        if not slot.weights:
            continue
        layer = slot.layer
        consumed.add(slot.path)
        group = get_group(f, slot.vars_path, source)
        arrays = read_vars(group, source) if group is not None else []
        specs = {w.name: w for w in layer.weights}
        if len(arrays) != len(slot.weights):
            problems.append(
                f"layer {describe(layer)} at {slot.vars_path}: expected {len(slot.weights)} "
                f"weights {slot.weights}, the file has {len(arrays)}"
            )
            bad_layers.add(id(layer))
            continue
        for name, value in zip(slot.weights, arrays):
            expected = specs[name].shape
            if tuple(value.shape) != tuple(expected):
                problems.append(
                    f"layer {describe(layer)} weight {name!r} ({slot.vars_path}): expected "
                    f"shape {tuple(expected)}, got {tuple(value.shape)}"
                )
                bad_layers.add(id(layer))
            loaded.setdefault(id(layer), {})[name] = value
    for path, group in vars_groups(f, source).items():
        if path not in consumed:
            label = group.attrs.get("name", "")
            label = label.decode() if isinstance(label, bytes) else label
            problems.append(
                f"file group {path} (layer {label!r}) holds {len(group)} weights that no "
                "layer of the model takes"
            )
    if problems and not skip_mismatch:
        raise ValueError(
            f"Cannot load weights from {source!r} into model {model.name!r} "
            f"({len(problems)} mismatch(es)):\n  " + "\n  ".join(problems)
        )
    if problems:
        warnings.warn(
            f"Skipped mismatching weights while loading {source!r} into {model.name!r}:\n  "
            + "\n  ".join(problems),
            stacklevel=3,
        )
    assign_by_name(model, {k: v for k, v in loaded.items() if k not in bad_layers})


def assign_by_name(model, loaded: dict[int, dict[str, np.ndarray]]) -> None:
    """Set each layer's weights (keyed by id(layer), then weight name; shapes checked).

    Every weight of a layer is given, so the values are stored directly instead of
    through `set_weights`, which would first create (randomly initialize) the old ones.
    """
    import jax.numpy as jnp

    from ..lowering.executor import layout

    by_id = {id(layer): layer for layer, _ in layout(model)[0]}
    for key, arrays in loaded.items():
        layer = by_id[key]
        values = {}
        for w in layer.weights:
            value = np.asarray(arrays[w.name], dtype=w.dtype)
            if value.shape != tuple(w.shape):
                raise ValueError(
                    f"Layer {layer.name!r}: weight {w.name!r} has shape {tuple(w.shape)}, "
                    f"got {value.shape}"
                )
            values[w.name] = jnp.asarray(value)
        layer._set_values(values)

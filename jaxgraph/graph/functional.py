"""`Functional`: an immutable graph of layer calls from inputs to outputs.

Construction walks back from the outputs once, checks the graph (inputs from
`Input`, nothing disconnected, unique layer names) and fixes a topological order.
Evaluation lives in `jaxgraph.lowering`; this module only describes.
"""

from __future__ import annotations

import inspect
from typing import Any

import jax
import numpy as np

from ..layers.base import Layer
from .tensor import SymbolicTensor, is_symbolic


class Structure:
    """How a user grouped tensors: one, a list, or a dict keyed by name."""

    def __init__(self, value, what: str):
        if isinstance(value, dict):
            # Keras 3 (and every JAX pytree) flattens a dict in sorted key order: inputs,
            # outputs, layers and weights then come in the same order as Keras's.
            items = sorted(value.items(), key=lambda kv: str(kv[0]))
            self.kind, self.keys = "dict", [str(k) for k, _ in items]
            flat = [v for _, v in items]
        elif isinstance(value, (list, tuple)):
            self.kind, self.keys = "list", None
            flat = list(value)
        else:
            self.kind, self.keys = "single", None
            flat = [value]
        for i, t in enumerate(flat):
            if not is_symbolic(t):
                where = self.keys[i] if self.keys else i
                raise TypeError(
                    f"Model {what} must be symbolic tensors (from Input or a layer call); "
                    f"{what}[{where!r}] is {type(t).__name__}"
                )
        self.flat: list[SymbolicTensor] = flat

    def pack(self, values: list):
        if self.kind == "dict":
            return dict(zip(self.keys, values))
        if self.kind == "list":
            return list(values)
        return values[0]

    def unpack(self, value, names: list[str], what: str) -> list:
        """Values given by the user, in flat order; dicts are matched by name."""
        n = len(self.flat)
        if isinstance(value, dict):
            missing = [k for k in names if k not in value]
            unknown = [k for k in value if k not in names]
            if unknown or missing:
                raise ValueError(
                    f"Model {what} given as a dict with keys {sorted(value)}, but the model "
                    f"expects {names}"
                    + (f"; unknown: {unknown}" if unknown else "")
                    + (f"; missing: {missing}" if missing else "")
                )
            return [value[k] for k in names]
        if isinstance(value, (list, tuple)) and not (n == 1 and _is_array_like_row(value)):
            if len(value) != n:
                raise ValueError(
                    f"The model expects {n} {what} ({names}), but received {len(value)}"
                )
            return list(value)
        if n != 1:
            raise ValueError(
                f"The model expects {n} {what} ({names}), but received a single array; "
                "pass a list or a dict keyed by input name"
            )
        return [value]


def _specs_for_shapes(input_shape):
    """`build()`'s shapes (with the batch dim) as shape specs, in the same structure."""
    def one(shape):
        return SymbolicTensor(tuple(shape), "float32")

    if isinstance(input_shape, dict):
        return {k: one(v) for k, v in input_shape.items()}
    if isinstance(input_shape, (list, tuple)) and input_shape and \
            isinstance(input_shape[0], (list, tuple)):
        return [one(v) for v in input_shape]
    return one(input_shape)


def _takes_training(fn) -> bool:
    try:
        return "training" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _is_array_like_row(value) -> bool:
    """A list of numbers (one array given as a Python list), not a list of arrays."""
    return len(value) > 0 and isinstance(value[0], (int, float, np.number))


def topological_nodes(inputs: list[SymbolicTensor], outputs: list[SymbolicTensor]):
    """Nodes needed to compute `outputs` from `inputs`, each after its inputs."""
    input_ids = {id(t) for t in inputs}
    input_names = [t.name for t in inputs]
    done: set[int] = set()
    order = []
    for out in outputs:
        stack = [(out, None, False)]
        while stack:
            tensor, consumer, expanded = stack.pop()
            if id(tensor) in input_ids:
                continue
            node = tensor.node
            if node is None:
                raise ValueError(f"Tensor {tensor.name!r} was not produced by any layer call")
            if id(node) in done:
                continue
            if node.is_input:
                needed_by = f"layer {consumer!r}" if consumer else "the outputs"
                raise ValueError(
                    f"Graph disconnected: cannot obtain value for input {tensor.name!r} "
                    f"(Input layer {node.layer.name!r}), needed by {needed_by}. The model's "
                    f"inputs are {input_names}; add {tensor.name!r} to Model(inputs=...)."
                )
            if expanded:
                done.add(id(node))
                order.append(node)
                continue
            stack.append((tensor, consumer, True))
            for t in reversed(node.input_tensors):
                if id(t) not in input_ids and (t.node is None or id(t.node) not in done):
                    stack.append((t, node.layer.name, False))
    return order


class _MaskOp:
    """One op of the graph Keras builds for a mask (`not_equal`, `concatenate`, ...).

    Keras 3 computes masks symbolically, and a layer whose `call` takes `mask` gets
    that tensor as an input of its node; the ops behind it then count in the depths
    that order `model.layers`. Only their shape matters here, not their values.
    """

    __slots__ = ("parents", "ndim")

    def __init__(self, parents, ndim):
        self.parents = list(parents)
        self.ndim = ndim


# Keras merge layers whose `call` takes no mask (jaxgraph's take one to compute with).
_NO_KERAS_MASK_ARG = frozenset({"Maximum", "Minimum", "Multiply", "MultiHeadAttention"})


def _keras_mask_graph(nodes, input_ids):
    """Keras's mask of each tensor (by id) and the mask parents each node gets."""
    from ..layers.base import Layer as _Base

    masks: dict[int, Any] = {}
    extra: dict[int, list] = {}

    def mask_of(t):
        return None if id(t) in input_ids else masks.get(id(t))

    for node in nodes:
        if node.is_input:
            continue
        layer = node.layer
        args, kwargs = node.call_args(lambda t: t)
        first = args[0] if args else None
        firsts = [x for x in jax.tree_util.tree_leaves(first, is_leaf=is_symbolic)
                  if is_symbolic(x)]
        in_masks = [mask_of(t) for t in firsts]
        tensor_args = sum(1 for v in (*args, *kwargs.values()) if any(
            is_symbolic(x) for x in jax.tree_util.tree_leaves(v, is_leaf=is_symbolic)))
        cls = type(layer).__name__
        takes_mask = cls == "Lambda" or (
            cls not in _NO_KERAS_MASK_ARG and "mask" in layer._accepted_call_args())
        if takes_mask and tensor_args == 1 and kwargs.get("mask") is None:
            extra[id(node)] = [m for m in in_masks if m is not None]
        outs = _keras_output_masks(layer, cls, firsts, in_masks, _Base, len(node.output_tensors))
        for t, m in zip(node.output_tensors, outs):
            if m is not None:
                masks[id(t)] = m
    return extra


def _keras_output_masks(layer, cls, firsts, in_masks, base, n_out):
    """The masks Keras 3 gives a node's outputs, as _MaskOp graphs (or passed through)."""
    x = firsts[0] if firsts else None
    ndim = len(x.shape) if x is not None else 0
    if cls == "Embedding":
        return [_MaskOp([x], ndim) if getattr(layer, "mask_zero", False) else None]
    if cls == "Masking":
        return [_MaskOp([_MaskOp([x], ndim)], ndim - 1)]
    if cls == "Concatenate":
        if all(m is None for m in in_masks):
            return [None]
        parts = []
        for t, m in zip(firsts, in_masks):
            if m is None:
                parts.append(_MaskOp([t], len(t.shape)))  # ones_like
            elif m.ndim < len(t.shape):  # logical_or(expand_dims(m), zeros_like(t))
                parts.append(_MaskOp([_MaskOp([m], m.ndim + 1), _MaskOp([t], len(t.shape))],
                                     len(t.shape)))
            else:
                parts.append(m)
        return [_MaskOp([_MaskOp(parts, ndim)], ndim - 1)]
    if cls in ("Add", "Subtract", "Average", "Maximum", "Minimum", "Multiply"):
        if not in_masks or any(m is None for m in in_masks):
            return [None]
        out = in_masks[0]
        for m in in_masks[1:]:
            out = _MaskOp([out, m], out.ndim)
        return [out]
    if isinstance(layer, Functional) or type(layer).compute_mask is not base.compute_mask \
            and not hasattr(layer, "return_sequences"):
        # Layers that compute or drop masks their own way: pass the first one through
        # when they keep masks at all (pooling, Dot, attention scores drop them).
        try:
            kept = layer.compute_mask(firsts[0] if len(firsts) == 1 else firsts,
                                      in_masks[0] if len(in_masks) == 1 else in_masks)
        except Exception:  # noqa: BLE001 - array code run on placeholders: a new mask
            return [_MaskOp(firsts, ndim)] if any(m is not None for m in in_masks) else []
        flat = kept if isinstance(kept, (list, tuple)) else [kept] * n_out
        return [m if isinstance(m, _MaskOp) else None for m in flat]
    if hasattr(layer, "return_sequences"):  # recurrent layers: states carry no mask
        m = in_masks[0] if in_masks and getattr(layer, "return_sequences", False) else None
        return [m] + [None] * (n_out - 1)
    if not getattr(layer, "supports_masking", False) or not in_masks:
        return [None]
    return [in_masks[0]] * n_out


def layer_order(inputs: list[SymbolicTensor], outputs: list[SymbolicTensor]) -> list:
    """The graph's layers in Keras's order, so weight lists line up with Keras models.
    See `keras_orders`."""
    return keras_orders(inputs, outputs)[0]


def keras_orders(inputs: list[SymbolicTensor], outputs: list[SymbolicTensor]) -> tuple:
    """(layers, nodes): the graph's layers in Keras's order, and its nodes in the order
    Keras's `Functional.call` runs them.

    Keras sorts layers by depth (the longest path from a layer's calls to an output,
    deepest first; a shared layer takes its deepest call, which also deepens its
    producers) and breaks ties by when a depth-first walk from the outputs first
    meets the layer. The walk also passes through the ops that compute masks a layer
    receives as its `mask` argument (see `_MaskOp`), as Keras's does.
    `model.get_weights()` follows this order. Nodes take the depth of their layer's
    deepest call too, as in Keras's `map_graph`.
    """
    input_ids = {id(t) for t in inputs}
    try:
        mask_parents = _keras_mask_graph(topological_nodes(inputs, outputs), input_ids)
    except ValueError:  # a disconnected graph: reported by the caller's own walk
        mask_parents = {}

    def producer(ref):
        return ref if isinstance(ref, _MaskOp) else ref.node

    def parents(item, via):
        if isinstance(item, _MaskOp):
            return item.parents
        if item.is_input or id(via) in input_ids:
            return []
        return list(item.input_tensors) + mask_parents.get(id(item), [])

    first_seen: dict[int, int] = {}
    by_id: dict[int, Layer] = {}
    finished: set[int] = set()
    post_order = []  # nodes and mask ops, producers before consumers
    for out in outputs:
        stack = [(out, False)]
        while stack:
            ref, expanded = stack.pop()
            item = producer(ref)
            if expanded:
                if id(item) not in finished:
                    finished.add(id(item))
                    post_order.append(item)
                continue
            if id(item) in finished:
                continue
            if not isinstance(item, _MaskOp):
                first_seen.setdefault(id(item.layer), len(first_seen))
                by_id[id(item.layer)] = item.layer
            stack.append((ref, True))
            stack.extend((p, False) for p in reversed(parents(item, ref)))
    node_depth: dict[int, int] = {}  # in Keras's insertion order (see below)
    layer_depth: dict[int, int] = {}
    nodes = []
    for item in reversed(post_order):
        depth = node_depth.setdefault(id(item), 0)
        if not isinstance(item, _MaskOp):
            depth = max(depth, layer_depth.get(id(item.layer), 0))
            layer_depth[id(item.layer)] = depth
            node_depth[id(item)] = depth
            if item.is_input:
                continue
            nodes.append(item)
            refs = list(item.input_tensors) + mask_parents.get(id(item), [])
        else:
            refs = item.parents
        for ref in refs:
            p = producer(ref)
            if id(p) in finished:
                node_depth[id(p)] = max(node_depth.get(id(p), 0), depth + 1)
    for t in inputs:  # inputs no output depends on still belong to the model
        layer = t.node.layer
        if id(layer) not in layer_depth:
            by_id[id(layer)] = layer
            layer_depth[id(layer)] = 0
            first_seen[id(layer)] = -1
    order = sorted(layer_depth, key=lambda i: (-layer_depth[i], first_seen[i]))
    # Keras runs the nodes deepest first and, within a depth, in the order its depth
    # dict first met them: what a layer leaves in the call context reaches the layers
    # that run after it in that order (a branch's RandomFlip before a sibling's reader).
    met = {key: i for i, key in enumerate(node_depth)}
    nodes.sort(key=lambda n: (-node_depth[id(n)], met[id(n)]))
    return [by_id[i] for i in order], nodes


class Functional(Layer):
    """A model defined by `Model(inputs, outputs)`; also usable as a layer."""

    def __init__(self, inputs=None, outputs=None, name: str | None = None,
                 trainable: bool = True, **kwargs):
        if name is None:
            name = _auto_name("model" if type(self).__name__ in ("Model", "Functional")
                              else type(self).__name__)
        super().__init__(name=name, trainable=trainable, **kwargs)
        self._layout_cache = None
        self._input_struct = None
        if inputs is None and outputs is None:
            return
        if inputs is None or outputs is None:
            raise ValueError("Model(inputs, outputs) needs both inputs and outputs")
        self._set_graph(inputs, outputs)

    # ------------------------------------------------------------------ graph

    def _set_graph(self, inputs, outputs) -> None:
        in_struct = Structure(inputs, "inputs")
        out_struct = Structure(outputs, "outputs")
        seen_inputs = set()
        for t in in_struct.flat:
            if t.node is None or not t.node.is_input:
                layer = t.layer.name if t.layer is not None else "?"
                raise TypeError(
                    f"Model inputs must be tensors returned by Input(); {t.name!r} was produced "
                    f"by layer {layer!r} ({type(t.layer).__name__}). To start a model from an "
                    "intermediate tensor, build a new Input for it."
                )
            if id(t) in seen_inputs:
                raise ValueError(f"Input {t.name!r} appears twice in Model(inputs=...)")
            seen_inputs.add(id(t))
        nodes = topological_nodes(in_struct.flat, out_struct.flat)
        layers, run_order = keras_orders(in_struct.flat, out_struct.flat)
        names: dict[str, Layer] = {}
        for layer in layers:
            other = names.get(layer.name)
            if other is not None and other is not layer:
                raise ValueError(
                    f"The name {layer.name!r} is used by two different layers in model "
                    f"{self.name!r} ({type(other).__name__} and {type(layer).__name__}); "
                    "layer names must be unique within a model."
                )
            names[layer.name] = layer
        self._input_struct = in_struct
        self._output_struct = out_struct
        self._nodes_in_order = nodes
        self._run_order = run_order
        self._layers = layers
        self._output_names = _output_names(out_struct)
        _check_wrapped_weights(self)
        self.built = True
        self._layout_cache = None

    def _require_graph(self):
        if self._input_struct is None:
            raise ValueError(
                f"Model {self.name!r} has no graph yet: give it an input shape or call it on "
                "data first."
            )

    @property
    def layers(self) -> list[Layer]:
        self._require_graph()
        return list(self._layers)

    @property
    def inputs(self) -> list[SymbolicTensor]:
        self._require_graph()
        return list(self._input_struct.flat)

    @property
    def outputs(self) -> list[SymbolicTensor]:
        self._require_graph()
        return list(self._output_struct.flat)

    @property
    def input(self):
        self._require_graph()
        return self._input_struct.pack(self._input_struct.flat)

    @property
    def output(self):
        self._require_graph()
        return self._output_struct.pack(self._output_struct.flat)

    @property
    def input_names(self) -> list[str]:
        self._require_graph()
        if self._input_struct.kind == "dict":
            return list(self._input_struct.keys)
        return [t.node.layer.name for t in self._input_struct.flat]

    @property
    def output_names(self) -> list[str]:
        self._require_graph()
        return list(self._output_names)

    @property
    def input_shape(self):
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        self._require_graph()
        if name is not None and index is not None:
            raise ValueError("get_layer takes a name or an index, not both")
        if index is not None:
            if not -len(self._layers) <= index < len(self._layers):
                raise ValueError(
                    f"get_layer(index={index}): model {self.name!r} has "
                    f"{len(self._layers)} layers"
                )
            return self._layers[index]
        if name is None:
            raise ValueError("get_layer needs a name or an index")
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(
            f"No such layer: {name!r} in model {self.name!r}. Existing layers are: "
            f"{[layer.name for layer in self._layers]}"
        )

    # ------------------------------------------------------------------ weights

    def _leaf_paths(self) -> list[tuple[Layer, tuple[str, ...]]]:
        """(layer, path) for every leaf layer that owns weights, once, in Keras's order.

        The path is the names of the nested models enclosing the layer, then its own:
        the variables pytree nests the same way.
        """
        out, seen = [], set()

        def walk(model, prefix):
            for layer in model.layers:
                if isinstance(layer, Functional):
                    walk(layer, prefix + (layer.name,))
                elif id(layer) not in seen:
                    seen.add(id(layer))
                    if layer._weights:
                        out.append((layer, prefix + (layer.name,)))

        walk(self, ())
        top = {layer.name for layer in self._layers}
        for layer in self._extra_layers():
            if layer.name in top:
                raise ValueError(
                    f"Model {self.name!r} holds layer {layer.name!r} ({type(layer).__name__}) "
                    "as an attribute besides the layers its call wires, but that name is "
                    "already used there; give it another name.")
            top.add(layer.name)
            if isinstance(layer, Functional):
                if layer._input_struct is not None:
                    walk(layer, (layer.name,))
                continue
            if layer.built and layer._keras_style_call() and \
                    "_sublayer_links" not in layer.__dict__:
                layer._link_sublayers()
            if id(layer) not in seen:
                seen.add(id(layer))
                if layer._weights:
                    out.append((layer, (layer.name,)))
        return out

    def _extra_layers(self) -> list[Layer]:
        """Layers a Keras-style subclass holds as attributes (Keras's tracking: alone, in
        lists, tuples or dict values, in assignment order) that its `call` does not wire,
        such as a VAE's decoder run only in `compute_loss`. Keras counts their weights as
        the model's, so the variables hold them too, after the graph's."""
        if self._keras_style_call() is None or self._input_struct is None:
            return []
        covered = reachable_layers(self._layers) | {id(self)}
        return [layer for layer in self._direct_sublayers() if id(layer) not in covered]

    def _tracked_layers(self) -> list[Layer]:
        """The graph's layers, then the attribute layers it does not wire."""
        return list(self._layers) + self._extra_layers()

    def _weighted_layers(self) -> list[Layer]:
        """Every leaf layer that owns weights, once, in Keras's order."""
        return [layer for layer, _ in self._leaf_paths()]

    def needs_rng(self) -> bool:
        return any(layer.needs_rng() for layer in self.layers + self._extra_layers())

    def _eager_call_draws(self, training) -> bool:
        """Whether `model(x, training=training)` on arrays may draw randomness (it then
        takes a key from the global stream, as a layer's eager call does). Without
        `training=`, any random layer may draw once a value carried through the call
        context reaches it (see `lowering.executor`)."""
        if training is False:
            return self.inference_needs_rng()
        return self.needs_rng()

    def _default_training(self):
        """Keras's `Functional.call(training=None)`: a graph model leaves the value to its
        layers; a Keras-style subclass has its own `call`'s default."""
        if self._keras_style_call() is None:
            return None
        return super()._default_training()

    def inference_needs_rng(self) -> bool:
        """Whether the model may draw randomness even with training=False: a random layer
        called with `training=True` in the graph (Monte Carlo dropout), here or nested, or
        a Keras-style layer holding random layers, whose `call` may do the same."""
        if getattr(self, "_input_struct", None) is not None and any(
                layer.needs_rng() for layer in self._extra_layers()):
            return True  # a random layer a custom step calls directly (a VAE's sampler)
        for node in getattr(self, "_nodes_in_order", ()):
            layer = node.layer
            if isinstance(layer, Functional) and layer.inference_needs_rng():
                return True
            if layer.needs_rng() and (
                    node.call_args(lambda t: t)[1].get("training") is True
                    # A Keras-style layer's `call` may pass training=True to the random
                    # layers it holds; only running it would tell, so it gets a key.
                    or (layer._keras_style_call() and not isinstance(layer, Functional))):
                return True
        return False

    @property
    def weights(self):
        return [w for layer in self._weighted_layers() for w in layer.weights]

    @property
    def trainable_weights(self):
        if not self.trainable:
            return []
        return [w for layer in self._weighted_layers() for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return self.weights
        return [w for layer in self._weighted_layers() for w in layer.non_trainable_weights]

    def get_weights(self) -> list[np.ndarray]:
        out = []
        for layer in self._weighted_layers():
            out.extend(layer.get_weights())
        return out

    def set_weights(self, weights) -> None:
        weights = list(weights)
        layers = self._weighted_layers()
        expected = sum(len(layer._weights) for layer in layers)
        if len(weights) != expected:
            raise ValueError(
                f"Model {self.name!r} has {expected} weight arrays, but set_weights got "
                f"{len(weights)}"
            )
        i = 0
        for layer in layers:
            n = len(layer._weights)
            layer.set_weights(weights[i:i + n])
            i += n

    def count_params(self) -> int:
        self._require_graph()
        return int(sum(layer.count_params() for layer in self._weighted_layers()))

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        if getattr(self, "_layers", None):
            for layer in self._tracked_layers():
                layer.trainable = value

    # ------------------------------------------------------------------ as a layer

    def build(self, input_shape) -> None:
        if self._input_struct is None and self._keras_style_call() is not None \
                and input_shape is not None:
            self._build_from_call(_specs_for_shapes(input_shape))
        self._require_graph()

    def _maybe_build(self, first_arg) -> None:
        if self._input_struct is None and self._keras_style_call() is not None:
            self._build_from_call(first_arg)
        self._require_graph()

    # ------------------------------------------------------------------ subclassed models

    def _keras_style_call(self):
        """The `call(inputs)` of a Keras-style Model subclass (layers made in __init__,
        wired in call), or None for a graph given to Model(inputs, outputs)."""
        call = getattr(type(self), "call", None)
        return None if call is Layer.call else call

    def _build_from_call(self, sample) -> None:
        """Trace the subclass's `call` once on Inputs shaped like `sample` (arrays or
        symbolic tensors, in a dict, list or alone): the graph it wires is the model's,
        so everything else (init/apply, fit, saving weights) is the functional path."""
        from .input_layer import Input

        def make(value, name=None):
            if is_symbolic(value) or isinstance(value, jax.ShapeDtypeStruct):
                shape, dtype = tuple(value.shape), np.dtype(value.dtype).name \
                    if value.dtype != "string" else "string"
            else:
                arr = np.asarray(value)
                shape = arr.shape
                dtype = arr.dtype.name if np.issubdtype(arr.dtype, np.integer) or \
                    arr.dtype == np.bool_ else "float32"
            if len(shape) == 0:
                raise ValueError(f"Model {self.name!r} cannot be built from a scalar input"
                                 + (f" {name!r}" if name else "") + "; give it a batch axis")
            return Input(shape=shape[1:], dtype=dtype, name=name)

        if isinstance(sample, dict):
            inputs = {str(k): make(v, str(k)) for k, v in sample.items()}
        elif isinstance(sample, (list, tuple)) and not _is_array_like_row(sample):
            inputs = [make(v) for v in sample]
        else:
            inputs = make(sample)
        call = self._keras_style_call()
        # `call(x, training=False)` passing `training` on to its layers: traced with the
        # default, those nodes would keep False under fit. Traced with None, they follow
        # the value the model runs with (fit's True, predict's False, a direct call's).
        extra = {"training": None} if _takes_training(call) else {}
        outputs = call(self, inputs, **extra)
        if isinstance(outputs, tuple):
            outputs = list(outputs)
        leaves = outputs.values() if isinstance(outputs, dict) else (
            outputs if isinstance(outputs, list) else [outputs])
        bad = [type(o).__name__ for o in leaves if not is_symbolic(o)]
        if bad:
            raise TypeError(
                f"{type(self).__name__}.call must wire layers (and jaxgraph ops) on its inputs "
                f"and return their outputs, but it returned {bad}: jaxgraph traces call once "
                "on symbolic Inputs to build the model's graph")
        self._set_graph(inputs, outputs)

    def compute_output_spec(self, inputs, *args, **kwargs):
        """Propagate shapes through the graph without recording any node."""
        names = self.input_names
        given = self._input_struct.unpack(inputs, names, "inputs")
        env: dict[int, Any] = {}
        for name, expected, spec in zip(names, self._input_struct.flat, given):
            shape = tuple(spec.shape)
            if not _compatible(expected.shape, shape):
                raise ValueError(
                    f"Input {name!r} of model {self.name!r} is incompatible with the model: "
                    f"expected shape {expected.shape}, but received input with shape {shape}"
                )
            env[id(expected)] = spec
        for node in self._nodes_in_order:
            a, k = node.call_args(lambda t: env[id(t)])
            outs = node.layer.compute_output_spec(*a, **k)
            flat = jax.tree_util.tree_leaves(outs, is_leaf=is_symbolic)
            for t, spec in zip(node.output_tensors, flat):
                env[id(t)] = spec
        outs = [SymbolicTensor(env[id(t)].shape, env[id(t)].dtype) for t in self.outputs]
        return self._output_struct.pack(outs)

    def forward(self, w, *args, **kwargs):
        raise TypeError(
            f"Model {self.name!r} is evaluated by jaxgraph.lowering, not by Layer.forward"
        )

    def _run(self, variables, inputs, training=False, rng=None):
        """`(outputs, new_state, added_losses)`, for layers that run a whole model."""
        from ..lowering import run_model

        return run_model(self, variables, inputs, training=training, rng=rng)

    # ------------------------------------------------------------------ the pure core

    def init(self, rng) -> dict:
        """Fresh variables `{'params': ..., 'state': ...}`; pure in `rng`."""
        from ..lowering import init_variables

        return init_variables(self, rng)

    def apply(self, variables, inputs, training: bool | None = False, rng=None):
        """`(outputs, new_state)`: a pure function, safe under jit/grad/vmap/scan.

        `training=None` runs as Keras's `model(x)`: each layer resolves its value and
        leaves it to the layers after it (a RandomFlip's True reaches a BatchNormalization
        or an inner model); a layer that then draws needs `rng`, or the call says which."""
        from ..lowering import apply_model

        return apply_model(self, variables, inputs, training=training, rng=rng)

    @property
    def variables(self) -> dict:
        """The current variables, read from the layers' caches (created lazily)."""
        from ..lowering import gather_variables

        return gather_variables(self)

    @variables.setter
    def variables(self, value) -> None:
        from ..lowering import scatter_variables

        scatter_variables(self, value)

    def _eager_call(self, args, kwargs):
        from .. import random as jg_random
        from ..layers import base
        from ..lowering import apply_model

        in_step = base.step_call(self)
        if in_step is not None:
            with in_step:
                return self._eager_call(args, kwargs)
        if self._input_struct is None and args and self._keras_style_call() is not None:
            self._build_from_call(args[0])
        context = getattr(base._call_context, "current", None)
        if context is not None:  # inside a Keras-style layer's `call`
            return self._call_in_context(args, kwargs, context)

        # As in Keras, a call that does not say `training=` gives the model its `call`'s
        # default: None for a graph, whose layers then resolve theirs in turn and carry
        # them through the call context (lowering.executor).
        training = kwargs.pop("training") if "training" in kwargs else self._default_training()
        rng = jg_random.as_key(kwargs.pop("rng", None))
        if kwargs:
            raise TypeError(f"Model {self.name!r} got unexpected call arguments {sorted(kwargs)}")
        draw_key = None
        if rng is None and training is None:
            draw_key = jg_random.next_key  # one key, taken only if a layer draws
        elif rng is None and self._eager_call_draws(training):
            rng = jg_random.next_key()
        variables = self.variables
        outputs, state = apply_model(self, variables, args[0], training=training, rng=rng,
                                     draw_key=draw_key)
        if training or (training is None and _state_changed(variables["state"], state)):
            # A training value carried to a BatchNormalization moves its statistics too.
            self.variables = {"params": variables["params"], "state": state}
        return outputs

    def _call_in_context(self, args, kwargs, context):
        """A model called inside a Keras-style layer's `call` is one of its sublayers
        there, as in Keras: it resolves its training value by Keras's rule (its
        `training=`, else the caller's value, else its `call`'s default) and writes it to
        the caller's context, which its own layers then share, so what they resolve is
        left for the calls after it. It takes a key folded from the caller's (fresh at
        every traced step, not one baked in at trace time), runs on the masks its inputs
        carry and leaves its outputs' masks. All of this runs when the caller's `call` is
        traced, never per step."""
        from .. import random as jg_random
        from ..layers import base
        from ..lowering import run_model

        kwargs = dict(kwargs)
        said = "training" in kwargs
        training = base.resolve_in_context(self, kwargs, context)
        training = None if training is None else bool(training)
        rng = jg_random.as_key(kwargs.pop("rng", None))
        mask = kwargs.pop("mask", None)
        if kwargs:
            raise TypeError(f"Model {self.name!r} got unexpected call arguments {sorted(kwargs)}")
        registry = getattr(base._implicit_masks, "current", None)
        if mask is None and registry is not None:
            mask = base.carried_mask(registry, args[0])
        names = self.input_names
        input_masks = None if mask is None else self._input_struct.unpack(mask, names, "inputs")
        variables = self.variables
        outputs, state, extra, out_masks = run_model(
            self, variables, args[0], training=training, rng=rng, with_masks=True,
            input_masks=input_masks, cell=context.cell, draw_key=context.key_source(said))
        self.add_loss(extra)  # the caller's losses: activity regularizers, add_loss
        if training or (training is None and _state_changed(variables["state"], state)):
            self._keep_state(state)
        if registry is not None:
            flat = self._output_struct.unpack(outputs, self.output_names, "outputs")
            for out, m in zip(flat, out_masks):
                base.carry_mask(registry, out, m)
        return outputs

    def _keep_state(self, state) -> None:
        """New moving statistics go to the layers' caches, where the enclosing call
        collects them as its own updates: not a user's edit (no version bump)."""
        from ..lowering.executor import _get_in, layout

        entries, _ = layout(self)
        for layer, path in entries:
            names = [w.name for w in layer._weights if not w.trainable]
            if names:
                part = _get_in(state, path, "state")
                layer._values = {**layer._current_values(), **{n: part[n] for n in names}}

    # ------------------------------------------------------------------ config

    def get_config(self) -> dict:
        from .config import functional_config

        return functional_config(self)

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None):
        """A graph config rebuilds the graph. A Keras-style subclass (its own `call`) is
        rebuilt from the graph its call wired, as a plain Model: its __init__ arguments
        are not in the file unless its own get_config puts them there, and then, as in
        Keras, `cls(**config)` makes it."""
        from .config import functional_from_config

        if "input_layers" not in config or "output_layers" not in config:
            return cls(**config)
        if getattr(cls, "call", Layer.call) is not Layer.call:
            from ..models import Model

            cls = Model
        return functional_from_config(cls, config, custom_objects)

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False):
        from ..utils.summary import print_summary

        return print_summary(self, line_length=line_length, positions=positions,
                             print_fn=print_fn, expand_nested=expand_nested,
                             show_trainable=show_trainable)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"


def reachable_layers(layers) -> set[int]:
    """The ids of `layers` and of every layer they run: a model's graph layers, a
    Keras-style layer's attribute layers, all the way down."""
    seen: set[int] = set()
    todo = list(layers)
    while todo:
        layer = todo.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if isinstance(layer, Functional):
            todo += layer._layers if layer._input_struct is not None else []
        elif layer._keras_style_call():
            todo += layer._direct_sublayers()
    return seen


def _state_changed(before, after) -> bool:
    """Whether a run replaced any state array (the executor copies the containers and
    swaps in new arrays only where a layer updated its state)."""
    a = jax.tree_util.tree_leaves(before)
    b = jax.tree_util.tree_leaves(after)
    return len(a) != len(b) or any(x is not y for x, y in zip(a, b))


def _wrapped_layers(layer):
    """Every layer inside a wrapper (TimeDistributed, Bidirectional), models opened."""
    for inner in layer.__dict__.get("_all_inner") or ():
        if isinstance(inner, Functional):
            for sub in inner.layers:
                yield sub
                yield from _wrapped_layers(sub)
        else:
            yield inner
            yield from _wrapped_layers(inner)


def _check_wrapped_weights(model: Functional) -> None:
    """A wrapper keeps its own copy of the weights it wraps, so a layer with weights must
    not also be used outside that wrapper: the copies would train apart. Said here, at
    graph-build time, instead of silently training two sets of weights."""
    owners: dict[int, tuple] = {}  # id(layer) -> (id of its owner, description)

    def claim(layer, owner_id, where):
        if not layer._weights:
            return
        prev = owners.setdefault(id(layer), (owner_id, where))
        if prev[0] != owner_id:
            raise ValueError(
                f"Layer {layer.name!r} ({type(layer).__name__}) is used both {prev[1]} and "
                f"{where}. A wrapper keeps its own copy of the weights it wraps, so the two "
                "uses would not share weights: call the wrapper itself on every input, or "
                "use separate layers."
            )

    def walk(m):
        for layer in m.layers:
            if isinstance(layer, Functional):
                walk(layer)
                continue
            claim(layer, None, f"directly in model {m.name!r}")
            for inner in _wrapped_layers(layer):
                if not isinstance(inner, Functional):
                    claim(inner, id(layer), f"inside {type(layer).__name__} {layer.name!r}")

    walk(model)


def _compatible(expected: tuple, got: tuple) -> bool:
    if len(expected) != len(got):
        return False
    return all(e is None or g is None or e == g for e, g in zip(expected, got))


def _output_names(struct: Structure) -> list[str]:
    if struct.kind == "dict":
        return list(struct.keys)
    names, counts = [], {}
    for t in struct.flat:
        base = t.node.layer.name
        counts[base] = counts.get(base, 0) + 1
        names.append(base if counts[base] == 1 else f"{base}_{counts[base] - 1}")
    return names


def _auto_name(base: str) -> str:
    from ..layers.base import to_snake_case, unique_name

    return unique_name(to_snake_case(base))

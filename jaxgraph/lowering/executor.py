"""Graph -> pure functions: `init(rng)` and `apply(variables, inputs, ...)`.

The variables pytree is `{'params': P, 'state': S}`; P and S are nested dicts
keyed by model and layer names (`P['sequential']['dense']['kernel']`). Each layer
instance owns exactly one entry, at the path where a walk through the (nested)
models first meets it, however many times and wherever it is called. Running a
graph is a loop over its nodes in topological order with a dict from tensor to
value, so tracing costs Python time once per compile and nothing per step.

A layer attribute named in `Layer.traced_attributes` (a Dropout's `rate`) is a
Python constant of the program unless `variables['state'][OVERRIDES]` holds
`{layer name: {attribute: array}}`: then the array is handed to the layer's `call`
as that keyword argument, so a vmapped population trains members with different
rates in one program. Overrides pass through `apply` unchanged.

`training` is threaded as Keras's call context is: True or False reaches every node;
None (`model(x)`) lets each node resolve its own value and leave it to the nodes after
it, which run in Keras's order (see `_node_training`). It is a Python value decided
while tracing, so the compiled program holds no trace of it.
"""

from __future__ import annotations

import collections
import functools
import inspect
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..graph.functional import Functional
from ..graph.tensor import is_symbolic
from ..layers.base import (
    _no_key_message,
    carried_mask,
    carried_masks,
    carry,
    collecting_losses,
    flush_sync,
    sharing_cell,
    tracing,
)
from ..random import as_key

Path = tuple

#: Key of the model state that carries per-layer overrides of traced attributes. A
#: layer name cannot contain '/', so it never collides with a layer's entry.
OVERRIDES = "/overrides"


# ---------------------------------------------------------------------------- layout


def layout(model: Functional) -> tuple[list, dict[int, Path]]:
    """[(layer, path)] for every weighted leaf layer, and id(layer) -> path."""
    cached = model._layout_cache
    if cached is not None:
        return cached
    model._require_graph()
    entries = model._leaf_paths()
    paths = {id(layer): path for layer, path in entries}
    model._layout_cache = (entries, paths)
    return entries, paths


def _get_in(tree: dict, path: Path, what: str):
    node = tree
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise KeyError(
                f"variables[{what!r}] has no entry for layer path {'/'.join(path)!r}; "
                "were these variables made by this model's init()?"
            )
        node = node[key]
    return node


def _set_in(tree: dict, path: Path, value) -> None:
    node = tree
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def _copy_nested(tree):
    return {k: _copy_nested(v) for k, v in tree.items()} if isinstance(tree, dict) else tree


def _split(layer, values: dict) -> tuple[dict, dict]:
    params = {w.name: values[w.name] for w in layer._weights if w.trainable}
    state = {w.name: values[w.name] for w in layer._weights if not w.trainable}
    return params, state


# ---------------------------------------------------------------------------- variables


def init_variables(model: Functional, rng) -> dict:
    """Fresh `{'params', 'state'}` for `model`, a pure function of `rng`."""
    rng = as_key(rng)
    if rng is None:
        raise ValueError("init(rng) needs a key, e.g. model.init(jax.random.key(0))")
    entries, _ = layout(model)
    params: dict = {}
    state: dict = {}
    for i, (layer, path) in enumerate(entries):
        p, s = _split(layer, layer.init_values(jax.random.fold_in(rng, i)))
        if p:
            _set_in(params, path, p)
        if s:
            _set_in(state, path, s)
    return {"params": params, "state": state}


#: Compiler options for programs that run once (weight and state creation): LLVM at -O0
#: compiles them in about two thirds of the time, and they run for milliseconds.
RUN_ONCE = {"xla_backend_optimization_level": 0}


#: Weight-creation programs by the initializers and shapes they draw: every model of
#: one architecture (ensemble members, search trials, rebuilt models) reuses one
#: compiled program instead of compiling its own. The least recently used are dropped
#: past _INIT_PROGRAMS_MAX, so a long search over many architectures stays bounded.
_INIT_PROGRAMS: collections.OrderedDict = collections.OrderedDict()
_INIT_PROGRAMS_MAX = 32


def _init_signature(layers) -> tuple | None:
    """What a list of layers' `init_values` computes, or None when it cannot be told
    (a layer's own init_values, an initializer that is not a built-in one)."""
    from .. import initializers
    from ..layers.base import Layer

    sig = []
    for layer in layers:
        if type(layer).init_values is not Layer.init_values:
            return None
        specs = []
        for w in layer._weights:
            init = w.initializer
            if type(init).__module__ != initializers.__name__:
                return None
            try:
                config = repr(sorted(init.get_config().items()))
            except Exception:  # noqa: BLE001 - no config, no sharing
                return None
            specs.append((w.name, tuple(w.shape), str(jnp.dtype(w.dtype)),
                          type(init).__name__, config))
        sig.append(tuple(specs))
    return tuple(sig)


def _init_program(layers):
    sig = _init_signature(layers)
    if sig is not None and sig in _INIT_PROGRAMS:
        _INIT_PROGRAMS.move_to_end(sig)
        return _INIT_PROGRAMS[sig]
    # The program closes over (initializer, shape, dtype) only, never over the layers.
    plan = [[(w.name, w.initializer, tuple(w.shape), jnp.dtype(w.dtype)) for w in layer._weights]
            for layer in layers]

    def init_all(key):  # exactly Layer.init_values(fold_in(key, i)) for layer i
        out = []
        for i, weights in enumerate(plan):
            k = jax.random.fold_in(key, i)
            out.append({name: init(jax.random.fold_in(k, j), shape, dtype)
                        for j, (name, init, shape, dtype) in enumerate(weights)})
        return out

    program = jax.jit(init_all, compiler_options=RUN_ONCE)
    if sig is not None:
        _INIT_PROGRAMS[sig] = program
        while len(_INIT_PROGRAMS) > _INIT_PROGRAMS_MAX:
            _INIT_PROGRAMS.popitem(last=False)
    return program


#: Weight counts up to which an accelerator's weights are drawn on the host (see below).
HOST_INIT_MAX_ELEMENTS = 1 << 26


def _host_device(layers):
    """The CPU device to draw these weights on, or None to draw them where they live.

    A GPU compiles the drawing program (one random-bits kernel per weight, each through
    LLVM and ptxas) in 6-8 s for the book's resnet, against about 1 s on the host; the
    program then runs once. Up to HOST_INIT_MAX_ELEMENTS values (256 MiB of float32) the
    host draws them and one transfer moves them; larger models draw on the device."""
    if jax.default_backend() == "cpu":
        return None
    size = sum(math.prod(w.shape) for layer in layers for w in layer._weights)
    if size > HOST_INIT_MAX_ELEMENTS:
        return None
    try:
        return jax.devices("cpu")[0]
    except RuntimeError:  # no host platform in this process
        return None


def _initialize_missing(entries) -> None:
    """Create every missing layer value in ONE compiled program (not one per weight)."""
    flush_sync()
    missing = [layer for layer, _ in entries if layer._values is None and layer.built]
    if not missing:
        return
    from ..random import next_key

    key = next_key()
    if tracing():  # a model called inside a traced Keras-style layer: no nested compile
        for i, layer in enumerate(missing):
            layer._set_values(layer.init_values(jax.random.fold_in(key, i)))
        return
    host = _host_device(missing)
    if host is None:
        drawn = _init_program(missing)(key)
    else:
        on_host = _init_program(missing)(jax.device_put(key, host))
        # Through numpy, so the arrays land uncommitted on the default device, as
        # the program's own outputs would have.
        drawn = jax.device_put(jax.tree_util.tree_map(np.asarray, on_host))
    for layer, values in zip(missing, drawn):
        layer._set_values(values)


def gather_variables(model: Functional) -> dict:
    """The layers' current values as one variables pytree."""
    entries, _ = layout(model)
    _initialize_missing(entries)
    params: dict = {}
    state: dict = {}
    for layer, path in entries:
        p, s = _split(layer, layer._current_values())
        if p:
            _set_in(params, path, p)
        if s:
            _set_in(state, path, s)
    return {"params": params, "state": state}


def scatter_variables(model: Functional, variables: dict) -> None:
    """Store `variables` into the layers' caches (shared by every model using them)."""
    if not isinstance(variables, dict) or "params" not in variables:
        raise ValueError("model.variables must be a dict {'params': ..., 'state': ...}")
    entries, _ = layout(model)
    updates = []
    for layer, path in entries:
        values = {}
        for kind in ("params", "state"):
            names = [w.name for w in layer._weights if w.trainable == (kind == "params")]
            if not names:
                continue
            sub = _get_in(variables.get(kind, {}), path, kind)
            for w in layer._weights:
                if w.name not in names:
                    continue
                if w.name not in sub:
                    raise KeyError(f"variables[{kind!r}] lacks {'/'.join(path)}/{w.name}")
                value = sub[w.name]
                if tuple(jnp.shape(value)) != w.shape:
                    raise ValueError(
                        f"Weight {'/'.join(path)}/{w.name} has shape {w.shape}; "
                        f"got {tuple(jnp.shape(value))}"
                    )
                values[w.name] = value
        updates.append((layer, values))
    for layer, values in updates:
        layer._set_values(values)


# ---------------------------------------------------------------------------- apply


class _Run:
    """Everything one evaluation of a graph threads through its nodes. `cell` is the
    call context's training value (see `layers.base._CallContext`), shared with nested
    models and the Keras-style layers the graph runs."""

    __slots__ = ("params", "state", "rng", "paths", "rng_count", "activity", "overrides",
                 "valid", "cell", "draw_key")

    def __init__(self, params, state, rng, paths, overrides=None, valid=None, cell=None,
                 draw_key=None):
        self.params = params
        self.state = state
        self.rng = rng
        self.paths = paths
        self.rng_count = 0
        self.activity: list = []
        self.overrides = overrides or {}
        self.valid = valid  # (batch,) 1/0 for real/padding rows, or None
        self.cell = cell
        self.draw_key = draw_key  # where `rng` comes from when a layer draws and none was given

    def next_key(self):
        """A key for one layer, folded from the run's; None when the run has none."""
        if self.rng is None and self.draw_key is not None:
            self.rng, self.draw_key = as_key(self.draw_key()), None
        if self.rng is None:
            return None
        key = jax.random.fold_in(self.rng, self.rng_count)
        self.rng_count += 1
        return key


def _cast_floats(tree, dtype):
    def cast(x):
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating) and x.dtype != dtype:
            return x.astype(dtype)
        return x

    return jax.tree_util.tree_map(cast, tree)


def _all_none(tree) -> bool:
    return all(m is None for m in jax.tree_util.tree_leaves(tree, is_leaf=lambda x: x is None))


class _Carried:
    """Marks a node argument's mask in a structure parallel to its values."""

    __slots__ = ("mask",)

    def __init__(self, mask):
        self.mask = mask


def _carried_pairs(values, marks) -> list:
    """[(value, mask)] for the node arguments that carry a mask."""
    flat_v = jax.tree_util.tree_leaves(values, is_leaf=lambda x: x is None)
    flat_m = jax.tree_util.tree_leaves(marks, is_leaf=lambda x: x is None or
                                       isinstance(x, _Carried))
    if len(flat_v) != len(flat_m):
        return []
    return [(v, m.mask) for v, m in zip(flat_v, flat_m)
            if isinstance(m, _Carried) and m.mask is not None]


def _tensor_argument_count(layer, node) -> int:
    """How many of a node's call arguments hold tensors (Keras fills `mask` only for
    one)."""
    params = layer._mask_parameters()
    sym_args, sym_kwargs = node.call_args(lambda t: t)
    bound = {**dict(zip(params, sym_args)), **sym_kwargs}
    return sum(1 for v in bound.values()
               if any(is_symbolic(x) for x in jax.tree_util.tree_leaves(v, is_leaf=is_symbolic)))


def _records(model: Functional, node, layer) -> bool:
    """Whether Keras's node for this call holds the training value its layer resolved
    when the graph was built (the default of its `call`, when not None).

    `Layer.__call__` writes that value into the call's keyword arguments, and the node
    keeps them when the call passed one tensor and nothing else (other calls convert
    their arguments into a new dict first). Such a node runs with it whatever the call
    context holds: a graph's Dropout keeps False after a RandomFlip. The layers of a
    Keras-style model's `call` are called directly instead: nothing is recorded."""
    if model._keras_style_call() is not None or layer._default_training() is None:
        return False
    args, kwargs = node.call_args(lambda t: t)
    return len(args) == 1 and is_symbolic(args[0]) and not kwargs


def _node_training(model: Functional, node, layer, kwargs: dict, training, cell):
    """The training value a node's layer runs with, written to the call context `cell`
    as Keras's `Layer.__call__` does, so the nodes after it (in Keras's order) see it.

    With `training` True or False (fit, evaluate, predict, an explicit `training=`)
    every node runs with it, except a layer called with its own `training=True/False`
    in the graph (Monte Carlo dropout); a nested model runs with the model's value.
    With None (a call that does not say), Keras's rule: the node's own `training=`,
    else the value it recorded (`_records`), else the context's when not None, else
    the layer's default. Pops `training` from `kwargs`."""
    given = kwargs.pop("training", None) if "training" in kwargs else _UNSAID
    if training is not None:
        value = training
        if given is not _UNSAID and given is not None and not isinstance(layer, Functional):
            value = bool(given)
        carry(cell, training, cell[1] if cell[0] is training else None)
        return value
    if given is not _UNSAID:
        value, source = given, layer.name
    elif cell[0] is not None and not _records(model, node, layer):
        value, source = cell[0], cell[1]
    else:
        value, source = layer._default_training(), layer.name
    value = None if value is None else bool(value)
    carry(cell, value, source)
    return value


_UNSAID = object()


def _layer_key(layer, run: _Run, training, overrides):
    """A key for a layer that may draw with this training value (an overridden rate may
    be nonzero for some members even where the layer's own is 0), folded from the run's.
    A layer that would draw when the run has no key says so; one running with None (a
    Keras-style layer leaving it to the layers it calls) gets none, and those say so."""
    if not (layer.needs_rng() or overrides):
        return None
    if training is not None and not training:
        # A Keras-style layer may still call its random layers with training=True (Monte
        # Carlo dropout written in its `call`): it gets the run's key where there is one.
        return run.next_key() if layer._keras_style_call() and run.rng is not None else None
    key = run.next_key()
    if key is None and training is not None:
        raise ValueError(_no_key_message(layer, run.cell))
    return key


def _call_layer(layer, node, run: _Run, args, kwargs, mask, training, marks=None):
    path = run.paths.get(id(layer))
    w = {}
    if path is not None:
        if any(x.trainable for x in layer._weights):
            w.update(_get_in(run.params, path, "params"))
        if any(not x.trainable for x in layer._weights):
            w.update(_get_in(run.state, path, "state"))
    compute = jnp.dtype(layer.compute_dtype)
    if w and compute != jnp.dtype(layer.dtype):
        w = _cast_floats(w, compute)
    if layer.convert_input_args:
        args = _cast_floats(args, compute)
    pairs = []
    if marks is not None:  # the node's own arguments, before anything is added
        pairs = _carried_pairs((args, {k: kwargs.get(k) for k in marks[1]}), marks)
    kwargs = dict(kwargs)
    overrides = run.overrides.get(layer.name) if run.overrides else None
    keras_style = layer._keras_style_call()
    if training is None and not keras_style:
        training = layer.training_by_default
    rng = _layer_key(layer, run, training, overrides)
    if overrides:
        kwargs.update(overrides)
    call_mask = mask
    if "mask" in kwargs:
        mask = call_mask = kwargs.pop("mask")
    elif keras_style and _tensor_argument_count(layer, node) > 1:
        call_mask = None  # Keras fills `mask` for one tensor argument only
    if keras_style:
        # Every argument brings the mask it carries into `call` (Keras's `_keras_mask`);
        # what the call's own layers compute rides on their outputs.
        with carried_masks(pairs) as registry, sharing_cell(run.cell):
            outputs, updates = layer.forward(w, *args, training=training, rng=rng,
                                             mask=call_mask, **kwargs)
    else:
        outputs, updates = layer.forward(w, *args, training=training, rng=rng,
                                         mask=call_mask, **kwargs)
    if updates:
        state = dict(_get_in(run.state, path, "state"))
        for name, value in updates.items():
            spec = next(x for x in layer._weights if x.name == name)
            state[name] = jnp.asarray(value).astype(spec.dtype)
        _set_in(run.state, path, state)
    if layer.activity_regularizer is not None:
        valid = run.valid
        for out in jax.tree_util.tree_leaves(outputs):
            if out.ndim and valid is not None and out.shape[0] == valid.shape[0]:
                # A padded last batch: the penalty of its real rows, per real row (Keras
                # regularizes the short batch itself).
                rows = valid.reshape((-1,) + (1,) * (out.ndim - 1)).astype(out.dtype)
                loss = layer.activity_regularizer(out * rows) / jnp.maximum(valid.sum(), 1)
            else:
                loss = layer.activity_regularizer(out)
                if out.ndim > 0:
                    loss = loss / out.shape[0]
            run.activity.append(loss)
    out_mask = None
    if mask is not None or type(layer).compute_mask is not _BASE_COMPUTE_MASK:
        out_mask = layer.compute_mask(args[0] if args else None, mask)
    if keras_style:
        out_mask = _output_masks(outputs, out_mask, registry)
    return outputs, out_mask


def _output_masks(outputs, computed, registry):
    """Keras's rule for a Keras-style layer's outputs: an output that already carries a
    mask (one an inner layer computed, or an input returned as is) keeps it; the others
    get what `compute_mask` gave."""
    flat = jax.tree_util.tree_leaves(outputs)
    carried = [carried_mask(registry, o) for o in flat]
    if all(m is None for m in carried):
        return computed
    if computed is None or _all_none(computed):
        computed_flat = [None] * len(flat)
    else:
        computed_flat = jax.tree_util.tree_leaves(computed, is_leaf=lambda x: x is None)
        if len(computed_flat) != len(flat):
            computed_flat = [computed_flat[0]] * len(flat)
    merged = [c if c is not None else m for c, m in zip(carried, computed_flat)]
    return merged[0] if len(merged) == 1 and not isinstance(outputs, (list, tuple, dict)) \
        else merged


from ..layers.base import Layer as _Layer  # noqa: E402

_BASE_COMPUTE_MASK = _Layer.compute_mask


@functools.cache
def _call_parameters(cls) -> tuple[str, ...]:
    """The names `call` (or an overridden `forward`) binds the node's arguments to, in
    order, after the weights."""
    fn = cls.call if cls.forward is _Layer.forward else cls.forward
    params = list(inspect.signature(fn).parameters.values())[2:]  # self, w
    return tuple(p.name for p in params
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def _argument_masks(layer, node, env) -> dict:
    """Keras's rule for a layer called on several tensors: argument `k` brings its mask
    as `k_mask` where `call` takes one and it was not given (MultiHeadAttention's
    `value_mask` and `key_mask`, a custom layer's own)."""
    params = _call_parameters(type(layer))
    if not any(name.endswith("_mask") for name in params):
        return {}
    sym_args, sym_kwargs = node.call_args(lambda t: t)
    bound = dict(zip(params, sym_args))
    bound.update(sym_kwargs)
    tensors = {k: v for k, v in bound.items()
               if any(is_symbolic(leaf) for leaf in jax.tree_util.tree_leaves(v))}
    if len(tensors) < 2:
        return {}
    out = {}
    for name, value in tensors.items():
        target = f"{name}_mask"
        if target not in params or bound.get(target) is not None:
            continue
        mask = jax.tree_util.tree_map(lambda t: env[id(t)][1] if is_symbolic(t) else None,
                                      value)
        if not _all_none(mask):
            out[target] = mask
    return out


def _run_graph(model: Functional, run: _Run, values: list, masks: list, training) -> list:
    """Run the nodes in the order Keras runs them (`Functional._run_order`), threading
    the call context's training value through them (`_node_training`)."""
    env: dict[int, Any] = {}
    for t, v, m in zip(model.inputs, values, masks):
        env[id(t)] = (v, m)
    for node in model._run_order:
        layer = node.layer
        args, kwargs = node.call_args(lambda t: env[id(t)][0])
        value = _node_training(model, node, layer, kwargs, training, run.cell)
        mask_args, _ = node.call_args(lambda t: env[id(t)][1])
        first_mask = mask_args[0] if mask_args else None
        if first_mask is not None and _all_none(first_mask):
            first_mask = None
        if isinstance(layer, Functional):
            names = layer.input_names
            flat_in = layer._input_struct.unpack(args[0], names, "inputs")
            if first_mask is None:
                flat_masks = [None] * len(flat_in)
            else:
                flat_masks = layer._input_struct.unpack(first_mask, names, "inputs")
            results = _run_graph(layer, run, flat_in, flat_masks, value)
            # The node's output tensors follow jax's flattening of the packed structure
            # (dict keys sorted), which can differ from the model's own output order.
            out_values = jax.tree_util.tree_leaves(
                layer._output_struct.pack([v for v, _ in results]))
            out_masks = jax.tree_util.tree_leaves(
                layer._output_struct.pack([m for _, m in results]),
                is_leaf=lambda x: x is None)
        else:
            named = _argument_masks(layer, node, env)
            if named:
                kwargs = {**kwargs, **named}
            marks = None
            if layer._keras_style_call():
                marks = node.call_args(lambda t: _Carried(env[id(t)][1]))
            outputs, out_mask = _call_layer(layer, node, run, args, kwargs, first_mask, value,
                                            marks)
            out_values = jax.tree_util.tree_leaves(outputs)
            if out_mask is None or _all_none(out_mask):
                out_masks = [None] * len(out_values)
            else:
                flat_m = jax.tree_util.tree_leaves(out_mask, is_leaf=lambda x: x is None)
                out_masks = flat_m if len(flat_m) == len(out_values) else [flat_m[0]] * len(
                    out_values)
        if len(out_values) != len(node.output_tensors):
            raise ValueError(
                f"Layer {layer.name!r} returned {len(out_values)} outputs, but its output "
                f"spec has {len(node.output_tensors)}"
            )
        for t, v, m in zip(node.output_tensors, out_values, out_masks):
            env[id(t)] = (v, m)
    return [env[id(t)] for t in model.outputs]


def _prepare_inputs(model: Functional, inputs) -> list:
    flat = model._input_struct.unpack(inputs, model.input_names, "inputs")
    out = []
    for name, t, x in zip(model.input_names, model.inputs, flat):
        if is_symbolic(x):
            raise TypeError(
                f"apply() got a symbolic tensor for input {name!r}; call the model "
                "(model(x)) to build graphs, apply() to compute"
            )
        x = jnp.asarray(x)
        if x.dtype != jnp.dtype(t.dtype) and t.dtype != "string":
            x = x.astype(t.dtype)
        if x.ndim != len(t.shape):
            raise ValueError(
                f"Input {name!r} of model {model.name!r} expects rank {len(t.shape)} "
                f"(shape {t.shape}), got an array of shape {x.shape}"
            )
        for axis, (want, got) in enumerate(zip(t.shape, x.shape)):
            if want is not None and want != got:
                raise ValueError(
                    f"Input {name!r} of model {model.name!r} expects shape {t.shape}, "
                    f"got an array of shape {x.shape} (axis {axis})"
                )
        out.append(x)
    return out


def run_model(model: Functional, variables: dict, inputs, *, training=False, rng=None,
              with_masks=False, valid=None, input_masks=None, cell=None, draw_key=None,
              loss_terms: list | None = None):
    """`(outputs, new_state, extra_losses)`: apply plus the layers' added losses; with
    `with_masks`, also each output's propagated mask (None where it has none), in
    `model.output_names` order, for the losses and metrics that honour them.
    `input_masks` (one per input, in `model.input_names` order) are the masks the
    inputs carry in, as a model called inside a Keras-style layer's `call` gets them.

    `training=None` runs the model as Keras's `model(x)` does: each layer resolves its
    value and leaves it in the call context for the next (`_node_training`); `cell` is
    that context when the caller has one. `draw_key()` gives the run's key the first
    time a layer draws, when `rng` is None (`model(x)` takes it from the global stream);
    without either, a layer that would draw raises an error naming it. All of this is
    decided while tracing: the program itself holds only the layers' computations."""
    _, paths = layout(model)
    if not isinstance(variables, dict) or "params" not in variables:
        raise ValueError("variables must be a dict {'params': ..., 'state': ...}, from init()")
    state = _copy_nested(variables.get("state", {}))
    overrides = state.pop(OVERRIDES, None)
    training = None if training is None else bool(training)
    cell = [training, None] if cell is None else cell
    run = _Run(variables["params"], state, as_key(rng), paths, overrides, valid, cell,
               draw_key)
    values = _prepare_inputs(model, inputs)
    with collecting_losses() as added:
        results = _run_graph(model, run, values,
                             list(input_masks) if input_masks else [None] * len(values),
                             training)
    if overrides is not None:
        run.state[OVERRIDES] = overrides  # the state keeps its structure (scan carries)
    outputs = model._output_struct.pack([v for v, _ in results])
    losses = list(added) + run.activity
    if loss_terms is not None:  # each added and activity loss, as Keras's `model.losses`
        loss_terms.extend(losses)
    extra = sum(losses[1:], losses[0]) if losses else jnp.zeros((), jnp.float32)
    if not with_masks:
        return outputs, run.state, extra
    struct = model._output_struct
    masks = struct.unpack(struct.pack([m for _, m in results]), model.output_names, "outputs")
    return outputs, run.state, extra, masks


def apply_model(model: Functional, variables: dict, inputs, training=False, rng=None,
                draw_key=None):
    outputs, state, _ = run_model(model, variables, inputs, training=training, rng=rng,
                                  draw_key=draw_key)
    return outputs, state


def regularization_loss(model: Functional, params: dict, state: dict | None = None):
    """Sum of every layer's weight regularizers (once per layer, however often called)."""
    entries, _ = layout(model)
    total = jnp.zeros((), jnp.float32)
    for layer, path in entries:
        if not any(w.regularizer is not None for w in layer._weights):
            continue
        w = {}
        if any(x.trainable for x in layer._weights):
            w.update(_get_in(params, path, "params"))
        if state is not None and any(not x.trainable for x in layer._weights):
            w.update(_get_in(state, path, "state"))
        total = total + layer.regularization_loss(w)
    return total


def constraints(model: Functional) -> list[tuple[Path, str, Any]]:
    """[(path, weight name, constraint)] to project params after each update."""
    entries, _ = layout(model)
    return [(path, w.name, w.constraint) for layer, path in entries for w in layer._weights
            if w.constraint is not None and w.trainable]


def trainable_mask(model: Functional, params: dict) -> dict:
    """A pytree of bools over `params`: False where the owning layer is frozen."""
    entries, _ = layout(model)
    frozen = set()
    # A layer is frozen if it or any model enclosing it (on its path) is not trainable.
    for layer, path in entries:
        if not layer.trainable:
            frozen.add(path)
    mask: dict = {}
    for layer, path in entries:
        if any(w.trainable for w in layer._weights):
            # Per weight: a wrapper's weights follow the layers it wraps.
            training = {w.name for w in layer.trainable_weights}
            _set_in(mask, path, {w.name: path not in frozen and w.name in training
                                 for w in layer._weights if w.trainable})
    return jax.tree_util.tree_map(lambda _, m: m, params, mask)

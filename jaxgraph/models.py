"""The user-facing `Model` and `Sequential`: graphs plus Keras's training and saving."""

from __future__ import annotations

from .graph.functional import Functional
from .graph.sequential import Sequential as _SequentialGraph
from .layers.base import _LAYER_REGISTRY
from .training.trainer import TrainingMixin


class Model(TrainingMixin, Functional):
    """`Model(inputs, outputs)`: a functional graph you can init/apply, compile and fit."""

    def save(self, filepath, overwrite=True, include_optimizer=True, **kwargs):
        """Architecture, weights and optimizer state in one file, whatever the suffix."""
        from .saving import save_model

        _check_overwrite(filepath, overwrite)
        save_model(self, filepath, include_optimizer=include_optimizer)

    def save_weights(self, filepath, overwrite=True, **kwargs):
        from .saving import save_weights

        _check_overwrite(filepath, overwrite)
        save_weights(self, filepath)

    def load_weights(self, filepath, skip_mismatch=False, by_name=False, **kwargs):
        from .saving import load_weights

        load_weights(self, filepath, skip_mismatch=skip_mismatch)

    def to_json(self, **kwargs) -> str:
        """The architecture as a JSON string (Keras's layout); `kwargs` go to `json.dumps`.

        `jaxgraph.models.model_from_json(s)` rebuilds the model with fresh weights.
        """
        from .saving.model_io import model_to_json

        return model_to_json(self, **kwargs)


class Sequential(_SequentialGraph, Model):
    """A linear stack of layers; a `Model` like any other once its input shape is known."""


def _check_overwrite(filepath, overwrite):
    import os

    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False")


def load_model(filepath, custom_objects=None, compile=True, **kwargs):
    """Rebuild a model saved with `model.save` (no code from the file is executed)."""
    from .saving import load_model as _load

    return _load(filepath, custom_objects=custom_objects, compile=compile)


def load_keras_weights(model, filepath):
    """Load a Keras 3 `.weights.h5` / `.keras` file into the equivalent jaxgraph model."""
    from .saving import load_keras_weights as _load

    return _load(model, filepath)


def model_from_json(json_string, custom_objects=None):
    """A model with the architecture `model.to_json()` gave (fresh weights).

    Keras 3's `to_json()` output for Functional and Sequential models of layers
    jaxgraph has loads too. Names in the string resolve only through jaxgraph's
    registries and `custom_objects`; nothing is imported.
    """
    from .saving.model_io import model_from_json as _from_json

    return _from_json(json_string, custom_objects=custom_objects)


def clone_model(model, input_tensors=None, clone_function=None, call_function=None,
                recursive=False, **kwargs):
    """A new model with the same architecture and fresh (unshared) weights, as in Keras.

    - `clone_function(layer) -> layer` makes each layer of the copy (input layers
      excepted), once per layer: a layer the original calls twice is cloned once and
      called twice. Default: `layer.__class__.from_config(layer.get_config())`, so a
      nested model comes back as a fresh copy of itself. Returning the layer itself
      shares it (and its weights) with the original.
    - `input_tensors`: symbolic tensors (one, a list, or a dict, shaped like
      `model.input`) to build the copy on, instead of new Inputs like the original's.
      `Input` tensors become the clone's inputs; as in Keras 3, a tensor a layer
      produced is stood in for by a fresh Input of its shape (named `<name>CLONE`):
      call the clone on the tensor to connect it.
    - `call_function(layer, *args, **kwargs) -> outputs` makes each call of a cloned
      layer in a functional model (default: `layer(*args, **kwargs)`), e.g. to insert
      layers; not for Sequential models.
    - `recursive=True` clones nested Functional / Sequential models with
      `clone_model` and the same arguments instead of `clone_function`.

    A compiled model gives a clone compiled with the same settings (fresh optimizer
    state). Keras-style subclassed models (their own `call`) are rebuilt from their
    config and take none of these arguments.
    """
    if kwargs:  # as Keras 3, which takes **kwargs for its own use
        raise ValueError(f"clone_model: unexpected keyword argument(s) {tuple(kwargs)}")
    return _clone_model(model, input_tensors, clone_function, call_function, recursive, {})


def _clone_model(model, input_tensors, clone_function, call_function, recursive, cache):
    """`clone_model`, with `cache` {id(original layer): (it, its clone)} shared by the
    nested models a recursive clone visits (a layer shared across them stays shared)."""
    from .graph.functional import Functional

    if clone_function is not None and not callable(clone_function):
        raise ValueError(f"clone_model: clone_function must be callable, got {clone_function!r}")
    if call_function is not None and not callable(call_function):
        raise ValueError(f"clone_model: call_function must be callable, got {call_function!r}")
    if not isinstance(model, Functional):
        raise ValueError(
            f"clone_model expects a jaxgraph Model or Sequential, got {type(model).__name__}"
        )
    subclassed = model._keras_style_call() is not None
    if isinstance(model, _SequentialGraph):
        if call_function is not None:
            raise ValueError(
                "clone_model: call_function is not supported with Sequential models (their "
                "layers are listed, not called); use it with functional models"
            )
        clone = _wrap_clone_function(clone_function, None, recursive, cache)
        new_model = _clone_sequential(model, clone, input_tensors)
    elif not subclassed and (type(model).get_config is Functional.get_config
                             or clone_function is not None or input_tensors is not None):
        clone = _wrap_clone_function(clone_function, call_function, recursive, cache)
        new_model = _clone_functional(model, clone, input_tensors, call_function)
    else:
        if clone_function is not None or input_tensors is not None:
            raise ValueError(
                "clone_model: clone_function and input_tensors are only supported for "
                f"Sequential and functional models, not {type(model).__name__} (a subclassed "
                "model); clone it with model.__class__.from_config(model.get_config())"
            )
        if call_function is not None:
            raise ValueError("clone_model: call_function is only supported for functional "
                             f"models, not {type(model).__name__}")
        new_model = type(model).from_config(model.get_config())
    _compile_like(model, new_model)
    return new_model


def _default_clone(layer):
    """Keras's default: a layer of the same class and config, with new weights."""
    from .layers.core import Lambda

    if type(layer) is Lambda:
        # The function object itself: a lambda or local function has no saveable name.
        return Lambda(layer.function, output_shape=layer.output_shape_arg, mask=layer.mask,
                      arguments=dict(layer.arguments), name=layer.name,
                      trainable=layer.trainable)
    return layer.__class__.from_config(layer.get_config())


def _wrap_clone_function(clone_function, call_function, recursive, cache):
    """`clone_function` run once per layer (shared layers stay shared), with recursion."""
    from .graph.functional import Functional

    clone_function = clone_function or _default_clone

    def wrapped(layer):
        key = id(layer)
        if key in cache:
            return cache[key][1]
        if recursive and isinstance(layer, _SequentialGraph):
            new = _clone_model(layer, None, clone_function, None, True, cache)
        elif recursive and isinstance(layer, Functional) \
                and layer._keras_style_call() is None:
            new = _clone_model(layer, None, clone_function, call_function, True, cache)
        else:
            new = clone_function(layer)
        # The original is kept alive with its clone, so its id is never reused meanwhile.
        cache[key] = (layer, new)
        return new

    return wrapped


def _check_input_tensor(t, what):
    """A tensor to build the clone on. As in Keras 3 any symbolic tensor will do: one
    that a layer produced becomes the clone's input through a fresh `Input` of its
    shape and dtype (Keras's `<name>CLONE`), so the clone is a model of its own, built
    for that tensor, that one then calls on it."""
    from .graph.input_layer import Input
    from .graph.tensor import is_symbolic

    if not is_symbolic(t):
        raise ValueError(
            f"clone_model: all entries in input_tensors must be symbolic tensors (Keras: "
            f"KerasTensors); {what} is {type(t).__name__}"
        )
    if t.node is not None and t.node.is_input:
        return t
    return Input(batch_shape=t.shape, dtype=t.dtype, name=f"{t.name}CLONE")


def _clone_sequential(model, clone, input_tensors):
    from .graph.input_layer import Input

    new_layers = [clone(layer) for layer in model.layers]
    original = model._input_tensor
    if input_tensors is not None:
        if isinstance(input_tensors, (list, tuple)):
            if len(input_tensors) != 1:
                raise ValueError(
                    "clone_model: a Sequential model takes a single input tensor, got "
                    f"{len(input_tensors)} in input_tensors"
                )
            input_tensors = input_tensors[0]
        new_layers.insert(0, _check_input_tensor(input_tensors, "input_tensors"))
    elif original is not None:
        new_layers.insert(0, Input(batch_shape=original.shape, dtype=original.dtype,
                                   name=original.node.layer.name))
    return Sequential(new_layers, name=model.name, trainable=model.trainable)


def _clone_functional(model, clone, input_tensors, call_function):
    import jax

    from .graph.functional import Functional
    from .graph.input_layer import Input
    from .graph.tensor import is_symbolic

    model._require_graph()
    struct = model._input_struct
    originals = struct.flat
    if input_tensors is None:
        new_inputs = [Input(batch_shape=t.shape, dtype=t.dtype, name=t.node.layer.name)
                      for t in originals]
    else:
        if struct.kind == "dict":
            if not isinstance(input_tensors, dict) or \
                    sorted(map(str, input_tensors)) != sorted(struct.keys):
                raise ValueError(
                    "clone_model: input_tensors must have the same structure as model.input: "
                    f"a dict with keys {struct.keys}; got {input_tensors!r}"
                )
            given = [input_tensors[k] for k in struct.keys]
        elif isinstance(input_tensors, (list, tuple)):
            given = list(input_tensors)
        elif isinstance(input_tensors, dict):
            raise ValueError("clone_model: input_tensors must have the same structure as "
                             "model.input; it is a dict, but the model's inputs are not")
        else:
            given = [input_tensors]
        if len(given) != len(originals):
            raise ValueError(
                "clone_model: input_tensors must have the same structure as model.input: "
                f"the model has {len(originals)} input(s) ({model.input_names}), but "
                f"input_tensors holds {len(given)}"
            )
        if len({id(t) for t in given}) != len(given):
            raise ValueError("clone_model: the same tensor appears twice in input_tensors")
        new_inputs = [_check_input_tensor(t, f"input_tensors[{i}]")
                      for i, t in enumerate(given)]

    env = {id(old): new for old, new in zip(originals, new_inputs)}
    for node in model._nodes_in_order:
        layer = clone(node.layer)
        args, call_kwargs = node.call_args(lambda t: env[id(t)])
        if call_function is None:
            outputs = layer(*args, **call_kwargs)
        else:
            outputs = call_function(layer, *args, **call_kwargs)
        flat = jax.tree_util.tree_leaves(outputs, is_leaf=is_symbolic)
        if len(flat) != len(node.output_tensors) or not all(is_symbolic(t) for t in flat):
            raise ValueError(
                f"clone_model: the clone of layer {node.layer.name!r} returned "
                f"{len(flat)} output(s) where the original returned "
                f"{len(node.output_tensors)}"
            )
        for old, new in zip(node.output_tensors, flat):
            env[id(old)] = new
    inputs = struct.pack(new_inputs)
    outputs = model._output_struct.pack([env[id(t)] for t in model._output_struct.flat])
    cls = type(model)
    if cls.__init__ is not Functional.__init__:  # not a Model(inputs, outputs) constructor
        cls = Model
    return cls(inputs, outputs, name=model.name, trainable=model.trainable)


def _compile_like(model, new_model):
    """Compile the clone with the original's settings, as Keras does (when they can be
    rebuilt from their saved form; else the clone is left uncompiled, with a warning)."""
    import warnings

    if getattr(model, "_compile_config", None) is None \
            or not callable(getattr(new_model, "compile", None)):
        return
    from .saving.model_io import (
        _current_compile_config,
        _resolve_compile_config,
        _unserializable_entries,
    )

    saved = _current_compile_config(model)
    if not isinstance(saved, dict):
        return
    lost = [d for key in ("optimizer", "loss", "metrics", "weighted_metrics")
            for _, d, _ in _unserializable_entries(saved.get(key), key)]
    try:
        if lost:
            raise ValueError(f"{', '.join(map(str, lost))} cannot be rebuilt from a config")
        arguments, _ = _resolve_compile_config(saved, None, f"the clone of {model.name!r}")
        new_model.compile(**arguments)
    except (TypeError, ValueError) as e:
        warnings.warn(
            f"clone_model: the clone of {model.name!r} is not compiled ({e}); call "
            "compile() on it before training",
            stacklevel=3,
        )


_LAYER_REGISTRY["Model"] = Model
_LAYER_REGISTRY["Functional"] = Model
_LAYER_REGISTRY["Sequential"] = Sequential

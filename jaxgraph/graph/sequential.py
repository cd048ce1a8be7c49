"""`Sequential`: a linear stack of layers, itself a functional graph once its input
shape is known (from `input_shape=`, an `Input`, `build()` or the first call)."""

from __future__ import annotations

import jax
import numpy as np

from ..layers.base import Layer, flush_sync
from .functional import Functional, _auto_name
from .input_layer import Input, InputLayer
from .tensor import SymbolicTensor, canonical_shape, is_symbolic


class Sequential(Functional):
    """`Sequential([...])` or `Sequential()` + `.add(layer)`."""

    def __init__(self, layers=None, name: str | None = None, trainable: bool = True, **kwargs):
        super().__init__(name=name or _auto_name("sequential"), trainable=trainable, **kwargs)
        self._stack: list[Layer] = []
        self._input_tensor = None
        self._own_nodes: list = []
        for layer in layers or []:
            self.add(layer, rebuild=False)
        self._rebuild_if_possible()

    def add(self, layer, rebuild: bool = True) -> None:
        if is_symbolic(layer):
            if layer.node is None or not layer.node.is_input or self._stack:
                raise TypeError(
                    "Sequential accepts an Input(...) tensor only as its first element"
                )
            self._input_tensor = layer
        elif isinstance(layer, InputLayer):
            if self._stack:
                raise TypeError("An InputLayer can only be the first layer of a Sequential")
            self._input_tensor = layer.output
        elif isinstance(layer, Layer):
            if any(other.name == layer.name for other in self._stack):
                raise ValueError(
                    f"Sequential {self.name!r} already has a layer named {layer.name!r}; "
                    "layer names must be unique within a model"
                )
            if not self._stack and self._input_tensor is None:
                shape = layer._declared_input_shape
                if shape is not None:
                    self._input_tensor = Input(shape=shape, batch_size=layer._declared_batch_size,
                                               dtype=getattr(layer, "_declared_input_dtype",
                                                             "float32"))
                elif isinstance(layer, Functional) and layer._input_struct is not None \
                        and len(layer.inputs) == 1:
                    # `model.add(conv_base)`: a built model brings its input shape along.
                    t = layer.inputs[0]
                    self._input_tensor = Input(shape=t.shape[1:], dtype=t.dtype)
            self._stack.append(layer)
        else:
            raise TypeError(
                f"Sequential.add expects a layer, got {type(layer).__name__}: {layer!r}"
            )
        if rebuild:
            self._rebuild_if_possible()

    def pop(self) -> Layer:
        if not self._stack:
            raise TypeError(f"Sequential {self.name!r} has no layers to pop")
        layer = self._stack.pop()
        self._rebuild_if_possible()
        return layer

    def _rebuild_if_possible(self) -> None:
        trainer = getattr(self, "_trainer", None)
        if trainer is not None:
            # The training state is laid out for the old stack: hand its weights to the
            # layers now, and compile again (same arguments) once the stack has changed.
            trainer.push_to_model()
            flush_sync()
            self._trainer = None
        self._relink()
        if trainer is not None and self._compile_args is not None:
            self.compile(**self._compile_args)

    def _relink(self) -> None:
        for layer, node in self._own_nodes:
            if node in layer._nodes:
                layer._nodes.remove(node)
        self._own_nodes = []
        if self._input_tensor is None or not self._stack:
            self._input_struct = None
            self.built = False
            return
        x = self._input_tensor
        for layer in self._stack:
            before = len(layer._nodes)
            x = layer(x)
            self._own_nodes.extend((layer, n) for n in layer._nodes[before:])
        self._set_graph(self._input_tensor, x)
        self._layers = list(self._stack)

    @property
    def layers(self) -> list[Layer]:
        return list(self._stack)

    def build(self, input_shape=None) -> None:
        """Build for `input_shape` including the batch dim, e.g. `build((None, 784))`."""
        if self._input_struct is not None:
            return
        if input_shape is None:
            raise ValueError(f"Sequential {self.name!r}.build() needs an input shape")
        shape = canonical_shape(input_shape)
        self._input_tensor = Input(shape=shape[1:], batch_size=shape[0])
        self._rebuild_if_possible()

    def _maybe_build(self, first_arg) -> None:
        if self._input_struct is None:
            if not hasattr(first_arg, "shape"):
                raise ValueError(f"Sequential {self.name!r} must be called on a single tensor")
            shape = tuple(first_arg.shape)
            dtype = getattr(first_arg, "dtype", "float32")
            self._input_tensor = Input(shape=shape[1:], dtype=dtype)
            self._rebuild_if_possible()

    def _eager_call(self, args, kwargs):
        """`model(array)` on an unbuilt Sequential builds it from the array's shape first."""
        if self._input_struct is None and args and hasattr(args[0], "shape"):
            x = args[0]
            dtype = np.dtype(getattr(x, "dtype", "float32"))
            # Data arrays (often float64 numpy) feed the float32 default; ints stay ints.
            dtype = dtype.name if np.issubdtype(dtype, np.integer) else "float32"
            shape = tuple(x.shape)
            if isinstance(x, jax.core.Tracer) and len(shape) > 1:
                # Traced inside a Keras-style layer's `call` (shapes are inferred with
                # stand-in sizes): only the feature axis is the model's own.
                shape = (None,) * (len(shape) - 1) + shape[-1:]
            self._maybe_build(SymbolicTensor(shape, dtype))
        return super()._eager_call(args, kwargs)

    def _require_graph(self):
        if self._input_struct is None:
            raise ValueError(
                f"Sequential model {self.name!r} has no input shape yet, so it is not built. "
                "Give the first layer input_shape=..., start with Input(...), call "
                "model.build((None, ...)) or call the model on data first."
            )

    def get_config(self) -> dict:
        from .config import layer_record

        config = {"name": self.name, "trainable": self.trainable,
                  "layers": [layer_record(layer) for layer in self._stack]}
        if self._input_tensor is not None:
            t = self._input_tensor
            config["build_input_shape"] = [None, *t.shape[1:]]
            config["input_dtype"] = t.dtype
        return config

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None):
        from ..layers.serialization import deserialize_layer

        model = cls(name=config.get("name"), trainable=config.get("trainable", True))
        if config.get("build_input_shape") is not None:
            model.add(Input(shape=config["build_input_shape"][1:],
                            dtype=config.get("input_dtype", "float32")), rebuild=False)
        for layer_config in config["layers"]:
            model.add(deserialize_layer(layer_config, custom_objects), rebuild=False)
        model._rebuild_if_possible()
        return model


def _trainable_get(self) -> bool:
    return self._trainable


def _trainable_set(self, value: bool) -> None:
    self._trainable = bool(value)
    for layer in self._stack:
        layer.trainable = value


Sequential.trainable = property(_trainable_get, _trainable_set)

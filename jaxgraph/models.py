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


def clone_model(model, input_tensors=None):
    """A new model with the same architecture and fresh (unshared) weights."""
    if input_tensors is not None:
        raise ValueError("clone_model(input_tensors=...) is not supported")
    return type(model).from_config(model.get_config())


_LAYER_REGISTRY["Model"] = Model
_LAYER_REGISTRY["Functional"] = Model
_LAYER_REGISTRY["Sequential"] = Sequential

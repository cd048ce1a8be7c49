"""Utilities with Keras's names: seeding, one-hot labels, datasets, summaries, model plots."""

from ..random import set_random_seed
from .data_utils import normalize, to_categorical


def image_dataset_from_directory(directory, **kwargs):
    """Stream (images, labels) batches from class subfolders (see `utils.image_dataset`)."""
    from .image_dataset import image_dataset_from_directory as _load

    return _load(directory, **kwargs)


def text_dataset_from_directory(directory, *args, **kwargs):
    """Stream (texts, labels) batches from class subfolders (see `utils.text_dataset`)."""
    from .text_dataset import text_dataset_from_directory as _load

    return _load(directory, *args, **kwargs)


def timeseries_dataset_from_array(data, targets, sequence_length, *args, **kwargs):
    """Stream batches of sliding windows over an array (see `utils.timeseries_dataset`)."""
    from .timeseries_dataset import timeseries_dataset_from_array as _make

    return _make(data, targets, sequence_length, *args, **kwargs)


def plot_model(model, to_file="model.png", **kwargs):
    """Draw the layer graph with Graphviz (see `jaxgraph.utils.plot.plot_model`)."""
    from .plot import plot_model as _plot

    return _plot(model, to_file=to_file, **kwargs)


def model_to_dot(model, **kwargs):
    from .plot import model_to_dot as _to_dot

    return _to_dot(model, **kwargs)


__all__ = ["image_dataset_from_directory", "model_to_dot", "normalize", "plot_model",
           "set_random_seed", "text_dataset_from_directory", "timeseries_dataset_from_array",
           "to_categorical"]

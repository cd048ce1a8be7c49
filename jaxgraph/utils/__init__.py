"""Utilities with Keras's names: seeding, one-hot labels, summaries, model plots."""

from ..random import set_random_seed
from .data_utils import normalize, to_categorical


def image_dataset_from_directory(directory, **kwargs):
    """Stream (images, labels) batches from class subfolders (see `utils.image_dataset`)."""
    from .image_dataset import image_dataset_from_directory as _load

    return _load(directory, **kwargs)


def plot_model(model, to_file="model.png", **kwargs):
    """Draw the layer graph with Graphviz (see `jaxgraph.utils.plot.plot_model`)."""
    from .plot import plot_model as _plot

    return _plot(model, to_file=to_file, **kwargs)


def model_to_dot(model, **kwargs):
    from .plot import model_to_dot as _to_dot

    return _to_dot(model, **kwargs)


__all__ = ["image_dataset_from_directory", "model_to_dot", "normalize", "plot_model",
           "set_random_seed", "to_categorical"]

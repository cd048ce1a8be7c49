"""Datasets with Keras's `load_data()` interface, returning numpy arrays."""

from jaxgraph.datasets import digits, fashion_mnist, imdb, mnist

__all__ = ["digits", "fashion_mnist", "imdb", "mnist"]

"""Keras-style preprocessing helpers (`jaxgraph.preprocessing.sequence.pad_sequences`)."""

from jaxgraph.preprocessing import sequence
from jaxgraph.preprocessing.sequence import pad_sequences

__all__ = ["pad_sequences", "sequence"]

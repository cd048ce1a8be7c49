"""Keras-style preprocessing helpers: `sequence.pad_sequences`, `image`, `text`."""

from jaxgraph.preprocessing import image, sequence, text
from jaxgraph.preprocessing.sequence import pad_sequences

__all__ = ["image", "pad_sequences", "sequence", "text"]

"""Global seeding, so initialization, shuffling and dropout are reproducible.

Keras users call `set_random_seed(seed)`; everything that needs a fresh key outside
a traced function (lazy weight creation, fit's shuffling and dropout keys) draws it
from here, never from hidden per-layer state.
"""

from __future__ import annotations

import contextlib
import math
import random as _py_random
import threading

import jax
import numpy as np

_lock = threading.Lock()
_seed: int | None = None
_counter = 0


def set_random_seed(seed: int) -> None:
    """Seed Python, NumPy and jaxgraph's key stream (Keras's `utils.set_random_seed`)."""
    global _seed, _counter
    if not isinstance(seed, (int, np.integer)):
        raise TypeError(f"set_random_seed expects an int, got {seed!r}")
    with _lock:
        _seed = int(seed)
        _counter = 0
    _py_random.seed(int(seed))
    np.random.seed(int(seed) % (2**32))


def next_seed() -> int:
    """A fresh 31-bit seed: deterministic after `set_random_seed`, random otherwise."""
    global _counter
    with _lock:
        if _seed is None:
            return int(np.random.default_rng().integers(0, 2**31 - 1))
        _counter += 1
        return int(np.random.default_rng([_seed, _counter]).integers(0, 2**31 - 1))


@contextlib.contextmanager
def preserved_stream():
    """Draws made inside leave the global stream where it was, so extra work (building
    a model only to inspect it) does not shift the keys that later training draws."""
    global _counter
    with _lock:
        counter = _counter
    try:
        yield
    finally:
        with _lock:
            _counter = counter


def next_key() -> jax.Array:
    """A fresh PRNG key from the global stream."""
    return jax.random.key(next_seed())


def as_key(rng) -> jax.Array | None:
    """Accept an int seed, a new-style key or a legacy uint32 key."""
    if rng is None:
        return None
    if isinstance(rng, (int, np.integer)):
        return jax.random.key(int(rng))
    if hasattr(rng, "dtype") and jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
        return rng
    if hasattr(rng, "shape") and tuple(rng.shape)[-1:] == (2,):
        return jax.random.wrap_key_data(rng)
    raise TypeError(f"rng must be a jax.random.key, a legacy PRNGKey or an int; got {rng!r}")


def flat_draw(sampler, key, shape, **kwargs):
    """`sampler(key, shape=shape)` drawn as one flat vector and reshaped.

    XLA on CPU compiles the threefry generator many times slower for rank >= 3 shapes
    than for a vector; the values are identical (threefry counts over the flat index).
    """
    shape = tuple(shape)
    return sampler(key, shape=(math.prod(shape),), **kwargs).reshape(shape)

"""Test setup: Keras (the reference implementation) runs on its JAX backend, on CPU."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

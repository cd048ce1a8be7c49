"""Test setup: Keras (the reference implementation) runs on its JAX backend, on CPU."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import importlib  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def import_spy(monkeypatch):
    """Records every importlib.import_module call made while loading."""
    calls = []
    real = importlib.import_module

    def spy(name, package=None):
        calls.append(name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", spy)
    return calls

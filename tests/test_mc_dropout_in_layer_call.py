"""Monte Carlo dropout written inside a Keras-style layer's `call` (`self.drop(x,
training=True)`): predict must draw a fresh mask for every batch and every call, as
Keras does, not one mask fixed when the program was traced."""

import os

import numpy as np
import pytest

import jaxgraph


@pytest.fixture(scope="module")
def keras():
    os.environ["KERAS_BACKEND"] = "jax"
    return pytest.importorskip("keras")


def model_with(lib, always_drop: bool):
    class Block(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.drop = lib.layers.Dropout(0.5)

        def call(self, x, training=None):
            return self.drop(x, training=True if always_drop else training)

    inputs = lib.Input((256,))
    return lib.Model(inputs, Block()(inputs))


@pytest.mark.parametrize("lib_name", ["keras", "jaxgraph"])
def test_predict_draws_a_fresh_mask_per_batch_and_per_call(lib_name, keras):
    lib = keras if lib_name == "keras" else jaxgraph
    model = model_with(lib, always_drop=True)
    x = np.ones((8, 256), "float32")
    first = model.predict(x, batch_size=4, verbose=0)
    second = model.predict(x, batch_size=4, verbose=0)
    assert 0.4 < float((first == 0).mean()) < 0.6
    assert not np.array_equal(first, second)
    assert not np.array_equal(first[:4], first[4:])  # the two batches
    kept = first[first != 0]
    np.testing.assert_allclose(kept, 2.0)  # 1 / (1 - rate)


@pytest.mark.parametrize("lib_name", ["keras", "jaxgraph"])
def test_a_layer_passing_training_on_stays_deterministic_in_predict(lib_name, keras):
    lib = keras if lib_name == "keras" else jaxgraph
    model = model_with(lib, always_drop=False)
    x = np.random.default_rng(0).normal(size=(8, 256)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, batch_size=4, verbose=0), x)
    if lib is jaxgraph:  # a key is handed in, in case `call` draws; none was used here
        assert model.inference_needs_rng()

"""Advanced activation layers (ReLU, LeakyReLU, ELU, Softmax, PReLU) against Keras 3."""

import numpy as np
import pytest

from jaxgraph import Input, Model, layers

keras = pytest.importorskip("keras")

CASES = [
    ("ReLU", {}), ("ReLU", {"max_value": 1.0, "negative_slope": 0.1, "threshold": 0.2}),
    ("LeakyReLU", {}), ("LeakyReLU", {"negative_slope": 0.05}), ("ELU", {"alpha": 0.7}),
    ("Softmax", {}), ("Softmax", {"axis": 1}),
]


@pytest.mark.parametrize("name,kwargs", CASES)
def test_matches_keras(name, kwargs):
    x = np.random.default_rng(0).normal(size=(4, 5, 6)).astype("f4")
    ours = getattr(layers, name)(**kwargs)
    theirs = getattr(keras.layers, name)(**kwargs)
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), atol=1e-6)


def test_prelu_weights_and_shared_axes():
    x = np.random.default_rng(1).normal(size=(2, 4, 4, 3)).astype("f4")
    k = keras.layers.PReLU(shared_axes=[1, 2])
    k.build(x.shape)
    alpha = np.random.default_rng(2).normal(size=(1, 1, 3)).astype("f4")
    k.set_weights([alpha])
    i = Input(shape=(4, 4, 3))
    ours = layers.PReLU(shared_axes=[1, 2])
    model = Model(i, ours(i))
    ours.set_weights([alpha])
    assert model.count_params() == k.count_params() == 3
    np.testing.assert_allclose(model.predict(x, verbose=0), np.asarray(k(x)), atol=1e-6)

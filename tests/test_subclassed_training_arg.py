"""A Keras-style Model subclass whose `call(inputs, training=False)` hands `training` to
its layers: jaxgraph traces `call` once into a graph, and those layers must still follow
the value the model runs with (fit's True, predict's False, a direct call's), as in Keras,
where `call` runs anew each time."""

import os

import numpy as np
import pytest

import jaxgraph


@pytest.fixture(scope="module")
def keras():
    os.environ["KERAS_BACKEND"] = "jax"
    return pytest.importorskip("keras")


def dropout_model(lib, branch_on_training=False):
    class Noisy(lib.Model):
        def __init__(self):
            super().__init__()
            self.dense = lib.layers.Dense(16, kernel_initializer="ones")
            self.drop = lib.layers.Dropout(0.5)

        def call(self, inputs, training=False):
            x = self.dense(inputs)
            if branch_on_training and training:  # Python sees the traced value: None
                x = x * 0.0
            return self.drop(x, training=training)

    return Noisy()


def _zero_fraction(out):
    return float((np.asarray(out) == 0).mean())


@pytest.mark.parametrize("lib_name", ["keras", "jaxgraph"])
def test_training_reaches_the_layers_call_hands_it_to(lib_name, keras):
    lib = keras if lib_name == "keras" else jaxgraph
    model = dropout_model(lib)
    x = np.ones((128, 4), "float32")
    assert _zero_fraction(model(x)) == 0.0  # call's default: False
    assert 0.4 < _zero_fraction(model(x, training=True)) < 0.6
    assert _zero_fraction(model(x, training=False)) == 0.0
    assert _zero_fraction(model.predict(x, verbose=0)) == 0.0

    # fit trains with dropout: the first epoch's loss on targets 0 is about twice the
    # loss without it (kept units are scaled by 2, so their squares by 4, half kept).
    model.compile(optimizer=lib.optimizers.SGD(learning_rate=0.0), loss="mse")
    y = np.zeros((128, 16), "float32")
    fit_loss = model.fit(x, y, batch_size=128, epochs=1, verbose=0, shuffle=False
                         ).history["loss"][0]
    eval_loss = model.evaluate(x, y, verbose=0)
    eval_loss = eval_loss[0] if isinstance(eval_loss, list) else eval_loss
    assert eval_loss == pytest.approx(16.0)  # every unit is 4 (4 ones times kernel 1)
    assert fit_loss == pytest.approx(2 * eval_loss, rel=0.2)


def test_python_branches_on_training_take_the_inference_branch_as_before():
    model = dropout_model(jaxgraph, branch_on_training=True)
    x = np.ones((8, 4), "float32")
    np.testing.assert_allclose(np.asarray(model(x)), 4.0)
    assert float(np.abs(np.asarray(model(x, training=True))).max()) > 0.0

"""Layers called with training=True in the graph (Monte Carlo dropout) draw fresh
randomness in predict and evaluate, as Keras does; other models draw none."""

import jax
import numpy as np

import jaxgraph
from jaxgraph import layers


def _mc_model(rate=0.5):
    inp = jaxgraph.Input((8,))
    h = layers.Dense(16, kernel_initializer="ones")(inp)
    h = layers.Dropout(rate)(h, training=True)
    return jaxgraph.Model(inp, layers.Dense(1, kernel_initializer="ones")(h))


def test_monte_carlo_dropout_in_predict_and_evaluate():
    model = _mc_model()
    assert model.inference_needs_rng()
    x = np.ones((40, 8), "float32")
    a, b = model.predict(x, batch_size=8, verbose=0), model.predict(x, batch_size=8, verbose=0)
    assert not np.allclose(a, b)  # a fresh draw per call
    assert not np.allclose(a[:8], a[8:16])  # and per batch
    # Inverted dropout keeps the mean: each unit is 0 or 2 * 8, summed over 16 units.
    assert set(np.unique(a)) <= {16.0 * k for k in range(17)}
    assert abs(a.mean() - 128.0) < 16.0
    model.compile(jaxgraph.optimizers.SGD(1e-4), "mse")
    x, y = x * 0.01, np.zeros((40, 1), "float32")
    e1, e2 = model.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0)
    assert np.isfinite(e1) and e1 != e2
    hist = model.fit(x, y, epochs=1, batch_size=8, validation_data=(x, y), verbose=0)
    assert np.isfinite(hist.history["val_loss"][0])
    assert np.isfinite(model.test_on_batch(x, y))


def test_models_without_forced_training_draw_nothing():
    inp = jaxgraph.Input((8,))
    model = jaxgraph.Model(inp, layers.Dense(1)(layers.Dropout(0.5)(inp)))
    assert model.needs_rng() and not model.inference_needs_rng()
    x = np.ones((16, 8), "float32")
    model.predict(x, verbose=0)  # weights are created (from the stream) on first use
    jaxgraph.utils.set_random_seed(3)
    p1 = model.predict(x, verbose=0)
    after_first = jax.random.key_data(jaxgraph.random.next_key())
    jaxgraph.utils.set_random_seed(3)
    p2 = model.predict(x, verbose=0)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(jax.random.key_data(jaxgraph.random.next_key()), after_first)
    outer_in = jaxgraph.Input((8,))
    nested = jaxgraph.Model(outer_in, _mc_model()(outer_in))
    assert nested.inference_needs_rng()

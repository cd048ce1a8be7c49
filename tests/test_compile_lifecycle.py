"""compile() across a model's life: a Sequential compiled before it has an input shape,
a Sequential changed by add/pop after fit, and `trainable` flags changed after training."""

import warnings

import numpy as np
import pytest

import jaxgraph
from jaxgraph import Input, Model, Sequential, layers


def _data(n=64, features=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)).astype("float32")
    return x, x.sum(1, keepdims=True) + 0.5


def test_sequential_without_input_shape_compiles_and_fits_like_a_built_one():
    x, y = _data()
    jaxgraph.utils.set_random_seed(0)
    deferred = Sequential([layers.Dense(16, activation="relu"), layers.Dense(1)])
    deferred.compile("rmsprop", "mse", metrics=["mae"])
    assert not deferred.built
    deferred.predict(x[:2], verbose=0)  # builds it from the data, as Keras does
    assert deferred.built and deferred.count_params() == 3 * 16 + 16 + 16 + 1
    w0 = deferred.get_weights()

    built = Sequential([Input((3,)), layers.Dense(16, activation="relu"), layers.Dense(1)])
    built.set_weights(w0)
    built.compile("rmsprop", "mse", metrics=["mae"])
    h1 = deferred.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0).history
    h2 = built.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0).history
    assert set(h1) == {"loss", "mae"}
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-6)
    np.testing.assert_allclose(h1["mae"], h2["mae"], rtol=1e-6)
    assert h1["loss"][-1] < h1["loss"][0]
    for a, b in zip(deferred.get_weights(), built.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_sequential_without_input_shape_builds_from_fit_evaluate_and_streams():
    x, y = _data()
    m = Sequential([layers.Dense(4), layers.Dense(1)])
    m.compile("adam", "mse")
    m.fit(x, y, epochs=1, verbose=0)
    assert m.built and m.inputs[0].shape == (None, 3)

    e = Sequential([layers.Dense(4), layers.Dense(1)])
    e.compile("adam", "mse")
    loss = e.evaluate(x, y, verbose=0)
    np.testing.assert_allclose(loss, np.mean((e.predict(x, verbose=0) - y) ** 2), rtol=1e-5)

    taken = []

    def batches():
        for i in range(6):
            taken.append(i)
            yield x[i * 8:(i + 1) * 8], y[i * 8:(i + 1) * 8]

    g = Sequential([layers.Dense(4), layers.Dense(1)])
    g.compile("adam", "mse")
    g.fit(batches(), steps_per_epoch=6, epochs=1, verbose=0)
    assert g.built and taken == list(range(6))  # the peeked batch is trained on, once
    assert g.optimizer.iterations == 6


def test_sequential_compiled_without_shape_or_data_names_the_fix():
    m = Sequential([layers.Dense(4)], name="late")
    m.compile("adam", "mse")
    with pytest.raises(ValueError, match="'late'.*input shape"):
        m.make_train_step()


def test_sequential_add_and_pop_after_fit_keep_trained_weights_and_recompile():
    x, y = _data()
    m = Sequential([Input((3,)), layers.Dense(4, name="first")])
    m.compile("rmsprop", "mse")
    m.fit(x, np.tile(y, (1, 4)), epochs=2, verbose=0)
    trained = m.get_layer("first").get_weights()
    m.add(layers.Dense(1, name="head"))
    for a, b in zip(m.get_layer("first").get_weights(), trained):
        np.testing.assert_array_equal(a, b)
    assert m.predict(x, verbose=0).shape == (64, 1)
    h = m.fit(x, y, epochs=2, verbose=0).history
    assert len(h["loss"]) == 2 and np.isfinite(h["loss"]).all()
    assert not np.array_equal(m.get_layer("first").get_weights()[0], trained[0])
    m.pop()
    assert m.fit(x, np.tile(y, (1, 4)), epochs=1, verbose=0).history["loss"][0] > 0


def test_trainable_changed_after_fit_takes_effect_with_a_warning():
    x, y = _data()
    inp = Input((3,))
    d1, d2 = layers.Dense(4, name="d1"), layers.Dense(1, name="d2")
    m = Model(inp, d2(d1(inp)))
    m.compile(jaxgraph.optimizers.Adam(learning_rate=1e-3), "mse")
    m.fit(x, y, verbose=0)
    m.optimizer.learning_rate = 0.02
    kernel, head = d1.get_weights()[0], d2.get_weights()[0]
    d1.trainable = False
    with pytest.warns(UserWarning, match="trainable"):
        m.fit(x, y, verbose=0)
    np.testing.assert_array_equal(d1.get_weights()[0], kernel)
    assert not np.array_equal(d2.get_weights()[0], head)
    assert m.optimizer.learning_rate == pytest.approx(0.02)  # kept across the recompile
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.fit(x, y, verbose=0)  # nothing changed since: no new warning
    d1.trainable = True
    with pytest.warns(UserWarning, match="trainable"):
        m.fit(x, y, verbose=0)
    assert not np.array_equal(d1.get_weights()[0], kernel)

"""Reading weights after `fit` copies the live state out of the donated training buffers:
the runtime copies them, compiling nothing (one copy program per weight shape cost
about 10 ms and 1 MB of resident memory each on CPU)."""

import contextlib

import jax
import numpy as np

import jaxgraph
from jaxgraph import layers

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def count_compiles():
    seen = []

    def listen(event, duration, **kwargs):
        if event == COMPILE_EVENT:
            seen.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


def _model():
    inputs = jaxgraph.Input((6,))
    x = layers.Dense(5, activation="relu")(inputs)
    x = layers.BatchNormalization()(x)
    outputs = layers.Dense(3, activation="softmax")(x)
    model = jaxgraph.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(64, 6)).astype("float32"), rng.integers(0, 3, 64)


def _fitted_model():
    model = _model()
    x_train, y_train = _data()
    model.fit(x_train, y_train, batch_size=16, epochs=2, verbose=0, shuffle=False)
    return model, x_train, y_train


def test_reading_weights_after_fit_compiles_nothing_and_survives_more_training():
    model, x_train, y_train = _fitted_model()
    with count_compiles() as compiles:
        weights = model.get_weights()
        again = model.get_weights()
    assert compiles == []
    assert len(weights) == 8  # 2 Dense x2 + BatchNormalization's four
    for a, b in zip(weights, again):
        np.testing.assert_array_equal(a, b)

    # The copies are the model's own: the next fit donates the training state's buffers,
    # and what was read must neither change nor be invalidated by that.
    snapshot = [np.array(w) for w in weights]
    model.fit(x_train, y_train, batch_size=16, epochs=1, verbose=0)
    for a, b in zip(weights, snapshot):
        np.testing.assert_array_equal(np.asarray(a), b)
    moved = [not np.array_equal(a, b) for a, b in zip(model.get_weights(), snapshot)]
    assert any(moved)


def test_weights_set_between_fits_are_picked_up_without_a_compile():
    model, x_train, y_train = _fitted_model()
    chosen = [np.asarray(w) * 0.5 + 0.01 for w in model.get_weights()]
    chosen[5] = np.abs(chosen[5]) + 0.5  # BatchNormalization's moving variance: > 0
    model.set_weights(chosen)
    with count_compiles() as compiles:
        model.fit(x_train, y_train, batch_size=16, epochs=1, verbose=0, shuffle=False)
    assert compiles == []

    # Plain SGD has no slots: one epoch from `chosen` is the same in a fresh model.
    fresh = _model()
    fresh.set_weights(chosen)
    fresh.fit(x_train, y_train, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)

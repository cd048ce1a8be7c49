"""Sequential and functional models held by a Keras-style layer (the book's
TransformerEncoder keeps `self.dense_proj = keras.Sequential([...])`), against Keras 3:
they take the caller's training value and keys, run on the masks their inputs carry,
and leave training values and masks for the calls after them, as plain layers do."""

import jax
import numpy as np
import pytest

import jaxgraph as jg

keras = pytest.importorskip("keras")


def _dropout_block(lib, rate=0.5):
    class ProjectDrop(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.proj = lib.Sequential([lib.layers.Dense(32), lib.layers.Dropout(rate)])

        def call(self, inputs):
            return self.proj(inputs)

    return ProjectDrop


def test_inner_sequential_dropout_drops_with_a_fresh_key_each_training_step():
    inputs = jg.Input((16,))
    model = jg.Model(inputs, _dropout_block(jg)()(inputs))
    x = np.ones((8, 16), "float32")
    v = model.variables
    apply = jax.jit(model.apply, static_argnames="training")
    a, _ = apply(v, x, training=True, rng=jax.random.key(0))
    b, _ = apply(v, x, training=True, rng=jax.random.key(1))
    assert 0.3 < np.mean(np.asarray(a) == 0) < 0.7
    assert not np.allclose(np.asarray(a), np.asarray(b))  # not a key baked in at trace
    c, _ = apply(v, x, training=False)
    d, _ = apply(v, x, training=False)
    np.testing.assert_array_equal(np.asarray(c), np.asarray(d))
    assert not np.any(np.asarray(c) == 0)


def test_inner_sequential_dropout_is_active_in_fit_only():
    # With a zero learning rate, fit's loss is the training-mode loss: it differs from
    # evaluate's exactly when the inner Dropout drops during fit.
    x = np.random.default_rng(0).normal(size=(32, 16)).astype("float32")
    y = np.zeros((32, 32), "float32")
    inputs = jg.Input((16,))
    model = jg.Model(inputs, _dropout_block(jg, rate=0.8)()(inputs))
    model.compile(optimizer=jg.optimizers.SGD(learning_rate=0.0), loss="mse")
    fit_loss = model.fit(x, y, batch_size=32, epochs=1, verbose=0).history["loss"][0]
    eval_loss = model.evaluate(x, y, batch_size=32, verbose=0)
    assert abs(fit_loss - eval_loss) > 1e-3 * eval_loss
    np.testing.assert_allclose(model.predict(x, verbose=0), model.predict(x, verbose=0))


def _order_classes(lib):
    layers = lib.layers

    class FlipThenSeq(layers.Layer):
        """RandomFlip resolves its default True first: the inner model then trains."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.flip = layers.RandomFlip("horizontal")
            self.seq = lib.Sequential([layers.Dropout(0.5)])

        def call(self, inputs):
            return self.flip(inputs), self.seq(inputs)

    class SeqThenFlip(FlipThenSeq):
        """The inner Dropout leaves False behind: the RandomFlip after it infers."""

        def call(self, inputs):
            dropped = self.seq(inputs)
            return self.flip(inputs), dropped

    class InnerFlipThenDrop(layers.Layer):
        """The inner RandomFlip flips by default and leaves True for the Dropout after."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.seq = lib.Sequential([layers.RandomFlip("horizontal")])
            self.drop = layers.Dropout(0.5)

        def call(self, inputs):
            return self.seq(inputs), self.drop(inputs)

    return FlipThenSeq, SeqThenFlip, InnerFlipThenDrop


def _effects(layer, x, calls=4):
    """(first output ever changed, second output ever changed) over direct calls."""
    first = second = False
    for _ in range(calls):
        a, b = (np.asarray(o) for o in layer(x))
        first |= not np.allclose(a, x)
        second |= not np.allclose(b, x)
    return first, second


def test_training_resolution_order_through_inner_models_matches_keras():
    x = np.arange(1, 16 * 4 * 4 + 1, dtype="float32").reshape(16, 4, 4, 1)
    for k_cls, j_cls in zip(_order_classes(keras), _order_classes(jg)):
        assert _effects(j_cls(), x) == _effects(k_cls(), x), j_cls.__name__
    # An explicit training= still wins over the caller's value.
    j_cls = _order_classes(jg)[1]
    layer = j_cls()
    a, b = (np.asarray(o) for o in layer(x, training=False))
    np.testing.assert_array_equal(a, x)
    np.testing.assert_array_equal(b, x)


def _mask_classes(lib):
    layers = lib.layers

    class EmbedSeqLSTM(layers.Layer):
        """An Embedding's mask reaches the LSTM inside an inner Sequential."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.embedding = layers.Embedding(10, 4, mask_zero=True)
            self.seq = lib.Sequential([layers.LSTM(3, return_sequences=True),
                                       layers.LSTM(2)])

        def call(self, inputs):
            return self.seq(self.embedding(inputs))

    class SeqMaskThenPool(layers.Layer):
        """The mask an inner Sequential computes rides out on its output to the pooling."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.seq = lib.Sequential([layers.Masking(0.0), layers.Dense(3)])
            self.pool = layers.GlobalAveragePooling1D()

        def call(self, inputs):
            return self.pool(self.seq(inputs))

    class MaskingInsideSeq(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.seq = lib.Sequential([layers.Masking(0.0), layers.LSTM(3)])

        def call(self, inputs):
            return self.seq(inputs)

    return EmbedSeqLSTM, SeqMaskThenPool, MaskingInsideSeq


def _matched(k_cls, j_cls, x):
    kl, jl = k_cls(), j_cls()
    kl(x)
    jl(x)
    rng = np.random.default_rng(3)
    weights = [rng.normal(scale=0.5, size=w.shape).astype("float32") for w in kl.weights]
    kl.set_weights(weights)
    jl.set_weights(weights)
    return kl, jl


def test_masks_reach_and_leave_inner_models_as_in_keras():
    tokens = np.array([[1, 2, 0, 0], [3, 0, 0, 0], [4, 5, 6, 7]], "int32")
    seqs = np.random.default_rng(1).normal(size=(3, 5, 2)).astype("float32")
    seqs[0, 2:] = 0.0
    seqs[1, 1:] = 0.0
    for k_cls, j_cls, x in zip(_mask_classes(keras), _mask_classes(jg),
                               (tokens, seqs, seqs)):
        kl, jl = _matched(k_cls, j_cls, x)
        want = np.asarray(kl(x))
        np.testing.assert_allclose(np.asarray(jl(x)), want, atol=1e-5,
                                   err_msg=j_cls.__name__)
        # The same inside a model, traced by predict.
        kin = keras.Input(x.shape[1:], dtype=x.dtype.name)
        jin = jg.Input(x.shape[1:], dtype=x.dtype.name)
        got = jg.Model(jin, jl(jin)).predict(x, verbose=0)
        np.testing.assert_allclose(got, keras.Model(kin, kl(kin)).predict(x, verbose=0),
                                   atol=1e-5, err_msg=j_cls.__name__)
    # The masks did change the results.
    _, jl = _matched(*(c[1] for c in (_mask_classes(keras), _mask_classes(jg))), seqs)
    assert not np.allclose(np.asarray(jl(seqs)), np.asarray(jl.seq(seqs)).mean(1))


def _norm_block(lib):
    class ProjectNorm(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.proj = lib.Sequential([lib.layers.Dense(6, activation="tanh"),
                                        lib.layers.BatchNormalization(),
                                        lib.layers.Dense(3)])

        def call(self, inputs):
            return self.proj(inputs)

    return ProjectNorm


def test_inner_sequential_batchnorm_trains_and_updates_as_in_keras():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 4)).astype("float32")
    y = rng.normal(size=(12, 1)).astype("float32")
    models = []
    for lib in (keras, jg):
        inputs = lib.Input((4,))
        models.append(lib.Model(inputs, lib.layers.Dense(1)(_norm_block(lib)()(inputs))))
    km, jm = models
    jm.set_weights(km.get_weights())
    before = [w.copy() for w in jm.get_weights()]
    for lib, m in ((keras, km), (jg, jm)):
        m.compile(optimizer=lib.optimizers.SGD(learning_rate=0.05), loss="mse")
        m.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    for a, b, was in zip(jm.get_weights(), km.get_weights(), before):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)
        assert not np.allclose(a, was)  # moving statistics moved too
    np.testing.assert_allclose(jm.predict(x, verbose=0), km.predict(x, verbose=0),
                               atol=1e-5)


def _flip_block_classes():
    class Flip(jg.layers.Layer):
        """A Keras-style layer whose call takes no training: its RandomFlip flips."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.flip = jg.layers.RandomFlip("horizontal")

        def call(self, inputs):
            return self.flip(inputs)

    class Outer(jg.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.seq = jg.Sequential([Flip()])

        def call(self, inputs):
            return self.seq(inputs)

    return Flip, Outer


def test_inner_model_of_keras_style_augmenters_takes_a_fresh_key_per_step():
    flip, outer = _flip_block_classes()
    inputs = jg.Input((4, 4, 1))
    assert jg.Model(inputs, flip()(inputs))._eager_call_draws(None)

    inputs = jg.Input((4, 4, 1))
    model = jg.Model(inputs, outer()(inputs))
    x = np.arange(1, 32 * 16 + 1, dtype="float32").reshape(32, 4, 4, 1)
    apply = jax.jit(model.apply, static_argnames="training")
    outs = [np.asarray(apply(model.variables, x, training=None, rng=jax.random.key(i))[0])
            for i in range(3)]
    assert any(not np.allclose(o, x) for o in outs)
    assert not all(np.allclose(o, outs[0]) for o in outs[1:])
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)

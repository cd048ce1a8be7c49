"""Keras-style layers that hold layers, against Keras 3: freezing an inner layer after it
was linked, masks that inner layers compute inside `call`, and the training value inner
layers take when nobody says `training=`."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph as jg

keras = pytest.importorskip("keras")


def _block_class(lib):
    class Block(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.first = lib.layers.Dense(6, activation="tanh")
            self.norm = lib.layers.BatchNormalization()
            self.second = lib.layers.Dense(3)

        def call(self, inputs):
            return self.second(self.norm(self.first(inputs)))

    return Block


def _block_model(lib):
    inputs = lib.Input((4,))
    block = _block_class(lib)(name="block")
    return lib.Model(inputs, lib.layers.Dense(1)(block(inputs))), block


def _param_split(model):
    count = lambda ws: int(sum(np.prod(w.shape) for w in ws))  # noqa: E731
    return count(model.trainable_weights), count(model.non_trainable_weights)


def test_freezing_an_inner_layer_after_build_matches_keras():
    km, kblock = _block_model(keras)
    jm, jblock = _block_model(jg)
    rng = np.random.default_rng(0)
    km.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") + (w.name ==
                    "moving_variance") for w in km.weights])
    jm.set_weights(km.get_weights())
    assert _param_split(jm) == _param_split(km)

    kblock.first.trainable = False  # after the block was built and linked
    jblock.first.trainable = False
    assert _param_split(jm) == _param_split(km)
    assert len(jblock.trainable_weights) == len(kblock.trainable_weights)
    assert len(jblock.non_trainable_weights) == len(kblock.non_trainable_weights)
    lines = []
    jm.summary(print_fn=lines.append)
    text = "\n".join(lines)
    trainable, frozen = _param_split(km)
    assert f"Trainable params: {trainable:,}" in text
    assert f"Non-trainable params: {frozen:,}" in text

    x = rng.normal(size=(12, 4)).astype("float32")
    y = rng.normal(size=(12, 1)).astype("float32")
    frozen_before = jblock.first.get_weights()
    for lib, m in ((keras, km), (jg, jm)):
        m.compile(optimizer=lib.optimizers.SGD(learning_rate=0.05), loss="mse")
        m.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(frozen_before, jblock.first.get_weights()):
        np.testing.assert_array_equal(a, b)  # bit-identical
    for a, b in zip(jm.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)

    # Unfreezing the block unfreezes what it holds, as Keras's setter does.
    kblock.trainable = True
    jblock.trainable = True
    assert _param_split(jm) == _param_split(km)


def _masking_classes(lib):
    layers = lib.layers

    class EmbedPool(layers.Layer):
        """An inner Embedding's mask reaches a pass-through Dense, then the pooling."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.embedding = layers.Embedding(10, 4, mask_zero=True)
            self.dense = layers.Dense(4)
            self.pool = layers.GlobalAveragePooling1D()

        def call(self, inputs):
            return self.pool(self.dense(self.embedding(inputs)))

    class MaskPool(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.masking = layers.Masking(0.0)
            self.pool = layers.GlobalAveragePooling1D()

        def call(self, inputs):
            return self.pool(self.masking(inputs))

    return EmbedPool, MaskPool


def test_masks_computed_inside_call_reach_later_inner_layers_as_in_keras():
    (k_embed, k_mask), (j_embed, j_mask) = _masking_classes(keras), _masking_classes(jg)
    tokens = np.array([[1, 2, 0, 0], [3, 0, 0, 0], [4, 5, 6, 7]], "int32")
    ke, je = k_embed(), j_embed()
    ke(tokens)
    je(tokens)
    je.set_weights(ke.get_weights())
    np.testing.assert_allclose(np.asarray(je(tokens)), np.asarray(ke(tokens)), atol=1e-6)

    # The same inside a model, traced by predict.
    kin, jin = keras.Input((4,), dtype="int32"), jg.Input((4,), dtype="int32")
    km, jm = keras.Model(kin, ke(kin)), jg.Model(jin, je(jin))
    np.testing.assert_allclose(jm.predict(tokens, verbose=0), km.predict(tokens, verbose=0),
                               atol=1e-6)
    unmasked = np.asarray(je.dense(je.embedding(tokens))).mean(1)
    assert not np.allclose(np.asarray(je(tokens)), unmasked)  # the mask did change it

    x = np.random.default_rng(1).normal(size=(3, 5, 2)).astype("float32")
    x[0, 2:] = 0.0
    x[1, 1:] = 0.0
    np.testing.assert_allclose(np.asarray(j_mask()(x)), np.asarray(k_mask()(x)), atol=1e-6)


def _training_classes(lib):
    layers = lib.layers

    class FlipThenDrop(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.flip = layers.RandomFlip("horizontal")
            self.drop = layers.Dropout(0.5)

        def call(self, inputs):
            return self.flip(inputs), self.drop(inputs)

    class DropThenFlip(FlipThenDrop):
        def call(self, inputs):
            dropped = self.drop(inputs)
            return self.flip(inputs), dropped

    class DropOnly(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.drop = layers.Dropout(0.5)

        def call(self, inputs):
            return self.drop(inputs)

    class TrainsByDefault(DropOnly):
        def call(self, inputs, training=True):
            return self.drop(inputs)

    return FlipThenDrop, DropThenFlip, DropOnly, TrainsByDefault


def _effects(layer, x, calls=4):
    """(any call flipped, any call dropped) over a few direct calls without training=."""
    flipped = dropped = False
    for _ in range(calls):
        out = layer(x)
        if isinstance(out, (list, tuple)):
            flip, drop = (np.asarray(o) for o in out)
            flipped |= not np.allclose(flip, x)
        else:
            drop = np.asarray(out)
        dropped |= not np.allclose(drop, x)
    return flipped, dropped


def test_inner_layers_take_their_own_defaults_when_nobody_says_training():
    # Keras's call context, order effects included: a layer that resolves its own default
    # leaves that value for the calls after it (RandomFlip's True, Dropout's False).
    x = np.arange(1, 16 * 4 * 4 + 1, dtype="float32").reshape(16, 4, 4, 1)
    for k_cls, j_cls in zip(_training_classes(keras), _training_classes(jg)):
        assert _effects(j_cls(), x) == _effects(k_cls(), x), j_cls.__name__

    # Inside a model called on arrays without training=, the executor hands the layer a
    # key, so its inner RandomFlip augments (as Keras's does); predict does not.
    flip_then_drop = _training_classes(jg)[0]
    inputs = jg.Input((4, 4, 1))
    model = jg.Model(inputs, list(flip_then_drop()(inputs)))
    outs = [model(x) for _ in range(3)]
    assert any(not np.allclose(np.asarray(o[0]), x) for o in outs)
    flip, drop = model.predict(x, verbose=0)
    np.testing.assert_array_equal(flip, x)
    np.testing.assert_array_equal(drop, x)


def test_training_still_follows_the_caller_inside_fit():
    drop_only = _training_classes(jg)[2]
    inputs = jg.Input((64,))
    layer = drop_only()
    model = jg.Model(inputs, layer(inputs))
    x = np.ones((8, 64), "float32")
    import jax

    out, _ = model.apply(model.variables, x, training=True, rng=jax.random.key(0))
    assert 0.3 < np.mean(np.asarray(out) == 0) < 0.7
    out, _ = model.apply(model.variables, x, training=False)
    np.testing.assert_array_equal(np.asarray(out), x)
    assert jnp.asarray(out).shape == (8, 64)

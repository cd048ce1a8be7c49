"""Chapter 11's Keras-style layers that own sublayers (TransformerEncoder,
PositionalEmbedding) against Keras 3: weights, outputs, masks, training, saving."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph as jg

keras = pytest.importorskip("keras")


def book_classes(lib, arange):
    layers = lib.layers

    class TransformerEncoder(layers.Layer):
        def __init__(self, embed_dim, dense_dim, num_heads, **kwargs):
            super().__init__(**kwargs)
            self.embed_dim, self.dense_dim, self.num_heads = embed_dim, dense_dim, num_heads
            self.attention = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
            self.dense_proj = lib.Sequential([layers.Dense(dense_dim, activation="relu"),
                                              layers.Dense(embed_dim)])
            self.layernorm_1 = layers.LayerNormalization()
            self.layernorm_2 = layers.LayerNormalization()

        def call(self, inputs, mask=None):
            if mask is not None:
                mask = mask[:, None, :]
            attention_output = self.attention(inputs, inputs, attention_mask=mask)
            proj_input = self.layernorm_1(inputs + attention_output)
            return self.layernorm_2(proj_input + self.dense_proj(proj_input))

        def get_config(self):
            return {**super().get_config(), "embed_dim": self.embed_dim,
                    "dense_dim": self.dense_dim, "num_heads": self.num_heads}

    class PositionalEmbedding(layers.Layer):
        def __init__(self, sequence_length, input_dim, output_dim, **kwargs):
            super().__init__(**kwargs)
            self.token_embeddings = layers.Embedding(input_dim, output_dim)
            self.position_embeddings = layers.Embedding(sequence_length, output_dim)
            self.sequence_length, self.input_dim = sequence_length, input_dim
            self.output_dim = output_dim

        def call(self, inputs):
            positions = arange(inputs.shape[-1])
            return self.token_embeddings(inputs) + self.position_embeddings(positions)

        def compute_mask(self, inputs, mask=None):
            return inputs != 0

        def get_config(self):
            return {**super().get_config(), "sequence_length": self.sequence_length,
                    "input_dim": self.input_dim, "output_dim": self.output_dim}

    return TransformerEncoder, PositionalEmbedding


def _transformer(lib, arange, dtype):
    encoder, positional = book_classes(lib, arange)
    inputs = lib.Input(shape=(None,), dtype=dtype)
    x = positional(8, 20, 16, name="pos")(inputs)
    x = encoder(16, 32, 2, name="enc")(x)
    x = lib.layers.GlobalMaxPooling1D()(x)
    outputs = lib.layers.Dense(1, activation="sigmoid")(x)
    return lib.Model(inputs, outputs)


def test_book_transformer_encoder_matches_keras(tmp_path):
    km = _transformer(keras, keras.ops.arange, "int32")
    jm = _transformer(jg, jnp.arange, "int32")
    assert jm.count_params() == km.count_params()
    assert [w.shape for w in jm.get_layer("enc").weights] == [
        tuple(w.shape) for w in km.get_layer("enc").weights]
    assert [w.shape for w in jm.get_weights()] == [w.shape for w in km.get_weights()]
    rng = np.random.default_rng(0)
    km.set_weights([rng.normal(scale=0.3, size=w.shape).astype("float32")
                    for w in km.get_weights()])
    jm.set_weights(km.get_weights())
    x = rng.integers(1, 20, size=(6, 8)).astype("int32")
    x[:3, 5:] = 0  # padded: the mask from PositionalEmbedding reaches the attention
    np.testing.assert_allclose(jm.predict(x, verbose=0), km.predict(x, verbose=0),
                               atol=1e-5, rtol=1e-5)
    enc = jm.get_layer("enc")
    assert enc.attention.get_weights()[0].shape == (16, 2, 16)

    # fit trains the sublayers' weights (they are in the variables pytree), and the
    # sublayers see the trained values.
    y = rng.integers(0, 2, size=(6, 1)).astype("float32")
    jm.compile(optimizer="sgd", loss="binary_crossentropy")
    before = enc.attention.get_weights()[0].copy()
    jm.fit(x, y, epochs=2, batch_size=3, shuffle=False, verbose=0)
    assert not np.allclose(before, enc.attention.get_weights()[0])
    km.set_weights(jm.get_weights())
    np.testing.assert_allclose(jm.predict(x, verbose=0), km.predict(x, verbose=0),
                               atol=1e-5, rtol=1e-5)

    path = tmp_path / "transformer.keras"
    jm.save(path)
    encoder, positional = book_classes(jg, jnp.arange)
    loaded = jg.models.load_model(path, custom_objects={
        "TransformerEncoder": encoder, "PositionalEmbedding": positional})
    np.testing.assert_allclose(loaded.predict(x, verbose=0), jm.predict(x, verbose=0),
                               atol=1e-6)


def test_sublayer_state_updates_flow_through_a_keras_style_layer():
    class Block(jg.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = jg.layers.Dense(3)
            self.norm = jg.layers.BatchNormalization(momentum=0.5)

        def call(self, inputs, training=False):
            return self.norm(self.dense(inputs), training=training)

    inputs = jg.Input((4,))
    block = Block(name="block")
    model = jg.Model(inputs, block(inputs))
    names = [w.name for w in block.weights]
    assert names == ["dense/kernel", "dense/bias", "batch_normalization/gamma",
                     "batch_normalization/beta", "batch_normalization/moving_mean",
                     "batch_normalization/moving_variance"] or len(names) == 6
    assert len(block.trainable_weights) == 4 and len(block.non_trainable_weights) == 2
    x = np.random.default_rng(1).normal(size=(8, 4)).astype("float32")
    _, state = model.apply(model.variables, x, training=True)
    kernel = np.asarray(model.variables["params"]["block"][names[0]])
    mean = (x @ kernel + np.asarray(model.variables["params"]["block"][names[1]])).mean(0)
    moving = [k for k in state["block"] if "moving_mean" in k][0]
    np.testing.assert_allclose(state["block"][moving], 0.5 * mean, atol=1e-5)

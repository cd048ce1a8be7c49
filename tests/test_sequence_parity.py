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
    # `<sublayer>/<weight>`, in Keras's order (sublayer names depend on the name counters).
    assert [n.split("/")[0] for n in names] == [block.dense.name] * 2 + [block.norm.name] * 4
    assert [n.split("/")[1] for n in names] == ["kernel", "bias", "gamma", "beta",
                                                "moving_mean", "moving_variance"]
    assert len(block.trainable_weights) == 4 and len(block.non_trainable_weights) == 2
    x = np.random.default_rng(1).normal(size=(8, 4)).astype("float32")
    _, state = model.apply(model.variables, x, training=True)
    kernel = np.asarray(model.variables["params"]["block"][names[0]])
    mean = (x @ kernel + np.asarray(model.variables["params"]["block"][names[1]])).mean(0)
    moving = [k for k in state["block"] if "moving_mean" in k][0]
    np.testing.assert_allclose(state["block"][moving], 0.5 * mean, atol=1e-5)


def test_sublayers_called_without_training_follow_the_caller_as_in_keras():
    # Keras's call context: a Dropout or BatchNormalization that a Keras-style layer calls
    # without `training=` runs in the caller's mode, with a fresh key at every step.
    class Block(jg.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.drop = jg.layers.Dropout(0.5)
            self.norm = jg.layers.BatchNormalization(momentum=0.5, center=False, scale=False)

        def call(self, inputs):
            return self.norm(self.drop(inputs))

    inputs = jg.Input((64,))
    block = Block()
    model = jg.Model(inputs, block(inputs))
    assert block.needs_rng()
    x = np.random.default_rng(2).uniform(1.0, 2.0, size=(16, 64)).astype("float32")

    # Inference: the dropout is off and the moving statistics (0 and 1) normalise.
    eps = 1e-3
    np.testing.assert_allclose(model.predict(x, verbose=0), x / np.sqrt(1 + eps), rtol=1e-5)

    # Training: the dropout zeroes about half of the entries, with a mask drawn from the
    # step's key (two keys, two masks; the same key, the same mask), and the batch
    # normalization uses and records the batch statistics of the dropped-out inputs.
    import jax

    apply = jax.jit(lambda v, k: model.apply(v, x, training=True, rng=k))
    (out1, state), (out2, _), (out3, _) = (apply(model.variables, jax.random.key(k))
                                           for k in (0, 1, 0))
    dropped1 = np.asarray(out1) == np.asarray(out1).min(0)  # each column's zeros
    zero_share = np.mean(dropped1)
    assert 0.3 < zero_share < 0.7
    assert not np.array_equal(np.asarray(out1), np.asarray(out2))
    np.testing.assert_array_equal(np.asarray(out1), np.asarray(out3))
    moving = {k.split("/")[-1]: np.asarray(v) for k, v in state[block.name].items()}
    d = np.where(dropped1, 0.0, 2.0 * x)  # the dropout's output (kept entries are >= 2)
    np.testing.assert_allclose(moving["moving_mean"], 0.5 * d.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(moving["moving_variance"], 0.5 + 0.5 * d.var(0), rtol=1e-4)

    # fit trains through the same path: the moving mean moves off its initial zeros.
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, np.zeros_like(x), batch_size=16, epochs=1, verbose=0)
    # Each column's mean is 0.5 * (its kept share) * ~3, 0.75 expected: a column with
    # few kept entries may sit below 0.2 for some keys, so test the whole and the sign.
    moved = block.norm.moving_mean.numpy()
    assert moved.mean() > 0.5 and np.all(moved >= 0) and np.count_nonzero(moved) > 60


def seq2seq_classes(lib):
    """Chapter 11's English-to-Spanish Transformer, written once as Keras 3 code."""
    layers, ops = lib.layers, lib.ops  # keras.ops or jaxgraph.ops: the same code
    encoder_cls, positional_cls = book_classes(lib, ops.arange)

    class TransformerDecoder(layers.Layer):
        def __init__(self, embed_dim, dense_dim, num_heads, **kwargs):
            super().__init__(**kwargs)
            self.embed_dim, self.dense_dim, self.num_heads = embed_dim, dense_dim, num_heads
            self.attention_1 = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
            self.attention_2 = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
            self.dense_proj = lib.Sequential([layers.Dense(dense_dim, activation="relu"),
                                              layers.Dense(embed_dim)])
            self.layernorm_1 = layers.LayerNormalization()
            self.layernorm_2 = layers.LayerNormalization()
            self.layernorm_3 = layers.LayerNormalization()
            self.supports_masking = True

        def get_config(self):
            return {**super().get_config(), "embed_dim": self.embed_dim,
                    "dense_dim": self.dense_dim, "num_heads": self.num_heads}

        def get_causal_attention_mask(self, inputs):
            input_shape = ops.shape(inputs)
            batch_size, sequence_length = input_shape[0], input_shape[1]
            i = ops.arange(sequence_length)[:, None]
            j = ops.arange(sequence_length)
            mask = ops.cast(i >= j, dtype="int32")
            mask = ops.reshape(mask, (1, input_shape[1], input_shape[1]))
            return ops.tile(mask, (batch_size, 1, 1))

        def call(self, inputs, encoder_outputs, mask=None):
            causal_mask = self.get_causal_attention_mask(inputs)
            padding_mask = None
            if mask is not None:
                padding_mask = ops.minimum(ops.cast(mask[:, None, :], "int32"), causal_mask)
            attention_output_1 = self.attention_1(
                query=inputs, value=inputs, key=inputs, attention_mask=causal_mask)
            attention_output_1 = self.layernorm_1(inputs + attention_output_1)
            attention_output_2 = self.attention_2(
                query=attention_output_1, value=encoder_outputs, key=encoder_outputs,
                attention_mask=padding_mask)
            attention_output_2 = self.layernorm_2(attention_output_1 + attention_output_2)
            proj_output = self.dense_proj(attention_output_2)
            return self.layernorm_3(attention_output_2 + proj_output)

    return {"TransformerEncoder": encoder_cls, "PositionalEmbedding": positional_cls,
            "TransformerDecoder": TransformerDecoder}


def _seq2seq(lib, classes, seq_len=6, vocab=15, embed_dim=8, dense_dim=16, heads=2):
    encoder_inputs = lib.Input(shape=(None,), dtype="int32", name="english")
    x = classes["PositionalEmbedding"](seq_len, vocab, embed_dim)(encoder_inputs)
    encoder_outputs = classes["TransformerEncoder"](embed_dim, dense_dim, heads)(x)
    decoder_inputs = lib.Input(shape=(None,), dtype="int32", name="spanish")
    x = classes["PositionalEmbedding"](seq_len, vocab, embed_dim)(decoder_inputs)
    x = classes["TransformerDecoder"](embed_dim, dense_dim, heads)(x, encoder_outputs)
    x = lib.layers.Dropout(0.5)(x)
    decoder_outputs = lib.layers.Dense(vocab, activation="softmax")(x)
    return lib.Model([encoder_inputs, decoder_inputs], decoder_outputs)


def _short_names(model):
    # Auto names carry process-wide counters; the last part names the variable.
    return [w.name.split("/")[-1] for w in model.weights]


def test_book_seq2seq_transformer_matches_keras(tmp_path):
    kc, jc = seq2seq_classes(keras), seq2seq_classes(jg)
    km, jm = _seq2seq(keras, kc), _seq2seq(jg, jc)
    assert jm.count_params() == km.count_params()
    assert [tuple(w.shape) for w in jm.weights] == [tuple(w.shape) for w in km.weights]
    assert _short_names(jm) == _short_names(km)
    rng = np.random.default_rng(0)
    km.set_weights([rng.normal(scale=0.3, size=w.shape).astype("float32")
                    for w in km.get_weights()])
    jm.set_weights(km.get_weights())
    en = rng.integers(1, 15, size=(8, 6)).astype("int32")
    es = rng.integers(1, 15, size=(8, 6)).astype("int32")
    en[:4, 4:] = 0
    es[2:6, 3:] = 0  # padded: masks ride from the embeddings into the attention layers
    np.testing.assert_allclose(jm.predict([en, es], verbose=0), km.predict([en, es], verbose=0),
                               atol=1e-5, rtol=1e-5)

    # A few steps of SGD on the same batches, unshuffled, land on Keras's weights. The
    # dropout's draws differ between the libraries, so its rate is 0 in both.
    y = rng.integers(0, 15, size=(8, 6)).astype("int32")
    for lib, m in ((keras, km), (jg, jm)):
        m.layers[-2].rate = 0.0
        m.compile(optimizer=lib.optimizers.SGD(learning_rate=0.1),
                  loss="sparse_categorical_crossentropy")
        m.fit([en, es], y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(jm.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)

    path = tmp_path / "seq2seq.keras"
    jm.save(path)
    loaded = jg.models.load_model(path, custom_objects=seq2seq_classes(jg))
    np.testing.assert_allclose(loaded.predict([en, es], verbose=0),
                               jm.predict([en, es], verbose=0), atol=1e-6)


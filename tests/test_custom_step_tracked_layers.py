"""Layers a Keras-style model holds as attributes but does not wire in `call` (the book's
chapter-12 VAE runs its decoder only in `compute_loss`): their weights are the model's,
as Keras tracks them, and a custom step's direct calls of them run on the step's traced
variables, so they train, keep their state updates and draw from the step's key."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph


@pytest.fixture(scope="module")
def keras():
    os.environ["KERAS_BACKEND"] = "jax"
    return pytest.importorskip("keras")


def _assert_close(a, b, rtol=1e-4, atol=1e-6):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def _digits(n, seed=3):
    return (np.random.default_rng(seed).random((n, 8, 8, 1)) > 0.6).astype("float32")


def vae_class(lib, sampler_cls, decoder_training=None):
    """The book's VAE (chapter 12, Keras 3), verbatim but for `lib` and the sampler;
    `decoder_training` is passed to the decoder's call when given."""
    ops = lib.ops

    class VAE(lib.Model):
        def __init__(self, encoder, decoder, **kwargs):
            super().__init__(**kwargs)
            self.encoder = encoder
            self.decoder = decoder
            self.sampler = sampler_cls()
            self.reconstruction_loss_tracker = lib.metrics.Mean(name="reconstruction_loss")
            self.kl_loss_tracker = lib.metrics.Mean(name="kl_loss")

        def call(self, inputs):
            return self.encoder(inputs)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                         training=True):
            z_mean, z_log_var = y_pred
            z = self.sampler(z_mean, z_log_var)
            reconstruction = (self.decoder(z) if decoder_training is None
                              else self.decoder(z, training=decoder_training))
            reconstruction_loss = ops.mean(ops.sum(
                lib.losses.binary_crossentropy(x, reconstruction), axis=(1, 2)))
            kl_loss = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
            total_loss = reconstruction_loss + ops.mean(kl_loss)
            self.reconstruction_loss_tracker.update_state(reconstruction_loss)
            self.kl_loss_tracker.update_state(kl_loss)
            return total_loss

    return VAE


def vae_parts(lib, latent_dim=2, batchnorm=False):
    """The VAE's encoder (to z_mean, z_log_var) and decoder models on 8x8 images."""
    encoder_inputs = lib.Input(shape=(8, 8, 1))
    h = lib.layers.Dense(16, activation="relu")(lib.layers.Flatten()(encoder_inputs))
    encoder = lib.Model(encoder_inputs, [lib.layers.Dense(latent_dim, name="z_mean")(h),
                                         lib.layers.Dense(latent_dim, name="z_log_var")(h)],
                        name="encoder")
    latent_inputs = lib.Input(shape=(latent_dim,))
    h = lib.layers.Dense(16, activation="relu")(latent_inputs)
    if batchnorm:
        h = lib.layers.BatchNormalization()(h)
    h = lib.layers.Dense(64, activation="sigmoid")(h)
    decoder = lib.Model(latent_inputs, lib.layers.Reshape((8, 8, 1))(h), name="decoder")
    return encoder, decoder


def build_vae(lib, sampler_cls, batchnorm=False, decoder_training=None, latent_dim=2):
    encoder, decoder = vae_parts(lib, latent_dim, batchnorm)
    vae = vae_class(lib, sampler_cls, decoder_training)(encoder, decoder)
    return vae, encoder, decoder


def _mean_samplers(keras):
    class KerasMean(keras.layers.Layer):
        def call(self, z_mean, z_log_var):
            return z_mean + 0 * z_log_var

    class JaxgraphMean(jaxgraph.layers.Layer):
        def call(self, w, z_mean, z_log_var):
            return z_mean + 0 * z_log_var

    return {keras: KerasMean, jaxgraph: JaxgraphMean}


class RandomSampler(jaxgraph.layers.Layer):
    """The book's Sampler in jaxgraph's terms: a key per call instead of a SeedGenerator.
    It samples whenever called directly, as the book's does."""

    training_by_default = True

    def call(self, w, z_mean, z_log_var, rng=None):
        epsilon = jax.random.normal(rng, z_mean.shape)
        return z_mean + jnp.exp(0.5 * z_log_var) * epsilon


def _twins(keras, batchnorm=False, decoder_training=None):
    """The VAE in Keras and in jaxgraph, with the same initial weights."""
    images = _digits(64)
    samplers = _mean_samplers(keras)
    built = {lib: build_vae(lib, samplers[lib], batchnorm, decoder_training)
             for lib in (keras, jaxgraph)}
    for vae, _, _ in built.values():
        vae(images[:2])
    (_, kenc, kdec), (_, jenc, jdec) = built[keras], built[jaxgraph]
    jenc.set_weights(kenc.get_weights())
    jdec.set_weights(kdec.get_weights())
    return images, built


def _fit(built, images, make_optimizer, epochs=3):
    histories = {}
    for lib, (vae, _, _) in built.items():
        vae.compile(optimizer=make_optimizer(lib))
        histories[lib] = vae.fit(images, epochs=epochs, batch_size=16, shuffle=False,
                                 verbose=0).history
    return histories


def test_decoder_held_as_attribute_trains_as_in_keras(keras):
    images, built = _twins(keras)
    (kvae, _, kdec), (jvae, _, jdec) = built[keras], built[jaxgraph]
    assert len(jvae.trainable_weights) == len(kvae.trainable_weights) == 10
    assert jvae.count_params() == kvae.count_params()
    # Keras's order: the encoder's weights, then the decoder's.
    assert [tuple(w.shape) for w in jvae.trainable_weights] == \
        [tuple(w.shape) for w in kvae.trainable_weights]
    for a, b in zip(jvae.get_weights(), kvae.get_weights()):
        _assert_close(a, b, rtol=0, atol=0)
    before = [np.array(w) for w in jdec.get_weights()]
    hist = _fit(built, images, lambda lib: lib.optimizers.Adam(0.01))
    kh, jh = hist[keras], hist[jaxgraph]
    assert sorted(jh) == sorted(kh) == ["kl_loss", "loss", "reconstruction_loss"]
    for key in kh:
        _assert_close(jh[key], kh[key])
    # Adam divides by the root of tiny second moments, which magnifies float32 rounding
    # on near-zero weights: 1.3e-6 on a weight of 6.6e-4 was seen (weights are ~0.1).
    for a, b in zip(jdec.get_weights(), kdec.get_weights()):
        _assert_close(a, b, atol=1e-5)
    for a, b in zip(jvae.get_weights(), kvae.get_weights()):
        _assert_close(a, b, atol=1e-5)
    assert any(not np.allclose(a, b) for a, b in zip(before, jdec.get_weights()))


def test_sgd_steps_and_decoder_state_updates_match_keras(keras):
    """A decoder with BatchNormalization called with training=True in compute_loss: its
    moving statistics move as Keras's do, and SGD gives Keras's weights."""
    images, built = _twins(keras, batchnorm=True, decoder_training=True)
    (kvae, _, kdec), (jvae, _, jdec) = built[keras], built[jaxgraph]
    assert len(jvae.non_trainable_weights) == len(kvae.non_trainable_weights) == 2
    moving_before = [np.array(w) for w in jvae.non_trainable_weights]
    hist = _fit(built, images, lambda lib: lib.optimizers.SGD(0.05), epochs=2)
    for key in hist[keras]:
        _assert_close(hist[jaxgraph][key], hist[keras][key])
    # As above, absolute slack for near-zero entries (this test failed once in parallel
    # runs at atol=1e-6; weights and statistics here are ~0.1).
    for a, b in zip(jdec.get_weights(), kdec.get_weights()):
        _assert_close(a, b, atol=1e-5)
    moving_after = [np.array(w) for w in jvae.non_trainable_weights]
    assert not np.allclose(moving_before[0], moving_after[0])
    for a, b in zip(moving_after, [np.array(w) for w in kvae.non_trainable_weights]):
        _assert_close(a, b, atol=1e-5)


def test_random_sampler_draws_fresh_keys_and_the_decoder_trains():
    jaxgraph.utils.set_random_seed(0)
    images = _digits(96)
    vae, _, decoder = build_vae(jaxgraph, RandomSampler)
    vae.compile(optimizer=jaxgraph.optimizers.Adam(0.01))
    before = [np.array(w) for w in decoder.get_weights()]
    history = vae.fit(images, epochs=6, batch_size=32, verbose=0).history
    total = np.asarray(history["loss"])
    assert np.all(np.isfinite(total)) and total[-1] < total[0]
    after = decoder.get_weights()
    assert all(not np.allclose(a, b) for a, b in zip(before, after))
    # The layers hold arrays again after the trace, never tracers.
    assert all(isinstance(np.asarray(w), np.ndarray) for w in vae.get_weights())


def test_sampler_key_changes_every_step():
    """A tracker of the sampler's noise: with one key baked in at trace time every step
    (same batch) would draw the same numbers, and the epochs would log the same mean."""

    class NoiseVAE(vae_class(jaxgraph, RandomSampler)):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.noise_tracker = jaxgraph.metrics.Mean(name="noise")

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                         training=True):
            z_mean, _ = y_pred
            noise = self.sampler(jnp.zeros_like(z_mean), jnp.zeros_like(z_mean))
            self.noise_tracker.update_state(noise)
            return super().compute_loss(x, y, y_pred, sample_weight, training)

    jaxgraph.utils.set_random_seed(1)
    images = _digits(16)
    _, encoder, decoder = build_vae(jaxgraph, RandomSampler)
    vae = NoiseVAE(encoder, decoder)
    vae.compile(optimizer=jaxgraph.optimizers.SGD(0.0))
    noise = vae.fit(images, epochs=3, batch_size=16, verbose=0).history["noise"]
    assert len(set(np.round(noise, 6))) == 3


def test_decoder_frozen_stays_and_weights_save_and_load(tmp_path):
    jaxgraph.utils.set_random_seed(2)
    images = _digits(32)
    vae, _, decoder = build_vae(jaxgraph, RandomSampler)
    vae(images[:2])
    decoder.trainable = False
    assert len(vae.trainable_weights) == 6 and len(vae.weights) == 10
    frozen = [np.array(w) for w in decoder.get_weights()]
    vae.compile(optimizer=jaxgraph.optimizers.Adam(0.01))
    vae.fit(images, epochs=2, batch_size=16, verbose=0)
    for a, b in zip(frozen, decoder.get_weights()):
        _assert_close(a, b, rtol=0, atol=0)

    path = tmp_path / "vae.weights.h5"
    vae.save_weights(path)
    other, _, other_decoder = build_vae(jaxgraph, RandomSampler)
    other(images[:2])
    other.load_weights(path)
    for a, b in zip(other_decoder.get_weights(), decoder.get_weights()):
        _assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(other.get_weights(), vae.get_weights()):
        _assert_close(a, b, rtol=0, atol=0)


def test_unbuilt_attribute_layer_called_in_the_step_is_an_error():
    class Head(vae_class(jaxgraph, RandomSampler)):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.extra = jaxgraph.layers.Dense(1, name="extra_head")

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                         training=True):
            z_mean, _ = y_pred
            return super().compute_loss(x, y, y_pred, sample_weight, training) + \
                jnp.mean(self.extra(z_mean))

    images = _digits(16)
    _, encoder, decoder = build_vae(jaxgraph, RandomSampler)
    vae = Head(encoder, decoder)
    vae.compile(optimizer=jaxgraph.optimizers.Adam(0.01))
    with pytest.raises(ValueError, match="'extra_head' .*would not train"):
        vae.fit(images, epochs=1, batch_size=16, verbose=0)


def test_models_without_unwired_attributes_keep_their_variables():
    class Plain(jaxgraph.Model):
        def __init__(self):
            super().__init__()
            self.dense = jaxgraph.layers.Dense(3, name="only")

        def call(self, inputs):
            return self.dense(inputs)

    model = Plain()
    model(np.zeros((2, 4), "float32"))
    assert model._extra_layers() == []
    assert list(model.variables["params"]) == ["only"]
    assert model.count_params() == 15


def test_summary_lists_the_unwired_layers_and_counts_their_weights():
    images = _digits(4)
    vae, encoder, decoder = build_vae(jaxgraph, RandomSampler)
    vae(images[:2])
    lines = []
    vae.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    text = "\n".join(lines)
    assert "decoder" in text and "random_sampler" in text
    total = vae.count_params()
    assert total == encoder.count_params() + decoder.count_params()
    assert f"Total params: {total:,}" in text


def _probe_model(probe_in_grad):
    """A model whose custom step calls a held, unwired Dense after `jax.value_and_grad`
    (and, with `probe_in_grad`, inside it as well): the call after must see the step's
    variables, not the gradient trace's values that leaked out of it."""

    class Probe(jaxgraph.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.body = jaxgraph.layers.Dense(3)
            self.head = jaxgraph.layers.Dense(1)
            self.head.build((None, 3))

        def call(self, x):
            return self.body(x)

        def train_step(self, state, data):
            trainable, non_trainable, opt_vars, metrics_vars = state
            x, y = data

            def loss_fn(tv, ntv):
                y_pred, ntv = self.stateless_call(tv, ntv, x, training=True)
                out = self.head(y_pred) if probe_in_grad else y_pred[:, :1]
                return jnp.mean((out - y) ** 2), ntv

            (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                trainable, non_trainable)
            probe = self.head(jnp.ones((1, 3)))[0, 0]  # after the gradient trace ended
            trainable, opt_vars = self.optimizer.stateless_apply(opt_vars, grads, trainable)
            return ({"loss": loss, "probe": probe},
                    (trainable, non_trainable, opt_vars, metrics_vars))

    return Probe()


@pytest.mark.parametrize("probe_in_grad", [True, False])
def test_held_layer_called_after_grad_runs_on_the_step_variables(probe_in_grad):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype("float32")
    y = rng.normal(size=(8, 1)).astype("float32")
    model = _probe_model(probe_in_grad)
    model.compile(optimizer=jaxgraph.optimizers.SGD(0.5), loss="mse")
    model(x[:1])
    kernel, bias = (np.asarray(w) for w in model.head.get_weights())
    before = float(kernel.sum() + bias.sum())
    hist = model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    # The step's probe sees the weights the step started from.
    _assert_close(hist.history["probe"][0], before, rtol=1e-6)
    kernel1, bias1 = (np.asarray(w) for w in model.head.get_weights())
    if probe_in_grad:  # the head is in the loss, so it trained
        assert not np.allclose(kernel1, kernel)
    else:
        np.testing.assert_array_equal(kernel1, kernel)
    hist = model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    _assert_close(hist.history["probe"][0], float(kernel1.sum() + bias1.sum()), rtol=1e-6)


def test_saving_a_model_that_would_lose_its_held_layers_is_refused(tmp_path):
    """Without a get_config of its own, a subclass is written as the graph its call wires;
    a VAE's decoder is not in that graph, so save/to_json refuse, as Keras does, instead
    of writing a file that cannot be loaded. With a get_config it saves and loads."""
    vae, _, _ = build_vae(jaxgraph, RandomSampler)
    vae(_digits(2))
    for write in (lambda: vae.save(tmp_path / "vae.keras"), vae.to_json):
        with pytest.raises(NotImplementedError,
                           match=r"self\.decoder \(layer 'decoder'\).*get_config"):
            write()
    assert not (tmp_path / "vae.keras").exists()

    class Configured(vae_class(jaxgraph, RandomSampler)):
        def get_config(self):
            return {"encoder": jaxgraph.saving.serialize_keras_object(self.encoder),
                    "decoder": jaxgraph.saving.serialize_keras_object(self.decoder)}

        @classmethod
        def from_config(cls, config):
            return cls(jaxgraph.saving.deserialize_keras_object(config["encoder"]),
                       jaxgraph.saving.deserialize_keras_object(config["decoder"]))

    _, encoder, decoder = build_vae(jaxgraph, RandomSampler)
    model = Configured(encoder, decoder)
    model(_digits(2))
    model.save(tmp_path / "configured.keras")
    loaded = jaxgraph.models.load_model(tmp_path / "configured.keras",
                                        custom_objects={"Configured": Configured,
                                                        "RandomSampler": RandomSampler})
    assert type(loaded) is Configured
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        _assert_close(a, b, rtol=0, atol=0)

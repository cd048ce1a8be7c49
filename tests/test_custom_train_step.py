"""User-written train_step / test_step / predict_step in Keras 3's JAX-backend style (the
book's chapter 7 "fit() with a custom training loop" and its chapter-12 VAE): the same user
code gives Keras 3's losses, weights and evaluations, while jaxgraph traces the step once
and runs it inside its compiled multi-step program (partial last batch included)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_custom_step_tracked_layers import vae_parts  # the VAE's encoder and decoder

import jaxgraph


@pytest.fixture(scope="module")
def keras():
    os.environ["KERAS_BACKEND"] = "jax"
    return pytest.importorskip("keras")


def _data(n=100, features=20, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, features)).astype("float32"),
            rng.integers(0, classes, n).astype("int32"))


def _mlp(lib, cls, batchnorm=False):
    inputs = lib.Input(shape=(20,))
    h = lib.layers.Dense(16, activation="relu")(inputs)
    if batchnorm:
        h = lib.layers.BatchNormalization()(h)
    outputs = lib.layers.Dense(5, activation="softmax")(h)
    return cls(inputs, outputs)


def _same_weights(km, jm):
    jm.set_weights(km.get_weights())


def _assert_close(a, b, rtol=1e-4, atol=1e-6):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def chapter7_class(lib, with_test_step=True):
    """Chapter 7's custom model, verbatim but for `lib` (keras or jaxgraph)."""
    loss_fn = lib.losses.SparseCategoricalCrossentropy()
    loss_tracker = lib.metrics.Mean(name="loss")

    class CustomModel(lib.Model):
        traces = {"train": 0, "test": 0}

        def compute_loss_and_updates(self, trainable_variables, non_trainable_variables,
                                     inputs, targets, training=False):
            predictions, non_trainable_variables = self.stateless_call(
                trainable_variables, non_trainable_variables, inputs, training=training)
            loss = loss_fn(targets, predictions)
            return loss, non_trainable_variables

        def train_step(self, state, data):
            CustomModel.traces["train"] += 1
            (trainable_variables, non_trainable_variables, optimizer_variables,
             metrics_variables) = state
            inputs, targets = data
            grad_fn = jax.value_and_grad(self.compute_loss_and_updates, has_aux=True)
            (loss, non_trainable_variables), grads = grad_fn(
                trainable_variables, non_trainable_variables, inputs, targets, training=True)
            trainable_variables, optimizer_variables = self.optimizer.stateless_apply(
                optimizer_variables, grads, trainable_variables)
            loss_tracker_vars = metrics_variables[:len(loss_tracker.variables)]
            loss_tracker_vars = loss_tracker.stateless_update_state(loss_tracker_vars, loss)
            logs = {loss_tracker.name: loss_tracker.stateless_result(loss_tracker_vars)}
            state = (trainable_variables, non_trainable_variables, optimizer_variables,
                     loss_tracker_vars)
            return logs, state

        @property
        def metrics(self):
            return [loss_tracker]

    if with_test_step:
        def test_step(self, state, data):
            CustomModel.traces["test"] += 1
            trainable_variables, non_trainable_variables, metrics_variables = state
            inputs, targets = data
            loss, non_trainable_variables = self.compute_loss_and_updates(
                trainable_variables, non_trainable_variables, inputs, targets, training=False)
            loss_tracker_vars = loss_tracker.stateless_update_state(metrics_variables, loss)
            logs = {loss_tracker.name: loss_tracker.stateless_result(loss_tracker_vars)}
            return logs, (trainable_variables, non_trainable_variables, loss_tracker_vars)

        CustomModel.test_step = test_step
    return CustomModel, loss_tracker


def test_chapter7_train_step_matches_keras(keras):
    x, y = _data()
    built = {lib: chapter7_class(lib) for lib in (keras, jaxgraph)}
    models = {lib: _mlp(lib, cls) for lib, (cls, _) in built.items()}
    _same_weights(models[keras], models[jaxgraph])
    runs = {}
    for lib, model in models.items():
        cls, tracker = built[lib]
        model.compile(optimizer=lib.optimizers.RMSprop())
        history = model.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0,
                            validation_data=(x[:30], y[:30])).history
        runs[lib] = {"history": history, "weights": model.get_weights(),
                     "evaluate": model.evaluate(x, y, batch_size=16, verbose=0),
                     "tracker": float(tracker.result()), "traces": dict(cls.traces)}
    k, j = runs[keras], runs[jaxgraph]
    assert sorted(j["history"]) == sorted(k["history"]) == ["loss", "val_loss"]
    _assert_close(j["history"]["loss"], k["history"]["loss"])
    _assert_close(j["history"]["val_loss"], k["history"]["val_loss"])
    for a, b in zip(j["weights"], k["weights"]):
        _assert_close(a, b)
    _assert_close(j["evaluate"], k["evaluate"])
    _assert_close(j["tracker"], k["tracker"])  # evaluate leaves its state in the tracker
    # 100 rows in batches of 32: Keras traces again for the last 4, jaxgraph pads them.
    assert k["traces"]["train"] == 2 and j["traces"]["train"] == 1
    # train_on_batch runs the same step once (the loss is the batch's before the update).
    model = models[jaxgraph]
    before = model.evaluate(x[:32], y[:32], batch_size=32, verbose=0)
    logs = model.train_on_batch(x[:32], y[:32], return_dict=True)
    assert list(logs) == ["loss"]
    _assert_close(logs["loss"], before, rtol=1e-5)
    assert model.evaluate(x[:32], y[:32], batch_size=32, verbose=0) < before


def compiled_metrics_class(lib):
    """The chapter-7 variant that uses compile()'s loss and metrics through self.metrics."""

    class CustomModel(lib.Model):
        def loss_and_updates(self, trainable_variables, non_trainable_variables, inputs,
                             targets, training=False):
            predictions, non_trainable_variables = self.stateless_call(
                trainable_variables, non_trainable_variables, inputs, training=training)
            loss = self.compute_loss(y=targets, y_pred=predictions)
            return loss, (predictions, non_trainable_variables)

        def train_step(self, state, data):
            (trainable_variables, non_trainable_variables, optimizer_variables,
             metrics_variables) = state
            inputs, targets = data
            grad_fn = jax.value_and_grad(self.loss_and_updates, has_aux=True)
            (loss, (predictions, non_trainable_variables)), grads = grad_fn(
                trainable_variables, non_trainable_variables, inputs, targets, training=True)
            trainable_variables, optimizer_variables = self.optimizer.stateless_apply(
                optimizer_variables, grads, trainable_variables)
            new_metrics_vars = []
            logs = {}
            for metric in self.metrics:
                num_prev = len(new_metrics_vars)
                num_current = len(metric.variables)
                current_vars = metrics_variables[num_prev:num_prev + num_current]
                if metric.name == "loss":
                    current_vars = metric.stateless_update_state(current_vars, loss)
                else:
                    current_vars = metric.stateless_update_state(current_vars, targets,
                                                                 predictions)
                logs[metric.name] = metric.stateless_result(current_vars)
                new_metrics_vars += current_vars
            state = (trainable_variables, non_trainable_variables, optimizer_variables,
                     new_metrics_vars)
            return logs, state

    return CustomModel


def test_compiled_loss_and_metrics_variant_matches_keras(keras):
    x, y = _data(seed=1)
    models = {lib: _mlp(lib, compiled_metrics_class(lib), batchnorm=True)
              for lib in (keras, jaxgraph)}
    _same_weights(models[keras], models[jaxgraph])
    runs = {}
    for lib, model in models.items():
        model.compile(optimizer=lib.optimizers.SGD(0.05, momentum=0.9),
                      loss=lib.losses.SparseCategoricalCrossentropy(),
                      metrics=[lib.metrics.SparseCategoricalAccuracy()])
        history = model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0,
                            validation_split=0.2).history
        runs[lib] = (model, history, model.evaluate(x, y, verbose=0, return_dict=True))
    (km, kh, ke), (jm, jh, je) = runs[keras], runs[jaxgraph]
    # Keras's variable lists, in Keras's order (BatchNormalization's moving statistics
    # are the non-trainable ones).
    assert [tuple(v.shape) for v in jm.trainable_variables] == \
        [tuple(v.shape) for v in km.trainable_variables]
    assert [tuple(v.shape) for v in jm.non_trainable_variables] == \
        [tuple(v.shape) for v in km.non_trainable_variables]
    assert [m.name for m in jm.metrics] == [m.name for m in km.metrics] == \
        ["loss", "compile_metrics"]
    assert sorted(jh) == sorted(kh) == ["loss", "sparse_categorical_accuracy", "val_loss",
                                        "val_sparse_categorical_accuracy"]
    for key in kh:
        _assert_close(jh[key], kh[key])
    for a, b in zip(jm.get_weights(), km.get_weights()):
        _assert_close(a, b)
    assert sorted(je) == sorted(ke)
    for key in ke:
        _assert_close(je[key], ke[key])
    # Keras's default test step on one batch, as it is outside fit.
    jb, kb = (m.test_on_batch(x[:16], y[:16], return_dict=True) for m in (jm, km))
    assert sorted(jb) == sorted(kb)
    for key in kb:
        _assert_close(jb[key], kb[key])


def mae_test_step_class(lib):
    """Built-in training, a custom test_step reporting a mean absolute error tracker."""

    class Regressor(lib.Model):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.mae_tracker = lib.metrics.Mean(name="mae")

        def test_step(self, state, data):
            trainable_variables, non_trainable_variables, metrics_variables = state
            x, y = data
            y_pred, non_trainable_variables = self.stateless_call(
                trainable_variables, non_trainable_variables, x, training=False)
            new_vars, logs = [], {}
            for metric in self.metrics:
                start = len(new_vars)
                current = metrics_variables[start:start + len(metric.variables)]
                if metric.name == "mae":
                    current = metric.stateless_update_state(current, jnp.abs(y_pred - y))
                    logs["mae"] = metric.stateless_result(current)
                new_vars += current
            return logs, (trainable_variables, non_trainable_variables, new_vars)

    return Regressor


def test_custom_test_step_in_evaluate_and_validation(keras):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((90, 20)).astype("float32")
    y = x[:, :1] * 0.5 - x[:, 1:2]
    models = {}
    for lib in (keras, jaxgraph):
        inputs = lib.Input(shape=(20,))
        outputs = lib.layers.Dense(1)(lib.layers.Dense(8, activation="tanh")(inputs))
        models[lib] = mae_test_step_class(lib)(inputs, outputs)
    _same_weights(models[keras], models[jaxgraph])
    runs = {}
    for lib, model in models.items():
        model.compile(optimizer=lib.optimizers.SGD(0.05), loss="mse")
        history = model.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0,
                            validation_split=0.3).history
        runs[lib] = (model, history, model.evaluate(x, y, batch_size=16, verbose=0),
                     model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True))
    (_, kh, ke, ked), (jm, jh, je, jed) = runs[keras], runs[jaxgraph]
    # Keras's default train step logs every metric of model.metrics: the tracker too.
    assert sorted(jh) == sorted(kh) == ["loss", "mae", "val_mae"]
    _assert_close(jh["loss"], kh["loss"])
    _assert_close(jh["mae"], kh["mae"])
    _assert_close(jh["val_mae"], kh["val_mae"])  # 27 rows in batches of 8: 3 padded rows
    _assert_close(je, ke)
    assert list(jed) == list(ked) == ["mae"]
    # The Mean tracker's rows of the padded last batch count for nothing.
    mae = np.mean(np.abs(jm.predict(x, verbose=0) - y))
    _assert_close(je, mae, rtol=1e-5)


def vae_classes(lib, sampler_cls):
    """The chapter-12 VAE in the stateless JAX style: encoder and decoder models, a
    sampling layer, and one Mean tracker per loss term."""

    class VAE(lib.Model):
        def __init__(self, encoder, decoder, **kwargs):
            super().__init__(**kwargs)
            self.encoder = encoder
            self.decoder = decoder
            self.sampler = sampler_cls()
            self.total_loss_tracker = lib.metrics.Mean(name="total_loss")
            self.reconstruction_loss_tracker = lib.metrics.Mean(name="reconstruction_loss")
            self.kl_loss_tracker = lib.metrics.Mean(name="kl_loss")

        def call(self, inputs, training=None):
            z_mean, z_log_var = self.encoder(inputs)
            z = self.sampler([z_mean, z_log_var])
            return z_mean, z_log_var, self.decoder(z)

        @property
        def metrics(self):
            return [self.total_loss_tracker, self.reconstruction_loss_tracker,
                    self.kl_loss_tracker]

        def train_step(self, state, data):
            (trainable_variables, non_trainable_variables, optimizer_variables,
             metrics_variables) = state

            def loss_fn(trainable_variables, non_trainable_variables):
                (z_mean, z_log_var, reconstruction), non_trainable_variables = \
                    self.stateless_call(trainable_variables, non_trainable_variables, data,
                                        training=True)
                reconstruction_loss = jnp.mean(jnp.sum(
                    lib.losses.binary_crossentropy(data, reconstruction), axis=(1, 2)))
                kl_loss = -0.5 * (1 + z_log_var - jnp.square(z_mean) - jnp.exp(z_log_var))
                kl_loss = jnp.mean(jnp.sum(kl_loss, axis=1))
                total_loss = reconstruction_loss + kl_loss
                return total_loss, (reconstruction_loss, kl_loss, non_trainable_variables)

            (total_loss, (reconstruction_loss, kl_loss, non_trainable_variables)), grads = \
                jax.value_and_grad(loss_fn, has_aux=True)(trainable_variables,
                                                          non_trainable_variables)
            trainable_variables, optimizer_variables = self.optimizer.stateless_apply(
                optimizer_variables, grads, trainable_variables)
            logs, new_metrics_vars = {}, []
            for metric, value in zip(self.metrics,
                                     (total_loss, reconstruction_loss, kl_loss)):
                start = len(new_metrics_vars)
                current = metrics_variables[start:start + len(metric.variables)]
                current = metric.stateless_update_state(current, value)
                logs[metric.name] = metric.stateless_result(current)
                new_metrics_vars += current
            return logs, (trainable_variables, non_trainable_variables, optimizer_variables,
                          new_metrics_vars)

    def build(latent_dim=2):
        return VAE(*vae_parts(lib, latent_dim))

    return build


class JaxgraphSampler(jaxgraph.layers.Layer):
    """z = z_mean + exp(z_log_var / 2) * epsilon, with the step's own key."""

    def call(self, w, inputs, rng=None):
        z_mean, z_log_var = inputs
        if rng is None:  # inference (predict): the mean code
            return z_mean
        epsilon = jax.random.normal(rng, z_mean.shape)
        return z_mean + jnp.exp(0.5 * z_log_var) * epsilon


def _digits(n, seed=3):
    return (np.random.default_rng(seed).random((n, 8, 8, 1)) > 0.6).astype("float32")


def test_vae_with_sampling_layer_and_trackers_trains():
    jaxgraph.utils.set_random_seed(0)
    images = _digits(70)
    vae = vae_classes(jaxgraph, JaxgraphSampler)()
    vae.compile(optimizer=jaxgraph.optimizers.Adam(0.01))
    history = vae.fit(images, epochs=8, batch_size=32, verbose=0).history
    assert sorted(history) == ["kl_loss", "reconstruction_loss", "total_loss"]
    total = np.asarray(history["total_loss"])
    assert np.all(np.isfinite(total)) and total[-1] < total[0] - 1.0
    _assert_close(total, np.asarray(history["reconstruction_loss"]) + history["kl_loss"],
                  rtol=1e-5)
    # The trackers hold the last epoch's state after fit, as Keras's do.
    _assert_close(vae.total_loss_tracker.result(), total[-1], rtol=1e-6)
    z_mean, z_log_var, reconstruction = vae.predict(images, batch_size=32, verbose=0)
    assert z_mean.shape == z_log_var.shape == (70, 2) and reconstruction.shape == images.shape
    # The sampler draws: two training calls on the same variables give different codes.
    t = [w.value for w in vae.trainable_variables]
    nt = [w.value for w in vae.non_trainable_variables]
    first, _ = vae.stateless_call(t, nt, images[:4], training=True)
    second, _ = vae.stateless_call(t, nt, images[:4], training=True)
    assert not np.allclose(first[2], second[2])


def test_vae_with_a_deterministic_sampler_matches_keras(keras):
    """The same VAE with the sampler standing in as z = z_mean (no random stream to
    share): losses and weights equal Keras's."""

    class KerasMean(keras.layers.Layer):
        def call(self, inputs):
            return inputs[0]

    class JaxgraphMean(jaxgraph.layers.Layer):
        def call(self, w, inputs):
            return inputs[0]

    images = _digits(64)
    models = {lib: vae_classes(lib, sampler)()
              for lib, sampler in ((keras, KerasMean), (jaxgraph, JaxgraphMean))}
    for vae in models.values():
        vae(images[:2])
    _same_weights(models[keras], models[jaxgraph])
    runs = {}
    for lib, vae in models.items():
        vae.compile(optimizer=lib.optimizers.Adam(0.01))
        runs[lib] = (vae, vae.fit(images, epochs=3, batch_size=16, shuffle=False,
                                  verbose=0).history)
    (km, kh), (jm, jh) = runs[keras], runs[jaxgraph]
    assert sorted(jh) == sorted(kh)
    for key in kh:
        _assert_close(jh[key], kh[key])
    for a, b in zip(jm.get_weights(), km.get_weights()):
        _assert_close(a, b)


def test_learning_rate_callbacks_take_effect(keras):
    x, y = _data(seed=4)
    models = {lib: _mlp(lib, chapter7_class(lib, with_test_step=False)[0])
              for lib in (keras, jaxgraph)}
    _same_weights(models[keras], models[jaxgraph])
    runs = {}
    for lib, model in models.items():
        model.compile(optimizer=lib.optimizers.SGD(0.2))
        halve = lib.callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5 ** min(epoch, 1))
        history = model.fit(x, y, epochs=3, batch_size=25, shuffle=False, verbose=0,
                            callbacks=[halve]).history
        runs[lib] = (model, history)
    (km, kh), (jm, jh) = runs[keras], runs[jaxgraph]
    _assert_close(jh["loss"], kh["loss"])
    _assert_close(jh["learning_rate"], kh["learning_rate"])
    for a, b in zip(jm.get_weights(), km.get_weights()):
        _assert_close(a, b)

    # A batch-level callback that sets the rate to 0 after two steps freezes the weights
    # from then on (the rate is read from the optimizer state at every step).
    snapshots = []

    def freeze(batch, logs):
        if batch == 2:
            jm.optimizer.learning_rate = 0.0

    def snapshot(batch, logs):
        snapshots.append([w.copy() for w in jm.get_weights()])

    jm.compile(optimizer=jaxgraph.optimizers.SGD(0.2))
    jm.fit(x, y, epochs=1, batch_size=20, shuffle=False, verbose=0,
           callbacks=[jaxgraph.callbacks.LambdaCallback(on_train_batch_begin=freeze,
                                                        on_train_batch_end=snapshot)])
    assert len(snapshots) == 5
    assert not np.allclose(snapshots[0][0], snapshots[1][0])
    for later in snapshots[2:]:
        for a, b in zip(later, snapshots[1]):
            np.testing.assert_array_equal(a, b)
    assert jm.optimizer.learning_rate == 0.0


def test_steps_are_traced_once_over_fit_with_partial_batches_and_validation():
    x, y = _data(n=70, seed=5)
    histories, initial = {}, None
    for spe in (1, 3, "auto"):
        cls, _ = chapter7_class(jaxgraph)
        model = _mlp(jaxgraph, cls)
        initial = initial or model.get_weights()
        model.set_weights(initial)
        model.compile(optimizer=jaxgraph.optimizers.SGD(0.1), steps_per_execution=spe)
        # 70 rows of 16: four full batches and one of 6; 20 validation rows of 16: 16 + 4.
        history = model.fit(x, y, epochs=4, batch_size=16, shuffle=False, verbose=0,
                            validation_data=(x[:20], y[:20])).history
        model.evaluate(x[:20], y[:20], batch_size=16, verbose=0)
        assert cls.traces == {"train": 1, "test": 1}, spe
        assert model._trainer.trace_counts["train_step"] == 1
        assert model._trainer.trace_counts["test_step"] == 1
        histories[spe] = history
    # Several steps per dispatch (inactive steps at the end of a chunk included) give the
    # losses of one step per dispatch.
    for spe in (3, "auto"):
        for key in ("loss", "val_loss"):
            _assert_close(histories[spe][key], histories[1][key], rtol=1e-5)


def test_generator_fit_matches_array_fit():
    x, y = _data(n=64, seed=6)
    results = []
    for use_stream in (False, True):
        cls, _ = chapter7_class(jaxgraph)
        model = _mlp(jaxgraph, cls)
        if results:
            model.set_weights(results[0][1])
        weights = model.get_weights()
        model.compile(optimizer=jaxgraph.optimizers.SGD(0.1))
        data = ((x[i:i + 16], y[i:i + 16]) for _ in range(2) for i in range(0, 64, 16)) \
            if use_stream else x
        history = model.fit(data, None if use_stream else y, epochs=2, steps_per_epoch=4,
                            batch_size=None if use_stream else 16, shuffle=False,
                            verbose=0).history
        results.append((history["loss"], weights, model.get_weights()))
    _assert_close(results[1][0], results[0][0], rtol=1e-5)
    for a, b in zip(results[1][2], results[0][2]):
        _assert_close(a, b, rtol=1e-5)


@pytest.mark.parametrize("case", ["state_only", "swapped", "metrics_length", "shape"])
def test_wrong_train_step_result_is_named_at_the_start_of_fit(case):
    class Broken(jaxgraph.Model):
        def train_step(self, state, data):
            logs, state = super().train_step(state, data)
            trainable, non_trainable, optimizer_vars, metrics_vars = state
            if case == "state_only":
                return state
            if case == "swapped":
                return state, logs
            if case == "metrics_length":
                return logs, (trainable, non_trainable, optimizer_vars, metrics_vars[:1])
            return logs, ([w.T for w in trainable], non_trainable, optimizer_vars,
                          metrics_vars)

    expected = {"state_only": (TypeError, r"Broken\.train_step must return a pair \(logs, "
                                          r"state\)"),
                "swapped": (TypeError, "look swapped"),
                "metrics_length": (ValueError, "returned 1 metrics_variables, but received 2"),
                "shape": (ValueError, r"trainable_variables\[0\] \(dense_?\d*/kernel\) has "
                                      r"shape \(16, 20\)")}[case]
    x, y = _data(n=40, seed=7)
    model = _mlp(jaxgraph, Broken)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    before = model.get_weights()
    epochs_run = []
    with pytest.raises(expected[0], match=expected[1]):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[jaxgraph.callbacks.LambdaCallback(
            on_epoch_begin=lambda epoch, logs: epochs_run.append(epoch))])
    assert epochs_run == []  # found before the first epoch began
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_default_steps_through_super_match_the_built_in_path():
    class Logged(jaxgraph.Model):
        def train_step(self, state, data):
            logs, state = super().train_step(state, data)
            return {**logs, "first_kernel_norm": jnp.linalg.norm(state[0][0])}, state

        def test_step(self, state, data):
            return super().test_step(state, data)

    x, y = _data(n=90, seed=8)
    runs = []
    for cls in (jaxgraph.Model, Logged):
        model = _mlp(jaxgraph, cls, batchnorm=True)
        if runs:
            model.set_weights(runs[0][0])
        weights = model.get_weights()
        model.compile(optimizer=jaxgraph.optimizers.Adam(0.01),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0,
                            validation_split=0.25).history
        runs.append((weights, history, model.get_weights(),
                     model.evaluate(x, y, batch_size=20, verbose=0)))
    (_, bh, bw, be), (_, ch, cw, ce) = runs
    assert sorted(ch) == sorted([*bh, "first_kernel_norm"])
    for key in bh:
        _assert_close(ch[key], bh[key], rtol=1e-5)
    for a, b in zip(cw, bw):
        _assert_close(a, b, rtol=1e-5)
    _assert_close(ce, be, rtol=1e-5)
    _assert_close(ch["first_kernel_norm"][-1], np.linalg.norm(cw[0]), rtol=1e-5)


def test_custom_predict_step_matches_keras(keras):
    def predict_class(lib):
        class Labeller(lib.Model):
            def predict_step(self, state, data):
                outputs, non_trainable_variables = super().predict_step(state, data)
                return {"probabilities": outputs,
                        "label": jnp.argmax(outputs, axis=-1)}, non_trainable_variables

        return Labeller

    x, _ = _data(n=45, seed=9)
    models = {lib: _mlp(lib, predict_class(lib)) for lib in (keras, jaxgraph)}
    _same_weights(models[keras], models[jaxgraph])
    k, j = (models[lib].predict(x, batch_size=16, verbose=0) for lib in (keras, jaxgraph))
    assert sorted(j) == sorted(k) == ["label", "probabilities"]
    assert j["probabilities"].shape == (45, 5)
    _assert_close(j["probabilities"], k["probabilities"])
    np.testing.assert_array_equal(j["label"], k["label"])


def test_multi_output_default_steps_through_super_match_keras(keras):
    """Keras's default steps (reached through super()) on a two-output model with loss
    weights, sample weights, a weight regularizer and per-output loss trackers."""

    def build(lib):
        class Passthrough(lib.Model):
            def train_step(self, state, data):
                return super().train_step(state, data)

        inputs = lib.Input((6,), name="features")
        h = lib.layers.Dense(8, activation="relu",
                             kernel_regularizer=lib.regularizers.L2(0.01))(inputs)
        outputs = {"a": lib.layers.Dense(1, name="a")(h),
                   "b": lib.layers.Dense(3, activation="softmax", name="b")(h)}
        return Passthrough(inputs, outputs)

    rng = np.random.default_rng(10)
    x = rng.standard_normal((50, 6)).astype("float32")
    y = {"a": rng.standard_normal((50, 1)).astype("float32"),
         "b": rng.integers(0, 3, 50).astype("int32")}
    weights = rng.random(50).astype("float32")
    models = {lib: build(lib) for lib in (keras, jaxgraph)}
    _same_weights(models[keras], models[jaxgraph])
    runs = {}
    for lib, model in models.items():
        model.compile(lib.optimizers.SGD(0.05),
                      loss={"a": "mse", "b": "sparse_categorical_crossentropy"},
                      loss_weights={"a": 0.5, "b": 1.0}, metrics={"b": ["accuracy"]})
        history = model.fit(x, y, sample_weight=weights, epochs=2, batch_size=16,
                            shuffle=False, verbose=0, validation_split=0.2).history
        runs[lib] = (history, model.evaluate(x, y, verbose=0), model.get_weights())
    (kh, ke, kw), (jh, je, jw) = runs[keras], runs[jaxgraph]
    assert sorted(jh) == sorted(kh)
    for key in kh:
        _assert_close(jh[key], kh[key])
    _assert_close(je, ke)  # Keras's order: loss, output losses, then the metrics
    for a, b in zip(jw, kw):
        _assert_close(a, b)


def test_stateful_metric_update_inside_a_step_is_refused():
    tracker = jaxgraph.metrics.Mean(name="loss")

    class Stateful(jaxgraph.Model):
        def train_step(self, state, data):
            logs, state = super().train_step(state, data)
            tracker.update_state(logs["loss"])
            return logs, state

    x, y = _data(n=20, seed=11)
    model = _mlp(jaxgraph, Stateful)
    model.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(RuntimeError, match=r"stateless_update_state"):
        model.fit(x, y, verbose=0)
    tracker.update_state(np.array([1.0, 3.0]))  # outside a step, Keras's stateful API
    assert float(tracker.result()) == 2.0 and len(tracker.variables) == 1


DISTRIBUTED = """
import jax, numpy as np
assert jax.device_count() == 4, jax.devices()
import jaxgraph
from jaxgraph import Input, layers, optimizers
from jaxgraph.distribution import DataParallel, ModelParallel
from jaxgraph.utils import set_random_seed

tracker = jaxgraph.metrics.Mean(name="loss")
loss_fn = jaxgraph.losses.SparseCategoricalCrossentropy()

class Custom(jaxgraph.Model):
    def train_step(self, state, data):
        trainable, non_trainable, optimizer_variables, metrics_variables = state
        x, y = data

        def loss_and_updates(trainable, non_trainable):
            y_pred, non_trainable = self.stateless_call(trainable, non_trainable, x,
                                                        training=True)
            return loss_fn(y, y_pred), non_trainable

        (loss, non_trainable), grads = jax.value_and_grad(
            loss_and_updates, has_aux=True)(trainable, non_trainable)
        trainable, optimizer_variables = self.optimizer.stateless_apply(
            optimizer_variables, grads, trainable)
        metrics_variables = tracker.stateless_update_state(metrics_variables, loss)
        return {"loss": tracker.stateless_result(metrics_variables)}, (
            trainable, non_trainable, optimizer_variables, metrics_variables)

    @property
    def metrics(self):
        return [tracker]

rng = np.random.default_rng(0)
x = rng.normal(size=(88, 8)).astype("f4")
y = rng.integers(0, 4, 88)
results = {}
for label, dist in [("single", None), ("data", DataParallel()),
                    ("model", ModelParallel((2, 2), {r"hidden/kernel": (None, "model")}))]:
    set_random_seed(0)
    i = Input(shape=(8,))
    h = layers.Dense(16, activation="relu", name="hidden")(i)
    m = Custom(i, layers.Dense(4, activation="softmax", name="out")(h))
    m.compile(optimizer=optimizers.SGD(0.1), distribution=dist)
    history = m.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0).history
    results[label] = (history["loss"], m.get_weights())
for label in ("data", "model"):
    np.testing.assert_allclose(results[label][0], results["single"][0], rtol=1e-5)
    for a, b in zip(results[label][1], results["single"][1]):
        np.testing.assert_allclose(a, b, atol=1e-5)
print("OK")
"""


def test_custom_train_step_under_data_and_model_parallel_distribution():
    import subprocess
    import sys

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", DISTRIBUTED], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK" in proc.stdout


def test_compute_loss_override_with_a_stateful_tracker_matches_keras(keras):
    """Keras's documented `compute_loss` override: Keras's default steps run it with the
    step's metric state in scope, so `tracker.update_state` inside it works."""

    def build(lib):
        class MyModel(lib.Model):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.loss_tracker = lib.metrics.Mean(name="loss")

            def compute_loss(self, x, y, y_pred, sample_weight, training=True):
                loss = jnp.mean((y_pred - y) ** 2)
                loss += sum(self.losses)  # the regularizer's term
                self.loss_tracker.update_state(loss)
                return loss

            @property
            def metrics(self):
                return [self.loss_tracker]

        inputs = lib.Input(shape=(10,))
        outputs = lib.layers.Dense(10, kernel_regularizer=lib.regularizers.L2(0.01))(inputs)
        return MyModel(inputs, outputs)

    rng = np.random.default_rng(12)
    x = rng.standard_normal((64, 10)).astype("float32")
    y = rng.standard_normal((64, 10)).astype("float32")
    models = {lib: build(lib) for lib in (keras, jaxgraph)}
    _same_weights(models[keras], models[jaxgraph])
    runs = {}
    for lib, model in models.items():
        model.compile(lib.optimizers.SGD(0.1), loss="mse")
        history = model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0,
                            validation_data=(x[:32], y[:32])).history
        runs[lib] = (history, model.evaluate(x, y, verbose=0), model.get_weights(),
                     float(model.loss_tracker.result()))
    (kh, ke, kw, kt), (jh, je, jw, jt) = runs[keras], runs[jaxgraph]
    assert sorted(jh) == sorted(kh) == ["loss", "val_loss"]
    for key in kh:
        _assert_close(jh[key], kh[key])
    _assert_close(je, ke)
    _assert_close(jt, kt)
    for a, b in zip(jw, kw):
        _assert_close(a, b)


def test_targets_are_checked_where_the_step_uses_the_compiled_loss():
    """As in Keras, a custom step that never uses the compiled loss may take targets it
    would not fit; one that calls compute_loss with them gets an error naming the output."""
    x, _ = _data()
    y_wrong = np.zeros((len(x), 3), "float32")  # the output has 5 classes

    class OwnLoss(jaxgraph.Model):
        def train_step(self, state, data):
            trainable, non_trainable, opt_vars, metrics_vars = state
            inputs, targets = data

            def loss_fn(tv, ntv):
                pred, ntv = self.stateless_call(tv, ntv, inputs, training=True)
                return jnp.mean((pred[:, :3] - targets) ** 2), ntv

            (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                trainable, non_trainable)
            trainable, opt_vars = self.optimizer.stateless_apply(opt_vars, grads, trainable)
            return {"loss": loss}, (trainable, non_trainable, opt_vars, metrics_vars)

    model = _mlp(jaxgraph, OwnLoss)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    before = [np.asarray(w) for w in model.get_weights()]
    hist = model.fit(x, y_wrong, batch_size=20, epochs=2, verbose=0)
    assert len(hist.history["loss"]) == 2 and np.isfinite(hist.history["loss"]).all()
    assert not np.allclose(model.get_weights()[0], before[0])

    model = _mlp(jaxgraph, compiled_metrics_class(jaxgraph))
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match=r"Output 'dense_\d+'.*categorical_crossentropy"):
        model.fit(x, y_wrong, batch_size=20, epochs=1, verbose=0)


def _losses_model(lib, regularized, seen):
    class M(lib.Model):
        def __init__(self, **kw):
            super().__init__(**kw)
            reg = dict(activity_regularizer=lib.regularizers.L2(0.1),
                       kernel_regularizer=lib.regularizers.L2(0.01)) if regularized else {}
            self.body = lib.layers.Dense(3, kernel_initializer="ones", **reg)
            self.head = lib.layers.Dense(1, kernel_initializer="ones",
                                         activity_regularizer=lib.regularizers.L2(10.0))
            if lib is jaxgraph:
                self.head.build((None, 3))

        def call(self, x):
            return self.body(x)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                         training=True):
            out = self.head(y_pred)  # a held layer's activity loss: Keras drops it here
            loss = lib.ops.mean((out - y) ** 2)
            seen.append(len(self.losses))
            return loss + sum(self.losses) if self.losses else loss

    return M()


@pytest.mark.parametrize("regularized", [False, True])
def test_model_losses_in_compute_loss_match_keras(keras, regularized):
    """`self.losses` in compute_loss: [] for a model that adds none (so `if self.losses`
    works as in Keras), else what the call added and the weight regularizers, summed to
    Keras's total."""
    x = np.linspace(-1, 1, 8, dtype="float32").reshape(4, 2)
    y = np.zeros((4, 1), "float32")
    totals, counts = [], []
    for lib in (keras, jaxgraph):
        seen = []
        model = _losses_model(lib, regularized, seen)
        model(x)
        model.compile(optimizer=lib.optimizers.SGD(0.0))
        totals.append(model.fit(x, y, batch_size=4, epochs=1, verbose=0).history["loss"][0])
        counts.append(seen[-1])
    _assert_close(totals[1], totals[0], rtol=1e-5)
    assert counts[1] == 0 if not regularized else counts[1] > 0
    assert (counts[0] == 0) == (counts[1] == 0)

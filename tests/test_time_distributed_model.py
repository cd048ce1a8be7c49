"""TimeDistributed around a whole model (a frame CNN over video clips), against Keras 3.

Keras 3 runs the wrapped layer once per timestep; jaxgraph folds time into the batch and
runs it once, as tf.keras did. The two agree exactly wherever a layer treats samples
independently (inference, convolutions, dense layers); BatchNormalization in training
normalises over batch x time here, over the batch of each step in Keras 3.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph as jg
from jaxgraph import layers as L

keras = pytest.importorskip("keras")

RNG = np.random.default_rng(0)
CLIPS = RNG.normal(size=(6, 4, 6, 6, 2)).astype("float32")  # (batch, frames, h, w, c)
TARGETS = RNG.normal(size=(6, 2)).astype("float32")


def _frame_model(m, Model, Input, bn=False, dropout=0.0):
    frame = Input((6, 6, 2))
    h = m.Conv2D(3, 3, activation="relu", name="conv")(frame)
    if bn:
        h = m.BatchNormalization(name="bn")(h)
    h = m.GlobalAveragePooling2D(name="pool")(h)
    if dropout:
        h = m.Dropout(dropout, name="drop")(h)
    return Model(frame, m.Dense(4, name="embed")(h), name="frame_cnn")


def _video_model(m, Model, Input, **kwargs):
    cnn = _frame_model(m, Model, Input, **kwargs)
    clip = Input((4, 6, 6, 2))
    h = m.TimeDistributed(cnn, name="per_frame")(clip)
    h = m.GRU(3, name="gru")(h)
    return Model(clip, m.Dense(2, name="out")(h)), cnn


def _pair(**kwargs):
    km, _ = _video_model(keras.layers, keras.Model, keras.Input, **kwargs)
    km.set_weights([RNG.normal(scale=0.4, size=w.shape).astype("float32") + (
        1.0 if "variance" in w.path else 0.0) for w in km.weights])
    jm, cnn = _video_model(L, jg.Model, jg.Input, **kwargs)
    jm.set_weights(km.get_weights())
    return km, jm, cnn


def test_weights_shapes_and_outputs_match_keras():
    km, jm, _ = _pair(bn=True, dropout=0.3)
    td = jm.get_layer("per_frame")
    assert [w.name for w in td.weights] == [w.path for w in km.get_layer("per_frame").weights]
    assert [w.name for w in td.weights][:6] == [
        "conv/kernel", "conv/bias", "bn/gamma", "bn/beta", "bn/moving_mean",
        "bn/moving_variance"]
    assert jm.count_params() == km.count_params()
    assert len(jm.trainable_weights) == len(km.trainable_weights)
    assert jm.outputs[0].shape == (None, 2)
    assert td.output.shape == (None, 4, 4)
    np.testing.assert_allclose(jm.predict(CLIPS, verbose=0), km.predict(CLIPS, verbose=0),
                               atol=1e-5)
    # The variables pytree holds the wrapped model's weights once, under the wrapper.
    variables = jm.variables
    assert sorted(variables["params"]["per_frame"]) == [
        "bn/beta", "bn/gamma", "conv/bias", "conv/kernel", "embed/bias", "embed/kernel"]
    assert sorted(variables["state"]["per_frame"]) == ["bn/moving_mean", "bn/moving_variance"]


def test_fit_matches_keras():
    km, jm, cnn = _pair()
    for m in (km, jm):
        m.compile(optimizer=keras.optimizers.SGD(0.05) if m is km else "sgd", loss="mse")
    jm.optimizer.learning_rate = 0.05
    k_hist = km.fit(CLIPS, TARGETS, batch_size=3, epochs=2, shuffle=False, verbose=0)
    j_hist = jm.fit(CLIPS, TARGETS, batch_size=3, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(j_hist.history["loss"], k_hist.history["loss"], rtol=1e-4)
    for ours, theirs in zip(jm.get_weights(), km.get_weights()):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    # The frame model itself holds the trained weights: it is usable on single frames.
    np.testing.assert_allclose(cnn.get_layer("embed").get_weights()[0],
                               km.get_layer("per_frame").layer.get_layer("embed")
                               .get_weights()[0], atol=1e-5)


def test_batchnorm_inside_updates_moving_statistics_over_every_frame():
    _, jm, cnn = _pair(bn=True)
    variables = jm.variables
    _, state = jm.apply(variables, CLIPS, training=True)
    conv = jax.nn.relu(jax.lax.conv_general_dilated(
        CLIPS.reshape(-1, 6, 6, 2), variables["params"]["per_frame"]["conv/kernel"], (1, 1),
        "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        + variables["params"]["per_frame"]["conv/bias"])
    old = variables["state"]["per_frame"]["bn/moving_mean"]
    np.testing.assert_allclose(state["per_frame"]["bn/moving_mean"],
                               0.99 * old + 0.01 * conv.mean((0, 1, 2)), atol=1e-5)
    jm.compile(optimizer="adam", loss="mse")
    jm.fit(CLIPS, TARGETS, epochs=1, batch_size=6, verbose=0)
    np.testing.assert_allclose(cnn.get_layer("bn").get_weights()[2],
                               jm.variables["state"]["per_frame"]["bn/moving_mean"])


def test_frozen_layer_inside_the_wrapped_model_does_not_train():
    km, jm, cnn = _pair()
    cnn.get_layer("conv").trainable = False
    km.get_layer("per_frame").layer.get_layer("conv").trainable = False
    assert jm.count_params() == km.count_params()
    assert ([w.name for w in jm.trainable_weights][:2] == ["embed/kernel", "embed/bias"])
    assert len(jm.trainable_weights) == len(km.trainable_weights)
    before = cnn.get_weights()
    jm.compile(optimizer="adam", loss="mse")
    jm.fit(CLIPS, TARGETS, epochs=2, batch_size=3, verbose=0)
    after = cnn.get_weights()
    np.testing.assert_array_equal(after[0], before[0])  # conv kernel
    np.testing.assert_array_equal(after[1], before[1])  # conv bias
    assert not np.allclose(after[2], before[2])         # embed kernel trained


def test_dropout_inside_needs_and_uses_the_rng():
    _, jm, _ = _pair(dropout=0.5)
    variables = jm.variables
    with pytest.raises(ValueError, match="'per_frame'.*rng"):
        jm.apply(variables, CLIPS, training=True)
    a, _ = jm.apply(variables, CLIPS, training=True, rng=jax.random.key(1))
    b, _ = jm.apply(variables, CLIPS, training=True, rng=jax.random.key(2))
    c, _ = jm.apply(variables, CLIPS)
    assert not np.allclose(a, b)
    np.testing.assert_allclose(c, jm.predict(CLIPS, verbose=0), atol=1e-6)


def test_activity_regularizer_inside_counts_in_the_loss():
    frame = jg.Input((3,))
    inner = jg.Model(frame, L.Dense(2, activity_regularizer="l2", name="d")(frame))
    clip = jg.Input((5, 3))
    model = jg.Model(clip, L.Flatten()(L.TimeDistributed(inner)(clip)))
    x = RNG.normal(size=(4, 5, 3)).astype("float32")
    variables = model.variables
    out, _, added = jg.lowering.run_model(model, variables, x)
    # Keras's activity penalty divides by the batch of the call: here batch x time.
    np.testing.assert_allclose(added, 0.01 * np.sum(np.asarray(out) ** 2) / 20, rtol=1e-5)


def test_sequential_frame_model_is_built_from_the_clip_shape():
    frame_mlp = jg.Sequential([L.Dense(4, activation="relu"), L.Dense(2)])
    clip = jg.Input((5, 3))
    model = jg.Model(clip, L.TimeDistributed(frame_mlp)(clip))
    assert model.outputs[0].shape == (None, 5, 2)
    x = RNG.normal(size=(2, 5, 3)).astype("float32")
    y, _ = model.apply(model.variables, x)
    expected = frame_mlp.predict(x.reshape(10, 3), verbose=0).reshape(2, 5, 2)
    np.testing.assert_allclose(y, expected, atol=1e-6)


def test_pure_function_jit_grad_vmap():
    _, jm, _ = _pair(bn=True)
    variables = jm.variables

    @jax.jit
    def loss(params, x):
        out, _ = jm.apply({"params": params, "state": variables["state"]}, x, training=True)
        return jnp.mean((out - TARGETS[: len(x)]) ** 2)

    grads = jax.grad(loss)(variables["params"], CLIPS)
    assert set(grads["per_frame"]) == set(variables["params"]["per_frame"])
    assert all(np.any(np.asarray(g) != 0) for g in grads["per_frame"].values())
    per_clip = jax.vmap(lambda c: jm.apply(variables, c[None])[0][0])(CLIPS)
    np.testing.assert_allclose(per_clip, jm.predict(CLIPS, verbose=0), atol=1e-5)


def test_saved_model_round_trip(tmp_path):
    _, jm, _ = _pair(bn=True, dropout=0.2)
    path = tmp_path / "video.keras"
    jm.save(path)
    loaded = jg.saving.load_model(path)
    td = loaded.get_layer("per_frame")
    assert isinstance(td.layer, jg.Model) and td.layer.name == "frame_cnn"
    np.testing.assert_allclose(loaded.predict(CLIPS, verbose=0), jm.predict(CLIPS, verbose=0),
                               atol=1e-6)


def test_errors_name_the_wrapper_the_model_and_the_shapes():
    cnn = _frame_model(L, jg.Model, jg.Input)
    with pytest.raises(ValueError, match=r"per_frame.*frame_cnn.*\(None, 7, 7, 2\)"):
        L.TimeDistributed(cnn, name="per_frame")(jg.Input((4, 7, 7, 2)))
    with pytest.raises(ValueError, match="rank >= 3|min_ndim"):
        L.TimeDistributed(cnn)(jg.Input((6,)))
    with pytest.raises(TypeError, match="cannot wrap a Model"):
        L.Bidirectional(cnn)


def test_sharing_a_wrapped_layer_outside_its_wrapper_is_refused():
    cnn = _frame_model(L, jg.Model, jg.Input)
    clip, frame = jg.Input((4, 6, 6, 2)), jg.Input((6, 6, 2))
    per_frame = L.TimeDistributed(cnn, name="per_frame")
    with pytest.raises(ValueError, match=r"'conv'.*(inside TimeDistributed 'per_frame'"
                                         r"|directly in model 'frame_cnn').*would not share"):
        jg.Model([clip, frame], [per_frame(clip), cnn(frame)])
    dense = L.Dense(3, name="shared_dense")
    seq, vec = jg.Input((5, 2)), jg.Input((2,))
    with pytest.raises(ValueError, match="'shared_dense'.*would not share"):
        jg.Model([seq, vec], [L.TimeDistributed(dense)(seq), dense(vec)])
    # The wrapper itself may be shared: one set of weights for both clips.
    other = jg.Input((4, 6, 6, 2))
    model = jg.Model([clip, other], L.add([per_frame(clip), per_frame(other)]))
    assert list(model.variables["params"]) == ["per_frame"]

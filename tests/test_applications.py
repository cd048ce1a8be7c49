"""Xception, InceptionV3, ResNet50, MobileNetV2: Keras's parameter counts, layer names and
numbers; the weights argument; the book's dual-camera model (one shared Xception)."""

import os

import jax
import numpy as np
import pytest

import jaxgraph
from jaxgraph import applications, layers
from jaxgraph.layers.base import reset_names

# name, builder, Keras's parameter count with the 1000-class top, small input side,
# Keras's count without the top (pooling drops nothing).
MODELS = {
    "xception": ("Xception", 22_910_480, 75, 20_861_480),
    "inception_v3": ("InceptionV3", 23_851_784, 75, 21_802_784),
    "resnet50": ("ResNet50", 25_636_712, 32, 23_587_712),
    "mobilenet_v2": ("MobileNetV2", 3_538_984, 32, 2_257_984),
}


def _build(key, **kwargs):
    reset_names()  # Keras's names in a fresh session (keras.backend.clear_session())
    return getattr(applications, MODELS[key][0])(weights=None, **kwargs)


def _top_names(headless_avg_names, key):
    """Keras's names with the top, from its names with pooling='avg': the top's average
    pool is `avg_pool` (MobileNetV2: unnamed), then `predictions`."""
    pool = "global_average_pooling2d" if key == "mobilenet_v2" else "avg_pool"
    return headless_avg_names[:-1] + [pool, "predictions"]


# ---------------------------------------------------------------------------- counts and names


@pytest.mark.parametrize("key", list(MODELS))
def test_parameter_counts_and_shapes(key):
    _, with_top, small, without_top = MODELS[key]
    model = _build(key)
    assert model.count_params() == with_top
    assert model.output_shape == (None, 1000)
    headless = _build(key, include_top=False, pooling="max")
    assert headless.count_params() == without_top
    assert headless.output_shape[0] is None and len(headless.output_shape) == 2
    bare = _build(key, include_top=False, input_shape=(small, small, 3))
    assert bare.count_params() == without_top and len(bare.output_shape) == 4
    small_top = _build(key, input_shape=(small, small, 3), classes=10,
                       classifier_activation=None)
    assert small_top.count_params() == without_top + small_top.layers[-1].count_params()
    assert small_top.get_layer("predictions").count_params() == (
        small_top.layers[-2].output_shape[-1] + 1) * 10


def test_model_names_and_resnet_family():
    assert [_build(k).name for k in MODELS] == [
        "xception", "inception_v3", "resnet50", "mobilenetv2_1.00_224"]
    assert applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.5,
                                    include_top=False).name == "mobilenetv2_0.50_96"
    assert applications.MobileNetV2(alpha=0.35).count_params() == 1_691_208
    assert applications.MobileNetV2(alpha=1.4, include_top=False,
                                    input_shape=(96, 96, 3)).count_params() == 4_363_712
    assert applications.ResNet101().count_params() == 44_707_176
    assert applications.ResNet152().count_params() == 60_419_944


def test_weights_argument_and_input_checks(tmp_path):
    with pytest.raises(ValueError, match="xception_weights_tf_dim_ordering_tf_kernels.h5"):
        applications.Xception(weights="imagenet")
    with pytest.raises(ValueError, match="network"):
        applications.ResNet50(weights="imagenet", include_top=False)
    with pytest.raises(ValueError, match="classes"):
        applications.InceptionV3(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match="no such file"):
        applications.MobileNetV2(weights=str(tmp_path / "missing.h5"))
    with pytest.raises(ValueError, match="at least 71x71"):
        applications.Xception(include_top=False, input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match="static `input_shape`"):
        applications.ResNet50(input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="pooling"):
        applications.ResNet50(include_top=False, pooling="mean")
    with pytest.raises(ValueError, match="symbolic"):
        applications.ResNet50(include_top=False, input_tensor=np.zeros((1, 32, 32, 3)))


def test_input_tensor_and_weights_file_roundtrip(tmp_path):
    image = jaxgraph.Input((32, 32, 3), name="image")
    scaled = layers.Activation("linear", name="scaled")(image)
    model = applications.MobileNetV2(include_top=False, input_tensor=scaled,
                                     pooling="avg", alpha=0.35)
    assert model.inputs[0] is image
    assert model.layers[0].name == "image"
    path = os.fspath(tmp_path / "mnv2.weights.h5")
    rng = np.random.default_rng(0)
    model.set_weights([rng.standard_normal(w.shape).astype("float32")
                       for w in model.get_weights()])
    model.save_weights(path)
    again = applications.MobileNetV2(include_top=False, input_tensor=scaled,
                                     pooling="avg", alpha=0.35, weights=path)
    for a, b in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_preprocess_input_matches_keras():
    keras = pytest.importorskip("keras")
    images = np.random.default_rng(1).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    for ours, theirs in ((applications.xception, keras.applications.xception),
                         (applications.resnet50, keras.applications.resnet50),
                         (applications.inception_v3, keras.applications.inception_v3),
                         (applications.mobilenet_v2, keras.applications.mobilenet_v2)):
        want = np.asarray(theirs.preprocess_input(images.copy()))
        np.testing.assert_allclose(ours.preprocess_input(images), want, rtol=1e-6, atol=1e-4)
        got = jax.jit(ours.preprocess_input)(jax.numpy.asarray(images))
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-4)


# ---------------------------------------------------------------------------- Keras parity


@pytest.mark.parametrize("key", list(MODELS))
def test_matches_keras_names_counts_and_outputs(key):
    """One Keras model per network (headless, average pooling, small input): the same
    layer names, parameter counts and, with Keras's weights, the same features."""
    keras = pytest.importorskip("keras")
    cls_name, with_top, small, without_top = MODELS[key]
    shape = (small, small, 3)
    keras.backend.clear_session()
    theirs = getattr(keras.applications, cls_name)(weights=None, include_top=False,
                                                   pooling="avg", input_shape=shape)
    ours = _build(key, include_top=False, pooling="avg", input_shape=shape)
    names = [layer.name for layer in theirs.layers]
    assert [layer.name for layer in ours.layers] == names
    assert [type(layer).__name__ for layer in ours.layers] == [
        type(layer).__name__ for layer in theirs.layers]
    assert ours.name == theirs.name
    assert ours.count_params() == theirs.count_params() == without_top
    assert [w.shape for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    assert [layer.name for layer in _build(key).layers] == _top_names(names, key)

    # Random normalization statistics, so that inference-mode BN is really exercised.
    rng = np.random.default_rng(0)
    for layer in theirs.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([
                rng.uniform(0.5, 1.5, w.shape).astype("float32") if "variance" in w.path
                or "gamma" in w.path else rng.normal(0, 0.1, w.shape).astype("float32")
                for w in layer.weights])
    ours.set_weights(theirs.get_weights())
    x = rng.uniform(-1, 1, (2,) + shape).astype("float32")
    want = theirs.predict(x, batch_size=2, verbose=0)
    got, _ = jax.jit(ours.apply)(ours.variables, x)
    got = np.asarray(got)
    assert got.shape == want.shape == (2, ours.output_shape[-1])
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(scale, 1.0))


# ---------------------------------------------------------------------------- dual camera


@pytest.mark.slow  # about 70 s of CPU: initializing and compiling a training step
def test_dual_camera_shared_xception_trains_one_step():
    """The book's example: one Xception base sees a left and a right image."""
    reset_names()
    base = applications.Xception(weights=None, include_top=False, input_shape=(71, 71, 3))
    left = jaxgraph.Input((71, 71, 3), name="left")
    right = jaxgraph.Input((71, 71, 3), name="right")
    merged = layers.concatenate([base(left), base(right)], axis=-1)
    assert merged.shape == (None, 3, 3, 4096)
    pooled = layers.GlobalAveragePooling2D()(merged)
    out = layers.Dense(1, activation="sigmoid", name="head")(pooled)
    model = jaxgraph.Model([left, right], out)

    params = model.variables["params"]
    assert sorted(params) == ["head", "xception"]
    n_base = sum(int(np.prod(w.shape)) for w in base.trainable_weights)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))
    assert n_params == n_base + 4096 + 1
    assert model.count_params() == base.count_params() + 4097 == 20_861_480 + 4097

    rng = np.random.default_rng(0)
    x_left = rng.uniform(-1, 1, (2, 71, 71, 3)).astype("float32")
    x_right = rng.uniform(-1, 1, (2, 71, 71, 3)).astype("float32")
    y = np.array([[0.0], [1.0]], "float32")
    before = np.asarray(base.get_layer("block1_conv1").get_weights()[0]).copy()
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit([x_left, x_right], y, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = np.asarray(base.get_layer("block1_conv1").get_weights()[0])
    assert not np.allclose(before, after)  # the shared base itself was trained
    # Both branches read the same (updated) weights: swapping sides swaps the features.
    features = jaxgraph.Model([left, right], merged)
    assert np.array_equal(features.variables["params"]["xception"]["block1_conv1"]["kernel"],
                          after)
    pairs = [np.concatenate([x_left[:1], x_right[:1]]), np.concatenate([x_right[:1], x_left[:1]])]
    f, _ = jax.jit(features.apply)(features.variables, pairs)
    f = np.asarray(f)
    np.testing.assert_allclose(f[0, ..., :2048], f[1, ..., 2048:], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(f[0, ..., 2048:], f[1, ..., :2048], rtol=1e-5, atol=1e-5)

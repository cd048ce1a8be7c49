"""Image preprocessing and augmentation layers: Keras parity, purity, jit and rng use.

Keras 3 (JAX backend) is the reference: random layers are compared with factors
whose range is a single point (`(0.1, 0.1)`), so both draw the same parameters.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph
from jaxgraph import Input, Model, Sequential, layers
from jaxgraph.layers import preprocessing as P

RNG = np.random.RandomState(0)
X = (RNG.rand(2, 7, 9, 3) * 255).astype("float32")


def _ours(layer, x, training=True, seed=1):
    return np.asarray(layer(x, training=training, rng=jax.random.key(seed)))


def _keras_layer(name, *args, **kwargs):
    keras = pytest.importorskip("keras")
    return getattr(keras.layers, name)(*args, **kwargs)


def _theirs(layer, x, training=True):
    return np.asarray(layer(x, training=training))


AUGMENTERS = [
    lambda: P.RandomFlip(),
    lambda: P.RandomRotation(0.2),
    lambda: P.RandomZoom(0.3),
    lambda: P.RandomTranslation(0.2, 0.2),
    lambda: P.RandomContrast(0.5),
    lambda: P.RandomBrightness(0.3),
]


def test_layers_are_exported():
    for name in ["RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
                 "RandomContrast", "RandomCrop", "RandomBrightness", "Rescaling", "Resizing",
                 "CenterCrop"]:
        assert getattr(layers, name) is getattr(P, name)


@pytest.mark.parametrize("make", AUGMENTERS)
def test_identity_at_inference(make):
    layer = make()
    np.testing.assert_array_equal(_ours(layer, X, training=False), X)
    np.testing.assert_array_equal(np.asarray(layer(X)), X)


def test_training_randomness_comes_only_from_rng_under_jit():
    """One model of every augmenter: same key -> same output, other key -> other output."""
    inp = Input((7, 9, 3))
    h = inp
    for make in AUGMENTERS:
        h = make()(h)
    model = Model(inp, h)
    variables = model.init(jax.random.key(0))
    run = jax.jit(lambda v, x, key: model.apply(v, x, training=True, rng=key)[0])
    a = np.asarray(run(variables, X, jax.random.key(1)))
    b = np.asarray(run(variables, X, jax.random.key(1)))
    c = np.asarray(run(variables, X, jax.random.key(2)))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.shape == X.shape and a.dtype == np.float32
    # Inference through apply is the identity, and needs no key.
    out, _ = model.apply(variables, X)
    np.testing.assert_array_equal(np.asarray(out), X)
    with pytest.raises(ValueError, match="rng"):
        model.apply(variables, X, training=True)


def test_parameters_are_drawn_per_sample():
    x = np.repeat(X[:1], 8, axis=0)
    out = _ours(P.RandomRotation(0.3), x)
    assert len({np.round(o, 3).tobytes() for o in out}) == 8


def test_random_flip_flips():
    x = np.arange(2 * 3 * 4).reshape(1, 3, 4, 2).astype("float32")
    seen = set()
    for seed in range(24):
        out = _ours(P.RandomFlip("horizontal_and_vertical"), x, seed=seed)[0]
        candidates = {
            "none": x[0], "h": x[0, :, ::-1], "v": x[0, ::-1], "hv": x[0, ::-1, ::-1]}
        match = [k for k, v in candidates.items() if np.array_equal(out, v)]
        assert len(match) == 1
        seen.add(match[0])
    assert seen == {"none", "h", "v", "hv"}
    for seed in range(8):
        out = _ours(P.RandomFlip("horizontal"), x, seed=seed)[0]
        assert np.array_equal(out, x[0]) or np.array_equal(out, x[0, :, ::-1])
        out = _ours(P.RandomFlip("vertical"), x, seed=seed)[0]
        assert np.array_equal(out, x[0]) or np.array_equal(out, x[0, ::-1])
    with pytest.raises(ValueError, match="mode"):
        P.RandomFlip("diagonal")


def test_quarter_turn_rotation_is_rot90():
    square = RNG.rand(3, 5, 5, 2).astype("float32")
    out = _ours(P.RandomRotation((0.25, 0.25)), square)
    np.testing.assert_allclose(out, np.rot90(square, k=1, axes=(1, 2)), atol=1e-5)
    out = _ours(P.RandomRotation((-0.5, -0.5), interpolation="nearest"), square)
    np.testing.assert_allclose(out, square[:, ::-1, ::-1], atol=1e-5)


@pytest.mark.parametrize("fill_mode", ["reflect", "wrap", "constant", "nearest"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_affine_layers_match_keras(fill_mode, interpolation):
    kw = {"fill_mode": fill_mode, "interpolation": interpolation}
    if fill_mode == "constant":
        kw["fill_value"] = 7.0
    cases = [
        ("RandomRotation", ((0.1, 0.1),)),
        ("RandomZoom", ((0.3, 0.3), (-0.2, -0.2))),
        ("RandomZoom", ((-0.4, -0.4),)),
        ("RandomTranslation", ((0.2, 0.2), (-0.3, -0.3))),
    ]
    for name, args in cases:
        expected = _theirs(_keras_layer(name, *args, **kw), X)
        got = _ours(getattr(P, name)(*args, **kw), X)
        np.testing.assert_allclose(got, expected, atol=1e-3, err_msg=name)


def test_brightness_matches_keras_and_clips():
    expected = _theirs(_keras_layer("RandomBrightness", (0.1, 0.1)), X)
    np.testing.assert_allclose(_ours(P.RandomBrightness((0.1, 0.1)), X), expected, atol=1e-4)
    out = _ours(P.RandomBrightness((0.5, 0.5), value_range=(0, 1)), X / 255.0)
    np.testing.assert_allclose(out, np.clip(X / 255.0 + 0.5, 0, 1), atol=1e-6)


def test_contrast_formula_and_range():
    out = _ours(P.RandomContrast(0.5, value_range=(-1e9, 1e9)), X)
    mean = X.mean(axis=(1, 2), keepdims=True)
    factors = (out - mean) / (X - mean)
    for f in factors:  # one factor per image, shared by pixels and channels
        np.testing.assert_allclose(f, f.flat[0], rtol=1e-3)
        assert 0.5 <= f.flat[0] <= 1.5
    assert not np.isclose(factors[0].flat[0], factors[1].flat[0])
    clipped = _ours(P.RandomContrast((0.9, 0.9)), X)
    assert clipped.min() >= 0 and clipped.max() <= 255
    with pytest.raises(ValueError, match="factor"):
        P.RandomContrast(1.5)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic", "lanczos3"])
@pytest.mark.parametrize("aspect", [None, "crop", "pad"])
def test_resizing_matches_keras(interpolation, aspect):
    kw = {"interpolation": interpolation}
    if aspect:
        kw[f"{aspect}_to_aspect_ratio"] = True
    for size in [(4, 6), (12, 5)]:
        expected = _theirs(_keras_layer("Resizing", *size, **kw), X)
        got = _ours(P.Resizing(*size, **kw), X)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-3)


@pytest.mark.parametrize("size", [(4, 4), (7, 9), (10, 3), (8, 12)])
def test_center_crop_matches_keras(size):
    expected = _theirs(_keras_layer("CenterCrop", *size), X)
    got = _ours(P.CenterCrop(*size), X)
    assert got.shape == expected.shape == (2, *size, 3)
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_rescaling_matches_keras_and_casts_integers():
    expected = _theirs(_keras_layer("Rescaling", 1 / 127.5, offset=-1), X)
    np.testing.assert_allclose(_ours(P.Rescaling(1 / 127.5, offset=-1), X), expected, 1e-6)
    inp = Input((8, 8, 1), dtype="uint8")
    out = P.Rescaling(1 / 255)(inp)
    assert out.dtype == "float32"
    x = np.full((1, 8, 8, 1), 255, np.uint8)
    y, _ = Model(inp, out).apply({"params": {}, "state": {}}, x)
    np.testing.assert_allclose(np.asarray(y), 1.0)


def test_random_crop_training_and_inference():
    layer = P.RandomCrop(4, 5)
    out = _ours(layer, X)
    assert out.shape == (2, 4, 5, 3)
    # Every training crop is a window of its own image.
    for img, crop in zip(X, out):
        found = any(np.array_equal(img[t:t + 4, s:s + 5], crop)
                    for t in range(4) for s in range(5))
        assert found
    tops = {_ours(layer, X[:1], seed=s).tobytes() for s in range(10)}
    assert len(tops) > 1
    # Inference: Keras's documented smart resize (largest centred window, resized).
    expected = np.asarray(P.smart_resize(jnp.asarray(X), (4, 5)))
    np.testing.assert_allclose(_ours(layer, X, training=False), expected)
    small = _ours(P.RandomCrop(10, 10), X)
    assert small.shape == (2, 10, 10, 3)


def test_unbatched_and_channels_first():
    img = X[0]
    np.testing.assert_allclose(_ours(P.RandomRotation((0.25, 0.25)), img[:5, :5]),
                               np.rot90(img[:5, :5]), atol=1e-4)
    chw = np.transpose(X, (0, 3, 1, 2))
    got = _ours(P.Resizing(4, 6, data_format="channels_first"), chw)
    expected = _ours(P.Resizing(4, 6), X)
    np.testing.assert_allclose(got, np.transpose(expected, (0, 3, 1, 2)), atol=1e-5)


def test_symbolic_shapes_and_config_roundtrip():
    inp = Input((32, 40, 3))
    out = P.RandomCrop(16, 20)(P.Resizing(24, 30)(inp))
    assert out.shape == (None, 16, 20, 3)
    assert P.CenterCrop(8, 8)(inp).shape == (None, 8, 8, 3)
    for make in AUGMENTERS + [lambda: P.RandomCrop(3, 4), lambda: P.Resizing(3, 4),
                              lambda: P.CenterCrop(2, 2), lambda: P.Rescaling(0.5, 1.0)]:
        layer = make()
        clone = type(layer).from_config(layer.get_config())
        np.testing.assert_array_equal(_ours(clone, X, seed=3), _ours(layer, X, seed=3))


def test_augmented_model_trains_with_fit():
    """Augmentation inside a Sequential model: fit feeds it keys, predict does not."""
    jaxgraph.utils.set_random_seed(0)
    x = RNG.rand(64, 8, 8, 1).astype("float32")
    y = (x[:, :4].mean(axis=(1, 2, 3)) > x[:, 4:].mean(axis=(1, 2, 3))).astype("float32")
    model = Sequential([
        Input((8, 8, 1)),
        P.RandomFlip("horizontal"),
        P.RandomTranslation(0.1, 0.1),
        layers.Flatten(),
        layers.Dense(1, activation="sigmoid"),
    ])
    model.compile("adam", "binary_crossentropy")
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    a, b = model.predict(x, verbose=0), model.predict(x, verbose=0)
    np.testing.assert_array_equal(a, b)

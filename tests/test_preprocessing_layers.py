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
    np.testing.assert_array_equal(np.asarray(layer(X, training=False)), X)
    model = Sequential([Input((7, 9, 3)), layer])
    np.testing.assert_array_equal(model.predict(X, verbose=0), X)
    np.testing.assert_array_equal(np.asarray(model(X, training=False)), X)


@pytest.mark.parametrize("make", AUGMENTERS)
def test_a_call_without_training_augments_as_in_keras(make):
    """Keras's augmentation layers default to training=True in `call`: the book's
    `augmented = data_augmentation(images)` (a layer, or a Sequential of them, called
    directly) shows augmented images; predict and training=False do not augment."""
    batch = np.concatenate([X] * 8)  # 16 images: some flip, whatever the draw
    layer = make()
    assert not np.allclose(np.asarray(layer(batch)), batch)
    assert not np.allclose(np.asarray(layer(batch, rng=jax.random.key(0))), batch)
    augment = Sequential([make(), make()])
    assert not np.allclose(np.asarray(augment(batch)), batch)
    inp = Input((7, 9, 3))
    outer = jaxgraph.Model(inp, layers.Rescaling(1.0)(augment(inp)))
    assert not np.allclose(np.asarray(outer(batch)), batch)
    np.testing.assert_array_equal(outer.predict(batch, verbose=0), batch)


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


# ---------------------------------------------------------------------------- image files

def _image_folder(root, sizes=((10, 12), (9, 9), (14, 8))):
    """Two classes of PNGs of several sizes; 'bright' images are lighter than 'dark' ones."""
    from PIL import Image

    rng = np.random.RandomState(1)
    for label, base in (("dark", 40), ("bright", 200)):
        folder = root / label
        (folder / "nested").mkdir(parents=True)
        for i in range(7):
            h, w = sizes[i % len(sizes)]
            pixels = np.clip(base + rng.randint(-30, 30, (h, w, 3)), 0, 255).astype(np.uint8)
            where = folder / "nested" if i == 0 else folder
            Image.fromarray(pixels).save(where / f"img_{i}.png")
        (folder / "notes.txt").write_text("not an image")
    return root


def test_image_dataset_from_directory_streams_batches(tmp_path, capsys):
    from jaxgraph.utils.image_dataset import image_dataset_from_directory

    root = _image_folder(tmp_path)
    ds = image_dataset_from_directory(root, image_size=(8, 8), batch_size=4, seed=3)
    assert "Found 14 files belonging to 2 classes." in capsys.readouterr().out
    assert ds.class_names == ["bright", "dark"]
    assert len(ds) == 4 and ds.num_samples == 14
    batches = list(ds)
    assert [b[0].shape for b in batches] == [(4, 8, 8, 3)] * 3 + [(2, 8, 8, 3)]
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    assert x.dtype == np.float32 and y.dtype == np.int32 and 0 <= x.min() and x.max() <= 255
    # Labels follow the folders: 'bright' (class 0) images are lighter.
    assert x[y == 0].mean() > 150 > 75 > x[y == 1].mean()
    # Re-iterable, reshuffled every epoch, same content.
    y2 = np.concatenate([b[1] for b in ds])
    assert sorted(y2.tolist()) == sorted(y.tolist())
    orders = {tuple(np.concatenate([b[1] for b in ds]).tolist()) for _ in range(4)}
    assert len(orders) > 1
    # Label modes and colour modes.
    cat = image_dataset_from_directory(root, label_mode="categorical", color_mode="grayscale",
                                       image_size=6, batch_size=20, shuffle=False,
                                       verbose=False)
    xb, yb = next(iter(cat))
    assert xb.shape == (14, 6, 6, 1) and yb.shape == (14, 2) and yb.dtype == np.float32
    np.testing.assert_array_equal(yb.argmax(1), [0] * 7 + [1] * 7)
    binary = image_dataset_from_directory(root, label_mode="binary", image_size=(5, 7),
                                          batch_size=None, verbose=False, seed=0)
    xs, ys = next(iter(binary))
    assert xs.shape == (5, 7, 3) and ys.shape == (1,)
    images_only = image_dataset_from_directory(root, labels=None, image_size=(4, 4),
                                               verbose=False, seed=0)
    assert next(iter(images_only)).shape == (14, 4, 4, 3)


def test_image_dataset_split_resize_and_errors(tmp_path):
    from jaxgraph.preprocessing.image import img_to_array, load_img, resize
    from jaxgraph.utils.image_dataset import image_dataset_from_directory

    root = _image_folder(tmp_path)
    train, val = image_dataset_from_directory(root, validation_split=0.3, subset="both",
                                              seed=7, image_size=(8, 8), verbose=False)
    assert val.num_samples == 4 and train.num_samples == 10
    assert not set(train.file_paths) & set(val.file_paths)
    again = image_dataset_from_directory(root, validation_split=0.3, subset="validation",
                                         seed=7, image_size=(8, 8), verbose=False)
    assert again.file_paths == val.file_paths
    # Resizing is tf.image.resize's (= jax.image.resize without antialiasing).
    path = val.file_paths[0]
    raw = img_to_array(load_img(path))
    np.testing.assert_allclose(val.load_image(path), resize(raw, (8, 8)), atol=1e-4)
    np.testing.assert_allclose(resize(raw, (8, 8)),
                               np.asarray(P.resize_images(raw[None], (8, 8)))[0], atol=1e-3)
    cropped = image_dataset_from_directory(root, image_size=(4, 8), crop_to_aspect_ratio=True,
                                           verbose=False, seed=0)
    assert next(iter(cropped))[0].shape[1:] == (4, 8, 3)
    with pytest.raises(ValueError, match="seed"):
        image_dataset_from_directory(root, validation_split=0.2, subset="training")
    with pytest.raises(ValueError, match="exactly 2"):
        image_dataset_from_directory(root, label_mode="binary", class_names=["dark"],
                                     verbose=False, seed=0)
    with pytest.raises(ValueError, match="class_names"):
        image_dataset_from_directory(root, class_names=["cats"], seed=0)


def test_fit_accepts_an_image_dataset(tmp_path):
    from jaxgraph.utils.image_dataset import image_dataset_from_directory

    root = _image_folder(tmp_path)
    train, val = image_dataset_from_directory(root, validation_split=0.3, subset="both",
                                              seed=1, image_size=(6, 6), batch_size=4,
                                              label_mode="binary", verbose=False)
    jaxgraph.utils.set_random_seed(0)
    model = Sequential([Input((6, 6, 3)), P.Rescaling(1 / 255), P.RandomFlip(),
                        layers.GlobalAveragePooling2D(), layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy", metrics=["acc"])
    history = model.fit(train, validation_data=val, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and "val_acc" in history.history
    assert model.predict(val, verbose=0).shape == (4, 1)


# ---------------------------------------------------------------------------- legacy generator


def test_image_data_generator_matches_keras_transforms():
    pytest.importorskip("scipy")
    pytest.importorskip("keras")
    from keras.src.legacy.preprocessing.image import ImageDataGenerator as KerasGen

    from jaxgraph.preprocessing.image import ImageDataGenerator

    img = RNG.rand(7, 9, 3).astype("float32")
    params = {"theta": 23.0, "tx": 1.5, "ty": -2.0, "shear": 10.0, "zx": 0.8, "zy": 1.2,
              "flip_horizontal": True, "flip_vertical": False,
              "channel_shift_intensity": None, "brightness": None}
    for fill_mode in ["nearest", "reflect", "wrap", "constant"]:
        expected = KerasGen(fill_mode=fill_mode, cval=0.3).apply_transform(img, params)
        got = ImageDataGenerator(fill_mode=fill_mode, cval=0.3).apply_transforms(
            img[None], [params])[0]
        np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=fill_mode)


def test_image_data_generator_flow_and_directory(tmp_path):
    from jaxgraph.preprocessing.image import ImageDataGenerator

    x = (RNG.rand(10, 8, 8, 1) * 255).astype("float32")
    y = np.arange(10)
    gen = ImageDataGenerator(rescale=1 / 255, rotation_range=40, width_shift_range=0.2,
                             height_shift_range=0.2, shear_range=0.2, zoom_range=0.2,
                             horizontal_flip=True, fill_mode="nearest")
    flow = gen.flow(x, y, batch_size=4, seed=0)
    assert len(flow) == 3
    batches = [next(flow) for _ in range(4)]  # endless: the 4th batch starts epoch 2
    assert [b[0].shape[0] for b in batches] == [4, 4, 2, 4]
    assert sorted(np.concatenate([b[1] for b in batches[:3]]).tolist()) == list(range(10))
    xb = batches[0][0]
    assert xb.dtype == np.float32 and xb.min() >= 0 and xb.max() <= 1.0 + 1e-6
    plain = ImageDataGenerator(rescale=1 / 255).flow(x, y, batch_size=10, shuffle=False)
    np.testing.assert_allclose(next(plain)[0], x / 255, rtol=1e-6)
    same = ImageDataGenerator(rotation_range=40).flow(x, batch_size=10, seed=5)
    again = ImageDataGenerator(rotation_range=40).flow(x, batch_size=10, seed=5)
    np.testing.assert_array_equal(next(same), next(again))
    # From a directory, as in the book, and straight into fit with steps_per_epoch.
    root = _image_folder(tmp_path)
    it = ImageDataGenerator(rescale=1 / 255, horizontal_flip=True).flow_from_directory(
        root, target_size=(6, 6), batch_size=5, class_mode="binary", seed=0)
    assert it.class_indices == {"bright": 0, "dark": 1} and len(it) == 3
    xb, yb = next(it)
    assert xb.shape == (5, 6, 6, 3) and set(yb.tolist()) <= {0.0, 1.0}
    jaxgraph.utils.set_random_seed(0)
    model = Sequential([Input((6, 6, 3)), layers.Flatten(),
                        layers.Dense(1, activation="sigmoid")])
    model.compile("rmsprop", "binary_crossentropy")
    history = model.fit(it, steps_per_epoch=3, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2

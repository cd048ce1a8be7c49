"""Convnet and image parity with Keras 3 (DLwP chapters 8 and 9): VGG16/VGG19, dtypes of
normalization layers, and models called directly with or without `training=`."""

import jax
import numpy as np
import pytest

import jaxgraph
from jaxgraph import Input, Model, Sequential, applications, layers
from jaxgraph.layers.base import reset_names

keras = pytest.importorskip("keras")


@pytest.mark.parametrize("name,kwargs,count", [
    ("VGG16", {}, 138_357_544),
    ("VGG19", {}, 143_667_240),
    ("VGG16", {"include_top": False, "input_shape": (33, 47, 3)}, 14_714_688),
    ("VGG19", {"include_top": False, "pooling": "avg"}, 20_024_384),
    ("VGG16", {"include_top": False, "pooling": "max", "input_shape": (32, 32, 3)},
     14_714_688),
])
def test_vgg_matches_keras_structure(name, kwargs, count):
    reset_names()
    keras.backend.clear_session()  # Keras's automatic names restart too
    ours = getattr(applications, name)(weights=None, **kwargs)
    theirs = getattr(keras.applications, name)(weights=None, **kwargs)
    assert ours.count_params() == theirs.count_params() == count
    # Input layers take session-dependent automatic names; every other name is fixed.
    assert [x.name for x in ours.layers[1:]] == [x.name for x in theirs.layers[1:]]
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    assert tuple(ours.output_shape) == tuple(theirs.output.shape)
    assert ours.name == theirs.name


def test_vgg16_conv_base_numbers_match_keras():
    """The book's conv base: same weights, same features."""
    theirs = keras.applications.vgg16.VGG16(weights=None, include_top=False,
                                            input_shape=(32, 32, 3))
    ours = applications.vgg16.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    rng = np.random.default_rng(0)
    ours.set_weights([0.05 * rng.standard_normal(tuple(w.shape)).astype("float32")
                      for w in theirs.weights])
    theirs.set_weights(ours.get_weights())
    x = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    x = applications.vgg16.preprocess_input(x)
    np.testing.assert_allclose(np.asarray(ours.predict(x, verbose=0)),
                               theirs.predict(np.asarray(x), verbose=0), rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="vgg16_weights_tf_dim_ordering_tf_kernels_notop"):
        applications.VGG16(weights="imagenet", include_top=False)


@pytest.mark.parametrize("make", [
    lambda: layers.BatchNormalization(),
    lambda: layers.LayerNormalization(),
    lambda: layers.GroupNormalization(groups=2),
])
def test_normalization_outputs_the_compute_dtype(make):
    """Keras casts a float16 input of a float32 layer to float32, as the symbolic output
    already said; jaxgraph returned float16."""
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype("float16")
    layer = make()
    assert layer(x).dtype == np.float32
    assert layer(Input((3, 4), dtype="float16")).dtype == "float32"
    assert make()(x.astype("float32")).dtype == np.float32


def test_model_called_with_training_true_draws_its_own_key():
    """`model(x, training=True)` without `rng=` works as `layer(x, training=True)` does
    (Keras has no rng argument); it raised 'pass rng=' before."""
    model = Sequential([Input((64,)), layers.Dropout(0.5)])
    x = np.ones((4, 64), "float32")
    out = np.asarray(model(x, training=True))
    assert set(np.unique(out)) <= {0.0, 2.0} and (out == 0).any()
    np.testing.assert_array_equal(np.asarray(model(x)), x)  # Dropout infers by default
    inp = Input((64,))
    mc = Model(inp, layers.Dropout(0.5)(inp, training=True))  # Monte Carlo dropout
    assert (np.asarray(mc(x)) == 0).any()
    jaxgraph.utils.set_random_seed(1)
    a = np.asarray(model(x, training=True))
    jaxgraph.utils.set_random_seed(1)
    np.testing.assert_array_equal(np.asarray(model(x, training=True)), a)
    np.testing.assert_array_equal(
        np.asarray(model(x, training=True, rng=jax.random.key(3))),
        np.asarray(model(x, training=True, rng=jax.random.key(3))))

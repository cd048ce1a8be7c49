"""ZeroPadding, Cropping and UpSampling: parity with Keras 3, shapes, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph
from jaxgraph import layers

keras = pytest.importorskip("keras")


def _inputs(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _check_parity(name, x, **kwargs):
    k_layer = getattr(keras.layers, name)(**kwargs)
    j_layer = getattr(layers, name)(**kwargs)
    expected = np.asarray(k_layer(x))
    got = np.asarray(j_layer(x))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert j_layer.count_params() == k_layer.count_params() == 0
    sym_shape = (None,) + x.shape[1:]
    assert j_layer.compute_output_shape(sym_shape) == tuple(
        k_layer.compute_output_shape(sym_shape)
    )
    return j_layer


def _shape(spatial, data_format, channels=2):
    spatial = tuple(spatial)
    return (2,) + spatial + (channels,) if data_format == "channels_last" else (
        (2, channels) + spatial
    )


@pytest.mark.parametrize("padding,data_format", [
    (1, "channels_last"), ((2, 0), "channels_last"), ((0, 3), "channels_first"),
])
def test_zero_padding1d_parity(padding, data_format):
    _check_parity("ZeroPadding1D", _inputs(_shape((5,), data_format)), padding=padding,
                  data_format=data_format)


@pytest.mark.parametrize("padding,data_format", [
    ((1, 1), "channels_last"), (2, "channels_first"), (((1, 0), (2, 3)), "channels_last"),
    (((0, 2), (1, 0)), "channels_first"),
])
def test_zero_padding2d_parity(padding, data_format):
    _check_parity("ZeroPadding2D", _inputs(_shape((4, 5), data_format)), padding=padding,
                  data_format=data_format)


@pytest.mark.parametrize("padding,data_format", [
    (((1, 1), (1, 1), (1, 1)), "channels_last"), ((1, 0, 2), "channels_first"),
    (((0, 1), (2, 0), (1, 1)), "channels_last"),
])
def test_zero_padding3d_parity(padding, data_format):
    _check_parity("ZeroPadding3D", _inputs(_shape((3, 2, 4), data_format)), padding=padding,
                  data_format=data_format)


@pytest.mark.parametrize("cropping", [(1, 1), 2, (0, 3)])
def test_cropping1d_parity(cropping):
    _check_parity("Cropping1D", _inputs((2, 7, 3)), cropping=cropping)


@pytest.mark.parametrize("cropping,data_format", [
    (((0, 0), (0, 0)), "channels_last"), (1, "channels_first"), ((1, 2), "channels_last"),
    (((2, 0), (1, 3)), "channels_first"),
])
def test_cropping2d_parity(cropping, data_format):
    _check_parity("Cropping2D", _inputs(_shape((6, 7), data_format)), cropping=cropping,
                  data_format=data_format)


@pytest.mark.parametrize("cropping,data_format", [
    (((1, 1), (1, 1), (1, 1)), "channels_last"), ((1, 0, 2), "channels_first"),
    (((0, 1), (2, 0), (1, 2)), "channels_first"),
])
def test_cropping3d_parity(cropping, data_format):
    _check_parity("Cropping3D", _inputs(_shape((4, 5, 6), data_format)), cropping=cropping,
                  data_format=data_format)


@pytest.mark.parametrize("size", [2, 3])
def test_upsampling1d_parity(size):
    _check_parity("UpSampling1D", _inputs((2, 4, 3)), size=size)


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear", "bicubic"])
@pytest.mark.parametrize("size,data_format", [
    ((2, 2), "channels_last"), ((3, 2), "channels_first"), (2, "channels_last"),
])
def test_upsampling2d_parity(interpolation, size, data_format):
    _check_parity("UpSampling2D", _inputs(_shape((3, 4), data_format)), size=size,
                  data_format=data_format, interpolation=interpolation)


@pytest.mark.parametrize("size,data_format", [
    ((2, 2, 2), "channels_last"), ((1, 3, 2), "channels_first"),
])
def test_upsampling3d_parity(size, data_format):
    _check_parity("UpSampling3D", _inputs(_shape((2, 3, 2), data_format)), size=size,
                  data_format=data_format)


def test_bilinear_upsampling_values():
    """Half-pixel centres: a 2-pixel ramp [0, 1] upsampled x2 is [0, .25, .75, 1]."""
    x = np.array([0.0, 1.0], "float32").reshape(1, 1, 2, 1)
    y = np.asarray(layers.UpSampling2D((1, 2), interpolation="bilinear")(x))
    np.testing.assert_allclose(y[0, 0, :, 0], [0.0, 0.25, 0.75, 1.0], rtol=1e-6)


def test_unet_like_model_matches_keras_under_jit():
    """Pad -> conv -> pool -> upsample -> crop, Keras's weights, jitted apply."""
    def build(lib):
        inp = lib.Input(shape=(9, 9, 2))
        h = lib.layers.ZeroPadding2D(((1, 0), (0, 1)))(inp)
        h = lib.layers.Conv2D(3, 3, padding="same", kernel_initializer="zeros")(h)
        h = lib.layers.MaxPooling2D()(h)
        h = lib.layers.UpSampling2D(interpolation="bilinear")(h)
        h = lib.layers.Cropping2D(((1, 1), (0, 2)))(h)
        h = lib.layers.Reshape((-1, 3))(h)
        h = lib.layers.UpSampling1D(2)(lib.layers.Cropping1D((1, 2))(h))
        return lib.Model(inp, lib.layers.ZeroPadding1D(1)(h))

    k_model, j_model = build(keras), build(jaxgraph)
    assert j_model.output.shape == tuple(k_model.output.shape)
    rng = np.random.default_rng(3)
    values = [rng.standard_normal(tuple(w.shape)).astype("float32") for w in k_model.weights]
    k_model.set_weights(values)
    j_model.set_weights(values)
    x = _inputs((2, 9, 9, 2), seed=4)
    forward = jax.jit(lambda v, inp: j_model.apply(v, inp)[0])
    got = np.asarray(forward(j_model.variables, jnp.asarray(x)))
    np.testing.assert_allclose(got, np.asarray(k_model(x)), rtol=1e-5, atol=1e-5)


def test_unknown_dims_and_dtypes():
    out = layers.ZeroPadding2D(2)(jaxgraph.Input(shape=(None, 5, 3)))
    assert out.shape == (None, None, 9, 3)
    out = layers.UpSampling3D((2, 1, 3))(jaxgraph.Input(shape=(None, 2, 2, 1)))
    assert out.shape == (None, None, 2, 6, 1)
    out = layers.Cropping1D(1)(jaxgraph.Input(shape=(None, 4)))
    assert out.shape == (None, None, 4)
    ints = np.arange(6, dtype="int32").reshape(1, 3, 2)
    assert np.asarray(layers.UpSampling1D(2)(ints)).dtype == np.int32
    assert np.asarray(layers.ZeroPadding1D(1)(ints)).dtype == np.int32


def test_wrong_shape_errors():
    with pytest.raises(ValueError, match=r"pad2.*ndim=4.*found ndim=3.*\(None, 5, 3\)"):
        layers.ZeroPadding2D(name="pad2")(jaxgraph.Input(shape=(5, 3)))
    with pytest.raises(ValueError, match=r"up3.*ndim=5.*found ndim=4"):
        layers.UpSampling3D(name="up3")(jaxgraph.Input(shape=(4, 4, 3)))
    with pytest.raises(ValueError, match="crop.*removes all"):
        layers.Cropping2D(((2, 2), (0, 0)), name="crop")(jaxgraph.Input(shape=(4, 6, 1)))
    with pytest.raises(ValueError, match="interpolation"):
        layers.UpSampling2D(interpolation="area51")
    with pytest.raises(ValueError, match="padding"):
        layers.ZeroPadding3D(((1, 1), (1, 1)))
    with pytest.raises(ValueError, match="cropping"):
        layers.Cropping1D(-1)


def test_config_round_trip():
    layer = layers.ZeroPadding2D(((1, 2), (3, 4)), data_format="channels_first")
    clone = layers.ZeroPadding2D.from_config(layer.get_config())
    assert clone.padding == ((1, 2), (3, 4)) and clone.data_format == "channels_first"
    up = layers.UpSampling2D.from_config(layers.UpSampling2D(3, interpolation="bilinear")
                                         .get_config())
    assert up.size == (3, 3) and up.interpolation == "bilinear"
    crop = layers.Cropping3D.from_config(layers.Cropping3D(1).get_config())
    assert crop.cropping == ((1, 1), (1, 1), (1, 1))

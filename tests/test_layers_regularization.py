"""Noise layers: identity at inference, the right distribution when training, Keras args."""

import jax
import numpy as np
import pytest

import jaxgraph as jg
from jaxgraph import layers as L

keras = pytest.importorskip("keras")

KEY = jax.random.key(7)


def _apply(layer, x, training=True, rng=KEY):
    model = jg.Model(i := jg.Input(x.shape[1:]), layer(i))
    return np.asarray(model.apply(model.variables, x, training=training, rng=rng)[0])


ALL = [
    (lambda: L.SpatialDropout1D(0.4), (4, 6, 5)),
    (lambda: L.SpatialDropout2D(0.4), (2, 3, 4, 5)),
    (lambda: L.SpatialDropout3D(0.4, data_format="channels_first"), (2, 3, 2, 2, 2)),
    (lambda: L.GaussianNoise(0.5), (3, 4)),
    (lambda: L.GaussianDropout(0.3), (3, 4)),
    (lambda: L.AlphaDropout(0.2), (3, 4)),
]


@pytest.mark.parametrize("make,shape", ALL)
def test_identity_at_inference_random_in_training(make, shape):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    layer = make()
    np.testing.assert_array_equal(_apply(layer, x, training=False, rng=None), x)
    a = _apply(layer, x)
    np.testing.assert_array_equal(a, _apply(layer, x))  # same key, same noise
    assert not np.allclose(a, x)
    assert not np.allclose(a, _apply(layer, x, rng=jax.random.key(8)))
    assert layer.compute_output_shape((None,) + shape[1:]) == (None,) + shape[1:]
    with pytest.raises(ValueError, match="rng"):
        _apply(layer, x, rng=None)


@pytest.mark.parametrize("cls,shape,fmt,axes", [
    (L.SpatialDropout1D, (400, 6, 5), None, (1,)),
    (L.SpatialDropout2D, (200, 3, 4, 5), "channels_last", (1, 2)),
    (L.SpatialDropout2D, (200, 5, 3, 4), "channels_first", (2, 3)),
    (L.SpatialDropout3D, (100, 2, 3, 2, 6), None, (1, 2, 3)),
])
def test_spatial_dropout_drops_whole_feature_maps(cls, shape, fmt, axes):
    layer = cls(0.3) if fmt is None else cls(0.3, data_format=fmt)
    y = _apply(layer, np.ones(shape, "float32"))
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.7)}
    # Each (sample, channel) map is all kept or all dropped.
    np.testing.assert_array_equal(y.min(axis=axes), y.max(axis=axes))
    assert abs((y == 0).mean() - 0.3) < 0.05


def test_spatial_dropout_checks_rank_and_args():
    with pytest.raises(ValueError, match="ndim=4"):
        L.SpatialDropout2D(0.5)(jg.Input((3, 4)))
    with pytest.raises(ValueError, match="rate"):
        L.SpatialDropout1D(1.5)
    with pytest.raises(ValueError, match="data_format"):
        L.SpatialDropout2D(0.5, data_format="nhwc")
    assert isinstance(L.SpatialDropout1D(0.1), L.Dropout)


def test_gaussian_noise_statistics():
    x = np.full((4000, 5), 2.0, "float32")
    noise = _apply(L.GaussianNoise(0.4), x) - x
    assert abs(noise.mean()) < 0.02
    assert abs(noise.std() - 0.4) < 0.02
    with pytest.raises(ValueError, match="stddev"):
        L.GaussianNoise(1.5)


def test_gaussian_dropout_statistics():
    x = np.full((4000, 5), 3.0, "float32")
    factor = _apply(L.GaussianDropout(0.2), x) / 3.0
    assert abs(factor.mean() - 1.0) < 0.02
    assert abs(factor.std() - np.sqrt(0.2 / 0.8)) < 0.02
    np.testing.assert_array_equal(_apply(L.GaussianDropout(1.0), x), 0.0)


def test_alpha_dropout_keeps_selu_statistics():
    rate = 0.2
    x = np.random.default_rng(1).normal(size=(5000, 8)).astype("float32")
    y = _apply(L.AlphaDropout(rate), x)
    assert abs(y.mean()) < 0.03
    assert abs(y.var() - 1.0) < 0.05
    alpha_p = -1.6732632423543772 * 1.0507009873554805
    a = ((1 - rate) * (1 + rate * alpha_p**2)) ** -0.5
    dropped_value = a * alpha_p - a * alpha_p * rate
    assert abs(np.isclose(y, dropped_value, atol=1e-6).mean() - rate) < 0.02
    kept = ~np.isclose(y, dropped_value, atol=1e-6)
    np.testing.assert_allclose(y[kept], (a * x - a * alpha_p * rate)[kept], rtol=1e-5,
                               atol=1e-5)


def test_alpha_dropout_noise_shape_shares_draws():
    x = np.ones((50, 4, 6), "float32")
    y = _apply(L.AlphaDropout(0.5, noise_shape=(None, 1, 6)), x)
    np.testing.assert_array_equal(y, np.repeat(y[:, :1], 4, axis=1))


def test_rate_zero_needs_no_rng():
    x = np.ones((2, 3, 4), "float32")
    for layer in (L.SpatialDropout1D(0.0), L.GaussianNoise(0.0), L.GaussianDropout(0.0),
                  L.AlphaDropout(0.0)):
        np.testing.assert_array_equal(_apply(layer, x, rng=None), x)


def test_configs_match_keras_arguments():
    pairs = [
        (L.SpatialDropout1D(0.2, seed=3), keras.layers.SpatialDropout1D(0.2, seed=3)),
        (L.SpatialDropout2D(0.2, data_format="channels_first"),
         keras.layers.SpatialDropout2D(0.2, data_format="channels_first")),
        (L.GaussianNoise(0.1, seed=1), keras.layers.GaussianNoise(0.1, seed=1)),
        (L.GaussianDropout(0.3), keras.layers.GaussianDropout(0.3)),
        (L.AlphaDropout(0.1, noise_shape=(None, 1)),
         keras.layers.AlphaDropout(0.1, noise_shape=(None, 1))),
    ]
    for ours, theirs in pairs:
        config = ours.get_config()
        kconfig = theirs.get_config()
        for key in ("rate", "stddev", "seed", "data_format"):
            if key in kconfig:  # omitted arguments keep their Keras defaults
                assert config.get(key, getattr(ours, key)) == kconfig[key], (ours, key)
        clone = type(ours).from_config(config)
        assert clone.get_config() == config

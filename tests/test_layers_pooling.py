"""Pooling layers: numerical parity with Keras 3, masks, shapes, errors."""

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
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert j_layer.count_params() == k_layer.count_params() == 0
    sym_shape = (None,) + x.shape[1:]
    assert j_layer.compute_output_shape(sym_shape) == tuple(
        k_layer.compute_output_shape(sym_shape)
    )
    return j_layer


@pytest.mark.parametrize("name", ["MaxPooling1D", "AveragePooling1D"])
@pytest.mark.parametrize("pool_size,strides,padding,data_format", [
    (2, None, "valid", "channels_last"),
    (3, 2, "same", "channels_last"),
    (3, 1, "same", "channels_first"),
    (4, 3, "valid", "channels_first"),
])
def test_pooling1d_parity(name, pool_size, strides, padding, data_format):
    shape = (2, 11, 3) if data_format == "channels_last" else (2, 3, 11)
    _check_parity(name, _inputs(shape), pool_size=pool_size, strides=strides, padding=padding,
                  data_format=data_format)


@pytest.mark.parametrize("name", ["MaxPooling2D", "AveragePooling2D"])
@pytest.mark.parametrize("pool_size,strides,padding,data_format", [
    ((2, 2), None, "valid", "channels_last"),
    ((3, 3), (2, 2), "same", "channels_last"),
    ((3, 2), (1, 2), "same", "channels_first"),
    ((2, 3), None, "valid", "channels_first"),
    ((3, 3), None, "same", "channels_first"),
])
def test_pooling2d_parity(name, pool_size, strides, padding, data_format):
    shape = (2, 7, 8, 3) if data_format == "channels_last" else (2, 3, 7, 8)
    _check_parity(name, _inputs(shape), pool_size=pool_size, strides=strides, padding=padding,
                  data_format=data_format)


@pytest.mark.parametrize("name", ["MaxPooling3D", "AveragePooling3D"])
@pytest.mark.parametrize("padding,data_format", [
    ("valid", "channels_last"), ("same", "channels_first"),
])
def test_pooling3d_parity(name, padding, data_format):
    shape = (1, 5, 4, 5, 2) if data_format == "channels_last" else (1, 2, 5, 4, 5)
    _check_parity(name, _inputs(shape), pool_size=(2, 3, 2), strides=(2, 1, 2),
                  padding=padding, data_format=data_format)


def test_same_average_pooling_divides_by_real_elements():
    x = np.ones((1, 5, 5, 1), "float32")
    y = np.asarray(layers.AveragePooling2D(3, strides=2, padding="same")(x))
    np.testing.assert_allclose(y, np.ones((1, 3, 3, 1)), rtol=1e-6)
    x = np.arange(4, dtype="float32").reshape(1, 4, 1)
    y = np.asarray(layers.AveragePooling1D(3, strides=1, padding="same")(x))
    np.testing.assert_allclose(y[0, :, 0], [0.5, 1.0, 2.0, 2.5], rtol=1e-6)


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("kind", ["Max", "Average"])
@pytest.mark.parametrize("data_format,keepdims", [
    ("channels_last", False), ("channels_first", True), ("channels_first", False),
])
def test_global_pooling_parity(rank, kind, data_format, keepdims):
    spatial = (5, 4, 3)[:rank]
    shape = (2,) + spatial + (3,) if data_format == "channels_last" else (2, 3) + spatial
    _check_parity(f"Global{kind}Pooling{rank}D", _inputs(shape), data_format=data_format,
                  keepdims=keepdims)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_global_average_pooling1d_mask_parity(data_format):
    x = _inputs((3, 6, 4) if data_format == "channels_last" else (3, 4, 6))
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [0, 1, 0, 1, 0, 0]], bool)
    k_layer = keras.layers.GlobalAveragePooling1D(data_format=data_format)
    j_layer = layers.GlobalAveragePooling1D(data_format=data_format)
    expected = np.asarray(k_layer(x, mask=mask))
    got = np.asarray(j_layer(x, mask=mask))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    unmasked = np.asarray(j_layer(x))
    assert not np.allclose(got[0], unmasked[0])
    assert j_layer.compute_mask(x, mask) is None


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_max_pooling1d_with_mask_matches_keras(data_format, keepdims):
    """Keras 3 does not apply the mask in GlobalMaxPooling1D: masked steps count."""
    x = _inputs((2, 5, 3) if data_format == "channels_last" else (2, 3, 5))
    if data_format == "channels_last":
        x[0, 3:] = 100.0  # larger than anything real, and masked
    else:
        x[0, :, 3:] = 100.0
    mask = np.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]], bool)
    kwargs = dict(data_format=data_format, keepdims=keepdims)
    # Keras's call takes no mask at all (in a graph it drops the incoming one).
    expected = np.asarray(keras.layers.GlobalMaxPooling1D(**kwargs)(x))
    layer = layers.GlobalMaxPooling1D(**kwargs)
    got = np.asarray(layer(x, mask=mask))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(got, np.asarray(layer(x)), rtol=1e-6)
    assert np.all(got.reshape(2, 3)[0] == 100.0)  # the masked steps won
    assert layer.compute_mask(x, mask) is None


def _masked_pooling_pair(pooling, length, vocab, seed, padding_row=None):
    """Embedding(mask_zero) -> pooling -> Dense in Keras and jaxgraph, with equal weights."""
    def build(lib):
        inp = lib.Input(shape=(length,), dtype="int32")
        h = lib.layers.Embedding(vocab, 4, mask_zero=True, embeddings_initializer="zeros")(inp)
        h = getattr(lib.layers, pooling)()(h)
        out = lib.layers.Dense(2, kernel_initializer="zeros")(h)
        return lib.Model(inp, out)

    k_model, j_model = build(keras), build(jaxgraph)
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(tuple(w.shape)).astype("float32") for w in k_model.weights]
    if padding_row is not None:
        values[0][0] = padding_row  # the padding row dominates a max when it takes part
    k_model.set_weights(values)
    j_model.set_weights(values)
    return k_model, j_model, values


@pytest.mark.filterwarnings("ignore:.*does not support masking")
def test_masked_global_max_pooling_model_matches_keras():
    """Embedding(mask_zero) -> GlobalMaxPooling1D -> Dense with Keras's weights."""
    k_model, j_model, values = _masked_pooling_pair("GlobalMaxPooling1D", 6, 10, seed=3,
                                                    padding_row=5.0)
    tokens = np.array([[3, 5, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6]], "int32")
    expected = np.asarray(k_model.predict(tokens, verbose=0))
    got, _ = j_model.apply(j_model.variables, tokens)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(got)[0], np.full(4, 5.0) @ values[1] + values[2],
                               rtol=1e-5)


def test_masked_text_model_matches_keras():
    """Embedding(mask_zero) -> GlobalAveragePooling1D -> Dense: padding does not count."""
    k_model, j_model, values = _masked_pooling_pair("GlobalAveragePooling1D", 7, 20, seed=0)
    tokens = np.array([[3, 5, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6, 7]], "int32")
    expected = np.asarray(k_model(tokens))
    got, _ = j_model.apply(j_model.variables, tokens)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)
    # The masked mean of [3, 5, 0...] equals the plain mean of [3, 5].
    short, _ = j_model.apply(j_model.variables, np.array([[3, 5, 0, 0, 0, 0, 0]], "int32"))
    emb = values[0]
    manual = emb[[3, 5]].mean(axis=0) @ values[1] + values[2]
    np.testing.assert_allclose(np.asarray(short)[0], manual, rtol=1e-5, atol=1e-5)


def test_aliases():
    assert layers.MaxPool1D is layers.MaxPooling1D
    assert layers.MaxPool2D is layers.MaxPooling2D
    assert layers.MaxPool3D is layers.MaxPooling3D
    assert layers.AvgPool2D is layers.AveragePooling2D
    assert layers.GlobalMaxPool1D is layers.GlobalMaxPooling1D
    assert layers.GlobalAvgPool2D is layers.GlobalAveragePooling2D
    assert layers.GlobalAvgPool3D is layers.GlobalAveragePooling3D


def test_cnn_with_pooling_matches_keras_under_jit():
    def build(lib):
        inp = lib.Input(shape=(3, 10, 10))
        h = lib.layers.Conv2D(4, 3, data_format="channels_first", kernel_initializer="zeros")(inp)
        h = lib.layers.MaxPooling2D(2, data_format="channels_first")(h)
        h = lib.layers.AveragePooling2D(3, strides=1, padding="same",
                                        data_format="channels_first")(h)
        h = lib.layers.GlobalMaxPooling2D(data_format="channels_first")(h)
        return lib.Model(inp, h)

    k_model, j_model = build(keras), build(jaxgraph)
    assert j_model.output.shape == tuple(k_model.output.shape) == (None, 4)
    rng = np.random.default_rng(1)
    values = [rng.standard_normal(tuple(w.shape)).astype("float32") for w in k_model.weights]
    k_model.set_weights(values)
    j_model.set_weights(values)
    x = _inputs((2, 3, 10, 10), seed=2)
    forward = jax.jit(lambda v, inp: j_model.apply(v, inp)[0])
    got = np.asarray(forward(j_model.variables, jnp.asarray(x)))
    np.testing.assert_allclose(got, np.asarray(k_model(x)), rtol=1e-5, atol=1e-5)
    # Max and average windows are differentiable (lax's reduce_window_max / _sum rules).
    grads = jax.grad(lambda v: jnp.sum(forward(v, jnp.asarray(x))))(j_model.variables)
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert any(np.any(np.asarray(g) != 0) for g in leaves)


def test_unknown_dims_and_integer_inputs():
    out = layers.MaxPooling2D(2, padding="same")(jaxgraph.Input(shape=(None, 7, 3)))
    assert out.shape == (None, None, 4, 3)
    out = layers.GlobalAveragePooling2D(keepdims=True)(jaxgraph.Input(shape=(None, None, 3)))
    assert out.shape == (None, 1, 1, 3)
    ints = np.arange(8, dtype="int32").reshape(1, 8, 1)
    assert np.asarray(layers.MaxPooling1D(2)(ints)).dtype == np.int32
    avg = np.asarray(layers.AveragePooling1D(2)(ints))
    np.testing.assert_allclose(avg[0, :, 0], [0.5, 2.5, 4.5, 6.5])


def test_wrong_shape_errors():
    with pytest.raises(ValueError, match=r"pool.*ndim=4.*found ndim=3.*\(None, 8, 3\)"):
        layers.MaxPooling2D(name="pool")(jaxgraph.Input(shape=(8, 3)))
    with pytest.raises(ValueError, match=r"gap.*ndim=3.*found ndim=4"):
        layers.GlobalAveragePooling1D(name="gap")(jaxgraph.Input(shape=(8, 8, 3)))
    with pytest.raises(ValueError, match="too_big.*pool_size"):
        layers.MaxPooling2D(4, name="too_big")(jaxgraph.Input(shape=(3, 3, 1)))
    with pytest.raises(ValueError, match="padding"):
        layers.MaxPooling1D(2, padding="causal")
    with pytest.raises(ValueError, match="data_format"):
        layers.GlobalMaxPooling2D(data_format="NCHW")


def test_config_round_trip():
    layer = layers.AveragePooling2D((3, 2), strides=1, padding="same",
                                    data_format="channels_first")
    clone = layers.AveragePooling2D.from_config(layer.get_config())
    assert (clone.pool_size, clone.strides, clone.padding, clone.data_format) == (
        (3, 2), (1, 1), "same", "channels_first")
    g = layers.GlobalMaxPooling1D.from_config(layers.GlobalMaxPooling1D(keepdims=True).get_config())
    assert g.keepdims is True

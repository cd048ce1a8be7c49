"""Convolution layers: numerical parity with Keras 3, weight layouts, shapes, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph
from jaxgraph import layers

keras = pytest.importorskip("keras")


def _inputs(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _zero_init(name):
    """Constant initializers: random ones compile slowly, and the test sets weights anyway."""
    if name.startswith("Depthwise"):
        names = ("depthwise_initializer", "bias_initializer")
    elif name.startswith("Separable"):
        names = ("depthwise_initializer", "pointwise_initializer", "bias_initializer")
    else:
        names = ("kernel_initializer", "bias_initializer")
    return {n: "zeros" for n in names}


def _random_weights(weights, seed=1):
    rng = np.random.default_rng(seed)
    return [0.5 * rng.standard_normal(tuple(w.shape)).astype("float32") for w in weights]


def _check_parity(name, x, **kwargs):
    """Same layer in Keras and jaxgraph with the same weights: same numbers and layouts."""
    kwargs = {**_zero_init(name), **kwargs}
    k_layer = getattr(keras.layers, name)(**kwargs)
    k_layer.build(x.shape)
    values = _random_weights(k_layer.weights)
    k_layer.set_weights(values)
    expected = np.asarray(k_layer(x))
    j_layer = getattr(layers, name)(**kwargs)
    j_layer(x)  # builds
    assert [w.shape for w in j_layer.weights] == [tuple(w.shape) for w in k_layer.weights]
    assert [w.name for w in j_layer.weights] == [w.name for w in k_layer.weights]
    assert j_layer.count_params() == k_layer.count_params()
    j_layer.set_weights(values)
    got = np.asarray(j_layer(x))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    sym_shape = (None,) + x.shape[1:]
    assert j_layer.compute_output_shape(sym_shape) == tuple(
        k_layer.compute_output_shape(sym_shape)
    )
    return j_layer


@pytest.mark.parametrize("padding,strides,dilation", [
    ("valid", 1, 1), ("same", 2, 1), ("same", 1, 2), ("causal", 1, 2), ("causal", 2, 1),
])
def test_conv1d_parity(padding, strides, dilation):
    _check_parity("Conv1D", _inputs((2, 11, 3)), filters=4, kernel_size=3, strides=strides,
                  padding=padding, dilation_rate=dilation, activation="relu")


@pytest.mark.parametrize("data_format,padding,strides,dilation", [
    ("channels_last", "valid", 1, 1),
    ("channels_last", "same", (2, 1), 1),
    ("channels_last", "same", 1, (2, 3)),
    ("channels_first", "valid", (2, 2), 1),
    ("channels_first", "same", (1, 2), 1),
    ("channels_first", "valid", 1, 2),
])
def test_conv2d_parity(data_format, padding, strides, dilation):
    shape = (2, 9, 10, 3) if data_format == "channels_last" else (2, 3, 9, 10)
    layer = _check_parity("Conv2D", _inputs(shape), filters=5, kernel_size=(3, 2),
                          strides=strides, padding=padding, dilation_rate=dilation,
                          data_format=data_format)
    assert layer.weights[0].shape == (3, 2, 3, 5)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_conv2d_groups_parity(data_format):
    shape = (2, 7, 7, 6) if data_format == "channels_last" else (2, 6, 7, 7)
    layer = _check_parity("Conv2D", _inputs(shape), filters=4, kernel_size=3, groups=2,
                          padding="same", data_format=data_format)
    assert layer.weights[0].shape == (3, 3, 3, 4)


def test_conv1d_groups_causal_no_bias():
    layer = _check_parity("Conv1D", _inputs((2, 8, 4)), filters=8, kernel_size=2, groups=4,
                          padding="causal", use_bias=False)
    assert [w.name for w in layer.weights] == ["kernel"]


@pytest.mark.parametrize("data_format,padding", [
    ("channels_last", "valid"), ("channels_first", "same"),
])
def test_conv3d_parity(data_format, padding):
    shape = (1, 5, 6, 4, 2) if data_format == "channels_last" else (1, 2, 5, 6, 4)
    _check_parity("Conv3D", _inputs(shape), filters=4, kernel_size=(2, 3, 2), strides=(1, 2, 1),
                  padding=padding, data_format=data_format, groups=2)


def test_causal_conv_does_not_look_ahead():
    layer = layers.Conv1D(2, 3, padding="causal", dilation_rate=2, kernel_initializer="ones")
    x = _inputs((1, 10, 2))
    y = np.asarray(layer(x))
    x2 = x.copy()
    x2[:, 6:] += 5.0
    y2 = np.asarray(layer(x2))
    np.testing.assert_allclose(y[:, :6], y2[:, :6], rtol=1e-6, atol=1e-6)
    assert not np.allclose(y[:, 6:], y2[:, 6:])


@pytest.mark.parametrize("padding,strides,output_padding,dilation", [
    ("valid", 1, None, 1), ("same", 2, None, 1), ("valid", 3, None, 1), ("same", 3, None, 1),
    ("valid", 2, 1, 1), ("same", 3, 2, 1), ("same", 2, 0, 1), ("valid", 1, None, 2),
    ("same", 1, 0, 2),
])
def test_conv1d_transpose_parity(padding, strides, output_padding, dilation):
    _check_parity("Conv1DTranspose", _inputs((2, 5, 3)), filters=4, kernel_size=3,
                  strides=strides, padding=padding, output_padding=output_padding,
                  dilation_rate=dilation)


@pytest.mark.parametrize("data_format,padding,kernel,strides,output_padding", [
    ("channels_last", "valid", (3, 3), (2, 2), None),
    ("channels_last", "same", (4, 3), (2, 3), (1, 2)),
    ("channels_last", "same", (2, 2), (2, 2), None),
    ("channels_first", "same", (3, 3), (2, 2), None),
    ("channels_first", "valid", (4, 3), (2, 3), (1, 2)),
    ("channels_first", "valid", 5, 1, None),
])
def test_conv2d_transpose_parity(data_format, padding, kernel, strides, output_padding):
    shape = (2, 4, 5, 3) if data_format == "channels_last" else (2, 3, 4, 5)
    layer = _check_parity("Conv2DTranspose", _inputs(shape), filters=2, kernel_size=kernel,
                          strides=strides, padding=padding, output_padding=output_padding,
                          data_format=data_format, activation="tanh")
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    assert layer.weights[0].shape == (kh, kw, 2, 3)  # (kh, kw, out, in)


def test_conv2d_transpose_dilation_parity():
    _check_parity("Conv2DTranspose", _inputs((1, 5, 5, 2)), filters=3, kernel_size=3,
                  dilation_rate=2, padding="same")


@pytest.mark.parametrize("strides,dilation,out_size", [(2, 1, 9), (1, 2, 8), (2, 2, 11)])
def test_conv_transpose_is_the_gradient_of_conv(strides, dilation, out_size):
    """The adjoint of the forward conv, with strides, dilation, or both (beyond Keras,
    which refuses both together: XLA computes it exactly)."""
    layer = layers.Conv2DTranspose(3, 3, strides=strides, dilation_rate=dilation,
                                   use_bias=False, kernel_initializer="zeros")
    x = _inputs((1, 4, 4, 2))
    layer(x)
    kernel = _random_weights(layer.weights)[0]  # (kh, kw, 3, 2): a forward conv 3 -> 2
    layer.set_weights([kernel])
    y = np.asarray(layer(x))
    assert y.shape == (1, out_size, out_size, 3)

    def forward(z):
        return jax.lax.conv_general_dilated(z, kernel, (strides,) * 2, "VALID",
                                            rhs_dilation=(dilation,) * 2,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    _, vjp = jax.vjp(forward, jnp.zeros(y.shape))
    np.testing.assert_allclose(y, np.asarray(vjp(jnp.asarray(x))[0]), rtol=1e-5, atol=1e-5)


def test_conv3d_transpose_parity():
    _check_parity("Conv3DTranspose", _inputs((1, 3, 4, 3, 2)), filters=2, kernel_size=2,
                  strides=(2, 1, 2), padding="same")


@pytest.mark.parametrize("padding,strides,dilation,multiplier", [
    ("valid", 1, 1, 1), ("same", 2, 1, 2), ("same", 1, 2, 3),
])
def test_depthwise_conv1d_parity(padding, strides, dilation, multiplier):
    _check_parity("DepthwiseConv1D", _inputs((2, 9, 3)), kernel_size=3, strides=strides,
                  padding=padding, dilation_rate=dilation, depth_multiplier=multiplier)


@pytest.mark.parametrize("data_format,padding,strides,dilation,multiplier", [
    ("channels_last", "valid", 1, 1, 1), ("channels_last", "same", 2, 1, 2),
    ("channels_first", "same", 1, 2, 2), ("channels_first", "valid", 2, 1, 1),
])
def test_depthwise_conv2d_parity(data_format, padding, strides, dilation, multiplier):
    shape = (2, 7, 8, 3) if data_format == "channels_last" else (2, 3, 7, 8)
    layer = _check_parity("DepthwiseConv2D", _inputs(shape), kernel_size=3, strides=strides,
                          padding=padding, dilation_rate=dilation, depth_multiplier=multiplier,
                          data_format=data_format)
    assert layer.weights[0].shape == (3, 3, 3, multiplier)


@pytest.mark.parametrize("padding,strides,dilation,multiplier", [
    ("valid", 1, 1, 1), ("same", 2, 1, 2), ("valid", 1, 2, 1),
])
def test_separable_conv1d_parity(padding, strides, dilation, multiplier):
    _check_parity("SeparableConv1D", _inputs((2, 10, 3)), filters=4, kernel_size=3,
                  strides=strides, padding=padding, dilation_rate=dilation,
                  depth_multiplier=multiplier)


@pytest.mark.parametrize("data_format,padding,strides,dilation,multiplier", [
    ("channels_last", "valid", 1, 1, 1), ("channels_last", "same", 2, 1, 2),
    ("channels_first", "same", 1, 2, 1), ("channels_first", "valid", 2, 1, 2),
])
def test_separable_conv2d_parity(data_format, padding, strides, dilation, multiplier):
    shape = (2, 8, 7, 3) if data_format == "channels_last" else (2, 3, 8, 7)
    layer = _check_parity("SeparableConv2D", _inputs(shape), filters=5, kernel_size=3,
                          strides=strides, padding=padding, dilation_rate=dilation,
                          depth_multiplier=multiplier, data_format=data_format)
    assert [w.shape for w in layer.weights] == [(3, 3, 3, multiplier), (1, 1, 3 * multiplier, 5),
                                                (5,)]


def test_aliases():
    assert layers.Convolution1D is layers.Conv1D
    assert layers.Convolution2D is layers.Conv2D
    assert layers.Convolution3D is layers.Conv3D
    assert layers.Convolution2DTranspose is layers.Conv2DTranspose
    assert layers.Deconvolution2D is layers.Conv2DTranspose
    assert layers.SeparableConvolution2D is layers.SeparableConv2D


def test_keras_model_weights_in_a_jaxgraph_model_and_jit():
    """A small CNN with Keras's weights gives Keras's outputs, also under jax.jit."""
    def build(lib):
        inp = lib.Input(shape=(12, 12, 3))
        h = lib.layers.Conv2D(4, 3, padding="same", activation="relu",
                              **_zero_init("Conv2D"))(inp)
        h = lib.layers.SeparableConv2D(6, 3, strides=2, depth_multiplier=2,
                                       **_zero_init("SeparableConv2D"))(h)
        h = lib.layers.DepthwiseConv2D(2, padding="same", activation="relu",
                                       **_zero_init("DepthwiseConv2D"))(h)
        h = lib.layers.Conv2DTranspose(3, 3, strides=2, padding="same", output_padding=1,
                                       **_zero_init("Conv2DTranspose"))(h)
        h = lib.layers.Conv1D(2, 3, dilation_rate=2, **_zero_init("Conv1D"))(
            lib.layers.Reshape((-1, 3))(h))
        return lib.Model(inp, h)

    k_model = build(keras)
    j_model = build(jaxgraph)
    assert j_model.output.shape == tuple(k_model.output.shape)
    assert j_model.count_params() == k_model.count_params()
    values = _random_weights(k_model.weights, seed=5)
    k_model.set_weights(values)
    j_model.set_weights(values)
    x = _inputs((2, 12, 12, 3), seed=3)
    expected = np.asarray(k_model(x))
    variables = j_model.variables

    @jax.jit
    def forward(v, inp):
        return j_model.apply(v, inp)[0]

    got = np.asarray(forward(variables, jnp.asarray(x)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    grads = jax.grad(lambda v: jnp.sum(forward(v, jnp.asarray(x)) ** 2))(variables)
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))


def test_unknown_spatial_dims_give_none():
    inp = jaxgraph.Input(shape=(None, None, 3))
    out = layers.Conv2D(4, 3, strides=2)(inp)
    assert out.shape == (None, None, None, 4)
    out = layers.Conv2DTranspose(4, 3, strides=2, **_zero_init("Conv2DTranspose"))(inp)
    assert out.shape == (None, None, None, 4)
    model = jaxgraph.Model(inp, out)
    y, _ = model.apply(model.init(jax.random.key(0)), np.zeros((1, 5, 6, 3), "float32"))
    assert y.shape == (1, 11, 13, 4)


def test_wrong_channel_count_fails_at_graph_build():
    conv = layers.Conv2D(4, 3, name="my_conv")
    conv(jaxgraph.Input(shape=(8, 8, 3)))
    with pytest.raises(ValueError, match=r"my_conv.*axis -1.*value 3.*\(None, 8, 8, 5\)"):
        conv(jaxgraph.Input(shape=(8, 8, 5)))


def test_wrong_rank_fails_at_graph_build():
    with pytest.raises(ValueError, match=r"depth.*rank 4.*\(None, 8, 3\)"):
        layers.DepthwiseConv2D(3, name="depth")(jaxgraph.Input(shape=(8, 3)))


def test_too_small_input_and_bad_arguments():
    with pytest.raises(ValueError, match="small_conv.*output size"):
        layers.Conv2D(2, 5, name="small_conv")(jaxgraph.Input(shape=(3, 3, 1)))
    with pytest.raises(ValueError, match="padding"):
        layers.Conv2D(2, 3, padding="causal")
    with pytest.raises(ValueError, match="groups"):
        layers.Conv2D(5, 3, groups=2)
    with pytest.raises(ValueError, match="divisible by groups"):
        layers.Conv2D(4, 3, groups=2)(jaxgraph.Input(shape=(8, 8, 3)))
    with pytest.raises(ValueError, match="output_padding"):
        layers.Conv2DTranspose(2, 3, strides=2, output_padding=2)
    with pytest.raises(ValueError, match="data_format"):
        layers.Conv1D(2, 3, data_format="nhwc")
    with pytest.raises(ValueError, match="kernel_size"):
        layers.Conv2D(2, (3, 3, 3))


_ALL_CONVS = {
    "Conv1D": 1, "Conv2D": 2, "Conv3D": 3, "Conv1DTranspose": 1, "Conv2DTranspose": 2,
    "Conv3DTranspose": 3, "SeparableConv1D": 1, "SeparableConv2D": 2, "DepthwiseConv1D": 1,
    "DepthwiseConv2D": 2,
}


def _make(lib, cls_name, **kwargs):
    if not cls_name.startswith("Depthwise"):
        kwargs["filters"] = 2
    return getattr(lib.layers, cls_name)(kernel_size=3, **kwargs)


def _keras_accepts(name, **kwargs):
    try:
        _make(keras, name, **kwargs)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(_ALL_CONVS))
def test_strides_with_dilation(name):
    """Keras refuses strides > 1 with dilation_rate > 1 for Conv and ConvTranspose (a
    limit of TF's kernels); jaxgraph computes them (beyond Keras). Depthwise and separable
    convolutions accept both in Keras too, and match it."""
    refused = not _keras_accepts(name, strides=2, dilation_rate=2)
    assert refused == (not name.startswith(("Depthwise", "Separable")))
    rank = _ALL_CONVS[name]
    if not refused:
        _check_parity(name, _inputs((1,) + (11,) * rank + (2,)), strides=2, dilation_rate=2,
                      padding="same", **({} if name.startswith("Depthwise") else
                                         {"filters": 2}), kernel_size=3)
    elif not name.endswith("Transpose"):  # transposed ones: the adjoint test above
        layer = _make(jaxgraph, name, strides=2, dilation_rate=2, use_bias=False)
        x = _inputs((1,) + (11,) * rank + (2,))
        y = np.asarray(layer(x))
        spatial = "DHW"[-rank:]
        want = jax.lax.conv_general_dilated(
            x, layer.get_weights()[0], (2,) * rank, "VALID", rhs_dilation=(2,) * rank,
            dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"))
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    _make(jaxgraph, name, strides=2)
    _make(jaxgraph, name, dilation_rate=2)


@pytest.mark.parametrize("name", sorted(_ALL_CONVS))
def test_causal_padding_only_where_keras_allows_it(name):
    allowed = _keras_accepts(name, padding="causal")
    assert allowed == (name == "Conv1D")
    for padding in ("causal", "CAUSAL"):
        if allowed:
            assert _make(jaxgraph, name, padding=padding).padding == "causal"
        else:
            with pytest.raises(ValueError, match=r"(?i)'causal_conv'.*padding.*causal"):
                _make(jaxgraph, name, padding=padding, name="causal_conv")


def test_config_round_trip():
    layer = layers.SeparableConv2D(3, (3, 2), strides=2, padding="same", depth_multiplier=2,
                                   activation="relu", pointwise_initializer="he_normal")
    layer(jaxgraph.Input(shape=(8, 8, 2)))
    clone = layers.SeparableConv2D.from_config(layer.get_config())
    assert clone.kernel_size == (3, 2) and clone.strides == (2, 2)
    assert clone.depth_multiplier == 2 and clone.padding == "same"
    out = clone(jaxgraph.Input(shape=(8, 8, 2)))
    assert out.shape == (None, 4, 4, 3)
    t = layers.Conv1DTranspose(2, 3, strides=2, output_padding=1)
    assert layers.Conv1DTranspose.from_config(t.get_config()).output_padding == (1,)

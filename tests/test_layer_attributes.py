"""Keras conveniences of the Layer base: weights read by short name (`dense.kernel`)
and `get_config` listing every constructor argument, defaults included."""

import copy
import json
import pickle

import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph
from jaxgraph import Input, Model, Sequential, initializers, layers, mixed_precision
from jaxgraph.layers import Layer
from jaxgraph.saving import load_model, save_model

RNG = np.random.default_rng(0)


def _built(layer, shape, dtype="float32"):
    x = Input(shape, dtype=dtype)
    Model(x, layer(x))
    return layer


# ---------------------------------------------------------------------------- weights by name


def test_weights_are_attributes_by_short_name():
    dense = _built(layers.Dense(4), (3,))
    assert dense.kernel is dense.weights[0] and dense.bias is dense.weights[1]
    assert dense.kernel.shape == (3, 4) and dense.bias.shape == (4,)
    np.testing.assert_array_equal(dense.kernel.numpy(), dense.get_weights()[0])
    np.testing.assert_array_equal(np.asarray(dense.kernel), dense.get_weights()[0])
    assert np.asarray(dense.bias, dtype=np.float64).dtype == np.float64

    bn = _built(layers.BatchNormalization(), (5,))
    assert {w.name for w in bn.weights} == {"gamma", "beta", "moving_mean", "moving_variance"}
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        assert getattr(bn, name).shape == (5,)
    assert bn.moving_mean.trainable is False and bn.gamma.trainable is True
    np.testing.assert_array_equal(bn.moving_variance.numpy(), np.ones(5))

    emb = _built(layers.Embedding(10, 3), (6,), dtype="int32")
    assert emb.embeddings.shape == (10, 3)
    lstm = _built(layers.LSTM(4), (6, 3))
    assert lstm.recurrent_kernel.shape == (4, 16) and lstm.kernel.shape == (3, 16)


def test_model_layers_expose_their_weights():
    model = Sequential([Input((3,)), layers.Dense(5), layers.Dense(2, use_bias=False)])
    assert model.layers[0].kernel.shape == (3, 5)
    assert model.layers[1].kernel.path == f"{model.layers[1].name}/kernel"
    with pytest.raises(AttributeError, match=r"'Dense' object has no attribute 'bias'"):
        model.layers[1].bias  # noqa: B018


def test_unbuilt_layer_says_it_is_not_built():
    dense = layers.Dense(4, name="later")
    with pytest.raises(AttributeError, match=r"'kernel'.*'later' is not built yet"):
        dense.kernel  # noqa: B018
    assert not hasattr(dense, "kernel")
    dense.build((None, 2))
    assert dense.kernel.shape == (2, 4)


def test_unknown_name_is_a_plain_attribute_error():
    dense = _built(layers.Dense(4), (3,))
    with pytest.raises(AttributeError) as info:
        dense.kernal  # noqa: B018
    assert str(info.value) == "'Dense' object has no attribute 'kernal'"
    assert getattr(dense, "kernal", "fallback") == "fallback"


def test_private_names_are_never_intercepted():
    dense = _built(layers.Dense(4), (3,))
    with pytest.raises(AttributeError, match="'_kernel'"):
        dense._kernel  # noqa: B018
    assert not hasattr(dense, "__deepcopy__") and not hasattr(dense, "_call_values")
    dense.get_weights()  # draw the (lazy) initial values, so copies share them
    clone = copy.deepcopy(dense)
    assert clone.kernel is not dense.kernel and clone.kernel.layer is clone
    np.testing.assert_array_equal(clone.kernel.numpy(), dense.kernel.numpy())
    restored = pickle.loads(pickle.dumps(dense))
    np.testing.assert_array_equal(restored.bias.numpy(), dense.bias.numpy())


def test_probes_before_super_init_do_not_recurse():
    class Probing(Layer):
        def __init__(self, units=2, **kwargs):
            self.saw_kernel = hasattr(self, "kernel")  # before Layer.__init__ ran
            self.saw_private = hasattr(self, "_weights")
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.add_weight("kernel", (input_shape[-1], self.units))

        def call(self, w, x):
            return x @ w["kernel"]

    layer = Probing()
    assert layer.saw_kernel is False and layer.saw_private is False
    _built(layer, (3,))
    assert layer.kernel.shape == (3, 2)


def test_failing_property_keeps_its_own_error():
    dense = layers.Dense(2)
    with pytest.raises(AttributeError, match="never been called on a symbolic input"):
        dense.output  # noqa: B018


def test_attributes_set_by_the_layer_win():
    class Scale(Layer):
        def build(self, input_shape):
            self.add_weight("gamma", (input_shape[-1],), initializer="ones")
            self.gamma = "set by the layer"

        def call(self, w, x):
            return x * w["gamma"]

    layer = _built(Scale(), (3,))
    assert layer.gamma == "set by the layer"
    assert [w.name for w in layer.weights] == ["gamma"]

    # Keras-style: build stores the Weight itself, call reads it as an array.
    class KerasStyle(Layer):
        def build(self, input_shape):
            self.W = self.add_weight(shape=(input_shape[-1], 2), initializer="ones")

        def call(self, inputs):
            return jnp.matmul(inputs, self.W)

    ks = _built(KerasStyle(), (3,))
    assert ks.W is ks.weights[0] and ks.W.name == "variable_0"
    np.testing.assert_allclose(np.asarray(ks(np.ones((1, 3), "float32"))), [[3.0, 3.0]])


def test_keras_style_call_reads_named_weights_as_values():
    class Named(Layer):
        def build(self, input_shape):
            self.add_weight(name="kernel", shape=(input_shape[-1], 2), initializer="ones")

        def call(self, inputs):
            return jnp.matmul(inputs, self.kernel)  # a value while call runs

    layer = Named()
    x = Input((3,))
    model = Model(x, layer(x))
    np.testing.assert_allclose(model.predict(np.ones((2, 3), "float32"), verbose=0), 3.0)
    assert layer.kernel is layer.weights[0]  # a Weight again outside call
    layer.kernel.assign(np.full((3, 2), 2.0))
    np.testing.assert_allclose(model.predict(np.ones((2, 3), "float32"), verbose=0), 6.0)


def test_weights_follow_training_and_assign_changes_predictions():
    jaxgraph.utils.set_random_seed(0)
    x = Input((4,))
    dense = layers.Dense(1)
    model = Model(x, dense(x))
    before = dense.kernel.numpy().copy()
    model.compile(optimizer="sgd", loss="mse")
    xs = RNG.normal(size=(32, 4)).astype("float32")
    model.fit(xs, xs.sum(axis=1, keepdims=True), epochs=2, batch_size=8, verbose=0)
    after = dense.kernel.numpy()
    assert not np.allclose(before, after)
    np.testing.assert_array_equal(after, model.get_weights()[0])
    np.testing.assert_array_equal(np.asarray(dense.kernel.value), after)

    dense.kernel.assign(np.zeros((4, 1), "float32"))
    dense.bias.assign(np.full((1,), 0.25, "float32"))
    np.testing.assert_allclose(model.predict(xs, verbose=0), 0.25)
    np.testing.assert_allclose(model(xs), 0.25)


@pytest.mark.parametrize("name, args, kwargs, shape, dtype", [
    ("Dense", (4,), {}, (3,), "float32"),
    ("Conv2D", (4, 3), {}, (8, 8, 2), "float32"),
    ("SeparableConv2D", (4, 3), {"depth_multiplier": 2}, (8, 8, 2), "float32"),
    ("BatchNormalization", (), {}, (5,), "float32"),
    ("Embedding", (10, 3), {}, (6,), "int32"),
    ("LayerNormalization", (), {}, (5,), "float32"),
])
def test_weight_names_and_shapes_match_keras(name, args, kwargs, shape, dtype):
    keras = pytest.importorskip("keras")
    theirs = getattr(keras.layers, name)(*args, **kwargs)
    theirs(keras.Input(shape, dtype=dtype))
    ours = _built(getattr(layers, name)(*args, **kwargs), shape, dtype)
    keras_names = [w.path.split("/")[-1] for w in theirs.weights]
    assert keras_names == [w.name for w in ours.weights]
    for short in keras_names:
        assert tuple(getattr(ours, short).shape) == tuple(getattr(theirs, short).shape), short


# ---------------------------------------------------------------------------- get_config


def test_config_lists_defaults():
    config = layers.Dense(4).get_config()
    assert config["units"] == 4
    assert config["activation"] is None and config["use_bias"] is True
    assert config["kernel_initializer"] == "glorot_uniform"
    assert config["bias_initializer"] == "zeros"
    for key in ("kernel_regularizer", "bias_regularizer", "kernel_constraint",
                "bias_constraint", "activity_regularizer"):
        assert key in config and config[key] is None
    assert config["dtype"] == "float32" and config["trainable"] is True
    # Base-layer input-shape arguments are not listed unless they were given.
    assert not {"input_shape", "batch_input_shape", "input_dim", "batch_size"} & set(config)
    assert layers.Dense(4, input_shape=(3,)).get_config()["input_shape"] == [3]
    conv = layers.Conv2D(8, (3, 3)).get_config()
    assert conv["kernel_size"] == [3, 3] and conv["padding"] == "valid" and conv["strides"] == 1


def test_passed_values_are_serialized_as_before():
    config = layers.Dense(3, activation=jaxgraph.activations.relu,
                          kernel_initializer=initializers.Ones(),
                          kernel_regularizer="l2").get_config()
    assert config["activation"] == "relu"
    assert config["kernel_initializer"] == {"class_name": "Ones", "config": {}}
    assert config["kernel_regularizer"] == "l2"


def test_dtype_is_the_policy():
    assert layers.Dense(2, dtype="bfloat16").get_config()["dtype"] == "bfloat16"
    mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = layers.Dense(2)
    finally:
        mixed_precision.set_global_policy("float32")
    config = layer.get_config()
    assert config["dtype"] == "mixed_bfloat16"
    assert layers.Dense.from_config(config).compute_dtype == "bfloat16"


_MARKER = object()


def _double(x):
    return 2 * x


def test_defaults_that_are_not_plain_data_are_left_to_the_constructor():
    class Odd(Layer):
        def __init__(self, fn=_double, marker=_MARKER, init=initializers.Ones(),
                     shape=(2, 3), out_dtype="int32", dtype="int8", **kwargs):
            super().__init__(**kwargs)
            self.fn, self.marker, self.init = fn, marker, init
            self.shape_arg, self.out_dtype, self.dtype_arg = shape, out_dtype, dtype

        def call(self, w, x):
            return self.fn(x)

    config = Odd(name="odd").get_config()
    assert not {"fn", "marker", "init"} & set(config)
    assert config["shape"] == [2, 3] and config["out_dtype"] == "int32"
    # A constructor's own `dtype` argument with its own default keeps that default.
    assert config["dtype"] == "int8"
    json.dumps(config)
    clone = Odd.from_config(config)
    assert clone.fn is _double and clone.marker is _MARKER and clone.dtype_arg == "int8"
    assert clone.get_config() == config


def test_layer_without_constructor_lists_only_the_base_keys():
    class Plain(Layer):
        def call(self, w, x):
            return x

    assert set(Plain().get_config()) == {"name", "trainable", "dtype"}


_ROUND_TRIP = [
    layers.Dense(3, activation="relu"),
    layers.Conv2D(4, 3, padding="same"),
    layers.Conv1DTranspose(2, 3),
    layers.SeparableConv2D(4, 3),
    layers.DepthwiseConv2D(3),
    layers.BatchNormalization(momentum=0.9),
    layers.LayerNormalization(),
    layers.Embedding(10, 4, mask_zero=True),
    layers.Dropout(0.3, seed=1),
    layers.SpatialDropout1D(0.2),
    layers.LSTM(4, return_sequences=True),
    layers.GRU(3),
    layers.SimpleRNN(2),
    layers.Bidirectional(layers.LSTM(2)),
    layers.TimeDistributed(layers.Dense(3)),
    layers.MaxPooling2D(),
    layers.GlobalAveragePooling1D(),
    layers.MultiHeadAttention(2, 4),
    layers.Attention(),
    layers.Flatten(),
    layers.Reshape((2, 3)),
    layers.Concatenate(),
    layers.ZeroPadding2D(),
    layers.UpSampling2D(),
    layers.PReLU(),
    layers.Activation("tanh"),
]


@pytest.mark.parametrize("layer", _ROUND_TRIP, ids=lambda layer: type(layer).__name__)
def test_config_round_trips(layer):
    config = layer.get_config()
    json.loads(json.dumps(config))
    clone = type(layer).from_config(config)
    assert type(clone) is type(layer)
    assert clone.get_config() == config


def test_saved_model_with_default_configs_round_trips(tmp_path):
    x = Input((6, 3))
    h = layers.Conv1D(4, 3, padding="same")(x)
    h = layers.BatchNormalization()(h)
    h = layers.LSTM(5)(h)
    model = Model(x, layers.Dense(2, activation="softmax")(layers.Dropout(0.1)(h)))
    path = tmp_path / "m.jgraph"
    save_model(model, path)
    loaded = load_model(path)
    for a, b in zip(model.layers, loaded.layers):
        assert a.get_config() == b.get_config()
    xs = RNG.normal(size=(2, 6, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(xs)), np.asarray(model(xs)), rtol=1e-6)


# Keras arguments jaxgraph's constructors do not have (quantization is not implemented).
_KERAS_ONLY = {"Dense": {"quantization_config"}, "Embedding": {"quantization_config"}}


@pytest.mark.parametrize("name, args", [
    ("Dense", (4,)), ("Conv2D", (4, 3)), ("Dropout", (0.5,)), ("BatchNormalization", ()),
    ("Embedding", (10, 4)), ("LSTM", (4,)), ("GRU", (4,)), ("LayerNormalization", ()),
    ("SeparableConv2D", (4, 3)), ("MaxPooling2D", ()), ("MultiHeadAttention", (2, 4)),
])
def test_config_has_every_keras_key(name, args):
    keras = pytest.importorskip("keras")
    theirs = set(getattr(keras.layers, name)(*args).get_config())
    ours = getattr(layers, name)(*args).get_config()
    assert theirs - set(ours) == _KERAS_ONLY.get(name, set())
    # Same defaults where both write the same plain value.
    kconfig = getattr(keras.layers, name)(*args).get_config()
    for key in ("units", "use_bias", "momentum", "epsilon", "rate", "mask_zero",
                "return_sequences", "padding", "center", "scale", "num_heads", "key_dim"):
        if key in kconfig:
            assert ours[key] == kconfig[key], key

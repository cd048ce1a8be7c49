"""Core and merge layers against Keras 3: outputs, parameter counts, weight shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph
from jaxgraph import Input, Model, layers

keras = pytest.importorskip("keras")


def _data(seed, *shape):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else x


def assert_parity(ours, theirs, inputs, atol=1e-5):
    """Same weights in, same outputs, counts, weight shapes and symbolic shapes out."""
    expected = np.asarray(theirs(_as_list(inputs)))
    ours(_as_list(inputs))  # builds ours for these shapes
    kw = theirs.get_weights()
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in kw]
    ours.set_weights(kw)
    assert ours.count_params() == theirs.count_params()
    got = np.asarray(ours(_as_list(inputs)))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=atol, rtol=atol)
    if isinstance(inputs, (list, tuple)):
        sym = [Input(shape=x.shape[1:], dtype=str(x.dtype)) for x in inputs]
        ksym = [keras.Input(shape=x.shape[1:], dtype=str(x.dtype)) for x in inputs]
    else:
        sym = Input(shape=inputs.shape[1:], dtype=str(inputs.dtype))
        ksym = keras.Input(shape=inputs.shape[1:], dtype=str(inputs.dtype))
    assert tuple(ours(sym).shape) == tuple(theirs(ksym).shape)
    return got


# ---------------------------------------------------------------------------- Dense


@pytest.mark.parametrize("shape", [(4, 7), (3, 5, 7)])
@pytest.mark.parametrize("activation", [None, "relu", "tanh", "softmax"])
def test_dense(shape, activation):
    assert_parity(layers.Dense(6, activation=activation),
                  keras.layers.Dense(6, activation=activation), _data(0, *shape))


def test_dense_without_bias():
    ours = layers.Dense(3, use_bias=False)
    assert_parity(ours, keras.layers.Dense(3, use_bias=False), _data(1, 2, 5))
    assert [w.name for w in ours.weights] == ["kernel"]


_ACTIVATIONS = ["relu", "sigmoid", "softmax", "tanh", "elu", "selu", "softplus", "softsign",
                "swish", "silu", "gelu", "exponential", "hard_sigmoid", "linear", "relu6",
                "leaky_relu", "mish", "log_softmax", "hard_silu", "celu"]


@pytest.mark.parametrize("name", _ACTIVATIONS)
def test_activation_layer(name):
    try:
        theirs = keras.layers.Activation(name)
    except ValueError:
        pytest.skip(f"this Keras has no activation {name!r}")
    assert_parity(layers.Activation(name), theirs, _data(2, 3, 8) * 3)


# ---------------------------------------------------------------------------- Dropout


def _dropout_model(rate):
    x = Input(shape=(1000,))
    return Model(x, layers.Dropout(rate)(x))


def test_dropout_is_identity_at_inference():
    model = _dropout_model(0.5)
    x = _data(3, 4, 1000)
    out, _ = model.apply(model.init(0), x, training=False, rng=jax.random.key(1))
    np.testing.assert_array_equal(out, x)
    keras_out = keras.layers.Dropout(0.5)(x, training=False)
    np.testing.assert_array_equal(out, keras_out)


@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_dropout_in_training_zeroes_rate_and_rescales(rate):
    model = _dropout_model(rate)
    x = np.ones((8, 1000), "float32")
    apply = jax.jit(model.apply, static_argnames="training")
    out, _ = apply(model.init(0), x, training=True, rng=jax.random.key(1))
    out = np.asarray(out)
    zero_fraction = float((out == 0).mean())
    assert abs(zero_fraction - rate) < 0.02
    np.testing.assert_allclose(out[out != 0], 1.0 / (1.0 - rate), rtol=1e-6)
    other, _ = apply(model.init(0), x, training=True, rng=jax.random.key(2))
    assert not np.array_equal(out, np.asarray(other))
    again, _ = apply(model.init(0), x, training=True, rng=jax.random.key(1))
    np.testing.assert_array_equal(out, np.asarray(again))


def test_dropout_in_training_without_rng_is_an_error():
    model = _dropout_model(0.5)
    with pytest.raises(ValueError, match="rng"):
        model.apply(model.init(0), np.ones((1, 1000)), training=True)


# ---------------------------------------------------------------------------- shape layers


def test_flatten():
    assert_parity(layers.Flatten(), keras.layers.Flatten(), _data(4, 2, 3, 4, 5))


@pytest.mark.parametrize("target", [(6, 10), (-1, 5), (3, -1, 2)])
def test_reshape(target):
    assert_parity(layers.Reshape(target), keras.layers.Reshape(target), _data(5, 2, 4, 15))


def test_reshape_incompatible_names_layer():
    with pytest.raises(ValueError, match="'bad_reshape'"):
        layers.Reshape((7,), name="bad_reshape")(Input(shape=(4, 3)))


@pytest.mark.parametrize("dims", [(2, 1), (3, 1, 2)])
def test_permute(dims):
    shape = (2, 3, 4) if len(dims) == 2 else (2, 3, 4, 5)
    assert_parity(layers.Permute(dims), keras.layers.Permute(dims), _data(6, *shape))


def test_repeat_vector():
    assert_parity(layers.RepeatVector(3), keras.layers.RepeatVector(3), _data(7, 2, 5))


def test_embedding():
    tokens = np.random.default_rng(8).integers(0, 30, size=(4, 6)).astype("int32")
    ours = layers.Embedding(30, 5)
    assert_parity(ours, keras.layers.Embedding(30, 5), tokens)
    assert ours.count_params() == 150


def test_embedding_mask_matches_keras():
    tokens = np.array([[1, 2, 0, 0], [0, 3, 0, 4]], "int32")
    ours, theirs = layers.Embedding(5, 2, mask_zero=True), keras.layers.Embedding(
        5, 2, mask_zero=True)
    assert_parity(ours, theirs, tokens)
    np.testing.assert_array_equal(ours.compute_mask(tokens), theirs.compute_mask(tokens))


def test_masking_output_and_mask():
    x = _data(9, 2, 5, 3)
    x[0, 1] = 0.0
    x[1, 3:] = 0.0
    ours, theirs = layers.Masking(0.0), keras.layers.Masking(0.0)
    assert_parity(ours, theirs, x)
    np.testing.assert_array_equal(ours.compute_mask(x), np.asarray(theirs.compute_mask(x)))


# ---------------------------------------------------------------------------- merge layers

_MERGES = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"]


@pytest.mark.parametrize("name", _MERGES)
def test_merge_layers(name):
    n = 2 if name == "Subtract" else 3
    inputs = [_data(10 + i, 4, 6) for i in range(n)]
    assert_parity(getattr(layers, name)(), getattr(keras.layers, name)(), inputs)


@pytest.mark.parametrize("name", _MERGES)
def test_merge_helpers_match_classes(name):
    n = 2 if name == "Subtract" else 3
    sym = [Input(shape=(6,)) for _ in range(n)]
    model = Model(sym, getattr(layers, name.lower())(sym))
    inputs = [_data(20 + i, 4, 6) for i in range(n)]
    expected = getattr(keras.layers, name.lower())(inputs)
    np.testing.assert_allclose(model(inputs), expected, atol=1e-6)


def test_merge_broadcasting_like_keras():
    inputs = [_data(30, 4, 3, 6), _data(31, 4, 1, 6)]
    assert_parity(layers.Add(), keras.layers.Add(), inputs)


def test_merge_needs_a_list():
    with pytest.raises(ValueError, match="'lonely_add'.*list"):
        layers.Add(name="lonely_add")(Input(shape=(3,)))


@pytest.mark.parametrize("axis,shapes", [(-1, [(4, 3, 2), (4, 3, 5)]),
                                         (1, [(4, 2, 5), (4, 3, 5)])])
def test_concatenate(axis, shapes):
    inputs = [_data(40 + i, *s) for i, s in enumerate(shapes)]
    assert_parity(layers.Concatenate(axis=axis), keras.layers.Concatenate(axis=axis), inputs)


# Padded sequences of different lengths, two branches (0 is the padding token).
_TOKENS_A = np.array([[1, 2, 3, 0, 0], [4, 5, 0, 0, 0], [1, 2, 3, 4, 5], [0, 0, 0, 0, 0]])
_TOKENS_B = np.array([[1, 2, 0, 0, 0], [4, 5, 6, 7, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
_MASKED_MERGES = ["add", "subtract", "average", "maximum", "minimum", "multiply",
                  "concatenate", "concatenate_steps"]


def _masked_merge_models(lib, merge, mask_zero):
    """Two Embedding branches -> merge -> SimpleRNN; also a model ending at the merge."""
    a, b = lib.Input((5,), dtype="int32"), lib.Input((5,), dtype="int32")
    ea = lib.layers.Embedding(10, 3, mask_zero=mask_zero[0], name="emb_a")(a)
    eb = lib.layers.Embedding(10, 3, mask_zero=mask_zero[1], name="emb_b")(b)
    if merge == "concatenate_steps":
        merged = lib.layers.Concatenate(axis=1)([ea, eb])
    else:
        merged = getattr(lib.layers, merge)([ea, eb])
    out = lib.layers.SimpleRNN(2, return_sequences=True, name="rnn")(merged)
    return lib.Model([a, b], out), lib.Model([a, b], merged)


@pytest.mark.parametrize("merge", _MASKED_MERGES)
@pytest.mark.parametrize("mask_zero", [(True, True), (True, False), (False, True)])
def test_merge_masks_match_keras(merge, mask_zero):
    """Output masks (OR; none if an input has none; Concatenate's all-ones for unmasked
    inputs) and Maximum/Minimum/Multiply's masked values, as Keras 3 computes them."""
    from jaxgraph.lowering import run_model

    k_model, k_merged = _masked_merge_models(keras, merge, mask_zero)
    j_model, j_merged = _masked_merge_models(jaxgraph, merge, mask_zero)
    # By name: Keras may order the two embeddings differently in model.weights.
    for name in ("emb_a", "emb_b", "rnn"):
        j_model.get_layer(name).set_weights(k_model.get_layer(name).get_weights())
    inputs = [_TOKENS_A, _TOKENS_B]
    expected = np.asarray(k_model(inputs))
    np.testing.assert_allclose(np.asarray(j_model.predict(inputs, verbose=0)), expected,
                               rtol=1e-5, atol=1e-5)
    got, _ = j_model.apply(j_model.variables, inputs)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)
    # The merged values and the mask the pure apply path propagates from the merge.
    k_out = k_merged(inputs)
    k_mask = getattr(k_out, "_keras_mask", None)
    values, _, _, masks = run_model(j_merged, j_merged.variables, inputs, with_masks=True)
    np.testing.assert_allclose(np.asarray(values), np.asarray(k_out), rtol=1e-6, atol=1e-6)
    if k_mask is None:
        assert masks[0] is None
    else:
        assert masks[0] is not None
        np.testing.assert_array_equal(np.asarray(masks[0]), np.asarray(k_mask))


def test_merge_masks_or_and_keras_masked_values():
    """Hand-checked: OR of masks; Maximum ignores a masked operand; Multiply uses 1 for
    masked entries and 0 where all are masked; one unmasked input -> no mask."""
    x = np.array([[[1.0], [-5.0], [2.0]]], "float32")
    y = np.array([[[-3.0], [4.0], [7.0]]], "float32")
    mx = np.array([[True, False, False]])
    my = np.array([[True, True, False]])
    both = [mx, my]
    assert np.asarray(layers.Add().compute_mask([x, y], both)).tolist() == [[True, True, False]]
    assert layers.Add().compute_mask([x, y], [mx, None]) is None
    got = np.asarray(layers.Maximum()([x, y], mask=both))
    # Step 1: x is masked, so -5 is ignored; step 2: both are masked, x's value stays.
    assert got[0, :, 0].tolist() == [1.0, 4.0, 2.0]
    assert np.asarray(layers.Maximum()([x, y]))[0, :, 0].tolist() == [1.0, 4.0, 7.0]
    got = np.asarray(layers.Multiply()([x, y], mask=both))
    assert got[0, :, 0].tolist() == [-3.0, 4.0, 0.0]
    got = np.asarray(layers.Multiply()([x, y], mask=[mx, None]))
    assert got[0, :, 0].tolist() == [-3.0, 4.0, 7.0]
    # Concatenate on features: an unmasked input makes every step valid.
    full = layers.Concatenate().compute_mask([x, y], [mx, None])
    assert np.asarray(full).tolist() == [[True, True, True]]
    # A dot product drops masks, as in Keras.
    assert layers.Dot(axes=2).compute_mask([x, y], both) is None


@pytest.mark.parametrize("merge", ["add", "subtract", "multiply", "average", "maximum",
                                   "minimum", "concatenate"])
@pytest.mark.parametrize("dtypes", [("int32", "float32"), ("int32", "int32"),
                                    ("float16", "float32"), ("int8", "uint8"),
                                    ("bool", "int32")])
def test_merge_dtype_is_the_promoted_type(merge, dtypes):
    """The declared dtype is the promoted result type (floats in the compute dtype), equal
    to what the graph computes and to Keras's output dtype on the same arrays."""
    arrays = [np.ones((2, 3), d) for d in dtypes]
    expected = np.asarray(getattr(keras.layers, merge)(arrays)).dtype
    sym = [Input((3,), dtype=d) for d in dtypes]
    out = getattr(layers, merge)(sym)
    assert np.dtype(out.dtype) == expected
    got = Model(sym, out).predict(arrays, verbose=0)
    assert np.asarray(got).dtype == expected


@pytest.mark.parametrize("axes,shapes,normalize", [
    (1, [(4, 5), (4, 5)], False),
    (1, [(4, 5), (4, 5)], True),
    (-1, [(4, 3, 5), (4, 2, 5)], False),
    ((1, 2), [(4, 3, 5), (4, 2, 3)], False),
    ((2, 2), [(4, 3, 5), (4, 2, 5)], True),
])
def test_dot(axes, shapes, normalize):
    inputs = [_data(50 + i, *s) for i, s in enumerate(shapes)]
    assert_parity(layers.Dot(axes=axes, normalize=normalize),
                  keras.layers.Dot(axes=axes, normalize=normalize), inputs)


def test_dot_helper_is_cosine_similarity_when_normalized():
    a, b = _data(60, 3, 4), _data(61, 3, 4)
    ia, ib = Input(shape=(4,)), Input(shape=(4,))
    model = Model([ia, ib], layers.dot([ia, ib], axes=1, normalize=True))
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    np.testing.assert_allclose(np.asarray(model([a, b]))[:, 0], cos, rtol=1e-5)


def test_core_layers_are_jittable_in_a_graph():
    x = Input(shape=(4, 6))
    h = layers.Permute((2, 1))(x)
    h = layers.Flatten()(h)
    h = layers.Dense(8, activation="relu")(h)
    h = layers.RepeatVector(2)(h)
    h = layers.Reshape((-1,))(h)
    model = Model(x, h)
    assert model.output_shape == (None, 16)
    out, _ = jax.jit(model.apply)(model.init(0), jnp.ones((3, 4, 6)))
    assert out.shape == (3, 16)

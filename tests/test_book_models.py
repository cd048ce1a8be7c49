"""Every example of "Deep Learning with Python" (1st ed.), section 7.1, on jaxgraph.

Each example is written once, as in the book, with jaxgraph's `layers`, `Input`,
`Model` and `Sequential` as default arguments; passing Keras's instead builds the
same model in Keras 3 for comparison (parameter counts, every layer's output shape
per call, and outputs after copying Keras's weights with `set_weights`). Then the
pure core is exercised: `init` and `apply` under `jax.jit`, `jax.grad` of a scalar
loss, and `jax.vmap` over independent parameter sets or input batches.

Two corrections to the book's listings: `Embedding(input_dim, output_dim)` takes the
vocabulary size first (the listings swap them), and the Inception branches use
`padding='same'`, without which their spatial sizes differ and cannot be concatenated.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgraph import Input, Model, Sequential, layers


def _require(*names):
    missing = [n for n in names if not hasattr(layers, n)]
    if missing:
        pytest.skip(f"jaxgraph.layers lacks {missing}")


def _keras():
    return pytest.importorskip("keras")


def _keras_kwargs(keras):
    return {"layers": keras.layers, "Input": keras.Input, "Model": keras.Model,
            "Sequential": keras.Sequential}


# ---------------------------------------------------------------------------- checks


def _type_name(layer):
    name = type(layer).__name__
    return "Model" if name == "Functional" else name


def _signature(model, keras_model=False):
    """Sorted (type, output shapes of each call, params) of every layer of `model`."""
    rows = []
    for layer in model.layers:
        if keras_model:
            calls = layer._inbound_nodes
        elif layer.is_input_layer:
            calls = layer._nodes[:1]
        else:
            calls = [n for n in model._nodes_in_order if n.layer is layer]
        # Distinct shapes only: Keras records an extra call when a Sequential builds itself.
        shapes = tuple(sorted({tuple(tuple(t.shape) for t in node.output_tensors)
                               for node in calls}, key=repr))
        rows.append((_type_name(layer), shapes, int(layer.count_params())))
    return sorted(rows, key=repr)


def compare_with_keras(ours, theirs, inputs, atol=1e-4):
    assert ours.count_params() == theirs.count_params()
    assert _signature(ours) == _signature(theirs, keras_model=True)
    ours.set_weights(theirs.get_weights())
    want = theirs(inputs)
    got = ours(inputs)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=atol, rtol=atol)


def _leaf_count(tree):
    return sum(int(np.size(a)) for a in jax.tree_util.tree_leaves(tree))


def exercise(model, inputs, loss, batches=None):
    """init/apply under jit, grad of `loss(outputs)`, vmap over params or `batches`."""
    variables = jax.jit(model.init)(jax.random.key(0))
    assert _leaf_count(variables) == model.count_params()
    apply = jax.jit(lambda v, x: model.apply(v, x)[0])
    outputs = apply(variables, inputs)
    for out, sym in zip(jax.tree_util.tree_leaves(outputs), model.outputs):
        assert all(s is None or s == d for s, d in zip(sym.shape, out.shape))

    def objective(params):
        out, _ = model.apply({"params": params, "state": variables["state"]}, inputs)
        return loss(out)

    value, grads = jax.jit(jax.value_and_grad(objective))(variables["params"])
    assert np.isfinite(float(value))
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(
        variables["params"])
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert sum(float(jnp.abs(g).sum()) for g in leaves) > 0

    if batches is None:  # three independently initialized models at once
        stacked = jax.vmap(model.init)(jax.random.split(jax.random.key(1), 3))
        many = jax.jit(jax.vmap(apply, in_axes=(0, None)))(stacked, inputs)
        second = jax.tree_util.tree_map(lambda a: a[1], stacked)
        expected = apply(second, inputs)
        first = jax.tree_util.tree_map(lambda a: a[0], many)
        assert not np.allclose(jax.tree_util.tree_leaves(first)[0],
                               jax.tree_util.tree_leaves(expected)[0])
    else:  # one model on three input batches stacked on a new leading axis
        stacked_x = jax.tree_util.tree_map(lambda *a: np.stack(a), *batches)
        many = jax.jit(jax.vmap(apply, in_axes=(None, 0)))(variables, stacked_x)
        expected = apply(variables, batches[1])
    picked = jax.tree_util.tree_map(lambda a: a[1], many)
    for g, w in zip(jax.tree_util.tree_leaves(picked), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    return variables, outputs


def _floats(seed, *shape):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _tokens(seed, vocabulary, *shape):
    return np.random.default_rng(seed).integers(1, vocabulary, size=shape).astype("int32")


def _xent(probabilities, labels):
    return -jnp.mean(jnp.sum(labels * jnp.log(probabilities + 1e-7), axis=-1))


# ---------------------------------------------------------------------------- 7.1.1


def sequential_mlp(layers=layers, Sequential=Sequential, **_):
    seq_model = Sequential()
    seq_model.add(layers.Dense(32, activation="relu", input_shape=(64,)))
    seq_model.add(layers.Dense(32, activation="relu"))
    seq_model.add(layers.Dense(10, activation="softmax"))
    return seq_model


def functional_mlp(layers=layers, Input=Input, Model=Model, **_):
    input_tensor = Input(shape=(64,))
    x = layers.Dense(32, activation="relu")(input_tensor)
    x = layers.Dense(32, activation="relu")(x)
    output_tensor = layers.Dense(10, activation="softmax")(x)
    return Model(input_tensor, output_tensor)


def test_mlp_sequential_and_functional_have_3466_params():
    seq_model, model = sequential_mlp(), functional_mlp()
    assert seq_model.count_params() == model.count_params() == 3466
    lines = []
    model.summary(print_fn=lines.append)
    assert " Total params: 3,466 (13.54 KB)" in lines
    seq_model.set_weights(model.get_weights())
    x = _floats(0, 8, 64)
    np.testing.assert_allclose(seq_model(x), model(x), rtol=1e-6)
    labels = jax.nn.one_hot(np.arange(8) % 10, 10)
    exercise(model, x, lambda p: _xent(p, labels))


def test_mlp_matches_keras():
    keras = _keras()
    x = _floats(1, 5, 64)
    compare_with_keras(functional_mlp(), functional_mlp(**_keras_kwargs(keras)), x)
    compare_with_keras(sequential_mlp(), sequential_mlp(**_keras_kwargs(keras)), x)


def test_mlp_trains_with_optax_on_the_pure_core():
    model = functional_mlp()
    rng = np.random.default_rng(2)
    x_train = rng.random((256, 64)).astype("float32")
    y_train = jax.nn.one_hot(rng.integers(0, 10, 256), 10)
    variables = model.init(jax.random.key(0))
    tx = optax.rmsprop(1e-3)
    opt_state = tx.init(variables["params"])

    def loss(params, x, y):
        return _xent(model.apply({"params": params, "state": {}}, x)[0], y)

    @jax.jit
    def step(params, opt_state, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    params = variables["params"]
    first = float(loss(params, x_train, y_train))
    for _ in range(10):
        for i in range(0, 256, 128):
            params, opt_state, _ = step(params, opt_state, x_train[i:i + 128],
                                        y_train[i:i + 128])
    assert float(loss(params, x_train, y_train)) < first


def test_mlp_compile_fit_evaluate_as_in_the_book():
    model = functional_mlp()
    if not hasattr(model, "compile"):
        pytest.skip("Model.compile is not available yet")
    rng = np.random.default_rng(3)
    x_train = rng.random((1000, 64)).astype("float32")
    y_train = np.eye(10, dtype="float32")[rng.integers(0, 10, 1000)]
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy")
    history = model.fit(x_train, y_train, epochs=10, batch_size=128, verbose=0)
    assert len(history.history["loss"]) == 10
    assert history.history["loss"][-1] < history.history["loss"][0]
    score = model.evaluate(x_train, y_train, verbose=0)
    assert np.isfinite(score)


# ---------------------------------------------------------------------------- 7.1.2


TEXT_VOCABULARY_SIZE = 10000
QUESTION_VOCABULARY_SIZE = 10000
ANSWER_VOCABULARY_SIZE = 500


def question_answering(layers=layers, Input=Input, Model=Model, **_):
    text_input = Input(shape=(None,), dtype="int32", name="text")
    embedded_text = layers.Embedding(TEXT_VOCABULARY_SIZE, 64)(text_input)
    encoded_text = layers.LSTM(32)(embedded_text)
    question_input = Input(shape=(None,), dtype="int32", name="question")
    embedded_question = layers.Embedding(QUESTION_VOCABULARY_SIZE, 32)(question_input)
    encoded_question = layers.LSTM(16)(embedded_question)
    concatenated = layers.concatenate([encoded_text, encoded_question], axis=-1)
    answer = layers.Dense(ANSWER_VOCABULARY_SIZE, activation="softmax")(concatenated)
    return Model([text_input, question_input], answer)


def _qa_data(seed, n=3):
    return [_tokens(seed, TEXT_VOCABULARY_SIZE, n, 20),
            _tokens(seed + 1, QUESTION_VOCABULARY_SIZE, n, 7)]


def test_question_answering_model():
    _require("LSTM")
    model = question_answering()
    expected = (TEXT_VOCABULARY_SIZE * 64 + 4 * (32 * (64 + 32) + 32)
                + QUESTION_VOCABULARY_SIZE * 32 + 4 * (16 * (32 + 16) + 16)
                + 48 * ANSWER_VOCABULARY_SIZE + ANSWER_VOCABULARY_SIZE)
    assert model.count_params() == expected
    assert model.input_names == ["text", "question"]
    text, question = _qa_data(0)
    answers = jax.nn.one_hot(np.arange(3), ANSWER_VOCABULARY_SIZE)
    variables, out = exercise(model, [text, question], lambda p: _xent(p, answers))
    assert out.shape == (3, ANSWER_VOCABULARY_SIZE)
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=1e-5)
    # The book feeds the same model a list or a dict keyed by input name.
    by_name, _ = model.apply(variables, {"text": text, "question": question})
    np.testing.assert_allclose(by_name, out, rtol=1e-5, atol=1e-7)


def test_question_answering_matches_keras():
    _require("LSTM")
    keras = _keras()
    compare_with_keras(question_answering(), question_answering(**_keras_kwargs(keras)),
                       _qa_data(5))


VOCABULARY_SIZE = 50000
NUM_INCOME_GROUPS = 10


def age_income_gender(layers=layers, Input=Input, Model=Model, **_):
    posts_input = Input(shape=(None,), dtype="int32", name="posts")
    embedded_posts = layers.Embedding(VOCABULARY_SIZE, 256)(posts_input)
    x = layers.Conv1D(128, 5, activation="relu")(embedded_posts)
    x = layers.MaxPooling1D(5)(x)
    x = layers.Conv1D(256, 5, activation="relu")(x)
    x = layers.Conv1D(256, 5, activation="relu")(x)
    x = layers.MaxPooling1D(5)(x)
    x = layers.Conv1D(256, 5, activation="relu")(x)
    x = layers.Conv1D(256, 5, activation="relu")(x)
    x = layers.GlobalMaxPooling1D()(x)
    x = layers.Dense(128, activation="relu")(x)
    age_prediction = layers.Dense(1, name="age")(x)
    income_prediction = layers.Dense(NUM_INCOME_GROUPS, activation="softmax",
                                     name="income")(x)
    gender_prediction = layers.Dense(1, activation="sigmoid", name="gender")(x)
    return Model(posts_input, [age_prediction, income_prediction, gender_prediction])


POST_LENGTH = 300  # the shortest posts that survive two poolings and six convolutions


def test_age_income_gender_model():
    _require("Conv1D", "MaxPooling1D", "GlobalMaxPooling1D")
    model = age_income_gender()
    conv = [5 * 256 * 128 + 128, 5 * 128 * 256 + 256] + [5 * 256 * 256 + 256] * 3
    expected = VOCABULARY_SIZE * 256 + sum(conv) + 256 * 128 + 128 + 129 + 1290 + 129
    assert model.count_params() == expected
    assert model.output_names == ["age", "income", "gender"]
    ages = np.array([[30.0], [42.0]], "float32")
    incomes = jax.nn.one_hot(np.array([2, 7]), NUM_INCOME_GROUPS)
    genders = np.array([[0.0], [1.0]], "float32")

    def weighted_loss(outputs):  # loss_weights=[0.25, 1., 10.] as in the book
        age, income, gender = outputs
        mse = jnp.mean((age - ages) ** 2)
        bce = -jnp.mean(genders * jnp.log(gender + 1e-7)
                        + (1 - genders) * jnp.log(1 - gender + 1e-7))
        return 0.25 * mse + _xent(income, incomes) + 10.0 * bce

    batches = [_tokens(s, VOCABULARY_SIZE, 2, POST_LENGTH) for s in range(3)]
    _, (age, income, gender) = exercise(model, batches[0], weighted_loss, batches=batches)
    assert age.shape == (2, 1) and income.shape == (2, NUM_INCOME_GROUPS)
    assert gender.shape == (2, 1) and bool(jnp.all((gender > 0) & (gender < 1)))


def test_age_income_gender_matches_keras():
    _require("Conv1D", "MaxPooling1D", "GlobalMaxPooling1D")
    keras = _keras()
    compare_with_keras(age_income_gender(), age_income_gender(**_keras_kwargs(keras)),
                       _tokens(9, VOCABULARY_SIZE, 2, POST_LENGTH))


# ---------------------------------------------------------------------------- 7.1.3


def inception_module(layers=layers, Input=Input, Model=Model, **_):
    x = Input(shape=(16, 16, 64))
    branch_a = layers.Conv2D(128, 1, activation="relu", strides=2, padding="same")(x)
    branch_b = layers.Conv2D(128, 1, activation="relu", padding="same")(x)
    branch_b = layers.Conv2D(128, 3, activation="relu", strides=2, padding="same")(branch_b)
    branch_c = layers.AveragePooling2D(3, strides=2, padding="same")(x)
    branch_c = layers.Conv2D(128, 3, activation="relu", padding="same")(branch_c)
    branch_d = layers.Conv2D(128, 1, activation="relu", padding="same")(x)
    branch_d = layers.Conv2D(128, 3, activation="relu", padding="same")(branch_d)
    branch_d = layers.Conv2D(128, 3, activation="relu", strides=2, padding="same")(branch_d)
    output = layers.concatenate([branch_a, branch_b, branch_c, branch_d], axis=-1)
    return Model(x, output)


def test_inception_module():
    _require("Conv2D", "AveragePooling2D")
    model = inception_module()
    one_by_one, three_by_three = 64 * 128 + 128, 9 * 128 * 128 + 128
    expected = 3 * one_by_one + 9 * 64 * 128 + 128 + 3 * three_by_three
    assert model.count_params() == expected
    assert model.output_shape == (None, 8, 8, 512)
    batches = [_floats(s, 2, 16, 16, 64) for s in range(3)]
    exercise(model, batches[0], lambda y: jnp.mean(y ** 2), batches=batches)


def test_inception_module_matches_keras():
    _require("Conv2D", "AveragePooling2D")
    keras = _keras()
    compare_with_keras(inception_module(), inception_module(**_keras_kwargs(keras)),
                       _floats(4, 2, 16, 16, 64))


def identity_residual(layers=layers, Input=Input, Model=Model, **_):
    x = Input(shape=(12, 12, 128))
    y = layers.Conv2D(128, 3, activation="relu", padding="same")(x)
    y = layers.Conv2D(128, 3, activation="relu", padding="same")(y)
    y = layers.Conv2D(128, 3, activation="relu", padding="same")(y)
    y = layers.add([y, x])
    return Model(x, y)


def projection_residual(layers=layers, Input=Input, Model=Model, **_):
    x = Input(shape=(12, 12, 64))
    y = layers.Conv2D(128, 3, activation="relu", padding="same")(x)
    y = layers.Conv2D(128, 3, activation="relu", padding="same")(y)
    y = layers.MaxPooling2D(2, strides=2)(y)
    residual = layers.Conv2D(128, 1, strides=2, padding="same")(x)
    y = layers.add([y, residual])
    return Model(x, y)


def test_identity_residual_connection():
    _require("Conv2D")
    model = identity_residual()
    assert model.count_params() == 3 * (9 * 128 * 128 + 128)
    assert model.output_shape == (None, 12, 12, 128)
    batches = [_floats(s, 2, 12, 12, 128) for s in range(3)]
    variables, out = exercise(model, batches[0], lambda y: jnp.mean(y ** 2), batches=batches)
    # With the convolutions zeroed the block is the identity: the shortcut is really there.
    zeroed = jax.tree_util.tree_map(jnp.zeros_like, variables)
    np.testing.assert_allclose(model.apply(zeroed, batches[0])[0], batches[0])


def test_projection_residual_connection():
    _require("Conv2D", "MaxPooling2D")
    model = projection_residual()
    expected = 9 * 64 * 128 + 128 + 9 * 128 * 128 + 128 + 64 * 128 + 128
    assert model.count_params() == expected
    assert model.output_shape == (None, 6, 6, 128)
    batches = [_floats(s, 2, 12, 12, 64) for s in range(3)]
    exercise(model, batches[0], lambda y: jnp.mean(y ** 2), batches=batches)


def test_residual_connections_match_keras():
    _require("Conv2D", "MaxPooling2D")
    keras = _keras()
    compare_with_keras(identity_residual(), identity_residual(**_keras_kwargs(keras)),
                       _floats(5, 2, 12, 12, 128))
    compare_with_keras(projection_residual(), projection_residual(**_keras_kwargs(keras)),
                       _floats(6, 2, 12, 12, 64))


# ---------------------------------------------------------------------------- 7.1.5


def siamese_lstm(layers=layers, Input=Input, Model=Model, **_):
    lstm = layers.LSTM(32)
    left_input = Input(shape=(None, 128))
    left_output = lstm(left_input)
    right_input = Input(shape=(None, 128))
    right_output = lstm(right_input)
    merged = layers.concatenate([left_output, right_output], axis=-1)
    predictions = layers.Dense(1, activation="sigmoid")(merged)
    return Model([left_input, right_input], predictions)


def test_siamese_lstm_has_one_set_of_lstm_params():
    _require("LSTM")
    model = siamese_lstm()
    lstm = next(layer for layer in model.layers if isinstance(layer, layers.LSTM))
    assert len(lstm.inbound_nodes) == 2
    assert model.count_params() == 4 * (32 * (128 + 32) + 32) + 64 + 1
    params = jax.jit(model.init)(jax.random.key(0))["params"]
    lstm_entries = [name for name in params if "kernel" in params[name]
                    and "recurrent_kernel" in params[name]]
    assert lstm_entries == [lstm.name]
    assert _leaf_count(params[lstm.name]) == lstm.count_params()
    left, right = _floats(0, 2, 6, 128), _floats(1, 2, 6, 128)
    variables, out = exercise(model, [left, right], lambda p: -jnp.mean(jnp.log(p + 1e-7)))
    # Same weights on both sides: swapping the inputs swaps the halves of `merged`.
    dense = model.layers[-1]
    swapped = jax.tree_util.tree_map(lambda a: a, variables)
    kernel = variables["params"][dense.name]["kernel"]
    swapped["params"][dense.name]["kernel"] = jnp.concatenate([kernel[32:], kernel[:32]])
    np.testing.assert_allclose(model.apply(swapped, [right, left])[0], out, rtol=1e-5)


def test_siamese_lstm_matches_keras():
    _require("LSTM")
    keras = _keras()
    compare_with_keras(siamese_lstm(), siamese_lstm(**_keras_kwargs(keras)),
                       [_floats(2, 2, 6, 128), _floats(3, 2, 6, 128)])


def dual_camera(layers=layers, Input=Input, Model=Model, **_):
    """The book's Xception base, scaled down to a two-convolution base."""
    image = Input(shape=(None, None, 3))
    features = layers.Conv2D(8, 3, activation="relu")(image)
    features = layers.MaxPooling2D(2)(features)
    features = layers.Conv2D(16, 3, activation="relu")(features)
    conv_base = Model(image, features, name="conv_base")
    left_input = Input(shape=(32, 32, 3))
    right_input = Input(shape=(32, 32, 3))
    left_features = conv_base(left_input)
    right_features = conv_base(right_input)
    merged_features = layers.concatenate([left_features, right_features], axis=-1)
    return Model([left_input, right_input], merged_features)


def test_model_as_layer_on_two_cameras_shares_weights():
    _require("Conv2D", "MaxPooling2D")
    model = dual_camera()
    base = model.get_layer("conv_base")
    assert len(base.inbound_nodes) == 2
    assert model.count_params() == base.count_params() == (27 * 8 + 8) + (72 * 16 + 16)
    assert model.output_shape == (None, 13, 13, 32)
    batches = [[_floats(2 * s, 2, 32, 32, 3), _floats(2 * s + 1, 2, 32, 32, 3)]
               for s in range(3)]
    left, right = batches[0]
    variables, merged = exercise(model, batches[0], lambda y: jnp.mean(y ** 2),
                                 batches=batches)
    assert list(variables["params"]) == ["conv_base"]
    base_out, _ = base.apply({"params": variables["params"]["conv_base"], "state": {}}, left)
    np.testing.assert_allclose(merged[..., :16], base_out, rtol=1e-5, atol=1e-6)
    swapped, _ = model.apply(variables, [right, left])
    np.testing.assert_allclose(swapped[..., 16:], merged[..., :16], rtol=1e-5, atol=1e-6)


def test_dual_camera_matches_keras():
    _require("Conv2D", "MaxPooling2D")
    keras = _keras()
    compare_with_keras(dual_camera(), dual_camera(**_keras_kwargs(keras)),
                       [_floats(2, 2, 32, 32, 3), _floats(3, 2, 32, 32, 3)])


"""Recurrent layers and wrappers against Keras 3: outputs, masks, states, weights, grads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxgraph as jg
from jaxgraph import layers as L

keras = pytest.importorskip("keras")

RNG = np.random.default_rng(0)
X = RNG.normal(size=(3, 5, 4)).astype("float32")
# Padded token ids (0 = padding): post-padding, pre-padding and a full-length row.
TOKENS = np.array([[3, 5, 2, 0, 0], [0, 0, 7, 1, 4], [1, 2, 3, 4, 5]], dtype="int32")


# Keras layers are built with constant initializers and then given random NumPy weights:
# compiling Keras's random initializers would dominate the test time.
Z = {"kernel_initializer": "zeros", "recurrent_initializer": "zeros"}
EZ = {"embeddings_initializer": "zeros"}


def _keras_model(inputs, outputs):
    km = keras.Model(inputs, outputs)
    km.set_weights([RNG.normal(scale=0.5, size=w.shape).astype("float32")
                    for w in km.get_weights()])
    return km


def _randomize(model):
    """Random weights without compiling initializers; returns the model's variables."""
    values = [RNG.normal(scale=0.5, size=w.shape).astype("float32") for w in model.weights]
    model.set_weights([np.abs(v) + 0.5 if "variance" in w.name else v
                       for w, v in zip(model.weights, values)])
    return model.variables


def _pair(make, shape=(None, 4), dtype="float32"):
    """The same one-layer graph in Keras and jaxgraph, jaxgraph holding Keras's weights."""
    ki = keras.Input(shape, dtype=dtype)
    km = _keras_model(ki, make(keras.layers)(ki))
    ji = jg.Input(shape, dtype=dtype)
    jm = jg.Model(ji, make(L)(ji))
    jm.set_weights(km.get_weights())
    return km, jm


def _close(ours, theirs, atol=1e-5):
    ours = ours if isinstance(ours, (list, tuple)) else [ours]
    theirs = theirs if isinstance(theirs, (list, tuple)) else [theirs]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert np.asarray(a).shape == np.asarray(b).shape
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=atol, rtol=1e-5)


@pytest.mark.parametrize("cls,kwargs", [
    ("LSTM", {}),
    ("LSTM", {"unit_forget_bias": False, "use_bias": False, "return_sequences": True,
              "go_backwards": True, "return_state": True}),
    ("GRU", {"return_sequences": True}),
    ("GRU", {"reset_after": False, "go_backwards": True, "return_state": True}),
    ("SimpleRNN", {"activation": "relu", "return_sequences": True, "return_state": True}),
])
def test_rnn_matches_keras(cls, kwargs):
    km, jm = _pair(lambda m: getattr(m, cls)(6, **Z, **kwargs))
    assert jm.count_params() == km.count_params()
    assert [w.shape for w in jm.get_weights()] == [tuple(w.shape) for w in km.get_weights()]
    assert [t.shape for t in jm.outputs] == [tuple(t.shape) for t in km.outputs]
    y, _ = jm.apply(jm.variables, X)
    _close(y, km(X))


def test_weight_layout_and_default_init_follow_keras():
    lstm = L.LSTM(3)
    jg.Model(i := jg.Input((None, 2)), lstm(i))
    names = [w.name for w in lstm.weights]
    assert names == ["kernel", "recurrent_kernel", "bias"]
    kernel, rec, bias = lstm.get_weights()
    assert kernel.shape == (2, 12) and rec.shape == (3, 12) and bias.shape == (12,)
    np.testing.assert_allclose(bias, [0, 0, 0, 1, 1, 1] + [0] * 6)  # unit_forget_bias
    np.testing.assert_allclose(rec @ rec.T, np.eye(3), atol=1e-5)  # orthogonal rows
    gru = L.GRU(3)
    jg.Model(i := jg.Input((None, 2)), gru(i))
    assert [w.shape for w in gru.weights] == [(2, 9), (3, 9), (2, 9)]
    gru2 = L.GRU(3, reset_after=False)
    jg.Model(i := jg.Input((None, 2)), gru2(i))
    assert gru2.weights[-1].shape == (9,)


@pytest.mark.parametrize("cls,seq,back", [
    ("LSTM", False, False), ("LSTM", True, True), ("GRU", True, False),
])
def test_masking_with_embedding_matches_keras(cls, seq, back):
    def make(m):
        def build(x):
            h = m.Embedding(10, 4, mask_zero=True, **EZ)(x)
            return getattr(m, cls)(3, return_sequences=seq, go_backwards=back, **Z)(h)
        return build

    ki = keras.Input((None,), dtype="int32")
    km = _keras_model(ki, make(keras.layers)(ki))
    ji = jg.Input((None,), dtype="int32")
    jm = jg.Model(ji, make(L)(ji))
    jm.set_weights(km.get_weights())
    y, _ = jm.apply(jm.variables, TOKENS)
    _close(y, km(TOKENS))


def test_mask_propagates_only_with_return_sequences():
    tokens = jg.Input((None,), dtype="int32")
    h = L.Embedding(10, 4, mask_zero=True)(tokens)
    seq = L.LSTM(3, return_sequences=True)(h)
    # Masked steps of the second LSTM keep its state, so padding cannot leak in.
    last = L.LSTM(2)(seq)
    model = jg.Model(tokens, last)
    variables = _randomize(model)
    padded = np.array([[4, 2, 0, 0, 0]], dtype="int32")
    trimmed = np.array([[4, 2]], dtype="int32")
    a, _ = model.apply(variables, padded)
    b, _ = model.apply(variables, trimmed)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert L.LSTM(2).compute_mask(None, None) is None
    rs = L.LSTM(2, return_state=True)
    assert rs.compute_mask(None, jnp.ones((1, 3), bool)) == [None, None, None]


@pytest.mark.parametrize("cls,n", [("LSTM", 2), ("GRU", 1), ("SimpleRNN", 1)])
def test_initial_state_matches_keras(cls, n):
    states = [RNG.normal(size=(3, 5)).astype("float32") for _ in range(n)]

    def build(m, Input):
        x = Input((None, 4))
        s = [Input((5,)) for _ in range(n)]
        y = getattr(m, cls)(5, return_sequences=True, **Z)(x, initial_state=s)
        return [x] + s, y

    kin, kout = build(keras.layers, keras.Input)
    km = _keras_model(kin, kout)
    jin, jout = build(L, jg.Input)
    jm = jg.Model(jin, jout)
    jm.set_weights(km.get_weights())
    y, _ = jm.apply(jm.variables, [X] + states)
    _close(y, km([X] + states))
    zero, _ = jm.apply(jm.variables, [X] + [np.zeros_like(s) for s in states])
    assert not np.allclose(y, zero)


def test_initial_state_is_checked_when_the_graph_is_built():
    x, h = jg.Input((None, 4)), jg.Input((5,))
    with pytest.raises(ValueError, match="2 state"):
        L.LSTM(5)(x, initial_state=[h])
    with pytest.raises(ValueError, match=r"\(batch, 6\)"):
        L.GRU(6)(x, initial_state=[h])
    with pytest.raises(ValueError, match="1 state"):
        L.GRU(5)(x, [h, h])  # Keras also takes the states as the second positional argument


def test_variable_length_sequences_share_one_model():
    x = jg.Input((None, 4))
    model = jg.Model(x, L.GRU(3, return_sequences=True)(x))
    _randomize(model)
    for steps in (2, 7):
        y, _ = model.apply(model.variables, RNG.normal(size=(2, steps, 4)).astype("float32"))
        assert y.shape == (2, steps, 3)
    assert model.outputs[0].shape == (None, None, 3)


def test_wrong_input_shape_fails_when_building_the_graph():
    lstm = L.LSTM(3, name="enc")
    lstm(jg.Input((None, 4)))
    with pytest.raises(ValueError, match="enc") as err:
        lstm(jg.Input((None, 5)))
    assert "(None, None, 5)" in str(err.value)
    with pytest.raises(ValueError, match="ndim=3"):
        L.GRU(2)(jg.Input((4,)))


def test_stateful_is_rejected_and_unroll_accepted():
    with pytest.raises(NotImplementedError, match="initial_state"):
        L.LSTM(3, stateful=True)
    x = jg.Input((5, 4))
    unrolled = jg.Model(x, L.LSTM(3, unroll=True)(x))
    looped = jg.Model(x, L.LSTM(3)(x))
    looped.set_weights(unrolled.get_weights())
    _close(unrolled.apply(unrolled.variables, X)[0], looped.apply(looped.variables, X)[0])


# ---------------------------------------------------------------------------- dropout


def test_input_dropout_mask_is_drawn_once_per_sequence():
    rnn = L.SimpleRNN(6, activation="linear", dropout=0.5, return_sequences=True,
                      kernel_initializer="identity", recurrent_initializer="zeros")
    x = jg.Input((None, 6))
    model = jg.Model(x, rnn(x))
    ones = np.ones((200, 4, 6), "float32")
    y, _ = model.apply(model.variables, ones, training=True, rng=jax.random.key(1))
    y = np.asarray(y)
    np.testing.assert_allclose(y, np.repeat(y[:, :1], 4, axis=1))  # same mask at every step
    assert set(np.unique(y)) <= {0.0, 2.0}
    assert abs((y == 0).mean() - 0.5) < 0.05
    inference, _ = model.apply(model.variables, ones)
    np.testing.assert_allclose(inference, ones)


@pytest.mark.parametrize("cls", ["LSTM", "GRU"])
def test_recurrent_dropout_is_random_in_training_only(cls):
    x = jg.Input((None, 4))
    model = jg.Model(x, getattr(L, cls)(8, dropout=0.3, recurrent_dropout=0.3)(x))
    plain = jg.Model(x, getattr(L, cls)(8)(x))
    _randomize(model)
    plain.set_weights(model.get_weights())
    infer, _ = model.apply(model.variables, X, training=False)
    np.testing.assert_allclose(infer, plain.apply(plain.variables, X)[0])
    train = jax.jit(lambda v, x, key: model.apply(v, x, training=True, rng=key)[0])
    a = train(model.variables, X, jax.random.key(0))
    b = train(model.variables, X, jax.random.key(0))
    c = train(model.variables, X, jax.random.key(1))
    np.testing.assert_allclose(a, b)
    assert not np.allclose(a, infer) and not np.allclose(a, c)
    with pytest.raises(ValueError, match="rng"):
        model.apply(model.variables, X, training=True)


def test_no_rng_needed_without_dropout():
    x = jg.Input((None, 4))
    model = jg.Model(x, L.Bidirectional(L.LSTM(3))(x))
    _randomize(model)
    y, _ = model.apply(model.variables, X, training=True)
    z, _ = model.apply(model.variables, X, training=False)
    np.testing.assert_allclose(y, z)


# ---------------------------------------------------------------------------- wrappers


@pytest.mark.parametrize("mode,seq", [
    ("concat", False), ("concat", True), ("sum", True), ("mul", False), ("ave", True),
    (None, False), (None, True),
])
def test_bidirectional_matches_keras(mode, seq):
    make = lambda m: m.Bidirectional(m.LSTM(3, return_sequences=seq, **Z), merge_mode=mode)
    km, jm = _pair(make)
    assert [w.shape for w in jm.get_weights()] == [tuple(w.shape) for w in km.get_weights()]
    assert jm.count_params() == km.count_params()
    y, _ = jm.apply(jm.variables, X)
    _close(y, km(X))
    expect = [tuple(t.shape) for t in (km.outputs if mode is None else km.outputs[:1])]
    assert [tuple(t.shape) for t in jm.outputs] == expect


def test_bidirectional_return_state_backward_layer_and_mask_match_keras():
    def build(m, Input):
        tokens = Input((None,), dtype="int32")
        h = m.Embedding(10, 4, mask_zero=True, **EZ)(tokens)
        seq = m.Bidirectional(m.GRU(3, return_sequences=True, **Z))(h)
        out = m.Bidirectional(
            m.LSTM(2, return_state=True, **Z),
            backward_layer=m.LSTM(2, return_state=True, go_backwards=True,
                                  activation="relu", **Z))(seq)
        return tokens, out

    ki, ko = build(keras.layers, keras.Input)
    km = _keras_model(ki, ko)
    ji, jo = build(L, jg.Input)
    jm = jg.Model(ji, jo)
    assert len(jo) == 5
    jm.set_weights(km.get_weights())
    y, _ = jm.apply(jm.variables, TOKENS)
    _close(y, km(TOKENS))


def test_bidirectional_weights_are_shared_with_its_inner_layers():
    bi = L.Bidirectional(L.GRU(2))
    model = jg.Model(i := jg.Input((None, 3)), bi(i))
    assert [w.name for w in bi.weights][:3] == [
        "forward_kernel", "forward_recurrent_kernel", "forward_bias"]
    params = model.init(jax.random.key(0))["params"][bi.name]
    assert sorted(params) == sorted(w.name for w in bi.weights)
    model.variables = model.init(jax.random.key(3))
    for ours, inner in zip(bi.get_weights(), bi.forward_layer.get_weights()
                           + bi.backward_layer.get_weights()):
        np.testing.assert_array_equal(ours, inner)
    new = [np.full(w.shape, 0.1, "float32") for w in bi.backward_layer.weights]
    bi.backward_layer.set_weights(new)
    np.testing.assert_array_equal(bi.get_weights()[3], new[0])
    assert bi.backward_layer.go_backwards and not bi.forward_layer.go_backwards
    with pytest.raises(ValueError, match="merge_mode"):
        L.Bidirectional(L.LSTM(2), merge_mode="max")
    with pytest.raises(ValueError, match="go_backwards"):
        L.Bidirectional(L.LSTM(2), backward_layer=L.LSTM(2))


def test_time_distributed_matches_keras():
    make = lambda m: m.TimeDistributed(m.Dense(3, activation="tanh",
                                               kernel_initializer="zeros"))
    km, jm = _pair(make, shape=(5, 4))
    y, _ = jm.apply(jm.variables, X)
    _close(y, km(X))
    assert jm.outputs[0].shape == (None, 5, 3)
    x = jg.Input((None, 2, 4))
    td = L.TimeDistributed(L.Flatten())
    assert td(x).shape == (None, None, 8)
    with pytest.raises(ValueError, match="rank >= 3|min_ndim"):
        L.TimeDistributed(L.Dense(2))(jg.Input((4,)))


def test_time_distributed_batchnorm_threads_state():
    x = jg.Input((None, 4))
    td = L.TimeDistributed(L.BatchNormalization(momentum=0.5))
    model = jg.Model(x, td(x))
    variables = model.init(jax.random.key(0))
    _, state = model.apply(variables, X, training=True)
    flat = X.reshape(-1, 4)
    np.testing.assert_allclose(state[td.name]["moving_mean"], 0.5 * flat.mean(0), atol=1e-6)
    assert [w.name for w in td.weights] == ["gamma", "beta", "moving_mean", "moving_variance"]


def test_siamese_lstm_has_one_set_of_parameters():
    def build(m, Input):
        left, right = Input((None, 4)), Input((None, 4))
        shared = m.LSTM(6, **Z)
        merged = m.concatenate([shared(left), shared(right)], axis=-1)
        return [left, right], m.Dense(1, activation="sigmoid", kernel_initializer="zeros")(merged)

    kin, kout = build(keras.layers, keras.Input)
    km = _keras_model(kin, kout)
    jin, jout = build(L, jg.Input)
    jm = jg.Model(jin, jout)
    params = jm.init(jax.random.key(0))["params"]
    lstm_entries = [k for k, v in params.items() if "recurrent_kernel" in v]
    assert len(lstm_entries) == 1
    assert jm.count_params() == km.count_params()
    jm.set_weights(km.get_weights())
    other = RNG.normal(size=(3, 6, 4)).astype("float32")
    y, _ = jm.apply(jm.variables, [X, other])
    _close(y, km([X, other]))


def test_config_round_trip():
    for layer in (L.LSTM(4, return_sequences=True, dropout=0.1, go_backwards=True),
                  L.GRU(3, reset_after=False), L.SimpleRNN(2, activation="relu"),
                  L.Bidirectional(L.LSTM(2, return_sequences=True), merge_mode="sum"),
                  L.TimeDistributed(L.Dense(3))):
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config
    bi = L.Bidirectional.from_config(L.Bidirectional(L.GRU(2)).get_config())
    assert isinstance(bi.forward_layer, L.GRU) and bi.backward_layer.go_backwards


# ---------------------------------------------------------------------------- jit and grads


def test_jit_and_grad_through_lstm_and_batchnorm():
    x = jg.Input((None, 4))
    h = L.LSTM(5, return_sequences=True)(x)
    h = L.BatchNormalization()(h)
    y = L.Dense(1)(L.GRU(3)(h))
    model = jg.Model(x, y)
    variables = _randomize(model)
    target = np.ones((3, 1), "float32")

    @jax.jit
    def loss_fn(params, state, xb):
        out, new_state = model.apply({"params": params, "state": state}, xb, training=True)
        return jnp.mean((out - target) ** 2), new_state

    (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        variables["params"], variables["state"], X)
    assert np.isfinite(float(loss))
    for g in jax.tree_util.tree_leaves(grads):
        assert np.all(np.isfinite(g)) and np.any(g != 0)
    bn = model.layers[2].name
    assert not np.allclose(new_state[bn]["moving_mean"], variables["state"][bn]["moving_mean"])


def _x64_case(layer, shape, **call_kwargs):
    x = jnp.asarray(RNG.normal(size=shape), jnp.float64)
    layer._maybe_build(jg.Input(shape[1:]))
    w = {v.name: jnp.asarray(RNG.normal(scale=0.5, size=v.shape), jnp.float64)
         for v in layer.weights}
    f = jax.jit(lambda w, x: layer.call(w, x, **call_kwargs))
    check_grads(f, (w, x), order=1, modes=["rev"])


@pytest.mark.parametrize("make", [
    lambda: L.LSTM(3, return_sequences=True),
    lambda: L.GRU(3, return_state=True, reset_after=False, go_backwards=True),
])
def test_gradients_are_correct(make):
    with jax.enable_x64(True):
        _x64_case(make(), (2, 3, 2))


def test_gradients_are_correct_with_mask():
    mask = jnp.asarray([[True, True, False], [True, False, False]])
    with jax.enable_x64(True):
        _x64_case(L.LSTM(2, return_sequences=True), (2, 3, 2), mask=mask)

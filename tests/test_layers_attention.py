"""MultiHeadAttention, Attention, AdditiveAttention and EinsumDense: parity with Keras 3,
masks, dropout, graphs, configs and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxgraph
from jaxgraph import layers

keras = pytest.importorskip("keras")

TOL = dict(rtol=1e-5, atol=1e-5)


def _rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _close(got, expected):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, **TOL)


def _mha_pair(q, v, k=None, **kwargs):
    """A Keras MHA and ours, built on the same shapes, with Keras's weights copied over."""
    ours = layers.MultiHeadAttention(name="mha", **kwargs)
    theirs = keras.layers.MultiHeadAttention(name="mha", **kwargs)
    theirs.build(q.shape, v.shape, None if k is None else k.shape)
    ours(q, v, k)
    assert [w.path for w in ours.weights] == [w.path for w in theirs.weights]
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    ours.set_weights(theirs.get_weights())
    return ours, theirs


# ---------------------------------------------------------------------------- MultiHeadAttention


def test_mha_weights_outputs_and_scores_match_keras():
    q, v, k = _rand((2, 5, 6), 1), _rand((2, 4, 7), 2), _rand((2, 4, 3), 3)
    ours, theirs = _mha_pair(q, v, k, num_heads=2, key_dim=3, value_dim=4)
    assert ours.count_params() == theirs.count_params()
    out, scores = ours(q, v, k, return_attention_scores=True)
    k_out, k_scores = theirs(q, v, k, return_attention_scores=True)
    assert out.shape == (2, 5, 6) and scores.shape == (2, 2, 5, 4)
    _close(out, k_out)
    _close(scores, k_scores)
    np.testing.assert_allclose(np.asarray(scores).sum(-1), 1.0, rtol=1e-5)


def test_mha_self_attention_masks_match_keras():
    x = _rand((2, 5, 8), 4)
    ours, theirs = _mha_pair(x, x, num_heads=2, key_dim=4)
    _close(ours(x, x), theirs(x, x))
    _close(ours(x, x, use_causal_mask=True), theirs(x, x, use_causal_mask=True))
    attention_mask = np.random.default_rng(5).random((2, 5, 5)) > 0.4
    attention_mask[:, :, 0] = True  # every query sees at least one key
    _close(ours(x, x, attention_mask=attention_mask),
           theirs(x, x, attention_mask=attention_mask))
    both = dict(attention_mask=attention_mask, use_causal_mask=True,
                return_attention_scores=True)
    got, want = ours(x, x, **both), theirs(x, x, **both)
    _close(got[0], want[0])
    _close(got[1], want[1])
    # The causal mask: no weight on future keys.
    assert np.all(np.triu(np.asarray(got[1]), k=1) == 0)
    value_mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    _close(ours(x, x, value_mask=value_mask), theirs(x, x, value_mask=value_mask))


def test_mha_gate_and_sliding_window_match_keras():
    x = _rand((2, 5, 8), 4)
    ours, theirs = _mha_pair(x, x, num_heads=2, key_dim=4, use_gate=True, sliding_window=2)
    assert [w.path.split("/")[1] for w in ours.weights][::2] == [
        "query", "key", "gate", "value", "attention_output"]
    got = ours(x, x, use_causal_mask=True, return_attention_scores=True)
    want = theirs(x, x, use_causal_mask=True, return_attention_scores=True)
    _close(got[0], want[0])
    _close(got[1], want[1])
    band = np.abs(np.arange(5)[:, None] - np.arange(5)[None, :]) >= 2
    assert np.all(np.asarray(got[1])[:, :, band] == 0)
    _close(ours(x, x), theirs(x, x))


def test_mha_output_shape_and_attention_axes_match_keras():
    x = _rand((2, 3, 4, 5), 6)
    kwargs = dict(num_heads=2, key_dim=3, attention_axes=(1, 2), output_shape=(2, 7))
    ours, theirs = _mha_pair(x, x, **kwargs)
    out, scores = ours(x, x, return_attention_scores=True)
    k_out, k_scores = theirs(x, x, return_attention_scores=True)
    assert out.shape == (2, 3, 4, 2, 7) and scores.shape == (2, 2, 3, 4, 3, 4)
    _close(out, k_out)
    _close(scores, k_scores)
    ours2, theirs2 = _mha_pair(x, x, num_heads=2, key_dim=3, attention_axes=2, use_bias=False)
    assert len(ours2.weights) == 4
    _close(ours2(x, x), theirs2(x, x))


def test_mha_in_a_graph_with_symbolic_mask_and_scores():
    """Masks and attention_mask flow through a jitted graph; the query mask follows
    the outputs; the value mask is given explicitly (the next test leaves it to the
    inputs)."""
    tokens = np.array([[3, 1, 4, 0, 0], [2, 7, 1, 8, 2]], "int32")
    att_mask = np.ones((2, 5, 5), bool)
    att_mask[0, :, 1] = False
    tok_in = jaxgraph.Input((5,), dtype="int32")
    mask_in = jaxgraph.Input((5, 5), dtype="bool")
    emb = layers.Embedding(10, 8, mask_zero=True)
    h = emb(tok_in)
    value_mask = layers.Lambda(lambda t: t != 0)(tok_in)
    mha = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")
    out, scores = mha(h, h, value_mask=value_mask, attention_mask=mask_in,
                      return_attention_scores=True)
    assert out.shape == (None, 5, 8) and scores.shape == (None, 2, 5, 5)
    model = jaxgraph.Model([tok_in, mask_in], [out, scores])
    (got, got_scores), _ = jax.jit(model.apply)(model.variables, [tokens, att_mask])

    k_tok = keras.Input((5,), dtype="int32")
    k_mask = keras.Input((5, 5), dtype="bool")
    k_emb = keras.layers.Embedding(10, 8, mask_zero=True)
    k_h = k_emb(k_tok)
    k_mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    k_out = k_mha(k_h, k_h, attention_mask=k_mask, return_attention_scores=True)
    k_model = keras.Model([k_tok, k_mask], list(k_out))
    k_emb.set_weights(emb.get_weights())
    k_mha.set_weights(mha.get_weights())
    want, want_scores = k_model.predict([tokens, att_mask], verbose=0)
    _close(got, want)
    _close(got_scores, want_scores)
    assert np.all(np.asarray(got_scores)[0, :, :, 1] == 0)  # attention_mask
    assert np.all(np.asarray(got_scores)[0, :, :3, 3:] == 0)  # padding (value mask)
    # The query's mask is the output's mask: a masked pooling ignores the padding.
    pooled = layers.GlobalAveragePooling1D()(out)
    pool_model = jaxgraph.Model([tok_in, mask_in], pooled)
    got_pool, _ = pool_model.apply(pool_model.variables, [tokens, att_mask])
    np.testing.assert_allclose(np.asarray(got_pool)[0], np.asarray(got)[0, :3].mean(0),
                               rtol=1e-5, atol=1e-5)


def test_mha_takes_the_value_and_key_masks_of_its_inputs_like_keras():
    """Called on several tensors, a layer gets each one's propagated mask as
    `<argument>_mask` (Keras 3's rule): cross-attention from one padded sequence over
    another, with no mask passed by hand."""
    q_tokens = np.array([[3, 1, 4, 0], [2, 7, 0, 0]], "int32")
    v_tokens = np.array([[5, 0, 0, 0, 0], [6, 2, 9, 1, 0]], "int32")

    def build(lib):
        q_in = lib.Input((4,), dtype="int32")
        v_in = lib.Input((5,), dtype="int32")
        q_emb = lib.layers.Embedding(10, 8, mask_zero=True)
        v_emb = lib.layers.Embedding(10, 8, mask_zero=True)
        mha = lib.layers.MultiHeadAttention(num_heads=2, key_dim=4)
        out = mha(q_emb(q_in), v_emb(v_in))
        pooled = lib.layers.GlobalAveragePooling1D()(out)  # pools the query's steps only
        return lib.Model([q_in, v_in], [out, pooled]), (q_emb, v_emb, mha)

    model, ours = build(jaxgraph)
    k_model, theirs = build(keras)
    for a, b in zip(ours, theirs):
        b.set_weights(a.get_weights())
    got = model.predict([q_tokens, v_tokens], verbose=0)
    want = k_model.predict([q_tokens, v_tokens], verbose=0)
    for g, w in zip(got, want):
        _close(g, w)
    # Without the value mask the padded value steps would take attention.
    bare = layers.MultiHeadAttention(num_heads=2, key_dim=4)
    q = ours[0](jnp.asarray(q_tokens))
    v = ours[1](jnp.asarray(v_tokens))
    bare(q, v)
    bare.set_weights(ours[2].get_weights())
    assert not np.allclose(np.asarray(bare(q, v)), np.asarray(got[0]), atol=1e-4)


def test_mha_dropout_identity_at_inference_random_in_training():
    q, v = _rand((2, 4, 6), 7), _rand((2, 3, 6), 8)
    ours, theirs = _mha_pair(q, v, num_heads=2, key_dim=3, dropout=0.5)
    _close(ours(q, v), theirs(q, v))
    _close(ours(q, v, training=False), theirs(q, v, training=False))
    w = {x.name: x.value for x in ours.weights}
    run = jax.jit(lambda w, rng: ours.call(w, q, v, training=True, rng=rng,
                                           return_attention_scores=True)[0])
    a, b = run(w, jax.random.key(1)), run(w, jax.random.key(2))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, run(w, jax.random.key(1)))
    assert not np.allclose(a, np.asarray(theirs(q, v)))
    assert ours.needs_rng() and not layers.MultiHeadAttention(2, 3).needs_rng()


def test_mha_flash_attention_path_matches_explicit():
    x = _rand((2, 6, 8), 9)
    ours, theirs = _mha_pair(x, x, num_heads=2, key_dim=4)
    flash = layers.MultiHeadAttention(num_heads=2, key_dim=4, flash_attention=True)
    flash(x, x)
    flash.set_weights(theirs.get_weights())
    _close(flash(x, x, use_causal_mask=True), theirs(x, x, use_causal_mask=True))
    with pytest.raises(ValueError, match="flash"):
        flash(x, x, return_attention_scores=True)
    with pytest.raises(ValueError, match="dropout"):
        layers.MultiHeadAttention(2, 4, dropout=0.1, flash_attention=True)


def test_mha_keras_weight_file_groups(tmp_path):
    """`keras_weight_groups` names where a Keras weights file keeps each weight."""
    h5py = pytest.importorskip("h5py")
    x = _rand((2, 5, 8), 4)
    ours, theirs = _mha_pair(x, x, num_heads=2, key_dim=4, use_gate=True)
    inp = keras.Input((5, 8))
    path = str(tmp_path / "mha.weights.h5")
    keras.Model(inp, theirs(inp, inp)).save_weights(path)
    values = {w.name: np.asarray(w.value) for w in ours.weights}
    with h5py.File(path, "r") as f:
        root = f["layers/multi_head_attention"]  # Keras keys layers by class
        for group, names in ours.keras_weight_groups().items():
            stored = root[f"{group}/vars" if group else "vars"]
            assert len(stored) == len(names)
            for i, name in enumerate(names):
                np.testing.assert_array_equal(stored[str(i)][()], values[name])


def test_mha_config_roundtrip_and_errors():
    mha = layers.MultiHeadAttention(num_heads=3, key_dim=2, value_dim=5, dropout=0.1,
                                    output_shape=7, attention_axes=(1,),
                                    kernel_initializer="he_normal", name="att")
    clone = layers.MultiHeadAttention.from_config(mha.get_config())
    for attr in ("num_heads", "key_dim", "value_dim", "dropout", "partial_output_shape",
                 "attention_axes", "name"):
        assert getattr(clone, attr) == getattr(mha, attr)
    assert type(clone.kernel_initializer).__name__ == "HeNormal"
    q = jaxgraph.Input((4, 6))
    v = jaxgraph.Input((3, 5))
    assert clone(q, v).shape == (None, 4, 7)
    with pytest.raises(ValueError, match="value"):
        layers.MultiHeadAttention(2, 2)(q)
    with pytest.raises(ValueError, match="except the last one"):
        layers.MultiHeadAttention(2, 2)(q, v, jaxgraph.Input((2, 5)))


def test_mha_regularizers():
    """Kernel regularizers cover the four kernels; the activity regularizer, as in Keras,
    applies to each projection's output (divided by the batch size)."""
    from jaxgraph.lowering.executor import regularization_loss, run_model

    x = _rand((2, 5, 8), 4)
    inp = jaxgraph.Input((5, 8))
    mha = layers.MultiHeadAttention(2, 4, kernel_regularizer="l2", activity_regularizer="l1")
    model = jaxgraph.Model(inp, mha(inp, inp))
    variables = model.variables
    out, _, extra = run_model(model, variables, x)
    w = {v.name: np.asarray(v.value) for v in mha.weights}
    kernels = [w[f"{p}/kernel"] for p in ("query", "key", "value", "attention_output")]
    np.testing.assert_allclose(regularization_loss(model, variables["params"]),
                               0.01 * sum(float(np.sum(k ** 2)) for k in kernels), rtol=1e-5)
    projections = [np.einsum("abc,cde->abde", x, w[f"{p}/kernel"]) + w[f"{p}/bias"]
                   for p in ("query", "key", "value")] + [np.asarray(out)]
    np.testing.assert_allclose(extra, 0.01 * sum(np.abs(p).sum() for p in projections) / 2,
                               rtol=1e-5)


def test_mha_gradients():
    q, v = _rand((2, 3, 4), 10), _rand((2, 2, 4), 11)
    mha = layers.MultiHeadAttention(num_heads=2, key_dim=2, value_dim=3)
    mha(q, v)
    w = {x.name: x.value for x in mha.weights}
    mask = np.array([[[1, 1], [1, 0], [0, 1]]] * 2, bool)

    @jax.jit
    def loss(w, q, v):
        out = mha.call(w, q, v, attention_mask=mask)
        return jnp.sum(jnp.tanh(out))

    check_grads(loss, (w, q, v), order=1, modes=["rev"], atol=2e-2, rtol=2e-2, eps=1e-2)


# ---------------------------------------------------------------------------- Attention layers


@pytest.mark.parametrize("cls,kwargs", [
    ("Attention", {}),
    ("Attention", {"use_scale": True}),
    ("Attention", {"score_mode": "concat", "use_scale": True}),
    ("AdditiveAttention", {}),
    ("AdditiveAttention", {"use_scale": False}),
])
def test_attention_layers_match_keras(cls, kwargs):
    q, v, k = _rand((2, 4, 3), 12), _rand((2, 5, 3), 13), _rand((2, 5, 3), 14)
    ours, theirs = getattr(layers, cls)(**kwargs), getattr(keras.layers, cls)(**kwargs)
    theirs([q, v, k])
    ours([q, v, k])
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    weights = [w * 0.7 + 0.1 for w in theirs.get_weights()]  # not all ones
    theirs.set_weights(weights)
    ours.set_weights(weights)
    _close(ours([q, v, k]), theirs([q, v, k]))
    _close(ours([q, v]), theirs([q, v]))
    q_mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
    v_mask = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], bool)
    for extra in ({"mask": [q_mask, v_mask]}, {"use_causal_mask": True},
                  {"mask": [None, v_mask], "use_causal_mask": True}):
        got = ours([q, v, k], return_attention_scores=True, **extra)
        want = theirs([q, v, k], return_attention_scores=True, **extra)
        _close(got[0], want[0])
        _close(got[1], want[1])
    assert np.all(np.asarray(got[1])[0, :, 2:] == 0)


def test_attention_in_a_graph_propagates_masks_and_dropout():
    tokens = np.array([[1, 2, 0, 0], [3, 4, 5, 0]], "int32")
    inp = jaxgraph.Input((4,), dtype="int32")
    h = layers.Embedding(8, 6, mask_zero=True)(inp)
    att = layers.Attention(dropout=0.5)
    out = att([h, h])
    model = jaxgraph.Model(inp, layers.GlobalAveragePooling1D()(out))
    # Keras builds the same graph; weights copied by position.
    k_inp = keras.Input((4,), dtype="int32")
    k_h = keras.layers.Embedding(8, 6, mask_zero=True)(k_inp)
    k_out = keras.layers.Attention(dropout=0.5)([k_h, k_h])
    k_model = keras.Model(k_inp, keras.layers.GlobalAveragePooling1D()(k_out))
    k_model.set_weights(model.get_weights())
    run = jax.jit(model.apply, static_argnames="training")
    got, _ = run(model.variables, tokens)
    _close(got, k_model.predict(tokens, verbose=0))
    a, _ = run(model.variables, tokens, training=True, rng=jax.random.key(0))
    b, _ = run(model.variables, tokens, training=True, rng=jax.random.key(1))
    assert not np.allclose(a, b)
    assert not att.needs_rng() or att.dropout == 0.5
    with pytest.raises(ValueError, match="list of inputs"):
        layers.Attention()(jaxgraph.Input((3, 2)))


# ---------------------------------------------------------------------------- EinsumDense


@pytest.mark.parametrize("equation,output_shape,bias_axes,in_shape", [
    ("ab,bc->ac", 5, "c", (2, 3)),
    ("abc,cd->abd", (None, 4), "d", (2, 3, 6)),
    ("abc,cde->abde", (None, 2, 3), "de", (2, 4, 5)),
    ("...b,bc->...c", 3, "c", (2, 4, 5)),
    ("abc,cd->abd", (4, 3), None, (2, 4, 6)),
])
def test_einsum_dense_matches_keras(equation, output_shape, bias_axes, in_shape):
    x = _rand(in_shape, 15)
    kwargs = dict(equation=equation, output_shape=output_shape, bias_axes=bias_axes,
                  activation="tanh")
    ours, theirs = layers.EinsumDense(**kwargs), keras.layers.EinsumDense(**kwargs)
    theirs(x)
    ours(x)
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    weights = [w + 0.3 for w in theirs.get_weights()]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    _close(ours(x), theirs(x))
    sym = (None,) + in_shape[1:]
    # Keras leaves an output axis None where output_shape says None; we take it from the
    # input axis of the same letter.
    got, want = ours.compute_output_shape(sym), tuple(theirs.compute_output_shape(sym))
    assert len(got) == len(want)
    assert all(w is None or g == w for g, w in zip(got, want))
    assert got[1:] == np.asarray(ours(x)).shape[1:]


def test_einsum_dense_errors_and_fans():
    with pytest.raises(ValueError, match="kernel letter"):
        layers.EinsumDense("ab,bz->ac", output_shape=3)(jaxgraph.Input((4,)))
    with pytest.raises(ValueError, match="output_shape"):
        layers.EinsumDense("abc,cd->abd", output_shape=3)(jaxgraph.Input((2, 4)))
    with pytest.raises(ValueError, match="equation"):
        layers.EinsumDense("abcd", output_shape=3)
    # Glorot fans over the kernel's input / output axes: (64, 4*8) -> limit sqrt(6/96).
    layer = layers.EinsumDense("abc,cde->abde", output_shape=(None, 4, 8))
    layer(np.zeros((1, 2, 64), "float32"))
    kernel = np.asarray(layer.get_weights()[0])
    assert kernel.shape == (64, 4, 8)
    assert np.abs(kernel).max() <= np.sqrt(6 / 96) + 1e-6
    assert np.abs(kernel).max() > 0.8 * np.sqrt(6 / 96)

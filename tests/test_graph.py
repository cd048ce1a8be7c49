"""Graph semantics: building, errors in the user's terms, structures, sharing, config."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgraph import Input, Model, Sequential, layers
from jaxgraph.layers import Layer


def _mlp(name="mlp"):
    x = Input(shape=(6,), name=f"{name}_in")
    h = layers.Dense(5, activation="relu", name=f"{name}_h")(x)
    y = layers.Dense(3, name=f"{name}_out")(h)
    return Model(x, y, name=name)


def _np(seed, *shape):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


# ---------------------------------------------------------------------------- errors


def test_wrong_shape_call_fails_at_build_time_naming_layer_and_shapes():
    dense = layers.Dense(4, name="proj")
    dense(Input(shape=(8,)))
    with pytest.raises(ValueError) as err:
        dense(Input(shape=(5,)))
    msg = str(err.value)
    assert "'proj'" in msg and "8" in msg and "(None, 5)" in msg


def test_wrong_shape_into_nested_model_names_model_input_and_shapes():
    inner = _mlp("inner_shape")
    with pytest.raises(ValueError) as err:
        inner(Input(shape=(7,)))
    msg = str(err.value)
    assert "inner_shape_in" in msg and "(None, 6)" in msg and "(None, 7)" in msg


def test_concatenate_mismatch_names_layer():
    a, b = Input(shape=(3, 4)), Input(shape=(5, 4))
    with pytest.raises(ValueError, match="'cat'.*matching shapes"):
        layers.Concatenate(axis=-1, name="cat")([a, b])


def test_disconnected_graph_names_the_unreachable_input():
    a = Input(shape=(3,), name="present")
    b = Input(shape=(3,), name="forgotten")
    y = layers.add([layers.Dense(3)(a), b])
    with pytest.raises(ValueError, match="(?i)graph disconnected.*'forgotten'"):
        Model(a, y)


def test_book_unrelated_input_is_disconnected():
    x = Input(shape=(64,))
    y = layers.Dense(10)(layers.Dense(32)(x))
    unrelated = Input(shape=(32,), name="unrelated_input")
    with pytest.raises(ValueError, match="disconnected") as err:
        Model(unrelated, y)
    assert x.name in str(err.value)


def test_inputs_not_from_input_raise_type_error():
    x = Input(shape=(3,))
    h = layers.Dense(4, name="hidden_not_input")(x)
    with pytest.raises(TypeError, match="hidden_not_input"):
        Model(h, layers.Dense(2)(h))
    with pytest.raises(TypeError):
        Model(np.zeros((1, 3)), h)


def test_duplicate_layer_names_raise():
    x = Input(shape=(3,))
    y = layers.Dense(3, name="twin")(layers.Dense(3, name="twin")(x))
    with pytest.raises(ValueError, match="'twin'.*unique"):
        Model(x, y)
    with pytest.raises(ValueError, match="'twin'"):
        Sequential([layers.Dense(2, name="twin", input_shape=(3,)),
                    layers.Dense(2, name="twin")])


# ---------------------------------------------------------------------------- structures


def test_list_and_dict_inputs_and_outputs():
    a = Input(shape=(3,), name="left")
    b = Input(shape=(2,), name="right")
    merged = layers.concatenate([a, b])
    out1 = layers.Dense(4, name="o1")(merged)
    out2 = layers.Dense(1, name="o2")(merged)
    list_model = Model([a, b], [out1, out2])
    dict_model = Model({"left": a, "right": b}, {"score": out2, "features": out1})
    variables = list_model.init(jax.random.key(0))
    xa, xb = _np(0, 4, 3), _np(1, 4, 2)

    outs, _ = list_model.apply(variables, [xa, xb])
    assert isinstance(outs, list) and [o.shape for o in outs] == [(4, 4), (4, 1)]
    by_name, _ = list_model.apply(variables, {"left": xa, "right": xb})
    np.testing.assert_allclose(outs[0], by_name[0])

    d_outs, _ = dict_model.apply(dict_model.variables, {"right": xb, "left": xa})
    assert set(d_outs) == {"score", "features"}
    assert d_outs["score"].shape == (4, 1) and d_outs["features"].shape == (4, 4)
    # Keras 3 flattens dicts in sorted key order (as JAX pytrees do).
    assert dict_model.output_names == ["features", "score"]
    assert [t.shape for t in dict_model.outputs] == [(None, 4), (None, 1)]

    with pytest.raises(ValueError, match="missing.*'right'"):
        list_model.apply(variables, {"left": xa})
    with pytest.raises(ValueError, match="expects 2 inputs"):
        list_model.apply(variables, xa)


def test_single_array_input_and_shape_check():
    model = _mlp("single")
    variables = model.init(0)
    out, _ = model.apply(variables, _np(0, 2, 6))
    assert out.shape == (2, 3)
    with pytest.raises(ValueError, match="single_in.*\\(2, 5\\)"):
        model.apply(variables, _np(0, 2, 5))


def test_nested_model_with_dict_outputs_keeps_each_output_with_its_name():
    inner_in = Input(shape=(3,))
    inner = Model(inner_in, {"zeta": layers.Dense(5)(inner_in), "alpha": layers.Dense(2)(inner_in)})
    x = Input(shape=(3,))
    out = inner(x)
    assert out["zeta"].shape == (None, 5) and out["alpha"].shape == (None, 2)
    model = Model(x, [out["zeta"], out["alpha"]])
    (zeta, alpha), _ = model.apply(model.variables, _np(0, 2, 3))
    assert zeta.shape == (2, 5) and alpha.shape == (2, 2)
    direct, _ = inner.apply(inner.variables, _np(0, 2, 3))
    np.testing.assert_allclose(zeta, direct["zeta"], rtol=1e-6)


# ---------------------------------------------------------------------------- Sequential


def test_sequential_list_add_pop_and_input_shape():
    model = Sequential([layers.Dense(4, input_shape=(3,)), layers.Dense(2)])
    assert model.count_params() == 3 * 4 + 4 + 4 * 2 + 2
    model.add(layers.Dense(7))
    assert model.output_shape == (None, 7)
    popped = model.pop()
    assert isinstance(popped, layers.Dense) and popped.units == 7
    assert model.output_shape == (None, 2) and len(model.layers) == 2
    out, _ = model.apply(model.init(0), _np(0, 5, 3))
    assert out.shape == (5, 2)
    with pytest.raises(TypeError, match="layer"):
        model.add("not a layer")


def test_sequential_deferred_build_on_symbolic_call_and_build():
    deferred = Sequential([layers.Dense(4), layers.Dense(2)])
    assert not deferred.built
    with pytest.raises(ValueError, match="no input shape yet"):
        deferred.count_params()
    y = deferred(Input(shape=(9,)))
    assert y.shape == (None, 2) and deferred.count_params() == 9 * 4 + 4 + 4 * 2 + 2

    built = Sequential()
    built.add(layers.Dense(3))
    built.build((None, 5))
    assert built.input_shape == (None, 5) and built.count_params() == 18


def test_sequential_with_input_and_eager_first_call():
    model = Sequential([Input(shape=(4,)), layers.Dense(3, activation="tanh")])
    assert model.output_shape == (None, 3)
    eager = Sequential([layers.Dense(2)])
    out = eager(np.ones((3, 5), "float32"))
    assert out.shape == (3, 2) and eager.input_shape == (None, 5)
    with pytest.raises(TypeError, match="first element"):
        Sequential([layers.Dense(2), Input(shape=(3,))])


# ---------------------------------------------------------------------------- introspection


def test_get_layer_by_name_and_index():
    model = _mlp("getter")
    assert model.get_layer("getter_h").units == 5
    assert model.get_layer(index=0).name == "getter_in"
    assert model.get_layer(index=-1).name == "getter_out"
    with pytest.raises(ValueError, match="No such layer: 'nope'.*getter_h"):
        model.get_layer("nope")
    with pytest.raises(ValueError, match="index=9"):
        model.get_layer(index=9)
    with pytest.raises(ValueError, match="not both"):
        model.get_layer("getter_h", index=1)


def test_layer_order_follows_keras_depth_order():
    text = Input(shape=(4,), name="text")
    question = Input(shape=(3,), name="question")
    t = layers.Dense(5, name="t1")(text)
    t = layers.Dense(5, name="t2")(t)
    q = layers.Dense(5, name="q1")(question)
    out = layers.Dense(1, name="head")(layers.concatenate([t, q], name="cat"))
    model = Model([text, question], out)
    # Deepest first; ties in the order a walk from the output first meets them.
    assert [layer.name for layer in model.layers] == [
        "text", "t1", "question", "t2", "q1", "cat", "head"]


def test_feature_extractor_shares_weights():
    model = _mlp("extract")
    features = Model(model.input, [layer.output for layer in model.layers])
    assert features.count_params() == model.count_params()
    x = _np(3, 2, 6)
    outs = features(x)
    assert [o.shape for o in outs] == [(2, 6), (2, 5), (2, 3)]
    np.testing.assert_allclose(outs[-1], model(x), rtol=1e-6)

    variables = jax.tree_util.tree_map(lambda a: a * 0 + 0.5, model.variables)
    model.variables = variables
    np.testing.assert_allclose(features(x)[-1], model(x), rtol=1e-6)
    np.testing.assert_allclose(
        features.variables["params"]["extract_out"]["kernel"], np.full((5, 3), 0.5))


def test_sub_model_from_intermediate_outputs():
    model = _mlp("sub")
    hidden = Model(model.input, model.get_layer("sub_h").output)
    x = _np(4, 3, 6)
    h = hidden(x)
    w = model.get_layer("sub_out").get_weights()
    np.testing.assert_allclose(model(x), h @ w[0] + w[1], rtol=1e-5, atol=1e-6)

    base = Sequential([layers.Dense(4, name="base_a"), layers.Dense(2, name="base_b")])
    outer_in = Input(shape=(3,), name="outer_in")
    Model(outer_in, layers.Dense(1)(base(outer_in)))
    first = Model(base.input, base.get_layer("base_a").output)
    assert first.output_shape == (None, 4)
    with pytest.raises(ValueError, match="disconnected") as err:
        Model(outer_in, base.get_layer("base_a").output)
    assert base.inputs[0].name in str(err.value)


def test_shared_layer_output_needs_get_output_at():
    shared = layers.Dense(3, name="siamese_dense")
    a, b = Input(shape=(2,)), Input(shape=(2,))
    ya, yb = shared(a), shared(b)
    with pytest.raises(AttributeError, match="get_output_at"):
        _ = shared.output
    assert shared.get_output_at(0) is ya and shared.get_output_at(1) is yb
    assert shared.get_input_at(1) is b
    with pytest.raises(ValueError, match="called 2 time"):
        shared.get_output_at(2)
    model = Model([a, b], layers.add([ya, yb]))
    params = model.init(0)["params"]
    assert list(params) == ["siamese_dense"]


# ---------------------------------------------------------------------------- weights


def test_variables_round_trip_and_shape_errors():
    model = _mlp("vars")
    new = model.init(jax.random.key(7))
    model.variables = new
    got = model.variables
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(new)):
        np.testing.assert_array_equal(a, b)
    bad = jax.tree_util.tree_map(lambda a: a, new)
    bad["params"]["vars_h"]["kernel"] = jnp.zeros((2, 2))
    with pytest.raises(ValueError, match="vars_h/kernel.*\\(6, 5\\)"):
        model.variables = bad
    missing = {"params": {"vars_h": new["params"]["vars_h"]}, "state": {}}
    with pytest.raises(KeyError, match="vars_out"):
        model.variables = missing


def test_get_and_set_weights():
    model = _mlp("gw")
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(6, 5), (5,), (5, 3), (3,)]
    model.set_weights([w + 1 for w in weights])
    np.testing.assert_allclose(model.get_layer("gw_h").get_weights()[1], weights[1] + 1)
    with pytest.raises(ValueError, match="4 weight arrays.*3"):
        model.set_weights(weights[:3])
    with pytest.raises(ValueError, match="'gw_h'.*kernel.*\\(6, 5\\)"):
        model.set_weights([np.zeros((2, 2))] + weights[1:])


def test_trainable_propagates_through_nested_models_and_summary():
    inner = Sequential([layers.Dense(4, input_shape=(3,)), layers.Dense(2)], name="frozen_part")
    x = Input(shape=(3,))
    model = Model(x, layers.Dense(1, name="head_t")(inner(x)))
    assert len(model.trainable_weights) == 6
    inner.trainable = False
    assert all(not layer.trainable for layer in inner.layers)
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) == 4
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Trainable params: 3 " in text and "Non-trainable params: 26 " in text
    inner.trainable = True
    assert len(model.trainable_weights) == 6


# ---------------------------------------------------------------------------- config


def _config_model():
    shared = layers.Dense(4, activation="relu", name="cfg_shared")
    nested = _mlp("cfg_nested")
    seq = Sequential([layers.Dense(3, name="cfg_seq_a"), layers.Dense(6, name="cfg_seq_b")],
                     name="cfg_seq")
    a = Input(shape=(6,), name="cfg_a")
    b = Input(shape=(6,), name="cfg_b")
    sa, sb = shared(a), shared(b)
    mixed = sa + sb * 2 - sa[:, :1]
    n = nested(layers.concatenate([sa, sb], name="cfg_cat")[:, :6])
    s = seq(a)
    out = {"mixed": mixed, "nested": n, "seq": s * 0.5 + b}
    return Model([a, b], out, name="cfg_model")


def test_config_round_trip_json_and_identical_outputs():
    model = _config_model()
    config = model.get_config()
    text = json.dumps(config)
    rebuilt = Model.from_config(json.loads(text))
    assert [layer.name for layer in rebuilt.layers] == [layer.name for layer in model.layers]
    assert rebuilt.count_params() == model.count_params()
    assert rebuilt.get_layer("cfg_nested").count_params() == model.get_layer(
        "cfg_nested").count_params()
    rebuilt.set_weights(model.get_weights())
    x = [_np(0, 3, 6), _np(1, 3, 6)]
    want, got = model(x), rebuilt(x)
    assert set(want) == set(got) == {"mixed", "nested", "seq"}
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-6)
    # The shared layer is still shared: one entry in the params pytree, two calls.
    assert len(rebuilt.get_layer("cfg_shared").inbound_nodes) == 2
    assert "cfg_shared" in rebuilt.init(0)["params"]


def test_sequential_config_round_trip():
    model = Sequential([layers.Dense(4, input_shape=(3,), activation="relu"),
                        layers.Dropout(0.3), layers.Dense(1)], name="seq_cfg")
    rebuilt = Sequential.from_config(json.loads(json.dumps(model.get_config())))
    assert isinstance(rebuilt, Sequential) and rebuilt.input_shape == (None, 3)
    rebuilt.set_weights(model.get_weights())
    x = _np(2, 5, 3)
    np.testing.assert_allclose(rebuilt(x), model(x), rtol=1e-6)


class Scale(Layer):
    """The example from jaxgraph.layers.base's docstring."""

    def build(self, input_shape):
        self.add_weight("gamma", (input_shape[-1],), initializer="ones")

    def call(self, w, x):
        return x * w["gamma"]


def test_custom_layer_subclass_works_and_round_trips():
    x = Input(shape=(4,))
    scaled = Scale(name="my_scale")(x)
    model = Model(x, layers.Dense(2)(scaled))
    assert model.get_layer("my_scale").count_params() == 4
    params = model.init(0)["params"]
    np.testing.assert_array_equal(params["my_scale"]["gamma"], np.ones(4))
    grads = jax.grad(lambda p: model.apply({"params": p, "state": {}}, _np(0, 2, 4))[0].sum())(
        params)
    assert grads["my_scale"]["gamma"].shape == (4,)
    rebuilt = Model.from_config(json.loads(json.dumps(model.get_config())))
    assert isinstance(rebuilt.get_layer("my_scale"), Scale)
    rebuilt.set_weights([w * 3 for w in model.get_weights()])
    assert rebuilt.get_layer("my_scale").get_weights()[0].tolist() == [3.0] * 4


def test_lambda_with_jnp_function_infers_output_shape():
    x = Input(shape=(5, 4))
    summed = layers.Lambda(jnp.sum, arguments={"axis": 1})(x)
    assert summed.shape == (None, 4)
    sliced = layers.Lambda(lambda t: t[:, ::2, :3])(x)
    assert sliced.shape == (None, 3, 3)
    var_len = layers.Lambda(lambda t: jnp.concatenate([t, t], axis=1))(Input(shape=(None, 2)))
    assert var_len.shape == (None, None, 2)
    model = Model(x, summed)
    data = _np(0, 2, 5, 4)
    np.testing.assert_allclose(model(data), data.sum(axis=1), rtol=1e-6)
    rebuilt = Model.from_config(json.loads(json.dumps(model.get_config())))
    np.testing.assert_allclose(rebuilt(data), data.sum(axis=1), rtol=1e-6)


class MaskedMean(Layer):
    """Average over the time axis, counting only unmasked steps."""

    def call(self, w, x, mask=None):
        if mask is None:
            return x.mean(axis=1)
        m = mask[..., None].astype(x.dtype)
        return (x * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1.0)


def test_embedding_mask_reaches_layer_mask_argument():
    tokens = Input(shape=(None,), dtype="int32")
    emb = layers.Embedding(10, 3, mask_zero=True, name="masked_emb")
    model = Model(tokens, MaskedMean()(emb(tokens)))
    data = np.array([[3, 4, 0, 0], [5, 0, 0, 0]], "int32")
    table = np.asarray(emb.get_weights()[0])
    want = np.stack([table[[3, 4]].mean(axis=0), table[5]])
    np.testing.assert_allclose(model(data), want, rtol=1e-6)
    unmasked = Model(tokens, MaskedMean()(layers.Embedding(10, 3)(tokens)))
    assert unmasked(data).shape == (2, 3)


def test_mask_passes_through_mask_supporting_layers():
    tokens = Input(shape=(4,), dtype="int32")
    x = layers.Embedding(10, 3, mask_zero=True)(tokens)
    x = layers.Dense(3)(x)  # supports masking: passes the mask on
    model = Model(tokens, MaskedMean()(x))
    data = np.array([[1, 0, 0, 0]], "int32")
    dense_only = Model(tokens, x)
    np.testing.assert_allclose(model(data), dense_only(data)[:, 0], rtol=1e-6)


def test_int32_input_to_embedding_dtype():
    tokens = Input(shape=(5,), dtype="int32")
    assert tokens.dtype == "int32"
    emb = layers.Embedding(20, 4)(tokens)
    assert emb.dtype == "float32" and emb.shape == (None, 5, 4)
    model = Model(tokens, emb)
    as_float = np.array([[1, 2, 3, 4, 5]], "float32")
    out = model(as_float)  # cast to the Input's dtype
    np.testing.assert_allclose(out, model(as_float.astype("int32")))
    assert Input(shape=(2,), dtype=jnp.int32).dtype == "int32"


def test_eager_calls_on_numpy_arrays():
    dense = layers.Dense(3, name="eager_dense")
    x = _np(0, 2, 4)
    y = dense(x)
    kernel, bias = dense.get_weights()
    np.testing.assert_allclose(y, x @ kernel + bias, rtol=1e-5)
    model = _mlp("eager_model")
    out = model(_np(1, 2, 6))
    assert out.shape == (2, 3)
    pure, _ = model.apply(model.variables, _np(1, 2, 6))
    np.testing.assert_allclose(out, pure)


def test_apply_is_pure_under_jit_grad_vmap():
    model = _mlp("pure")
    keys = jax.random.split(jax.random.key(0), 3)
    stacked = jax.vmap(model.init)(keys)
    x = _np(2, 4, 6)
    outs = jax.jit(jax.vmap(lambda v: model.apply(v, x)[0]))(stacked)
    assert outs.shape == (3, 4, 3)
    assert not np.allclose(outs[0], outs[1])
    one = jax.tree_util.tree_map(lambda a: a[1], stacked)
    np.testing.assert_allclose(outs[1], model.apply(one, x)[0], rtol=1e-5, atol=1e-6)

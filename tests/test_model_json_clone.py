"""`model.to_json()` / `models.model_from_json()` and `models.clone_model(...)` with
`input_tensors`, `clone_function`, `call_function` and `recursive`, checked against
Keras 3 where it is installed."""

import json
import os
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxgraph
from jaxgraph import Input, Model, Sequential, layers
from jaxgraph.models import clone_model, model_from_json

RNG = np.random.default_rng(0)
X4 = RNG.normal(size=(5, 4)).astype("float32")
X3 = RNG.normal(size=(5, 3)).astype("float32")


@pytest.fixture(scope="module")
def keras():
    os.environ["KERAS_BACKEND"] = "jax"
    return pytest.importorskip("keras")


def _randomize(model, seed=1):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype("float32")
                       for w in model.get_weights()])


def _close(a, b, atol=1e-5):
    if isinstance(a, dict):
        assert sorted(a) == sorted(b)
        for k in a:
            _close(a[k], b[k], atol)
        return
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            _close(u, v, atol)
        return
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=atol)


def _same_architecture(a, b):
    assert [(lay.name, type(lay).__name__) for lay in a.layers] == \
        [(lay.name, type(lay).__name__) for lay in b.layers]
    assert [tuple(t.shape) for t in a.outputs] == [tuple(t.shape) for t in b.outputs]
    assert a.count_params() == b.count_params()
    assert [w.shape for w in a.get_weights()] == [w.shape for w in b.get_weights()]


def _weights_differ(a, b):
    return any(not np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


def _graph_model():
    """Two inputs, a shared layer used twice, a nested Sequential and a nested Model."""
    jaxgraph.utils.set_random_seed(0)
    a = Input((4,), name="a")
    b = Input((3,), name="b")
    shared = layers.Dense(4, activation="tanh", name="shared")
    h = shared(shared(a))
    inner_seq = Sequential([layers.Dense(5, activation="relu"), layers.Dropout(0.2)],
                           name="inner_seq")
    i = Input((3,), name="inner_in")
    inner_fn = Model(i, layers.Dense(2, name="inner_dense")(i), name="inner_fn")
    merged = layers.concatenate([inner_seq(h), inner_fn(b)], name="merged")
    out1 = layers.Dense(2, name="out1")(layers.Dropout(0.5, name="drop")(merged))
    out2 = layers.Dense(1, activation="sigmoid", name="out2")(merged)
    return Model([a, b], [out1, out2], name="graph")


# ---------------------------------------------------------------------------- to_json


def test_to_json_round_trip_functional_with_shared_and_nested_models():
    model = _graph_model()
    text = model.to_json()
    record = json.loads(text)
    assert set(record) == {"module", "class_name", "config", "registered_name"}
    assert record["class_name"] == "Functional" and record["config"]["name"] == "graph"
    assert record["module"] == "keras.src.models.functional"
    assert record["registered_name"] == "Functional"
    rebuilt = model_from_json(text)
    assert isinstance(rebuilt, jaxgraph.Model) and rebuilt.name == "graph"
    _same_architecture(rebuilt, model)
    assert isinstance(rebuilt.get_layer("inner_seq"), Sequential)
    assert rebuilt.get_layer("inner_seq") is not model.get_layer("inner_seq")
    # the shared layer is one layer called twice, as in the original
    assert len([n for n in rebuilt._nodes_in_order if n.layer.name == "shared"]) == 2
    assert _weights_differ(rebuilt, model)  # fresh weights, not the original's
    rebuilt.set_weights(model.get_weights())
    _close(rebuilt.predict([X4, X3], verbose=0), model.predict([X4, X3], verbose=0))
    # and again: the rebuilt model writes the same architecture
    assert json.loads(rebuilt.to_json()) == record


def test_to_json_passes_kwargs_to_json_dumps():
    model = _graph_model()
    pretty = model.to_json(indent=2, sort_keys=True)
    assert pretty == json.dumps(json.loads(model.to_json()), indent=2, sort_keys=True)
    assert "\n  " in pretty
    with pytest.raises(TypeError):
        model.to_json(no_such_json_argument=1)


def test_to_json_sequential_built_and_unbuilt():
    jaxgraph.utils.set_random_seed(1)
    seq = Sequential([layers.Dense(8, activation="relu", input_shape=(4,)),
                      layers.BatchNormalization(), layers.Dense(3, activation="softmax")],
                     name="seq")
    rebuilt = model_from_json(seq.to_json())
    assert isinstance(rebuilt, Sequential) and rebuilt.name == "seq"
    _same_architecture(rebuilt, seq)
    rebuilt.set_weights(seq.get_weights())
    _close(rebuilt.predict(X4, verbose=0), seq.predict(X4, verbose=0))

    unbuilt = Sequential([layers.Dense(6), layers.Dense(2)], name="later")
    again = model_from_json(unbuilt.to_json())
    assert isinstance(again, Sequential) and not again.built
    assert [type(lay).__name__ for lay in again.layers] == ["Dense", "Dense"]
    assert again.predict(X4, verbose=0).shape == (5, 2)  # builds from its first data
    assert again.count_params() == 4 * 6 + 6 + 6 * 2 + 2


def test_to_json_dict_inputs_and_outputs():
    jaxgraph.utils.set_random_seed(2)
    inputs = {"x": Input((4,), name="x"), "y": Input((3,), name="y")}
    cat = layers.concatenate([inputs["x"], inputs["y"]])
    model = Model(inputs, {"p": layers.Dense(2, name="p")(cat),
                           "q": layers.Dense(1, name="q")(cat)})
    rebuilt = model_from_json(model.to_json())
    _same_architecture(rebuilt, model)
    rebuilt.set_weights(model.get_weights())
    data = {"x": X4, "y": X3}
    got, want = rebuilt.predict(data, verbose=0), model.predict(data, verbose=0)
    assert sorted(got) == ["p", "q"]
    _close(got, want)


def ticket_model_class():
    class TicketModel(jaxgraph.Model):
        def __init__(self, num_departments, **kwargs):
            super().__init__(**kwargs)
            self.num_departments = num_departments
            self.concat_layer = layers.Concatenate()
            self.mixing_layer = layers.Dense(16, activation="relu")
            self.priority_scorer = layers.Dense(1, activation="sigmoid")
            self.department_classifier = layers.Dense(num_departments, activation="softmax")

        def call(self, inputs):
            features = self.mixing_layer(self.concat_layer([inputs["title"], inputs["body"]]))
            return self.priority_scorer(features), self.department_classifier(features)

    return TicketModel


TICKETS = {"title": RNG.random((6, 5)).astype("float32"),
           "body": RNG.random((6, 7)).astype("float32")}


def test_to_json_subclassed_model_gives_its_graph():
    model = ticket_model_class()(num_departments=3)
    model(TICKETS)  # traced once: now a graph
    rebuilt = model_from_json(model.to_json())
    assert type(rebuilt) is jaxgraph.Model
    _same_architecture(rebuilt, model)
    rebuilt.set_weights(model.get_weights())
    _close(rebuilt.predict(TICKETS, verbose=0), model.predict(TICKETS, verbose=0))


def test_to_json_subclassed_model_with_its_own_config():
    base = ticket_model_class()

    class ConfiguredTickets(base):
        def get_config(self):
            return {"num_departments": self.num_departments, "name": self.name}

    model = ConfiguredTickets(num_departments=4, name="tickets")
    model(TICKETS)
    record = json.loads(model.to_json())
    assert record["class_name"] == "ConfiguredTickets"
    assert record["module"] == __name__
    assert record["config"] == {"num_departments": 4, "name": "tickets"}
    rebuilt = model_from_json(model.to_json(),
                              custom_objects={"ConfiguredTickets": ConfiguredTickets})
    assert isinstance(rebuilt, ConfiguredTickets) and rebuilt.num_departments == 4
    rebuilt(TICKETS)  # its layers are made anew by __init__ (new auto names, as in Keras)
    assert [type(lay).__name__ for lay in rebuilt.layers] == \
        [type(lay).__name__ for lay in model.layers]
    assert rebuilt.count_params() == model.count_params()
    assert [tuple(t.shape) for t in rebuilt.outputs] == [tuple(t.shape) for t in model.outputs]


def test_model_from_json_custom_layer_and_registered_lambda():
    @jaxgraph.saving.register_serializable(package="json_test")
    class Scale(layers.Layer):
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, w, x):
            return x * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    x = Input((4,))
    model = Model(x, layers.Lambda(jnp.tanh, name="lam")(Scale(3.0, name="scale")(x)))
    record = json.loads(model.to_json())
    entry = [e for e in record["config"]["layers"] if e["name"] == "scale"][0]
    assert entry["registered_name"] == "json_test>Scale"
    rebuilt = model_from_json(model.to_json())
    assert isinstance(rebuilt.get_layer("scale"), Scale)
    assert rebuilt.get_layer("scale").factor == 3.0
    _close(rebuilt.predict(X4, verbose=0), np.tanh(3.0 * X4))


def test_model_from_json_never_imports_what_the_string_names(import_spy):
    calls = import_spy
    x = Input((4,))
    record = json.loads(Model(x, layers.Dense(2, name="d")(x)).to_json())
    entry = [e for e in record["config"]["layers"] if e["name"] == "d"][0]
    entry["class_name"] = "Pwned"
    entry["module"] = "jg_json_evil_module"
    with pytest.raises(ValueError, match="Pwned"):
        model_from_json(json.dumps(record))
    # the top-level class too: never imported, only looked up
    top = json.loads(Model(x, layers.Dense(2)(x)).to_json())
    top["class_name"], top["module"] = "Evil", "jg_json_evil_top"
    with pytest.raises(ValueError, match="Evil"):
        model_from_json(json.dumps(top))
    assert not [c for c in calls if "evil" in c]
    assert "jg_json_evil_module" not in sys.modules and "jg_json_evil_top" not in sys.modules


def test_model_from_json_rejects_what_is_not_a_model_json():
    with pytest.raises(ValueError, match="not valid JSON"):
        model_from_json("{not json")
    with pytest.raises(ValueError, match="class_name"):
        model_from_json(json.dumps({"layers": []}))
    with pytest.raises(TypeError, match="JSON string"):
        model_from_json({"class_name": "Model", "config": {}})


def test_model_from_json_is_exported_like_keras():
    assert jaxgraph.models.model_from_json is model_from_json
    assert jaxgraph.saving.model_from_json is not None
    assert "model_from_json" in jaxgraph.saving.__all__


# ---------------------------------------------------------------------------- Keras's JSON


def _keras_graph(keras):
    kl = keras.layers
    a = keras.Input((4,), name="a")
    b = keras.Input((3,), name="b")
    shared = kl.Dense(5, activation="relu", name="shared")
    conv = kl.Conv1D(2, 3, name="conv")(kl.Reshape((4, 1), name="reshape")(a))
    merged = kl.concatenate([shared(b), shared(b), kl.Flatten(name="flat")(conv)],
                            name="merged")
    out1 = kl.Dense(2, name="out1")(kl.Dropout(0.5, name="drop")(merged))
    out2 = kl.Dense(1, activation="sigmoid", name="out2")(kl.BatchNormalization(name="bn")(merged))
    return keras.Model([a, b], [out1, out2], name="kgraph")


def test_keras_functional_json_loads(keras):
    km = _keras_graph(keras)
    _randomize(km)
    jm = model_from_json(km.to_json())
    assert type(jm) is jaxgraph.Model and jm.name == "kgraph"
    assert [(lay.name, type(lay).__name__) for lay in jm.layers] == \
        [(lay.name, type(lay).__name__) for lay in km.layers]
    assert [tuple(t.shape) for t in jm.outputs] == [tuple(t.shape) for t in km.outputs]
    assert jm.count_params() == km.count_params()
    jm.set_weights(km.get_weights())
    _close(jm.predict([X4, X3], verbose=0), km.predict([X4, X3], verbose=0))
    # Keras recorded training=False on the Dropout call; Keras lets fit override it, and
    # so does the converted model: dropout is active in training.
    assert not jm.inference_needs_rng()
    variables = jm.variables
    train_out, _ = jm.apply(variables, [X4, X3], training=True, rng=jax.random.key(0))
    test_out, _ = jm.apply(variables, [X4, X3], training=False)
    assert not np.allclose(train_out[0], test_out[0])


def test_keras_sequential_and_nested_json_load(keras):
    kl = keras.layers
    seq = keras.Sequential([keras.Input((4,)), kl.Dense(6, activation="relu"),
                            kl.Dense(3, activation="softmax")], name="kseq")
    _randomize(seq, 3)
    js = model_from_json(seq.to_json())
    assert isinstance(js, Sequential)
    assert [type(lay).__name__ for lay in js.layers] == ["Dense", "Dense"]
    js.set_weights(seq.get_weights())
    _close(js.predict(X4, verbose=0), seq.predict(X4, verbose=0))

    x = keras.Input((4,), name="x")
    outer = keras.Model(x, kl.Dense(2, name="head")(seq(x)), name="outer")
    _randomize(outer, 4)
    jo = model_from_json(outer.to_json())
    assert isinstance(jo.get_layer("kseq"), Sequential)
    assert jo.count_params() == outer.count_params()
    jo.set_weights(outer.get_weights())
    _close(jo.predict(X4, verbose=0), outer.predict(X4, verbose=0))


# ---------------------------------------------------------------------------- clone_model


def _simple(lib):
    x = lib.Input((4,), name="inp")
    h = lib.layers.Dense(8, activation="relu", name="h")(x)
    h = lib.layers.Dropout(0.5, name="drop")(h)
    return lib.Model(x, lib.layers.Dense(3, name="out")(h), name="simple")


def test_clone_simple_functional_matches_keras(keras):
    jm, km = _simple(jaxgraph), _simple(keras)
    jc, kc = clone_model(jm), keras.models.clone_model(km)
    assert [lay.name for lay in jc.layers] == [lay.name for lay in kc.layers]
    assert [type(lay).__name__ for lay in jc.layers] == [type(lay).__name__ for lay in kc.layers]
    assert jc.count_params() == kc.count_params() == jm.count_params()
    assert [tuple(t.shape) for t in jc.outputs] == [tuple(t.shape) for t in kc.outputs]
    assert jc.name == kc.name == "simple"
    # fresh, unshared layers and weights
    assert all(a is not b for a, b in zip(jc.layers, jm.layers))
    assert _weights_differ(jc, jm)
    before = [w.copy() for w in jm.get_weights()]
    jc.set_weights([np.zeros_like(w) for w in jc.get_weights()])
    assert all(np.array_equal(a, b) for a, b in zip(jm.get_weights(), before))
    jc.set_weights(km.get_weights())
    kc.set_weights(km.get_weights())
    _close(jc.predict(X4, verbose=0), kc.predict(X4, verbose=0))


def _shared(lib):
    a = lib.Input((4,), name="a")
    b = lib.Input((4,), name="b")
    shared = lib.layers.Dense(3, name="shared")
    merged = lib.layers.concatenate([shared(a), shared(b)], name="merged")
    return lib.Model([a, b], lib.layers.Dense(1, name="out")(merged), name="siamese")


def test_clone_keeps_shared_layers_shared_like_keras(keras):
    jm, km = _shared(jaxgraph), _shared(keras)
    seen = []

    def counting(layer):
        seen.append(layer.name)
        return layer.__class__.from_config(layer.get_config())

    jc = clone_model(jm, clone_function=counting)
    kc = keras.models.clone_model(km)
    assert seen.count("shared") == 1 and "a" not in seen and "b" not in seen
    assert [lay.name for lay in jc.layers] == [lay.name for lay in kc.layers]
    assert jc.count_params() == kc.count_params() == 4 * 3 + 3 + 6 + 1
    assert len(jc.get_weights()) == len(kc.get_weights()) == 4
    shared = jc.get_layer("shared")
    assert shared is not jm.get_layer("shared")
    assert sum(n.layer is shared for n in jc._nodes_in_order) == 2
    _randomize(km)
    jc.set_weights(km.get_weights())
    _close(jc.predict([X4, X4 * 2], verbose=0), km.predict([X4, X4 * 2], verbose=0))


def test_clone_on_given_input_tensors(keras):
    jm, km = _simple(jaxgraph), _simple(keras)
    new_in = Input((4,), name="fresh")
    jc = clone_model(jm, input_tensors=new_in)
    kc = keras.models.clone_model(km, input_tensors=keras.Input((4,), name="fresh"))
    assert jc.inputs[0] is new_in
    assert [lay.name for lay in jc.layers] == [lay.name for lay in kc.layers]
    assert jc.count_params() == kc.count_params()
    assert tuple(jc.outputs[0].shape) == tuple(kc.outputs[0].shape) == (None, 3)
    # a list of one is taken too (Keras 2's spelling)
    listed = clone_model(jm, input_tensors=[Input((4,), name="listed")])
    assert listed.input_names == ["listed"]
    # multi-input and dict-input models
    a, b = Input((4,), name="a2"), Input((4,), name="b2")
    two = clone_model(_shared(jaxgraph), input_tensors=[a, b])
    assert two.inputs[0] is a and two.inputs[1] is b
    assert two.predict([X4, X4], verbose=0).shape == (5, 1)
    d_in = {"x": Input((4,), name="x"), "y": Input((3,), name="y")}
    dm = Model(d_in, layers.Dense(2)(layers.concatenate([d_in["x"], d_in["y"]])))
    new = {"x": Input((4,), name="x"), "y": Input((3,), name="y")}
    dc = clone_model(dm, input_tensors=new)
    assert dc.input["x"] is new["x"] and dc.input["y"] is new["y"]
    assert dc.predict({"x": X4, "y": X3}, verbose=0).shape == (5, 2)


def test_clone_input_tensors_errors():
    jm = _simple(jaxgraph)
    with pytest.raises(ValueError, match="1 input"):
        clone_model(jm, input_tensors=[Input((4,)), Input((4,))])
    with pytest.raises(ValueError, match="symbolic"):
        clone_model(jm, input_tensors=X4)
    with pytest.raises(ValueError, match="dict"):
        clone_model(jm, input_tensors={"inp": Input((4,))})
    with pytest.raises(ValueError, match="unexpected keyword"):
        clone_model(jm, weights=True)


def _no_dropout(lib):
    def clone_function(layer):
        if isinstance(layer, lib.layers.Dropout):
            return lib.layers.Identity(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    return clone_function


def test_clone_function_replaces_dropout_like_keras(keras):
    jm, km = _simple(jaxgraph), _simple(keras)
    jc = clone_model(jm, clone_function=_no_dropout(jaxgraph))
    kc = keras.models.clone_model(km, clone_function=_no_dropout(keras))
    assert [type(lay).__name__ for lay in jc.layers] == \
        [type(lay).__name__ for lay in kc.layers] == ["InputLayer", "Dense", "Identity", "Dense"]
    assert jc.count_params() == kc.count_params()
    _randomize(km)
    jc.set_weights(km.get_weights())
    # no randomness left: training mode gives the inference output
    train_out, _ = jc.apply(jc.variables, X4, training=True, rng=jax.random.key(3))
    _close(train_out, km.predict(X4, verbose=0))
    assert not jc.needs_rng() and jm.needs_rng()


def _relu_dense(lib):
    def clone_function(layer):
        config = layer.get_config()
        if isinstance(layer, lib.layers.Dense):
            config["activation"] = "relu"
        return layer.__class__.from_config(config)

    return clone_function


def test_clone_function_changes_activation_like_keras(keras):
    jm, km = _simple(jaxgraph), _simple(keras)
    jc = clone_model(jm, clone_function=_relu_dense(jaxgraph))
    kc = keras.models.clone_model(km, clone_function=_relu_dense(keras))
    assert jc.get_layer("out").get_config()["activation"] == "relu"
    _randomize(km, 5)
    jc.set_weights(km.get_weights())
    kc.set_weights(km.get_weights())
    got = jc.predict(X4, verbose=0)
    _close(got, kc.predict(X4, verbose=0))
    assert (got >= 0).all() and not np.allclose(got, km.predict(X4, verbose=0))


def test_clone_function_returning_the_layer_shares_it():
    jm = _simple(jaxgraph)
    shared_out = jm.get_layer("out")

    def keep_out(layer):
        if layer is shared_out:
            return layer
        return layer.__class__.from_config(layer.get_config())

    jc = clone_model(jm, clone_function=keep_out)
    assert jc.get_layer("out") is shared_out
    assert jc.get_layer("h") is not jm.get_layer("h")
    jc.get_layer("h").set_weights(jm.get_layer("h").get_weights())
    _close(jc.predict(X4, verbose=0), jm.predict(X4, verbose=0))
    shared_out.set_weights([w + 1.0 for w in shared_out.get_weights()])  # seen by both
    _close(jc.predict(X4, verbose=0), jm.predict(X4, verbose=0))


def test_clone_nested_models_default_and_recursive():
    model = _graph_model()
    clone = clone_model(model)
    _same_architecture(clone, model)
    for name in ("inner_seq", "inner_fn"):
        assert clone.get_layer(name) is not model.get_layer(name)
        assert type(clone.get_layer(name)) is type(model.get_layer(name))
    assert clone.get_layer("inner_seq").layers[0] is not model.get_layer("inner_seq").layers[0]
    assert _weights_differ(clone, model)
    clone.set_weights(model.get_weights())
    _close(clone.predict([X4, X3], verbose=0), model.predict([X4, X3], verbose=0))

    seen = []

    def counting(layer):
        seen.append(type(layer).__name__)
        return layer.__class__.from_config(layer.get_config())

    flat = clone_model(model, clone_function=counting)
    assert "Sequential" in seen and "Model" in seen  # nested models go to clone_function
    seen.clear()
    deep = clone_model(model, clone_function=counting, recursive=True)
    assert "Sequential" not in seen and "Model" not in seen  # their layers do instead
    assert seen.count("Dense") == 1 + 1 + 1 + 2  # shared once, inner_seq, inner_fn, two heads
    for clone_ in (flat, deep):
        _same_architecture(clone_, model)


def test_clone_sequential_with_clone_function_and_inputs():
    jaxgraph.utils.set_random_seed(4)
    seq = Sequential([Input((4,), name="seq_in"), layers.Dense(8, activation="relu"),
                      layers.Dropout(0.3), layers.Dense(2)], name="seq")
    seen = []

    def counting(layer):
        seen.append(layer.name)
        return _no_dropout(jaxgraph)(layer)

    clone = clone_model(seq, clone_function=counting)
    assert isinstance(clone, Sequential) and clone.name == "seq"
    assert seen == [lay.name for lay in seq.layers]
    assert [type(lay).__name__ for lay in clone.layers] == ["Dense", "Identity", "Dense"]
    assert clone.input_names == ["seq_in"] and clone.count_params() == seq.count_params()
    assert _weights_differ(clone, seq)
    new_in = Input((4,), name="other")
    on_given = clone_model(seq, input_tensors=[new_in])
    assert on_given.inputs[0] is new_in and on_given.output_shape == (None, 2)
    unbuilt = clone_model(Sequential([layers.Dense(3)]))
    assert not unbuilt.built and unbuilt.predict(X4, verbose=0).shape == (5, 3)
    with pytest.raises(ValueError, match="call_function"):
        clone_model(seq, call_function=lambda layer, *a, **k: layer(*a, **k))


def test_call_function_inserts_layers(keras):
    def call_function(lib):
        def fn(layer, *args, **kwargs):
            out = layer(*args, **kwargs)
            if isinstance(layer, lib.layers.Dense):
                out = lib.layers.Dropout(0.5)(out)
            return out
        return fn

    jm, km = _simple(jaxgraph), _simple(keras)
    jc = clone_model(jm, clone_function=lambda layer: layer, call_function=call_function(jaxgraph))
    kc = keras.models.clone_model(km, clone_function=lambda layer: layer,
                                  call_function=call_function(keras))
    assert [type(lay).__name__ for lay in jc.layers] == [type(lay).__name__ for lay in kc.layers]
    assert sum(isinstance(lay, layers.Dropout) for lay in jc.layers) == 3
    assert jc.get_layer("h") is jm.get_layer("h")  # same layers, same weights
    assert jc.count_params() == jm.count_params() == kc.count_params()
    _close(jc.predict(X4, verbose=0), jm.predict(X4, verbose=0))


def test_clone_of_a_compiled_model_is_compiled_with_its_settings():
    jm = _simple(jaxgraph)
    jm.compile(optimizer=jaxgraph.optimizers.Adam(learning_rate=0.01), loss="mse",
               metrics=["mae"])
    clone = clone_model(jm)
    assert clone.optimizer is not None and clone.optimizer is not jm.optimizer
    y = RNG.normal(size=(5, 3)).astype("float32")
    history = clone.fit(X4, y, epochs=2, verbose=0).history
    assert {"loss", "mae"} <= set(history) and len(history["loss"]) == 2
    assert float(clone.optimizer.learning_rate) == pytest.approx(0.01)
    # an optax optimizer has no config: the clone comes back uncompiled, with a warning
    jm.compile(optimizer=optax.sgd(0.1), loss="mse")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plain = clone_model(jm)
    assert any("not compiled" in str(w.message) for w in caught)
    with pytest.raises(RuntimeError, match="compile"):
        plain.evaluate(X4, y, verbose=0)


def test_clone_subclassed_model():
    model = ticket_model_class()(num_departments=3)
    model(TICKETS)
    clone = clone_model(model)
    _same_architecture(clone, model)
    assert _weights_differ(clone, model)
    clone.set_weights(model.get_weights())
    _close(clone.predict(TICKETS, verbose=0), model.predict(TICKETS, verbose=0))
    with pytest.raises(ValueError, match="subclassed"):
        clone_model(model, clone_function=lambda layer: layer)


def test_clone_lambda_with_an_anonymous_function():
    x = Input((4,))
    model = Model(x, layers.Lambda(lambda t: t * 2.0 + 1.0, name="affine")(x))
    clone = clone_model(model)
    assert clone.get_layer("affine") is not model.get_layer("affine")
    _close(clone.predict(X4, verbose=0), X4 * 2.0 + 1.0)


def test_clone_preserves_output_structure_and_mc_dropout():
    i = Input((4,), name="i")
    h = layers.Dense(4, name="h")(i)
    mc = layers.Dropout(0.5, name="mc")(h, training=True)
    model = Model(i, {"mc": layers.Dense(1, name="a")(mc), "plain": layers.Dense(2, name="b")(h)})
    clone = clone_model(model)
    assert sorted(clone.output) == ["mc", "plain"]
    assert clone.inference_needs_rng() and model.inference_needs_rng()


# ---------------------------------------------------------------------------- Keras 3 parity


def test_to_json_records_match_keras(keras):
    """The records Keras 3 writes: Functional (module and registered name), Sequential."""
    x = Input((3,))
    inner = Model(x, layers.Dense(3)(x))
    seq = Sequential([Input((3,)), layers.Dense(2)])
    y = Input((3,))
    outer = Model(y, [seq(inner(y)), inner(y)])
    kx = keras.Input((3,))
    kinner = keras.Model(kx, keras.layers.Dense(3)(kx))
    kseq = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    ky = keras.Input((3,))
    kouter = keras.Model(ky, [kseq(kinner(ky)), kinner(ky)])

    def heads(text):
        record = json.loads(text)
        top = {k: record[k] for k in ("module", "class_name", "registered_name")}
        nested = [(e["module"], e["class_name"], e["registered_name"])
                  for e in record["config"]["layers"]]
        refs = record["config"]["output_layers"]
        return top, nested, [r[1:] for r in refs] if isinstance(refs[0], list) else refs[1:]

    assert heads(outer.to_json()) == heads(kouter.to_json())
    for ours, theirs in ((inner, kinner), (seq, kseq)):
        ours, theirs = json.loads(ours.to_json()), json.loads(theirs.to_json())
        for key in ("module", "class_name", "registered_name"):
            assert ours[key] == theirs[key]
    # get_config names nested functional models as Keras does too
    assert [e["class_name"] for e in outer.get_config()["layers"]] == [
        "InputLayer", "Functional", "Sequential"]


def _keras_reads(keras, model, *xs):
    rebuilt = keras.models.model_from_json(model.to_json())
    rebuilt.set_weights(model.get_weights())
    ours, theirs = model.predict(list(xs), verbose=0), rebuilt.predict(list(xs), verbose=0)
    ours = ours if isinstance(ours, list) else [ours]
    theirs = theirs if isinstance(theirs, list) else [theirs]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        _close(np.asarray(a), np.asarray(b))
    return rebuilt


def test_keras_reads_functional_to_json(keras):
    image = Input((8, 8, 3), name="image")
    x = layers.Conv2D(4, 3, activation="relu", padding="same")(image)
    x = layers.BatchNormalization()(x)
    x = layers.GlobalAveragePooling2D()(layers.MaxPooling2D()(x))
    tokens = Input((5,), dtype="int32", name="tokens")
    e = layers.Embedding(20, 4, mask_zero=True)(tokens)
    y = layers.Bidirectional(layers.GRU(2))(layers.LSTM(3, return_sequences=True)(e))
    merged = layers.Dropout(0.2)(layers.concatenate([x, y, layers.SimpleRNN(2)(e)]))
    out = layers.Dense(3, activation="softmax", name="out")(merged)
    aux = layers.Flatten()(layers.Reshape((3, 1))(layers.Add()([layers.Dense(3)(out), out])))
    model = Model([image, tokens], [out, aux])
    xi = RNG.normal(size=(2, 8, 8, 3)).astype("float32")
    xt = np.array([[1, 2, 0, 0, 0], [3, 4, 5, 6, 7]], "int32")
    rebuilt = _keras_reads(keras, model, xi, xt)
    assert type(rebuilt).__name__ == "Functional"
    assert [lay.name for lay in rebuilt.layers] == [lay.name for lay in model.layers]
    # and jaxgraph reads back what it wrote
    again = model_from_json(model.to_json())
    assert [lay.name for lay in again.layers] == [lay.name for lay in model.layers]


def test_keras_reads_sequential_and_nested_to_json(keras):
    seq = Sequential([layers.Dense(4, activation="relu", input_shape=(3,)), layers.Dropout(0.1),
                      layers.Dense(2)], name="stack")
    assert type(_keras_reads(keras, seq, X3)).__name__ == "Sequential"
    x = Input((3,))
    inner = Model(x, layers.Dense(3, name="inner_dense")(x), name="inner")
    y = Input((3,))
    nested = Model(y, [seq(inner(y)), inner(y)])
    _keras_reads(keras, nested, X3)
    again = model_from_json(nested.to_json())  # outputs of nested models: Keras's index
    again.set_weights(nested.get_weights())
    for a, b in zip(again.predict(X3, verbose=0), nested.predict(X3, verbose=0)):
        _close(a, b)


def test_older_json_that_says_model_still_loads():
    model = _graph_model()
    old = json.loads(model.to_json())
    legacy = {"module": None, "class_name": "Model", "registered_name": None,
              "config": model.get_config()}
    for entry in legacy["config"]["layers"]:
        if entry["class_name"] == "Functional":
            entry["class_name"] = "Model"
    rebuilt = model_from_json(json.dumps(legacy))
    assert json.loads(rebuilt.to_json()) == old


def test_clone_on_intermediate_tensor_like_keras(keras):
    jm, km = _simple(jaxgraph), _simple(keras)
    start = Input((6,), name="start")
    mid = layers.Dense(4, name="pre")(start)
    kstart = keras.Input((6,), name="start")
    kmid = keras.layers.Dense(4, name="pre")(kstart)
    jc = clone_model(jm, input_tensors=mid)
    kc = keras.models.clone_model(km, input_tensors=kmid)
    # Keras stands a fresh input in for the tensor ("<name>CLONE") and builds on it
    assert jc.layers[0].name == "preCLONE" and kc.layers[0].name.endswith("CLONE")
    assert [lay.name for lay in jc.layers[1:]] == [lay.name for lay in kc.layers[1:]]
    assert jc.input_shape == kc.input_shape == (None, 4)
    assert jc.count_params() == kc.count_params()
    # calling the clone on the tensor connects it, as in Keras
    whole = Model(start, jc(mid))
    assert whole.output_shape == (None, 3)
    assert whole.predict(RNG.normal(size=(2, 6)).astype("float32"), verbose=0).shape == (2, 3)
    # a tensor of another width builds the clone's layers for that width
    wide = clone_model(jm, input_tensors=layers.Dense(7)(start))
    assert wide.input_shape == (None, 7)
    seq = Sequential([Input((4,)), layers.Dense(2, name="sd")])
    on_mid = clone_model(seq, input_tensors=mid)
    assert [lay.name for lay in on_mid.layers] == ["sd"] and on_mid.input_shape == (None, 4)
    assert Model(start, on_mid(mid)).output_shape == (None, 2)


def test_clone_input_tensor_errors_like_keras(keras):
    jm = _simple(jaxgraph)
    mid = layers.Dense(4)(Input((6,)))
    with pytest.raises(ValueError, match="same structure as model.input"):
        clone_model(jm, input_tensors=[mid, mid])
    with pytest.raises(ValueError, match="symbolic tensors"):
        clone_model(jm, input_tensors=X4)
    with pytest.raises(ValueError, match="same structure as model.input"):
        clone_model(jm, input_tensors={"inp": mid})
    with pytest.raises(ValueError, match="single"):
        clone_model(Sequential([Input((4,)), layers.Dense(2)]), input_tensors=[mid, mid])

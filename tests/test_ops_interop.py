"""Op nodes (`ops.mean(x)`, `x + y`, `x[0]`, Keras's hidden mask ops) move between Keras 3
and jaxgraph through model JSON and model files, both ways, predicting the same.

Keras writes each `keras.ops` call on KerasTensors as an Operation record (module
`keras.src.ops.numpy`, class `Mean`, the constructor arguments as its config);
jaxgraph reads those as `OpLayer` nodes through a fixed table and writes its op nodes
the same way.
"""

import importlib
import inspect
import json
import sys
import types
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from test_ops import CASES  # noqa: E402  (the calls test_ops checks by value, as graph nodes)

import jaxgraph  # noqa: E402
from jaxgraph import ops as jops  # noqa: E402
from jaxgraph.layers.ops import _KERAS_EAGER, keras_operations  # noqa: E402
from jaxgraph.models import load_model, model_from_json  # noqa: E402

KERAS = types.SimpleNamespace(Input=keras.Input, Model=keras.Model, layers=keras.layers,
                              ops=keras.ops)
JG = types.SimpleNamespace(Input=jaxgraph.Input, Model=jaxgraph.Model, layers=jaxgraph.layers,
                           ops=jops)

RNG = np.random.default_rng(0)
A = RNG.normal(size=(5, 4, 3)).astype("float32")
B = RNG.normal(size=(5, 4, 3)).astype("float32")


def op_model(k):
    """Op nodes of every kind, written once for both libraries (`k.ops` is keras.ops or
    jaxgraph.ops): the tensors flow through Dense layers so weights matter too."""
    ops = k.ops
    a = k.Input((4, 3), name="a")
    b = k.Input((4, 3), name="b")
    h = k.layers.Dense(3, name="dense")(a)
    d = ops.subtract(ops.add(h, b), ops.multiply(a, b))  # arithmetic on two tensors
    d = ops.multiply(d, np.array([1.0, -2.0, 0.5], "float32"))  # an array constant
    m = ops.mean(d, axis=1, keepdims=True)  # a reduction with axis and keepdims
    r = ops.reshape(ops.transpose(d, (0, 2, 1)), (-1, 12))
    peak = ops.expand_dims(ops.max(d, axis=(1, 2)), -1)
    c = ops.concatenate([r, ops.squeeze(m, axis=1), peak], axis=-1)  # (None, 16)
    y = ops.where(ops.greater(c, 0.0), ops.relu(c), ops.softmax(c, axis=-1))
    top, _ = ops.top_k(y, 3)  # two outputs
    first, rest = ops.split(y, [4], axis=-1)
    e = ops.einsum("bi,bj->bij", top, first)  # variadic operands
    e = ops.pad(ops.reshape(e, (-1, 12)), ((0, 0), (1, 1)), constant_values=0.5)
    out = k.layers.Dense(2, name="head")(ops.concatenate([e, rest], axis=-1))
    flag = ops.cast(ops.not_equal(ops.argmax(c, axis=-1), 0), "float32")
    operators = (a * 2.0 - b[:, 0:1, ...]) / (1.0 + ops.abs(b))  # Python operators, indexing
    return k.Model([a, b], [out, flag, operators], name="ops_model")


def masked_recurrent(k):
    """Keras inserts a hidden `NotEqual` mask op between Embedding and the RNNs."""
    tokens = k.Input((None,), dtype="int32", name="tokens")
    h = k.layers.Embedding(12, 4, mask_zero=True, name="embed")(tokens)
    h = k.layers.LSTM(5, return_sequences=True, name="lstm")(h)
    h = k.layers.GRU(3, name="gru")(h)
    return k.Model(tokens, k.layers.Dense(2, name="out")(h), name="masked")


def masking_pooling(k):
    """Masking's mask is `any(not_equal(x, 0), axis=-1)`: two hidden ops, two consumers."""
    x = k.Input((6, 3), name="seq")
    h = k.layers.Masking(0.0, name="mask")(x)
    h = k.layers.LSTM(4, return_sequences=True, name="lstm")(h)
    return k.Model(x, k.layers.GlobalAveragePooling1D(name="pool")(h), name="masking")


def masked_concat(k):
    """Concatenate's mask: ExpandDims, ZerosLike, LogicalOr, Concatenate and Any ops."""
    a = k.Input((6,), dtype="int32", name="left")
    b = k.Input((6,), dtype="int32", name="right")
    embed = [k.layers.Embedding(12, 4, mask_zero=True, name=n)(t)
             for n, t in (("embed_a", a), ("embed_b", b))]
    h = k.layers.Concatenate(name="cat")(embed)
    return k.Model([a, b], k.layers.LSTM(3, name="lstm")(h), name="masked_concat")


TOKENS = np.array([[3, 5, 1, 0, 0, 0], [7, 0, 0, 0, 0, 0], [2, 9, 4, 11, 6, 8],
                   [1, 1, 0, 0, 0, 0]], dtype="int32")
SEQ = RNG.normal(size=(3, 6, 3)).astype("float32")
SEQ[0, 4:] = 0.0
SEQ[1, 2:] = 0.0


def _arrays(out):
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def _keras_outputs(model, x):
    return _arrays(model(x, training=False))


def _jg_outputs(model, x):
    return _arrays(model.predict(x, verbose=0))


def _assert_same(got, expected, rtol=1e-5):
    assert [(g.dtype, g.shape) for g in got] == [(e.dtype, e.shape) for e in expected]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g.astype("float64"), e.astype("float64"), rtol=rtol,
                                   atol=1e-5)


def _randomized_keras(builder):
    model = builder(KERAS)
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def _copy_weights_by_name(source, target):
    """Weights of each layer of `source` into the layer of the same name in `target`."""
    copied = 0
    for layer in source.layers:
        if layer.get_weights():
            target.get_layer(layer.name).set_weights(layer.get_weights())
            copied += 1
    assert copied


def _layer_classes(record):
    return [(e["module"], e["class_name"]) for e in record["config"]["layers"]]


# ---------------------------------------------------------------------------- the table


def test_table_matches_keras_op_classes():
    """Every Keras class in the table exists where it says, and its constructor and
    `call` take exactly the parameters the table gives them; ops left out have none."""
    from keras.src.ops.operation import Operation

    table = keras_operations()
    assert set(table) | _KERAS_EAGER == set(jops.OPS)
    for op, spec in table.items():
        cls = getattr(importlib.import_module(spec.module), spec.class_name)
        assert issubclass(cls, Operation), op
        init = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "name")]
        call = list(inspect.signature(cls.call).parameters)[1:]
        assert (tuple(init), tuple(call)) == (spec.init, spec.call), op
    modules = [importlib.import_module(f"keras.src.ops.{m}")
               for m in ("numpy", "nn", "math", "core", "linalg")]
    for op in _KERAS_EAGER:
        name = op.capitalize()
        assert not any(hasattr(m, name) for m in modules), op


def test_keras_writes_the_classes_the_table_names():
    """Keras's own `to_json` of `op_model` names exactly the classes jaxgraph writes."""
    theirs = json.loads(op_model(KERAS).to_json())
    ours = json.loads(op_model(JG).to_json())
    op_classes = sorted(c for m, c in _layer_classes(theirs) if m.startswith("keras.src.ops."))
    assert "Mean" in op_classes and "Concatenate" in op_classes and "Softmax" in op_classes
    # Keras's `ops.abs` writes its parent class Absolute, jaxgraph Keras's Abs; Keras's `/`
    # is TrueDivide, jaxgraph's Divide (the same function of floats).
    same = {"Absolute": "Abs", "TrueDivide": "Divide"}
    assert sorted(c for m, c in _layer_classes(ours) if m.startswith("keras.src.ops.")) == \
        sorted(same.get(c, c) for c in op_classes)
    mean = next(e for e in ours["config"]["layers"] if e["class_name"] == "Mean")
    assert mean["module"] == "keras.src.ops.numpy"
    assert mean["config"] == {"name": mean["name"], "axis": 1, "keepdims": True}


def _case_model(k, op, args, kwargs):
    """One `test_ops` case as a model whose inputs are the case's array arguments, and
    those arrays."""
    inputs, feed = [], []

    def lift(value):
        if isinstance(value, np.ndarray):
            feed.append(value)
            inputs.append(k.Input(batch_shape=value.shape, dtype=value.dtype.name,
                                  name=f"in{len(feed)}"))
            return inputs[-1]
        if isinstance(value, list) and any(isinstance(v, np.ndarray) for v in value):
            return [lift(v) for v in value]
        return value

    args = [lift(a) for a in args]
    kwargs = {name: lift(v) for name, v in kwargs.items()}
    out = getattr(k.ops, op)(*args, **kwargs)
    outputs = list(out) if isinstance(out, (list, tuple)) else out
    return k.Model(inputs if len(inputs) > 1 else inputs[0], outputs), feed


def _outputs(model, feed):
    return _arrays(model(feed if len(feed) > 1 else feed[0]))


def _keras_runs_as_node(op, args, kwargs) -> bool:
    """False where Keras cannot run its own op node: Norm turns an int axis into a list,
    which its JAX `norm` then rejects (Keras 3.15)."""
    bound = inspect.signature(jops.OPS[op]).bind(*args, **kwargs).arguments
    return not (op == "norm" and isinstance(bound.get("axis"), int))


def _has_array(args, kwargs) -> bool:
    values = [*args, *kwargs.values()]
    return any(isinstance(v, np.ndarray) or (isinstance(v, list) and _has_array(v, {}))
               for v in values)


#: (case, its index among the cases of its op): every case with an array argument.
_GRAPH_CASES = [(c, sum(p[0] == c[0] for p in CASES[:i])) for i, c in enumerate(CASES)
                if c[0] in jops.OPS and _has_array(c[1], c[2])]


@pytest.mark.parametrize("case", [c for c, _ in _GRAPH_CASES],
                         ids=[f"{c[0]}-{n}" for c, n in _GRAPH_CASES])
def test_every_op_node_moves_both_ways(case):
    """Each op, as Keras writes it, loads in jaxgraph; as jaxgraph writes it, in Keras;
    both compute what `keras.ops` computes on the arrays."""
    op, args, kwargs = case
    km, feed = _case_model(KERAS, op, args, kwargs)
    jm, _ = _case_model(JG, op, args, kwargs)
    expected = _arrays(getattr(keras.ops, op)(*args, **kwargs))
    ours = _outputs(model_from_json(km.to_json()), feed)
    _assert_same(ours, expected)
    if _keras_runs_as_node(op, args, kwargs):
        _assert_same(_outputs(keras.models.model_from_json(jm.to_json()), feed), expected)


@pytest.mark.parametrize("dtype", ["int32", "uint8", "bool"])
def test_python_operators_with_numbers_follow_keras_dtypes(dtype):
    """`ints * 2.5` is float in Keras: the same in jaxgraph, and after either crossing."""
    def model(k):
        x = k.Input((3,), dtype=dtype, name="x")
        return k.Model(x, [x * 2.5, 1.5 + x, x / 2, x + 1, 2 - x, x * 2])

    x = np.array([[1, 200, 3], [0, 1, 0]]).astype(dtype)
    km, jm = model(KERAS), model(JG)
    expected = _keras_outputs(km, x)
    assert expected[0].dtype == np.float32
    _assert_same(_arrays(jm(x)), expected)
    _assert_same(_arrays(model_from_json(km.to_json())(x)), expected)
    _assert_same(_keras_outputs(keras.models.model_from_json(jm.to_json()), x), expected)


# ---------------------------------------------------------------------------- Keras -> jaxgraph


def test_keras_json_with_ops_loads_and_predicts_the_same():
    km = _randomized_keras(op_model)
    jm = model_from_json(km.to_json())
    kinds = {type(layer).__name__ for layer in jm.layers}
    assert {"OpLayer", "GetItem", "Dense"} <= kinds
    mean = next(layer for layer in jm.layers if getattr(layer, "op", None) == "mean")
    assert mean.get_config()["kwargs"] == {"x": {"tensor": 0}, "axis": 1, "keepdims": True}
    _copy_weights_by_name(km, jm)
    _assert_same(_jg_outputs(jm, [A, B]), _keras_outputs(km, [A, B]))


def test_keras_file_with_ops_loads_and_predicts_the_same(tmp_path):
    km = _randomized_keras(op_model)
    km.compile("adam", "mse")
    km.save(tmp_path / "ops.keras")
    with pytest.warns(UserWarning, match="uncompiled"):
        jm = load_model(tmp_path / "ops.keras")
    _assert_same(_jg_outputs(jm, [A, B]), _keras_outputs(km, [A, B]))


@pytest.mark.parametrize("builder,x", [(masked_recurrent, TOKENS), (masking_pooling, SEQ),
                                       (masked_concat, [TOKENS, TOKENS[::-1]])])
def test_keras_hidden_mask_ops_load_and_predict_the_same(builder, x, tmp_path):
    km = _randomized_keras(builder)
    record = json.loads(km.to_json())
    hidden = [c for m, c in _layer_classes(record) if m.startswith("keras.src.ops.")]
    assert "NotEqual" in hidden
    km.save(tmp_path / "masked.keras")
    jm = load_model(tmp_path / "masked.keras", compile=False)
    op_of_class = {spec.class_name: op for op, spec in keras_operations().items()}
    ops_nodes = [layer.op for layer in jm.layers if type(layer).__name__ == "OpLayer"]
    assert sorted(ops_nodes) == sorted(op_of_class[c] for c in hidden)
    expected = _keras_outputs(km, x)
    _assert_same(_jg_outputs(jm, x), expected)
    from_json = model_from_json(km.to_json())
    _copy_weights_by_name(km, from_json)
    _assert_same(_jg_outputs(from_json, x), expected)
    # The padding matters: the same tokens without a mask predict differently.
    if builder is masked_recurrent:
        unmasked = masked_recurrent(JG)
        _copy_weights_by_name(km, unmasked)
        assert not np.allclose(_jg_outputs(unmasked, np.where(x == 0, 1, x))[0], expected[0])


# ---------------------------------------------------------------------------- jaxgraph -> Keras


def test_jaxgraph_json_with_ops_loads_in_keras_and_predicts_the_same():
    jm = op_model(JG)
    km = keras.models.model_from_json(jm.to_json())
    op_classes = {type(op).__name__ for op in km.operations}
    assert {"Mean", "Transpose", "Concatenate", "NotEqual", "Softmax", "GetItem"} <= op_classes
    _copy_weights_by_name(km, jm)  # Keras's fresh weights into jaxgraph's model
    _assert_same(_keras_outputs(km, [A, B]), _jg_outputs(jm, [A, B]))


def test_jaxgraph_files_with_ops_load_in_keras_and_back(tmp_path):
    """jaxgraph's JSON and weights files -> Keras -> Keras's `.keras` -> jaxgraph."""
    jm = op_model(JG)
    (tmp_path / "ops.json").write_text(jm.to_json())
    jm.save_weights(tmp_path / "ops.weights.h5")
    km = keras.models.model_from_json((tmp_path / "ops.json").read_text())
    km.load_weights(tmp_path / "ops.weights.h5")
    expected = _jg_outputs(jm, [A, B])
    _assert_same(_keras_outputs(km, [A, B]), expected)
    km.save(tmp_path / "via_keras.keras")
    back = load_model(tmp_path / "via_keras.keras", compile=False)
    _assert_same(_jg_outputs(back, [A, B]), expected)


def test_jaxgraph_round_trips_its_own_ops_through_json_and_files(tmp_path):
    jm = op_model(JG)
    expected = _jg_outputs(jm, [A, B])
    again = model_from_json(jm.to_json())
    again.set_weights(jm.get_weights())
    _assert_same(_jg_outputs(again, [A, B]), expected)
    assert json.loads(again.to_json()) == json.loads(jm.to_json())
    jm.save(tmp_path / "ops.keras")
    _assert_same(_jg_outputs(load_model(tmp_path / "ops.keras"), [A, B]), expected)
    # jaxgraph's own files keep the OpLayer records every earlier version wrote and read.
    with zipfile.ZipFile(tmp_path / "ops.keras") as archive:
        saved = json.loads(archive.read("config.json"))
    assert {"OpLayer", "TensorOp", "GetItem"} <= {e["class_name"]
                                                  for e in saved["config"]["layers"]}


def test_op_keras_cannot_express_keeps_jaxgraph_record():
    """A tensor where Keras's class takes a constant (clip's bounds): `to_json` writes
    jaxgraph's OpLayer record for that node, which jaxgraph reads back."""
    x = jaxgraph.Input((4, 3), name="x")
    low = jaxgraph.Input((4, 3), name="low")
    model = jaxgraph.Model([x, low], jops.clip(jops.mean(x, axis=-1), jops.mean(low, -1), 0.5))
    record = json.loads(model.to_json())
    assert [(m, c) for m, c in _layer_classes(record) if c != "InputLayer"] == [
        ("keras.src.ops.numpy", "Mean"), ("keras.src.ops.numpy", "Mean"),
        ("keras.layers", "OpLayer")]
    again = model_from_json(model.to_json())
    _assert_same(_jg_outputs(again, [A, B]),
                 [np.clip(A.mean(-1), B.mean(-1), 0.5)])


def test_masks_loaded_from_keras_go_back_to_keras():
    km = _randomized_keras(masked_recurrent)
    jm = model_from_json(km.to_json())
    _copy_weights_by_name(km, jm)
    back = keras.models.model_from_json(jm.to_json())
    back.set_weights(km.get_weights())
    assert "NotEqual" in {type(op).__name__ for op in back.operations}
    _assert_same(_keras_outputs(back, TOKENS), _keras_outputs(km, TOKENS))


# ---------------------------------------------------------------------------- old files, errors


def _old_ref(layer, shape):
    return {"class_name": "__keras_tensor__",
            "config": {"shape": shape, "dtype": "float32", "keras_history": [layer, 0, 0]}}


def _old_entry(class_name, name, config, call_args):
    return {"module": "keras.layers", "class_name": class_name, "registered_name": None,
            "config": {**config, "name": name, "trainable": True, "dtype": "float32"},
            "name": name, "inbound_nodes": [{"args": call_args, "kwargs": {}}]}


#: What jaxgraph's `to_json` wrote for `mean(x, axis=1) * 2 - x[:, 0]` before it wrote
#: Keras's Operation records: its own OpLayer / TensorOp / GetItem records.
OLD_JSON = {
    "module": "keras.src.models.functional", "class_name": "Functional",
    "registered_name": "Functional",
    "config": {"name": "old", "trainable": True, "layers": [
        {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
         "config": {"batch_shape": [None, 4, 3], "dtype": "float32", "name": "x"},
         "name": "x", "inbound_nodes": []},
        _old_entry("OpLayer", "mean",
                   {"op": "mean", "args": [{"tensor": 0}], "kwargs": {"axis": 1}},
                   [[_old_ref("x", [None, 4, 3])]]),
        _old_entry("TensorOp", "tensor_op",
                   {"op": "multiply", "constant": 2.0, "reverse": False},
                   [_old_ref("mean", [None, 3])]),
        _old_entry("GetItem", "get_item",
                   {"key": {"tuple": [{"slice": [None, None, None]}, 0]}},
                   [_old_ref("x", [None, 4, 3])]),
        _old_entry("OpLayer", "subtract",
                   {"op": "subtract", "args": [{"tensor": 0}, {"tensor": 1}], "kwargs": {}},
                   [[_old_ref("tensor_op", [None, 3]), _old_ref("get_item", [None, 3])]]),
    ], "input_layers": ["x", 0, 0], "output_layers": ["subtract", 0, 0]},
}


def test_old_oplayer_json_still_loads():
    model = model_from_json(json.dumps(OLD_JSON))
    assert [type(layer).__name__ for layer in model.layers] == [
        "InputLayer", "OpLayer", "TensorOp", "GetItem", "OpLayer"]
    np.testing.assert_allclose(_jg_outputs(model, A)[0], A.mean(axis=1) * 2.0 - A[:, 0],
                               rtol=1e-6)
    # ... and what it writes now, Keras reads.
    km = keras.models.model_from_json(model.to_json())
    np.testing.assert_allclose(_keras_outputs(km, A)[0], A.mean(axis=1) * 2.0 - A[:, 0],
                               rtol=1e-6)


def _keras_record_with(class_name, entry_update):
    """Keras's JSON of `op_model` with the record of its `class_name` op changed."""
    record = json.loads(op_model(KERAS).to_json())
    entry_update(next(e for e in record["config"]["layers"] if e["class_name"] == class_name))
    return json.dumps(record)


def test_unknown_keras_op_class_names_the_class_and_layer(import_spy, tmp_path):
    record = _keras_record_with("Mean", lambda e: e.update(class_name="Sinh"))
    with pytest.raises(ValueError, match=r"'mean.*keras\.src\.ops\.numpy\.Sinh.*no op"):
        model_from_json(record)
    # A module of the file's choosing is never imported, whatever the class, from JSON or
    # from a .keras archive.
    evil = _keras_record_with("Mean", lambda e: e.update(module="keras.src.ops.jg_evil_ops",
                                                         class_name="System"))
    with pytest.raises(ValueError, match="System"):
        model_from_json(evil)
    with zipfile.ZipFile(tmp_path / "evil.keras", "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": keras.__version__}))
        archive.writestr("config.json", evil)
        archive.writestr("model.weights.h5", b"")
    with pytest.raises(ValueError, match=r"Keras \.keras archive.*System"):
        load_model(tmp_path / "evil.keras")
    assert not [c for c in import_spy if "evil" in c]
    assert "keras.src.ops.jg_evil_ops" not in sys.modules


def test_malformed_keras_op_records_are_refused():
    extra = _keras_record_with("Mean", lambda e: e["config"].update(dtype="float16"))
    with pytest.raises(ValueError, match=r"'mean.*unknown constructor argument.*dtype"):
        model_from_json(extra)
    code = {"class_name": "__lambda__", "config": {"value": "print"}}
    as_constant = _keras_record_with(
        "Greater", lambda e: e["inbound_nodes"][0]["args"].__setitem__(1, code))
    with pytest.raises(ValueError, match="'greater.*cannot rebuild the argument.*__lambda__"):
        model_from_json(as_constant)
    too_many = _keras_record_with("Mean", lambda e: e["inbound_nodes"][0]["args"].append(1))
    with pytest.raises(ValueError, match="'mean.*call arguments"):
        model_from_json(too_many)

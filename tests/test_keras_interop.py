"""Weights files move between Keras 3 and jaxgraph for the same architecture.

Each test builds one architecture twice from the same code (once with `keras`, once
with `jaxgraph`), moves weights through a file in one direction, and compares outputs.
"""

import io
import re
import types
import zipfile

import h5py
import numpy as np
import pytest

keras = pytest.importorskip("keras")

import jaxgraph  # noqa: E402
from jaxgraph.saving import load_keras_weights, load_weights, save_weights  # noqa: E402
from jaxgraph.saving.weights_io import keras_snake_case  # noqa: E402

KERAS = types.SimpleNamespace(Input=keras.Input, Model=keras.Model,
                              Sequential=keras.Sequential, layers=keras.layers)
JG = types.SimpleNamespace(Input=jaxgraph.Input, Model=jaxgraph.Model,
                           Sequential=jaxgraph.Sequential, layers=jaxgraph.layers)


def _randomize_keras(model, seed=0):
    """Weights far from their initial values, variances positive."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) * rng.choice([-1, 1])
                       if "variance" not in w.path else rng.uniform(0.5, 1.5, w.shape)
                       .astype(w.dtype) for w in model.weights])


def _jg_predict(model, inputs):
    out = model(inputs)
    return [np.asarray(o) for o in out] if isinstance(out, list) else [np.asarray(out)]


def _keras_predict(model, inputs):
    out = model(inputs, training=False)
    return [np.asarray(o) for o in out] if isinstance(out, list) else [np.asarray(out)]


def _assert_same(a, b, atol=1e-5):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=atol, rtol=1e-5)


def _layout(path):
    """{vars group path: (name attribute, [dataset shapes])} of a weights file."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Group) and name.endswith("vars"):
                shapes = [obj[k].shape for k in sorted(obj.keys(), key=int)]
                out[name] = (obj.attrs.get("name"), shapes)
        f.visititems(visit)
    return out


def _base_name(name):
    return re.sub(r"_\d+$", "", name)


# ---------------------------------------------------------------------------- architectures


def branchy(k):
    """Two inputs, a shared layer, BN, a nested functional and a nested Sequential model,
    and outputs of different depth, so Keras's layer order differs from build order."""
    x1 = k.Input((6,), name="x1")
    x2 = k.Input((4,), name="x2")
    shared = k.layers.Dense(5, name="shared")
    a = k.layers.Dense(5, activation="relu", name="a")(x1)
    b = k.layers.Dense(5, activation="tanh", name="b")(x2)
    merged = k.layers.Concatenate(name="cat")([shared(a), shared(b)])
    merged = k.layers.BatchNormalization(name="bn")(merged)
    inner_in = k.Input((10,), name="inner_in")
    inner_h = k.layers.Dense(7, activation="relu", name="inner_d1")(inner_in)
    inner_h = k.layers.BatchNormalization(name="inner_bn")(inner_h)
    inner = k.Model(inner_in, k.layers.Dense(4, name="inner_d2")(inner_h), name="inner")
    tail = k.Sequential([k.layers.Dense(3, activation="relu", name="tail_d1"),
                         k.layers.Dense(3, name="tail_d2")], name="tail")
    out1 = tail(k.layers.add([inner(merged), k.layers.Dense(4, name="skip")(merged)]))
    out2 = k.layers.Dense(2, name="head2")(x2)
    return k.Model([x1, x2], [out2, out1], name="branchy")


def recurrent(k):
    x = k.Input((7, 4), name="seq_in")
    h = k.layers.LSTM(5, return_sequences=True, name="lstm")(x)
    h = k.layers.Bidirectional(k.layers.GRU(3, return_sequences=True), name="bi")(h)
    h = k.layers.TimeDistributed(k.layers.Dense(2), name="td")(h)
    h = k.layers.SimpleRNN(3, name="srnn")(h)
    tokens = k.Input((7,), dtype="int32", name="tokens")
    e = k.layers.Embedding(20, 4, name="emb")(tokens)
    e = k.layers.Conv1D(4, 3, padding="same", name="conv")(e)
    e = k.layers.GlobalMaxPooling1D()(e)
    out = k.layers.Concatenate()([h, e])
    return k.Model([x, tokens], k.layers.Dense(1, name="out")(out), name="rnn_model")


def video(k):
    """A frame model applied to every frame by TimeDistributed (a Model inside a layer)."""
    frame = k.Input((6, 6, 2), name="frame")
    f = k.layers.Conv2D(3, 3, activation="relu", name="frame_conv")(frame)
    f = k.layers.BatchNormalization(name="frame_bn")(f)
    f = k.layers.GlobalAveragePooling2D()(f)
    f = k.layers.Dropout(0.2)(f)
    cnn = k.Model(frame, k.layers.Dense(4, name="frame_embed")(f), name="frame_cnn")
    clip = k.Input((5, 6, 6, 2), name="clip")
    h = k.layers.TimeDistributed(cnn, name="per_frame")(clip)
    return k.Model(clip, k.layers.Dense(2, name="out")(k.layers.GRU(3, name="gru")(h)),
                   name="video")


def convnet(k):
    return k.Sequential([
        k.Input((8, 8, 2)),
        k.layers.Conv2D(4, 3, activation="relu", name="c1"),
        k.layers.BatchNormalization(name="bn"),
        k.layers.MaxPooling2D(2),
        k.layers.Conv2D(3, 2, name="c2"),
        k.layers.Dropout(0.3),
        k.layers.Flatten(),
        k.layers.Dense(5, name="d"),
    ], name="convnet")


def _inputs(name, rng):
    if name == "branchy":
        return [rng.normal(size=(5, 6)).astype("float32"),
                rng.normal(size=(5, 4)).astype("float32")]
    if name == "recurrent":
        return [rng.normal(size=(5, 7, 4)).astype("float32"),
                rng.integers(0, 20, size=(5, 7)).astype("int32")]
    if name == "video":
        return rng.normal(size=(5, 5, 6, 6, 2)).astype("float32")
    return rng.normal(size=(5, 8, 8, 2)).astype("float32")


ARCHITECTURES = {"branchy": branchy, "recurrent": recurrent, "convnet": convnet,
                 "video": video}


# ---------------------------------------------------------------------------- tests


class _KerasReference:
    """One Keras model per architecture for the whole module (Keras builds are slow)."""

    def __init__(self, directory):
        self.directory = directory
        self.cache = {}

    def __call__(self, arch):
        if arch not in self.cache:
            km = ARCHITECTURES[arch](KERAS)
            _randomize_keras(km)
            x = _inputs(arch, np.random.default_rng(1))
            weights_file = self.directory / f"{arch}.weights.h5"
            km.save_weights(weights_file)
            self.cache[arch] = types.SimpleNamespace(
                model=km, x=x, outputs=_keras_predict(km, x), weights=km.get_weights(),
                weights_file=weights_file, directory=self.directory)
        ref = self.cache[arch]
        ref.model.set_weights(ref.weights)  # undo what an earlier test loaded
        return ref

    def archive(self, arch, suffix=".keras"):
        """The reference model saved whole (`.keras`, or legacy HDF5 for `.h5`)."""
        path = self.directory / f"{arch}_full{suffix}"
        if not path.exists():
            self(arch).model.save(path)
        return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _KerasReference(tmp_path_factory.mktemp("keras_reference"))


def test_group_names_follow_keras_snake_case():
    from keras.src.utils.naming import to_snake_case

    for name in ["Conv2D", "LSTM", "GRU", "SimpleRNN", "BatchNormalization", "InputLayer",
                 "GlobalAveragePooling2D", "Conv1DTranspose", "DepthwiseConv2D", "Functional",
                 "Sequential", "TimeDistributed", "HTTPLayer2Go", "My_Layer"]:
        assert keras_snake_case(name) == to_snake_case(name), name


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_keras_file_loads_into_jaxgraph_and_back(arch, reference, tmp_path):
    ref = reference(arch)
    jm = ARCHITECTURES[arch](JG)
    load_weights(jm, ref.weights_file)
    _assert_same(_jg_predict(jm, ref.x), ref.outputs)

    # jaxgraph writes the very layout Keras writes: same groups, names and shapes.
    jg_file = tmp_path / "j.weights.h5"
    save_weights(jm, jg_file)
    ours, theirs = _layout(jg_file), _layout(ref.weights_file)
    assert ours.keys() == theirs.keys()
    for key, (name, shapes) in theirs.items():
        assert ours[key][1] == shapes, key
        # Auto-generated names differ by their counters only (`dropout` / `dropout_4`).
        assert _base_name(ours[key][0]) == _base_name(name), key

    # ... and Keras reads it back (into its model, first scrambled).
    _randomize_keras(ref.model, seed=11)
    assert not np.allclose(_keras_predict(ref.model, ref.x)[0], ref.outputs[0])
    ref.model.load_weights(jg_file)
    _assert_same(_keras_predict(ref.model, ref.x), ref.outputs)


def test_jaxgraph_trained_weights_load_in_keras(reference, tmp_path):
    ref = reference("branchy")
    rng = np.random.default_rng(2)
    jm = branchy(JG)
    jm.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in jm.weights])
    path = tmp_path / "trained.weights.h5"
    jm.save_weights(path)
    ref.model.load_weights(path)
    _assert_same(_keras_predict(ref.model, ref.x), _jg_predict(jm, ref.x))


def test_load_weights_reads_a_keras_archive(reference):
    ref = reference("convnet")
    jm = convnet(JG)
    load_weights(jm, reference.archive("convnet"))
    _assert_same(_jg_predict(jm, ref.x), ref.outputs)


# ---------------------------------------------------------------------------- by name


def _two_heads(k, swap):
    x = k.Input((4,), name="x")
    p = k.layers.Dense(3, name="p")
    q = k.layers.Dense(3, name="q")
    outs = [q(x), p(x)] if swap else [p(x), q(x)]
    return k.Model(x, outs, name="heads")


def test_load_keras_weights_matches_by_name_not_order(tmp_path):
    km = _two_heads(KERAS, swap=False)
    _randomize_keras(km, seed=4)
    km.save_weights(tmp_path / "heads.weights.h5")
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    kp, kq = _keras_predict(km, x)

    by_name = _two_heads(JG, swap=True)
    load_keras_weights(by_name, tmp_path / "heads.weights.h5")
    jq, jp = _jg_predict(by_name, x)
    _assert_same([jp, jq], [kp, kq])

    # Positional loading (Keras's rule) pairs p with q here: same shapes, wrong values.
    by_order = _two_heads(JG, swap=True)
    load_weights(by_order, tmp_path / "heads.weights.h5")
    jq2, _ = _jg_predict(by_order, x)
    assert not np.allclose(jq2, kq)


def test_load_keras_weights_from_keras_archive_and_nested_models(reference):
    ref = reference("branchy")
    jm = branchy(JG)
    load_keras_weights(jm, reference.archive("branchy"))
    _assert_same(_jg_predict(jm, ref.x), ref.outputs)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_load_model_rebuilds_a_keras_archive(arch, reference):
    """`load_model` of a Keras `.keras` file: architecture from its config, weights by name."""
    ref = reference(arch)
    jm = jaxgraph.models.load_model(reference.archive(arch), compile=False)
    assert isinstance(jm, jaxgraph.Sequential) == isinstance(ref.model, keras.Sequential)
    assert [w.shape for w in jm.weights] == [tuple(w.shape) for w in ref.model.weights]
    _assert_same(_jg_predict(jm, ref.x), ref.outputs)


@pytest.mark.parametrize("arch", ["recurrent", "video"])
def test_load_keras_weights_recurrent_wrappers(arch, reference):
    ref = reference(arch)
    jm = ARCHITECTURES[arch](JG)
    load_keras_weights(jm, ref.weights_file)
    _assert_same(_jg_predict(jm, ref.x), ref.outputs)


def test_archive_without_name_attributes_uses_its_config(reference, tmp_path):
    ref = reference("branchy")
    # Strip the `name` attributes, as early Keras 3 releases wrote them.
    with zipfile.ZipFile(reference.archive("branchy")) as z:
        members = {n: z.read(n) for n in z.namelist()}
    buffer = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buffer, "r+") as f:
        f.visititems(lambda n, o: o.attrs.__delitem__("name") if "name" in o.attrs else None)
    members["model.weights.h5"] = buffer.getvalue()
    with zipfile.ZipFile(tmp_path / "bare.keras", "w") as z:  # no config to fall back on
        z.writestr("model.weights.h5", members["model.weights.h5"])
    with pytest.raises(ValueError, match="does not record layer names"):
        load_keras_weights(branchy(JG), tmp_path / "bare.keras")
    with zipfile.ZipFile(tmp_path / "old.keras", "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    jm = branchy(JG)
    load_keras_weights(jm, tmp_path / "old.keras")
    _assert_same(_jg_predict(jm, ref.x), ref.outputs)


@pytest.mark.parametrize("arch", ["recurrent", "branchy", "video"])
def test_load_keras_weights_from_legacy_h5(arch, reference):
    ref = reference(arch)
    legacy = reference.archive(arch, ".h5")  # Keras 2 style HDF5; nested models list
    jm = ARCHITECTURES[arch](JG)             # their layers' weights as `<layer>/<weight>`
    load_keras_weights(jm, legacy)
    _assert_same(_jg_predict(jm, ref.x), ref.outputs)
    with pytest.raises(ValueError, match="legacy HDF5"):
        load_weights(ARCHITECTURES[arch](JG), legacy)


def test_load_keras_weights_reports_every_mismatch_on_both_sides(tmp_path):
    kx = keras.Input((4,))
    kh = keras.layers.Dense(6, name="common")(kx)
    kh = keras.layers.Dense(3, name="resized")(kh)
    kh = keras.layers.Dense(2, name="only_in_file")(kh)
    keras.Model(kx, kh).save_weights(tmp_path / "m.weights.h5")

    jx = jaxgraph.Input((4,))
    jh = jaxgraph.layers.Dense(6, name="common")(jx)
    jh = jaxgraph.layers.Dense(5, name="resized")(jh)
    jh = jaxgraph.layers.Dense(2, name="only_in_model")(jh)
    jm = jaxgraph.Model(jx, jh)
    before = jm.get_weights()
    with pytest.raises(ValueError) as info:
        load_keras_weights(jm, tmp_path / "m.weights.h5")
    msg = str(info.value)
    assert "m.weights.h5" in msg
    assert "'resized'" in msg and "'kernel'" in msg and "(6, 5)" in msg and "(6, 3)" in msg
    assert "'bias'" in msg and "(5,)" in msg and "(3,)" in msg
    assert "'only_in_model'" in msg and "no layer of that name in the file" in msg
    assert "'only_in_file'" in msg and "no layer of that name in the model" in msg
    assert "'common'" not in msg
    # Nothing was assigned, not even the layer that matched.
    for a, b in zip(before, jm.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_multi_head_attention_weights_files_both_ways(tmp_path):
    """Keras keeps MHA projections as sublayer groups (query_dense, ...); both directions."""
    import jaxgraph
    from jaxgraph import layers as jl

    q = keras.Input((5, 8))
    out = keras.layers.MultiHeadAttention(2, 4, name="mha")(q, q)
    km = keras.Model(q, keras.layers.Dense(3, name="head")(out))
    km.set_weights([np.random.default_rng(i).normal(size=w.shape).astype("f4")
                    for i, w in enumerate(km.get_weights())])
    km.save_weights(tmp_path / "k.weights.h5")
    i = jaxgraph.Input((5, 8))
    jm = jaxgraph.Model(i, jl.Dense(3, name="head")(jl.MultiHeadAttention(2, 4, name="mha")(i, i)))
    jm.load_weights(tmp_path / "k.weights.h5")
    x = np.random.default_rng(9).normal(size=(2, 5, 8)).astype("f4")
    np.testing.assert_allclose(jm.predict(x, verbose=0), np.asarray(km(x)), atol=1e-5)
    jm.save_weights(tmp_path / "j.weights.h5")
    km2 = keras.models.clone_model(km)
    km2.load_weights(tmp_path / "j.weights.h5")
    np.testing.assert_allclose(np.asarray(km2(x)), np.asarray(km(x)), atol=1e-6)

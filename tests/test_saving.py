"""Model files, weights files and checkpoints: round trips, atomic writes, no pickle."""

import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import h5py
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph
from jaxgraph import Input, Model, Sequential, layers
from jaxgraph.layers import base as layers_base
from jaxgraph.saving import (
    atomic,
    load_model,
    load_weights,
    register_function,
    register_serializable,
    restore_checkpoint,
    save_checkpoint,
    save_model,
    save_weights,
)

RNG = np.random.default_rng(0)


def _out(model, x):
    y = model(x)
    return [np.asarray(v) for v in y] if isinstance(y, list) else [np.asarray(y)]


def _same_outputs(a, b, x):
    for u, v in zip(_out(a, x), _out(b, x)):
        np.testing.assert_array_equal(u, v)


def _scramble(model, seed=1):
    """Give every weight a distinctive value (variances stay positive)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) for w in model.weights])


def _leftovers(directory, keep):
    return sorted(set(os.listdir(directory)) - set(keep))


# ---------------------------------------------------------------------------- custom objects


@register_serializable(package="TestSaving")
class ScaleShift(layers.Layer):
    """A custom layer with its own weights and constructor argument."""

    def __init__(self, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.offset = offset

    def build(self, input_shape):
        self.add_weight("scale", (input_shape[-1],), initializer="ones")

    def call(self, w, x):
        return x * w["scale"] + self.offset


@register_serializable(package="TestSaving")
def cube(x):
    return x ** 3


class UnregisteredBlock(layers.Layer):
    def call(self, w, x):
        return x * 2.0


# ---------------------------------------------------------------------------- model files


def _sequential():
    return Sequential([
        layers.Dense(8, activation="relu", input_shape=(5,)),
        layers.BatchNormalization(),
        layers.Dropout(0.2),
        layers.Dense(3, activation="softmax"),
    ])


@pytest.mark.parametrize("suffix", [".h5", ".keras", ".jgraph", ""])
def test_sequential_round_trip_any_suffix(tmp_path, suffix):
    model = _sequential()
    _scramble(model)
    path = tmp_path / f"model{suffix}"
    save_model(model, path)
    assert zipfile.is_zipfile(path)
    assert {"config.json", "model.weights.h5"} <= set(zipfile.ZipFile(path).namelist())
    loaded = load_model(path)
    assert type(loaded) is type(model)
    assert [type(a) for a in loaded.layers] == [type(b) for b in model.layers]
    _same_outputs(model, loaded, RNG.normal(size=(4, 5)).astype("float32"))


def _functional_shared_nested():
    a = Input((6,), name="a")
    b = Input((6,), name="b")
    shared = layers.Dense(4, activation="tanh", name="shared")
    inner_in = Input((4,), name="inner_in")
    inner = Model(inner_in, ScaleShift(offset=0.5, name="scale")(
        layers.Dense(4, name="inner_dense")(inner_in)), name="inner")
    ha, hb = inner(shared(a)), inner(shared(b))
    lam = layers.Lambda(cube, name="cube")(layers.subtract([ha, hb]))
    tail = Sequential([layers.Dense(2, name="tail_dense")], name="tail")
    return Model({"a": a, "b": b}, {"diff": tail(lam), "same": shared(a)}, name="siamese")


def test_functional_with_shared_layers_nested_models_and_custom_layer(tmp_path):
    model = _functional_shared_nested()
    _scramble(model)
    path = tmp_path / "siamese.jgraph"
    save_model(model, path)
    loaded = load_model(path)
    x = {"a": RNG.normal(size=(3, 6)).astype("float32"),
         "b": RNG.normal(size=(3, 6)).astype("float32")}
    want, got = model(x), loaded(x)
    for key in ("diff", "same"):
        np.testing.assert_array_equal(np.asarray(want[key]), np.asarray(got[key]))
    # Structure survives: one shared instance, the nested models and the custom layer.
    assert loaded.get_layer("inner").get_layer("scale").offset == 0.5
    assert isinstance(loaded.get_layer("inner").get_layer("scale"), ScaleShift)
    assert len(loaded.get_layer("shared").inbound_nodes) >= 3
    assert loaded.count_params() == model.count_params()
    config = json.loads(zipfile.ZipFile(path).read("config.json"))
    assert config["format"] == "jaxgraph.model" and config["class_name"] == "Functional"
    assert config["jaxgraph_version"] == jaxgraph.__version__


def test_unknown_class_error_lists_what_to_register(tmp_path, monkeypatch):
    x = Input((3,))
    model = Model(x, UnregisteredBlock(name="block")(layers.Dense(3)(x)))
    path = tmp_path / "m.keras"
    save_model(model, path)
    monkeypatch.delitem(layers_base._DEFINED_LAYERS, "UnregisteredBlock")
    with pytest.raises(ValueError) as info:
        load_model(path)
    msg = str(info.value)
    assert "m.keras" in msg and "UnregisteredBlock" in msg
    assert "register_serializable" in msg and "custom_objects" in msg
    loaded = load_model(path, custom_objects={"UnregisteredBlock": UnregisteredBlock})
    _same_outputs(model, loaded, np.ones((2, 3), "float32"))


def test_register_serializable_names_and_functions():
    assert layers_base.get_layer_class("TestSaving>ScaleShift") is ScaleShift
    assert layers_base.get_layer_class("ScaleShift") is ScaleShift
    from jaxgraph.layers.serialization import function_name, resolve_function

    assert function_name(cube, "lam") == "TestSaving>cube"
    assert resolve_function("TestSaving>cube") is cube
    assert register_function is jaxgraph.layers.serialization.register_function
    with pytest.raises(TypeError):
        register_serializable()(int)


class RecordingModel(Model):
    """Stands in for the trainer: records what load_model hands back."""

    def compile(self, **kwargs):
        self.compiled_with = kwargs
        self._compile_config = dict(kwargs)

    def get_optimizer_state(self):
        return getattr(self, "_opt", None)

    def set_optimizer_state(self, arrays):
        self.restored_state = arrays


def test_compile_config_and_optimizer_state(tmp_path):
    x = Input((3,))
    model = RecordingModel(x, layers.Dense(2)(x))
    model.compile(optimizer={"class_name": "Adam", "config": {"learning_rate": 0.01}},
                  loss="mse", metrics=["mae"])
    model._opt = [np.arange(6.0).reshape(2, 3), np.array(7, np.int32), jnp.ones((2,))]
    save_model(model, tmp_path / "m.h5")
    members = set(zipfile.ZipFile(tmp_path / "m.h5").namelist())
    assert {"compile.json", "optimizer.npz"} <= members

    loaded = load_model(tmp_path / "m.h5")
    assert type(loaded) is RecordingModel
    assert loaded.compiled_with == model._compile_config
    assert len(loaded.restored_state) == 3
    for a, b in zip(loaded.restored_state, model._opt):
        np.testing.assert_array_equal(a, np.asarray(b))
        assert a.dtype == np.asarray(b).dtype

    assert not hasattr(load_model(tmp_path / "m.h5", compile=False), "compiled_with")
    save_model(model, tmp_path / "no_opt.h5", include_optimizer=False)
    assert "optimizer.npz" not in zipfile.ZipFile(tmp_path / "no_opt.h5").namelist()
    assert not hasattr(load_model(tmp_path / "no_opt.h5"), "restored_state")


def test_trained_model_resumes_with_its_optimizer_state(tmp_path):
    model = Sequential([layers.Dense(4, activation="relu", input_shape=(3,)), layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    x = RNG.normal(size=(32, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    # compile() must record its arguments in JSON form for load_model to replay them.
    assert model._compile_config["loss"] == "mse"
    model.save(tmp_path / "trained.keras")
    loaded = jaxgraph.models.load_model(tmp_path / "trained.keras")
    assert loaded._compile_config == model._compile_config
    _same_outputs(model, loaded, x)
    saved = [np.asarray(a) for a in model.get_optimizer_state()]
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    loaded.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    restored = [np.asarray(a) for a in loaded.get_optimizer_state()]
    assert len(saved) == len(restored)
    # Both continued from the same weights and optimizer state, so they agree.
    np.testing.assert_allclose(_out(model, x)[0], _out(loaded, x)[0], rtol=1e-5, atol=1e-6)


def test_load_model_rejects_other_files_clearly(tmp_path):
    model = _sequential()
    save_weights(model, tmp_path / "w.h5")
    with pytest.raises(ValueError, match="HDF5 file.*load_weights"):
        load_model(tmp_path / "w.h5")
    (tmp_path / "junk.keras").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.keras.*not a jaxgraph model file"):
        load_model(tmp_path / "junk.keras")
    with zipfile.ZipFile(tmp_path / "k.keras", "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        z.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {}}))
        z.writestr("model.weights.h5", b"")
    with pytest.raises(ValueError, match="Keras .keras archive.*load_keras_weights"):
        load_model(tmp_path / "k.keras")
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        load_model(tmp_path / "missing.keras")


# ---------------------------------------------------------------------------- no pickle


class _Sentinel:
    """Unpickling this would create a file: proof that code from a file ran."""

    path = None

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    x = Input((3,))
    model = RecordingModel(x, layers.Dense(2)(x))
    model.compile(loss="mse")
    model._opt = [np.zeros(3)]
    path = tmp_path / "m.jgraph"
    save_model(model, path)
    # Replace optimizer.npz with one holding a pickled object array.
    _Sentinel.path = str(tmp_path / "pwned")
    evil = io.BytesIO()
    np.savez(evil, state_000000=np.array([_Sentinel()], dtype=object))
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members["optimizer.npz"] = evil.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    with pytest.raises(ValueError, match="optimizer.npz.*object.*never"):
        load_model(path)
    assert not os.path.exists(_Sentinel.path)
    with pytest.raises(TypeError, match="only numeric arrays"):
        model._opt = [np.array([{"a": 1}], dtype=object)]
        save_model(model, tmp_path / "bad.jgraph")


# ---------------------------------------------------------------------------- weights files


def test_weights_round_trip_any_suffix_and_keras_layout(tmp_path):
    model = _functional_shared_nested()
    _scramble(model)
    for name in ("w.weights.h5", "w.ckpt", "w"):
        save_weights(model, tmp_path / name)
        fresh = _functional_shared_nested()
        load_weights(fresh, tmp_path / name)
        for a, b in zip(model.get_weights(), fresh.get_weights()):
            np.testing.assert_array_equal(a, b)
    with h5py.File(tmp_path / "w.weights.h5", "r") as f:
        assert f["vars"].attrs["name"] == "siamese"
        assert f["layers/dense/vars"].attrs["name"] == "shared"
        assert f["layers/functional/layers/scale_shift/vars/0"].shape == (4,)
        assert f["layers/sequential/layers/dense/vars/0"].shape == (4, 2)
    # The model methods the lead wires up go through the same functions.
    model.save_weights(tmp_path / "m.weights.h5")
    fresh = _functional_shared_nested()
    fresh.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_array_equal(fresh.get_weights()[0], model.get_weights()[0])


def test_bfloat16_weights_use_keras_encoding(tmp_path):
    model = Sequential([layers.Dense(3, input_shape=(2,), dtype="bfloat16")])
    _scramble(model)
    save_weights(model, tmp_path / "bf.weights.h5")
    with h5py.File(tmp_path / "bf.weights.h5", "r") as f:
        assert f["layers/dense/vars/0"].attrs["dtype"] == "bfloat16"
    fresh = Sequential([layers.Dense(3, input_shape=(2,), dtype="bfloat16")])
    load_weights(fresh, tmp_path / "bf.weights.h5")
    assert fresh.get_weights()[0].dtype == model.get_weights()[0].dtype
    np.testing.assert_array_equal(fresh.get_weights()[0].astype("float32"),
                                  model.get_weights()[0].astype("float32"))


def _mlp(hidden):
    return Sequential([layers.Dense(hidden, input_shape=(4,), name="h"),
                       layers.Dense(2, name="o"), layers.Dense(2, name="last")])


def test_shape_mismatch_lists_layer_weight_expected_got(tmp_path):
    source = _mlp(6)
    _scramble(source)
    save_weights(source, tmp_path / "w.weights.h5")
    target = _mlp(5)
    before = target.get_weights()
    with pytest.raises(ValueError) as info:
        load_weights(target, tmp_path / "w.weights.h5")
    msg = str(info.value)
    assert "w.weights.h5" in msg and "3 mismatch" in msg
    assert "'h' (Dense) weight 'bias'" in msg and "(5,)" in msg and "(6,)" in msg
    assert "'h' (Dense) weight 'kernel'" in msg and "(4, 5)" in msg and "(4, 6)" in msg
    assert "'o' (Dense) weight 'kernel'" in msg and "(5, 2)" in msg and "(6, 2)" in msg
    for a, b in zip(before, target.get_weights()):  # nothing assigned
        np.testing.assert_array_equal(a, b)
    with pytest.warns(UserWarning, match="Skipped mismatching"):
        load_weights(target, tmp_path / "w.weights.h5", skip_mismatch=True)
    np.testing.assert_array_equal(target.get_layer("last").get_weights()[0],
                                  source.get_layer("last").get_weights()[0])
    np.testing.assert_array_equal(target.get_layer("h").get_weights()[0], before[0])


def test_missing_and_extra_layers_are_reported(tmp_path):
    small = Sequential([layers.Dense(3, input_shape=(4,))])
    save_weights(small, tmp_path / "small.weights.h5")
    with pytest.raises(ValueError, match="expected 2 weights.*file has 0"):
        load_weights(_mlp(3), tmp_path / "small.weights.h5")
    save_weights(_mlp(3), tmp_path / "big.weights.h5")
    with pytest.raises(ValueError, match="no layer of the model takes"):
        load_weights(Sequential([layers.Dense(3, input_shape=(4,))]),
                     tmp_path / "big.weights.h5")


# ---------------------------------------------------------------------------- atomicity


def test_interrupted_model_save_keeps_previous_file(tmp_path, monkeypatch):
    model = _sequential()
    path = tmp_path / "model.keras"
    save_model(model, path)
    before = path.read_bytes()
    written = []
    original = zipfile.ZipFile.writestr

    def failing_writestr(self, name, data, *args, **kwargs):
        if written:  # the first member is already on disk in the temporary file
            raise OSError("disk full")
        written.append(name)
        return original(self, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing_writestr)
    _scramble(model, seed=5)
    with pytest.raises(OSError, match="disk full"):
        save_model(model, path)
    assert written == ["config.json"]
    assert path.read_bytes() == before
    assert _leftovers(tmp_path, ["model.keras"]) == []


def test_interrupted_weights_save_keeps_previous_file(tmp_path, monkeypatch):
    model = _mlp(3)
    path = tmp_path / "w.weights.h5"
    save_weights(model, path)
    before = path.read_bytes()

    def failing_fsync(fd):
        assert os.fstat(fd).st_size > 0  # the new bytes were written, not yet committed
        raise OSError("I/O error")

    monkeypatch.setattr(atomic.os, "fsync", failing_fsync)
    _scramble(model, seed=6)
    with pytest.raises(OSError, match="I/O error"):
        save_weights(model, path)
    assert path.read_bytes() == before
    assert _leftovers(tmp_path, ["w.weights.h5"]) == []


def test_atomic_write_keeps_permissions_and_refuses_missing_directory(tmp_path):
    target = tmp_path / "f.bin"
    atomic.write_bytes_atomic(target, b"one")
    os.chmod(target, 0o640)
    atomic.write_bytes_atomic(target, b"two")
    assert target.read_bytes() == b"two" and (os.stat(target).st_mode & 0o777) == 0o640
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic.write_bytes_atomic(tmp_path / "nope" / "f.bin", b"x")


# ---------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_keeps_last_n(tmp_path):
    directory = tmp_path / "ckpt"
    assert restore_checkpoint(directory) is None
    for step in range(1, 5):
        state = {"params": {"w": jnp.full((3,), float(step))}, "step": step,
                 "opt": [np.arange(step, dtype=np.float32)]}
        save_checkpoint(state, directory, step, max_to_keep=2)
    assert sorted(os.listdir(directory)) == ["3", "4"]
    step, state = restore_checkpoint(directory)
    assert step == 4
    np.testing.assert_array_equal(np.asarray(state["params"]["w"]), [4.0, 4.0, 4.0])
    assert int(np.asarray(state["step"])) == 4
    np.testing.assert_array_equal(np.asarray(state["opt"][0]), np.arange(4, dtype=np.float32))
    target = {"params": {"w": np.zeros(3, np.float32)}, "step": 0,
              "opt": [np.zeros(3, np.float32)]}
    step, state = restore_checkpoint(directory, target=target, step=3)
    assert step == 3 and float(np.asarray(state["params"]["w"])[0]) == 3.0
    with pytest.raises(FileNotFoundError, match="step 1"):
        restore_checkpoint(directory, step=1)
    save_checkpoint({"params": {"w": jnp.zeros(3)}, "step": 4, "opt": []}, directory, 4)
    step, state = restore_checkpoint(directory)  # saving an existing step replaces it
    assert step == 4 and float(np.asarray(state["params"]["w"])[0]) == 0.0


_CRASHING_SAVE = textwrap.dedent("""
    import os, sys
    import numpy as np
    from jaxgraph.saving import save_checkpoint

    directory = sys.argv[1]
    save_checkpoint({"w": np.full(3, 1.0)}, directory, 1)
    from orbax.checkpoint._src.path import async_path

    async def crash(src, dst):  # the process dies just before the commit rename
        os._exit(17)

    async_path.rename = crash
    save_checkpoint({"w": np.full(3, 2.0)}, directory, 2)
""")


def test_interrupted_checkpoint_is_ignored(tmp_path):
    directory = tmp_path / "ckpt"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _CRASHING_SAVE, str(directory)],
                          capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 17:
        pytest.fail(f"the crashing save did not crash as planned:\n{proc.stderr[-2000:]}")
    assert any("tmp" in name for name in os.listdir(directory))  # the torn write is there
    step, state = restore_checkpoint(directory)
    assert step == 1
    np.testing.assert_array_equal(np.asarray(state["w"]), np.full(3, 1.0))
    save_checkpoint({"w": np.full(3, 3.0)}, directory, 2)  # the step can be written again
    assert sorted(os.listdir(directory)) == ["1", "2"]  # and the torn write is gone
    step, state = restore_checkpoint(directory)
    assert step == 2 and float(np.asarray(state["w"])[0]) == 3.0

"""Model files name functions and classes, never code: crafted files, custom objects by
name (registered, unregistered, package-qualified), optax optimizers, symlinks and the
compile settings a file keeps."""

import json
import os
import subprocess
import sys
import warnings
import zipfile

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxgraph
from jaxgraph import Input, Model, layers
from jaxgraph.layers import base as layers_base
from jaxgraph.layers.serialization import resolve_function
from jaxgraph.saving import load_model, register_serializable, save_model

RNG = np.random.default_rng(0)
X = RNG.normal(size=(16, 4)).astype("float32")
Y = RNG.normal(size=(16, 2)).astype("float32")


def _dense_model():
    jaxgraph.utils.set_random_seed(0)
    x = Input((4,))
    return Model(x, layers.Dense(2, name="out")(layers.Dense(3, name="hidden")(x)))


def _rewrite(path, new_path, edit):
    """Copy a model file, passing config.json (as a dict) through `edit`."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(new_path, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "config.json":
                config = json.loads(data)
                edit(config)
                data = json.dumps(config)
            dst.writestr(name, data)
    return new_path


def _compile_json(path):
    return json.loads(zipfile.ZipFile(path).read("compile.json"))


# ---------------------------------------------------------------------------- crafted files


def _lambda_file(tmp_path):
    x = Input((3,))
    model = Model(x, layers.Lambda(jnp.tanh, name="lam")(x))
    path = tmp_path / "lam.keras"
    save_model(model, path)
    return model, path


def _with_function(path, fn_name, tmp_path):
    def edit(config):
        for entry in config["config"]["layers"]:
            if entry["class_name"] == "Lambda":
                entry["config"]["function"] = fn_name

    return _rewrite(path, tmp_path / "crafted.keras", edit)


@pytest.mark.parametrize("fn_name", [
    "jaxgraph.__main__.anything",  # importing it runs the CLI
    "jaxgraph.cli.main",
    "os.system",
    "builtins.eval",
    "jax.numpy.load",  # allow-listed module, but file I/O
    "jaxgraph.saving.load_model",
    "jax.numpy._src",
])
def test_crafted_lambda_function_is_refused_without_importing_or_calling(
        tmp_path, monkeypatch, import_spy, fn_name):
    import jaxgraph.cli

    _, path = _lambda_file(tmp_path)
    crafted = _with_function(path, fn_name, tmp_path)
    called = []
    monkeypatch.setattr(jaxgraph.cli, "main", lambda *a, **k: called.append(a))
    monkeypatch.delitem(sys.modules, "jaxgraph.__main__", raising=False)
    monkeypatch.setattr(sys, "argv", ["host_program.py", "--help"])
    with pytest.raises(ValueError) as info:
        load_model(crafted)
    msg = str(info.value)
    assert "'lam'" in msg and repr(fn_name) in msg
    assert "register_serializable" in msg and "custom_objects" in msg
    assert "jaxgraph.__main__" not in sys.modules
    assert called == []
    assert import_spy == []


def test_crafted_text_vectorization_split_is_refused(monkeypatch, import_spy):
    import jaxgraph.cli
    from jaxgraph.layers.serialization import deserialize_layer

    called = []
    monkeypatch.setattr(jaxgraph.cli, "main", lambda *a, **k: called.append(a))
    vec = layers.TextVectorization(max_tokens=10, output_sequence_length=3, name="vec")
    vec.adapt(["a b c", "b c d"])
    config = vec.get_config()
    config["split"] = "jaxgraph.cli.main"
    with pytest.raises(ValueError, match="'vec'.*jaxgraph.cli.main.*custom_objects"):
        deserialize_layer({"class_name": "TextVectorization", "config": config})
    with pytest.raises(ValueError, match="'vec'.*jaxgraph.cli.main"):
        layers.TextVectorization.from_config(config, custom_objects={"other": len})
    assert called == [] and import_spy == []


def test_allow_listed_array_functions_round_trip(tmp_path):
    x = Input((3,))
    y = layers.Lambda(jnp.tanh, name="t")(x)
    y = layers.Lambda(jaxgraph.activations.relu, name="r")(y)
    y = layers.Lambda(jnp.sum, arguments={"axis": -1}, name="s")(y)
    import jax

    y = layers.Lambda(jax.nn.softplus, name="sp")(y)
    model = Model(x, y)
    path = tmp_path / "ok.keras"
    save_model(model, path)
    names = {e["name"]: e["config"]["function"]
             for e in json.loads(zipfile.ZipFile(path).read("config.json"))["config"]["layers"]
             if e["class_name"] == "Lambda"}
    assert names == {"t": "jax.numpy.tanh", "r": "jaxgraph.activations.relu",
                     "s": "jax.numpy.sum", "sp": "jax.nn.softplus"}
    loaded = load_model(path)
    data = RNG.normal(size=(2, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(data)), np.asarray(model(data)), rtol=1e-6)


def twice(x):
    return 2.0 * x


def test_unregistered_lambda_function_needs_custom_objects(tmp_path):
    x = Input((3,))
    model = Model(x, layers.Lambda(twice, name="dbl")(x))
    path = tmp_path / "twice.keras"
    save_model(model, path)
    with pytest.raises(ValueError, match="'dbl'.*twice.*custom_objects=\\{'twice': twice\\}"):
        load_model(path)
    loaded = load_model(path, custom_objects={"twice": twice})
    data = np.ones((2, 3), "float32")
    np.testing.assert_array_equal(np.asarray(loaded(data)), 2.0 * data)


def test_resolve_function_uses_fixed_tables_only():
    assert resolve_function("jax.numpy.tanh") is jnp.tanh
    for name in ("jaxgraph.cli.main", "jax.numpy.load", "jax.numpy.save", "subprocess.run",
                 "jaxgraph.activations.get", "jax.numpy.linalg"):
        with pytest.raises(ValueError, match="not registered"):
            resolve_function(name, owner="lam")


# ---------------------------------------------------------------------------- losses, metrics


def mae_loss(y_true, y_pred):
    return jnp.mean(jnp.abs(y_true - y_pred), axis=-1)


def abs_gap(y_true, y_pred):
    return jnp.mean(jnp.abs(y_true - y_pred), axis=-1)


@register_serializable(package="SecTest")
def registered_loss(y_true, y_pred):
    return jnp.mean((y_true - y_pred) ** 2, axis=-1)


def loss_via_losses_register(y_true, y_pred):
    return jnp.mean(jnp.abs(y_true - y_pred) ** 1.5, axis=-1)


def metric_via_metrics_register(y_true, y_pred):
    return jnp.max(jnp.abs(y_true - y_pred), axis=-1)


jaxgraph.losses.register("sec_loss_15", loss_via_losses_register)
jaxgraph.metrics.register("sec_max_gap", metric_via_metrics_register)


def _no_none(value):
    if isinstance(value, dict):
        return all(_no_none(v) for v in value.values())
    if isinstance(value, list):
        return all(v is not None and _no_none(v) for v in value)
    return True


def test_unregistered_loss_and_metric_need_custom_objects(tmp_path):
    model = _dense_model()
    model.compile("adam", mae_loss, metrics=[abs_gap])
    model.fit(X, Y, epochs=1, verbose=0)
    path = tmp_path / "custom.keras"
    model.save(path)
    saved = _compile_json(path)
    assert saved["loss"] == {"class_name": "function", "config": "mae_loss",
                             "module": __name__}
    assert saved["metrics"][0]["config"] == "abs_gap"
    # Never compiled without its loss: a clear error naming it and the fixes.
    with pytest.raises(ValueError) as info:
        load_model(path)
    msg = str(info.value)
    assert "'mae_loss'" in msg and "custom_objects" in msg and "compile=False" in msg
    assert "register" in msg
    # compile=False loads the architecture and weights.
    plain = load_model(path, compile=False)
    assert plain._trainer is None
    np.testing.assert_array_equal(plain.predict(X, verbose=0), model.predict(X, verbose=0))
    # custom_objects resolve both; the result matches the original model.
    loaded = load_model(path, custom_objects={"mae_loss": mae_loss, "abs_gap": abs_gap})
    assert loaded.metrics_names == model.metrics_names
    np.testing.assert_allclose(loaded.evaluate(X, Y, verbose=0), model.evaluate(X, Y, verbose=0),
                               rtol=1e-6)
    # Only the metric missing: still an error, naming the metric.
    with pytest.raises(ValueError, match="metric 'abs_gap'"):
        load_model(path, custom_objects={"mae_loss": mae_loss})


def test_registered_losses_and_metrics_round_trip_by_name(tmp_path):
    model = _dense_model()
    model.compile("adam", registered_loss,
                  metrics=[registered_loss, metric_via_metrics_register, "sec_max_gap"])
    model.fit(X, Y, epochs=1, verbose=0)
    path = tmp_path / "registered.keras"
    model.save(path)
    saved = _compile_json(path)
    assert saved["loss"]["config"] == "SecTest>registered_loss"
    assert [m if isinstance(m, str) else m["config"] for m in saved["metrics"]] == [
        "SecTest>registered_loss", "sec_max_gap", "sec_max_gap"]
    assert _no_none(saved)
    loaded = load_model(path)
    assert loaded.metrics_names == model.metrics_names
    np.testing.assert_allclose(loaded.evaluate(X, Y, verbose=0), model.evaluate(X, Y, verbose=0),
                               rtol=1e-6)
    history = loaded.fit(X, Y, epochs=1, verbose=0)
    assert history.history["loss"][0] > 0.0


def test_losses_register_round_trip_and_custom_objects_by_registered_name(tmp_path, monkeypatch):
    model = _dense_model()
    model.compile("sgd", loss_via_losses_register)
    path = tmp_path / "reg.keras"
    model.save(path)
    assert _compile_json(path)["loss"] == "sec_loss_15"
    loaded = load_model(path)
    np.testing.assert_allclose(loaded.evaluate(X, Y, verbose=0), model.evaluate(X, Y, verbose=0),
                               rtol=1e-6)
    # In a process where it is not registered, custom_objects by that name work.
    monkeypatch.delitem(jaxgraph.losses._CUSTOM, "sec_loss_15")
    with pytest.raises(ValueError, match="sec_loss_15.*compile=False"):
        load_model(path)
    loaded = load_model(path, custom_objects={"sec_loss_15": loss_via_losses_register})
    np.testing.assert_allclose(loaded.evaluate(X, Y, verbose=0), model.evaluate(X, Y, verbose=0),
                               rtol=1e-6)


def test_wrapped_unregistered_loss_and_metric_objects(tmp_path):
    model = _dense_model()
    model.compile("adam", jaxgraph.losses.LossFunctionWrapper(mae_loss, name="wrapped"),
                  metrics=[jaxgraph.metrics.MeanMetricWrapper(abs_gap, name="gap")])
    path = tmp_path / "wrapped.keras"
    model.save(path)
    assert _no_none(_compile_json(path))
    with pytest.raises(ValueError, match="mae_loss"):
        load_model(path)
    loaded = load_model(path, custom_objects={"mae_loss": mae_loss, "abs_gap": abs_gap})
    assert loaded.metrics_names == model.metrics_names
    np.testing.assert_allclose(loaded.evaluate(X, Y, verbose=0), model.evaluate(X, Y, verbose=0),
                               rtol=1e-6)


def test_builtin_loss_and_metric_objects_round_trip(tmp_path):
    model = _dense_model()
    model.compile("adam", jaxgraph.losses.Huber(delta=0.5),
                  metrics=[jaxgraph.metrics.MeanAbsoluteError(name="m"), "mse"])
    path = tmp_path / "objects.keras"
    model.save(path)
    loaded = load_model(path)
    assert loaded.metrics_names == model.metrics_names
    np.testing.assert_allclose(loaded.evaluate(X, Y, verbose=0), model.evaluate(X, Y, verbose=0),
                               rtol=1e-6)


def test_metrics_serialize_registered_function():
    assert jaxgraph.metrics.serialize(metric_via_metrics_register) == "sec_max_gap"
    with pytest.raises(TypeError, match="register"):
        jaxgraph.metrics.serialize(abs_gap)


# ---------------------------------------------------------------------------- optimizers


def test_optax_optimizer_warns_on_save_and_file_loads(tmp_path):
    model = _dense_model()
    model.compile(optax.sgd(0.1, momentum=0.9), "mse", metrics=["mae"])
    model.fit(X, Y, epochs=1, verbose=0)
    path = tmp_path / "optax.keras"
    with pytest.warns(UserWarning, match="optimizer optax.*cannot be serialized"):
        model.save(path)
    assert "optimizer.npz" not in zipfile.ZipFile(path).namelist()
    assert _compile_json(path)["optimizer"]["class_name"] == "__unserializable__"
    with pytest.warns(UserWarning, match="optimizer optax.*not restored.*rmsprop"):
        loaded = load_model(path)
    assert loaded.metrics_names == model.metrics_names
    np.testing.assert_allclose(loaded.evaluate(X, Y, verbose=0), model.evaluate(X, Y, verbose=0),
                               rtol=1e-6)
    before = loaded.get_weights()[0].copy()
    loaded.fit(X, Y, epochs=1, verbose=0)
    assert not np.array_equal(before, loaded.get_weights()[0])


def test_file_with_null_optimizer_loads_with_a_warning(tmp_path):
    # Files written before the fix recorded an optax optimizer as null.
    model = _dense_model()
    model.compile("adam", "mse")
    path = tmp_path / "m.keras"
    model.save(path)
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
        for name in src.namelist():
            if name == "optimizer.npz":
                continue
            data = src.read(name)
            if name == "compile.json":
                data = json.dumps({**json.loads(data), "optimizer": None})
            dst.writestr(name, data)
    with pytest.warns(UserWarning, match="not restored"):
        loaded = load_model(old)
    assert loaded.evaluate(X, Y, verbose=0) == pytest.approx(model.evaluate(X, Y, verbose=0))


# ---------------------------------------------------------------------------- custom layers


def _block_class(package, delta):
    class SecBlock(layers.Layer):
        def call(self, w, x):
            return x + delta

    return register_serializable(package=package)(SecBlock)


BlockA = _block_class("secA", 1.0)
BlockB = _block_class("secB", -1.0)


def test_same_class_name_in_two_packages(tmp_path):
    assert BlockA.__name__ == BlockB.__name__ == "SecBlock"
    x = Input((3,))
    model = Model(x, [BlockA(name="a")(x), BlockB(name="b")(x)])
    path = tmp_path / "blocks.keras"
    save_model(model, path)
    entries = {e["name"]: e for e in
               json.loads(zipfile.ZipFile(path).read("config.json"))["config"]["layers"]}
    assert entries["a"]["registered_name"] == "secA>SecBlock"
    assert entries["b"]["registered_name"] == "secB>SecBlock"
    loaded = load_model(path)
    assert type(loaded.get_layer("a")) is BlockA and type(loaded.get_layer("b")) is BlockB
    data = np.zeros((1, 3), "float32")
    a, b = loaded(data)
    np.testing.assert_array_equal(np.asarray(a), data + 1.0)
    np.testing.assert_array_equal(np.asarray(b), data - 1.0)
    # custom_objects by the registered name wins.
    swapped = load_model(path, custom_objects={"secA>SecBlock": BlockB})
    assert type(swapped.get_layer("a")) is BlockB


def _scale_class(factor):
    class SecScale(layers.Layer):
        def call(self, w, x):
            return x * factor

    return SecScale


def test_redefined_class_replaces_the_stale_one(tmp_path):
    old = _scale_class(2.0)
    x = Input((3,))
    path = tmp_path / "scale.keras"
    save_model(Model(x, old(name="s")(x)), path)
    new = _scale_class(3.0)  # a re-run notebook cell: same module and qualified name
    loaded = load_model(path)
    assert type(loaded.get_layer("s")) is new
    np.testing.assert_array_equal(np.asarray(loaded(np.ones((1, 3), "float32"))),
                                  np.full((1, 3), 3.0, "float32"))

    # Registered: registering the redefinition again replaces the old one too.
    reg_old = register_serializable(package="secR")(_scale_class(4.0))
    save_model(Model(x, reg_old(name="r")(x)), path)
    reg_new = register_serializable(package="secR")(_scale_class(5.0))
    assert type(load_model(path).get_layer("r")) is reg_new


def _twin(module, delta):
    def call(self, w, x):
        return x + delta

    return type("SecTwin", (layers.Layer,), {"__module__": module, "call": call})


def test_unregistered_namesakes_never_shadow_each_other(tmp_path):
    one = _twin("sec_pkg_one.blocks", 1.0)
    two = _twin("sec_pkg_two.blocks", 2.0)
    x = Input((3,))
    path = tmp_path / "twin.keras"
    save_model(Model(x, one(name="t")(x)), path)
    entry = [e for e in json.loads(zipfile.ZipFile(path).read("config.json"))["config"]["layers"]
             if e["name"] == "t"][0]
    assert entry["module"] == "sec_pkg_one.blocks" and "registered_name" not in entry
    assert type(load_model(path).get_layer("t")) is one  # matched by module
    save_model(Model(x, two(name="t")(x)), path)
    assert type(load_model(path).get_layer("t")) is two

    # A file that does not say which (no module, or another one): an error naming both.
    def drop_module(config):
        for e in config["config"]["layers"]:
            e.pop("module", None)

    def other_module(config):
        for e in config["config"]["layers"]:
            if "module" in e:
                e["module"] = "sec_pkg_three.blocks"

    for edit in (drop_module, other_module):
        crafted = _rewrite(path, tmp_path / f"{edit.__name__}.keras", edit)
        with pytest.raises(ValueError, match="Ambiguous") as info:
            load_model(crafted)
        assert "sec_pkg_one.blocks" in str(info.value)
        assert "sec_pkg_two.blocks" in str(info.value)
        loaded = load_model(crafted, custom_objects={"SecTwin": two})
        assert type(loaded.get_layer("t")) is two


def test_builtin_layers_record_no_module_and_win_over_user_namesakes(tmp_path):
    class Dense(layers.Layer):  # a user class shadowing a built-in name
        def call(self, w, x):
            return x

    try:
        model = _dense_model()
        path = tmp_path / "dense.keras"
        save_model(model, path)
        config = json.loads(zipfile.ZipFile(path).read("config.json"))
        assert all("module" not in e for e in config["config"]["layers"])
        assert type(load_model(path).get_layer("out")) is layers.Dense
    finally:
        layers_base._DEFINED_LAYERS["Dense"].pop(layers_base._qualified_name(Dense))


# ---------------------------------------------------------------------------- files, settings


def test_save_through_a_symlink_keeps_the_link(tmp_path):
    model = _dense_model()
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    real = real_dir / "model.keras"
    model.save(real)
    link = tmp_path / "link.keras"
    os.symlink(real, link)
    model.get_layer("out").set_weights([np.zeros((3, 2), "float32"), np.ones(2, "float32")])
    model.save(link)
    assert os.path.islink(link) and os.readlink(link) == str(real)
    assert sorted(os.listdir(tmp_path)) == ["link.keras", "real"]
    assert sorted(os.listdir(real_dir)) == ["model.keras"]
    np.testing.assert_array_equal(load_model(real).predict(X, verbose=0),
                                  model.predict(X, verbose=0))
    wlink = tmp_path / "w.weights.h5"
    os.symlink(real_dir / "w.weights.h5", wlink)  # dangling until the first save
    model.save_weights(wlink)
    assert os.path.islink(wlink) and (real_dir / "w.weights.h5").is_file()


def test_loss_weights_set_after_compile_are_saved(tmp_path):
    jaxgraph.utils.set_random_seed(0)
    x = Input((4,))
    h = layers.Dense(3)(x)
    model = Model(x, [layers.Dense(2, name="a")(h), layers.Dense(2, name="b")(h)])
    model.compile("sgd", ["mse", "mse"], loss_weights=[1.0, 1.0])
    model.fit(X, [Y, Y], epochs=1, verbose=0)
    model.loss_weights = [0.0, 2.0]
    path = tmp_path / "lw.keras"
    model.save(path)
    loaded = load_model(path)
    assert loaded.loss_weights == [0.0, 2.0]
    np.testing.assert_allclose(loaded.evaluate(X, [Y, Y], verbose=0),
                               model.evaluate(X, [Y, Y], verbose=0), rtol=1e-6)

    model.compile("sgd", {"a": "mse", "b": "mse"}, loss_weights={"a": 1.0, "b": 0.5})
    model.loss_weights = {"a": 3.0, "b": 0.25}
    model.save(path)
    assert _compile_json(path)["loss_weights"] == {"a": 3.0, "b": 0.25}
    assert load_model(path).loss_weights == [3.0, 0.25]


def test_import_jaxgraph_makes_saving_available():
    code = ("import jaxgraph; "
            "assert callable(jaxgraph.saving.register_serializable); "
            "assert callable(jaxgraph.saving.load_model)")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    with warnings.catch_warnings():
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_in_process_compile_record_keeps_none_for_what_only_a_file_can_name():
    model = _dense_model()
    model.compile(optax.adam(1e-3), [mae_loss], metrics=[abs_gap, "mae"])
    record = model._compile_config
    assert record["optimizer"] is None and record["loss"] == [None]
    assert record["metrics"] == [None, "mae"]
    assert record.saved["loss"][0]["config"] == "mae_loss"
    assert record.saved["optimizer"]["class_name"] == "__unserializable__"

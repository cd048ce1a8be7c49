"""Keras-style Model subclasses (layers made in __init__, wired in call), as in chapter 7
of the book: traced once on Inputs shaped like the first data, then a functional graph."""

import os

import numpy as np
import pytest

import jaxgraph


@pytest.fixture(scope="module")
def keras():
    os.environ["KERAS_BACKEND"] = "jax"
    return pytest.importorskip("keras")


def ticket_model_class(lib):
    class CustomerTicketModel(lib.Model):
        def __init__(self, num_departments):
            super().__init__()
            self.concat_layer = lib.layers.Concatenate()
            self.mixing_layer = lib.layers.Dense(64, activation="relu")
            self.priority_scorer = lib.layers.Dense(1, activation="sigmoid")
            self.department_classifier = lib.layers.Dense(num_departments,
                                                          activation="softmax")

        def call(self, inputs):
            features = self.concat_layer([inputs["title"], inputs["text_body"],
                                          inputs["tags"]])
            features = self.mixing_layer(features)
            return self.priority_scorer(features), self.department_classifier(features)

    return CustomerTicketModel


def _tickets(n=64, seed=0):
    rng = np.random.default_rng(seed)
    data = {"title": rng.integers(0, 2, (n, 20)).astype("float32"),
            "text_body": rng.integers(0, 2, (n, 30)).astype("float32"),
            "tags": rng.integers(0, 2, (n, 5)).astype("float32")}
    return data, [rng.random((n, 1)).astype("float32"),
                  np.eye(4, dtype="float32")[rng.integers(0, 4, n)]]


def test_book_subclassed_model_matches_keras(keras):
    data, targets = _tickets()
    km = ticket_model_class(keras)(num_departments=4)
    jm = ticket_model_class(jaxgraph)(num_departments=4)
    k_out, j_out = km(data), jm(data)
    assert [tuple(o.shape) for o in j_out] == [(64, 1), (64, 4)]
    assert [w.shape for w in jm.get_weights()] == [w.shape for w in km.get_weights()]
    assert jm.count_params() == km.count_params() == 55 * 64 + 64 + 65 + 260
    jm.set_weights(km.get_weights())
    for a, b in zip(jm(data), km(data)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert len(k_out) == len(j_out) == 2
    for m in (km, jm):
        m.compile(optimizer="rmsprop", loss=["mean_squared_error", "categorical_crossentropy"])
    kh = km.fit(data, targets, epochs=2, batch_size=16, shuffle=False, verbose=0).history
    jh = jm.fit(data, targets, epochs=2, batch_size=16, shuffle=False, verbose=0).history
    np.testing.assert_allclose(jh["loss"], kh["loss"], rtol=1e-5)
    np.testing.assert_allclose(jm.evaluate(data, targets, verbose=0)[0],
                               km.evaluate(data, targets, verbose=0)[0], rtol=1e-5)


def test_subclass_compiled_before_any_call_builds_from_fit_data():
    data, targets = _tickets()
    model = ticket_model_class(jaxgraph)(num_departments=4)
    model.compile("adam", ["mse", "categorical_crossentropy"])
    history = model.fit(data, targets, epochs=2, verbose=0).history
    assert model.built and sorted(model.input_names) == ["tags", "text_body", "title"]
    assert history["loss"][1] < history["loss"][0]
    priority, department = model.predict(data, verbose=0)
    np.testing.assert_allclose(department.sum(-1), 1.0, rtol=1e-5)


def test_subclass_as_a_layer_build_and_pure_core():
    class Residual(jaxgraph.Model):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.dense = jaxgraph.layers.Dense(units)

        def call(self, x):
            return jaxgraph.layers.add([x, self.dense(x)])

    block = Residual(6, name="res")
    inp = jaxgraph.Input((6,))
    outer = jaxgraph.Model(inp, jaxgraph.layers.Dense(2)(block(block(inp))))
    assert outer.count_params() == 6 * 6 + 6 + 6 * 2 + 2  # one set of block weights
    x = np.random.default_rng(1).standard_normal((3, 6)).astype("float32")
    kernel, bias = block.get_weights()
    once = x + x @ kernel + bias
    twice = once + once @ kernel + bias
    head_k, head_b = outer.layers[-1].get_weights()
    np.testing.assert_allclose(outer.predict(x, verbose=0), twice @ head_k + head_b,
                               rtol=1e-5, atol=1e-5)

    built = Residual(4)
    built.build((None, 4))
    assert built.inputs[0].shape == (None, 4)
    out, _ = built.apply(built.variables, x[:, :4])
    assert out.shape == (3, 4)


def test_subclass_save_and_load_gives_the_graph_back(tmp_path):
    data, targets = _tickets(n=16)
    model = ticket_model_class(jaxgraph)(num_departments=4)
    model.compile("rmsprop", ["mse", "categorical_crossentropy"])
    model.fit(data, targets, verbose=0)
    path = str(tmp_path / "tickets.keras")
    model.save(path)
    loaded = jaxgraph.models.load_model(path)
    assert isinstance(loaded, jaxgraph.Model)
    for a, b in zip(loaded.predict(data, verbose=0), model.predict(data, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_subclass_with_get_config_loads_as_its_class_with_dict_inputs(tmp_path):
    """With its own get_config, the subclass is made again by `cls(**config)` and traced
    on the input specs the file keeps (Keras's build_config), dict inputs included."""
    base = ticket_model_class(jaxgraph)

    class Tickets(base):
        def __init__(self, num_departments, **kwargs):
            super().__init__(num_departments)
            self.num_departments = num_departments

        def get_config(self):
            return {"num_departments": self.num_departments}

    data, targets = _tickets(n=16)
    model = Tickets(num_departments=4)
    model.compile("rmsprop", ["mse", "categorical_crossentropy"])
    model.fit(data, targets, verbose=0)
    path = str(tmp_path / "tickets.keras")
    model.save(path)
    loaded = jaxgraph.models.load_model(path, custom_objects={"Tickets": Tickets})
    assert type(loaded) is Tickets and loaded.num_departments == 4
    assert sorted(loaded.input_names) == ["tags", "text_body", "title"]
    for a, b in zip(loaded.predict(data, verbose=0), model.predict(data, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_subclass_call_must_wire_layers():
    class Constant(jaxgraph.Model):
        def call(self, x):
            return np.zeros((1, 2))

    with pytest.raises(TypeError, match="Constant.call must wire layers"):
        Constant()(np.ones((2, 3), "float32"))


def simple_dense_class(lib, ops):
    class SimpleDense(lib.layers.Layer):
        """Chapter 3's layer, written the Keras way: weights as attributes."""

        def __init__(self, units, activation=None, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.activation = activation

        def build(self, input_shape):
            self.W = self.add_weight(shape=(input_shape[-1], self.units),
                                     initializer="random_normal")
            self.b = self.add_weight(shape=(self.units,), initializer="zeros")

        def call(self, inputs, training=None):
            y = ops.matmul(inputs, self.W) + self.b
            return self.activation(y) if self.activation is not None else y

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    return SimpleDense


def test_keras_style_custom_layer_matches_keras(keras, tmp_path):
    import jax.numpy as jnp

    x = np.random.default_rng(2).standard_normal((32, 5)).astype("float32")
    y = x[:, :1] * 2.0

    def build(lib, ops):
        inp = lib.Input((5,))
        h = simple_dense_class(lib, ops)(8, activation=lib.activations.relu, name="sd")(inp)
        return lib.Model(inp, lib.layers.Dense(1)(h))

    km, jm = build(keras, keras.ops), build(jaxgraph, jnp)
    assert [w.shape for w in jm.get_weights()] == [w.shape for w in km.get_weights()]
    jm.set_weights(km.get_weights())
    np.testing.assert_allclose(jm.predict(x, verbose=0), km.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    for m in (km, jm):
        m.compile("sgd", "mse")
    kh = km.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0).history["loss"]
    jh = jm.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(jh, kh, rtol=1e-5)
    layer = jm.get_layer("sd")
    assert layer.W.shape == (5, 8) and layer.W is layer.weights[0]  # attributes untouched
    out, _ = jm.apply(jm.variables, x[:3])  # the pure core reads the pytree, not attributes
    variables = jm.variables
    variables["params"]["sd"][layer.W.name] = jnp.zeros((5, 8))
    zeroed, _ = jm.apply(variables, x[:3])
    assert not np.allclose(out, zeroed)


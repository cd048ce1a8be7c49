"""jaxgraph.ensemble: weighted averages, the Ensemble model, weight fitting, fit_vmapped."""

import jax
import numpy as np
import pytest

import jaxgraph
from jaxgraph import Input, Model, ensemble, layers
from jaxgraph.models import load_model


def _member(name, units=8, outputs=3, seed=0):
    inputs = Input(shape=(4,))
    h = layers.Dense(units, activation="relu")(inputs)
    model = Model(inputs, layers.Dense(outputs, activation="softmax")(h), name=name)
    model.variables = model.init(seed)
    return model


def _data(n=32):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)).astype("float32"), rng.integers(0, 3, size=(n,))


# ---------------------------------------------------------------------------- weighted_average


def test_weighted_average_normalizes_and_validates():
    a, b = np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32)
    np.testing.assert_allclose(ensemble.weighted_average([a, b]), 0.5)
    np.testing.assert_allclose(ensemble.weighted_average([a, b], [1, 3]), 0.75)
    assert isinstance(ensemble.weighted_average([a, b]), np.ndarray)
    with pytest.raises(ValueError, match="list of 2 numbers.*shape \\(3,\\)"):
        ensemble.weighted_average([a, b], [1, 2, 3])
    with pytest.raises(ValueError, match="non-negative; member\\(s\\) \\[1\\]"):
        ensemble.weighted_average([a, b], [1, -1])
    with pytest.raises(ValueError, match="sum to zero"):
        ensemble.weighted_average([a, b], [0, 0])
    with pytest.raises(ValueError, match="predictions\\[1\\] has shape \\(2, 4\\)"):
        ensemble.weighted_average([a, np.ones((2, 4))])
    with pytest.raises(ValueError, match="non-empty list"):
        ensemble.weighted_average([])


# ---------------------------------------------------------------------------- Ensemble


def test_ensemble_is_a_model_that_saves_and_nests(tmp_path):
    x, y = _data()
    m1, m2 = _member("m1", seed=1), _member("m2", units=5, seed=2)
    ens = ensemble.Ensemble([m1, m2], weights=[3, 1])
    np.testing.assert_allclose(ens.member_weights, [0.75, 0.25])
    assert ens.members == [m1, m2]
    expected = ensemble.weighted_average([m1.predict(x, verbose=0), m2.predict(x, verbose=0)],
                                         [3, 1])
    np.testing.assert_allclose(ens.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert ens.count_params() == m1.count_params() + m2.count_params() + 2

    ens.compile(loss="sparse_categorical_crossentropy", metrics=["acc"])
    loss, acc = ens.evaluate(x, y, verbose=0)
    probs = expected[np.arange(len(y)), y]
    assert loss == pytest.approx(-np.log(probs).mean(), rel=1e-4)
    assert acc == pytest.approx(np.mean(expected.argmax(1) == y))

    ens.member_weights = [0.0, 2.0]  # renormalized; changes the outputs
    np.testing.assert_allclose(ens.predict(x, verbose=0), m2.predict(x, verbose=0), atol=1e-6)
    ens.member_weights = [1.0, 1.0]
    path = tmp_path / "ensemble.keras"
    ens.save(path)
    loaded = load_model(path)
    assert isinstance(loaded, ensemble.Ensemble) and len(loaded.members) == 2
    np.testing.assert_allclose(loaded.member_weights, [0.5, 0.5])
    np.testing.assert_allclose(loaded.predict(x, verbose=0), ens.predict(x, verbose=0),
                               atol=1e-6)

    inputs = Input(shape=(4,))  # used as a layer inside a bigger model
    outer = Model(inputs, layers.Dense(1)(ens(inputs)))
    assert outer.count_params() == ens.count_params() + 3 + 1


def test_ensemble_bad_input():
    m1, m2 = _member("a"), _member("b")
    with pytest.raises(ValueError, match="list of 2 numbers"):
        ensemble.Ensemble([m1, m2], weights=[1.0])
    with pytest.raises(ValueError, match="non-negative"):
        ensemble.Ensemble([m1, m2], weights=[1.0, -0.5])
    with pytest.raises(ValueError, match="member 1 \\('c'\\) has output 0 of shape"):
        ensemble.Ensemble([m1, _member("c", outputs=4)])
    other = Input(shape=(5,))
    with pytest.raises(ValueError, match="member 1 \\('d'\\) has input of shape"):
        ensemble.Ensemble([m1, Model(other, layers.Dense(3)(other), name="d")])
    with pytest.raises(ValueError, match="both named 'a'"):
        ensemble.Ensemble([m1, _member("a")])
    with pytest.raises(TypeError, match="list of jaxgraph models"):
        ensemble.Ensemble(m1)
    with pytest.raises(ValueError, match="empty"):
        ensemble.Ensemble([])


def test_fit_ensemble_weights_prefers_the_informative_member():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=200)
    good = np.full((200, 3), 0.1, np.float32)
    good[np.arange(200), y] = 0.8
    noise = rng.dirichlet(np.ones(3), size=200).astype(np.float32)
    w = ensemble.fit_ensemble_weights([noise, good], y_val=y)
    assert w.shape == (2,) and np.all(w >= 0) and w.sum() == pytest.approx(1.0)
    assert w[1] > 0.9

    def nll(p):
        return -np.log(p[np.arange(200), y]).mean()

    mixed = ensemble.weighted_average([noise, good], w)
    assert nll(mixed) <= min(nll(noise), nll(good)) + 1e-6
    one_hot = np.eye(3, dtype=np.float32)[y]
    w2 = ensemble.fit_ensemble_weights([noise, good], y_val=one_hot)
    np.testing.assert_allclose(w, w2, atol=1e-4)
    brier = ensemble.fit_ensemble_weights([noise, good], y_val=y, loss="mse")
    assert brier[1] > 0.9 and brier.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="Entry 1 predicts shape \\(200, 4\\)"):
        ensemble.fit_ensemble_weights([noise, np.ones((200, 4))], y_val=y)
    with pytest.raises(ValueError, match="y_val has 10 samples"):
        ensemble.fit_ensemble_weights([noise, good], y_val=y[:10])


# ---------------------------------------------------------------------------- fit_vmapped


def test_fit_vmapped_trains_members_in_one_program():
    (x, y), (xt, yt) = jaxgraph.datasets.digits.load_data()
    x = x.reshape(-1, 64).astype("float32") / 255
    xt = xt.reshape(-1, 64).astype("float32") / 255

    def build():
        inputs = Input(shape=(64,))
        h = layers.Dense(32, activation="relu")(inputs)
        model = Model(inputs, layers.Dense(10, activation="softmax")(h), name="digits_net")
        model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy",
                      metrics=["acc"])
        return model

    ens = ensemble.fit_vmapped(build, 8, x, y, seed=0, epochs=3, batch_size=64)
    assert ens.population.trace_counts["train_step"] == 1  # one compiled program for all
    assert len(ens.members) == 8 and len({m.name for m in ens.members}) == 8
    kernels = [m.get_weights()[0] for m in ens.members]
    assert all(not np.allclose(kernels[0], k) for k in kernels[1:])
    for history in ens.population.histories:
        assert len(history["loss"]) == 3 and history["loss"][-1] < history["loss"][0]
    template = ens.population.model  # every member's predictions in one vmapped call
    probs = np.asarray(jax.vmap(lambda v: template.apply(v, xt)[0])(ens.population.variables))
    np.testing.assert_allclose(ens.members[3].predict(xt, verbose=0), probs[3], atol=1e-5)
    member_acc = [np.mean(p.argmax(1) == yt) for p in probs]
    _, ens_acc = ens.evaluate(xt, yt, verbose=0)
    assert ens_acc >= max(member_acc) - 1e-6, (ens_acc, member_acc)
    with pytest.raises(TypeError, match="unsupported fit argument\\(s\\) \\['callbacks'\\]"):
        ensemble.fit_vmapped(build, 2, x, y, callbacks=[])
    with pytest.raises(ValueError, match="n_members must be an int >= 1"):
        ensemble.fit_vmapped(build, 0, x, y)

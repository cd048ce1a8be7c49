"""jaxgraph.tune: define-by-run hyperparameters, Optuna-backed searches, populations."""

import numpy as np
import optuna
import pytest

import jaxgraph
from jaxgraph import Input, Model, callbacks, layers, optimizers, tune
from jaxgraph.utils import set_random_seed

# ---------------------------------------------------------------------------- helpers


def _quadratic(hp):
    """A cheap objective with its optimum (0.0) at x=0.3, y=-0.2."""
    x = hp.Float("x", -2.0, 2.0)
    y = hp.Float("y", -2.0, 2.0)
    return (x - 0.3) ** 2 + (y + 0.2) ** 2


def _controlled(hp):
    """A compiled model whose val_loss is exactly c**2: a frozen kernel c, x=1, y=0."""
    c = hp.Choice("c", [-2.0, 0.5, 1.5])
    inputs = Input(shape=(1,))
    out = layers.Dense(1, use_bias=False, trainable=False,
                       kernel_initializer=jaxgraph.initializers.Constant(c))(inputs)
    model = Model(inputs, out)
    model.compile(optimizer="sgd", loss="mse")
    return model


_ONES = np.ones((16, 1), np.float32)
_ZEROS = np.zeros((16, 1), np.float32)


def _regression_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 1)).astype("float32")
    return x, 3.0 * x


def _regressor(hp):
    lr = hp.Choice("lr", [0.0, 0.1])
    inputs = Input(shape=(1,))
    model = Model(inputs, layers.Dense(1, kernel_initializer="zeros")(inputs))
    model.compile(optimizer=optimizers.SGD(learning_rate=lr), loss="mse")
    return model


# ---------------------------------------------------------------------------- hyperparameters


def test_hyperparameters_defaults_values_and_conditions():
    hp = tune.HyperParameters()
    assert hp.Int("units", 32, 128, step=32) == 32
    assert hp.Float("lr", 1e-4, 1e-1, sampling="log", default=1e-3) == pytest.approx(1e-3)
    assert hp.Choice("act", ["relu", "tanh"]) == "relu"
    assert hp.Boolean("bn") is False
    assert hp.Fixed("epochs", 5) == 5
    with hp.conditional_scope("act", ["tanh"]):
        assert hp.Int("extra", 1, 3) is None  # inactive branch: not sampled
    assert hp["units"] == 32 and hp.get("extra") is None
    assert "extra" not in hp.values and hp.values["epochs"] == 5
    assert hp.Int("units", 32, 128, step=32) == 32  # asking again returns the same value
    pinned = tune.HyperParameters(values={"units": 96, "act": "tanh"})
    assert pinned.Int("units", 32, 128, step=32) == 96
    pinned.Choice("act", ["relu", "tanh"])
    with pinned.conditional_scope("act", "tanh"):
        assert pinned.Int("extra", 1, 3) == 1


def test_hyperparameter_bad_input():
    hp = tune.HyperParameters()
    with pytest.raises(ValueError, match="'n'.*min_value \\(5\\) is greater than max_value"):
        hp.Int("n", 5, 1)
    with pytest.raises(ValueError, match="'opt'.*at least one value"):
        hp.Choice("opt", [])
    with pytest.raises(ValueError, match="unknown sampling 'reverse_log'"):
        hp.Float("f", 0.1, 1.0, sampling="reverse_log")
    with pytest.raises(ValueError, match="sampling='log' needs min_value > 0"):
        hp.Float("g", 0.0, 1.0, sampling="log")
    with pytest.raises(AttributeError, match="no method 'Integer'.*Int"):
        hp.Integer("n", 1, 2)
    with pytest.raises(ValueError, match="parent hyperparameter 'missing'"):
        with hp.conditional_scope("missing", [1]):
            pass
    hp.Int("k", 1, 4)
    with pytest.raises(ValueError, match="'k' is declared twice"):
        hp.Int("k", 1, 8)
    with pytest.raises(ValueError, match="outside its space"):
        tune.HyperParameters(values={"k": 9}).Int("k", 1, 4)


def test_objective_direction():
    assert tune.infer_direction("val_loss") == "minimize"
    assert tune.infer_direction("val_mean_absolute_error") == "minimize"
    assert tune.infer_direction("val_acc") == "maximize"
    assert tune.infer_direction("auc") == "maximize"
    assert tune.Objective("val_f", "max").direction == "maximize"
    with pytest.raises(ValueError, match="'val_foo'.*direction="):
        tune.RandomSearch(_quadratic, objective="val_foo")
    with pytest.raises(ValueError, match="Unknown direction 'up'"):
        tune.Objective("val_loss", "up")


# ---------------------------------------------------------------------------- searches


def test_random_search_returns_the_truly_best_trial():
    tuner = tune.RandomSearch(_controlled, objective="val_loss", max_trials=5, seed=1,
                              verbose=0)
    tuner.search(_ONES, _ZEROS, validation_data=(_ONES, _ZEROS), epochs=2, batch_size=8)
    rows = tuner.results
    assert len(rows) == 5 and all(r["status"] == "COMPLETE" for r in rows)
    for r in rows:  # each score is the known function of its hyperparameters
        assert r["score"] == pytest.approx(r["hyperparameters"]["c"] ** 2, rel=1e-6)
    assert {r["hyperparameters"]["c"] for r in rows} == {-2.0, 0.5, 1.5}
    assert tuner.get_best_hyperparameters()[0] == {"c": 0.5}
    best = tuner.get_best_models()[0]
    assert best.evaluate(_ONES, _ZEROS, verbose=0) == pytest.approx(0.25, rel=1e-6)
    ranked = [h["c"] ** 2 for h in tuner.get_best_hyperparameters(5)]
    assert ranked == sorted(r["score"] for r in rows)


def test_tpe_beats_random_search_on_average():
    def best_of(cls, seed):
        tuner = cls(_quadratic, objective="loss", max_trials=30, seed=seed, verbose=0)
        tuner.search()
        return min(r["score"] for r in tuner.results)

    seeds = range(4)
    tpe = np.mean([best_of(tune.TPESearch, s) for s in seeds])
    rnd = np.mean([best_of(tune.RandomSearch, s) for s in seeds])
    assert tpe < rnd, (tpe, rnd)


def test_search_resumes_from_disk_without_repeating_trials(tmp_path):
    calls = []

    def objective(hp):
        calls.append(1)
        return _quadratic(hp)

    first = tune.RandomSearch(objective, objective="loss", max_trials=3, seed=0,
                              directory=tmp_path, project_name="resume", verbose=0)
    first.search()
    old = first.results
    assert len(calls) == 3 and (tmp_path / "resume.db").exists()

    second = tune.RandomSearch(objective, objective="loss", max_trials=6, seed=0,
                               directory=tmp_path, project_name="resume", verbose=0)
    assert second.results == old  # loaded from disk before searching
    second.search()
    rows = second.results
    assert len(calls) == 6
    assert [r["number"] for r in rows] == list(range(6))
    assert rows[:3] == old
    old_points = {tuple(r["hyperparameters"].values()) for r in old}
    assert not old_points & {tuple(r["hyperparameters"].values()) for r in rows[3:]}

    second.search()  # nothing left to do
    assert len(calls) == 6
    fresh = tune.RandomSearch(objective, objective="loss", max_trials=2, seed=0,
                              directory=tmp_path, project_name="resume", overwrite=True,
                              verbose=0)
    assert fresh.results == []
    fresh.search()
    assert len(fresh.results) == 2 and len(calls) == 8
    with pytest.raises(ValueError, match="optimizes 'loss'"):
        tune.RandomSearch(objective, objective="val_acc", directory=tmp_path,
                          project_name="resume")


class _EpochCounter(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.per_fit = []

    def on_train_begin(self, logs=None):
        self.per_fit.append(0)

    def on_epoch_end(self, epoch, logs=None):
        self.per_fit[-1] += 1


def test_pruning_stops_a_hopeless_trial_early(tmp_path):
    x, y = _regression_data()
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    tuner = tune.TPESearch(_regressor, objective="val_loss", max_trials=3, seed=0,
                           pruner=pruner, directory=tmp_path, verbose=0)
    for lr in (0.1, 0.1, 0.0):  # the last one never learns
        tuner.enqueue({"lr": lr})
    counter = _EpochCounter()
    tuner.search(x, y, validation_data=(x, y), epochs=5, batch_size=16, callbacks=[counter])
    rows = tuner.results
    assert [r["status"] for r in rows] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert counter.per_fit == [5, 5, 1]
    assert rows[2]["epochs"] == 1 and rows[2]["score"] > rows[0]["score"]
    assert tuner.get_best_hyperparameters()[0] == {"lr": 0.1}
    # The best model was saved under directory/project_name and reloads in a new process.
    again = tune.TPESearch(_regressor, objective="val_loss", max_trials=3, seed=0,
                           directory=tmp_path, verbose=0)
    model = again.get_best_models()[0]
    best = min(r["score"] for r in rows[:2])
    assert model.evaluate(x, y, verbose=0) == pytest.approx(best, rel=1e-5)


def test_objective_never_logged_is_a_clear_error():
    x, y = _regression_data()
    tuner = tune.RandomSearch(_regressor, objective="val_auc", max_trials=2, verbose=0)
    with pytest.raises(ValueError, match="'val_auc' was never logged.*'val_loss'"):
        tuner.search(x, y, validation_data=(x, y), epochs=1)
    tuner = tune.RandomSearch(_regressor, objective="val_loss", max_trials=2, verbose=0)
    with pytest.raises(ValueError, match="never logged.*validation_data="):
        tuner.search(x, y, epochs=1)


def test_search_bad_input():
    empty = tune.RandomSearch(lambda hp: 1.0, objective="loss", max_trials=2, verbose=0)
    with pytest.raises(ValueError, match="asks for no hyperparameters.*max_trials=1"):
        empty.search()
    assert [r["status"] for r in empty.results] == ["FAILED"]
    single = tune.RandomSearch(lambda hp: 1.0, objective="loss", max_trials=1, verbose=0)
    assert single.search().results[0]["score"] == 1.0

    def diverging(hp):
        x = hp.Float("x", 0.0, 1.0)
        return float("nan") if x > 0.5 else x

    scored = tune.RandomSearch(diverging, objective="loss", max_trials=6, seed=0, verbose=0)
    rows = scored.search().results  # NaN scores rank last instead of stopping the search
    assert len(rows) == 6 and all(r["status"] == "COMPLETE" for r in rows)
    assert {r["score"] == np.inf for r in rows} == {True, False}
    assert scored.get_best_hyperparameters()[0]["x"] <= 0.5

    def uncompiled(hp):
        hp.Int("units", 1, 4)
        inputs = Input(shape=(1,))
        return Model(inputs, layers.Dense(1)(inputs))

    with pytest.raises(ValueError, match="uncompiled"):
        tune.RandomSearch(uncompiled, max_trials=2, verbose=0).search(_ONES, _ZEROS)
    with pytest.raises(ValueError, match="max_trials must be an int >= 1"):
        tune.RandomSearch(_quadratic, max_trials=0)
    with pytest.raises(ValueError, match="Unknown pruner 'hyperband'"):
        tune.TPESearch(_quadratic, pruner="hyperband")
    with pytest.raises(RuntimeError, match="No complete trials"):
        tune.RandomSearch(_quadratic, objective="loss").get_best_hyperparameters()
    plain = tune.RandomSearch(_quadratic, objective="loss", max_trials=2, verbose=0).search()
    with pytest.raises(RuntimeError, match="returned a score, not a model"):
        plain.get_best_models()


def test_results_summary_prints_a_table(capsys):
    tuner = tune.RandomSearch(_quadratic, objective="loss", max_trials=3, seed=0, verbose=0)
    tuner.search()
    tuner.results_summary()
    out = capsys.readouterr().out
    assert "3 complete" in out and "rank" in out and "x" in out.splitlines()[1]
    assert len(out.strip().splitlines()) == 2 + 3


# ---------------------------------------------------------------------------- populations


def _digits():
    (x, y), (xt, yt) = jaxgraph.datasets.digits.load_data()
    x = x.reshape(-1, 64).astype("float32") / 255
    xt = xt.reshape(-1, 64).astype("float32") / 255
    return x[:512], y[:512], xt[:128], yt[:128]


def _mlp(loss_weight=1.0, learning_rate=1e-3, beta_1=0.9):
    def build():
        inputs = Input(shape=(64,))
        h = layers.Dense(16, activation="relu")(inputs)
        h = layers.Dropout(0.2)(h)
        model = Model(inputs, layers.Dense(10, activation="softmax")(h))
        model.compile(optimizer=optimizers.Adam(learning_rate, beta_1=beta_1),
                      loss="sparse_categorical_crossentropy",
                      loss_weights=[loss_weight], metrics=["acc"])
        return model

    return build


def test_population_members_equal_sequential_fits():
    x, y, xv, yv = _digits()
    settings = [{"learning_rate": 1e-3, "beta_1": 0.9, "loss_weights": [1.0]},
                {"learning_rate": 1e-2, "beta_1": 0.8, "loss_weights": [0.5]},
                {"learning_rate": 3e-3, "beta_1": 0.95, "loss_weights": [2.0]}]
    fit_kwargs = dict(epochs=2, batch_size=64, validation_data=(xv, yv))
    pop = tune.train_population(_mlp(), settings, x, y, seed=11, **fit_kwargs)
    assert pop.trace_counts["train_step"] == 1 and len(pop) == 3
    for i, s in enumerate(settings):
        set_random_seed(11)
        model = _mlp(s["loss_weights"][0], s["learning_rate"], s["beta_1"])()
        history = model.fit(x, y, verbose=0, **fit_kwargs).history
        for key in ("loss", "acc", "val_loss", "val_acc"):
            np.testing.assert_allclose(pop.histories[i][key], history[key], rtol=1e-5,
                                       atol=1e-6, err_msg=f"member {i} {key}")
        # Each member's own rate is logged (a fit's History has it only from LR callbacks).
        np.testing.assert_allclose(pop.histories[i]["learning_rate"],
                                   [s["learning_rate"]] * 2, rtol=1e-6)
        mine = pop.get_model(i).get_weights()
        for a, b in zip(mine, model.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    rows = pop.results
    assert [r["number"] for r in rows] == [0, 1, 2]
    assert pop.best() == int(np.argmin([min(h["val_loss"]) for h in pop.histories]))


def test_population_bad_input():
    x, y, _, _ = _digits()
    with pytest.raises(ValueError, match="'momentum' is not held.*'learning_rate'"):
        tune.train_population(_mlp(), [{"momentum": 0.9}], x, y)
    with pytest.raises(ValueError, match="'dropout' is not held.*build_fn\\(hp\\)"):
        tune.train_population(_mlp(), {"dropout": [0.1, 0.2]}, x, y)
    with pytest.raises(ValueError, match="'units' cannot vary inside a population"):
        tune.train_population(_mlp(), {"units": [8, 16]}, x, y)
    with pytest.raises(ValueError, match="one length"):
        tune.train_population(_mlp(), {"lr": [0.1, 0.2], "beta_1": [0.9]}, x, y)
    with pytest.raises(ValueError, match="same names"):
        tune.train_population(_mlp(), [{"lr": 0.1}, {"beta_1": 0.9}], x, y)

    def uncompiled():
        inputs = Input(shape=(64,))
        return Model(inputs, layers.Dense(10)(inputs))

    with pytest.raises(ValueError, match="not compiled"):
        tune.train_population(uncompiled, [{"lr": 0.1}], x, y)


def _dropout_mlp(with_dropout=True):
    def build(hp):
        inputs = Input(shape=(64,))
        h = layers.Dense(hp.Int("units", 8, 32, step=8, default=16), activation="relu")(inputs)
        if with_dropout:
            h = layers.Dropout(hp.Float("dropout", 0.0, 0.8))(h)
        model = Model(inputs, layers.Dense(10, activation="softmax")(h))
        model.compile(optimizer=optimizers.Adam(hp.Float("lr", 1e-4, 1e-1, default=1e-2)),
                      loss="sparse_categorical_crossentropy")
        return model

    return build


def test_population_varies_dropout_rates_in_one_program():
    x, y, _, _ = _digits()
    settings = [{"dropout": 0.0, "lr": 3e-3}, {"dropout": 0.3, "lr": 1e-2},
                {"dropout": 0.6, "lr": 1e-2}]
    fit_kwargs = dict(epochs=2, batch_size=64)
    pop = tune.train_population(_dropout_mlp(), settings, x, y, seed=7, **fit_kwargs)
    assert pop.trace_counts["train_step"] == 1 and len(pop) == 3  # one program, 3 rates

    def check(i, model):
        history = model.fit(x, y, verbose=0, **fit_kwargs).history
        np.testing.assert_allclose(pop.histories[i]["loss"], history["loss"], rtol=1e-5,
                                   atol=1e-6, err_msg=f"member {i} loss")
        np.testing.assert_allclose(pop.histories[i]["learning_rate"],
                                   [settings[i]["lr"]] * 2, rtol=1e-6)
        for a, b in zip(pop.get_model(i).get_weights(), model.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"member {i}")

    for i in (1, 2):  # each member is the fit of its own build
        set_random_seed(7)
        check(i, _dropout_mlp()(tune.HyperParameters(values=settings[i])))
    set_random_seed(7)  # rate 0.0 is exactly a network without the Dropout layer
    check(0, _dropout_mlp(with_dropout=False)(tune.HyperParameters(values={"lr": 3e-3})))
    # Members 1 and 2 differ only in their rate, and it shows.
    kernel = [np.asarray(pop.member_variables(i)["params"][pop.model.layers[1].name]["kernel"])
              for i in (1, 2)]
    assert not np.allclose(kernel[0], kernel[1], atol=1e-4)
    assert "/overrides" not in pop.variables["state"]  # the rates live in pop.hyperparameters
    # get_model(i) is member i's own build: its rate and learning rate, its weights.
    for i, row in enumerate(settings):
        member = pop.get_model(i)
        drop = [layer for layer in member.layers if isinstance(layer, layers.Dropout)][0]
        assert drop.rate == row["dropout"]
        np.testing.assert_allclose(float(member.optimizer.learning_rate), row["lr"], rtol=1e-6)
        np.testing.assert_allclose(member.predict(x[:5], verbose=0),
                                   pop.model.apply(pop.member_variables(i), x[:5])[0],
                                   rtol=1e-5, atol=1e-6)
    assert pop.get_model(1) is not pop.get_model(2)


def test_population_of_builds_rejects_what_changes_the_program():
    x, y, _, _ = _digits()
    with pytest.raises(ValueError, match="'units' cannot vary inside a population.*units.*8 "
                                         "vs 16"):
        tune.train_population(_dropout_mlp(), [{"units": 8, "dropout": 0.1},
                                               {"units": 16, "dropout": 0.2}], x, y)
    with pytest.raises(ValueError, match="'batch_size' cannot vary.*batch_size="):
        tune.train_population(_dropout_mlp(), {"batch_size": [16, 32]}, x, y)
    with pytest.raises(ValueError, match="sets \\['momentum'\\], which build_fn\\(hp\\) did "
                                         "not ask for"):
        tune.train_population(_dropout_mlp(), [{"momentum": 0.9}], x, y)


def test_a_trial_model_that_cannot_be_saved_is_kept_in_memory(tmp_path):
    """A subclass holding a layer its call does not wire cannot be written (save refuses
    it, as Keras does): the search warns, keeps the model in memory and goes on."""

    class Held(Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.body = layers.Dense(1, kernel_initializer="zeros")
            self.spare = layers.Dense(2)
            self.spare.build((None, 1))

        def call(self, x):
            return self.body(x)

    def build(hp):
        model = Held()
        model(np.zeros((1, 1), np.float32))
        model.compile(optimizer=optimizers.SGD(hp.Choice("lr", [0.0, 0.1])), loss="mse")
        return model

    x, y = _regression_data()
    tuner = tune.RandomSearch(build, objective="val_loss", max_trials=2, seed=0,
                              directory=tmp_path, project_name="held", verbose=0)
    with pytest.warns(UserWarning, match=r"could not be saved.*self\.spare"):
        tuner.search(x, y, epochs=1, validation_split=0.25, verbose=0)
    assert isinstance(tuner.get_best_models(1)[0], Held)

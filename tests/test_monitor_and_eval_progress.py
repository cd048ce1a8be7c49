"""Two Keras 3 parities: how EarlyStopping, ModelCheckpoint and ReduceLROnPlateau decide
the direction of their monitor in mode 'auto' (or refuse to), and what evaluate and
predict print at each verbosity, with a live bar that keeps several batches per
dispatch."""

import contextlib
import io
import math
import re
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from jaxgraph import Input, layers
from jaxgraph import callbacks as jg_callbacks
from jaxgraph import metrics as jg_metrics
from jaxgraph import optimizers as jg_optimizers
from jaxgraph.models import Model

CALLBACKS = ("EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau")


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, (x[:, :1] + x[:, 1:2] > 0).astype("float32")


def my_metric(y_true, y_pred):
    """A plain metric function: it declares no direction, in Keras as here."""
    return jnp.abs(y_true - y_pred).mean(axis=-1)


class UpMetric(jg_metrics.Metric):
    """A custom metric object that declares that higher is better."""

    _default_name = "up_metric"
    direction = "up"

    def init(self):
        return jnp.zeros((2,), jnp.float32)

    def update(self, state, y_true, y_pred, sample_weight=None):
        return state + jnp.stack([jnp.sum(y_pred), jnp.float32(y_pred.shape[0])])

    def result(self, state):
        return state[0] / jnp.maximum(state[1], 1.0)


def _jaxgraph_model():
    inp = Input(shape=(4,))
    model = Model(inp, layers.Dense(1, activation="sigmoid")(inp))
    model.compile(optimizer=jg_optimizers.SGD(0.1), loss="binary_crossentropy",
                  metrics=["accuracy", "acc", jg_metrics.AUC(name="auc"), my_metric,
                           UpMetric(), "mse"])
    return model


def _keras_model(keras):
    def k_metric(y_true, y_pred):
        return keras.ops.mean(keras.ops.abs(y_true - y_pred), axis=-1)
    k_metric.__name__ = "my_metric"

    class KUpMetric(keras.metrics.Mean):
        def __init__(self):
            super().__init__(name="up_metric")
            self._direction = "up"

        def update_state(self, y_true, y_pred, sample_weight=None):
            return super().update_state(y_pred)

    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(inp))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy",
                  metrics=["accuracy", "acc", keras.metrics.AUC(name="auc"), k_metric,
                           KUpMetric(), "mse"])
    return model


def _make(lib, name, monitor, tmp_path):
    if name == "ModelCheckpoint":
        return lib.ModelCheckpoint(str(tmp_path / f"{monitor}.weights.h5"), monitor=monitor,
                                   save_best_only=True, save_weights_only=True)
    return getattr(lib, name)(monitor=monitor)


def _jaxgraph_decision(model, name, monitor, tmp_path, data):
    """'max', 'min' or the error, and the epochs that began before the decision."""
    cb = _make(jg_callbacks, name, monitor, tmp_path)
    began = []
    spy = jg_callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: began.append(epoch))
    x, y = data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a monitor missing from the logs
            model.fit(x, y, batch_size=8, epochs=1, verbose=0, validation_data=(x, y),
                      callbacks=[spy, cb])
    except ValueError as e:
        return e, began
    return ("max" if cb._monitor.maximize else "min"), began


def _keras_decision(keras, model, name, monitor, tmp_path, data):
    cb = _make(keras.callbacks, name, monitor, tmp_path)
    x, y = data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(x, y, batch_size=8, epochs=1, verbose=0, validation_data=(x, y),
                      callbacks=[cb])
    except ValueError as e:
        return e
    return {keras.ops.less: "min", keras.ops.greater: "max"}[cb.monitor_op]


MONITORS = [
    ("loss", "min"), ("val_loss", "min"),
    ("accuracy", "max"), ("val_acc", "max"), ("auc", "max"), ("val_auc", "max"),
    ("up_metric", "max"), ("val_up_metric", "max"),  # a custom metric object, 'up'
    ("mse", "min"),  # a metric class that declares 'down'
    ("my_metric", ValueError), ("val_my_metric", ValueError),  # a plain function
    ("val_nope", ValueError),  # not in the logs at all
]


@pytest.mark.parametrize("name", CALLBACKS)
def test_auto_mode_decides_like_keras(name, tmp_path):
    """Same decision as Keras 3 for every monitor; where Keras cannot tell, the same
    ValueError, raised at train begin here (Keras raises it after the first epoch)."""
    keras = pytest.importorskip("keras")
    data = _data()
    jm, km = _jaxgraph_model(), _keras_model(keras)
    for monitor, expected in MONITORS:
        mine, began = _jaxgraph_decision(jm, name, monitor, tmp_path, data)
        theirs = _keras_decision(keras, km, name, monitor, tmp_path, data)
        if expected is ValueError:
            assert isinstance(theirs, ValueError), (monitor, theirs)
            assert isinstance(mine, ValueError), (monitor, mine)
            assert began == [], monitor  # before any step ran
            message = str(mine)
            assert name in message and f"monitor={monitor}" in message
            assert "mode='max'" in message and "mode='min'" in message
        else:
            assert theirs == expected, (monitor, theirs)
            assert mine == expected, (monitor, mine)


def test_auto_mode_error_names_a_subclass_and_an_explicit_mode_needs_no_inference():
    class MyStopping(jg_callbacks.EarlyStopping):
        pass

    model = _jaxgraph_model()
    x, y = _data()
    with pytest.raises(ValueError, match=r"^MyStopping callback received monitor=score"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[MyStopping(monitor="score")])
    es = jg_callbacks.EarlyStopping(monitor="score", mode="max")
    with pytest.warns(UserWarning, match="`score` which is not available"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[es])
    assert es._monitor.maximize


def test_auto_mode_reads_logged_names_where_keras_reads_object_names(tmp_path):
    """Deliberate differences: Keras 3 matches the metric objects' own names, so it
    cannot tell a per-output loss or metric of a multi-output model (`a_loss`,
    `val_a_accuracy`), nor `val_accuracy` when `acc` was compiled; jaxgraph matches
    the names it logs (and reads the `acc`/`accuracy` alias, as for the values)."""
    inp = Input(shape=(4,))
    a = layers.Dense(1, activation="sigmoid", name="a")(inp)
    b = layers.Dense(1, name="b")(inp)
    model = Model(inp, [a, b])
    model.compile(optimizer="sgd", loss=["binary_crossentropy", "mse"],
                  metrics=[["acc"], ["mae", my_metric]])
    x, y = _data()
    data = (x, [y, y])
    for monitor, expected in (("val_a_loss", "min"), ("b_loss", "min"), ("a_acc", "max"),
                              ("val_a_accuracy", "max"), ("b_mae", "min"), ("loss", "min")):
        for name in CALLBACKS:
            got, _ = _jaxgraph_decision(model, name, monitor, tmp_path, data)
            assert got == expected, (name, monitor, got)
    for monitor in ("b_my_metric", "accuracy", "val_mae"):
        got, began = _jaxgraph_decision(model, "EarlyStopping", monitor, tmp_path, data)
        assert isinstance(got, ValueError) and began == [], monitor


# ---------------------------------------------------------------------------- printing


def _pair(keras):
    """The same classifier in Keras and jaxgraph, same weights."""
    def build(lib_layers, lib_input, lib_model):
        inp = lib_input((4,))
        h = lib_layers.Dense(8, activation="relu")(inp)
        return lib_model(inp, lib_layers.Dense(1, activation="sigmoid")(h))

    km = build(keras.layers, keras.Input, keras.Model)
    jm = build(layers, Input, Model)
    jm.set_weights(km.get_weights())
    km.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy", "mse"])
    jm.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy", "mse"])
    return km, jm


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _screen(text):
    """What a terminal shows at the end: per line, what follows the last carriage
    return, without colours or backspaces; timings masked."""
    lines = []
    for line in text.split("\n"):
        line = _ANSI.sub("", line.split("\r")[-1]).replace("\b", "").rstrip()
        line = re.sub(r"\d+s \d+[mu]?s/step", "T", line)       # verbose=1
        line = re.sub(r"\d+s - \d+[mu]?s/step", "T", line)     # verbose=2
        lines.append(line)
    return "\n".join(lines)


def _shape_and_values(line):
    return re.sub(r": \S+", ": V", line), [float(v) for v in re.findall(r": (\S+)", line)]


@pytest.mark.parametrize("verbose", [0, 1, 2])
def test_evaluate_and_predict_print_like_keras(verbose, capsys):
    keras = pytest.importorskip("keras")
    km, jm = _pair(keras)
    x, y = _data(100)
    screens = []
    for model in (km, jm):
        capsys.readouterr()
        model.evaluate(x, y, batch_size=32, verbose=verbose)
        model.predict(x, batch_size=32, verbose=verbose)
        screens.append(_screen(capsys.readouterr().out))
    k_screen, j_screen = screens
    if verbose == 0:
        assert j_screen == k_screen == ""
        return
    k_lines, j_lines = k_screen.splitlines(), j_screen.splitlines()
    assert len(j_lines) == len(k_lines) == 2
    if verbose == 1:
        assert re.fullmatch(r"4/4 ━{20} T - accuracy: \S+ - loss: \S+ - mse: \S+", j_lines[0])
        assert j_lines[1] == k_lines[1] == "4/4 ━━━━━━━━━━━━━━━━━━━━ T"
    else:
        assert re.fullmatch(r"4/4 - T - accuracy: \S+ - loss: \S+ - mse: \S+", j_lines[0])
        assert j_lines[1] == k_lines[1] == "4/4 - T"
    (j_shape, j_values), (k_shape, k_values) = map(_shape_and_values, (j_lines[0],
                                                                       k_lines[0]))
    assert j_shape == k_shape
    np.testing.assert_allclose(j_values, k_values, atol=2e-4)


def test_last_frame_formats_numbers_and_times_like_keras_progbar(monkeypatch):
    from jaxgraph.callbacks import progbar

    def last_frame(steps, seconds, logs):
        clock = iter([100.0, 100.0 + seconds])  # the bar's start, then its last update
        monkeypatch.setattr(progbar, "time", type("Clock", (), {"time": lambda: next(clock)}))
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            progbar.Progbar(steps).update(steps, logs, finalize=True)
        return _ANSI.sub("", buf.getvalue())

    line = last_frame(7, 2.4, {"loss": 0.0, "tiny": 5e-4, "neg": -0.25, "big": 12.5})
    assert line == ("\r7/7 ━━━━━━━━━━━━━━━━━━━━ 2s 343ms/step - loss: 0.0000e+00 - tiny: "
                    "5.0000e-04 - neg: -0.2500 - big: 12.5000\n")
    assert last_frame(2, 3.0, None) == "\r2/2 ━━━━━━━━━━━━━━━━━━━━ 3s 2s/step\n"


def test_validation_inside_fit_prints_nothing_of_its_own(capsys):
    model = _jaxgraph_model()
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=2, verbose=1, validation_data=(x, y))
    out = capsys.readouterr().out
    # Per epoch a title and the bar's last frame (Keras's redraw in place, off a terminal
    # too); no bar of the validation's own.
    assert out.count("Epoch ") == 2 and out.count("━" * 20) == 2 and out.count("\r") == 2
    assert out.count("\n") == 4


def test_validation_under_a_live_fit_bar_is_silent_and_one_dispatch(monkeypatch):
    """The live bar of fit ignores validation batches (as Keras's does), so validation
    keeps its single dispatch per epoch and draws nothing."""
    model = _jaxgraph_model()
    x, y = _data(400)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, validation_data=(x, y))
    trainer = model._trainer
    program = _Counting(trainer.eval_fn())
    monkeypatch.setattr(trainer, "eval_fn", lambda: program)
    term = _Terminal()
    with contextlib.redirect_stdout(term):
        model.fit(x, y, batch_size=8, epochs=2, verbose=1, validation_data=(x, y))
    assert program.calls == 2
    out = term.getvalue()
    assert "Epoch 2/2" in out and "val_loss: " in out
    bars = [line for line in out.split("\n") if "\r" in line]
    assert len(bars) == 2 and out.count("\n") == 4  # fit's bars, one line per epoch


# ---------------------------------------------------------------------------- live bar


class _Terminal(io.StringIO):
    def isatty(self):
        return True


class _Counting:
    """Counts the dispatches of a compiled program."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.fn, name)


def test_live_evaluate_bar_runs_several_batches_per_dispatch(monkeypatch):
    model = _jaxgraph_model()
    x, y = _data(800)
    quiet = model.evaluate(x, y, batch_size=8, verbose=0)
    trainer = model._trainer
    program = _Counting(trainer.eval_fn())
    monkeypatch.setattr(trainer, "eval_fn", lambda: program)
    term = _Terminal()
    with contextlib.redirect_stdout(term):
        live = model.evaluate(x, y, batch_size=8, verbose=1)
    steps = 100
    chunk = trainer.choose_k(steps, True, True)
    assert chunk > 1
    assert program.calls == math.ceil(steps / chunk)  # one dispatch per chunk, not per batch
    assert live == pytest.approx(quiet, rel=1e-5)
    screen = _screen(term.getvalue()).strip().splitlines()
    assert re.fullmatch(r"100/100 ━{20} T( - \w+: \S+)+", screen[-1]) and " - loss: " in screen[-1]


def test_live_predict_bar_runs_several_batches_per_dispatch():
    from jaxgraph.training.loop import _predict_program

    model = _jaxgraph_model()
    x, _ = _data(800)
    quiet = model.predict(x, batch_size=8, verbose=0)
    fn, steps_obj = _predict_program(model)
    program = _Counting(fn)
    model.__dict__["_predict_program"] = (program, steps_obj)
    term = _Terminal()
    seen = []
    with contextlib.redirect_stdout(term):
        probe = _BatchProbe(seen)
        live = model.predict(x, batch_size=8, verbose=1, callbacks=[probe])
    assert 1 < program.calls < 100  # several of the 100 batches per dispatch
    assert seen[-1] == 99 and len(seen) == program.calls  # one bar update per dispatch
    np.testing.assert_allclose(live, quiet, rtol=1e-6)
    assert _screen(term.getvalue()).strip().splitlines()[-1] == "100/100 " + "━" * 20 + " T"


class _BatchProbe(jg_callbacks.ProgbarLogger):
    """A progress bar (so the loop treats it as one) that records the batches it gets."""

    def __init__(self, seen):
        super().__init__()
        self.seen = seen

    def on_predict_batch_end(self, batch, logs=None):
        self.seen.append(batch)
        super().on_predict_batch_end(batch, logs)


def test_stream_of_unknown_length_is_counted_for_the_last_line(capsys):
    model = _jaxgraph_model()
    x, y = _data(40)

    def batches():
        for i in range(0, 40, 8):
            yield x[i:i + 8], y[i:i + 8]

    model.evaluate(batches(), verbose=1)
    model.predict((b for b, _ in batches()), verbose=2)
    lines = _screen(capsys.readouterr().out).strip().splitlines()
    assert lines[0].startswith("5/5 ━━━━━━━━━━━━━━━━━━━━ T - acc: ")
    assert lines[1] == "5/5 - T"


def test_verbose_1_without_a_terminal_keeps_one_dispatch(monkeypatch):
    """Captured output: no live bar, so no batch hooks and the whole evaluation in one
    dispatch, as at verbose=0."""
    model = _jaxgraph_model()
    x, y = _data(800)
    model.evaluate(x, y, batch_size=8, verbose=0)
    trainer = model._trainer
    program = _Counting(trainer.eval_fn())
    monkeypatch.setattr(trainer, "eval_fn", lambda: program)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        model.evaluate(x, y, batch_size=8, verbose=1)
    assert program.calls == 1
    assert buf.getvalue().count("\r") == 1  # Keras's last frame only
    assert _screen(buf.getvalue()).startswith("100/100 ━")


@pytest.mark.parametrize("value", [0.5, 2.0, 1e-4, 0.0, -0.5, -1e-5, float("nan"), float("inf")])
def test_verbose2_and_bar_values_format_like_keras_progbar(value, capsys):
    # Keras's verbose=2 line writes 4 decimals only above 1e-3 (zero and negatives in
    # scientific notation); its bar (verbose=1) compares the magnitude instead.
    keras = pytest.importorskip("keras")
    from jaxgraph.callbacks.progbar import _bar_value, format_value

    for verbose in (2, 1):
        capsys.readouterr()
        bar = keras.utils.Progbar(target=1, verbose=verbose)
        bar.update(1, values=[("loss", value)], finalize=True)
        theirs = capsys.readouterr().out.strip().rsplit("loss: ", 1)[1].split()[0]
        ours = format_value(value) if verbose == 2 else _bar_value(value)
        assert ours == theirs, (verbose, value)

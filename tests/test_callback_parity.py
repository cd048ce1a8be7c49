"""What a user of the callbacks observes, next to Keras 3 on the same run: History's keys,
the CSV file, the stopping epoch of EarlyStopping, and the verbose=2 lines."""

import contextlib
import io
import re

import numpy as np
import pytest

from jaxgraph import Input, layers
from jaxgraph import callbacks as jg_callbacks
from jaxgraph import optimizers as jg_optimizers
from jaxgraph.models import Model


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype("float32")
    xv = rng.normal(size=(16, 4)).astype("float32")
    return x, (x[:, :1] + x[:, 1:2] > 0).astype("float32"), xv, (
        xv[:, :1] + xv[:, 1:2] > 0).astype("float32")


def _pair(keras):
    """The same small classifier in Keras and jaxgraph, same weights, plain SGD."""
    def build(lib_layers, lib_input, lib_model):
        inp = lib_input((4,))
        h = lib_layers.Dense(8, activation="relu")(inp)
        return lib_model(inp, lib_layers.Dense(1, activation="sigmoid")(h))

    km = build(keras.layers, keras.Input, keras.Model)
    jm = build(layers, Input, Model)
    jm.set_weights(km.get_weights())
    km.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy",
               metrics=["accuracy"])
    jm.compile(optimizer=jg_optimizers.SGD(0.1), loss="binary_crossentropy",
               metrics=["accuracy"])
    return km, jm


def test_history_and_csv_logger_match_keras_with_validation_freq(tmp_path):
    """No `learning_rate` key unless a callback logs it; CSVLogger keeps the validation
    columns although the first epoch has no validation (validation_freq=2)."""
    keras = pytest.importorskip("keras")
    x, y, xv, yv = _data()
    km, jm = _pair(keras)
    runs = {}
    for name, model, lib in (("keras", km, keras.callbacks), ("jaxgraph", jm, jg_callbacks)):
        path = tmp_path / f"{name}.csv"
        history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False,
                            validation_data=(xv, yv), validation_freq=2,
                            callbacks=[lib.CSVLogger(str(path))])
        runs[name] = (history.history, path.read_text().splitlines())
    (k_hist, k_csv), (j_hist, j_csv) = runs["keras"], runs["jaxgraph"]
    assert list(j_hist) == list(k_hist)
    for key in k_hist:
        np.testing.assert_allclose(j_hist[key], k_hist[key], rtol=1e-5, err_msg=key)
    assert j_csv[0] == k_csv[0] == "epoch,accuracy,loss,val_accuracy,val_loss"
    assert [r.split(",")[-1] == "NA" for r in j_csv[1:]] == [True, False, True]
    for j_row, k_row in zip(j_csv[1:], k_csv[1:]):
        j_cells, k_cells = j_row.split(","), k_row.split(",")
        assert [c == "NA" for c in j_cells] == [c == "NA" for c in k_cells]
        np.testing.assert_allclose([float(c) for c in j_cells if c != "NA"],
                                   [float(c) for c in k_cells if c != "NA"], rtol=1e-5)


def test_learning_rate_callbacks_still_log_the_rate():
    keras = pytest.importorskip("keras")
    x, y, xv, yv = _data()
    km, jm = _pair(keras)
    hists = []
    for model, lib in ((km, keras.callbacks), (jm, jg_callbacks)):
        cbs = [lib.LearningRateScheduler(lambda epoch, lr: lr * 0.5)]
        hists.append(model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False,
                               callbacks=cbs).history)
    assert list(hists[1]) == list(hists[0]) == ["accuracy", "loss", "learning_rate"]
    np.testing.assert_allclose(hists[1]["learning_rate"], [0.05, 0.025], rtol=1e-6)


class _Model:
    stop_training = False


def _stopping_epoch(lib, values, **kwargs):
    cb = lib.EarlyStopping(**kwargs)
    model = _Model()
    cb.set_model(model)
    cb.on_train_begin({})
    for epoch, value in enumerate(values):
        cb.on_epoch_end(epoch, {kwargs["monitor"]: float(np.float32(value))})
        if model.stop_training:
            return epoch, cb.best
    return None, cb.best


@pytest.mark.parametrize("mode, values", [
    ("max", [0.55, 0.625, 0.675, 0.8]),  # float32 0.675 - 0.05 is 0.625 in float32
    ("min", [0.7, 0.625, 0.575, 0.4]),
])
def test_early_stopping_change_of_exactly_min_delta_is_no_improvement(mode, values):
    """Keras compares in float32: a gain of exactly min_delta (accuracy steps of 1/40,
    min_delta=0.05) does not count, whatever float64 says of the rounded values."""
    kwargs = dict(monitor="val_accuracy", mode=mode, min_delta=0.05, patience=1)
    assert _stopping_epoch(jg_callbacks, values, **kwargs)[0] == 2
    keras = pytest.importorskip("keras")
    assert _stopping_epoch(keras.callbacks, values, **kwargs)[0] == 2


def _normalized(text):
    return re.sub(r"\d+s - \d+[mu]s/step", "T", text)


def test_verbose_2_lines_match_keras():
    keras = pytest.importorskip("keras")
    x, y, xv, yv = _data()
    km, jm = _pair(keras)
    outs = []
    for model in (km, jm):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            model.fit(x, y, batch_size=8, epochs=2, verbose=2, shuffle=False,
                      validation_data=(xv, yv))
            model.evaluate(xv, yv, batch_size=8, verbose=2)
            model.predict(xv, batch_size=8, verbose=2)
        outs.append(_normalized(buf.getvalue()).splitlines())
    assert len(outs[1]) == len(outs[0]) == 6
    assert outs[1][0] == outs[0][0] == "Epoch 1/2"
    assert outs[1][1].startswith("5/5 - T - accuracy: ")
    assert outs[1][4].startswith("2/2 - T - accuracy: ")
    assert outs[1][5] == outs[0][5] == "2/2 - T"
    for j_line, k_line in zip(outs[1], outs[0]):  # same values to 4 decimals, maybe but 1
        j_vals = [float(v) for v in re.findall(r": (\S+)", j_line)]
        k_vals = [float(v) for v in re.findall(r": (\S+)", k_line)]
        assert re.sub(r": \S+", "", j_line) == re.sub(r": \S+", "", k_line)
        np.testing.assert_allclose(j_vals, k_vals, atol=2e-4)

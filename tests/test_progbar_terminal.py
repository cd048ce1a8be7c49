"""fit, evaluate and predict at verbose=1 write the bytes Keras 3 writes: on a terminal,
its frames redrawn in place (`\\b`s, `\\r`), with its colours, bar, ETA, time per step,
metric order and `Unknown` count; off one, the last frame of each bar.

A fake clock that moves 0.7 s per reading makes every update draw (Keras draws at most
every 0.05 s) and gives both libraries the same times, since both read the clock once
per bar and once per update: their outputs are then compared byte for byte. Where the
two read it a different number of times, only the timing digits are masked.
"""

import contextlib
import io
import re
import sys

import numpy as np
import pytest

from jaxgraph import Input, layers
from jaxgraph.callbacks import progbar as jg_progbar
from jaxgraph.models import Model


@pytest.fixture
def keras(monkeypatch):
    keras = pytest.importorskip("keras")
    from keras.src.utils import io_utils

    # Keras's rule for a live display also looks for a notebook and PyCharm's console.
    monkeypatch.delenv("PYCHARM_HOSTED", raising=False)
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(io_utils, "is_interactive_logging_enabled", lambda: True)
    return keras


class _Terminal(io.StringIO):
    def isatty(self):
        return True


class _Clock:
    """`time.time` that moves `tick` seconds per reading."""

    def __init__(self, tick=0.7):
        self.now, self.tick = 1_000.0, tick

    def time(self):
        self.now += self.tick
        return self.now


class _NoPosix:
    """`sys` as Keras's rule sees it on Windows: without `posix`, a stdout that is no
    terminal gets the non-dynamic display (each frame on a new line)."""

    def __init__(self):
        self.modules = {k: v for k, v in sys.modules.items() if k != "posix"}

    def __getattr__(self, name):
        return getattr(sys, name)


def _progbar_modules():
    from keras.src.utils import progbar as keras_progbar

    return keras_progbar, jg_progbar


def _in_order(keras):
    """Keras on JAX runs batch-end hooks on a thread pool, so its frames may come out of
    order; a callback with batch hooks of its own makes Keras run them in order."""

    class InOrder(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

        def on_test_batch_end(self, batch, logs=None):
            pass

        def on_predict_batch_end(self, batch, logs=None):
            pass

    return InOrder()


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, (x[:, :1] + x[:, 1:2] > 0).astype("float32")


def _pair(keras, steps_per_execution="auto"):
    """The same classifier in Keras and jaxgraph, same weights."""
    def build(lib_layers, lib_input, lib_model):
        inp = lib_input((4,))
        h = lib_layers.Dense(8, activation="relu")(inp)
        return lib_model(inp, lib_layers.Dense(1, activation="sigmoid")(h))

    keras.utils.set_random_seed(0)
    km = build(keras.layers, keras.Input, keras.Model)
    jm = build(layers, Input, Model)
    jm.set_weights(km.get_weights())
    km.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy", "mse"])
    jm.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy", "mse"],
               steps_per_execution=steps_per_execution)
    return km, jm


def _outputs(keras, models, session, stdout_type, monkeypatch):
    """What `session(model, callbacks)` prints with Keras's model, then jaxgraph's, each
    on a fresh fake clock."""
    outs = []
    for model, module, callbacks in zip(models, _progbar_modules(), ([_in_order(keras)], [])):
        monkeypatch.setattr(module, "time", _Clock())
        out = stdout_type()
        with contextlib.redirect_stdout(out):
            session(model, callbacks)
        outs.append(out.getvalue())
    return outs


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _visible(text):
    return _ANSI.sub("", text)


def _mask_times(text):
    """The timing digits (elapsed time or ETA, time per step) become `T`."""
    text = re.sub(r"\x1b\[1m(?:\d+:)*\d+s?\x1b\[0m", "\x1b[1mT\x1b[0m", text)   # verbose=1
    text = re.sub(r" - \d+s - \d+(?:s|ms|us)/step", " - T - T/step", text)     # verbose=2
    return re.sub(r" \d+(?:s|ms|us)/step", " T/step", text)


def _bars(text):
    """The frames of each bar of a dynamic display (one bar per line), padding off,
    checking Keras's redraw rule on the way: before each frame, as many backspaces as
    the frame before it is wide, and that frame padded with spaces to the width of the
    one before it."""
    bars = []
    for line in text.split("\n"):
        if "\r" not in line:
            continue
        frames, widths = [], []
        parts = line.split("\r")
        assert parts[0] == ""
        for i, part in enumerate(parts[1:]):
            padded = part.rstrip("\b")
            frame = padded.rstrip(" ")
            width = len(_visible(frame))
            last = i == len(parts) - 2
            assert len(part) - len(padded) == (0 if last else width), repr(part)
            assert len(_visible(padded)) == max([width] + widths[-1:]), repr(part)
            frames.append(frame)
            widths.append(width)
        bars.append(frames)
    return bars


def _counts(bars):
    return [[_visible(f).split()[0] for f in bar] for bar in bars]


def _last_frames(text):
    """Keras's output with only the last frame of each bar: on a dynamic display, what
    follows a line's last `\\r` (padding off); on the other, the frame lines that no
    frame of the same bar follows."""
    lines = text.split("\n")
    kept = []
    for i, line in enumerate(lines):
        if "\r" in line:
            kept.append("\r" + line.rsplit("\r", 1)[1].rstrip(" "))
        elif not _is_frame(line):
            kept.append(line)
        elif not (i + 1 < len(lines) and _is_frame(lines[i + 1])):
            kept.append(line.rstrip(" "))
    return "\n".join(kept)


def _is_frame(line):
    return "━" in line or "/Unknown" in line


def _fit_session(model, callbacks):
    """Several epochs with validation; steps_per_epoch=3 of 5 batches (Keras goes on
    through the data: the second epoch has 2); a single epoch (no title); evaluate and
    predict (a bar with no metrics)."""
    x, y = _data(40)
    xv, yv = _data(16, seed=1)
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, validation_data=(xv, yv),
              verbose=1, callbacks=callbacks)
    model.fit(x, y, batch_size=8, epochs=2, steps_per_epoch=3, shuffle=False, verbose=1,
              callbacks=callbacks)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=1, callbacks=callbacks)
    model.evaluate(xv, yv, batch_size=8, verbose=1, callbacks=callbacks)
    model.predict(xv, batch_size=8, verbose=1, callbacks=callbacks)


_SESSION_COUNTS = (
    3 * [["1/5", "2/5", "3/5", "4/5", "5/5", "5/5"]]
    + [["1/3", "2/3", "3/3", "3/3"], ["1/3", "2/3", "3/3"]]
    + [["1/5", "2/5", "3/5", "4/5", "5/5", "5/5"]]
    + 2 * [["1/2", "2/2", "2/2"]])


# ---------------------------------------------------------------------------- terminal


def test_fit_evaluate_predict_on_a_terminal_write_keras_bytes(keras, monkeypatch):
    """One dispatch per step here (steps_per_execution=1): every frame is Keras's."""
    k_out, j_out = _outputs(keras, _pair(keras, steps_per_execution=1), _fit_session,
                            _Terminal, monkeypatch)
    assert j_out == k_out
    bars = _bars(j_out)
    assert _counts(bars) == _SESSION_COUNTS
    assert j_out.startswith("Epoch 1/3\n\r\x1b[1m1/5\x1b[0m \x1b[32m━━━━\x1b[0m"
                            "\x1b[37m━━━━━━━━━━━━━━━━\x1b[0m \x1b[1m2s\x1b[0m 700ms/step"
                            " - accuracy: ")
    assert re.fullmatch(r"5/5 ━{20} 4s 875ms/step - accuracy: \S+ - loss: \S+ - mse: \S+ - "
                        r"val_accuracy: \S+ - val_loss: \S+ - val_mse: \S+",
                        _visible(bars[0][-1]))
    assert [line for line in j_out.split("\n") if "\r" not in line] == [
        "Epoch 1/3", "Epoch 2/3", "Epoch 3/3", "Epoch 1/2", "Epoch 2/2", ""]
    assert _visible(_mask_times(bars[-1][-1])) == "2/2 ━━━━━━━━━━━━━━━━━━━━ T T/step"


def test_chunked_dispatch_draws_a_subset_of_keras_frames(keras, monkeypatch):
    """Several steps per dispatch: the bar moves once per chunk, each frame one that
    Keras draws at that step, and each bar ends on Keras's last frame."""
    x, y = _data(800)
    xv, yv = _data(16, seed=1)

    def session(model, callbacks):
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, validation_data=(xv, yv),
                  verbose=1, callbacks=callbacks)
        model.evaluate(x, y, batch_size=8, verbose=1, callbacks=callbacks)

    k_out, j_out = _outputs(keras, _pair(keras), session, _Terminal, monkeypatch)
    k_bars, j_bars = _bars(k_out), _bars(j_out)
    assert [len(bar) for bar in k_bars] == [101, 101, 101]
    assert len(j_bars) == 3
    for k_bar, j_bar in zip(k_bars, j_bars):
        k_bar, j_bar = [_mask_times(f) for f in k_bar], [_mask_times(f) for f in j_bar]
        assert 2 < len(j_bar) <= 21
        rest = iter(k_bar)
        assert all(any(f == k for k in rest) for f in j_bar)  # in order, each Keras's
        assert j_bar[-1] == k_bar[-1]
    assert _mask_times(_last_frames(j_out)) == _mask_times(_last_frames(k_out))


def test_unknown_number_of_steps(keras, monkeypatch):
    """A generator: `Unknown` counts while it runs, then Keras's bar of the steps seen."""
    x, y = _data(40)

    def session(model, callbacks):
        def batches():
            for i in range(0, 40, 8):
                yield x[i:i + 8], y[i:i + 8]

        model.fit(batches(), epochs=1, shuffle=False, verbose=1, callbacks=callbacks)
        model.evaluate(batches(), verbose=1, callbacks=callbacks)
        model.predict(((b,) for b, _ in batches()), verbose=1, callbacks=callbacks)

    k_out, j_out = _outputs(keras, _pair(keras), session, _Terminal, monkeypatch)
    assert j_out == k_out
    bars = _bars(j_out)
    unknown = ["1/Unknown", "2/Unknown", "3/Unknown", "4/Unknown", "5/Unknown", "5/5"]
    assert _counts(bars) == 3 * [unknown]
    assert _visible(bars[0][0]).startswith("      1/Unknown 1s 700ms/step - accuracy: ")
    assert _visible(_mask_times(bars[2][-1])) == "5/5 ━━━━━━━━━━━━━━━━━━━━ T T/step"


_UNITS_AND_ETA = {  # tick: the first frame's ETA (29 steps left) and time per step
    2e-4: ("0s", "200us/step"), 0.02: ("0s", "20ms/step"), 1.0: ("29s", "1s/step"),
    3.0: ("1:27", "3s/step"), 100.0: ("48:20", "100s/step"),
    5_000.0: ("40:16:40", "5000s/step"),
}


@pytest.mark.parametrize("tick", list(_UNITS_AND_ETA))
def test_progbar_units_eta_and_values_like_keras(keras, monkeypatch, tick):
    """Time per step in us, ms or s; ETA as `29s`, `1:27` or `40:16:40`; the value rules
    of verbose=1 and 2; a known and an unknown target; a dynamic display and not."""
    keras_progbar, _ = _progbar_modules()
    updates = [(1, {"loss": 0.5, "tiny": 5e-4, "zero": 0.0, "neg": -0.25, "big": 1234.5}),
               (17, {"loss": float("nan"), "tiny": -1e-5, "zero": 0.0, "neg": -2.0,
                     "big": float("inf"), "new": 3.0})]
    outs = {}
    for verbose, dynamic in ((1, True), (1, False), (2, True)):
        for module in (keras_progbar, jg_progbar):
            with monkeypatch.context() as patch:
                patch.setattr(module, "time", _Clock(tick))
                if not dynamic:
                    patch.setattr(module, "sys", _NoPosix())
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    for target in (30, None):
                        if module is keras_progbar:
                            bar = keras.utils.Progbar(target, verbose=verbose,
                                                      stateless_metrics=set())
                            for step, logs in updates:
                                bar.update(step, list(logs.items()), finalize=False)
                            bar.update(30, list(updates[-1][1].items()), finalize=True)
                        else:
                            bar = jg_progbar.Progbar(target, verbose=verbose)
                            for step, logs in updates:
                                bar.update(step, logs, finalize=False)
                            bar.update(30, updates[-1][1], finalize=True)
                outs[verbose, dynamic, module is jg_progbar] = out.getvalue()
        assert outs[verbose, dynamic, True] == outs[verbose, dynamic, False]
    eta, per_step = _UNITS_AND_ETA[tick]
    first = outs[1, True, True].split("\x08")[0]
    assert first.startswith(f"\r\x1b[1m 1/30\x1b[0m \x1b[37m━━━━━━━━━━━━━━━━━━━━\x1b[0m "
                            f"\x1b[1m{eta}\x1b[0m {per_step} - loss: 0.5000 - tiny: "
                            "5.0000e-04 - zero: 0.0000e+00 - neg: -0.2500 - big: 1234.5000")
    # Below Keras's 0.05 s interval, only the first and the last frames are drawn.
    assert outs[1, True, True].count(" - loss: nan - tiny: -1.0000e-05 - zero: 0.0000e+00 - "
                                     "neg: -2.0000 - big: inf - new: 3.0000") == (
        4 if tick >= 0.05 else 2)
    assert outs[1, False, True].startswith("\n\x1b[1m 1/30\x1b[0m ")
    assert re.fullmatch(r"30/30 - \d+s - \d+[mu]?s/step - loss: nan - tiny: -1\.0000e-05 - "
                        r"zero: 0\.0000e\+00 - neg: -2\.0000e\+00 - big: inf - new: "
                        r"3\.0000\n", outs[2, True, True])


# ---------------------------------------------------------------------------- off a terminal


def test_off_a_terminal_keras_last_frames_and_no_batch_hooks(keras, monkeypatch):
    """Captured output is no terminal, yet Keras's rule (`posix` in sys.modules) still
    redraws in place: jaxgraph writes Keras's bytes less the frames drawn while a bar
    runs, and listens to no batch (so a whole epoch stays one dispatch)."""
    batches = []
    real = jg_progbar.ProgbarLogger._update

    def spy(self, batch, logs):
        batches.append(batch)
        real(self, batch, logs)

    monkeypatch.setattr(jg_progbar.ProgbarLogger, "_update", spy)
    k_out, j_out = _outputs(keras, _pair(keras, steps_per_execution=1), _fit_session,
                            io.StringIO, monkeypatch)
    assert batches == []
    assert _counts(_bars(k_out)) == _SESSION_COUNTS
    assert _mask_times(j_out) == _mask_times(_last_frames(k_out))
    assert _counts(_bars(j_out)) == [bar[-1:] for bar in _SESSION_COUNTS]
    assert "\b" not in j_out
    assert re.fullmatch(r"\r\x1b\[1m5/5\x1b\[0m \x1b\[32m━{20}\x1b\[0m\x1b\[37m\x1b\[0m "
                        r"\x1b\[1m\d+s\x1b\[0m \d+[mu]?s/step - accuracy: \S+ - loss: \S+ - "
                        r"mse: \S+ - val_accuracy: \S+ - val_loss: \S+ - val_mse: \S+",
                        j_out.split("\n")[1])


def test_non_dynamic_display_writes_frames_on_new_lines(keras, monkeypatch):
    """Where Keras's rule finds no live display (no terminal, no `posix`: Windows), each
    frame starts a new line; jaxgraph writes Keras's last frame of each bar."""
    for module in _progbar_modules():
        monkeypatch.setattr(module, "sys", _NoPosix())
    k_out, j_out = _outputs(keras, _pair(keras, steps_per_execution=1), _fit_session,
                            io.StringIO, monkeypatch)
    assert "\r" not in k_out and "\b" not in k_out
    assert k_out.count("\n\x1b[1m1/5\x1b[0m ") == 4  # Keras's frames during an epoch
    assert _mask_times(j_out) == _mask_times(_last_frames(k_out))
    lines = _mask_times(j_out).split("\n")
    assert lines[:2] == ["Epoch 1/3", ""]
    assert re.fullmatch(r"\x1b\[1m5/5\x1b\[0m \x1b\[32m━{20}\x1b\[0m\x1b\[37m\x1b\[0m "
                        r"\x1b\[1mT\x1b\[0m T/step - accuracy: \S+ - loss: \S+ - mse: \S+ - "
                        r"val_accuracy: \S+ - val_loss: \S+ - val_mse: \S+", lines[2])
    assert lines[-3:] == ["", "\x1b[1m2/2\x1b[0m \x1b[32m━━━━━━━━━━━━━━━━━━━━\x1b[0m"
                          "\x1b[37m\x1b[0m \x1b[1mT\x1b[0m T/step", ""]


def test_verbose_2_titles_only_several_epochs(keras, monkeypatch):
    """Keras titles an epoch only when fit runs several (at verbose 1 and 2)."""
    x, y = _data(40)

    def session(model, callbacks):
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=2, callbacks=callbacks)
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=2, callbacks=callbacks)

    k_out, j_out = _outputs(keras, _pair(keras), session, io.StringIO, monkeypatch)
    assert j_out == k_out
    assert [line.split(" - ")[0] for line in j_out.splitlines()] == [
        "5/5", "Epoch 1/2", "5/5", "Epoch 2/2", "5/5"]

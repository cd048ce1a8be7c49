"""Built-in callbacks: their logic on a small fake model driven like `fit`, then the
book's examples on real `fit`."""

import csv
import io
import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgraph import callbacks
from jaxgraph import metrics as jg_metrics
from jaxgraph.callbacks import (
    BackupAndRestore,
    Callback,
    CallbackList,
    CSVLogger,
    EarlyStopping,
    History,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ProgbarLogger,
    ReduceLROnPlateau,
    TensorBoard,
    TerminateOnNaN,
)
from jaxgraph.callbacks.base import HOOKS, Logs, overrides

BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_test_batch_begin",
               "on_test_batch_end", "on_predict_batch_begin", "on_predict_batch_end")


# ---------------------------------------------------------------------------- a fake model


class FakeOptimizer:
    """The trainer's contract: a float learning rate backed by an array."""

    def __init__(self, lr):
        self._lr = jnp.float32(lr)
        self.iterations = 0

    @property
    def learning_rate(self):
        return float(self._lr)

    @learning_rate.setter
    def learning_rate(self, value):
        self._lr = jnp.float32(value)

    lr = learning_rate


class FakeTrainer:
    def __init__(self, model):
        self.model = model
        self.epoch = 0
        self.rng = jax.random.key(0)

    def get_state(self):
        m = self.model
        return {"params": {"w": jnp.asarray(m.w)}, "opt": (m.optimizer._lr, jnp.asarray(m.w * 2)),
                "step": jnp.int32(m.optimizer.iterations), "rng": jax.random.key_data(self.rng)}

    def set_state(self, state):
        m = self.model
        m.w = np.asarray(state["params"]["w"]).copy()
        m.optimizer._lr = jnp.asarray(state["opt"][0])
        m.optimizer.iterations = int(state["step"])
        self.rng = jax.random.wrap_key_data(jnp.asarray(state["rng"]))


class FakeModel:
    """Implements what callbacks may use: weights, optimizer, stop_training, save."""

    def __init__(self, lr=0.1, fail_saving=False, metrics=()):
        self.stop_training = False
        self.metrics = list(metrics)  # compiled metric objects: mode 'auto' reads them
        self.optimizer = FakeOptimizer(lr)
        self.w = np.zeros(3, np.float32)
        self._trainer = FakeTrainer(self)
        self.fail_saving = fail_saving
        self.saved = []

    def get_weights(self):
        return [self.w.copy()]

    def set_weights(self, weights):
        self.w = np.asarray(weights[0], np.float32).copy()

    def _write(self, path, kind):
        with open(path, "wb") as f:
            f.write(kind.encode() + b":")
            if self.fail_saving:
                raise OSError("disk full")
            np.save(f, self.w)
        self.saved.append((kind, path))

    def save(self, path):
        self._write(path, "model")

    def save_weights(self, path):
        self._write(path, "weights")

    def train_step(self):
        self.w = self.w + 1
        self.optimizer.iterations += 1


def quiet(cb):
    return hasattr(cb, "wants_batches") and not cb.wants_batches()


def drive(model, cbs, epochs, metrics, steps=2, verbose=0, batch_loss=None,
          validation_data=None, initial_epoch=0):
    """Run callbacks the way the trainer does (quiet batch hooks silenced)."""
    cbl = CallbackList(cbs, model=model, params={"epochs": epochs, "steps": steps,
                                                 "verbose": verbose})
    for hook in BATCH_HOOKS:
        cbl.live[hook] = [c for c in cbl.live[hook] if not quiet(c)]
    for c in cbs:
        c.validation_data = validation_data
    model._callback_list = cbl
    model.stop_training = False
    model._initial_epoch_override = None
    cbl.call("on_train_begin", Logs())
    start = model._initial_epoch_override
    start = initial_epoch if start is None else start
    logs = Logs()
    for epoch in range(start, epochs):
        model._trainer.epoch = epoch
        cbl.call("on_epoch_begin", epoch, Logs())
        for b in range(steps):
            cbl.call("on_train_batch_begin", b, Logs())
            model.train_step()
            loss = batch_loss(epoch, b) if batch_loss else 1.0 / (1 + epoch)
            cbl.call("on_train_batch_end", b, Logs({"loss": jnp.float32(loss)}))
            if model.stop_training:
                break
        # As the trainer: the metrics only (the learning-rate callbacks log the rate).
        logs = Logs({k: jnp.float32(v) for k, v in metrics(epoch).items()})
        cbl.call("on_epoch_end", epoch, logs)
        if model.stop_training:
            break
    cbl.call("on_train_end", logs)
    return cbl


def series(name, values, **extra):
    """metrics(epoch) from a list of values of `name` (repeats the last one)."""
    return lambda e: {name: values[min(e, len(values) - 1)], **extra}


# ---------------------------------------------------------------------------- exports


def test_every_callback_is_exported():
    for name in ("Callback", "CallbackList", "History", "ProgbarLogger", "EarlyStopping",
                 "ModelCheckpoint", "ReduceLROnPlateau", "LearningRateScheduler", "CSVLogger",
                 "TensorBoard", "TerminateOnNaN", "LambdaCallback", "BackupAndRestore"):
        assert hasattr(callbacks, name), name
        assert name in callbacks.__all__


def test_epoch_level_callbacks_leave_batch_hooks_dead(tmp_path):
    """Nothing in the default configurations forces a per-batch sync."""
    cbs = [History(), EarlyStopping(), ModelCheckpoint(str(tmp_path / "m.h5")),
           ReduceLROnPlateau(), LearningRateScheduler(lambda e: 0.1), CSVLogger(
               str(tmp_path / "l.csv")), TensorBoard(str(tmp_path / "tb")),
           BackupAndRestore(str(tmp_path / "b")), LambdaCallback(on_epoch_end=print)]
    progbar = ProgbarLogger()
    progbar.set_params({"verbose": 0, "epochs": 1, "steps": 1})
    cbs.append(progbar)
    for cb in cbs:
        for hook in BATCH_HOOKS:
            assert not overrides(cb, hook) or quiet(cb), (type(cb).__name__, hook)
    assert not quiet(ModelCheckpoint(str(tmp_path / "m.h5"), save_freq=3))
    assert not quiet(TensorBoard(str(tmp_path / "tb"), update_freq=5))
    assert not quiet(BackupAndRestore(str(tmp_path / "b"), save_freq=2))
    assert overrides(TerminateOnNaN(), "on_train_batch_end")


# ---------------------------------------------------------------------------- History


def test_history_records_floats_per_epoch():
    model = FakeModel()
    h = History()
    drive(model, [h], 3, series("loss", [0.5, 0.4, 0.3], acc=0.9))
    assert h.epoch == [0, 1, 2]
    assert h.history["loss"] == pytest.approx([0.5, 0.4, 0.3])
    assert all(type(v) is float for v in h.history["loss"])
    assert set(h.history) == {"loss", "acc"}
    assert h.params == {"epochs": 3, "steps": 2, "verbose": 0}
    assert model.history is h


# ---------------------------------------------------------------------------- ProgbarLogger


def test_progbar_quiet_and_per_epoch_lines(capsys):
    model = FakeModel()
    p0 = ProgbarLogger()
    drive(model, [p0], 2, series("loss", [0.5, 0.25]), verbose=0)
    assert capsys.readouterr().out == ""
    assert not p0.wants_batches()

    p2 = ProgbarLogger()
    drive(model, [p2], 2, series("loss", [0.5, 0.25], val_loss=0.75), verbose=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert not p2.wants_batches()
    # Keras's verbose=2: the epoch's title, then `2/2 - 0s - 1ms/step - loss: ...`
    assert len(lines) == 4
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2"
    assert re.fullmatch(r"2/2 - \d+s - \d+[mu]s/step - loss: 0\.5000 - val_loss: 0\.7500",
                        lines[1])
    assert "loss: 0.2500" in lines[3]

    # verbose=1 with stdout captured (not a terminal): no batch hooks, Keras's last frame
    # of the epoch only, and no title for a single epoch (as in Keras)
    p1 = ProgbarLogger()
    drive(model, [p1], 1, series("loss", [1e-5]), verbose=1)
    out = capsys.readouterr().out
    assert not p1.wants_batches()
    assert "Epoch" not in out and out.count("\r") == 1 and out.endswith("loss: 1.0000e-05\n")


def test_progbar_live_bar_on_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stdout", term)
    p = ProgbarLogger(refresh_interval=0.0)
    drive(FakeModel(), [p], 2, series("loss", [0.5, 0.25], acc=0.75), steps=4, verbose=1)
    out = term.getvalue()
    assert p.wants_batches()
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert "4/4" in out
    assert re.search(r"\x1b\[1m2/4\x1b\[0m .*\x1b\[1m\d+s\x1b\[0m", out)  # Keras's ETA
    assert "loss: 0.2500" in out and "acc: 0.7500" in out


# ---------------------------------------------------------------------------- EarlyStopping


def run_es(values, epochs=10, metrics=(), **kwargs):
    model = FakeModel(metrics=metrics)
    es = EarlyStopping(**kwargs)
    h = History()
    drive(model, [es, h], epochs, series(kwargs.get("monitor", "val_loss"), values))
    return es, h, model


def test_early_stopping_patience():
    es, h, _ = run_es([1.0, 0.9, 0.95, 0.96, 0.97, 0.5], patience=2)
    assert h.epoch == [0, 1, 2, 3]
    assert es.stopped_epoch == 3
    assert es.best == pytest.approx(0.9)
    es, h, _ = run_es([1.0, 0.9, 0.95], patience=0)
    assert h.epoch == [0, 1, 2]


def test_early_stopping_min_delta_and_mode():
    # improvements smaller than min_delta do not count
    _, h, _ = run_es([1.0, 0.99, 0.98, 0.97], patience=1, min_delta=0.05)
    assert h.epoch == [0, 1]
    # a compiled accuracy is maximised in mode auto
    _, h, _ = run_es([0.5, 0.6, 0.7, 0.7, 0.7], monitor="acc", patience=1,
                     metrics=[jg_metrics.BinaryAccuracy(name="acc")])
    assert h.epoch == [0, 1, 2, 3]
    # explicit mode='max' on an arbitrary name
    _, h, _ = run_es([1, 2, 3, 4, 5], monitor="score", mode="max", patience=0)
    assert h.epoch == [0, 1, 2, 3, 4, 5]  # the repeated 5 at epoch 5 is no improvement
    _, h, _ = run_es([1, 2, 3, 4, 5], monitor="score", mode="min", patience=0)
    assert h.epoch == [0, 1]


def test_early_stopping_accepts_acc_accuracy_aliases():
    """For the value and for the direction: `acc` reads the compiled `accuracy`."""
    model = FakeModel(metrics=[jg_metrics.BinaryAccuracy(name="accuracy")])
    es = EarlyStopping(monitor="acc", patience=0)
    h = History()
    drive(model, [es, h], 5, series("accuracy", [0.5, 0.4, 0.3]))
    assert h.epoch == [0, 1]
    model = FakeModel(metrics=[jg_metrics.BinaryAccuracy(name="acc")])
    es = EarlyStopping(monitor="val_accuracy", patience=0)
    h = History()
    drive(model, [es, h], 5, series("val_acc", [0.5, 0.4, 0.3]))
    assert h.epoch == [0, 1]


def test_early_stopping_warns_about_a_missing_monitor():
    h = History()
    with pytest.warns(UserWarning, match=r"`val_los`.*Available metrics are: .*val_loss"):
        drive(FakeModel(), [EarlyStopping(monitor="val_los", mode="min"), h], 2,
              series("val_loss", [1.0, 2.0]))
    assert h.epoch == [0, 1]
    # Keras 3: in mode 'auto' an unknown monitor has no direction, an error at train begin
    h = History()
    with pytest.raises(ValueError, match=r"monitor=val_los.*mode='max'.*mode='min'"):
        drive(FakeModel(), [EarlyStopping(monitor="val_los"), h], 2,
              series("val_loss", [1.0, 2.0]))
    assert h.epoch == []


def test_early_stopping_baseline_and_start_from_epoch():
    # the first epoch does not beat the baseline, so it does not reset the patience
    _, h, _ = run_es([0.9], baseline=0.5, patience=2)
    assert h.epoch == [0, 1]
    _, h, _ = run_es([0.9], patience=2)
    assert h.epoch == [0, 1, 2]
    _, h, _ = run_es([0.4], baseline=0.5, patience=2)
    assert h.epoch == [0, 1, 2]
    # warm-up epochs are ignored even though they are worse
    es, h, _ = run_es([5.0, 6.0, 7.0, 1.0, 2.0, 3.0], start_from_epoch=3, patience=1)
    assert h.epoch == [0, 1, 2, 3, 4]
    assert es.best == pytest.approx(1.0)


def test_early_stopping_restores_best_weights():
    es, h, model = run_es([1.0, 0.5, 0.7, 0.8], patience=2, restore_best_weights=True)
    assert h.epoch == [0, 1, 2, 3]
    # 2 steps per epoch, each adds 1: the end of epoch 1 had w == 4
    np.testing.assert_allclose(model.w, [4, 4, 4])
    assert es.best_epoch == 1


def test_early_stopping_state_roundtrip():
    es, _, _ = run_es([1.0, 0.5, 0.7], patience=5, epochs=3, restore_best_weights=True)
    state = es.get_state()
    other = EarlyStopping(patience=5, restore_best_weights=True)
    other.set_state(state)
    assert (other.wait, other.best, other.best_epoch) == (1, 0.5, 1)
    np.testing.assert_allclose(other.best_weights[0], [4, 4, 4])


# ---------------------------------------------------------------------------- ModelCheckpoint


def test_checkpoint_templates_and_suffixes(tmp_path):
    model = FakeModel()
    for suffix in (".h5", ".keras", ".jgraph", ".weights.h5"):
        template = str(tmp_path / ("w.{epoch:02d}-{val_loss:.2f}" + suffix))
        drive(model, [ModelCheckpoint(template)], 2, series("val_loss", [0.5, 0.25]))
        assert (tmp_path / f"w.01-0.50{suffix}").exists()
        assert (tmp_path / f"w.02-0.25{suffix}").exists()
    assert {kind for kind, _ in model.saved} == {"model"}
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


def test_checkpoint_save_best_only_and_weights_only(tmp_path):
    model = FakeModel()
    path = str(tmp_path / "best.weights.h5")
    cb = ModelCheckpoint(path, monitor="val_loss", save_best_only=True, save_weights_only=True)
    drive(model, [cb], 4, series("val_loss", [1.0, 0.5, 0.7, 0.6]))
    assert [kind for kind, _ in model.saved] == ["weights", "weights"]
    with open(path, "rb") as f:
        assert f.read(8) == b"weights:"
        np.testing.assert_allclose(np.load(f), [4, 4, 4])  # weights of epoch 1
    assert cb.best == pytest.approx(0.5)
    # mode auto maximises a compiled accuracy; initial_value_threshold must be beaten
    model = FakeModel(metrics=[jg_metrics.BinaryAccuracy(name="accuracy")])
    cb = ModelCheckpoint(str(tmp_path / "acc.h5"), monitor="val_acc", save_best_only=True,
                         initial_value_threshold=0.6)
    drive(model, [cb], 4, series("val_accuracy", [0.5, 0.7, 0.65, 0.8]))
    assert len(model.saved) == 2


def test_checkpoint_missing_key_and_monitor(tmp_path):
    model = FakeModel()
    with pytest.raises(KeyError, match="val_acc"):
        drive(model, [ModelCheckpoint(str(tmp_path / "{val_acc:.2f}.h5"))], 1,
              series("loss", [1.0]))
    cb = ModelCheckpoint(str(tmp_path / "m.h5"), monitor="val_loss", save_best_only=True)
    with pytest.warns(UserWarning, match="val_loss"):
        drive(model, [cb], 1, series("loss", [1.0]))
    # Keras 3: without the monitored value it saves anyway (save_best_only=False)
    assert [kind for kind, _ in model.saved] == ["model"]


def test_checkpoint_write_is_atomic(tmp_path):
    path = tmp_path / "m.keras"
    model = FakeModel()
    drive(model, [ModelCheckpoint(str(path))], 1, series("val_loss", [1.0]))
    before = path.read_bytes()
    model.fail_saving = True
    with pytest.raises(OSError, match="disk full"):
        drive(model, [ModelCheckpoint(str(path))], 1, series("val_loss", [1.0]))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.keras"]


def test_checkpoint_every_n_batches(tmp_path):
    model = FakeModel()
    cb = ModelCheckpoint(str(tmp_path / "e{epoch}-b{batch}.h5"), save_freq=3)
    assert cb.wants_batches()
    drive(model, [cb], 2, series("loss", [1.0]), steps=4)
    assert sorted(os.listdir(tmp_path)) == ["e1-b3.h5", "e2-b2.h5"]
    with pytest.raises(ValueError, match="save_freq"):
        ModelCheckpoint("x.h5", save_freq="sometimes")


# ---------------------------------------------------------------------------- learning rate


def test_reduce_lr_on_plateau():
    model = FakeModel(lr=1.0)
    cb = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, cooldown=2, min_lr=0.2)
    h = History()
    drive(model, [cb, h], 9, series("val_loss", [1.0]))
    # flat loss: reduce after 2 bad epochs; as in Keras the cooldown counts down from the
    # next epoch and its last epoch already counts as bad, so the pattern repeats every 3
    assert h.history["learning_rate"] == pytest.approx(
        [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25])
    assert model.optimizer.learning_rate == pytest.approx(0.2)  # floored at min_lr
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau(factor=1.0)
    assert ReduceLROnPlateau(epsilon=0.5).min_delta == 0.5  # the Keras 2 name


def test_reduce_lr_resets_wait_on_improvement_and_keeps_state():
    model = FakeModel(lr=1.0)
    cb = ReduceLROnPlateau(monitor="val_loss", factor=0.1, patience=2, min_delta=0.0)
    drive(model, [cb], 6, series("val_loss", [1.0, 1.0, 0.5, 0.5, 0.4, 0.4]))
    assert model.optimizer.learning_rate == pytest.approx(1.0)
    state = cb.get_state()
    assert state == {"best": pytest.approx(0.4), "wait": 1, "cooldown_counter": 0}
    other = ReduceLROnPlateau()
    other.set_state(state)
    assert other.wait == 1 and other.best == pytest.approx(0.4)


def test_learning_rate_scheduler_both_signatures(capsys):
    model = FakeModel(lr=1.0)
    h = History()
    drive(model, [LearningRateScheduler(lambda epoch: 0.1 * (epoch + 1)), h], 3,
          series("loss", [1.0]))
    assert h.history["learning_rate"] == pytest.approx([0.1, 0.2, 0.3])
    h = History()
    drive(model, [LearningRateScheduler(lambda epoch, lr: lr * 0.5, verbose=1), h], 3,
          series("loss", [1.0]))
    assert h.history["learning_rate"] == pytest.approx([0.15, 0.075, 0.0375])
    assert "LearningRateScheduler setting learning rate to 0.15" in capsys.readouterr().out
    with pytest.raises(ValueError, match="float"):
        drive(model, [LearningRateScheduler(lambda epoch: "fast")], 1, series("loss", [1.0]))
    drive(model, [LearningRateScheduler(lambda epoch: np.float32(0.5))], 1, series("loss", [1]))
    assert model.optimizer.lr == pytest.approx(0.5)


# ---------------------------------------------------------------------------- CSVLogger


def test_csv_logger(tmp_path):
    path = tmp_path / "sub" / "log.csv"
    model = FakeModel()
    drive(model, [CSVLogger(str(path))], 2, series("loss", [0.5, 0.25], val_loss=0.75))
    rows = list(csv.DictReader(open(path)))
    assert list(rows[0]) == ["epoch", "loss", "val_loss"]
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert float(rows[1]["loss"]) == pytest.approx(0.25)
    # append keeps the header's columns; a missing key is written as NA
    drive(model, [CSVLogger(str(path), append=True)], 1, series("loss", [0.125]),
          initial_epoch=0)
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == 3 and rows[2]["val_loss"] == "NA"
    assert open(path).read().count("epoch") == 1
    # separator
    path2 = tmp_path / "semi.csv"
    drive(model, [CSVLogger(str(path2), separator=";")], 1, series("loss", [1.0]))
    assert open(path2).readline().strip() == "epoch;loss;val_loss"


# ---------------------------------------------------------------------------- misc


def test_terminate_on_nan(capsys):
    model = FakeModel()
    h = History()
    drive(model, [TerminateOnNaN(), h], 5, series("loss", [1.0]), steps=3,
          batch_loss=lambda e, b: float("nan") if (e, b) == (1, 1) else 1.0)
    assert h.epoch == [0, 1]
    assert model.optimizer.iterations == 5  # stopped right after the bad batch
    assert "Batch 1: Invalid loss, terminating training" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="NaN or Inf"):
        drive(FakeModel(), [TerminateOnNaN(raise_error=True)], 2, series("loss", [1.0]),
              batch_loss=lambda e, b: float("inf"))


def test_lambda_callback_overrides_only_given_hooks():
    seen = []
    cb = LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(("end", epoch,
                                                                      logs["loss"])),
                        on_train_begin=lambda logs: seen.append(("begin",)))
    live = {h for h in HOOKS if overrides(cb, h)}
    assert live == {"on_epoch_end", "on_train_begin"}
    assert isinstance(cb, LambdaCallback) and isinstance(cb, Callback)
    drive(FakeModel(), [cb], 2, series("loss", [0.5, 0.25]))
    assert seen == [("begin",), ("end", 0, 0.5), ("end", 1, 0.25)]
    # Keras 2's on_batch_end is a live train-batch hook
    batches = []
    cb2 = LambdaCallback(on_batch_end=lambda batch, logs: batches.append(batch))
    assert overrides(cb2, "on_train_batch_end") and not overrides(cb2, "on_epoch_end")
    drive(FakeModel(), [cb2], 1, series("loss", [1.0]), steps=3)
    assert batches == [0, 1, 2]
    # two instances do not share hooks
    assert not overrides(LambdaCallback(), "on_epoch_end")
    with pytest.raises(TypeError, match="on_epoch_finish"):
        LambdaCallback(on_epoch_finish=print)


# ---------------------------------------------------------------------------- BackupAndRestore


class Interrupt(Exception):
    pass


def interrupt_at(epoch):
    """Crash as epoch `epoch` begins (after the backup of the previous one)."""

    def hook(e, logs):
        if e == epoch:
            raise Interrupt

    return LambdaCallback(on_epoch_begin=hook)


def test_backup_and_restore_resumes_fake_training(tmp_path):
    backup = str(tmp_path / "backup")
    model = FakeModel(lr=1.0)
    es = EarlyStopping(monitor="val_loss", patience=3)
    rl = ReduceLROnPlateau(monitor="val_loss", patience=1, factor=0.5)
    losses = series("val_loss", [1.0, 0.5, 0.6, 0.7, 0.8, 0.9])
    with pytest.raises(Interrupt):
        drive(model, [BackupAndRestore(backup), es, rl, interrupt_at(3)], 6, losses)
    assert os.path.isdir(backup)
    saved_w = model.w.copy()
    model2 = FakeModel(lr=1.0)  # a fresh process: nothing in memory
    es2 = EarlyStopping(monitor="val_loss", patience=3)
    rl2 = ReduceLROnPlateau(monitor="val_loss", patience=1, factor=0.5)
    h = History()
    seen = {}
    probe = LambdaCallback(on_epoch_begin=lambda e, logs: seen.setdefault(
        "first", (e, model2.w.copy(), model2.optimizer.iterations, model2.optimizer.lr,
                  es2.wait, es2.best, rl2.best)))
    bar = BackupAndRestore(backup)
    drive(model2, [bar, es2, rl2, probe, h], 6, losses)
    epoch, w, iterations, lr, wait, best, rl_best = seen["first"]
    assert bar.restored_epoch == 3 and epoch == 3
    np.testing.assert_allclose(w, saved_w)
    assert iterations == 6 and lr == pytest.approx(0.5)
    assert (wait, best, rl_best) == (1, pytest.approx(0.5), pytest.approx(0.5))
    # EarlyStopping resumed its patience: stops at epoch 4 as the uninterrupted run would
    assert h.epoch == [3, 4]
    assert not os.path.exists(backup)  # finished: the backup is deleted


def test_backup_kept_without_delete_and_rejects_another_model(tmp_path):
    backup = str(tmp_path / "b")
    drive(FakeModel(), [BackupAndRestore(backup, delete_checkpoint=False)], 2,
          series("loss", [1.0]))
    assert os.path.isdir(backup)

    class Bigger(FakeModel):
        def __init__(self):
            super().__init__()
            self.w = np.zeros(5, np.float32)

    with pytest.raises(ValueError, match="different model"):
        drive(Bigger(), [BackupAndRestore(backup)], 3, series("loss", [1.0]))
    with pytest.raises(ValueError, match="save_freq"):
        BackupAndRestore(backup, save_freq=0)


def test_backup_every_n_batches_restarts_the_epoch(tmp_path):
    backup = str(tmp_path / "b")
    model = FakeModel()
    with pytest.raises(Interrupt):
        drive(model, [BackupAndRestore(backup, save_freq=3), interrupt_at(2)], 4,
              series("loss", [1.0]), steps=4)
    model2 = FakeModel()
    bar = BackupAndRestore(backup, save_freq=3)
    h = History()
    drive(model2, [bar, h], 4, series("loss", [1.0]), steps=4)
    # last backup at the 6th batch (epoch 1): epoch 1 runs again from its start
    assert bar.restored_epoch == 1 and h.epoch == [1, 2, 3]
    assert model2.optimizer.iterations == 6 + 12


# ---------------------------------------------------------------------------- real fit


@pytest.fixture(scope="module")
def binary_problem():
    """A small compiled classifier and its data, shared to pay compilation once."""
    from jaxgraph import Input, Model, layers

    rng = np.random.default_rng(0)
    x = rng.normal(size=(192, 8)).astype("float32")
    y = (x[:, :1] + 0.5 * x[:, 1:2] > 0).astype("float32")
    xv = rng.normal(size=(64, 8)).astype("float32")
    yv = (xv[:, :1] + 0.5 * xv[:, 1:2] > 0).astype("float32")
    inp = Input((8,), name="features")
    hidden = layers.Dense(16, activation="relu", name="hidden")(inp)
    out = layers.Dense(1, activation="sigmoid", name="prob")(hidden)
    model = Model(inp, out, name="classifier")
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["acc"])
    return model, (x, y), (xv, yv)


def expected_stop(values, patience):
    """Last epoch run by EarlyStopping(mode='max', patience) on these values."""
    best, wait = None, 0
    for epoch, v in enumerate(values):
        wait += 1
        if best is None or v > best:
            best, wait = v, 0
        elif wait >= patience and epoch > 0:
            return epoch
    return len(values) - 1


def test_book_early_stopping_and_best_checkpoint(binary_problem, tmp_path, capsys):
    from jaxgraph.models import load_model

    model, (x, y), (xv, yv) = binary_problem
    path = str(tmp_path / "my_model.h5")
    weights_by_epoch = []
    callbacks_list = [
        EarlyStopping(monitor="acc", patience=1),
        ModelCheckpoint(filepath=path, monitor="val_loss", save_best_only=True),
        LambdaCallback(on_epoch_end=lambda e, logs: weights_by_epoch.append(
            model.get_weights())),
    ]
    history = model.fit(x, y, epochs=8, batch_size=64, callbacks=callbacks_list,
                        validation_data=(xv, yv))
    acc = history.history["acc"]
    assert history.epoch[-1] == expected_stop(acc, patience=1)
    # verbose='auto' with captured stdout: one line per epoch, no live bar
    out = capsys.readouterr().out
    assert out.count("Epoch ") == len(history.epoch) and "val_loss: " in out
    # the file holds the weights of the epoch with the lowest val_loss
    best = int(np.argmin(history.history["val_loss"]))
    loaded = load_model(path)
    for saved, expected in zip(loaded.get_weights(), weights_by_epoch[best]):
        np.testing.assert_allclose(saved, expected, rtol=1e-6)
    assert [p for p in os.listdir(tmp_path) if p != "my_model.h5"] == []


def test_book_reduce_lr_on_plateau_without_recompiling(binary_problem):
    model, (x, y), (xv, yv) = binary_problem
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)  # compiled once, before counting
    # Far too small for val_loss to improve by min_delta=1e-4 in 12 epochs, whatever
    # state the shared model is in (RMSprop's step is about lr per weight).
    model.optimizer.learning_rate = 1e-8
    traces = model._trainer.trace_counts["train_step"]
    callbacks_list = [ReduceLROnPlateau(monitor="val_loss", factor=0.1, patience=10)]
    history = model.fit(x, y, epochs=12, batch_size=64, callbacks=callbacks_list,
                        validation_data=(xv, yv), verbose=0)
    lrs = history.history["learning_rate"]
    assert lrs[:11] == pytest.approx([1e-8] * 11)
    assert lrs[11] == pytest.approx(1e-9)
    assert model.optimizer.learning_rate == pytest.approx(1e-9)
    assert model._trainer.trace_counts["train_step"] == traces


def test_book_activation_logger(binary_problem, tmp_path, monkeypatch):
    from jaxgraph.models import Model

    class ActivationLogger(Callback):
        def set_model(self, model):
            self.model = model
            layer_outputs = [layer.output for layer in model.layers]
            self.activations_model = Model(model.input, layer_outputs)

        def on_epoch_end(self, epoch, logs=None):
            if self.validation_data is None:
                raise RuntimeError("Requires validation_data.")
            validation_sample = self.validation_data[0][0:1]
            activations = self.activations_model.predict(validation_sample)
            f = open("activations_at_epoch_" + str(epoch) + ".npz", "wb")
            np.savez(f, *activations)
            f.close()

    monkeypatch.chdir(tmp_path)
    model, (x, y), (xv, yv) = binary_problem
    model.fit(x, y, epochs=2, batch_size=64, validation_data=(xv, yv), verbose=0,
              callbacks=[ActivationLogger()])
    assert sorted(os.listdir(tmp_path)) == ["activations_at_epoch_0.npz",
                                            "activations_at_epoch_1.npz"]
    saved = np.load(tmp_path / "activations_at_epoch_1.npz")
    shapes = [saved[k].shape for k in sorted(saved.files, key=lambda s: int(s.split("_")[1]))]
    assert shapes == [(1, 8), (1, 16), (1, 1)]
    np.testing.assert_allclose(saved["arr_2"], model.predict(xv[:1], verbose=0), rtol=1e-5)


def test_backup_and_restore_with_real_fit(binary_problem, tmp_path):
    model, (x, y), _ = binary_problem
    backup = str(tmp_path / "backup")
    at_end = {}
    record = LambdaCallback(on_epoch_end=lambda e, logs: at_end.__setitem__(
        e, (model.get_weights(), model.optimizer.iterations)))
    with pytest.raises(Interrupt):
        model.fit(x, y, epochs=4, batch_size=64, verbose=0,
                  callbacks=[BackupAndRestore(backup), record, interrupt_at(2)])
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])  # lose everything
    resumed = {}
    probe = LambdaCallback(on_epoch_begin=lambda e, logs: resumed.setdefault(
        "first", (e, model.get_weights(), model.optimizer.iterations)))
    history = model.fit(x, y, epochs=4, batch_size=64, verbose=0,
                        callbacks=[BackupAndRestore(backup), probe])
    epoch, weights, iterations = resumed["first"]
    assert epoch == 2 and history.epoch == [2, 3]
    for got, want in zip(weights, at_end[1][0]):
        np.testing.assert_allclose(got, want)
    assert iterations == at_end[1][1]
    assert not os.path.exists(backup)


@pytest.mark.parametrize("order", ["interrupt_first", "backup_first"])
def test_backup_is_written_at_epoch_end_whatever_raises_next(binary_problem, tmp_path, order):
    """As Keras: the epoch's backup is on disk when on_epoch_end returns, so an exception
    in a later callback's on_epoch_end, or before the next epoch's backup hook, loses
    nothing (interrupt at the start of epoch 2 listed before the backup callback, or
    at the end of epoch 2 listed after it)."""
    model, (x, y), _ = binary_problem
    backup = str(tmp_path / "backup")

    def end_hook(e, logs):
        if e == 2:
            raise Interrupt

    if order == "interrupt_first":
        cbs = [interrupt_at(2), BackupAndRestore(backup)]
        resume_at = 2
    else:
        cbs = [BackupAndRestore(backup), LambdaCallback(on_epoch_end=end_hook)]
        resume_at = 3
    with pytest.raises(Interrupt):
        model.fit(x, y, epochs=5, batch_size=64, verbose=0, callbacks=cbs)
    trained = model.get_weights()
    model.set_weights([np.zeros_like(w) for w in trained])
    bar = BackupAndRestore(backup)
    history = model.fit(x, y, epochs=5, batch_size=64, verbose=0, callbacks=[bar])
    assert bar.restored_epoch == resume_at and history.epoch == list(range(resume_at, 5))


# ---------------------------------------------------------------------------- logs are dicts


def _small_model(outputs=1):
    from jaxgraph import Input, layers
    from jaxgraph.models import Model

    inp = Input((4,), name="x")
    hidden = layers.Dense(8, activation="relu", name="h")(inp)
    if outputs == 1:
        out = layers.Dense(1, name="y")(hidden)
    else:
        out = [layers.Dense(1, name="a")(hidden), layers.Dense(3, name="b")(hidden)]
    model = Model(inp, out)
    model.compile(optimizer="sgd", loss="mse" if outputs == 1 else ["mse", "mse"])
    return model


def _data(n=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype("f4"), rng.normal(size=(n, 1)).astype("f4")


def test_user_callbacks_get_plain_dicts_of_floats():
    import json

    seen = []

    class Check(Callback):
        def _check(self, hook, logs):
            assert type(logs) is dict, (hook, type(logs))
            assert all(type(v) is float for v in logs.values()), (hook, logs)
            json.loads(json.dumps(logs))  # ordinary user code works
            seen.append(hook)

        def on_train_batch_end(self, batch, logs=None):
            self._check("train_batch_end", logs)

        def on_epoch_end(self, epoch, logs=None):
            self._check("epoch_end", logs)
            assert {"loss", "val_loss"} <= set(logs)

        def on_test_end(self, logs=None):
            self._check("test_end", logs)

        def on_train_end(self, logs=None):
            self._check("train_end", logs)

    model = _small_model()
    x, y = _data(12)
    model.fit(x, y, batch_size=5, epochs=2, validation_data=(x, y), verbose=0,
              callbacks=[Check()])
    assert seen.count("train_batch_end") == 6 and seen.count("epoch_end") == 2
    assert seen.count("test_end") == 2 and seen.count("train_end") == 1
    seen.clear()
    model.evaluate(x, y, verbose=0, callbacks=[Check()])
    assert seen == ["test_end"]


def test_user_edits_of_logs_reach_later_callbacks_and_history():
    class Edit(Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["custom"] = float(epoch)
            assert logs.setdefault("loss", -1.0) != -1.0  # present: unchanged
            logs.setdefault("added", 7.0)
            del logs["val_loss"]
            logs["loss"] = 100.0 + epoch

    class DeviceAdder(Callback):  # a lazy-aware callback that adds a device value
        _lazy_logs = True

        def on_epoch_end(self, epoch, logs=None):
            logs["on_device"] = jnp.float32(3.0)

    got = []
    after = LambdaCallback(on_epoch_end=lambda e, logs: got.append(logs))
    model = _small_model()
    x, y = _data(12)
    history = model.fit(x, y, batch_size=6, epochs=2, validation_data=(x, y), verbose=0,
                        callbacks=[Edit(), DeviceAdder(), after])
    assert history.history["custom"] == [0.0, 1.0]
    assert history.history["added"] == [7.0, 7.0]
    assert history.history["loss"] == [100.0, 101.0]
    assert history.history["on_device"] == [3.0, 3.0]
    assert all(type(v) is float for v in history.history["on_device"])
    assert "val_loss" not in history.history
    for logs in got:
        assert type(logs) is dict and "val_loss" not in logs
        assert logs["on_device"] == 3.0 and type(logs["on_device"]) is float
        assert list(logs)[-3:] == ["custom", "added", "on_device"]

    class Clear(Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs.clear()

    history = model.fit(x, y, batch_size=6, epochs=2, verbose=0, callbacks=[Clear()])
    assert history.history == {} and history.epoch == [0, 1]


def test_callback_list_shares_one_dict_and_merges_edits_back():
    calls = []

    class First(Callback):
        def on_epoch_end(self, epoch, logs=None):
            calls.append(("first", logs))
            logs["a"] = 1.0
            del logs["gone"]

    class Lazy(Callback):
        _lazy_logs = True

        def on_epoch_end(self, epoch, logs=None):
            calls.append(("lazy", logs))
            assert "a" in logs and "gone" not in logs
            logs["b"] = jnp.float32(2.0)

    class Second(Callback):
        def on_epoch_end(self, epoch, logs=None):
            calls.append(("second", logs))
            logs.pop("loss")

    cbl = CallbackList([First(), Lazy(), Second(), History()])
    logs = Logs({"loss": jnp.float32(0.5), "gone": jnp.float32(1.0)})
    cbl.call("on_epoch_end", 0, logs)
    (_, d1), (_, lazy), (_, d2) = calls
    assert isinstance(lazy, Logs) and d1 is d2 and type(d1) is dict  # one dict, as in Keras
    assert d2 == {"a": 1.0, "b": 2.0}
    assert dict(logs) == {"a": 1.0, "b": 2.0}
    assert cbl.callbacks[-1].history == {"a": [1.0], "b": [2.0]}


def test_which_callbacks_read_logs_lazily(tmp_path):
    from jaxgraph.callbacks.base import reads_logs_lazily

    for cb in (History(), ProgbarLogger(), EarlyStopping(), ReduceLROnPlateau(),
               CSVLogger(str(tmp_path / "l.csv")), TerminateOnNaN(),
               ModelCheckpoint(str(tmp_path / "m.h5"))):
        for hook in ("on_epoch_end", "on_train_batch_end"):
            if overrides(cb, hook):
                assert reads_logs_lazily(cb, hook), (type(cb).__name__, hook)

    class MyHistory(History):
        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)

    class Plain(History):
        pass

    assert not reads_logs_lazily(MyHistory(), "on_epoch_end")
    assert reads_logs_lazily(Plain(), "on_epoch_end")
    assert not reads_logs_lazily(LambdaCallback(on_epoch_end=print), "on_epoch_end")

    class OldStyle(TerminateOnNaN):
        def on_batch_end(self, batch, logs=None):
            pass

    assert not reads_logs_lazily(OldStyle(), "on_train_batch_end")


def test_lazy_callbacks_do_not_force_a_sync():
    class Keep(Callback):
        _lazy_logs = True

        def on_train_batch_end(self, batch, logs=None):
            self.logs = logs

    keep = Keep()
    cbl = CallbackList([keep])
    logs = Logs({"loss": jnp.float32(1.5)})
    cbl.call("on_train_batch_end", 0, logs)
    assert keep.logs is logs and logs._cache == {}  # nothing read, nothing synced
    logs["x"] = 2  # host values are kept as Python floats at once
    assert logs._cache == {"x": 2.0}
    assert logs["loss"] == 1.5 and type(logs["loss"]) is float


# ---------------------------------------------------------------------------- batch hooks


class Recorder(Callback):
    """Records every hook with its batch index and a copy of its logs."""

    def __init__(self):
        super().__init__()
        self.calls = []


for _hook in HOOKS:
    def _make(name):
        if name.endswith(("_begin", "_end")) and ("batch" in name or "epoch" in name):
            def hook(self, i, logs=None):
                self.calls.append((name, i, dict(logs or {})))
        else:
            def hook(self, logs=None):
                self.calls.append((name, dict(logs or {})))
        return hook
    setattr(Recorder, _hook, _make(_hook))


def test_predict_calls_batch_hooks_with_each_batch_outputs():
    model = _small_model()
    x, _ = _data(10)  # batch 4: batches of 4, 4, 2
    want = model.predict(x, batch_size=4, verbose=0)
    rec = Recorder()
    got = model.predict(x, batch_size=4, verbose=0, callbacks=[rec])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert rec.params["steps"] == 3
    names = [(c[0], c[1]) if len(c) == 3 else (c[0],) for c in rec.calls]
    assert names == [("on_predict_begin",),
                     ("on_predict_batch_begin", 0), ("on_predict_batch_end", 0),
                     ("on_predict_batch_begin", 1), ("on_predict_batch_end", 1),
                     ("on_predict_batch_begin", 2), ("on_predict_batch_end", 2),
                     ("on_predict_end",)]
    ends = [c for c in rec.calls if c[0] == "on_predict_batch_end"]
    for i, (_, _, logs) in enumerate(ends):
        assert list(logs) == ["outputs"]
        np.testing.assert_allclose(logs["outputs"], want[4 * i:4 * i + 4], rtol=1e-6)
    assert [c[2] for c in rec.calls if c[0] == "on_predict_batch_begin"] == [{}, {}, {}]


def test_predict_batch_hooks_multi_output_generator_and_stop():
    model = _small_model(outputs=2)
    x, _ = _data(7)
    want_a, want_b = model.predict(x, batch_size=3, verbose=0)

    class Outs(Callback):
        def __init__(self):
            super().__init__()
            self.batches = []

        def on_predict_batch_end(self, batch, logs=None):
            self.batches.append((batch, logs["outputs"]))

    rec = Outs()
    model.predict(x, batch_size=3, verbose=0, callbacks=[rec])
    assert [b for b, _ in rec.batches] == [0, 1, 2] and rec.params["steps"] == 3
    for b, (a, c) in rec.batches:
        np.testing.assert_allclose(a, want_a[3 * b:3 * b + 3], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c, want_b[3 * b:3 * b + 3], rtol=1e-5, atol=1e-6)

    rec = Outs()
    gen = (x[i:i + 3] for i in range(0, 7, 3))
    a, c = model.predict(gen, verbose=0, callbacks=[rec])
    assert [b for b, _ in rec.batches] == [0, 1, 2] and rec.params["steps"] is None
    np.testing.assert_allclose(a, want_a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rec.batches[2][1][1], want_b[6:], rtol=1e-5, atol=1e-6)

    class Stop(Callback):
        def on_predict_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_predicting = True

    a, c = model.predict(x, batch_size=3, verbose=0, callbacks=[Stop()])
    assert a.shape == (6, 1) and c.shape == (6, 3)
    np.testing.assert_allclose(a, want_a[:6], rtol=1e-6)


def test_predict_without_batch_listeners_keeps_multi_batch_dispatch():
    from jaxgraph.training.loop import _predict_program

    model = _small_model()
    x, _ = _data(40)
    rec = LambdaCallback(on_predict_end=lambda logs: None)
    model.predict(x, batch_size=4, verbose=0, callbacks=[rec])
    model.predict(x, batch_size=4, verbose=0)
    _, steps = _predict_program(model)
    assert steps.trace_counts["predict_step"] == 1


def test_evaluate_params_steps_and_batch_hooks():
    model = _small_model()
    x, y = _data(10)
    rec = Recorder()
    model.evaluate(x, y, batch_size=4, verbose=0, callbacks=[rec])
    assert rec.params["steps"] == 3
    assert [(c[0], c[1]) for c in rec.calls if "batch" in c[0]] == [
        ("on_test_batch_begin", 0), ("on_test_batch_end", 0), ("on_test_batch_begin", 1),
        ("on_test_batch_end", 1), ("on_test_batch_begin", 2), ("on_test_batch_end", 2)]
    # a generator: hooks per batch too; steps is what the caller says (none here)
    rec = Recorder()
    gen = ((x[i:i + 4], y[i:i + 4]) for i in range(0, 10, 4))
    model.evaluate(gen, verbose=0, callbacks=[rec])
    assert rec.params["steps"] is None
    assert [c[1] for c in rec.calls if c[0] == "on_test_batch_end"] == [0, 1, 2]
    assert all(type(v) is float for c in rec.calls if c[0] == "on_test_batch_end"
               for v in c[2].values())
    rec = Recorder()
    gen = ((x[i:i + 4], y[i:i + 4]) for i in range(0, 10, 4))
    model.evaluate(gen, steps=2, verbose=0, callbacks=[rec])
    assert rec.params["steps"] == 2
    assert [c[1] for c in rec.calls if c[0] == "on_test_batch_end"] == [0, 1]


def test_hook_sequence_matches_keras():
    keras = pytest.importorskip("keras")
    from jaxgraph import Input, layers
    from jaxgraph.models import Model

    def trace(lib_model, recorder_base, run):
        class Rec(recorder_base):
            def __init__(self):
                super().__init__()
                self.calls = []

        for hook in HOOKS:
            def make(name):
                if "batch" in name or "epoch" in name:
                    return lambda self, i, logs=None: self.calls.append(
                        (name, i, sorted(logs or {})))
                return lambda self, logs=None: self.calls.append((name, sorted(logs or {})))
            setattr(Rec, hook, make(hook))
        rec = Rec()
        run(lib_model, rec)
        return rec.calls, rec.params

    def build(lib_layers, lib_input, lib_model):
        inp = lib_input((4,))
        out = lib_layers.Dense(2)(lib_layers.Dense(8, activation="relu")(inp))
        m = lib_model(inp, out)
        m.compile(optimizer="sgd", loss="mse", metrics=["mae"])
        return m

    km = build(keras.layers, keras.Input, keras.Model)
    jm = build(layers, Input, Model)
    x = np.random.default_rng(1).normal(size=(10, 4)).astype("f4")
    y = np.random.default_rng(2).normal(size=(10, 2)).astype("f4")
    runs = {
        "evaluate": lambda m, r: m.evaluate(x, y, batch_size=4, verbose=0, callbacks=[r]),
        "predict": lambda m, r: m.predict(x, batch_size=4, verbose=0, callbacks=[r]),
        "fit": lambda m, r: m.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False,
                                  validation_data=(x[:6], y[:6]), callbacks=[r]),
    }
    for name, run in runs.items():
        kcalls, kparams = trace(km, keras.callbacks.Callback, run)
        jcalls, jparams = trace(jm, Callback, run)
        assert jcalls == kcalls, name  # no learning_rate key unless a callback adds it
        assert jparams == kparams, name

"""Built-in callbacks: their logic on a small fake model driven like `fit`, then the
book's examples on real `fit`."""

import csv
import io
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgraph import callbacks
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

    def __init__(self, lr=0.1, fail_saving=False):
        self.stop_training = False
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
        values = {k: jnp.float32(v) for k, v in metrics(epoch).items()}
        values["learning_rate"] = model.optimizer._lr
        logs = Logs(values)
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
    assert h.history["learning_rate"] == pytest.approx([0.1] * 3)
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
    assert len(lines) == 2
    assert lines[0].startswith("Epoch 1/2 - 2/2 - ")
    assert "loss: 0.5000" in lines[0] and "val_loss: 0.7500" in lines[0]
    assert "learning_rate: 0.1000" in lines[0]
    assert "loss: 0.2500" in lines[1]

    # verbose=1 with stdout captured (not a terminal): no bar, one line per epoch
    p1 = ProgbarLogger()
    drive(model, [p1], 1, series("loss", [1e-5]), verbose=1)
    out = capsys.readouterr().out
    assert not p1.wants_batches()
    assert "Epoch 1/1" in out and "loss: 1.0000e-05" in out


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
    assert "<" in out  # tqdm's elapsed<remaining ETA
    assert "loss: 0.2500" in out and "acc: 0.7500" in out


# ---------------------------------------------------------------------------- EarlyStopping


def run_es(values, epochs=10, **kwargs):
    model = FakeModel()
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
    # 'acc' is maximised in mode auto
    _, h, _ = run_es([0.5, 0.6, 0.7, 0.7, 0.7], monitor="acc", patience=1)
    assert h.epoch == [0, 1, 2, 3]
    # explicit mode='max' on an arbitrary name
    _, h, _ = run_es([1, 2, 3, 4, 5], monitor="score", mode="max", patience=0)
    assert h.epoch == [0, 1, 2, 3, 4, 5]  # the repeated 5 at epoch 5 is no improvement
    _, h, _ = run_es([1, 2, 3, 4, 5], monitor="score", mode="min", patience=0)
    assert h.epoch == [0, 1]


def test_early_stopping_accepts_acc_accuracy_aliases():
    model = FakeModel()
    es = EarlyStopping(monitor="acc", patience=0)
    h = History()
    drive(model, [es, h], 5, series("accuracy", [0.5, 0.4, 0.3]))
    assert h.epoch == [0, 1]
    es = EarlyStopping(monitor="val_accuracy", patience=0)
    h = History()
    drive(model, [es, h], 5, series("val_acc", [0.5, 0.4, 0.3]))
    assert h.epoch == [0, 1]


def test_early_stopping_warns_about_a_missing_monitor():
    h = History()
    with pytest.warns(UserWarning, match=r"`val_los`.*Available metrics are: .*val_loss"):
        drive(FakeModel(), [EarlyStopping(monitor="val_los"), h], 2,
              series("val_loss", [1.0, 2.0]))
    assert h.epoch == [0, 1]


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
    # mode auto maximises accuracy; initial_value_threshold must be beaten
    model = FakeModel()
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
    assert not model.saved


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
    assert list(rows[0]) == ["epoch", "learning_rate", "loss", "val_loss"]
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
    assert open(path2).readline().strip() == "epoch;learning_rate;loss"


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

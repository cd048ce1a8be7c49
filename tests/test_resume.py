"""A training process killed with SIGKILL (mid-epoch, and in the middle of writing a
checkpoint) resumes from BackupAndRestore and ends with exactly the weights of an
uninterrupted run; no checkpoint file is ever left half-written."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import jaxgraph
    from jaxgraph import Input, Model, callbacks, layers

    mode, backup, out, ckpt = sys.argv[1:5]
    jaxgraph.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("f4")
    y = rng.integers(0, 3, 64)
    i = Input(shape=(8,))
    h = layers.Dropout(0.2)(layers.Dense(16, activation="relu")(i))
    model = Model(i, layers.Dense(3, activation="softmax")(h))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")

    if mode == "kill_in_write":
        # Die while the model checkpoint of epoch 2 is being written (after some bytes).
        import jaxgraph.saving.model_io as model_io
        real = model_io.atomic_write

        def dying_write(path, *a, **k):
            ctx = real(path, *a, **k)

            class Dying:
                def __enter__(self):
                    self.f = ctx.__enter__()
                    return self.f

                def __exit__(self, *exc):
                    if "epoch03" in str(path):
                        self.f.write(b"partial")
                        self.f.flush()
                        os.kill(os.getpid(), signal.SIGKILL)
                    return ctx.__exit__(*exc)

            return Dying()

        model_io.atomic_write = dying_write

    class Killer(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if mode == "kill_mid_epoch" and self.model._trainer.epoch == 2 and batch == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    model.fit(x, y, epochs=4, batch_size=16, verbose=0,
              callbacks=[callbacks.BackupAndRestore(backup),
                         callbacks.ModelCheckpoint(os.path.join(ckpt, "m.epoch{epoch:02d}.h5")),
                         Killer()])
    np.savez(out, *model.get_weights())
    """
)


def _run(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-c", SCRIPT, *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=600)


def _weights(path):
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


@pytest.mark.parametrize("mode", ["kill_mid_epoch", "kill_in_write"])
def test_sigkill_then_resume_matches_uninterrupted(tmp_path, mode):
    ref = _run("clean", tmp_path / "b0", tmp_path / "ref.npz", tmp_path / "c0")
    assert ref.returncode == 0, ref.stderr[-3000:]
    killed = _run(mode, tmp_path / "b1", tmp_path / "x.npz", tmp_path / "c1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "x.npz").exists()
    # No half-written checkpoint: every checkpoint present is a complete, loadable model
    # (a killed write can only leave its hidden temporary file behind).
    from jaxgraph.models import load_model

    names = [n for n in os.listdir(tmp_path / "c1") if not n.startswith(".")]
    assert names and all(n.startswith("m.epoch") and n.endswith(".h5") for n in names), names
    if mode == "kill_in_write":
        assert "m.epoch03.h5" not in names
    for name in names:
        load_model(tmp_path / "c1" / name)
    resumed = _run("resume", tmp_path / "b1", tmp_path / "resumed.npz", tmp_path / "c1")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for a, b in zip(_weights(tmp_path / "ref.npz"), _weights(tmp_path / "resumed.npz")):
        np.testing.assert_array_equal(a, b)

"""Column (a): jaxgraph `fit`, built from the very same Keras builder code.

Each workload's `keras_model()` builder is executed with the name `keras` bound to
jaxgraph (`keras.Input`, `keras.layers.*`, `keras.Model`), which is the claim the
library makes: Keras functional code runs after changing only the imports.
"""

from __future__ import annotations

import contextlib
import sys
import time
import types

import jaxgraph


@contextlib.contextmanager
def keras_is_jaxgraph():
    """Temporarily make `import keras` / `from keras import layers` yield jaxgraph."""
    shim = types.ModuleType("keras")
    shim.Input, shim.Model, shim.Sequential = jaxgraph.Input, jaxgraph.Model, jaxgraph.Sequential
    shim.layers = jaxgraph.layers
    saved = {k: sys.modules.get(k) for k in ("keras", "keras.layers")}
    sys.modules["keras"], sys.modules["keras.layers"] = shim, jaxgraph.layers
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def build(w):
    jaxgraph.mixed_precision.set_global_policy(w.policy)
    try:
        with keras_is_jaxgraph():
            return w.keras_model()
    finally:
        jaxgraph.mixed_precision.set_global_policy("float32")


def jaxgraph_fit(w, x, y, epochs: int, steps_per_execution="auto") -> dict:
    """(a) jaxgraph Model.compile + fit, verbose=0, default steps_per_execution='auto'."""
    jaxgraph.utils.set_random_seed(0)
    model = build(w)
    model.compile(optimizer=w.optimizer, loss=w.loss, loss_weights=w.loss_weights,
                  steps_per_execution=steps_per_execution)
    ends = []

    class EpochEnd(jaxgraph.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            float(logs["loss"])  # the epoch's one host sync, as in the other columns
            ends.append(time.perf_counter())

    t = time.perf_counter()
    hist = model.fit(x, y, batch_size=w.batch_size, epochs=epochs, verbose=0, shuffle=True,
                     callbacks=[EpochEnd()])
    starts = [t, *ends[:-1]]
    return {"epoch_s": [b - a for a, b in zip(starts, ends)],
            "final_loss": hist.history["loss"][-1], "params": model.count_params()}


def jaxgraph_fit_per_step(w, x, y, epochs: int) -> dict:
    """jaxgraph fit with steps_per_execution=1: checks what 'auto' chose against the other."""
    return jaxgraph_fit(w, x, y, epochs, steps_per_execution=1)

"""Saving and loading: model files, Keras-compatible weights files, training checkpoints.

- `save_model` / `load_model`: one file (a zip) with architecture, weights, compile
  settings and optimizer state; `load_model` also reads Keras 3 `.keras` archives.
- `save_weights` / `load_weights`: HDF5 in Keras 3's `.weights.h5` layout, so files
  move between Keras and jaxgraph for the same architecture.
- `model_from_json`: a model from `model.to_json()` (jaxgraph's or Keras 3's).
- `serialize_keras_object` / `deserialize_keras_object`: layers and models held by a
  subclass, in its get_config / from_config, as in Keras.
- `load_keras_weights`: Keras files into a jaxgraph model, matching layers by name.
- `save_checkpoint` / `restore_checkpoint`: a training-state pytree through
  orbax-checkpoint (atomic per step, keeps the last few), for `BackupAndRestore`
  and the CLI.
"""

from __future__ import annotations

import os

import numpy as np

from ..layers.serialization import deserialize_object as deserialize_keras_object
from ..layers.serialization import register_function
from ..layers.serialization import serialize_object as serialize_keras_object
from .atomic import atomic_write, write_bytes_atomic
from .keras_interop import load_keras_weights
from .model_io import load_model, model_from_json, register_serializable, save_model
from .weights_io import load_weights, save_weights

__all__ = [
    "atomic_write",
    "deserialize_keras_object",
    "latest_checkpoint_step",
    "load_keras_weights",
    "load_model",
    "load_weights",
    "model_from_json",
    "register_function",
    "register_serializable",
    "restore_checkpoint",
    "save_checkpoint",
    "save_model",
    "save_weights",
    "serialize_keras_object",
    "write_bytes_atomic",
]


# ---------------------------------------------------------------------------- checkpoints


def _checkpointable(tree):
    """Orbax stores arrays; NumPy and Python scalars become 0-d arrays."""
    import jax

    def leaf(x):
        if isinstance(x, (bool, int, float, np.generic)):
            return np.asarray(x)
        return x

    return jax.tree_util.tree_map(leaf, tree)


def _manager(directory: str, max_to_keep: int | None, writing: bool):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        create=writing,
        # A save that died before its final rename leaves a temporary directory; the
        # manager never lists it as a step, and a writing manager removes it (the next
        # save waits for that cleanup).
        cleanup_tmp_directories=writing,
        enable_async_checkpointing=False,
    )
    return ocp.CheckpointManager(directory, options=options)


def save_checkpoint(state_pytree, directory, step: int, max_to_keep: int | None = 3) -> str:
    """Save `state_pytree` as checkpoint `step` under `directory`; returns the step's path.

    The write is atomic (orbax writes a temporary directory and renames it when
    complete) and only the newest `max_to_keep` steps are kept (None keeps all).
    Saving a step that already exists replaces it.
    """
    import orbax.checkpoint as ocp

    directory = os.path.abspath(os.fspath(directory))
    step = int(step)
    manager = _manager(directory, max_to_keep, writing=True)
    try:
        if step in manager.all_steps():
            manager.delete(step)
        manager.save(step, args=ocp.args.StandardSave(_checkpointable(state_pytree)))
        manager.wait_until_finished()
    finally:
        manager.close()
    return os.path.join(directory, str(step))


def latest_checkpoint_step(directory) -> int | None:
    """The newest complete checkpoint step in `directory`, or None."""
    directory = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(directory):
        return None
    manager = _manager(directory, None, writing=False)
    try:
        return manager.latest_step()
    finally:
        manager.close()


def restore_checkpoint(directory, target=None, step: int | None = None):
    """`(step, state)` of the newest complete checkpoint (or `step`); None if there is none.

    `target`, a pytree shaped like the saved state, fixes the structure and dtypes
    of the result; without it the state comes back as saved. Interrupted writes
    are never restored.
    """
    import orbax.checkpoint as ocp

    directory = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(directory):
        return None
    manager = _manager(directory, None, writing=False)
    try:
        steps = manager.all_steps()
        if step is None:
            step = manager.latest_step()
            if step is None:
                return None
        elif int(step) not in steps:
            raise FileNotFoundError(
                f"No complete checkpoint for step {step} in {directory!r}; "
                f"available: {sorted(steps)}"
            )
        item = None if target is None else _checkpointable(target)
        state = manager.restore(int(step), args=ocp.args.StandardRestore(item))
    finally:
        manager.close()
    return int(step), state

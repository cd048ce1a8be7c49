"""BackupAndRestore: resume an interrupted `fit` where it stopped.

Each backup is an orbax checkpoint (written to a temporary directory and renamed,
so a crash mid-write leaves the previous backup intact) holding the whole
training state (parameters, model state, optimizer state with its learning rate,
step counter, RNG), the number of finished epochs, and the state of every
callback that has one (EarlyStopping's patience counter and best value,
ReduceLROnPlateau's cooldown, ModelCheckpoint's best value, ...).
"""

from __future__ import annotations

import os
import shutil

import jax
import numpy as np

from .base import Callback

_ARRAY = "__array__"


def _is_key(leaf) -> bool:
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _split_state(obj, arrays: dict):
    """JSON-able copy of a callback state; arrays move to `arrays` under a placeholder."""
    if isinstance(obj, dict):
        return {str(k): _split_state(v, arrays) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_split_state(v, arrays) for v in obj]
    if isinstance(obj, (np.ndarray, jax.Array)):
        key = f"{len(arrays):05d}"
        arrays[key] = np.asarray(obj)
        return {_ARRAY: key}
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _join_state(obj, arrays: dict):
    if isinstance(obj, dict):
        if set(obj) == {_ARRAY}:
            return np.asarray(arrays[obj[_ARRAY]])
        return {k: _join_state(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_state(v, arrays) for v in obj]
    return obj


def _has_state(callback) -> bool:
    return type(callback).get_state is not Callback.get_state


class BackupAndRestore(Callback):
    """Backs up the training state to `backup_dir` after every epoch (or every
    `save_freq` batches) and, when `fit` starts again with a backup there, restores
    it and continues from the first unfinished epoch.

    A batch-level backup resumes at the start of the epoch it was taken in, with the
    weights of that batch (as in Keras). `double_checkpoint=True` keeps the previous
    backup as well. With `delete_checkpoint` (the default), the backup is removed
    once training completes (all epochs, or stopped by a callback); an exception
    leaves it in place for the next run.
    """

    _lazy_logs = True  # reads logs through the lazy view (base.Logs)

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=False,
                 delete_checkpoint=True):
        super().__init__()
        if not backup_dir:
            raise ValueError("BackupAndRestore: backup_dir must be a non-empty path")
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq > 0):
            raise ValueError(f"BackupAndRestore: save_freq must be 'epoch' or a positive int, "
                             f"got {save_freq!r}")
        self.backup_dir = os.path.abspath(os.fspath(backup_dir))
        self.save_freq = save_freq
        self.double_checkpoint = bool(double_checkpoint)
        self.delete_checkpoint = bool(delete_checkpoint)
        self._manager = None
        self._pending_states = None
        self._current_epoch = 0
        self._epochs_done = 0
        self._batches_since_save = 0
        self._unsaved = False
        self.restored_epoch = None

    def wants_batches(self) -> bool:
        """Batch hooks are needed only for `save_freq=<int>`."""
        return self.save_freq != "epoch"

    # ------------------------------------------------------------------ orbax

    def _open(self):
        import orbax.checkpoint as ocp

        if self._manager is None:
            # cleanup_tmp_directories: a save killed before its final rename left a
            # temporary directory, never listed as a step; remove it on open.
            options = ocp.CheckpointManagerOptions(
                max_to_keep=2 if self.double_checkpoint else 1, create=True,
                cleanup_tmp_directories=True, enable_async_checkpointing=False)
            self._manager = ocp.CheckpointManager(self.backup_dir, options=options)
        return self._manager

    def _close(self) -> None:
        if self._manager is not None:
            self._manager.close()
            self._manager = None

    def _callbacks(self) -> dict:
        """The other callbacks of this fit that carry state, by class name and rank."""
        siblings = getattr(self.model, "_callback_list", None) or ()
        found, counts = {}, {}
        for cb in siblings:
            if cb is self or not _has_state(cb):
                continue
            name = type(cb).__name__
            found[f"{name}_{counts.get(name, 0)}"] = cb
            counts[name] = counts.get(name, 0) + 1
        return found

    def _save(self, epoch: int) -> None:
        import orbax.checkpoint as ocp

        self._unsaved = False
        manager = self._open()
        leaves, _ = jax.tree_util.tree_flatten(self.model._trainer.get_state())
        keys = [i for i, leaf in enumerate(leaves) if _is_key(leaf)]
        leaves = [jax.random.key_data(leaf) if i in keys else leaf
                  for i, leaf in enumerate(leaves)]
        flat = {f"{i:05d}": np.asarray(jax.device_get(leaf)) for i, leaf in enumerate(leaves)}
        arrays: dict = {}
        states = {name: _split_state(cb.get_state(), arrays)
                  for name, cb in self._callbacks().items()}
        meta = {
            "epoch": int(epoch),
            # Where the data started (fit's EpochPlan base): with steps_per_epoch, the
            # resumed run goes on from the same batch of the same pass.
            "data_epoch0": int(getattr(self.model._trainer, "data_epoch0", 0) or 0),
            "key_leaves": keys,
            "shapes": [list(v.shape) for v in flat.values()],
            "callbacks": states,
            "has_callback_arrays": bool(arrays),
        }
        items = {"state": ocp.args.StandardSave(flat), "meta": ocp.args.JsonSave(meta)}
        if arrays:
            items["callback_arrays"] = ocp.args.StandardSave(arrays)
        step = (manager.latest_step() or 0) + 1
        manager.save(step, args=ocp.args.Composite(**items), force=True)
        manager.wait_until_finished()

    def _restore(self) -> bool:
        import orbax.checkpoint as ocp

        if not os.path.isdir(self.backup_dir):
            return False
        manager = self._open()
        step = manager.latest_step()
        if step is None:
            return False
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        trainer = self.model._trainer
        template, treedef = jax.tree_util.tree_flatten(trainer.get_state())
        key_leaves = set(meta["key_leaves"])
        expected = [list(np.shape(jax.random.key_data(x) if _is_key(x) else x))
                    for x in template]
        if expected != meta["shapes"]:
            raise ValueError(
                f"BackupAndRestore: the backup in {self.backup_dir!r} was made by a different "
                f"model or optimizer (its {len(meta['shapes'])} state arrays do not match the "
                f"{len(expected)} of this training state). Delete the directory to start over."
            )
        items = {"state": ocp.args.StandardRestore()}
        if meta.get("has_callback_arrays"):
            items["callback_arrays"] = ocp.args.StandardRestore()
        restored = manager.restore(step, args=ocp.args.Composite(**items))
        flat = restored["state"]
        leaves = []
        for i, like in enumerate(template):
            value = np.asarray(flat[f"{i:05d}"])
            if i in key_leaves:
                value = jax.random.wrap_key_data(value, impl=jax.random.key_impl(like))
            elif isinstance(like, jax.Array):
                value = jax.device_put(value.astype(like.dtype), like.sharding)
            leaves.append(value)
        trainer.set_state(jax.tree_util.tree_unflatten(treedef, leaves))
        arrays = restored["callback_arrays"] if meta.get("has_callback_arrays") else {}
        self._pending_states = {name: _join_state(state, arrays)
                                for name, state in meta["callbacks"].items()}
        self.restored_epoch = int(meta["epoch"])
        self.model._initial_epoch_override = self.restored_epoch
        self.model._data_epoch0_override = int(meta.get("data_epoch0", 0))
        self._current_epoch = self._epochs_done = self.restored_epoch
        return True

    # ------------------------------------------------------------------ hooks

    def on_train_begin(self, logs=None):
        self._pending_states = None
        self.restored_epoch = None
        self._batches_since_save = 0
        self._unsaved = False
        self._current_epoch = self._epochs_done = 0
        self._restore()

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch
        if self._pending_states is not None:
            # Other callbacks reset themselves in on_train_begin, which may run after
            # ours: their saved state goes back in just before the first epoch instead.
            callbacks = self._callbacks()
            for name, state in self._pending_states.items():
                if name in callbacks:
                    callbacks[name].set_state(state)
            self._pending_states = None
        elif self._unsaved:
            self._save(self._epochs_done)

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches_since_save += 1
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save(self._current_epoch)

    def on_epoch_end(self, epoch, logs=None):
        # Written now, as Keras does, so an exception anywhere before the next epoch
        # loses nothing. Callbacks with state listed after this one update it after this
        # save: the backup is written again once they have (next epoch, or the end).
        self._epochs_done = epoch + 1
        if self.save_freq == "epoch":
            self._save(self._epochs_done)
            self._unsaved = self._stateful_followers()

    def _stateful_followers(self) -> bool:
        siblings = list(getattr(self.model, "_callback_list", None) or ())
        if self not in siblings:
            return False
        return any(_has_state(cb) for cb in siblings[siblings.index(self) + 1:])

    def on_train_end(self, logs=None):
        epochs = self.params.get("epochs") if self.params else None
        finished = bool(getattr(self.model, "stop_training", False)) or (
            epochs is not None and self._epochs_done >= epochs)
        delete = self.delete_checkpoint and finished
        if self._unsaved and not delete:
            self._save(self._epochs_done)
        self._close()
        if delete and os.path.isdir(self.backup_dir):
            shutil.rmtree(self.backup_dir)

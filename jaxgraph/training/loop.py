"""The epoch loop of fit, and evaluate / predict, around the compiled programs."""

from __future__ import annotations

import math
import warnings

import jax
import numpy as np

from .. import random as jg_random
from ..callbacks.base import CallbackList, Logs
from . import custom_step
from . import data as data_mod

_DEFAULT_BATCH = 32


def _wants(cbl: CallbackList, hooks) -> list:
    """Callbacks that really listen to `hooks` (a quiet progress bar does not)."""
    out = []
    for hook in hooks:
        for c in cbl.live[hook]:
            quiet = hasattr(c, "wants_batches") and not c.wants_batches()
            if not quiet and c not in out:
                out.append(c)
    return out


def _silence_quiet_batch_hooks(cbl: CallbackList, in_fit: bool = False) -> None:
    from ..callbacks import ProgbarLogger

    for hook in ("on_train_batch_begin", "on_train_batch_end", "on_test_batch_begin",
                 "on_test_batch_end", "on_predict_batch_begin", "on_predict_batch_end"):
        cbl.live[hook] = [c for c in cbl.live[hook]
                          if not (hasattr(c, "wants_batches") and not c.wants_batches())
                          # fit's bar ignores validation batches (Keras's does too)
                          and not (in_fit and "test" in hook and isinstance(c, ProgbarLogger))]


def _progbar_only(listeners) -> bool:
    """Whether only progress bars listen: they take one call per dispatched chunk."""
    from ..callbacks import ProgbarLogger

    return bool(listeners) and all(isinstance(c, ProgbarLogger) for c in listeners)


def _resolve_verbose(verbose):
    return 1 if verbose == "auto" else int(verbose)


def _make_callbacks(model, trainer, callbacks, verbose, params, validation_data, add_history):
    from ..callbacks import History, ProgbarLogger

    cbs = list(callbacks or [])
    history = None
    if add_history:
        history = next((c for c in cbs if isinstance(c, History)), None)
        if history is None:
            history = History()
            cbs.append(history)
    if verbose and not any(isinstance(c, ProgbarLogger) for c in cbs):
        cbs.append(ProgbarLogger())
    for c in cbs:
        c.validation_data = validation_data
    before = trainer.push_to_model if trainer is not None else None
    after = trainer.after_callbacks if trainer is not None else None
    cbl = CallbackList(cbs, model=model, params=params, before_hook=before, after_hook=after)
    model._callback_list = cbl  # lets BackupAndRestore save its siblings' state
    return cbl, history


def _val_arrays(model, trainer, validation_data):
    if isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3):
        xv, yv = validation_data[0], validation_data[1]
        swv = validation_data[2] if len(validation_data) == 3 else None
        try:
            return model._prepare(trainer, xv, yv, swv, None)
        except ValueError as e:
            raise ValueError(f"validation_data: {e}") from e
    raise ValueError(
        "validation_data must be a tuple (x_val, y_val) or (x_val, y_val, sample_weight), or "
        "an iterable of batches"
    )


# ---------------------------------------------------------------------------- fit


class _Split:
    """The held-out part of `validation_split` (already flattened and checked)."""

    def __init__(self, xv, yv, swv):
        self.arrays = (xv, yv, swv)


def run_fit(model, trainer, *, x, y, batch_size, epochs, verbose, callbacks, validation_split,
            validation_data, shuffle, class_weight, sample_weight, initial_epoch,
            steps_per_epoch, validation_steps, validation_batch_size, validation_freq):
    verbose = _resolve_verbose(verbose)
    stream = data_mod.is_batch_stream(x)
    val_stream = data_mod.is_batch_stream(validation_data)
    user_batch_size = batch_size
    if stream:
        if y is not None:
            raise ValueError("When x is a generator of batches, y must be None (the batches "
                             "carry their targets)")
        if validation_split:
            raise ValueError("validation_split is not supported with a generator; pass "
                             "validation_data")
        steps = steps_per_epoch
        if steps is None and hasattr(x, "__len__"):
            steps = len(x)  # Keras: a sized stream (PyDataset, flow(...)) defines the epoch
        train_arrays = None
    else:
        xs, ys, sws, n = model._prepare(trainer, x, y, sample_weight, class_weight)
        if validation_data is None and validation_split:
            (xs, xv), (ys, yv), (sws, swv) = (
                data_mod.split_validation(xs, validation_split),
                data_mod.split_validation(ys, validation_split),
                data_mod.split_validation(sws, validation_split))
            validation_data = _Split(xv, yv, swv)
            n = xs[0].shape[0]
        if not batch_size:  # Keras: steps_per_epoch alone sizes the batches
            batch_size = math.ceil(n / int(steps_per_epoch)) if steps_per_epoch else \
                _DEFAULT_BATCH
        # Keras: with steps_per_epoch below a pass, epochs go on through the data (see
        # EpochPlan); above it, an epoch still ends with the pass.
        steps = math.ceil(n / batch_size)
        if steps_per_epoch is not None:
            if int(steps_per_epoch) > steps:
                _ran_out_warning(f"steps_per_epoch={int(steps_per_epoch)} is more than the "
                                 f"{steps} batches of {batch_size} in the {n} samples: each "
                                 "epoch ends with the data")
            steps = min(steps, int(steps_per_epoch))
        train_arrays = (xs, ys, sws, n)

    val_arrays = None
    if validation_data is not None and not val_stream:
        if isinstance(validation_data, _Split):
            xv, yv, swv = validation_data.arrays
            val_arrays = (xv, yv, swv, xv[0].shape[0])
        else:
            val_arrays = _val_arrays(model, trainer, validation_data)
    user_val = None
    if val_arrays is not None:
        xv, yv, swv, _ = val_arrays
        user_val = (_single_or_list(xv), _single_or_list(yv),
                    swv[0] if swv else None)
    elif val_stream:
        user_val = validation_data

    # Keras: the epoch's nominal length, steps_per_epoch where given.
    params = {"epochs": epochs, "verbose": verbose,
              "steps": steps if steps_per_epoch is None else int(steps_per_epoch)}
    cbl, history = _make_callbacks(model, trainer, callbacks, verbose, params, user_val, True)
    _silence_quiet_batch_hooks(cbl, in_fit=True)
    begin_listeners = _wants(cbl, ["on_train_batch_begin"])
    end_listeners = _wants(cbl, ["on_train_batch_end"])
    listeners = begin_listeners + end_listeners
    progbar_only = _progbar_only(listeners)

    trainer.ensure_state()
    if getattr(trainer, "data_seed", None) is None:
        trainer.data_seed = jg_random.next_seed()
    model.stop_training = False
    model._initial_epoch_override = model._data_epoch0_override = None
    cbl.call("on_train_begin", Logs())
    start = model._initial_epoch_override
    start = initial_epoch if start is None else int(start)
    # The epoch the data started at (EpochPlan's base): this fit's first epoch, as in
    # Keras, or that of the run BackupAndRestore resumes, which goes on where it was.
    base = model._data_epoch0_override
    trainer.data_epoch0 = start if base is None else int(base)
    model._initial_epoch_override = model._data_epoch0_override = None

    staged = val_staged = None
    if train_arrays is not None:
        xs, ys, sws, n = train_arrays
        if trainer.distribution is not None:
            trainer.distribution.check_batch(batch_size)
        staged = trainer.stage_train(xs, ys, sws)
        k = trainer.choose_k(steps, bool(listeners), progbar_only, _step_bytes(staged,
                                                                               batch_size))
        plan = trainer.epoch_plan(n, batch_size, steps, k, bool(shuffle))
        train = trainer.train_fn(k, masked=plan.masked)
        if trainer.custom:
            trainer.steps.prepare_train(trainer.ts, staged, batch_size, plan.valid is not None)
    if val_arrays is not None:
        val_staged = trainer.stage(*val_arrays[:3])
    # Keras: validation_batch_size, else fit's batch_size, else validation_steps sizes them.
    val_batch = validation_batch_size or user_batch_size or (
        math.ceil(val_staged.n / int(validation_steps))
        if val_staged is not None and validation_steps else _DEFAULT_BATCH)
    if val_staged is not None and start < epochs:
        # The evaluation program compiles on a worker thread while this thread compiles
        # the train program, which is needed first, at its first call: the two overlap.
        _start_evaluate_staged(trainer, cbl, val_staged, val_batch,
                               trainer.steps.variables_of(trainer.ts), validation_steps)

    logs = Logs()
    feed = None if staged is None else _ChunkFeed(trainer, staged, plan, trainer.data_epoch0)
    for epoch in range(start, epochs):
        trainer.epoch = epoch
        cbl.call("on_epoch_begin", epoch, Logs())
        if staged is not None:
            # A pass's last epoch may be shorter (Keras ends it with the data).
            valid_d, active_d, chunks = plan.masks(epoch, trainer.data_epoch0)
            epoch_steps = plan.epoch_steps(epoch, trainer.data_epoch0)
            for c in range(chunks):
                first = c * k
                if begin_listeners:
                    cbl.call("on_train_batch_begin", first, Logs())
                data, idx_d = feed.get(epoch, c)
                trainer.ts, running = train(trainer.ts, data, idx_d, valid_d, active_d, c)
                del data
                # The chunk is dispatched, not finished: preparing the next one now (its
                # rows, deterministic in seed and epoch) hides that work behind it.
                if c + 1 < chunks:
                    feed.prepare(epoch, c + 1)
                elif epoch + 1 < epochs:
                    feed.prepare(epoch + 1, 0)
                if end_listeners:
                    cbl.call("on_train_batch_end", min(first + k, epoch_steps) - 1,
                             Logs(running))
                if model.stop_training:
                    break
            epoch_logs = dict(running)
        else:
            trainer.ts["metrics"] = trainer._init_metrics_fn()
            last = _fit_stream_epoch(model, trainer, cbl, x, steps, begin_listeners,
                                     end_listeners)
            epoch_logs = dict(trainer._results_fn(trainer.ts["metrics"])
                              if last is None else last)
        if (val_staged is not None or val_stream) and (epoch + 1) % validation_freq == 0:
            variables = trainer.steps.variables_of(trainer.ts)
            if val_staged is not None:
                val_logs = _evaluate_staged(model, trainer, cbl, val_staged, val_batch, variables,
                                            validation_steps)
            else:
                val_logs = _evaluate_stream(model, trainer, cbl, validation_data,
                                            validation_steps, variables)
            epoch_logs.update({f"val_{k_}": v for k_, v in val_logs.items()})
        # Keras logs no learning rate here: ReduceLROnPlateau, LearningRateScheduler and
        # TensorBoard add it themselves, so History's keys are the compiled metrics'.
        logs = Logs(epoch_logs)
        cbl.call("on_epoch_end", epoch, logs)
        if model.stop_training:
            break
    cbl.call("on_train_end", logs)
    trainer.push_to_model()
    if trainer.custom:
        trainer.keep_metric_state(trainer.ts["metrics"])
    model.history = history
    return history


def _step_bytes(staged, batch_size) -> int | None:
    """Bytes of one step's rows when they are gathered on the host, else None."""
    if not isinstance(staged, data_mod.HostStaged):
        return None
    arrays = [a for group in (staged.xs, staged.ys, staged.sws) for a in group if a is not None]
    return batch_size * sum(a[:1].nbytes for a in arrays)


class _ChunkFeed:
    """Each dispatch's data and row indices, one chunk prepared ahead of its use.

    Device-staged data travels whole once; a dispatch gets the epoch's indices. Host-staged
    data (the CPU backend) sends each chunk's rows, gathered in step order, with no indices.
    """

    def __init__(self, trainer, staged, plan, base=0):
        self.trainer, self.staged, self.plan, self.base = trainer, staged, plan, base
        self.on_host = isinstance(staged, data_mod.HostStaged)
        self._order = {}  # epoch -> its host row order (host-staged data)
        self._idx = {}  # epoch -> its staged indices (device-staged data)
        self._ready = None  # ((epoch, chunk), data) prepared ahead

    def prepare(self, epoch: int, c: int) -> None:
        if not self.on_host:
            if c == 0 and epoch not in self._idx:
                self._idx = {epoch: self.plan.indices(self.trainer.data_seed, epoch,
                                                      self.base)}
            return
        if epoch not in self._order:
            self._order = {epoch: self.plan.host_indices(self.trainer.data_seed, epoch,
                                                         self.base)}
        self._ready = ((epoch, c), self.staged.rows(self._order[epoch][c]))

    def get(self, epoch: int, c: int):
        if not self.on_host:
            self.prepare(epoch, 0)
            return (self.staged.xs, self.staged.ys, self.staged.sws), self._idx[epoch]
        if self._ready is None or self._ready[0] != (epoch, c):
            self.prepare(epoch, c)
        data, self._ready = self._ready[1], None
        return data, None


def _ran_out_warning(what: str) -> None:
    warnings.warn(
        f"Your input ran out of data: {what}. Make sure that your data can give at least "
        "`steps_per_epoch * epochs` batches (a generator that loops, or a smaller "
        "steps_per_epoch).", UserWarning, stacklevel=4)


def _fit_stream_epoch(model, trainer, cbl, stream, steps, begin_listeners, end_listeners):
    """One epoch over a stream of batches; returns a custom train step's last logs."""
    fn = trainer.stream_train_fn()
    last = None
    it = trainer.__dict__.get("_stream_iter")
    if it is None or it[0] is not stream:
        it = (stream, iter(stream))
        trainer._stream_iter = it
    size = trainer.__dict__.get("_stream_batch")
    step = 0
    restarted = False
    while steps is None or step < steps:
        try:
            batch = next(it[1])
        except StopIteration:
            trainer._stream_iter = None
            fresh = None if steps is None or restarted else iter(stream)
            if fresh is None or fresh is it[1]:  # the epoch (or a one-shot generator) ends
                if step == 0:
                    raise ValueError(
                        "The training data produced no batches this epoch (an exhausted "
                        "generator?). Give a re-iterable dataset, or a generator that loops "
                        "with steps_per_epoch."
                    ) from None
                if steps is not None:
                    _ran_out_warning(f"the generator stopped after {step} of the epoch's "
                                     f"{steps} steps")
                break
            it = (stream, fresh)  # a re-iterable dataset: start its next pass
            trainer._stream_iter = it
            restarted = True
            continue
        restarted = False
        bx, by, bsw = data_mod.unpack_batch(batch)
        xs, ys, sws, n = model._prepare(trainer, bx, by, bsw, None)
        if size is None:
            size = trainer._stream_batch = n
        arrays, valid = data_mod.pad_batch(list(xs) + list(ys) + list(sws), size)
        nx, ny = len(xs), len(ys)
        xs, ys, sws = arrays[:nx], arrays[nx:nx + ny], arrays[nx + ny:]
        if begin_listeners:
            cbl.call("on_train_batch_begin", step, Logs())
        if trainer.custom:
            trainer.ts, last = fn(trainer.ts, xs, ys, sws, valid)
        else:
            trainer.ts = fn(trainer.ts, xs, ys, sws, valid)
        if end_listeners:
            cbl.call("on_train_batch_end", step, Logs(
                trainer._results_fn(trainer.ts["metrics"]) if last is None else last))
        step += 1
        if model.stop_training:
            break
    return last


def _single_or_list(arrays):
    if len(arrays) == 1:
        return arrays[0]
    return list(arrays)


# ---------------------------------------------------------------------------- evaluate


def _eval_batch_size(trainer, batch_size) -> int:
    if trainer.distribution is not None:  # pad evaluation batches to a multiple of devices
        r = trainer.distribution.num_replicas
        batch_size = math.ceil(batch_size / r) * r
    return batch_size


def _eval_batches(trainer, n, batch_size) -> int:
    """The number of batches evaluate runs over n samples (`params['steps']`)."""
    return math.ceil(n / _eval_batch_size(trainer, batch_size))


def _stream_batches(stream, steps):
    """The number of batches of a stream, where known: `steps`, else its length."""
    if steps is not None:
        return int(steps)
    try:
        return len(stream)
    except TypeError:
        return None


def _eval_plan(trainer, cbl, staged, batch_size, steps=None):
    """`steps` (Keras's validation_steps / evaluate's steps): the first `steps` batches,
    the same ones every time. A progress bar alone gets chunks of several batches, as
    in fit; other batch listeners one batch per dispatch; nobody, one dispatch."""
    listeners = _wants(cbl, ["on_test_batch_begin", "on_test_batch_end"])
    batch_size = _eval_batch_size(trainer, batch_size)
    steps = min(math.ceil(staged.n / batch_size), int(steps or staged.n))
    if _progbar_only(listeners):
        k = trainer.choose_k(steps, True, True)
    elif listeners:
        k = 1
    else:
        k = 1 if trainer.choose_k(steps, False, False) == 1 else steps
    return trainer.epoch_plan(staged.n, batch_size, steps, k, False), listeners


def _start_evaluate_staged(trainer, cbl, staged, batch_size, variables, steps=None):
    """Begin compiling the evaluation program of `_evaluate_staged` ahead of its use."""
    plan, _ = _eval_plan(trainer, cbl, staged, batch_size, steps)
    trainer.eval_fn().start(trainer.init_eval_metrics(fresh_key=False), variables["params"],
                            variables["state"], (staged.xs, staged.ys, staged.sws),
                            plan.indices(0, 0), plan.valid, 0)


def _evaluate_staged(model, trainer, cbl, staged, batch_size, variables, steps=None):
    plan, listeners = _eval_plan(trainer, cbl, staged, batch_size, steps)
    idx_d, valid_d, chunks = plan.indices(0, 0), plan.valid, plan.chunks
    fn = trainer.eval_fn()
    ms = trainer.init_eval_metrics()
    data = (staged.xs, staged.ys, staged.sws)
    cbl.call("on_test_begin", Logs())
    for c in range(chunks):
        first = c * plan.k
        if listeners:
            cbl.call("on_test_batch_begin", first, Logs())
        ms, results = fn(ms, variables["params"], variables["state"], data, idx_d, valid_d, c)
        if listeners:  # a chunk's hook gets its last batch, as in fit
            cbl.call("on_test_batch_end", min(first + plan.k, plan.steps) - 1, Logs(results))
    if trainer.custom:
        trainer.keep_metric_state(ms)
    cbl.call("on_test_end", Logs(results))
    return dict(results)


def _evaluate_stream(model, trainer, cbl, stream, steps, variables):
    fn = trainer.stream_eval_fn()
    ms = trainer.init_eval_metrics()
    last = None
    size = None
    listeners = _wants(cbl, ["on_test_batch_begin", "on_test_batch_end"])
    cbl.call("on_test_begin", Logs())
    for step, batch in enumerate(stream):
        if steps is not None and step >= steps:
            break
        bx, by, bsw = data_mod.unpack_batch(batch)
        xs, ys, sws, n = model._prepare(trainer, bx, by, bsw, None)
        size = size or n
        arrays, valid = data_mod.pad_batch(list(xs) + list(ys) + list(sws), size)
        nx, ny = len(xs), len(ys)
        if listeners:
            cbl.call("on_test_batch_begin", step, Logs())
        ms = fn(ms, variables["params"], variables["state"], arrays[:nx], arrays[nx:nx + ny],
                arrays[nx + ny:], valid)
        if trainer.custom:
            ms, last = ms
        if listeners:
            cbl.call("on_test_batch_end", step,
                     Logs(trainer._results_fn(ms) if last is None else last))
    if trainer.custom:
        if last is None:
            raise ValueError("The validation data produced no batches")
        trainer.keep_metric_state(ms)
        results = last
    else:
        results = trainer._results_fn(ms)
    cbl.call("on_test_end", Logs(results))
    return dict(results)


def run_evaluate(model, trainer, x, y, *, batch_size, verbose, sample_weight, steps, callbacks):
    verbose = _resolve_verbose(verbose)
    if trainer.ts is not None:
        trainer.pull_from_model()
        variables = trainer.steps.variables_of(trainer.ts)
    else:
        variables = model.variables
    stream = data_mod.is_batch_stream(x)
    if stream:
        batches = _stream_batches(x, steps)
    else:
        xs, ys, sws, n = model._prepare(trainer, x, y, sample_weight, None)
        staged = trainer.stage(xs, ys, sws)
        if not batch_size:  # Keras: steps alone sizes the batches
            batch_size = math.ceil(n / int(steps)) if steps else _DEFAULT_BATCH
        batches = _eval_batches(trainer, n, batch_size)
        if steps is not None:  # Keras: the first `steps` batches
            batches = min(batches, int(steps))
    params = {"epochs": 1, "steps": batches, "verbose": verbose}  # Keras: the batch count
    # At verbose 1 and 2 a ProgbarLogger prints Keras's lines (a live bar on a terminal).
    cbl, _ = _make_callbacks(model, trainer, callbacks, verbose, params, None, False)
    _silence_quiet_batch_hooks(cbl)
    if stream:
        results = _evaluate_stream(model, trainer, cbl, x, steps, variables)
    else:
        results = _evaluate_staged(model, trainer, cbl, staged, batch_size, variables, steps)
    return {k: float(v) for k, v in jax.device_get(results).items()}


# ---------------------------------------------------------------------------- predict


def _predict_program(model):
    cache = model.__dict__.get("_predict_program")
    if cache is None:
        from .step import Steps

        if "predict" in custom_step.overridden(model):
            steps = custom_step.CustomSteps(model, None, None, which={"predict"})
        else:
            steps = Steps(model, None, None)
        cache = (jax.jit(steps.predict_chunk, static_argnums=(4, 5)), steps)
        model._predict_program = cache
    return cache


def run_predict(model, x, *, batch_size, verbose, steps, callbacks):
    verbose = _resolve_verbose(verbose)
    x = model._maybe_build_from_data(x)
    trainer = model._trainer
    if trainer is not None and trainer.ts is not None:
        trainer.pull_from_model()
        variables = trainer.steps.variables_of(trainer.ts)
    else:
        variables = model.variables
    fn, _ = _predict_program(model)
    form = _OutputForm(model)
    stream = data_mod.is_batch_stream(x)
    if stream:
        batches = _stream_batches(x, steps)
    else:
        xs = data_mod.flatten_x(model, x)
        data_mod.sample_count([(f"x[{nm!r}]", a) for nm, a in zip(model.input_names, xs)])
        n = xs[0].shape[0]
        batches = math.ceil(n / max(1, min(batch_size or _DEFAULT_BATCH, n)))
    params = {"epochs": 1, "steps": batches, "verbose": verbose}  # Keras: the batch count
    cbl, _ = _make_callbacks(model, trainer, callbacks, verbose, params, None, False)
    _silence_quiet_batch_hooks(cbl)
    model.stop_predicting = False
    cbl.call("on_predict_begin", Logs())
    if stream:
        outs = []
        for i, batch in enumerate(x):
            if steps is not None and i >= steps:
                break
            bx, _, _ = data_mod.unpack_batch(batch)
            xs = data_mod.flatten_x(model, bx)
            outs.append(_predict_arrays(model, fn, variables, xs, xs[0].shape[0], cbl, i,
                                        form))
            if model.stop_predicting:
                break
        flat = [np.concatenate([o[j] for o in outs]) for j in range(len(outs[0]))]
    else:
        flat = _predict_arrays(model, fn, variables, xs, batch_size or _DEFAULT_BATCH, cbl,
                               form=form)
    cbl.call("on_predict_end", Logs())
    return form.pack(flat)


def _report_chunk(cbl, out, batch: int) -> None:
    """Tell the progress bar that batches up to `batch` are done, once they are (a wait,
    not a transfer: the outputs stay on the device)."""
    jax.block_until_ready(out)
    cbl.call("on_predict_batch_end", batch, Logs())


#: Batches per predict dispatch: a dispatch costs more than a small model's batch.
PREDICT_BATCHES_PER_DISPATCH = 16


def _flat_outputs(model, o) -> list:
    if isinstance(o, dict):
        return [o[name] for name in model.output_names]
    if isinstance(o, (list, tuple)):
        return list(o)
    return [o]


class _OutputForm:
    """How predict flattens a batch's outputs and rebuilds the whole: the model's outputs,
    or whatever structure a custom `predict_step` returns (rows first in every array)."""

    def __init__(self, model):
        self.model = model
        self.custom = "predict" in custom_step.overridden(model)
        self.treedef = None

    def flat(self, o) -> list:
        if not self.custom:
            return _flat_outputs(self.model, o)
        leaves, self.treedef = jax.tree_util.tree_flatten(o)
        return leaves

    def pack(self, flat):
        if not self.custom:
            return self.model._output_struct.pack(flat)
        return jax.tree_util.tree_unflatten(self.treedef, flat)


def _predict_arrays(model, fn, variables, xs, batch_size, cbl=None, first_batch=0,
                    form=None):
    """Predictions for `xs`, `batch_size` rows a batch. With callbacks listening to
    predict batches, one batch per dispatch between their hooks (batch indices from
    `first_batch`); otherwise several batches per dispatch and no Python per batch,
    but for a progress bar's call per dispatch."""
    from .trainer import auto_steps_per_execution

    form = form or _OutputForm(model)
    n = xs[0].shape[0]
    batch_size = max(1, min(batch_size, n))
    steps = math.ceil(n / batch_size)
    begin_listeners = [] if cbl is None else _wants(cbl, ["on_predict_batch_begin"])
    end_listeners = [] if cbl is None else _wants(cbl, ["on_predict_batch_end"])
    progress = _progbar_only(begin_listeners + end_listeners)
    begin, end = bool(begin_listeners) and not progress, bool(end_listeners) and not progress
    # Several batches per dispatch, as fit does, except where XLA:CPU's convolutions
    # lose their fast path inside a loop, or callbacks watch each batch; the last
    # dispatch may run padding batches. A progress bar gets about 20 updates, as fit's.
    k = 1 if begin or end or auto_steps_per_execution(model, steps) == 1 else min(
        steps, PREDICT_BATCHES_PER_DISPATCH)
    if progress:
        k = max(1, min(k, math.ceil(steps / 20)))
    dispatches = math.ceil(steps / k)
    total = dispatches * k * batch_size
    padded = [np.concatenate([a, np.zeros((total - n,) + a.shape[1:], a.dtype)]) if total > n
              else a for a in xs]
    staged = [jax.device_put(a) for a in padded]
    params, mstate = variables["params"], variables["state"]
    # A fresh key per call for layers random at inference (Monte Carlo dropout), as
    # Keras draws from its seed generator; other models take none and draw nothing.
    rng = jg_random.next_key() if model.inference_needs_rng() else None
    if progress:
        outs = []
        for i in range(dispatches):
            if begin_listeners:
                cbl.call("on_predict_batch_begin", first_batch + i * k, Logs())
            outs.append(fn(params, mstate, staged, np.int32(i * k * batch_size), batch_size,
                           k, rng))
            if i and end_listeners:  # the bar shows what is done, the next chunk queued
                _report_chunk(cbl, outs[i - 1], first_batch + min(i * k, steps) - 1)
        if outs and end_listeners:
            _report_chunk(cbl, outs[-1], first_batch + steps - 1)
    elif not (begin or end):
        outs = [fn(params, mstate, staged, np.int32(i * k * batch_size), batch_size, k, rng)
                for i in range(dispatches)]
    else:
        outs = []
        for i in range(steps):
            if begin:
                cbl.call("on_predict_batch_begin", first_batch + i, Logs())
            o = fn(params, mstate, staged, np.int32(i * batch_size), batch_size, 1, rng)
            outs.append(o)
            if end:
                rows = min(batch_size, n - i * batch_size)
                flat = [a if rows == batch_size else a[:rows] for a in form.flat(o)]
                cbl.call("on_predict_batch_end", first_batch + i,
                         Logs({"outputs": form.pack(flat)}))
            if getattr(model, "stop_predicting", False):
                n = min(n, (i + 1) * batch_size)
                break
    flat_outs = [form.flat(o) for o in jax.device_get(outs)]
    return [np.concatenate([o[j] for o in flat_outs])[:n] for j in range(len(flat_outs[0]))]


__all__ = ["run_fit", "run_evaluate", "run_predict"]

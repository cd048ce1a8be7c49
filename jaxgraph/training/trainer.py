"""compile / fit / evaluate / predict: the loop around the pure steps.

Python runs per dispatch, not per step: when no callback listens to batches, several
steps (up to a whole epoch) run inside one compiled program; metrics accumulate on
the device and are read once per epoch. On an accelerator, data is staged on the
device once and each batch is gathered there by index; on the CPU backend each
chunk's rows are gathered on the host while the previous chunk runs, and sliced
in the program. The last partial batch is padded with weight-0 rows so every step
has one shape and the step compiles once.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import random as jg_random
from ..layers.base import cancel_sync, defer_sync, flush_sync, weights_version
from ..lowering.executor import RUN_ONCE
from . import custom_step
from . import data as data_mod
from . import metrics as metrics_mod
from . import optimizers as optimizers_mod
from .objective import build_objective
from .step import EVAL_RNG, Steps, split_params


def enable_compilation_cache() -> None:
    """Use JAX's persistent compilation cache unless the user configured one."""
    if os.environ.get("JAXGRAPH_NO_COMPILATION_CACHE"):
        return
    with contextlib.suppress(Exception):
        if jax.config.jax_compilation_cache_dir:
            return
        path = os.environ.get("JAXGRAPH_CACHE_DIR") or os.path.join(
            os.path.expanduser("~"), ".cache", "jaxgraph", "xla")
        os.makedirs(path, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


_COMPILE_POOL = concurrent.futures.ThreadPoolExecutor(
    max_workers=2, thread_name_prefix="jaxgraph-compile")


def _leaf_signature(a):
    if isinstance(a, jax.Array):
        return (a.shape, a.dtype, getattr(a, "weak_type", False), a.sharding)
    if isinstance(a, (bool, int, float)):
        return type(a)
    return (np.shape(a), np.result_type(a))


def _signature(args) -> tuple:
    leaves, tree = jax.tree_util.tree_flatten(args)
    return tree, tuple(_leaf_signature(a) for a in leaves)


class Program:
    """A jitted program whose compile can start early, on a worker thread.

    XLA releases the GIL while it compiles, so `start(*args)` lets a fit's train and
    evaluation programs compile at the same time (and the Python work around them go
    on) instead of one after another. A call with a started signature runs that
    executable; any other call goes through jax.jit as usual."""

    def __init__(self, fn, **jit_kwargs):
        self.jitted = jax.jit(fn, **jit_kwargs)
        self._ahead: dict = {}

    def start(self, *args) -> None:
        sig = _signature(args)
        if sig not in self._ahead:
            lowered = self.jitted.lower(*args)  # traces here, on the caller's thread
            self._ahead[sig] = _COMPILE_POOL.submit(lowered.compile)

    def __call__(self, *args):
        if self._ahead:
            compiled = self._ahead.get(_signature(args))
            if compiled is not None:
                return compiled.result()(*args)
        return self.jitted(*args)


def step_compiler_options(model) -> dict | None:
    """XLA:CPU compiles step programs about 9% faster at LLVM -O1 than at its default -O3,
    and runs dense and convolutional steps as fast or faster (their heavy kernels are
    library calls). The scatter-add of an embedding's gradient is a loop LLVM emits, and
    ran 2.9x slower at -O1 (4% of the book's multi-output step), so models with an
    embedding keep -O3. Other backends keep their defaults."""
    if jax.default_backend() == "cpu" and not _has_layer(model, "Embedding"):
        return {"xla_backend_optimization_level": 1}
    return None


def _current_learning_rate(model) -> float | None:
    try:
        return model.optimizer.learning_rate
    except (AttributeError, TypeError, ValueError):
        return None


def _copy_tree(tree):
    """Fresh buffers, copied by the runtime. `jnp.array(a, copy=True)` compiles one copy
    program per leaf shape: on CPU about 10 ms and 1 MB of resident memory each."""
    return jax.device_put(tree, may_alias=False)


def unique_buffers(tree):
    """Copy leaves that alias an earlier leaf: a donated state may not hold one buffer
    twice (optimizers often initialise several slots with the same zeros)."""
    seen: set[int] = set()

    def fix(x):
        if not isinstance(x, jax.Array):
            return x
        if id(x) in seen:
            return jax.device_put(x, may_alias=False)
        seen.add(id(x))
        return x

    return jax.tree_util.tree_map(fix, tree)


def _has_layer(model, kind: str) -> bool:
    """Whether the model, nested models included, holds a layer whose class name has `kind`."""
    from ..graph.functional import Functional

    def walk(m):
        for layer in m.layers:
            if isinstance(layer, Functional):
                if walk(layer):
                    return True
            elif kind in type(layer).__name__:
                return True
        return False

    return walk(model)


#: The rows of one host-gathered chunk (CPU backend), in bytes, for steps_per_execution
#: "auto": 16 steps of the book's MLP. Larger chunks save little dispatch time and cost
#: twice their size in memory (the running chunk and the next one, gathered behind it).
HOST_CHUNK_BYTES = 1 << 20


def _divisor_near(steps: int, cap: int) -> int:
    """The largest k <= cap dividing `steps` (no masked tail), unless that is under half
    of cap, then cap itself."""
    cap = max(1, min(cap, steps))
    best = max(d for d in range(1, cap + 1) if steps % d == 0)
    return best if 2 * best >= cap else cap


def auto_steps_per_execution(model, steps: int) -> int:
    """Several steps per dispatch wins for small dense nets everywhere and for all nets
    on accelerators; on CPU, XLA's convolutions lose their fast path inside a loop."""
    if jax.default_backend() == "cpu" and _has_layer(model, "Conv"):
        return 1
    return max(1, steps)


class OptimizerHandle:
    """`model.optimizer`: Keras's optimizer object, backed by the live optimizer state.

    Reading or assigning `learning_rate` (or `lr`) touches the array inside the
    optimizer state, so a callback can change it between steps without a recompile.
    """

    def __init__(self, spec, trainer: Trainer):
        object.__setattr__(self, "_spec", spec)
        object.__setattr__(self, "_trainer", trainer)
        object.__setattr__(self, "_pending_lr", None)

    @property
    def learning_rate(self) -> float | None:
        ts = self._trainer.ts
        if ts is not None:
            lr = optimizers_mod.get_learning_rate(ts["opt"])
            if lr is not None:
                return float(np.asarray(lr))
        if self._pending_lr is not None:
            return self._pending_lr
        lr = getattr(self._spec, "learning_rate", None)
        return float(lr) if isinstance(lr, (int, float)) else None

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        value = float(np.asarray(value))
        ts = self._trainer.ts
        if ts is not None:
            if optimizers_mod.get_learning_rate(ts["opt"]) is None:
                raise ValueError(
                    "This optimizer keeps no learning rate in its state (a raw optax "
                    "transformation); use a jaxgraph.optimizers class to change it in training"
                )
            ts["opt"] = optimizers_mod.set_learning_rate(ts["opt"], value)
        else:
            object.__setattr__(self, "_pending_lr", value)

    lr = learning_rate

    @property
    def iterations(self) -> int:
        ts = self._trainer.ts
        return 0 if ts is None else int(ts["step"])

    @property
    def variables(self) -> list:
        """The optimizer state's arrays (`optimizer_variables` of a custom train_step)."""
        return jax.tree_util.tree_leaves(self._trainer.ensure_state()["opt"])

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        """Keras's `(trainable_variables, optimizer_variables)` after one update, on lists
        in Keras's order: the update `fit`'s built-in step makes (clipping, weight decay,
        constraints), with the learning rate read from `optimizer_variables`."""
        return custom_step.stateless_apply(self._trainer, optimizer_variables, grads,
                                           trainable_variables)

    def get_config(self):
        return self._spec.get_config() if hasattr(self._spec, "get_config") else {}

    def __getattr__(self, name):
        return getattr(self._spec, name)

    def __setattr__(self, name, value):
        if name in ("learning_rate", "lr"):
            type(self).learning_rate.fset(self, value)
        else:
            setattr(self._spec, name, value)

    def __repr__(self):
        return f"<OptimizerHandle {self._spec!r}>"


class Trainer:
    """Owns the training state and the compiled programs of one `compile()`."""

    def __init__(self, model, objective, optimizer_spec, steps_per_execution="auto",
                 distribution=None):
        self.model = model
        self.objective = objective
        self.optimizer_spec = optimizer_spec
        self.distribution = distribution
        self.tx = optimizers_mod.to_optax(optimizer_spec)
        # Keras's `model.metrics` of a compiled model: what a custom step updates.
        self.loss_tracker = metrics_mod.Mean(name="loss")
        self.compile_metrics = custom_step.CompileMetrics(model, objective) \
            if objective.metrics else None
        self.output_loss_trackers = [
            metrics_mod.Mean(name=objective.loss_log_name(i))
            for i, fn in enumerate(objective.loss_fns) if fn is not None] \
            if objective.multi else []
        # A model that overrides train_step or test_step runs both through Keras's step
        # protocol (the one it does not override is Keras's default), so its logs are
        # Keras's; other models keep the built-in programs.
        overridden = custom_step.overridden(model)
        self.custom = bool(overridden & {"train", "test"})
        if self.custom:
            self.steps = custom_step.CustomSteps(model, objective, self.tx, distribution,
                                                 overridden | {"train", "test"})
        else:
            self.steps = Steps(model, objective, self.tx, distribution)
        self.steps_per_execution = steps_per_execution
        self.ts: dict | None = None
        self.epoch = 0
        self._synced_version = None
        self._pending_opt_leaves = None
        self._train_fns: dict[int, Any] = {}
        self._eval_fns: dict[int, Any] = {}
        self._plans: dict[tuple, Any] = {}
        self.data_seed: int | None = None
        self.data_epoch0 = 0  # the epoch fit's data started at (EpochPlan's base)
        self._stream_train = None
        self._stream_eval = None
        self._predict_fn = None
        self._eval_rng: bool | None = None
        self._results_fn = jax.jit(self.steps.results)
        self._init_metrics_fn = lambda: unique_buffers(self.steps.init_metrics())
        self._init_eval_metrics_fn = self._init_metrics_fn
        if self.custom:
            self._init_eval_metrics_fn = lambda: unique_buffers(self.steps.init_eval_metrics())
        # The copy happens inside the one program (not as one compiled copy per shape):
        # the state is donated to the step, and must never own the model's arrays.
        self._init_state_fn = jax.jit(
            lambda variables, rng: self.steps.init_state(
                jax.tree_util.tree_map(jnp.copy, variables), rng),
            compiler_options=RUN_ONCE)

    @property
    def trace_counts(self):
        return self.steps.trace_counts

    def ordered_values(self, logs: dict) -> list:
        """evaluate()'s list: the compiled order, or Keras's for a model with custom steps."""
        if self.custom:
            return self.steps.ordered_values(logs)
        return [logs[k] for k in self.objective.log_names() if k in logs]

    def keep_metric_state(self, metric_state: dict) -> None:
        """Leave a custom step's final metric variables in the metric objects, as Keras's
        state sync does (copies: the state's own buffers are donated to the next step)."""
        values = _copy_tree(list(metric_state["vars"]))
        start = 0
        for metric in self.steps.metric_objects():
            count = len(metric.variables)
            metric.assign_variables(values[start:start + count])
            start += count

    # ------------------------------------------------------------------ state sync

    def ensure_state(self) -> dict:
        if self.ts is None:
            rng = jg_random.next_key()
            # One compiled program builds the whole state (optimizer slots included),
            # instead of dozens of small eager ops; its outputs are fresh buffers.
            self.ts = self.place(unique_buffers(self._init_state_fn(self.model.variables, rng)))
            self._synced_version = weights_version()
            if self.optimizer.__dict__.get("_pending_lr") is not None:
                self.optimizer.learning_rate = self.optimizer._pending_lr
            if self._pending_opt_leaves is not None:
                self._restore_opt(self._pending_opt_leaves)
                self._pending_opt_leaves = None
        self.pull_from_model()
        return self.ts

    @property
    def optimizer(self) -> OptimizerHandle:
        return self.model.optimizer

    def pull_from_model(self) -> None:
        """Pick up weights the user or a callback changed through the model."""
        flush_sync()
        self._take_edits()

    def after_callbacks(self) -> None:
        """After hooks inside fit: drop an unread publication (the next step consumes
        the buffers anyway) and pick up any edits a callback made."""
        cancel_sync(self._publish)
        self._take_edits()

    def _take_edits(self) -> None:
        if self.ts is None or self._synced_version == weights_version():
            return
        variables = _copy_tree(self.model.variables)
        train, frozen = split_params(variables["params"], self.steps.mask(variables["params"]))
        self.ts = self.place({**self.ts, "train": train, "frozen": frozen,
                              "mstate": variables["state"]})
        self._synced_version = weights_version()

    def place(self, ts: dict) -> dict:
        """Lay the state out over the devices of the active distribution (if any)."""
        dist = self.distribution
        if dist is None:
            return ts
        placed = dist.shard_variables({k: ts[k] for k in ("train", "frozen", "mstate", "opt")})
        rest = jax.device_put({k: v for k, v in ts.items() if k not in placed},
                              dist.replicated())
        return {**rest, **placed}

    def stage(self, xs, ys, sws):
        sharding = None if self.distribution is None else self.distribution.replicated()
        return data_mod.Staged.put(xs, ys, sws, sharding)

    def stage_train(self, xs, ys, sws):
        """Training data: gathered on the host chunk by chunk on the CPU backend, where
        an in-program gather is slow; staged whole on an accelerator."""
        if self.distribution is None and jax.default_backend() == "cpu":
            return data_mod.HostStaged.put(xs, ys, sws)
        return self.stage(xs, ys, sws)

    def push_to_model(self) -> None:
        """Publish the live variables to the model (and every model sharing its layers),
        lazily: the copy is made when someone first reads or writes any weights."""
        if self.ts is not None:
            defer_sync(self._publish)

    def _publish(self) -> None:
        # Copies: the state's own buffers are donated to (consumed by) the next step.
        self.model.variables = _copy_tree(self.steps.variables_of(self.ts))
        self._synced_version = weights_version()

    def get_state(self) -> dict:
        """The whole training state as a pytree (for checkpoints)."""
        self.ensure_state()
        ts = self.ts
        if self.data_seed is None:
            self.data_seed = jg_random.next_seed()
        return {"train": ts["train"], "frozen": ts["frozen"], "mstate": ts["mstate"],
                "opt": ts["opt"], "step": ts["step"],
                "rng": jax.random.key_data(ts["rng"]), "loss_weights": ts["loss_weights"],
                "data_seed": jnp.asarray(self.data_seed, jnp.int32)}

    def set_state(self, state: dict) -> None:
        self.ensure_state()
        restored = dict(state)
        restored["rng"] = jax.random.wrap_key_data(jnp.asarray(state["rng"]))
        ref = self.get_state()
        ref_struct = jax.tree_util.tree_structure(ref)
        new_struct = jax.tree_util.tree_structure({**restored, "rng": state["rng"]})
        if ref_struct != new_struct:
            raise ValueError("Checkpointed training state does not match this model/optimizer")
        restored = jax.tree_util.tree_map(
            lambda r, v: jnp.asarray(v, dtype=r.dtype) if hasattr(r, "dtype") else v,
            {**ref, "rng": ref["rng"]}, {**restored, "rng": state["rng"]})
        restored["rng"] = jax.random.wrap_key_data(jnp.asarray(state["rng"]))
        self.data_seed = int(np.asarray(restored.pop("data_seed")))
        self.ts = {**self.ts, **restored}
        self.push_to_model()

    def optimizer_leaves(self) -> list[np.ndarray] | None:
        if self.ts is None:
            return None
        return [np.asarray(x) for x in jax.tree_util.tree_leaves(self.ts["opt"])]

    def set_optimizer_leaves(self, leaves) -> None:
        if self.ts is None:
            self._pending_opt_leaves = list(leaves)
        else:
            self._restore_opt(list(leaves))

    def _restore_opt(self, leaves) -> None:
        ref, treedef = jax.tree_util.tree_flatten(self.ts["opt"])
        if len(ref) != len(leaves):
            raise ValueError(
                f"Saved optimizer state has {len(leaves)} arrays; this model's optimizer has "
                f"{len(ref)} (different optimizer or trainable layers?)"
            )
        for i, (r, v) in enumerate(zip(ref, leaves)):
            if tuple(np.shape(v)) != tuple(r.shape):
                raise ValueError(f"Saved optimizer array {i} has shape {np.shape(v)}, "
                                 f"expected {r.shape}")
        self.ts["opt"] = jax.tree_util.tree_unflatten(
            treedef, [jnp.asarray(v, dtype=r.dtype) for r, v in zip(ref, leaves)])

    # ------------------------------------------------------------------ compiled programs

    def train_fn(self, k: int, masked: bool = True):
        """The program running k steps per dispatch (`masked`: some may be inactive).

        It returns the new state and the running logs, so reading the logs needs no
        program of its own (one compile and one dispatch fewer per epoch)."""
        if (k, masked) not in self._train_fns:
            steps = self.steps

            if self.custom:
                def chunk(ts, data, idx_all, valid_all, active_all, c):
                    return steps.custom_train_chunk(ts, data, idx_all, valid_all, active_all,
                                                    c, masked=masked)
            else:
                def chunk(ts, data, idx_all, valid_all, active_all, c):
                    ts = steps.train_chunk(ts, data, idx_all, valid_all, active_all, c,
                                           masked=masked)
                    return ts, steps.results(ts["metrics"])

            self._train_fns[(k, masked)] = Program(
                chunk, donate_argnums=0, compiler_options=step_compiler_options(self.model))
        return self._train_fns[(k, masked)]

    def epoch_plan(self, n, batch_size, steps, k, shuffle) -> data_mod.EpochPlan:
        """The (cached) step layout for these sizes; masks are staged once."""
        key = (n, batch_size, steps, k, shuffle)
        if key not in self._plans:
            sharding = None if self.distribution is None else self.distribution.replicated()
            self._plans[key] = data_mod.EpochPlan(n, batch_size, steps, k, shuffle, sharding)
        return self._plans[key]

    def eval_fn(self):
        """Evaluation over chunks; returns the metric state and its results."""
        if not self._eval_fns:
            steps = self.steps

            if self.custom:
                def chunk(ms, params, mstate, data, idx_all, valid_all, c):
                    return steps.custom_eval_chunk(ms, params, mstate, data, idx_all,
                                                   valid_all, c)
            else:
                def chunk(ms, params, mstate, data, idx_all, valid_all, c):
                    ms = steps.eval_chunk(ms, params, mstate, data, idx_all, valid_all, c)
                    return ms, steps.results(ms)

            self._eval_fns[0] = Program(chunk, compiler_options=step_compiler_options(self.model))
        return self._eval_fns[0]

    def stream_train_fn(self):
        """One step on given arrays: `ts -> ts`, or `ts -> (ts, logs)` for a custom step."""
        if self._stream_train is None:
            step = self.steps.custom_train_step if self.custom else self.steps.train_step
            self._stream_train = jax.jit(step, donate_argnums=0,
                                         compiler_options=step_compiler_options(self.model))
        return self._stream_train

    def stream_eval_fn(self):
        """`ms -> ms`, or `ms -> (ms, logs)` for a custom test step."""
        if self._stream_eval is None:
            step = self.steps.custom_eval_step if self.custom else self.steps.eval_step
            self._stream_eval = jax.jit(step,
                                        compiler_options=step_compiler_options(self.model))
        return self._stream_eval

    def init_eval_metrics(self, fresh_key: bool = True) -> dict:
        """Evaluation's metric state; for a model random at inference (Monte Carlo
        dropout) it carries a key, fresh per evaluation as Keras's seed generator is.
        `fresh_key=False`: a placeholder of the same shape, to compile ahead."""
        ms = self._init_eval_metrics_fn()
        if self._eval_rng is None:
            self._eval_rng = self.model.inference_needs_rng()
        if self._eval_rng:
            key = jg_random.next_key() if fresh_key else jax.random.key(0)
            ms[EVAL_RNG] = jax.random.key_data(key)
        return ms

    def predict_fn(self):
        if self._predict_fn is None:
            self._predict_fn = jax.jit(self.steps.predict_step,
                                       compiler_options=step_compiler_options(self.model))
        return self._predict_fn

    def choose_k(self, steps: int, batch_listeners: bool, progbar_only: bool,
                 step_bytes: int | None = None) -> int:
        """Steps per dispatch. `step_bytes`: the size of one step's rows when the training
        data is gathered on the host, where a chunk and the next one prepared behind it
        are held at once; "auto" then keeps a chunk near HOST_CHUNK_BYTES."""
        spe = self.steps_per_execution
        if spe in (None, "auto"):
            k = auto_steps_per_execution(self.model, steps)
            if step_bytes and k > 1:
                k = _divisor_near(steps, max(1, HOST_CHUNK_BYTES // step_bytes))
            if batch_listeners and not progbar_only:
                k = 1
            elif progbar_only:
                k = max(1, min(k, math.ceil(steps / 20)))
        else:
            k = max(1, min(int(spe), steps))
            if batch_listeners and not progbar_only:
                k = 1
        return k


# ---------------------------------------------------------------------------- the mixin


class TrainingMixin(custom_step.StatelessMixin):
    """Keras's training methods for `Model` and `Sequential`."""

    stop_training = False
    history = None
    optimizer = None
    _trainer: Trainer | None = None
    _compile_config = None
    _compile_args: dict | None = None

    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution="auto",
                jit_compile=True, auto_scale_loss=True, distribution=None, **kwargs):
        """Resolve optimizer, per-output losses and metrics; nothing is traced yet.

        `distribution` (default: `jaxgraph.distribution.set_distribution`'s) spreads
        training over several devices with jax.sharding.
        """
        if kwargs:
            raise TypeError(f"compile() got unexpected keyword argument(s) {sorted(kwargs)}")
        # Kept to compile again when the graph changes (`Sequential.add` after `fit`) or
        # when a Sequential without an input shape is built from its first data.
        self._compile_args = dict(
            optimizer=optimizer, loss=loss, loss_weights=loss_weights, metrics=metrics,
            weighted_metrics=weighted_metrics, steps_per_execution=steps_per_execution,
            distribution=distribution)
        if self._unbuilt_sequential():
            # Keras compiles a Sequential with no input shape; fit/evaluate/predict build
            # it from the data, and the objective (which needs output shapes) waits.
            self._trainer = None
            return
        spec = optimizers_mod.get(optimizer)
        objective = build_objective(self, loss, loss_weights, metrics, weighted_metrics)
        old = self._trainer
        from .. import distribution as dist_mod

        self._trainer = Trainer(self, objective, spec, steps_per_execution,
                                distribution or dist_mod.distribution())
        if old is not None and old.ts is not None:
            old.push_to_model()
        self.optimizer = OptimizerHandle(spec, self._trainer)
        self._compile_config = _compile_config(optimizer, spec, loss, loss_weights, metrics,
                                               weighted_metrics, steps_per_execution)
        self.compiled_loss = objective
        enable_compilation_cache()
        if getattr(self, "_input_struct", None) is not None:
            _ = self.variables  # create any missing weights now (Keras has them after build)

    def _unbuilt_sequential(self) -> bool:
        """A Sequential without an input shape, or a Keras-style subclass not yet called:
        both are built from the first data they see."""
        return getattr(self, "_input_struct", None) is None and (
            hasattr(self, "_stack") or self._keras_style_call() is not None)

    def _compiled_for(self, what: str, x=None):
        """The trainer for `what`, after building an unbuilt Sequential from `x` and
        finishing a compile that waited for it. Returns (trainer, x): peeking at a one-shot
        stream of batches gives back an equivalent stream."""
        if self._trainer is None and self._compile_args is not None:
            if self._unbuilt_sequential() and x is not None:
                x = self._maybe_build_from_data(x)
            if self._unbuilt_sequential():
                raise ValueError(
                    f"Sequential model {self.name!r} was compiled before it had an input "
                    f"shape, and {what}() has no data to build it from. Give the first layer "
                    "input_shape=..., start with Input(...), or call model.build((None, ...))."
                )
            self.compile(**self._compile_args)
        return self._require_compiled(what), x

    def _training_trainer(self, what: str, x=None):
        """`_compiled_for`, and a new trainer if a layer's `trainable` flag changed since
        the training state was laid out (frozen weights live apart from trained ones)."""
        trainer, x = self._compiled_for(what, x)
        if trainer.steps.mask_is_stale():
            import warnings

            warnings.warn(
                f"Model {self.name!r}: a layer's `trainable` flag changed after the model "
                "was compiled and trained; recompiling with the same arguments so the change "
                "takes effect (the optimizer's state starts afresh, as after compile()).",
                stacklevel=3)
            args = dict(self._compile_args)
            lr = _current_learning_rate(self)
            self.compile(**args)
            if lr is not None:
                self.optimizer.learning_rate = lr
            trainer = self._trainer
        return trainer, x

    def _require_compiled(self, what: str) -> Trainer:
        if self._trainer is None:
            raise RuntimeError(f"You must call compile() before {what}() on model {self.name!r}")
        return self._trainer

    @property
    def metrics_names(self) -> list[str]:
        return [] if self._trainer is None else self._trainer.objective.log_names()

    @property
    def loss_weights(self):
        trainer = self._require_compiled("loss_weights")
        lw = trainer.objective.loss_weights if trainer.ts is None else trainer.ts["loss_weights"]
        return [float(v) for v in np.asarray(lw)]

    @loss_weights.setter
    def loss_weights(self, value) -> None:
        """Change the loss weights between steps (an array in the state: no recompile)."""
        trainer = self._require_compiled("loss_weights")
        from .objective import _per_output

        weights = _per_output(value, self.output_names, "loss_weights", allow_missing=False)
        arr = jnp.asarray([float(w) for w in weights], jnp.float32)
        trainer.objective.loss_weights = np.asarray(arr)
        if trainer.ts is not None:
            trainer.ts["loss_weights"] = arr

    def get_optimizer_state(self):
        return None if self._trainer is None else self._trainer.optimizer_leaves()

    def set_optimizer_state(self, leaves) -> None:
        self._require_compiled("set_optimizer_state").set_optimizer_leaves(leaves)

    # ------------------------------------------------------------------ data

    def _loss_outputs(self, trainer) -> list[bool]:
        return [fn is not None for fn in trainer.objective.loss_fns]

    def _prepare(self, trainer, x, y, sample_weight, class_weight, with_targets=True):
        self._maybe_build_from_data(x)
        xs = data_mod.flatten_x(self, x)
        if with_targets:
            if y is None and any(self._loss_outputs(trainer)):
                raise ValueError(f"Model {self.name!r} needs targets y to train/evaluate")
            ys = data_mod.flatten_y(self, y, self._loss_outputs(trainer)) if y is not None else [
                None] * len(self.output_names)
        else:
            ys = []
        named = [(f"x[{n!r}]", a) for n, a in zip(self.input_names, xs)]
        named += [(f"y[{n!r}]", a) for n, a in zip(self.output_names, ys) if a is not None]
        n = data_mod.sample_count(named)
        if with_targets:
            # A custom step may not use the compiled loss: its targets are checked where
            # it does, in compute_loss, as Keras checks them.
            if not trainer.custom:
                self._validate_targets(trainer, ys)
            sws = data_mod.sample_weights(self, sample_weight, class_weight, ys, n)
        else:
            sws = []
        return xs, ys, sws, n

    def _validate_targets(self, trainer, ys) -> None:
        from . import losses as losses_mod

        for i, (name, fn, y) in enumerate(zip(self.output_names, trainer.objective.loss_fns, ys)):
            if fn is None or y is None:
                continue
            losses_mod.validate(fn, tuple(y.shape), self.outputs[i].shape, name,
                                y_true_dtype=y.dtype)

    def _maybe_build_from_data(self, x):
        """Build a Sequential that has no input shape yet from the first data it sees, as
        Keras does. Returns x (a one-shot stream peeked at comes back whole)."""
        if x is None or not self._unbuilt_sequential():
            return x
        sample = x
        if data_mod.is_batch_stream(x):
            first, x = data_mod.peek_stream(x)
            sample = data_mod.unpack_batch(first)[0]
        if not hasattr(self, "_stack"):  # a subclass: built from the whole structure
            self._maybe_build(sample)
            return x
        if isinstance(sample, (list, tuple)) and sample:
            sample = sample[0]
        if isinstance(sample, dict) and len(sample) == 1:
            sample = next(iter(sample.values()))
        arr = np.asarray(sample)
        if arr.ndim == 0:
            raise ValueError(f"Sequential model {self.name!r} cannot be built from a scalar "
                             "input; give it arrays with a batch axis")
        dtype = arr.dtype if np.issubdtype(arr.dtype, np.integer) else np.float32
        self._maybe_build(jax.ShapeDtypeStruct((None,) + arr.shape[1:], dtype))
        return x

    # ------------------------------------------------------------------ fit

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1, **kwargs):
        """Train for `epochs`; returns the `History`."""
        from .loop import run_fit

        if kwargs:
            raise TypeError(f"fit() got unexpected keyword argument(s) {sorted(kwargs)}")
        trainer, x = self._training_trainer("fit", x)
        return run_fit(self, trainer, x=x, y=y, batch_size=batch_size, epochs=epochs,
                       verbose=verbose, callbacks=callbacks, validation_split=validation_split,
                       validation_data=validation_data, shuffle=shuffle,
                       class_weight=class_weight, sample_weight=sample_weight,
                       initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                       validation_steps=validation_steps,
                       validation_batch_size=validation_batch_size,
                       validation_freq=validation_freq)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False, **kwargs):
        from .loop import run_evaluate

        if kwargs:
            raise TypeError(f"evaluate() got unexpected keyword argument(s) {sorted(kwargs)}")
        trainer, x = self._compiled_for("evaluate", x)
        logs = run_evaluate(self, trainer, x, y, batch_size=batch_size, verbose=verbose,
                            sample_weight=sample_weight, steps=steps, callbacks=callbacks)
        if return_dict:
            return logs
        values = trainer.ordered_values(logs)
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        from .loop import run_predict

        return run_predict(self, x, batch_size=batch_size, verbose=verbose, steps=steps,
                           callbacks=callbacks)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None,
                       return_dict=False):
        trainer, x = self._training_trainer("train_on_batch", x)
        xs, ys, sws, n = self._prepare(trainer, x, y, sample_weight, class_weight)
        ts = trainer.ensure_state()
        ts = {**ts, "metrics": trainer._init_metrics_fn()}
        if trainer.custom:
            trainer.ts, logs = trainer.stream_train_fn()(ts, xs, ys, sws, None)
            trainer.keep_metric_state(trainer.ts["metrics"])
        else:
            trainer.ts = trainer.stream_train_fn()(ts, xs, ys, sws, jnp.ones((n,), jnp.float32))
            logs = trainer._results_fn(trainer.ts["metrics"])
        trainer.push_to_model()
        logs = {k: float(v) for k, v in jax.device_get(logs).items()}
        return logs if return_dict else _as_list(logs, trainer)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        trainer, x = self._compiled_for("test_on_batch", x)
        xs, ys, sws, n = self._prepare(trainer, x, y, sample_weight, None)
        trainer.pull_from_model() if trainer.ts is not None else None
        v = self.variables
        if trainer.custom:
            ms, logs = trainer.stream_eval_fn()(trainer.init_eval_metrics(), v["params"],
                                                v["state"], xs, ys, sws, None)
            trainer.keep_metric_state(ms)
        else:
            ms = trainer.stream_eval_fn()(trainer.init_eval_metrics(), v["params"], v["state"],
                                          xs, ys, sws, jnp.ones((n,), jnp.float32))
            logs = trainer._results_fn(ms)
        logs = {k: float(v) for k, v in jax.device_get(logs).items()}
        return logs if return_dict else _as_list(logs, trainer)

    def predict_on_batch(self, x):
        return self.predict(x, batch_size=None, verbose=0)

    def make_train_step(self):
        """A jitted pure `(variables, opt_state, batch, rng) -> (variables, opt_state, logs)`.

        `batch` is `(x, y)` or `(x, y, sample_weight)` in the model's structures; the
        returned function has `.init(variables) -> opt_state` for its optimizer state.
        """
        trainer, _ = self._training_trainer("make_train_step")
        steps = trainer.steps
        model = self

        def train_step(variables, opt_state, batch, rng):
            x, y, sw = data_mod.unpack_batch(tuple(batch))
            xs = model._input_struct.unpack(x, model.input_names, "inputs")
            ys = _flat_targets(model, y)
            n = jnp.shape(xs[0])[0]
            sws = _flat_weights(model, sw, n)
            ts = steps.init_state(variables, jg_random.as_key(rng))
            ts["opt"] = opt_state
            if trainer.custom:
                ts, logs = steps.custom_train_step(ts, xs, ys, sws, None)
                return steps.variables_of(ts), ts["opt"], logs
            ts = steps.train_step(ts, xs, ys, sws, jnp.ones((n,), jnp.float32))
            return steps.variables_of(ts), ts["opt"], steps.results(ts["metrics"])

        def init(variables):
            train, _ = split_params(variables["params"], steps.mask(variables["params"]))
            return trainer.tx.init(train)

        fn = jax.jit(train_step, donate_argnums=(0, 1))
        fn.init = init
        return fn


def _flat_targets(model, y):
    names = model.output_names
    if isinstance(y, dict):
        return [y.get(k) for k in names]
    if isinstance(y, (list, tuple)) and len(names) > 1:
        return list(y)
    return [y]


def _flat_weights(model, sw, n):
    names = model.output_names
    if sw is None:
        return [jnp.ones((n,), jnp.float32) for _ in names]
    if isinstance(sw, dict):
        return [jnp.asarray(sw.get(k, jnp.ones((n,))), jnp.float32) for k in names]
    if isinstance(sw, (list, tuple)) and len(names) > 1:
        return [jnp.asarray(w, jnp.float32) for w in sw]
    return [jnp.asarray(sw, jnp.float32) for _ in names]


def _as_list(logs: dict, trainer: Trainer):
    values = trainer.ordered_values(logs)
    return values[0] if len(values) == 1 else values


#: `class_name` of a compile-config entry that records a function by name.
FUNCTION_REF = "function"
#: `class_name` of an entry that could not be serialized (an optax transformation).
UNSERIALIZABLE = "__unserializable__"


def _unserializable(value, reason: str) -> dict:
    """A marker for what has no config: saving warns, loading explains (never a None)."""
    import optax

    if isinstance(value, optax.GradientTransformation):
        init = getattr(value.init, "__qualname__", "") or ""
        built_by = init.split(".<locals>")[0] if ".<locals>" in init else ""
        description = f"optax.{type(value).__name__}" + (f" ({built_by})" if built_by else "")
        reason = "an optax transformation has no config to save"
    else:
        description = getattr(value, "__name__", None) or type(value).__name__
    return {"class_name": UNSERIALIZABLE, "config": {"description": description,
                                                      "reason": str(reason)}}


def _function_ref(fn) -> dict:
    """`{'class_name': 'function', 'config': name, 'module': ...}` for a loss/metric function.

    The name is the one it is registered under (`jaxgraph.losses.register`,
    `jaxgraph.metrics.register`, `@jaxgraph.saving.register_serializable`), else its
    `__name__`; `load_model` resolves it through `custom_objects` or those registries.
    """
    from ..layers.serialization import registered_function_name
    from . import losses as losses_mod
    from . import metrics as metrics_mod

    name = None
    for registry in (metrics_mod._CUSTOM, losses_mod._CUSTOM):
        name = name or next((k for k, v in registry.items() if v is fn), None)
    name = name or registered_function_name(fn)
    name = name or getattr(fn, "__name__", None) or type(fn).__name__
    module = getattr(fn, "__module__", None) or type(fn).__module__
    return {"class_name": FUNCTION_REF, "config": name, "module": module}


def _json_checked(original, value):
    import json

    try:
        json.dumps(value)
    except (TypeError, ValueError) as e:
        return _unserializable(original, f"its config is not JSON-serializable: {e}")
    return value


class CompileRecord(dict):
    """compile()'s arguments as JSON, as in-process callers (ensembles, populations) read
    them: what `compile()` accepts again, None where an entry has no such form (a
    function, an optax optimizer). `saved` is the complete form a model file stores."""

    saved: dict


def _has_marker(value) -> bool:
    if isinstance(value, dict):
        if value.get("class_name") in (FUNCTION_REF, UNSERIALIZABLE):
            return True
        return any(_has_marker(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_marker(v) for v in value)
    return False


def _in_process(value):
    """Per-output containers kept; an entry that only a model file can name -> None."""
    if isinstance(value, list):
        return [_in_process(v) for v in value]
    if isinstance(value, dict) and "class_name" not in value:
        return {k: _in_process(v) for k, v in value.items()}
    return None if _has_marker(value) else value


def _compile_config(optimizer, spec, loss, loss_weights, metrics, weighted_metrics, spe):
    """A JSON-able record of compile() so that saved models can be recompiled.

    Returns a `CompileRecord`; its `saved` attribute is what `save_model` writes.

    Strings and configs are kept as they are; a loss or metric *function* becomes
    `{'class_name': 'function', 'config': name}` (its registered name, else its
    `__name__`), which `load_model` resolves through `custom_objects` or the
    registries, or refuses with a clear error. What has no config at all (an
    optax transformation as optimizer) is recorded as an `'__unserializable__'`
    marker: `save_model` warns about it and `load_model` compiles with the default
    optimizer and says so. Nothing is saved as None; only the in-process view (the
    dict itself, read by ensembles and populations) has None for those entries.
    """
    from . import losses as losses_mod
    from . import metrics as metrics_mod

    def wrapper_config(value, ser):
        # A LossFunctionWrapper / MeanMetricWrapper around an unregistered function.
        if type(value) not in (losses_mod.LossFunctionWrapper, metrics_mod.MeanMetricWrapper):
            return None
        base = super(type(value), value).get_config()
        return {"class_name": type(value).__name__,
                "config": {"fn": ser(value._wrapped), **base}}

    def ser_loss(value):
        if isinstance(value, dict):
            return {k: ser_loss(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [ser_loss(v) for v in value]
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, type) and issubclass(value, losses_mod.Loss):
            return ser_loss(value())
        try:
            out = losses_mod.serialize(value)
        except (TypeError, ValueError) as e:
            if isinstance(value, losses_mod.Loss):
                out = wrapper_config(value, ser_loss) or _unserializable(value, e)
            elif callable(value):
                out = _function_ref(value)
            else:
                out = _unserializable(value, e)
        return _json_checked(value, out)

    def ser_metrics(value):
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, dict):
            return {k: ser_metrics(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [ser_metrics(v) for v in value]
        if isinstance(value, (metrics_mod.Metric, losses_mod.Loss, type)):
            metric = None
            try:
                metric = metrics_mod.get(value)
                out = metrics_mod.serialize(metric)
            except (TypeError, ValueError) as e:
                out = (metric is not None and wrapper_config(metric, ser_fn)) \
                    or _unserializable(value, e)
        elif callable(value):
            out = _function_ref(value)
        else:
            out = _unserializable(value, "not a metric")
        return _json_checked(value, out)

    def ser_fn(value):
        # The function inside a MeanMetricWrapper: a Loss object keeps its config.
        if isinstance(value, losses_mod.Loss):
            return ser_loss(value)
        return _function_ref(value)

    try:
        opt = _json_checked(spec, optimizers_mod.serialize(spec))
    except (TypeError, ValueError) as e:
        opt = _unserializable(spec, e)

    def ser_weights(value):
        if value is None or isinstance(value, (str, bool)):
            return value
        if isinstance(value, dict):
            return {str(k): ser_weights(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [ser_weights(v) for v in value]
        array = np.asarray(value)
        return array.tolist() if array.ndim else float(array)

    saved = {
        "optimizer": opt,
        "loss": ser_loss(loss),
        "loss_weights": ser_weights(loss_weights),
        "metrics": ser_metrics(metrics),
        "weighted_metrics": ser_metrics(weighted_metrics),
        "steps_per_execution": spe,
    }
    record = CompileRecord({k: _in_process(v) for k, v in saved.items()})
    record.saved = saved
    return record


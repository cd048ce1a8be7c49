"""What a user's `train_step` / `test_step` / `predict_step` sees while jaxgraph traces it.

jaxgraph pads the last partial batch of an epoch with weight-0 rows so that every step
has one shape and the step is traced once. A user's step does not know about those
rows, so the pieces it calls (`stateless_call`, `compute_loss`, loss objects, metrics'
`stateless_update_state`) read the row mask from here and leave padded rows out, as
if the batch were the short one Keras would have given. The context also carries the
step's PRNG key, so random layers draw fresh numbers at every step without a key
in the user's code. It exists only while a step is traced (Python, once per compile).
"""

from __future__ import annotations

import threading

import jax
import jax.numpy as jnp

_local = threading.local()


class StepContext:
    """The traced step's key, row mask and loss weights, and what each model's latest
    `stateless_call` produced besides its outputs (`records`, by model): its outputs'
    masks and added losses (add_loss, activity and weight regularization), for the
    `compute_loss` and compiled metrics that are given those outputs."""

    def __init__(self, steps, *, rng=None, valid=None, loss_weights=None, hidden=None):
        self.steps = steps
        self.rng = rng
        self.valid = valid
        self.loss_weights = loss_weights
        self.hidden = hidden or {}
        self.draws = 0
        self.records: dict[int, dict] = {}
        self.bound = None  # custom_step.BoundLayers: the model's layers on these variables

    def next_rng(self):
        """The step's key for the first draw (the key the built-in step uses), then keys
        folded from it, so two calls of a model in one step draw independently."""
        if self.rng is None:
            return None
        key = self.rng if self.draws == 0 else jax.random.fold_in(self.rng, self.draws)
        self.draws += 1
        return key

    def __enter__(self):
        stack = _local.__dict__.setdefault("stack", [])
        stack.append(self)
        return self

    def __exit__(self, *exc):
        _local.stack.pop()
        return False


def record_for(model, y_pred) -> dict | None:
    """The record of `model`'s latest call in this step if `y_pred` is what it returned
    (the same arrays): values traced elsewhere, say inside `jax.grad`, are never reused
    outside it."""
    ctx = current()
    record = None if ctx is None else ctx.records.get(id(model))
    if record is None:
        return None
    mine = jax.tree_util.tree_leaves(record["outputs"])
    given = jax.tree_util.tree_leaves(y_pred)
    if len(mine) != len(given) or any(a is not b for a, b in zip(mine, given)):
        return None
    return record


def current() -> StepContext | None:
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


def row_mask(batch_like):
    """The traced step's (batch,) 1/0 mask of real rows when `batch_like` (an array, or
    its leading size) has the step's batch size; None when no rows are padded."""
    ctx = current()
    if ctx is None or ctx.valid is None:
        return None
    if isinstance(batch_like, int):
        n = batch_like
    else:
        shape = jnp.shape(batch_like)
        if not shape:
            return None
        n = shape[0]
    return ctx.valid if n == ctx.valid.shape[0] else None


def row_count(batch_like):
    """The number of real rows of a batch: its size, less the padding of the step."""
    mask = row_mask(batch_like)
    if mask is not None:
        return jnp.sum(mask)
    n = batch_like if isinstance(batch_like, int) else jnp.shape(batch_like)[0]
    return jnp.asarray(n, jnp.float32)


class MetricScope:
    """Keras's StatelessScope, for metrics: while Keras's default steps run the model's
    `compute_loss` / `compute_metrics`, the stateful metric API (`update_state`,
    `result()`, `reset_state`) of the metrics in `model.metrics` reads and writes the
    step's `metrics_variables` held here, never the metric objects themselves."""

    def __init__(self, metrics, metrics_variables):
        self.metrics = list(metrics)
        self.states: dict[int, object] = {}
        start = 0
        for metric in self.metrics:
            count = metric._state_def().num_leaves
            self.states[id(metric)] = metric._unflatten(
                metrics_variables[start:start + count], "metrics_variables")
            start += count
        if start != len(metrics_variables):
            raise ValueError(f"metrics_variables holds {len(metrics_variables)} arrays, but "
                             f"model.metrics have {start} variables")

    def covers(self, metric) -> bool:
        return id(metric) in self.states

    def variables(self) -> list:
        return [leaf for metric in self.metrics
                for leaf in jax.tree_util.tree_leaves(self.states[id(metric)])]

    def __enter__(self):
        _local.__dict__.setdefault("scopes", []).append(self)
        return self

    def __exit__(self, *exc):
        _local.scopes.pop()
        return False


def scope_of(metric) -> MetricScope | None:
    """The innermost metric scope that holds `metric`'s state, if any."""
    for scope in reversed(getattr(_local, "scopes", ())):
        if scope.covers(metric):
            return scope
    return None

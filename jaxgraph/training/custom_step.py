"""User-written `train_step` / `test_step` / `predict_step`, as Keras 3's JAX backend takes them.

A model class that overrides train_step or test_step gets a `CustomSteps` instead of the
built-in `Steps`, and runs both through Keras's step protocol (the one it leaves alone
is Keras's default, `StatelessMixin`); a predict_step override changes predict only.
Models that override nothing are untouched (same class, same programs). The user's
method sees Keras's state tuple, lists in Keras's order::

    train_step(self, (trainable_variables, non_trainable_variables,
                      optimizer_variables, metrics_variables), data) -> (logs, state)

and is traced once per input signature into a jaxpr (`jax.make_jaxpr`), which the
compiled multi-step programs of fit / evaluate / predict then evaluate in place of the
built-in step: inside the same scan over several steps, on the same padded batches,
with the learning rate read from the optimizer state. The lists are a view of the
training state dict: converting between them is Python restructuring at trace time,
not work in the program. The logs of the last step ride along the scan and come back
with the state, on the device.

The last partial batch is padded, as for the built-in step, so the step has one shape:
jaxgraph's losses, metrics, `compute_loss` and `stateless_call` leave the padded rows
out (see `step_context`), but a plain `jnp.mean` over the batch in the user's code sees
them; `step_context.row_mask(x)` gives the mask of real rows there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import optax

from .. import random as jg_random
from ..graph.functional import Functional, reachable_layers
from ..layers import base as layer_base
from ..lowering import layout, regularization_loss, run_model, trainable_mask
from ..lowering.executor import OVERRIDES, _get_in
from . import losses as losses_mod
from . import metrics as metrics_mod
from .step import (
    EVAL_RNG,
    Steps,
    _chunk,
    flatten_dict,
    merge_params,
    scan_steps,
    split_params,
    unflatten_dict,
)
from .step_context import MetricScope, StepContext, current, record_for, row_count, row_mask

KINDS = ("train", "test", "predict")
_FIELDS = {
    "train": ("trainable_variables", "non_trainable_variables", "optimizer_variables",
              "metrics_variables"),
    "test": ("trainable_variables", "non_trainable_variables", "metrics_variables"),
    "predict": ("trainable_variables", "non_trainable_variables"),
}


def overridden(model) -> frozenset:
    """Which of train/test/predict_step the model's class defines itself. Overriding
    Keras's `compute_loss` or `compute_metrics` counts as train and test: Keras's
    default steps call them, the built-in programs do not."""
    cls = type(model)
    kinds = {kind for kind in KINDS if getattr(cls, f"{kind}_step", None)
             is not getattr(StatelessMixin, f"{kind}_step")}
    if any(getattr(cls, name, None) is not getattr(StatelessMixin, name)
           for name in ("compute_loss", "compute_metrics")):
        kinds |= {"train", "test"}
    return frozenset(kinds)


def unpack_x_y_sample_weight(data):
    """Keras's `unpack_x_y_sample_weight`: `(x, y, sample_weight)` from a step's data."""
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return data, None, None
    if len(data) == 1:
        return data[0], None, None
    if len(data) == 2:
        return data[0], data[1], None
    if len(data) == 3:
        return data
    raise ValueError(f"Data is expected to be (x,), (x, y) or (x, y, sample_weight); got a "
                     f"tuple of {len(data)} items")


# ---------------------------------------------------------------------------- lists <-> dicts


class VariableLayout:
    """Where each entry of Keras's variable lists lives in jaxgraph's state dicts.

    Keras's order is `model.trainable_weights` / `model.non_trainable_weights`: layer by
    layer, each layer's weights in its own order. Non-trainable entries are the frozen
    parameters (a layer with trainable=False) and the model state (BatchNormalization's
    moving statistics), interleaved as the layers hold them."""

    def __init__(self, model, train: dict, frozen: dict, mstate: dict):
        order = [path + (w.name,) for layer, path in layout(model)[0] for w in layer.weights]
        rank = {key: i for i, key in enumerate(order)}
        flat_train, flat_frozen = flatten_dict(train), flatten_dict(frozen)
        flat_state = {k: v for k, v in flatten_dict(mstate).items() if k[0] != OVERRIDES}

        def ordered(keys):  # stable: an entry no layer lists keeps its place at the end
            return sorted(keys, key=lambda k: rank.get(k, len(order)))

        self.train_keys = ordered(list(flat_train))
        self.nontrain_keys = ordered(list(flat_frozen) + list(flat_state))
        self.frozen = set(flat_frozen)

    @classmethod
    def of_model(cls, model, variables=None):
        variables = model.variables if variables is None else variables
        train, frozen = split_params(variables["params"],
                                     trainable_mask(model, variables["params"]))
        return cls(model, train, frozen, variables.get("state", {}))

    @staticmethod
    def hidden(mstate: dict) -> dict:
        """Entries of the model state that are no weight (per-layer overrides of traced
        attributes): carried through untouched, never shown to the user."""
        return {OVERRIDES: mstate[OVERRIDES]} if OVERRIDES in mstate else {}

    def name(self, key) -> str:
        return "/".join(str(k) for k in key)

    def lists(self, train: dict, frozen: dict, mstate: dict) -> tuple[list, list]:
        flat_train = flatten_dict(train)
        flat_rest = {**flatten_dict(frozen), **flatten_dict(mstate)}
        return ([flat_train[k] for k in self.train_keys],
                [flat_rest[k] for k in self.nontrain_keys])

    def dicts(self, trainable, non_trainable, hidden: dict, what: str = "stateless_call"):
        """(train, frozen, mstate) from the two lists."""
        for label, values, keys in (("trainable", trainable, self.train_keys),
                                    ("non-trainable", non_trainable, self.nontrain_keys)):
            if not isinstance(values, (list, tuple)) or len(values) != len(keys):
                got = (f"{len(values)} arrays" if isinstance(values, (list, tuple))
                       else type(values).__name__)
                raise ValueError(
                    f"{what}: the model has {len(keys)} {label} variables (in the order of "
                    f"model.{label.replace('-', '_')}_variables), got {got}")
        train = unflatten_dict(dict(zip(self.train_keys, trainable)))
        frozen = unflatten_dict({k: v for k, v in zip(self.nontrain_keys, non_trainable)
                                 if k in self.frozen})
        mstate = unflatten_dict({k: v for k, v in zip(self.nontrain_keys, non_trainable)
                                 if k not in self.frozen})
        mstate.update(hidden)
        return train, frozen, mstate


class BoundLayers:
    """Keras's StatelessScope for direct layer calls in a traced custom step.

    Every layer the model tracks (its graph's, and the attribute layers `call` does not
    wire, such as a VAE's decoder run in `compute_loss`) holds the step's variables while
    the step is traced: from the step's state, then from each `stateless_call` /
    `stateless_compute_loss`. A direct call computes on them, so gradients reach its
    weights and its state updates go back into `non_trainable_variables`; it runs in a
    call context of its own keyed from the step (`layers.base.step_call`), so a random
    layer draws fresh numbers at every step. The layers get their own arrays back when
    the trace ends."""

    def __init__(self, model, lay: VariableLayout, ctx: StepContext, kind: str):
        self.model, self.lay, self.ctx, self.kind = model, lay, ctx, kind
        self.entries = layout(model)[0]
        self.in_layout = {id(layer) for layer, _ in self.entries}
        self.index = {key: i for i, key in enumerate(lay.nontrain_keys)}
        self.saved: dict[int, tuple] = {}
        self.bindings: list[tuple[dict, dict]] = []
        self.covered = reachable_layers(model._tracked_layers())

    def bind_lists(self, trainable, non_trainable, what: str) -> None:
        train, frozen, mstate = self.lay.dicts(trainable, non_trainable, self.ctx.hidden, what)
        self.bind(merge_params(train, frozen), mstate)

    def bind(self, params: dict, mstate: dict) -> None:
        """Give every weighted layer its values from `params` / `mstate` (their caches are
        set aside once, with the sublayers' of a Keras-style layer)."""
        self.bindings.append((params, mstate))
        self._apply(params, mstate)

    def _live(self) -> None:
        """Fall back to the latest binding whose arrays are still alive. A `stateless_call`
        inside `jax.grad` binds the gradient trace's values; once the user's step is back
        outside it, a layer called directly runs on the step's own variables instead of
        leaked tracers (Keras's layers would read their variables there)."""
        top = len(self.bindings)
        while top > 1 and not _alive(self.bindings[top - 1]):
            top -= 1
        if top < len(self.bindings):
            del self.bindings[top:]
            self._apply(*self.bindings[-1])

    def _apply(self, params: dict, mstate: dict) -> None:
        layer_base.flush_sync()
        for layer, path in self.entries:
            values = {}
            if any(w.trainable for w in layer._weights):
                values.update(_get_in(params, path, "params"))
            if any(not w.trainable for w in layer._weights):
                values.update(_get_in(mstate, path, "state"))
            links = layer.__dict__.get("_sublayer_links") or {}
            for obj in [layer] + [sub for sub, _ in links.values()]:
                self.saved.setdefault(id(obj), (obj, obj.__dict__.get("_own_values")))
            layer._values = values

    def updated(self, non_trainable) -> list:
        """`non_trainable` with the state the bound layers hold now (a BatchNormalization
        called in `compute_loss` with training=True moved its statistics)."""
        out = list(non_trainable)
        for layer, path in self.entries:
            names = [w.name for w in layer._weights if not w.trainable]
            if not names:
                continue
            values = layer._values
            for name in names:
                i = self.index.get(path + (name,))
                if i is not None and values is not None and name in values:
                    out[i] = values[name]
        return out

    def restore(self) -> None:
        for obj, own in self.saved.values():
            obj.__dict__["_own_values"] = own
        self.saved.clear()

    def enter(self, layer):
        """The context of a direct call of `layer` in the step, or None if the model does
        not track it."""
        if id(layer) not in self.covered:
            return None
        self._live()
        return self._call(layer)

    @contextlib.contextmanager
    def _call(self, layer):
        context = layer_base._CallContext([None, None], self.ctx.next_rng())
        layer_base._call_context.current = context
        try:
            yield
        finally:
            layer_base._call_context.current = None
        if isinstance(layer, Functional):
            leaves = layer._weighted_layers() if layer._input_struct is not None else []
        else:
            leaves = [layer] if layer._weights else []
        missing = [sub for sub in leaves if id(sub) not in self.in_layout]
        if missing:
            owner = type(self.model).__name__
            raise ValueError(
                f"layer {layer.name!r} ({type(layer).__name__}) is called in {owner}'s "
                f"{self.kind} step but was not built when {owner}'s variables were made "
                f"(layer {missing[0].name!r} has no place in them), so its weights would not "
                "train: build it in __init__ (call it on an Input, or layer.build(shape)).")


def _trace_chain(trace) -> list:
    chain = []
    while trace is not None and all(t is not trace for t in chain):
        chain.append(trace)
        trace = getattr(trace, "parent_trace", None)
    return chain


def _alive(tree) -> bool:
    """False if the arrays are tracers of a trace nested in the current one that has
    ended: a `jax.grad` the step has left. Its trace descends from a trace still active
    but is not active itself. Anything jax does not let us see stays alive."""
    try:
        from jax._src import core as jax_core

        current = jax_core.trace_ctx.trace
    except (ImportError, AttributeError):
        return True
    trace = next((getattr(leaf, "_trace", None) for leaf in jax.tree_util.tree_leaves(tree)
                  if isinstance(leaf, jax.core.Tracer)), None)
    if trace is None:
        return True
    active = {id(t) for t in _trace_chain(current)}
    if id(trace) in active:
        return True
    return not any(id(t) in active for t in _trace_chain(trace)[1:])


@contextlib.contextmanager
def bound_layers(steps, ctx: StepContext, kind: str, trainable, non_trainable):
    """Bind the model's layers to the step's variables while its step is traced."""
    bound = BoundLayers(steps.model, steps.layout, ctx, kind)
    ctx.bound = bound
    outer = getattr(layer_base._step_scope, "current", None)
    layer_base._step_scope.current = bound
    try:
        bound.bind_lists(trainable, non_trainable, f"{type(steps.model).__name__}.{kind}_step")
        yield bound
    finally:
        layer_base._step_scope.current = outer
        bound.restore()


def _bound(model):
    """The step's layer binding when `model` is the model whose step is traced."""
    ctx = current()
    bound = None if ctx is None else getattr(ctx, "bound", None)
    return bound if bound is not None and bound.model is model else None


# ---------------------------------------------------------------------------- structures


def _flat_outputs(model, y_pred) -> list:
    if isinstance(y_pred, tuple):
        y_pred = list(y_pred)
    if isinstance(y_pred, (dict, list)):
        return model._output_struct.unpack(y_pred, model.output_names, "outputs")
    return [y_pred]


def _flat_per_output(model, value) -> list:
    """Targets or sample weights, one per output (None where none is given)."""
    names = model.output_names
    if value is None:
        return [None] * len(names)
    if isinstance(value, dict):
        return [value.get(k) for k in names]
    if isinstance(value, (list, tuple)) and len(names) > 1:
        return list(value)
    return [value] * len(names) if len(names) > 1 else [value]


def _describe(value) -> str:
    if isinstance(value, Mapping):
        return f"a dict with keys {sorted(map(str, value))}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} items"
    if hasattr(value, "shape"):
        return f"an array of shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r}"


def flatten_logs(logs: Mapping, what: str) -> dict:
    """Nested dicts merged into one, as Keras's logs are (a `CompileMetrics` result)."""
    out = {}
    for key, value in logs.items():
        if isinstance(value, Mapping):
            out.update(flatten_logs(value, what))
            continue
        try:
            value = jnp.asarray(value)
        except TypeError:
            raise TypeError(f"{what}: logs[{key!r}] must be a number or an array, got "
                            f"{_describe(value)}") from None
        if not (jnp.issubdtype(value.dtype, jnp.number) or value.dtype == jnp.bool_):
            raise TypeError(f"{what}: logs[{key!r}] must be numeric, got dtype {value.dtype}")
        out[str(key)] = _strong(value, value.dtype)
    return out


def _checked_list(what, field, got, ref, names) -> list:
    if not isinstance(got, (list, tuple)):
        raise TypeError(f"{what} must return {field} as a list of arrays (as it receives "
                        f"them), got {_describe(got)}")
    if len(got) != len(ref):
        raise ValueError(f"{what} returned {len(got)} {field}, but received {len(ref)}: the "
                         "state it returns must match the state it was given, entry by entry")
    out = []
    for i, (value, r) in enumerate(zip(got, ref)):
        try:
            value = jnp.asarray(value)
        except TypeError:
            raise TypeError(f"{what}: {field}[{i}] ({names(i)}) must be an array, got "
                            f"{_describe(value)}") from None
        if value.shape != r.shape:
            raise ValueError(f"{what}: {field}[{i}] ({names(i)}) has shape {value.shape}, but "
                             f"it was given with shape {r.shape}")
        out.append(_strong(value, r.dtype))
    return out


def _strong(value, dtype):
    """`value` as `dtype`, never weakly typed: the scan carrying it wants one exact type."""
    return jax.lax.convert_element_type(value, dtype)


# ---------------------------------------------------------------------------- compiled metrics


class CompileMetrics(metrics_mod.Metric):
    """Keras's `compile_metrics`: every metric given to compile(), as one metric whose
    variables are theirs in order and whose result is a dict by log name."""

    _row_args = None  # rows are weighted per output, in update

    def __init__(self, model, objective):
        self.kwargs = {}
        self.name = "compile_metrics"
        self._model = model
        self._objective = objective

    def init(self):
        return tuple(metric.init() for _, metric, _, _ in self._objective.metrics)

    def update(self, state, y_true, y_pred, sample_weight=None):
        ys = _flat_per_output(self._model, y_true)
        preds = _flat_outputs(self._model, y_pred)
        sws = _flat_per_output(self._model, sample_weight)
        record = record_for(self._model, y_pred)
        masks = record["masks"] if record is not None else [None] * len(preds)
        new = []
        for (i, metric, _, weighted), part in zip(self._objective.metrics, state):
            if ys[i] is None:
                new.append(part)
                continue
            pred = preds[i]
            if jnp.issubdtype(pred.dtype, jnp.floating):
                pred = pred.astype(jnp.float32)
            mask = masks[i] if metric.uses_output_mask else None
            weight = metrics_mod.combine_weights(sws[i] if weighted else None, row_mask(pred),
                                                 mask)
            new.append(metric.update(part, ys[i], pred, weight))
        return tuple(new)

    def result(self, state):
        return {name: metric.result(part)
                for (_, metric, name, _), part in zip(self._objective.metrics, state)}

    def get_config(self):
        return {"name": self.name}


# ---------------------------------------------------------------------------- user-facing pieces


def stateless_call(model, trainable_variables, non_trainable_variables, inputs,
                   training=None, rng=None, return_losses=False):
    """`(outputs, non_trainable_variables)`: the model run on variables given as lists."""
    if getattr(model, "_input_struct", None) is None:
        model._maybe_build(inputs)
    ctx = current()
    steps = ctx.steps if ctx is not None and ctx.steps.model is model else None
    if steps is not None and steps.layout is not None:
        lay, hidden = steps.layout, ctx.hidden
    else:
        variables = model.variables
        lay, hidden = VariableLayout.of_model(model, variables), \
            VariableLayout.hidden(variables.get("state", {}))
    train, frozen, mstate = lay.dicts(trainable_variables, non_trainable_variables, hidden,
                                      f"{type(model).__name__}.stateless_call")
    params = merge_params(train, frozen)
    if rng is None and ctx is not None:
        rng = ctx.next_rng()
    if rng is None and model._eager_call_draws(training):
        rng = jg_random.next_key()
    first = jax.tree_util.tree_leaves(inputs)
    valid = row_mask(first[0]) if first else None
    terms: list = []
    outputs, new_state, extra, masks = run_model(
        model, {"params": params, "state": mstate}, inputs, training=training,
        rng=jg_random.as_key(rng), with_masks=True, valid=valid, loss_terms=terms)
    flat_state = flatten_dict(new_state)
    flat_frozen = flatten_dict(frozen)
    new_non_trainable = [flat_frozen[k] if k in lay.frozen else flat_state[k]
                         for k in lay.nontrain_keys]
    bound = _bound(model)
    if bound is not None:  # what compute_loss then calls runs on these variables
        bound.bind(params, new_state)
    # Keras's `model.losses`: only what was added, [] for a model without any.
    losses = terms + ([regularization_loss(model, params, mstate)]
                      if _has_regularizers(model) else [])
    if ctx is not None:
        ctx.records[id(model)] = {"outputs": outputs, "masks": masks, "losses": losses,
                                  "output_losses": {}}
    if return_losses:
        return outputs, new_non_trainable, losses
    return outputs, new_non_trainable


def _has_regularizers(model) -> bool:
    return any(w.regularizer is not None for layer, _ in layout(model)[0]
               for w in layer._weights)


def compute_loss(model, x=None, y=None, y_pred=None, sample_weight=None, training=True):
    """Keras's `Model.compute_loss`: the compiled loss(es), weighted, plus the losses the
    model's latest `stateless_call` in this step added (add_loss, regularizers)."""
    trainer = model._require_compiled("compute_loss")
    objective = trainer.objective
    ctx = current()
    record = record_for(model, y_pred)
    total = jnp.zeros((), jnp.float32)
    if any(fn is not None for fn in objective.loss_fns):
        if y_pred is None:
            raise ValueError(f"{type(model).__name__}.compute_loss needs y_pred (the model's "
                             "outputs) to compute the compiled loss")
        names = model.output_names
        preds = _flat_outputs(model, y_pred)
        ys = _flat_per_output(model, y)
        sws = _flat_per_output(model, sample_weight)
        masks = record["masks"] if record is not None else [None] * len(names)
        weights = objective.loss_weights
        if ctx is not None and ctx.loss_weights is not None:
            weights = ctx.loss_weights
        for i, fn in enumerate(objective.loss_fns):
            if fn is None:
                continue
            if ys[i] is None:
                raise ValueError(f"{type(model).__name__}.compute_loss: output {names[i]!r} "
                                 "has a compiled loss but no target y was given")
            pred = preds[i]
            losses_mod.validate(fn, tuple(jnp.shape(ys[i])), tuple(jnp.shape(pred)), names[i],
                                y_true_dtype=jnp.result_type(ys[i]))
            if jnp.issubdtype(pred.dtype, jnp.floating):
                pred = pred.astype(jnp.float32)
            value = losses_mod.batch_loss(fn, ys[i], pred, sws[i], row_mask(pred),
                                          mask=masks[i], output=names[i])
            total = total + weights[i] * value
            if record is not None:
                record["output_losses"][objective.loss_log_name(i)] = value
    for value in () if record is None else record["losses"]:
        total = total + value
    return total


def stateless_apply(trainer, optimizer_variables, grads, trainable_variables):
    """`(trainable_variables, optimizer_variables)` after one optimizer update."""
    steps = trainer.steps
    ctx = current()
    in_step = ctx is not None and ctx.steps is steps and getattr(steps, "layout", None)
    if in_step:
        lay, opt_def = steps.layout, steps.opt_def
    else:
        ts = trainer.ensure_state()
        lay = VariableLayout(trainer.model, ts["train"], ts["frozen"], ts["mstate"])
        opt_def = jax.tree_util.tree_structure(ts["opt"])
    what = "optimizer.stateless_apply"
    for label, values in (("grads", grads), ("trainable_variables", trainable_variables)):
        if not isinstance(values, (list, tuple)) or len(values) != len(lay.train_keys):
            raise ValueError(f"{what}: {label} must be a list of {len(lay.train_keys)} arrays, "
                             f"one per trainable variable; got {_describe(values)}")
    if len(optimizer_variables) != opt_def.num_leaves:
        raise ValueError(f"{what}: the optimizer has {opt_def.num_leaves} variables, got "
                         f"{len(optimizer_variables)}")
    params = unflatten_dict(dict(zip(lay.train_keys, trainable_variables)))
    grads = unflatten_dict(dict(zip(lay.train_keys, grads)))
    opt_state = jax.tree_util.tree_unflatten(opt_def, list(optimizer_variables))
    updates, opt_state = trainer.tx.update(grads, opt_state, params)
    params = steps._constrain(optax.apply_updates(params, updates))
    flat = flatten_dict(params)
    return [flat[k] for k in lay.train_keys], jax.tree_util.tree_leaves(opt_state)


def _records(model, y_pred):
    """What the step noted about `model`'s call inside a differentiated function (the
    outputs' masks, each output's loss): handed out through `has_aux`, since values
    traced there are no use outside it."""
    record = record_for(model, y_pred)
    return None if record is None else (record["masks"], record["output_losses"])


def _restore_records(model, y_pred, records) -> None:
    ctx = current()
    if ctx is not None and records is not None:
        masks, output_losses = records
        ctx.records[id(model)] = {"outputs": y_pred, "masks": masks, "losses": [],
                                  "output_losses": output_losses}


class StatelessMixin:
    """Keras 3's JAX-backend model API for custom steps: stateless calls on variable
    lists, the default steps a user's step may call through `super()`, `metrics`."""

    @property
    def trainable_variables(self) -> list:
        return self.trainable_weights

    @property
    def non_trainable_variables(self) -> list:
        return self.non_trainable_weights

    def stateless_call(self, trainable_variables, non_trainable_variables, *args,
                       return_losses=False, **kwargs):
        if len(args) != 1:
            raise TypeError("stateless_call(trainable_variables, non_trainable_variables, "
                            f"inputs, training=..., ...) takes one inputs argument, got "
                            f"{len(args)}")
        training = kwargs.pop("training", None)
        rng = kwargs.pop("rng", None)
        if kwargs:
            raise TypeError(f"stateless_call got unexpected keyword arguments {sorted(kwargs)}")
        return stateless_call(self, trainable_variables, non_trainable_variables, args[0],
                              training=training, rng=rng, return_losses=return_losses)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return compute_loss(self, x, y, y_pred, sample_weight, training)

    @property
    def losses(self) -> list:
        """Keras's `model.losses` inside a step: what the model's latest `stateless_call`
        added (add_loss and activity terms, weight regularization); [] elsewhere."""
        ctx = current()
        record = None if ctx is None else ctx.records.get(id(self))
        return [] if record is None else list(record["losses"])

    @property
    def metrics(self) -> list:
        """Keras's order: the loss tracker and the compiled metrics once compiled, then
        metrics held as attributes of the model (trackers made in `__init__`)."""
        out = []
        trainer = self.__dict__.get("_trainer")
        if trainer is not None:
            out.append(trainer.loss_tracker)
            if trainer.compile_metrics is not None:
                out.append(trainer.compile_metrics)
            out += trainer.output_loss_trackers
        for value in list(vars(self).values()):
            for item in (value if isinstance(value, (list, tuple)) else [value]):
                if isinstance(item, metrics_mod.Metric) and all(item is not m for m in out):
                    out.append(item)
        return out

    @property
    def metrics_variables(self) -> list:
        return [v for metric in self.metrics for v in metric.variables]

    def reset_metrics(self) -> None:
        for metric in self.metrics:
            metric.reset_state()

    def get_metrics_result(self) -> dict:
        out = {}
        for metric in self.metrics:
            value = metric.result()
            if isinstance(value, dict):
                out.update(value)
            else:
                out[metric.name] = value
        return out

    def compute_metrics(self, x, y, y_pred, sample_weight=None) -> dict:
        """Keras's: update the compiled metrics, return every metric's result (inside
        Keras's default steps, on the step's metric state)."""
        trainer = self.__dict__.get("_trainer")
        if trainer is not None and trainer.compile_metrics is not None:
            trainer.compile_metrics.update_state(y, y_pred, sample_weight)
        return self.get_metrics_result()

    def _update_metrics_variables(self, metrics_variables, loss, x, y, y_pred,
                                  sample_weight):
        """Keras's: the loss trackers take the loss and each output's loss (weighted by
        the batch's rows), then `compute_metrics`; `(logs, new metrics_variables)`."""
        trainer = self.__dict__.get("_trainer")
        record = record_for(self, y_pred)
        per_output = {} if record is None else record["output_losses"]
        rows = row_count(jax.tree_util.tree_leaves(x)[0])
        with MetricScope(self.metrics, metrics_variables) as scope:
            if trainer is not None:
                if scope.covers(trainer.loss_tracker):
                    trainer.loss_tracker.update_state(loss, sample_weight=rows)
                for tracker in trainer.output_loss_trackers:
                    if scope.covers(tracker) and tracker.name in per_output:
                        tracker.update_state(per_output[tracker.name], sample_weight=rows)
            logs = self.compute_metrics(x, y, y_pred, sample_weight)
        return logs, scope.variables()

    def stateless_compute_loss(self, trainable_variables, non_trainable_variables,
                               metrics_variables, x=None, y=None, y_pred=None,
                               sample_weight=None, training=True):
        """Keras's: `compute_loss` with the model's variables and metric state in scope (an
        override may call layers the model holds and update trackers): `(loss,
        (trainable_variables, non_trainable_variables, metrics_variables))`."""
        bound = _bound(self)
        if bound is not None:
            bound.bind_lists(trainable_variables, non_trainable_variables,
                             f"{type(self).__name__}.stateless_compute_loss")
        with MetricScope(self.metrics, metrics_variables) as scope:
            loss = self.compute_loss(x, y, y_pred, sample_weight, training=training)
        if bound is not None:
            non_trainable_variables = bound.updated(non_trainable_variables)
        return loss, (trainable_variables, non_trainable_variables, scope.variables())

    def train_step(self, state, data):
        """Keras's default train step, in the JAX backend's stateless form."""
        trainable, non_trainable, optimizer_variables, metrics_variables = state
        x, y, sample_weight = unpack_x_y_sample_weight(data)

        def loss_and_updates(trainable, non_trainable, metrics_variables):
            y_pred, non_trainable = self.stateless_call(trainable, non_trainable, x,
                                                        training=True)
            loss, (_, non_trainable, metrics_variables) = self.stateless_compute_loss(
                trainable, non_trainable, metrics_variables, x, y, y_pred, sample_weight,
                training=True)
            return loss, (y_pred, non_trainable, metrics_variables, _records(self, y_pred))

        (loss, (y_pred, non_trainable, metrics_variables, records)), grads = \
            jax.value_and_grad(loss_and_updates, has_aux=True)(trainable, non_trainable,
                                                               metrics_variables)
        _restore_records(self, y_pred, records)
        trainable, optimizer_variables = self.optimizer.stateless_apply(
            optimizer_variables, grads, trainable)
        logs, metrics_variables = self._update_metrics_variables(
            metrics_variables, loss, x, y, y_pred, sample_weight)
        return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)

    def test_step(self, state, data):
        """Keras's default test step, in the JAX backend's stateless form."""
        trainable, non_trainable, metrics_variables = state
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        y_pred, non_trainable = self.stateless_call(trainable, non_trainable, x, training=False)
        loss, (_, non_trainable, metrics_variables) = self.stateless_compute_loss(
            trainable, non_trainable, metrics_variables, x, y, y_pred, sample_weight,
            training=False)
        logs, metrics_variables = self._update_metrics_variables(
            metrics_variables, loss, x, y, y_pred, sample_weight)
        return logs, (trainable, non_trainable, metrics_variables)

    def predict_step(self, state, data):
        """Keras's default predict step: `(outputs, non_trainable_variables)`."""
        trainable, non_trainable = state
        x, _, _ = unpack_x_y_sample_weight(data)
        return self.stateless_call(trainable, non_trainable, x, training=False)


# ---------------------------------------------------------------------------- the steps


def _spec(a):
    weak = getattr(a, "weak_type", None)
    if weak is None:
        weak = getattr(getattr(a, "aval", None), "weak_type", False)
    return jax.ShapeDtypeStruct(tuple(a.shape), a.dtype, weak_type=bool(weak))


def _zeros(spec):
    return jnp.zeros(spec.shape, spec.dtype)


class CustomSteps(Steps):
    """`Steps` whose train / eval / predict steps named in `which` ("train", "test",
    "predict") run the model's `train_step` / `test_step` / `predict_step` (its own or
    Keras's default); the others stay the built-in ones."""

    def __init__(self, model, objective, tx, distribution=None, which=frozenset()):
        super().__init__(model, objective, tx, distribution)
        self.which = frozenset(which)
        self.layout: VariableLayout | None = None
        self.opt_def = None
        self._metric_objects = None
        self._jaxprs: dict = {}

    # ------------------------------------------------------------------ metrics

    def metric_objects(self) -> list:
        """`model.metrics`, read once: its variables make `metrics_variables`."""
        if self._metric_objects is None:
            found = list(self.model.metrics)
            for m in found:
                if not isinstance(m, metrics_mod.Metric):
                    raise TypeError(
                        f"{type(self.model).__name__}.metrics must list jaxgraph metrics "
                        f"(jaxgraph.metrics.Mean(...), ...); got {type(m).__name__}")
            self._metric_objects = found
        return self._metric_objects

    def _custom_metrics(self) -> dict:
        return {"vars": [v for m in self.metric_objects() for v in m.stateless_reset_state()]}

    def init_metrics(self) -> dict:
        return self._custom_metrics() if "train" in self.which else super().init_metrics()

    def init_eval_metrics(self) -> dict:
        return self._custom_metrics() if "test" in self.which else super().init_metrics()

    def _metric_name(self, i: int) -> str:
        start = 0
        for m in self.metric_objects():
            count = len(m.variables)
            if i < start + count:
                return f"metric {m.name!r}"
            start += count
        return "?"

    def ordered_values(self, logs: dict) -> list:
        """Keras's `_flatten_metrics_in_order`: by `model.metrics`, then the rest sorted."""
        names = []
        for m in self.metric_objects():
            if isinstance(m, CompileMetrics):  # Keras: its metrics' own names
                names += [metric.name for _, metric, _, _ in m._objective.metrics]
            else:
                names.append(m.name)
        values = [logs[k] for k in names if k in logs]
        values += [logs[k] for k in sorted(logs) if k not in names]
        return values

    # ------------------------------------------------------------ the user's step, traced once

    def _set_layout(self, train, frozen, mstate) -> VariableLayout:
        if self.layout is None:
            self.layout = VariableLayout(self.model, train, frozen, mstate)
        return self.layout

    def _data(self, x, y, sw):
        """The step's `data` as Keras gives it: x, (x, y) or (x, y, sample_weight), each in
        the model's own structure."""
        model = self.model
        xs = model._input_struct.pack(list(x))
        if y is None or all(v is None for v in y):
            return xs
        ys = model._output_struct.pack(list(y))
        if sw is None or all(v is None for v in sw):
            return xs, ys
        return xs, ys, sw[0] if len(sw) == 1 else list(sw)

    def _jaxpr(self, kind, args):
        """The user's step traced for the shapes of `args` (arrays, tracers or specs):
        `(closed jaxpr, output tree, output shapes)`, made once per signature."""
        leaves, treedef = jax.tree_util.tree_flatten(args)
        specs = [_spec(a) for a in leaves]
        key = (kind, treedef, tuple((s.shape, s.dtype, s.weak_type) for s in specs))
        entry = self._jaxprs.get(key)
        if entry is None:
            closed, out_shape = jax.make_jaxpr(
                lambda a: self._trace_user(kind, a), return_shape=True)(
                    jax.tree_util.tree_unflatten(treedef, specs))
            entry = self._jaxprs[key] = (closed, jax.tree_util.tree_structure(out_shape),
                                         out_shape)
        return entry

    def _run_user(self, kind, args):
        closed, out_tree, _ = self._jaxpr(kind, args)
        out = jax.core.eval_jaxpr(closed.jaxpr, closed.consts, *jax.tree_util.tree_leaves(args))
        return jax.tree_util.tree_unflatten(out_tree, [jnp.asarray(o) for o in out])

    def _out_shape(self, kind, args):
        """The (logs, state) shapes the user's step returns for `args`."""
        return self._jaxpr(kind, args)[2]

    def _trace_user(self, kind, args):
        """Runs the user's method on tracers (once per signature) and checks its result."""
        model = self.model
        what = f"{type(model).__name__}.{kind}_step"
        self.trace_counts[f"{kind}_step"] += 1
        if kind == "train":
            train_l, nontrain_l, opt_l, metric_l, data, rng, valid, weights, hidden = args
            state = (list(train_l), list(nontrain_l), list(opt_l), list(metric_l))
        elif kind == "test":
            train_l, nontrain_l, metric_l, data, rng, valid, weights, hidden = args
            state = (list(train_l), list(nontrain_l), list(metric_l))
        else:
            train_l, nontrain_l, data, rng, hidden = args
            state, valid, weights = (list(train_l), list(nontrain_l)), None, None
        with StepContext(self, rng=rng, valid=valid, loss_weights=weights, hidden=hidden) as ctx, \
                bound_layers(self, ctx, kind, state[0], state[1]):
            out = getattr(model, f"{kind}_step")(state, data)
        lay = self.layout
        names = {"trainable_variables": lambda i: lay.name(lay.train_keys[i]),
                 "non_trainable_variables": lambda i: lay.name(lay.nontrain_keys[i]),
                 "optimizer_variables": lambda i: "an optimizer slot",
                 "metrics_variables": self._metric_name}
        fields = _FIELDS[kind]
        if kind == "predict":
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise TypeError(f"{what} must return (outputs, non_trainable_variables), got "
                                f"{_describe(out)}")
            outputs = jax.tree_util.tree_map(jnp.asarray, out[0])
            return outputs, _checked_list(what, fields[1], out[1], state[1], names[fields[1]])
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError(f"{what} must return a pair (logs, state), with state "
                            f"({', '.join(fields)}); got {_describe(out)}")
        logs, new_state = out
        if not isinstance(logs, Mapping):
            hint = ""
            if isinstance(logs, (tuple, list)) and isinstance(new_state, Mapping):
                hint = " (the two look swapped: return (logs, state), logs first)"
            raise TypeError(f"{what} must return (logs, state) with logs a dict of metric "
                            f"values; its logs are {_describe(logs)}{hint}")
        if not isinstance(new_state, (tuple, list)) or len(new_state) != len(fields):
            raise TypeError(f"{what} must return state as the tuple ({', '.join(fields)}) it "
                            f"receives; got {_describe(new_state)}")
        checked = tuple(_checked_list(what, f, got, ref, names[f])
                        for f, got, ref in zip(fields, new_state, state))
        return flatten_logs(logs, what), checked

    # ------------------------------------------------------------------ one step

    def _train_args(self, ts, x, y, sw, valid, rng):
        lay = self._set_layout(ts["train"], ts["frozen"], ts["mstate"])
        train_l, nontrain_l = lay.lists(ts["train"], ts["frozen"], ts["mstate"])
        opt_l, self.opt_def = jax.tree_util.tree_flatten(ts["opt"])
        return (train_l, nontrain_l, opt_l, list(ts["metrics"]["vars"]), self._data(x, y, sw),
                rng, valid, ts["loss_weights"], VariableLayout.hidden(ts["mstate"]))

    def prepare_train(self, ts: dict, staged, batch_size: int, padded: bool) -> None:
        """Trace the user's train step now, for fit's batches (one trace, reused by the
        program): a step that returns the wrong structure fails before the first epoch."""
        def rows(arrays):
            return [None if a is None else
                    jax.ShapeDtypeStruct((batch_size,) + tuple(a.shape[1:]), a.dtype)
                    for a in arrays]

        valid = jax.ShapeDtypeStruct((batch_size,), jnp.float32) if padded else None
        self._jaxpr("train", self._train_args(ts, rows(staged.xs), rows(staged.ys),
                                              rows(staged.sws), valid, _spec(ts["rng"])))

    def custom_train_step(self, ts: dict, x, y, sw, valid):
        """The user's train step on the training state: `(new state, logs)`."""
        rng = jax.random.fold_in(ts["rng"], ts["step"])
        args = self._train_args(ts, x, y, sw, valid, rng)
        logs, (train_l, nontrain_l, opt_l, metric_l) = self._run_user("train", args)
        train, frozen, mstate = self.layout.dicts(train_l, nontrain_l, args[-1])
        opt = jax.tree_util.tree_unflatten(self.opt_def, opt_l)
        return {**ts, "train": train, "frozen": frozen, "mstate": mstate, "opt": opt,
                "step": ts["step"] + 1, "metrics": {**ts["metrics"], "vars": metric_l}}, logs

    def _eval_args(self, ms, params, mstate, x, y, sw, valid, rng):
        train, frozen = split_params(params, self.mask(params))
        lay = self._set_layout(train, frozen, mstate)
        train_l, nontrain_l = lay.lists(train, frozen, mstate)
        weights = jnp.asarray(self.objective.loss_weights, jnp.float32)
        return (train_l, nontrain_l, list(ms["vars"]), self._data(x, y, sw), rng, valid,
                weights, VariableLayout.hidden(mstate))

    def custom_eval_step(self, ms: dict, params, mstate, x, y, sw, valid):
        """The user's test step on the metric state: `(new metric state, logs)`. What it
        returns for the model's variables is dropped: evaluation leaves them as they are."""
        rng = None
        if EVAL_RNG in ms:
            key, rng = jax.random.split(jax.random.wrap_key_data(ms[EVAL_RNG]))
            ms = {**ms, EVAL_RNG: jax.random.key_data(key)}
        args = self._eval_args(ms, params, mstate, x, y, sw, valid, rng)
        logs, (_, _, metric_l) = self._run_user("test", args)
        return {**ms, "vars": metric_l}, logs

    def predict_step(self, params, mstate, x, rng=None):
        if "predict" not in self.which:
            return super().predict_step(params, mstate, x, rng)
        train, frozen = split_params(params, self.mask(params))
        lay = self._set_layout(train, frozen, mstate)
        train_l, nontrain_l = lay.lists(train, frozen, mstate)
        data = self.model._input_struct.pack(list(x))
        outputs, _ = self._run_user("predict", (train_l, nontrain_l, data, rng,
                                                VariableLayout.hidden(mstate)))
        return outputs

    # ------------------------------------------------------------------ several steps

    def custom_train_chunk(self, ts, data, idx_all, valid_all, active_all, c, masked=True):
        """`Steps.train_chunk` with the user's step: `(state, logs of the chunk's last
        active step)`; the logs are carried through the scan next to the state."""
        fetch, idx, valid, active, ts = self.chunk_inputs(ts, data, idx_all, valid_all,
                                                          active_all, c)
        if idx.shape[0] == 1:
            x, y, sw = fetch(data, idx[0])
            return self.custom_train_step(ts, x, y, sw, None if valid is None else valid[0])

        x, y, sw = jax.eval_shape(fetch, data, idx[0])
        v0 = None if valid is None else _spec(valid[0])
        args = self._train_args(ts, x, y, sw, v0, _spec(ts["rng"]))
        logs0 = jax.tree_util.tree_map(_zeros, self._out_shape("train", args)[0])

        def step(carry, x, y, sw, v):
            return self.custom_train_step(carry[0], x, y, sw, v)

        return scan_steps(step, fetch, data, (ts, logs0), idx, valid, active, masked)

    def custom_eval_chunk(self, ms, params, mstate, data, idx_all, valid_all, c):
        """`Steps.eval_chunk` with the user's step: `(metric state, logs)`. A step whose
        rows are all padding (a chunk's tail) is skipped, so trackers never see it."""
        idx = jax.lax.dynamic_index_in_dim(idx_all, c, keepdims=False)
        valid = _chunk(valid_all, c)
        if idx.shape[0] == 1:
            x, y, sw = self.gather(data, idx[0])
            return self.custom_eval_step(ms, params, mstate, x, y, sw,
                                         None if valid is None else valid[0])

        x, y, sw = jax.eval_shape(self.gather, data, idx[0])
        v0 = None if valid is None else _spec(valid[0])
        rng = None if EVAL_RNG not in ms else _spec(jax.random.key(0))
        args = self._eval_args(ms, params, mstate, x, y, sw, v0, rng)
        logs0 = jax.tree_util.tree_map(_zeros, self._out_shape("test", args)[0])

        def body(carry, inp):
            i, v = inp

            def run(carry):
                x, y, sw = self.gather(data, i)
                return self.custom_eval_step(carry[0], params, mstate, x, y, sw, v)

            if v is None:
                return run(carry), None
            return jax.lax.cond(jnp.any(v > 0), run, lambda carry: carry, carry), None

        (ms, logs), _ = jax.lax.scan(body, (ms, logs0), (idx, valid))
        return ms, logs

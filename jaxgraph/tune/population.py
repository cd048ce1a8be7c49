"""Populations: K copies of one architecture trained as ONE compiled, vmapped program.

The training state of `fit` is a pytree whose optimizer part holds the learning rate
and the other float hyperparameters as arrays (optax.inject_hyperparams) and whose
`loss_weights` is an array too. Stacking K states along a new leading axis and
`jax.vmap`-ing fit's own epoch program over it trains K trials at the cost of one
compile, with member i following exactly the steps `fit` would take for it: same
initial weights, same batches in the same order, same dropout keys.

Dropout rates vary too. A layer's `traced_attributes` (the `rate` of Dropout,
SpatialDropout*, GaussianDropout, AlphaDropout; GaussianNoise's `stddev`) are
Python constants of a single model's program, but the model state may carry
per-layer overrides (`lowering.executor.OVERRIDES`) that `apply` hands to the layer
as arrays; a population puts each member's rates there, so they are vmapped like
the learning rate and one compile serves every rate. (Only rates that differ between
members become arrays; the others stay constants. A varying layer takes its dropout
key in every member: a `Dropout` always does, so members equal their own fits, but
SpatialDropout*, GaussianDropout, AlphaDropout and GaussianNoise skip it at rate 0,
so in a member with rate 0 there, later random layers get other, equally
distributed, keys than in that member's own fit.)

Two ways to say what varies:

- `build_fn` takes no argument (or is a compiled Model): each `hyperparameters` row
  names optimizer floats (`learning_rate`/`lr`, `beta_1`, `momentum`, ...) and
  `loss_weights`, written by name into the stacked state.
- `build_fn(hp)` takes a `tune.HyperParameters` (the tuners' build functions work
  as they are): member i is `build_fn(HyperParameters(values=row i))`, so a rate
  read with `layers.Dropout(hp.Float('dropout', 0.0, 0.8))` varies, as do the
  optimizer's floats and the loss weights, whatever the hyperparameters are called.
  All K members are built (building is cheap; nothing is compiled) and compared:
  they must be the same program up to those values. The differing values are read
  off each member's own layers, optimizer and loss weights, and member 0's model is
  trained with them. A hyperparameter that changes anything else (units, layers,
  activations, the optimizer's class) is rejected with its name, as are varying
  `batch_size` / `epochs` (pass those to `train_population`); such values need
  separate populations (or `RandomSearch` / `TPESearch`).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import inspect
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from .. import random as jg_random
from ..lowering.executor import OVERRIDES, RUN_ONCE
from ..training import data as data_mod
from ..training import optimizers as optimizers_mod
from ..training.trainer import unique_buffers

_ALIASES = {"lr": "learning_rate"}
_RATES = ("dropout", "rate", "dropout_rate")
_ARCHITECTURE = ("units", "layers")
_LOOP = ("batch_size", "epochs")
_DEFAULT_BATCH = 32


# ---------------------------------------------------------------------------- helpers


def _hyperparameter_names(opt_state) -> list[str]:
    """Names of the hyperparameters held as arrays in an optax state (inject_hyperparams)."""
    names: list[str] = []

    def injected(node):
        fields = getattr(node, "_fields", ())
        return isinstance(node, tuple) and "hyperparams" in fields and "inner_state" in fields

    def walk(tree):
        for node in jax.tree_util.tree_leaves(tree, is_leaf=injected):
            if injected(node):
                names.extend(k for k in node.hyperparams if k not in names)
                walk(node.inner_state)

    walk(opt_state)
    return names


def _rows(hyperparameters) -> list[dict]:
    """A list of per-member dicts from a list of dicts or a dict of equal-length arrays."""
    if isinstance(hyperparameters, dict):
        if not hyperparameters:
            raise ValueError("hyperparameters is an empty dict; give at least one name")
        lengths = {k: len(np.atleast_1d(np.asarray(v, dtype=object)))
                   if k != "loss_weights" else len(v) for k, v in hyperparameters.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"hyperparameters given as a dict of arrays must have one length; "
                             f"got {lengths}")
        k = next(iter(lengths.values()))
        return [{name: values[i] for name, values in hyperparameters.items()} for i in range(k)]
    if isinstance(hyperparameters, (list, tuple)):
        rows = list(hyperparameters)
        if not rows:
            raise ValueError("hyperparameters is an empty list; a population needs members")
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise TypeError(f"hyperparameters[{i}] must be a dict, got {row!r}")
        keys = set(rows[0])
        for i, row in enumerate(rows):
            if set(row) != keys:
                raise ValueError(f"hyperparameters[{i}] has keys {sorted(row)}, but "
                                 f"hyperparameters[0] has {sorted(keys)}; every member must "
                                 "set the same names")
        return [dict(r) for r in rows]
    raise TypeError("hyperparameters must be a list of dicts or a dict of arrays, got "
                    f"{type(hyperparameters).__name__}")


def _resolve_model(build_fn):
    from ..models import Model

    model = build_fn if isinstance(build_fn, Model) else None
    if model is None:
        if not callable(build_fn):
            raise TypeError(f"build_fn must be a compiled Model or a callable returning one, "
                            f"got {build_fn!r}")
        model = build_fn()
    if not isinstance(model, Model):
        raise TypeError(f"build_fn() must return a jaxgraph Model, got {type(model).__name__}")
    trainer = getattr(model, "_trainer", None)
    if trainer is None:
        raise ValueError(f"Model {model.name!r} is not compiled; call model.compile(...) in "
                         "build_fn")
    if trainer.distribution is not None:
        raise ValueError("Populations run on one device; unset the distribution "
                         "(jaxgraph.distribution.set_distribution(None)) for this model")
    return model, trainer


def _stack(tree, k: int):
    return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (k,) + jnp.shape(a)), tree)


def _index(tree, i: int):
    """Member i's slice, cut on the host: one transfer, no per-shape slicing program."""
    return jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)[i]), tree)


# ---------------------------------------------------------------------------- the engine


class _Engine:
    """fit's epoch programs, vmapped over the leading (member) axis of the state."""

    def __init__(self, model, trainer, k: int):
        self.model = model
        self.trainer = trainer
        self.steps = trainer.steps
        self.k = k

    def prepare(self, x, y, sample_weight, class_weight, batch_size, validation_data,
                validation_split, validation_batch_size, shuffle):
        from ..training.loop import _val_arrays

        model, trainer = self.model, self.trainer
        if data_mod.is_batch_stream(x):
            raise ValueError("Populations need arrays (x, y), not a generator of batches")
        xs, ys, sws, n = model._prepare(trainer, x, y, sample_weight, class_weight)
        val = None
        if validation_data is None and validation_split:
            (xs, xv), (ys, yv), (sws, swv) = (data_mod.split_validation(xs, validation_split),
                                              data_mod.split_validation(ys, validation_split),
                                              data_mod.split_validation(sws, validation_split))
            n = xs[0].shape[0]
            val = (xv, yv, swv, xv[0].shape[0])
        elif validation_data is not None:
            if data_mod.is_batch_stream(validation_data):
                raise ValueError("Populations need validation_data as arrays (x_val, y_val)")
            val = _val_arrays(model, trainer, validation_data)
        self.batch_size = int(batch_size or _DEFAULT_BATCH)
        self.n_steps = math.ceil(n / self.batch_size)
        self.chunk = trainer.choose_k(self.n_steps, False, False)
        self.masked = self.n_steps % self.chunk != 0
        self.staged = data_mod.Staged.put(xs, ys, sws)
        # fit's own step layout, so members see exactly the batches fit would give them.
        self.plan = trainer.epoch_plan(n, self.batch_size, self.n_steps, self.chunk,
                                       bool(shuffle))
        self.val_staged = None
        if val is not None:
            self.val_staged = data_mod.Staged.put(*val[:3])
            vb = int(validation_batch_size or self.batch_size)
            vsteps = math.ceil(self.val_staged.n / vb)
            vk = 1 if self.chunk == 1 else vsteps  # as fit's evaluation chooses
            self.val_plan = trainer.epoch_plan(self.val_staged.n, vb, vsteps, vk, False)

    def _program(self, key, make):
        """Compiled programs live on the trainer, so later populations of this compiled
        model (any size K: jit retraces only for new shapes) reuse them."""
        cache = self.trainer.__dict__.setdefault("_population_programs", {})
        if key not in cache:
            cache[key] = make()
        return cache[key]

    @property
    def train_fn(self):
        def make():
            chunk = functools.partial(self.steps.train_chunk, masked=self.masked)
            return jax.jit(jax.vmap(chunk, in_axes=(0, None, None, None, None, None)),
                           donate_argnums=0)

        return self._program(("train", self.masked), make)

    @property
    def eval_fn(self):
        steps = self.steps

        def eval_chunk(ms, params, mstate, lw, data, idx_all, valid_all, c):
            # Steps.eval_chunk with the member's own loss weights.
            idx = jax.lax.dynamic_index_in_dim(idx_all, c, keepdims=False)
            valid = None if valid_all is None else jax.lax.dynamic_index_in_dim(
                valid_all, c, keepdims=False)  # None: every batch is full

            def one(ms, i, v):
                x, y, sw = steps.gather(data, i)
                total, per, outs, _ = steps.losses(params, mstate, x, y, sw, v, None, False,
                                                   lw)
                return steps.update_metrics(ms, total, per, y, outs, sw, v)

            if idx.shape[0] == 1:
                return one(ms, idx[0], None if valid is None else valid[0])
            ms, _ = jax.lax.scan(lambda m, iv: (one(m, *iv), None), ms, (idx, valid))
            return ms

        return self._program(("eval",), lambda: jax.jit(
            jax.vmap(eval_chunk, in_axes=(0, 0, 0, 0, None, None, None, None))))

    @property
    def results_fn(self):
        return self._program(("results",), lambda: jax.jit(jax.vmap(self.steps.results)))

    def fresh_metrics(self):
        return unique_buffers(_stack(self.steps.init_metrics(), self.k))

    def run(self, ts, epochs: int, data_seed: int, verbose: int, objective: str | None):
        histories = [collections.defaultdict(list) for _ in range(self.k)]
        data = (self.staged.xs, self.staged.ys, self.staged.sws)
        for epoch in range(epochs):
            ts["metrics"] = self.fresh_metrics()
            idx = self.plan.indices(data_seed, epoch)
            for c in range(self.plan.chunks):
                ts = self.train_fn(ts, data, idx, self.plan.valid, self.plan.active, c)
            logs = dict(self.results_fn(ts["metrics"]))
            if self.val_staged is not None:
                variables = self.steps.variables_of(ts)
                vdata = (self.val_staged.xs, self.val_staged.ys, self.val_staged.sws)
                vidx = self.val_plan.indices(0, 0)
                ms = self.fresh_metrics()
                for c in range(self.val_plan.chunks):
                    ms = self.eval_fn(ms, variables["params"], variables["state"],
                                      ts["loss_weights"], vdata, vidx, self.val_plan.valid, c)
                logs.update({f"val_{k}": v for k, v in self.results_fn(ms).items()})
            lr = optimizers_mod.get_learning_rate(ts["opt"])
            if lr is not None:
                logs["learning_rate"] = lr
            host = jax.device_get(logs)  # one transfer per epoch for the whole population
            for name, values in host.items():
                values = np.broadcast_to(np.asarray(values, np.float64), (self.k,))
                for i in range(self.k):
                    histories[i][name].append(float(values[i]))
            if verbose:
                key = objective if objective in host else "loss"
                vals = np.asarray(host[key], np.float64)
                print(f"Epoch {epoch + 1}/{epochs} - {key}: best {np.nanmin(vals):.4f}, "
                      f"median {np.nanmedian(vals):.4f}, worst {np.nanmax(vals):.4f} "
                      f"({self.k} members)")
        return ts, [dict(h) for h in histories]


# ---------------------------------------------------------------------------- results


class Population:
    """What `train_population` returns: per-member histories, variables and results."""

    def __init__(self, model, hyperparameters, histories, variables, seconds, trace_counts,
                 member_models=None):
        self.model = model
        self.hyperparameters = hyperparameters
        self.histories = histories
        self.variables = variables  # stacked: every leaf has a leading member axis
        self.seconds = seconds
        self.trace_counts = trace_counts
        # build_fn(hp) populations: each member's own compiled model (its rates, optimizer
        # and loss weights), built and checked anyway; None when only the weights differ.
        self._member_models = member_models

    def __len__(self):
        return len(self.histories)

    def member_variables(self, i: int) -> dict:
        """Member i's final `{'params', 'state'}` (for `model.apply`)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"Population has {len(self)} members; no member {i}")
        return _index(self.variables, i)

    def default_objective(self) -> str:
        return "val_loss" if "val_loss" in self.histories[0] else "loss"

    def scores(self, objective: str | None = None, direction: str | None = None) -> np.ndarray:
        """Each member's best epoch value of `objective` (default val_loss, else loss)."""
        from .objective import Objective

        obj = Objective(objective or self.default_objective(), direction)
        if obj.name not in self.histories[0]:
            raise ValueError(f"The objective {obj.name!r} was never logged; the logged keys "
                             f"are {sorted(self.histories[0])}")
        pick = np.nanmin if obj.minimize else np.nanmax
        return np.asarray([pick(h[obj.name]) for h in self.histories])

    def best(self, objective: str | None = None, direction: str | None = None) -> int:
        """Index of the best member."""
        from .objective import Objective

        obj = Objective(objective or self.default_objective(), direction)
        scores = self.scores(obj.name, obj.direction)
        return int(np.nanargmin(scores) if obj.minimize else np.nanargmax(scores))

    @property
    def results(self) -> list[dict]:
        """One row per member, like `Tuner.results` (all members share the seconds)."""
        scores = self.scores()
        return [{"number": i, "hyperparameters": dict(self.hyperparameters[i]),
                 "score": float(scores[i]), "status": "COMPLETE", "seconds": self.seconds,
                 "epochs": len(self.histories[i]["loss"])} for i in range(len(self))]

    def get_model(self, i: int):
        """Member i's model holding its trained weights, ready to predict, save or `fit`
        on. With a `build_fn(hp)` it is member i's own build, so its dropout rates,
        optimizer and loss weights are member i's (the optimizer state starts afresh);
        otherwise the members share one model and `get_model(i)` loads member i into it."""
        variables = self.member_variables(i)
        if self._member_models is None:
            self.model.variables = variables
            return self.model
        target = self._member_models[i]
        target.variables = _renamed(self.model, target, variables)
        return target

    def __repr__(self):
        return f"<Population of {len(self)} members of {self.model.name!r}>"


# ---------------------------------------------------------------------------- settings


class _Settings:
    """What differs between members, as per-member arrays for the stacked state."""

    def __init__(self):
        self.optimizer: dict[str, np.ndarray] = {}  # injected name -> (K,)
        self.loss_weights: np.ndarray | None = None  # (K, outputs)
        self.overrides: dict[str, dict[str, np.ndarray]] = {}  # layer -> attribute -> (K,)

    def write(self, ts: dict) -> dict:
        for name, values in self.optimizer.items():
            ts["opt"] = optimizers_mod.set_hyperparameter(ts["opt"], name, values)
        if self.loss_weights is not None:
            ts["loss_weights"] = jnp.asarray(self.loss_weights, jnp.float32)
        if self.overrides:
            ts["mstate"] = {**ts["mstate"], OVERRIDES: {
                layer: {a: jnp.asarray(v, jnp.float32) for a, v in attrs.items()}
                for layer, attrs in self.overrides.items()}}
        return ts


def _check_loop(rows):
    for name in rows[0]:
        if name in _LOOP and len({repr(r[name]) for r in rows}) > 1:
            raise ValueError(
                f"Hyperparameter {name!r} cannot vary inside a population: it sets the loop "
                f"of the program, which all members share. Pass {name}= to "
                "train_population and train one population per value, or use a tuner.")


def _named_settings(rows, model, opt_state) -> _Settings:
    """Rows that name optimizer floats and `loss_weights` directly (no-argument build_fn)."""
    from ..training.objective import _per_output

    available = _hyperparameter_names(opt_state)
    names = [_ALIASES.get(n, n) for n in rows[0]]
    if len(set(names)) != len(names):
        raise ValueError(f"hyperparameters name the same thing twice: {sorted(rows[0])}")
    settings = _Settings()
    for raw in rows[0]:
        name = _ALIASES.get(raw, raw)
        if name == "loss_weights":
            per = [np.asarray([float(w) for w in _per_output(r[raw], model.output_names,
                                                            "loss_weights", allow_missing=False)],
                              np.float32) for r in rows]
            settings.loss_weights = np.stack(per)
            continue
        if name in _RATES and name not in available:
            raise ValueError(
                f"Hyperparameter {raw!r} is not held in this optimizer's state. To vary a "
                "dropout rate, give train_population a build_fn(hp) that reads it, e.g. "
                f"layers.Dropout(hp.Float({raw!r}, 0.0, 0.8)): each member is then built "
                "from its own row and its rates become arrays of the state.")
        if name in _ARCHITECTURE:
            raise ValueError(
                f"Hyperparameter {raw!r} cannot vary inside a population: it changes the "
                "architecture, which is compiled into the program. Train one population per "
                "value, or use a tuner.")
        if name not in available:
            raise ValueError(
                f"Hyperparameter {raw!r} is not held in this optimizer's state; the optimizer "
                f"of model {model.name!r} holds {available} (plus 'loss_weights')."
                + ("" if available else " Use a jaxgraph.optimizers class, not raw optax."))
        try:
            values = np.asarray([float(r[raw]) for r in rows], np.float32)
        except (TypeError, ValueError) as e:
            raise ValueError(f"Hyperparameter {raw!r} must be a float for every member "
                             f"({e})") from e
        if not np.all(np.isfinite(values)):
            raise ValueError(f"Hyperparameter {raw!r} has non-finite values {values.tolist()}")
        settings.optimizer[name] = values
    return settings


# ---------------------------------------------------------------------------- build_fn(hp)


def _takes_hp(build_fn) -> bool:
    """Whether build_fn is a `build_fn(hp)` (one required positional parameter)."""
    from ..models import Model

    if isinstance(build_fn, Model) or not callable(build_fn):
        return False
    try:
        params = inspect.signature(build_fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in positional and p.default is p.empty for p in params) == 1


def _renamed(source, target, variables: dict) -> dict:
    """`source`'s variables keyed by `target`'s layer paths: members are one program (as
    `_signature` checked) whose layers may carry other automatic names."""
    from ..lowering.executor import _get_in, _set_in, layout

    out: dict = {"params": {}, "state": {}}
    for (_, src), (_, dst) in zip(layout(source)[0], layout(target)[0]):
        for part in out:
            try:
                value = _get_in(variables[part], src, part)
            except KeyError:  # the layer has nothing in this part (no state, say)
                continue
            _set_in(out[part], dst, value)
    return out


def _leaf_layers(model) -> list:
    """The model's distinct non-model layers, nested models walked, in graph order."""
    from ..graph.functional import Functional

    out, seen = [], set()

    def walk(m):
        for layer in m.layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if isinstance(layer, Functional):
                walk(layer)
            else:
                out.append(layer)

    walk(model)
    return out


def _signature(model, trainer):
    """Everything compiled into the program, with names made positional and the values
    a population may vary (traced layer attributes, optimizer floats, loss weights)
    left out; two members train as one program iff their signatures are equal."""
    traced = {layer.name: layer.traced_attributes for layer in _leaf_layers(model)
              if layer.traced_attributes}
    opt_state = trainer.tx.init({})
    injected = _hyperparameter_names(opt_state)
    compiled = dict(getattr(model, "_compile_config", None) or {})
    compiled.pop("loss_weights", None)
    opt = compiled.get("optimizer")
    if isinstance(opt, dict) and isinstance(opt.get("config"), dict):
        config = {k: v for k, v in opt["config"].items()
                  if not (k in injected and isinstance(v, (int, float)))}
        compiled["optimizer"] = {**opt, "config": config}
    names: dict[str, str] = {}

    def strip(node):
        if isinstance(node, dict):
            inner = node.get("config")
            if isinstance(inner, dict) and isinstance(inner.get("name"), str) \
                    and inner["name"] in traced:
                node = {**node, "config": {k: v for k, v in inner.items()
                                           if k not in traced[inner["name"]]}}
            if isinstance(node.get("name"), str):
                names.setdefault(node["name"], f"#{len(names)}")
            return {k: strip(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [strip(v) for v in node]
        return node

    def positional(node, keys):
        """Names -> positions; `keys`: dict keys are names too (compile's per-output dicts)."""
        if isinstance(node, dict):
            return {names.get(k, k) if keys else k: positional(v, keys) for k, v in node.items()}
        if isinstance(node, list):
            return [positional(v, keys) for v in node]
        return names.get(node, node) if isinstance(node, str) else node

    try:
        architecture = strip(model.get_config())
    except (TypeError, ValueError, NotImplementedError):  # layers without a config
        architecture = [(type(layer).__name__, [(w.name, tuple(w.shape), w.trainable)
                                                for w in layer._weights])
                        for layer in _leaf_layers(model)]
    compiled = strip(compiled)
    return {"model": positional(architecture, False),
            "compile": {k: positional(v, k != "optimizer") for k, v in compiled.items()},
            "optimizer_state": {"arrays": injected,
                                "structure": str(jax.tree_util.tree_structure(opt_state))}}


def _first_difference(a, b, path="") -> str:
    """Where two signatures first differ, as 'path: a vs b' (positional names)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            if k in a and k in b and a[k] != b[k]:
                return _first_difference(a[k], b[k], f"{path}/{k}")
            if k not in a or k not in b:
                return f"{path}/{k}: {a.get(k, '(absent)')!r} vs {b.get(k, '(absent)')!r}"
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for j, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{path}/{j}")
    return f"{path or '/'}: {a!r} vs {b!r}"


def _build(build_fn, row):
    from .hyperparameters import HyperParameters

    hp = HyperParameters(values=row)
    model, trainer = _resolve_model(functools.partial(build_fn, hp))
    return model, trainer, hp


def _built_settings(build_fn, rows):
    """Build every member from its row; check they are one program; read what differs."""
    members = []
    for i, row in enumerate(rows):
        with contextlib.nullcontext() if i == 0 else jg_random.preserved_stream():
            model, trainer, hp = _build(build_fn, row)
        unused = sorted(set(row) - set(hp.values))
        if unused:
            raise ValueError(
                f"hyperparameters[{i}] sets {unused}, which build_fn(hp) did not ask for (it "
                f"asked for {sorted(hp.values)}); read them with hp.Float(...) and pass them "
                "on (to the optimizer, compile's loss_weights, a Dropout rate)")
        members.append((model, trainer))
    model, trainer = members[0]
    if (getattr(model, "_compile_config", None) or {}).get("optimizer") is None \
            and len(rows) > 1:
        raise ValueError(
            "build_fn(hp) compiles with an optimizer that cannot be compared between members "
            "(a raw optax transformation); use a jaxgraph.optimizers class")
    reference = _signature(model, trainer)
    for i in range(1, len(rows)):
        other = _signature(*members[i])
        if other != reference:
            _explain(build_fn, rows, i, reference, other)

    settings = _Settings()
    states = [t.tx.init({}) for _, t in members]
    for name in _hyperparameter_names(states[0]):
        values = np.asarray([float(optimizers_mod.get_hyperparameter(st, name)) for st in states],
                            np.float32)
        if np.any(values != values[0]):
            settings.optimizer[name] = values
    settings.loss_weights = np.asarray([t.objective.loss_weights for _, t in members],
                                       np.float32)
    leaves = [_leaf_layers(m) for m, _ in members]
    names = collections.Counter(layer.name for layer in leaves[0])
    for j, layer in enumerate(leaves[0]):
        for attr in layer.traced_attributes:
            values = np.asarray([float(getattr(ls[j], attr)) for ls in leaves], np.float32)
            if np.all(values == values[0]):
                continue  # stays a Python constant of the program
            accepts = layer._accepted_call_args()
            if attr not in accepts and "**" not in accepts:
                raise ValueError(
                    f"Layer {layer.name!r} ({type(layer).__name__}) lists {attr!r} in "
                    f"traced_attributes, but its call() takes no {attr}= argument")
            if names[layer.name] > 1:
                raise ValueError(
                    f"The {attr} of layer {layer.name!r} varies between members, but "
                    f"{names[layer.name]} layers of model {model.name!r} are called "
                    f"{layer.name!r}; give them distinct names")
            settings.overrides.setdefault(layer.name, {})[attr] = values
    return model, trainer, settings, [m for m, _ in members]


def _explain(build_fn, rows, i, reference, other):
    """Raise naming the hyperparameter(s) that make member i a different program."""
    varying = [n for n in rows[0] if repr(rows[i][n]) != repr(rows[0][n])]
    culprits = []
    for name in varying:  # the ones that change the program on their own
        try:
            with jg_random.preserved_stream():
                probe = _signature(*_build(build_fn, {**rows[0], name: rows[i][name]})[:2])
        except Exception:  # noqa: BLE001 - a lone change may be invalid (conditions)
            continue
        if probe != reference:
            culprits.append(name)
    culprits = culprits or varying
    label = ("Hyperparameter " + repr(culprits[0]) if len(culprits) == 1
             else f"Hyperparameters {culprits}")
    raise ValueError(
        f"{label} cannot vary inside a population: members 0 and {i} build different "
        f"programs (first difference at {_first_difference(reference, other)}). Members "
        "may differ only in the optimizer's float hyperparameters, loss weights and "
        "dropout/noise rates. Train one population per value, or use a tuner.")


# ---------------------------------------------------------------------------- public API


def train_population(build_fn, hyperparameters, x, y, epochs=1, batch_size=None,
                     validation_data=None, validation_split=0.0, shuffle=True,
                     sample_weight=None, class_weight=None, validation_batch_size=None,
                     seed=None, verbose=0) -> Population:
    """Train one member per hyperparameter setting, all in one vmapped compiled program.

    `build_fn` is a compiled Model (members start from its current weights), a
    zero-argument callable returning one, or a `build_fn(hp)` as the tuners take.
    `hyperparameters` is a list of dicts, or a dict of equal-length arrays, one row
    per member. With a model or a zero-argument build_fn a row sets the learning
    rate (`learning_rate` or `lr`), any other float the optimizer keeps in its state
    (`momentum`, `beta_1`, `rho`, `weight_decay`, ...) and `loss_weights`. With
    `build_fn(hp)` a row is the member's hyperparameter values: its model is
    `build_fn(HyperParameters(values=row))`, and any dropout/noise rate, optimizer
    float or loss weight they set may differ between members (see the module doc).
    Every member starts from the same weights and sees the same batches and dropout
    keys. With `seed=s`, member i computes what `set_random_seed(s); model =
    build_fn()` (or `build_fn(HyperParameters(values=row i))`) `; model.fit(...)`
    computes with its settings (up to the summation order of batched matmuls).

    The returned `Population`'s `get_model(i)` is member i's model with its trained
    weights; with a `build_fn(hp)`, member i's own build (its rates and optimizer).
    """
    if seed is not None:
        jg_random.set_random_seed(seed)
    rows = _rows(hyperparameters)
    _check_loop(rows)
    member_models = None
    if _takes_hp(build_fn):
        model, trainer, settings, member_models = _built_settings(build_fn, rows)
    else:
        model, trainer = _resolve_model(build_fn)
        settings = None
    k = len(rows)
    engine = _Engine(model, trainer, k)
    engine.prepare(x, y, sample_weight, class_weight, batch_size, validation_data,
                   validation_split, validation_batch_size, shuffle)
    start = time.perf_counter()
    # Draw keys in the order fit does: dropout key, lazy weights, then the shuffling seed.
    rng = jg_random.next_key()
    variables = jax.tree_util.tree_map(jnp.array, model.variables)
    data_seed = jg_random.next_seed()
    ts = _stack(trainer.steps.init_state(variables, rng), k)
    if settings is None:
        settings = _named_settings(rows, model, ts["opt"])
    ts = unique_buffers(settings.write(ts))
    before = collections.Counter(trainer.steps.trace_counts)
    ts, histories = engine.run(ts, int(epochs), data_seed, verbose, None)
    traces = collections.Counter(trainer.steps.trace_counts)
    traces.subtract(before)
    final = trainer.steps.variables_of(ts)
    final["state"] = {name: v for name, v in final["state"].items() if name != OVERRIDES}
    final = jax.block_until_ready(final)
    return Population(model, rows, histories, final, time.perf_counter() - start,
                      +traces, member_models)


def train_members(model, trainer, n_members: int, keys, x, y, epochs, batch_size, shuffle,
                  verbose, **data_kwargs) -> Population:
    """n members from different initial weights (and dropout keys): fit_vmapped's core."""
    engine = _Engine(model, trainer, n_members)
    engine.prepare(x, y, data_kwargs.get("sample_weight"), data_kwargs.get("class_weight"),
                   batch_size, data_kwargs.get("validation_data"),
                   data_kwargs.get("validation_split", 0.0),
                   data_kwargs.get("validation_batch_size"), shuffle)
    start = time.perf_counter()
    init_keys, rng_keys = keys
    # Both run once: compiled for compile speed, not run speed (see executor.RUN_ONCE).
    variables = jax.jit(jax.vmap(model.init), compiler_options=RUN_ONCE)(init_keys)
    ts = jax.jit(jax.vmap(trainer.steps.init_state), compiler_options=RUN_ONCE)(
        variables, rng_keys)
    ts = unique_buffers(ts)
    data_seed = jg_random.next_seed()
    before = collections.Counter(trainer.steps.trace_counts)
    ts, histories = engine.run(ts, int(epochs), data_seed, verbose, None)
    traces = collections.Counter(trainer.steps.trace_counts)
    traces.subtract(before)
    final = jax.block_until_ready(trainer.steps.variables_of(ts))
    return Population(model, [{"member": i} for i in range(n_members)], histories, final,
                      time.perf_counter() - start, +traces)

"""Ensembles: weighted averages of models, as arrays or as one jaxgraph Model.

`Ensemble(models, weights)` is an ordinary functional `Model`: shared inputs feed
every member (each called as a layer) and a `WeightedAverage` layer combines their
outputs. So predict / evaluate / count_params / save / load / use-as-a-layer all
work, and the weights, held as a non-trainable variable of that layer, travel with
the saved weights. `fit_vmapped` trains n members from different seeds in one
compiled program; `fit_ensemble_weights` tunes the weights on validation data.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from .graph.functional import Functional
from .graph.input_layer import Input
from .layers.base import Layer
from .models import Model

# ---------------------------------------------------------------------------- weights


def _normalize_weights(weights, n: int, what: str = "weights") -> np.ndarray:
    """Non-negative weights, one per member, scaled to sum to one (None: uniform)."""
    if n < 1:
        raise ValueError("An ensemble needs at least one member")
    if weights is None:
        return np.full((n,), 1.0 / n)
    try:
        w = np.asarray(weights, dtype=np.float64)
    except jax.errors.TracerArrayConversionError as e:
        raise TypeError(f"{what} must be concrete numbers, not a traced array") from e
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"{what} must be a list of {n} numbers (one per member), got shape "
                         f"{w.shape}: {np.asarray(weights).tolist()}")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{what} must be finite, got {w.tolist()}")
    negative = [i for i in range(n) if w[i] < 0]
    if negative:
        raise ValueError(f"{what} must be non-negative; member(s) {negative} have "
                         f"{w[negative].tolist()}")
    total = w.sum()
    if total <= 0:
        raise ValueError(f"{what} sum to zero; at least one member needs a positive weight")
    return w / total


def weighted_average(predictions, weights=None):
    """sum_i w_i * predictions[i] with w normalized to sum to one (uniform when None).

    All predictions must have one shape. NumPy in, NumPy out; JAX arrays stay JAX.
    """
    if isinstance(predictions, (np.ndarray, jax.Array)):
        predictions = list(predictions)
    if not isinstance(predictions, (list, tuple)) or not predictions:
        raise ValueError("predictions must be a non-empty list of arrays (one per member)")
    shapes = [tuple(np.shape(p)) for p in predictions]
    for i, s in enumerate(shapes):
        if s != shapes[0]:
            raise ValueError(f"predictions[{i}] has shape {s}, but predictions[0] has "
                             f"{shapes[0]}; members must predict the same shape")
    w = _normalize_weights(weights, len(predictions))
    if all(isinstance(p, np.ndarray) for p in predictions):
        stacked = np.stack([np.asarray(p, np.float64) for p in predictions])
        dtype = np.result_type(*[p.dtype for p in predictions], np.float32)
        return np.tensordot(w, stacked, axes=1).astype(dtype)
    stacked = jnp.stack([jnp.asarray(p) for p in predictions])
    return jnp.tensordot(jnp.asarray(w, stacked.dtype), stacked, axes=1)


class WeightedAverage(Layer):
    """Combines a list of same-shape tensors with a non-trainable weight per input."""

    def __init__(self, member_weights=None, **kwargs):
        super().__init__(**kwargs)
        self.member_weights = (None if member_weights is None
                               else [float(v) for v in np.asarray(member_weights).ravel()])

    def _check(self, input_shape):
        if (not isinstance(input_shape, (list, tuple)) or not input_shape
                or not isinstance(input_shape[0], (list, tuple))):
            raise ValueError(f"Layer {self.name!r} (WeightedAverage) must be called on a list "
                             f"of tensors, got a single input of shape {input_shape}")
        for i, s in enumerate(input_shape):
            if tuple(s) != tuple(input_shape[0]):
                raise ValueError(f"Layer {self.name!r} (WeightedAverage): input {i} has shape "
                                 f"{tuple(s)}, input 0 has {tuple(input_shape[0])}")

    def build(self, input_shape):
        self._check(input_shape)
        n = len(input_shape)
        values = _normalize_weights(self.member_weights, n, f"{self.name!r} member_weights")

        def init(key, shape, dtype=jnp.float32):
            return jnp.asarray(values, dtype)

        self.add_weight("member_weights", (n,), initializer=init, trainable=False)

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        return tuple(input_shape[0])

    def call(self, w, inputs):
        weights = w["member_weights"]
        out = None
        for i, x in enumerate(inputs):
            term = weights[i].astype(x.dtype) * x
            out = term if out is None else out + term
        return out


# ---------------------------------------------------------------------------- Ensemble


def _check_members(models) -> list:
    if isinstance(models, Functional) or not isinstance(models, (list, tuple)):
        raise TypeError("Ensemble(models): models must be a list of jaxgraph models, got "
                        f"{type(models).__name__}")
    models = list(models)
    if not models:
        raise ValueError("Ensemble(models): the list of models is empty")
    for i, m in enumerate(models):
        if not isinstance(m, Functional):
            raise TypeError(f"Ensemble member {i} is a {type(m).__name__}, not a jaxgraph "
                            "model; combine other predictors with weighted_average")
        try:
            m._require_graph()
        except ValueError as e:
            raise ValueError(f"Ensemble member {i}: {e}") from e
    seen: dict[str, int] = {}
    for i, m in enumerate(models):
        j = seen.get(m.name)
        if j is not None and models[j] is not m:
            raise ValueError(f"Ensemble members {j} and {i} are both named {m.name!r}; names "
                             "must be unique inside the ensemble (set model.name before "
                             "ensembling)")
        seen[m.name] = i
    first = models[0]
    for i, m in enumerate(models[1:], start=1):
        if len(m.inputs) != len(first.inputs):
            raise ValueError(f"Ensemble member {i} ({m.name!r}) takes {len(m.inputs)} inputs, "
                             f"member 0 ({first.name!r}) takes {len(first.inputs)}")
        for a, b, name in zip(first.inputs, m.inputs, first.input_names):
            if tuple(a.shape[1:]) != tuple(b.shape[1:]) or a.dtype != b.dtype:
                raise ValueError(
                    f"Ensemble member {i} ({m.name!r}) has input of shape {b.shape} "
                    f"({b.dtype}), member 0 ({first.name!r}) has {name!r} of shape {a.shape} "
                    f"({a.dtype}); members must share their inputs")
        if len(m.outputs) != len(first.outputs):
            raise ValueError(f"Ensemble member {i} ({m.name!r}) has {len(m.outputs)} outputs, "
                             f"member 0 ({first.name!r}) has {len(first.outputs)}")
        for j, (a, b) in enumerate(zip(first.outputs, m.outputs)):
            if tuple(a.shape[1:]) != tuple(b.shape[1:]):
                raise ValueError(
                    f"Ensemble member {i} ({m.name!r}) has output {j} of shape {b.shape}, "
                    f"member 0 ({first.name!r}) has {a.shape}; members must predict the "
                    "same shapes to be averaged")
    return models


class Ensemble(Model):
    """A Model whose outputs are the weighted average of its members' outputs.

    `weights` (default uniform) are normalized to sum to one; they live in the
    `WeightedAverage` layer as a non-trainable variable, so fitting the ensemble
    fine-tunes the members but not the weights, and save/load keeps them.
    """

    def __init__(self, models, weights=None, name=None, **kwargs):
        members = _check_members(models)
        w = _normalize_weights(weights, len(members))
        first = members[0]
        tensors = [Input(shape=t.shape[1:], dtype=t.dtype, name=n)
                   for t, n in zip(first.inputs, first.input_names)]
        inputs = first._input_struct.pack(tensors)
        per_member = []
        for m in members:
            out = m(m._input_struct.pack(tensors))
            per_member.append(m._output_struct.unpack(out, m.output_names, "outputs"))
        combiner = WeightedAverage(member_weights=w.tolist())
        outputs = [combiner([outs[j] for outs in per_member])
                   for j in range(len(per_member[0]))]
        super().__init__(inputs, first._output_struct.pack(outputs), name=name, **kwargs)
        self._bind_parts()

    def _bind_parts(self) -> None:
        combiners = [layer for layer in self.layers if isinstance(layer, WeightedAverage)]
        if len(combiners) != 1:
            raise ValueError(f"Ensemble {self.name!r} must hold exactly one WeightedAverage "
                             f"layer, found {len(combiners)}")
        self._combiner = combiners[0]
        node = self._combiner.inbound_nodes[0]
        self._members = [t.node.layer for t in node.input_tensors]

    @property
    def members(self) -> list:
        return list(self._members)

    @property
    def member_weights(self) -> np.ndarray:
        """The normalized weights, one per member (settable; renormalized on assignment)."""
        return np.asarray(self._combiner.get_weights()[0], np.float64)

    @member_weights.setter
    def member_weights(self, value) -> None:
        w = _normalize_weights(value, len(self._members))
        self._combiner.set_weights([w.astype(np.float32)])

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None):
        from .graph.config import functional_from_config

        def build(inputs, outputs, name=None, trainable=True):
            obj = cls.__new__(cls)
            Model.__init__(obj, inputs, outputs, name=name, trainable=trainable)
            obj._bind_parts()
            return obj

        return functional_from_config(build, config, custom_objects)


# ---------------------------------------------------------------------------- tuning weights


def _predictions(models_or_predictions, x_val) -> list[np.ndarray]:
    entries = models_or_predictions
    if isinstance(entries, Ensemble):
        entries = entries.members
    if not isinstance(entries, (list, tuple)) or not entries:
        raise ValueError("fit_ensemble_weights needs a non-empty list of models or prediction "
                         "arrays")
    preds = []
    for i, e in enumerate(entries):
        if isinstance(e, Functional):
            if x_val is None:
                raise ValueError(f"Entry {i} is a model ({e.name!r}); pass x_val to predict")
            p = e.predict(x_val, verbose=0)
            if isinstance(p, (list, dict)):
                raise ValueError(f"Entry {i} ({e.name!r}) has several outputs; pass the "
                                 "predictions of the output to weigh instead")
            preds.append(np.asarray(p, np.float32))
        else:
            preds.append(np.asarray(e, np.float32))
    for i, p in enumerate(preds):
        if p.shape != preds[0].shape:
            raise ValueError(f"Entry {i} predicts shape {p.shape}, entry 0 predicts "
                             f"{preds[0].shape}; members must predict the same shape")
    return preds


def fit_ensemble_weights(models_or_predictions, x_val=None, y_val=None,
                         loss="categorical_crossentropy", steps=300, learning_rate=0.1):
    """Non-negative weights summing to one that minimize `loss` on validation data.

    Entries are jaxgraph models (predicted on `x_val`) or prediction arrays (for
    anything else: scikit-learn's predict_proba, ...). The weights are a softmax of
    free parameters optimized with Adam; the result is never worse on the
    validation loss than the best single member or the uniform average. Integer
    labels work with any loss ('categorical_crossentropy' becomes its sparse variant,
    others such as 'mse', the Brier score, see one-hot targets).
    """
    from .training import losses as losses_mod

    preds = _predictions(models_or_predictions, x_val)
    if y_val is None:
        raise ValueError("fit_ensemble_weights needs y_val")
    y = np.asarray(y_val)
    if y.shape[0] != preds[0].shape[0]:
        raise ValueError(f"y_val has {y.shape[0]} samples, the predictions have "
                         f"{preds[0].shape[0]}")
    labels = np.issubdtype(y.dtype, np.integer) and y.ndim == preds[0].ndim - 1
    if labels and isinstance(loss, str) and loss in ("categorical_crossentropy",
                                                     "crossentropy"):
        loss = "sparse_categorical_crossentropy"
    fn = losses_mod.get(loss)
    try:
        losses_mod.validate(fn, y.shape, preds[0].shape, "ensemble", y_true_dtype=y.dtype)
    except ValueError:
        if not labels:
            raise
        y = np.eye(preds[0].shape[-1], dtype=np.float32)[y]  # integer labels -> one-hot
        losses_mod.validate(fn, y.shape, preds[0].shape, "ensemble", y_true_dtype=y.dtype)
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    import optax

    stacked = jnp.asarray(np.stack(preds))
    y_true = jnp.asarray(y)

    def value(w):
        mixed = jnp.tensordot(w, stacked, axes=1)
        return losses_mod.batch_loss(fn, y_true, mixed)

    opt = optax.adam(learning_rate)
    n = len(preds)

    @jax.jit
    def optimize(z):
        def step(carry, _):
            z, state = carry
            grads = jax.grad(lambda z: value(jax.nn.softmax(z)))(z)
            updates, state = opt.update(grads, state, z)
            return (optax.apply_updates(z, updates), state), None

        (z, _), _ = jax.lax.scan(step, (z, opt.init(z)), None, length=steps)
        return jax.nn.softmax(z)

    candidates = [np.asarray(optimize(jnp.zeros((n,), jnp.float32)), np.float64),
                  np.full((n,), 1.0 / n)] + [np.eye(n)[i] for i in range(n)]
    scores = [float(value(jnp.asarray(c, jnp.float32))) for c in candidates]
    best = candidates[int(np.argmin(scores))]
    best = np.clip(best, 0.0, None)
    return best / best.sum()


# ---------------------------------------------------------------------------- fit_vmapped

_FIT_ARGS = ("epochs", "batch_size", "validation_data", "validation_split", "shuffle",
             "verbose", "sample_weight", "class_weight", "validation_batch_size")


def fit_vmapped(build_fn, n_members, x, y, seed=None, name=None, **fit_kwargs) -> Ensemble:
    """Train `n_members` copies of `build_fn()`'s architecture from different seeds in ONE
    compiled program (jax.vmap over initial weights and dropout keys) and return them as
    an `Ensemble` (uniform weights, compiled like the template).

    Every member sees the same batches; they differ by initialization and dropout.
    `ensemble.population` keeps the per-member histories (`.histories`).
    """
    import warnings

    from . import random as jg_random
    from .tune.population import _resolve_model, train_members

    if isinstance(n_members, bool) or not isinstance(n_members, numbers.Integral) \
            or n_members < 1:
        raise ValueError(f"n_members must be an int >= 1, got {n_members!r}")
    unknown = sorted(set(fit_kwargs) - set(_FIT_ARGS))
    if unknown:
        raise TypeError(f"fit_vmapped got unsupported fit argument(s) {unknown}; supported: "
                        f"{list(_FIT_ARGS)} (callbacks cannot run inside one vmapped program)")
    if not callable(build_fn) or isinstance(build_fn, Functional):
        raise TypeError("fit_vmapped needs build_fn, a callable returning a new compiled model")
    template, trainer = _resolve_model(build_fn)
    base = jax.random.key(int(seed)) if seed is not None else jg_random.next_key()
    keys = (jax.random.split(jax.random.fold_in(base, 0), n_members),
            jax.random.split(jax.random.fold_in(base, 1), n_members))
    kwargs = dict(fit_kwargs)
    population = train_members(
        template, trainer, int(n_members), keys, x, y, kwargs.pop("epochs", 1),
        kwargs.pop("batch_size", None), kwargs.pop("shuffle", True),
        int(kwargs.pop("verbose", 0) or 0), **kwargs)
    members, names = [], set()
    for i in range(n_members):
        member = build_fn()
        if member is template or any(member is m for m in members):
            raise ValueError("build_fn must build a new model on every call")
        if member.name in names or member.name == template.name:
            member.name = f"{template.name}_member_{i}"
        names.add(member.name)
        template.variables = population.member_variables(i)
        member.set_weights(template.get_weights())
        members.append(member)
    ensemble = Ensemble(members, name=name)
    config = getattr(template, "_compile_config", None)
    if config is not None and config.get("loss") is not None:
        ensemble.compile(**config)
    else:
        warnings.warn("The template's loss cannot be serialized, so the ensemble is returned "
                      "uncompiled; call ensemble.compile(...) before evaluate()", stacklevel=2)
    ensemble.population = population
    return ensemble

"""Streaming metrics as pure objects: the state is a pytree of arrays, never a Variable.

`init() -> state`, `update(state, y_true, y_pred, sample_weight) -> state` and
`result(state)` are jit- and scan-safe, so the trainer can accumulate every metric
on device over many steps and read it only when a callback asks. States are sums,
so `merge` (across devices or steps) is addition. Zero-weight rows (padding) never
count.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import losses as _losses
from . import step_context
from .losses import _bind_arguments, align

NEG_INF = -1e10  # Keras's stand-in for "not in the top k".


def _divide_no_nan(a, b):
    return jnp.where(b == 0, 0.0, a / jnp.where(b == 0, 1.0, b))


class Metric:
    """Base class: subclasses define init/update/result over an explicit state."""

    _params = ()
    _default_name = "metric"
    direction = None  # 'up' or 'down': which way is better, for monitors in mode='auto'.
    # Whether an output's propagated mask (Embedding(mask_zero=True)) weights the update,
    # as Keras's mean metrics do; its confusion-matrix metrics ignore masks.
    uses_output_mask = False

    def __init__(self, *args, **kwargs):
        params = tuple(self._params) + (("name", None),)
        config = _bind_arguments(type(self).__name__, params, args, kwargs)
        self.name = config.pop("name") or self._default_name
        self.kwargs = config
        self._check()

    def _check(self):
        """Validate constructor arguments (before any tracing)."""

    def __getattr__(self, item):
        kwargs = self.__dict__.get("kwargs", {})
        if item in kwargs:
            return kwargs[item]
        raise AttributeError(f"{type(self).__name__} has no attribute {item!r}")

    def init(self):
        raise NotImplementedError(f"{type(self).__name__} must define init()")

    def update(self, state, y_true, y_pred, sample_weight=None):
        raise NotImplementedError(f"{type(self).__name__} must define update()")

    def result(self, state):
        raise NotImplementedError(f"{type(self).__name__} must define result()")

    def merge(self, state_a, state_b):
        return jax.tree.map(jnp.add, state_a, state_b)

    # Keras's variable-list API. A metric's "variables" are the leaves of its state, in
    # a fixed order; a custom `train_step` gets them in `metrics_variables` and updates
    # them with the stateless methods. The metric also holds one state of its own for
    # the stateful methods (and what fit/evaluate leave there), as a Keras metric does.

    #: How many data arguments `update` takes before `sample_weight` (None: the metric
    #: weights rows itself), so padded rows of a step can be given weight 0.
    _row_args = 2

    def _state_def(self):
        treedef = self.__dict__.get("_treedef")
        if treedef is None:
            treedef = self._treedef = jax.tree_util.tree_structure(self.init())
        return treedef

    def _held(self):
        state = self.__dict__.get("_state")
        if state is None:
            with jax.ensure_compile_time_eval():  # concrete even when asked inside a trace
                state = self._state = self.init()
        return state

    def _unflatten(self, metric_variables, what):
        metric_variables = list(metric_variables)
        count = self._state_def().num_leaves
        if len(metric_variables) != count:
            raise ValueError(
                f"{type(self).__name__}({self.name!r}).{what}: metric_variables must be a "
                f"list of {count} array(s), one per entry of metric.variables; got "
                f"{len(metric_variables)}")
        return jax.tree_util.tree_unflatten(self._state_def(), metric_variables)

    def _weighted_rows(self, args, kwargs):
        """Give the padded rows of a traced step weight 0 (a no-op outside one)."""
        n = self._row_args
        if n is None or not args:
            return args, kwargs
        mask = step_context.row_mask(args[0])
        if mask is None:
            return args, kwargs
        args, kwargs = list(args), dict(kwargs)
        if len(args) > n:
            args[n] = combine_weights(args[n], mask)
        else:
            kwargs["sample_weight"] = combine_weights(kwargs.get("sample_weight"), mask)
        return args, kwargs

    @property
    def variables(self) -> list:
        """The current values of the metric's state, as a list (Keras's variables)."""
        return jax.tree_util.tree_leaves(self._held())

    def stateless_update_state(self, metric_variables, *args, **kwargs) -> list:
        state = self._unflatten(metric_variables, "stateless_update_state")
        args, kwargs = self._weighted_rows(args, kwargs)
        return jax.tree_util.tree_leaves(self.update(state, *args, **kwargs))

    def stateless_result(self, metric_variables):
        return self.result(self._unflatten(metric_variables, "stateless_result"))

    def stateless_reset_state(self) -> list:
        return jax.tree_util.tree_leaves(self.init())

    def _not_in_step(self, what):
        if step_context.current() is not None:
            raise RuntimeError(
                f"{type(self).__name__}({self.name!r}).{what}() changes the metric's own "
                "state, which a traced train_step/test_step cannot do: update the "
                "metrics_variables it receives with metric.stateless_update_state(...) and "
                "return them in its state, as Keras's JAX backend requires (inside Keras's "
                "default steps, only the metrics listed in model.metrics can be updated)")

    def _current(self):
        """The state the stateful API works on: the step's, inside Keras's default steps
        (see step_context.MetricScope), else the metric's own."""
        scope = step_context.scope_of(self)
        return self._held() if scope is None else scope.states[id(self)]

    def update_state(self, *args, **kwargs) -> None:
        args, kwargs = self._weighted_rows(args, kwargs)
        scope = step_context.scope_of(self)
        if scope is not None:
            scope.states[id(self)] = self.update(scope.states[id(self)], *args, **kwargs)
            return
        self._not_in_step("update_state")
        self._state = self.update(self._held(), *args, **kwargs)

    def reset_state(self) -> None:
        scope = step_context.scope_of(self)
        if scope is not None:
            scope.states[id(self)] = self.init()
            return
        self._not_in_step("reset_state")
        self._state = self.init()

    def assign_variables(self, metric_variables) -> None:
        """Hold these values (fit and evaluate leave their final state here)."""
        self._state = self._unflatten(metric_variables, "assign_variables")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "result" in cls.__dict__:
            cls.result = _result_of_held_state(cls.__dict__["result"])

    def get_config(self):
        return {"name": self.name, **self.kwargs}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r}, {self.kwargs})"


_HELD = object()


def _result_of_held_state(fn):
    """`result(state)`, or Keras's `result()` of the state the metric holds."""
    if getattr(fn, "_of_held_state", False):
        return fn

    @functools.wraps(fn)
    def result(self, state=_HELD, *args, **kwargs):
        return fn(self, self._current() if state is _HELD else state, *args, **kwargs)

    result._of_held_state = True
    return result


Metric.result = _result_of_held_state(Metric.result)


def combine_weights(*weights):
    """The product of per-row or per-step weights (sample weights, padding rows, an
    output's mask), each spread over the trailing axes of the highest rank; None (all
    ones) when every one is None."""
    arrays = [jnp.asarray(w, jnp.float32) for w in weights if w is not None]
    if not arrays:
        return None
    rank = max(a.ndim for a in arrays)
    out = None
    for a in arrays:
        a = a.reshape(a.shape + (1,) * (rank - a.ndim))
        out = a if out is None else out * a
    return out


def _sample_weights(sample_weight, batch):
    if sample_weight is None:
        return jnp.ones((batch,), jnp.float32)
    return jnp.asarray(sample_weight, jnp.float32)


def _weighted_total(values, sample_weight):
    """Keras's Mean update: per-sample means, weighted, zero-weight rows dropped."""
    values = jnp.asarray(values, jnp.float32)
    if values.ndim == 0:  # a batch-level value (custom fn): one observation per live batch
        live = 1.0 if sample_weight is None else jnp.any(jnp.asarray(sample_weight) != 0)
        live = jnp.asarray(live, jnp.float32)
        return jnp.where(live > 0, values, 0.0), live
    weights = _sample_weights(sample_weight, values.shape[0])
    values, weights = align(values, weights)
    if values.ndim > weights.ndim:
        values = jnp.mean(values, axis=tuple(range(weights.ndim, values.ndim)))
    weights = jnp.broadcast_to(weights, values.shape)
    weighted = jnp.where(weights != 0, values * weights, 0.0)
    trailing = tuple(range(1, values.ndim))
    if trailing:
        weighted, weights = jnp.mean(weighted, trailing), jnp.mean(weights, trailing)
    return jnp.sum(weighted), jnp.sum(weights)


class _MeanMetric(Metric):
    """Weighted mean of the per-sample function `self.fn(y_true, y_pred, **kwargs)`."""

    _fn = None
    direction = "down"
    uses_output_mask = True

    @property
    def fn(self):
        return type(self)._fn

    def init(self):
        # [total, count] in one array: one accumulating kernel per step, not two.
        return jnp.zeros((2,), jnp.float32)

    def update(self, state, y_true, y_pred, sample_weight=None):
        total, count = _weighted_total(self.fn(y_true, y_pred, **self.kwargs), sample_weight)
        return state + jnp.stack([total, jnp.asarray(count, jnp.float32)])

    def result(self, state):
        return _divide_no_nan(state[0], state[1])


class MeanMetricWrapper(_MeanMetric):
    """Streaming weighted mean of any `fn(y_true, y_pred, **kwargs) -> per-sample`."""

    def __init__(self, fn, name=None, **kwargs):
        if not callable(fn):
            raise TypeError(f"MeanMetricWrapper: fn must be callable, got {fn!r}.")
        self._wrapped = fn
        self._params = tuple(kwargs.items())
        default = getattr(fn, "name", None) or getattr(fn, "__name__", "mean_metric_wrapper")
        super().__init__(name=name or default, **kwargs)

    @property
    def fn(self):
        # A Loss object's own call() gives the per-sample values (calling it reduces).
        return self._wrapped.call if isinstance(self._wrapped, _losses.Loss) else self._wrapped

    def get_config(self):
        return {"fn": _serialize_function(self._wrapped), **super().get_config()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(_function_from_config(config.pop("fn")), **config)


class _Reduce(Metric):
    """Keras's Sum / Mean of `values`: per-sample means over trailing axes, weighted."""

    _row_args = 1
    _params = (("dtype", None),)
    _reduce = staticmethod(jnp.mean)

    def init(self):
        return jnp.zeros((2,), jnp.float32)  # [total, count]

    def update(self, state, values, sample_weight=None):
        values = jnp.asarray(values, jnp.float32)
        if sample_weight is not None:
            weights = jnp.asarray(sample_weight, jnp.float32)
            values, weights = align(values, weights)
            if values.ndim > weights.ndim:
                values = self._reduce(values, axis=tuple(range(weights.ndim, values.ndim)))
            weights = jnp.broadcast_to(weights, values.shape)
            values = values * weights
            if weights.ndim > 1:
                weights = self._reduce(weights, axis=tuple(range(1, weights.ndim)))
            count = jnp.sum(weights)
        else:
            count = jnp.asarray(values.shape[0] if values.ndim else 1, jnp.float32)
        if values.ndim > 1:
            values = self._reduce(values, axis=tuple(range(1, values.ndim)))
        return state + jnp.stack([jnp.sum(values), count])


class Mean(_Reduce):
    """Keras's `Mean`: the weighted mean of the values seen (a loss tracker in a custom
    `train_step`: `tracker.stateless_update_state(vars, loss)`)."""

    _default_name = "mean"

    def result(self, state):
        return _divide_no_nan(state[0], state[1])


class Sum(_Reduce):
    """Keras's `Sum`: the weighted sum of the values seen."""

    _default_name = "sum"
    _reduce = staticmethod(jnp.sum)

    def result(self, state):
        return state[0]


# Per-sample metric functions (Keras's semantics, one value per sample or position).


def accuracy(y_true, y_pred):
    y_true, y_pred = align(jnp.asarray(y_true), jnp.asarray(y_pred))
    return jnp.equal(y_true, y_pred.astype(y_true.dtype)).astype(jnp.float32)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    y_true, y_pred = align(jnp.asarray(y_true), jnp.asarray(y_pred))
    return jnp.equal(y_true, (y_pred > threshold).astype(y_true.dtype)).astype(jnp.float32)


def categorical_accuracy(y_true, y_pred):
    matches = jnp.argmax(jnp.asarray(y_true), -1) == jnp.argmax(jnp.asarray(y_pred), -1)
    return matches.astype(jnp.float32)


def _class_labels(y_true, y_pred):
    labels = jnp.asarray(y_true)
    if labels.ndim == y_pred.ndim and labels.shape[-1] == 1:
        labels = jnp.squeeze(labels, -1)
    return labels


def sparse_categorical_accuracy(y_true, y_pred):
    y_pred = jnp.asarray(y_pred)
    labels = _class_labels(y_true, y_pred).astype(y_pred.dtype)
    return (labels == jnp.argmax(y_pred, -1).astype(y_pred.dtype)).astype(jnp.float32)


def _in_top_k(labels, y_pred, k):
    at_label = jnp.take_along_axis(y_pred, labels[..., None].astype(jnp.int32), axis=-1)
    at_label = jnp.where(jnp.isnan(at_label), -jnp.inf, at_label)
    rank = 1 + jnp.sum(y_pred > at_label, axis=-1)
    return (rank <= k).astype(jnp.float32)


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    return _in_top_k(jnp.argmax(jnp.asarray(y_true), -1), jnp.asarray(y_pred), k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    y_pred = jnp.asarray(y_pred)
    return _in_top_k(_class_labels(y_true, y_pred), y_pred, k)


def cosine_similarity(y_true, y_pred, axis=-1):
    """The metric is +cos (higher is better), unlike the loss."""
    return -_losses.cosine_similarity(y_true, y_pred, axis=axis)


def _mean_class(class_name, fn, params, default_name, direction):
    doc = f"Keras's `{class_name}`: streaming weighted mean of `{fn.__name__}`."
    attrs = {
        "_fn": staticmethod(fn),
        "_params": params,
        "_default_name": default_name,
        "direction": direction,
        "__doc__": doc,
    }
    return type(class_name, (_MeanMetric,), attrs)


_CE = (("from_logits", False), ("label_smoothing", 0.0))
Accuracy = _mean_class("Accuracy", accuracy, (), "accuracy", "up")
BinaryAccuracy = _mean_class(
    "BinaryAccuracy", binary_accuracy, (("threshold", 0.5),), "binary_accuracy", "up"
)
CategoricalAccuracy = _mean_class(
    "CategoricalAccuracy", categorical_accuracy, (), "categorical_accuracy", "up"
)
SparseCategoricalAccuracy = _mean_class(
    "SparseCategoricalAccuracy",
    sparse_categorical_accuracy,
    (),
    "sparse_categorical_accuracy",
    "up",
)
TopKCategoricalAccuracy = _mean_class(
    "TopKCategoricalAccuracy",
    top_k_categorical_accuracy,
    (("k", 5),),
    "top_k_categorical_accuracy",
    "up",
)
SparseTopKCategoricalAccuracy = _mean_class(
    "SparseTopKCategoricalAccuracy",
    sparse_top_k_categorical_accuracy,
    (("k", 5),),
    "sparse_top_k_categorical_accuracy",
    "up",
)
MeanSquaredError = _mean_class(
    "MeanSquaredError", _losses.mean_squared_error, (), "mean_squared_error", "down"
)
MeanAbsoluteError = _mean_class(
    "MeanAbsoluteError", _losses.mean_absolute_error, (), "mean_absolute_error", "down"
)
MeanAbsolutePercentageError = _mean_class(
    "MeanAbsolutePercentageError",
    _losses.mean_absolute_percentage_error,
    (),
    "mean_absolute_percentage_error",
    "down",
)
MeanSquaredLogarithmicError = _mean_class(
    "MeanSquaredLogarithmicError",
    _losses.mean_squared_logarithmic_error,
    (),
    "mean_squared_logarithmic_error",
    "down",
)
CosineSimilarity = _mean_class(
    "CosineSimilarity", cosine_similarity, (("axis", -1),), "cosine_similarity", "up"
)
LogCoshError = _mean_class("LogCoshError", _losses.log_cosh, (), "logcosh", "down")
KLDivergence = _mean_class("KLDivergence", _losses.kl_divergence, (), "kl_divergence", "down")
Poisson = _mean_class("Poisson", _losses.poisson, (), "poisson", "down")
Hinge = _mean_class("Hinge", _losses.hinge, (), "hinge", "down")
SquaredHinge = _mean_class("SquaredHinge", _losses.squared_hinge, (), "squared_hinge", "down")
CategoricalHinge = _mean_class(
    "CategoricalHinge", _losses.categorical_hinge, (), "categorical_hinge", "down"
)
BinaryCrossentropy = _mean_class(
    "BinaryCrossentropy", _losses.binary_crossentropy, _CE, "binary_crossentropy", "down"
)
CategoricalCrossentropy = _mean_class(
    "CategoricalCrossentropy",
    _losses.categorical_crossentropy,
    _CE + (("axis", -1),),
    "categorical_crossentropy",
    "down",
)
SparseCategoricalCrossentropy = _mean_class(
    "SparseCategoricalCrossentropy",
    _losses.sparse_categorical_crossentropy,
    (("from_logits", False), ("ignore_class", None), ("axis", -1)),
    "sparse_categorical_crossentropy",
    "down",
)


def _squared_error(y_true, y_pred):
    y_true, y_pred = align(jnp.asarray(y_true, jnp.float32), jnp.asarray(y_pred, jnp.float32))
    return jnp.square(y_pred - y_true)


class RootMeanSquaredError(_MeanMetric):
    """sqrt of the weighted mean squared error, accumulated before the root."""

    _fn = staticmethod(_squared_error)
    _default_name = "root_mean_squared_error"
    uses_output_mask = False  # Keras's RMSE is a plain Mean of the squared errors

    def result(self, state):
        return jnp.sqrt(super().result(state))


# Confusion-matrix metrics: weighted counts per threshold.


def _parse_thresholds(owner, thresholds, default):
    if thresholds is None:
        return np.asarray([default], np.float32)
    values = np.atleast_1d(np.asarray(thresholds, np.float32))
    if values.ndim != 1 or np.any((values < 0) | (values > 1)):
        raise ValueError(f"{owner}: thresholds must be floats in [0, 1], got {thresholds!r}.")
    return values


def _filter_top_k(y_pred, k):
    _, indices = jax.lax.top_k(y_pred, k)
    in_top = jnp.sum(jax.nn.one_hot(indices, y_pred.shape[-1], dtype=y_pred.dtype), axis=-2)
    return y_pred * in_top + NEG_INF * (1.0 - in_top)


def _confusion_inputs(y_true, y_pred, sample_weight, top_k=None, class_id=None):
    """(is_positive, y_pred, weight) with one weight per prediction entry."""
    y_pred = jnp.asarray(y_pred, jnp.float32)
    y_pred, y_true = align(y_pred, jnp.asarray(y_true, jnp.float32))
    if y_pred.ndim == 0:
        y_pred, y_true = y_pred[None], y_true[None]
    weights = _sample_weights(sample_weight, y_pred.shape[0])
    weights = weights.reshape(weights.shape + (1,) * (y_pred.ndim - weights.ndim))
    weights = jnp.broadcast_to(weights, y_pred.shape)
    if top_k is not None:
        y_pred = _filter_top_k(y_pred, top_k)
    if class_id is not None:
        pick = (Ellipsis, class_id)
        y_true, y_pred, weights = y_true[pick], y_pred[pick], weights[pick]
    return y_true != 0, y_pred, weights


def _threshold_counts(is_pos, y_pred, weights, thresholds):
    """Counts of shape (thresholds,) + label axes for inputs shaped (samples,) + label axes."""
    above = y_pred[None] > jnp.asarray(thresholds).reshape((-1,) + (1,) * y_pred.ndim)
    pos = jnp.where(is_pos, weights, 0.0)[None]
    neg = jnp.where(is_pos, 0.0, weights)[None]
    return {
        "tp": jnp.sum(jnp.where(above, pos, 0.0), axis=1),
        "fp": jnp.sum(jnp.where(above, neg, 0.0), axis=1),
        "tn": jnp.sum(jnp.where(above, 0.0, neg), axis=1),
        "fn": jnp.sum(jnp.where(above, 0.0, pos), axis=1),
    }


def _bucket_counts(is_pos, y_pred, weights, num_thresholds):
    """The same counts for evenly spaced thresholds, in O(samples) memory (Keras's AUC path)."""
    samples, labels = y_pred.shape
    bucket = jnp.ceil(jnp.clip(y_pred, 0.0, 1.0) * (num_thresholds - 1)) - 1
    bucket = jnp.maximum(bucket, 0).astype(jnp.int32)
    segments = (bucket * labels + jnp.arange(labels)[None, :]).reshape(-1)
    pos = jnp.where(is_pos, weights, 0.0)
    neg = jnp.where(is_pos, 0.0, weights)

    def cumulative(values):
        per_bucket = jax.ops.segment_sum(values.reshape(-1), segments, num_thresholds * labels)
        per_bucket = per_bucket.reshape(num_thresholds, labels)
        return jnp.flip(jnp.cumsum(jnp.flip(per_bucket, 0), axis=0), 0)

    tp, fp = cumulative(pos), cumulative(neg)
    return {"tp": tp, "fp": fp, "tn": jnp.sum(neg, 0) - fp, "fn": jnp.sum(pos, 0) - tp}


class _ConfusionMetric(Metric):
    """Accumulates the confusion counts named in `_keys` for each threshold."""

    _keys = ()
    _params = (("thresholds", None),)

    def _check(self):
        self._thresholds = _parse_thresholds(type(self).__name__, self.kwargs["thresholds"], 0.5)

    def init(self):
        return {key: jnp.zeros((len(self._thresholds),), jnp.float32) for key in self._keys}

    def update(self, state, y_true, y_pred, sample_weight=None):
        top_k, class_id = self.kwargs.get("top_k"), self.kwargs.get("class_id")
        is_pos, y_pred, weights = _confusion_inputs(y_true, y_pred, sample_weight, top_k, class_id)
        flat = (is_pos.reshape(-1), y_pred.reshape(-1), weights.reshape(-1))
        counts = _threshold_counts(*flat, self._thresholds)
        return {key: state[key] + counts[key] for key in self._keys}

    def _value(self, state):
        return state[self._keys[0]]

    def result(self, state):
        value = self._value(state)
        return value[0] if len(self._thresholds) == 1 else value


class TruePositives(_ConfusionMetric):
    _keys, _default_name = ("tp",), "true_positives"


class FalsePositives(_ConfusionMetric):
    _keys, _default_name = ("fp",), "false_positives"


class TrueNegatives(_ConfusionMetric):
    _keys, _default_name = ("tn",), "true_negatives"


class FalseNegatives(_ConfusionMetric):
    _keys, _default_name = ("fn",), "false_negatives"


class Precision(_ConfusionMetric):
    """tp / (tp + fp) per threshold; with top_k, only the k highest scores count as positive."""

    _keys, _default_name, direction = ("tp", "fp"), "precision", "up"
    _params = (("thresholds", None), ("top_k", None), ("class_id", None))

    def _check(self):
        default = 0.5 if self.kwargs["top_k"] is None else NEG_INF
        thresholds = self.kwargs["thresholds"]
        if thresholds is None:
            self._thresholds = np.asarray([default], np.float32)
        else:
            self._thresholds = _parse_thresholds(type(self).__name__, thresholds, default)

    def _value(self, state):
        return _divide_no_nan(state["tp"], state["tp"] + state["fp"])


class Recall(Precision):
    """tp / (tp + fn) per threshold."""

    _keys, _default_name = ("tp", "fn"), "recall"

    def _value(self, state):
        return _divide_no_nan(state["tp"], state["tp"] + state["fn"])


class AUC(Metric):
    """Area under the ROC or PR curve from counts at fixed thresholds (Keras's estimator)."""

    _default_name, direction = "auc", "up"
    _params = (
        ("num_thresholds", 200), ("curve", "ROC"), ("summation_method", "interpolation"),
        ("thresholds", None), ("multi_label", False), ("num_labels", None),
        ("label_weights", None), ("from_logits", False),
    )  # fmt: skip

    def _check(self):
        kw = self.kwargs
        curve, method = str(kw["curve"]).upper(), str(kw["summation_method"]).lower()
        if curve not in ("ROC", "PR", "PRGAIN"):
            raise ValueError(f"AUC: curve must be 'ROC', 'PR' or 'PRGAIN', got {kw['curve']!r}.")
        if method not in ("interpolation", "majoring", "minoring"):
            raise ValueError(
                "AUC: summation_method must be 'interpolation', 'majoring' or 'minoring', "
                f"got {kw['summation_method']!r}."
            )
        self._curve, self._method = curve, method
        if kw["thresholds"] is not None:
            inner = np.sort(_parse_thresholds("AUC", kw["thresholds"], 0.5))
            grid = np.concatenate([[0.0], inner, [1.0]])
            even = np.arange(len(grid), dtype=np.float32) / (len(grid) - 1)
            self._evenly = len(grid) >= 3 and np.allclose(grid, even, atol=1e-7)
        else:
            if kw["num_thresholds"] <= 1:
                raise ValueError(f"AUC: num_thresholds must be > 1, got {kw['num_thresholds']}.")
            n = kw["num_thresholds"]
            inner = np.asarray([(i + 1) / (n - 1) for i in range(n - 2)], np.float32)
            self._evenly = True
        eps = _losses.EPSILON
        self._thresholds = np.concatenate([[-eps], inner, [1.0 + eps]]).astype(np.float32)
        if kw["multi_label"] and not kw["num_labels"]:
            raise ValueError("AUC(multi_label=True) needs num_labels to size its state.")
        if not kw["multi_label"] and kw["num_labels"]:
            raise ValueError("AUC: num_labels is only used with multi_label=True.")
        self._label_weights = None
        if kw["label_weights"] is not None:
            self._label_weights = np.asarray(kw["label_weights"], np.float32)

    def init(self):
        shape = (len(self._thresholds),)
        if self.kwargs["multi_label"]:
            shape += (self.kwargs["num_labels"],)
        zeros = jnp.zeros(shape, jnp.float32)
        return {"tp": zeros, "fp": zeros, "tn": zeros, "fn": zeros}

    def update(self, state, y_true, y_pred, sample_weight=None):
        if self.kwargs["from_logits"]:
            y_pred = jax.nn.sigmoid(jnp.asarray(y_pred, jnp.float32))
        is_pos, y_pred, weights = _confusion_inputs(y_true, y_pred, sample_weight)
        labels = y_pred.shape[-1] if self.kwargs["multi_label"] else 1
        if self.kwargs["multi_label"] and (y_pred.ndim != 2 or labels != self.num_labels):
            raise ValueError(
                f"AUC(multi_label=True, num_labels={self.num_labels}) needs y_pred of shape "
                f"(batch, {self.num_labels}), got {y_pred.shape}."
            )
        if self._label_weights is not None and not self.kwargs["multi_label"]:
            weights = weights * self._label_weights
        flat = [x.reshape(-1, labels) for x in (is_pos, y_pred, weights)]
        if self._evenly:
            counts = _bucket_counts(*flat, len(self._thresholds))
        else:
            counts = _threshold_counts(*flat, self._thresholds)
        if not self.kwargs["multi_label"]:
            counts = {key: value[:, 0] for key, value in counts.items()}
        return {key: state[key] + counts[key] for key in state}

    def _per_label(self, terms):
        total = jnp.sum(terms, axis=0)
        if not self.kwargs["multi_label"]:
            return total
        if self._label_weights is None:
            return jnp.mean(total)
        weights = jnp.asarray(self._label_weights)
        return _divide_no_nan(jnp.sum(total * weights), jnp.sum(weights))

    def _interpolated_pr(self, s):
        """Davis & Goadrich interpolation of precision between thresholds."""
        tp, fp, fn = s["tp"], s["fp"], s["fn"]
        predicted = tp + fp
        d_tp = tp[:-1] - tp[1:]
        d_pred = predicted[:-1] - predicted[1:]
        slope = _divide_no_nan(d_tp, jnp.maximum(d_pred, 0.0))
        intercept = tp[1:] - slope * predicted[1:]
        both = (predicted[:-1] > 0) & (predicted[1:] > 0)
        ratio = jnp.where(both, _divide_no_nan(predicted[:-1], jnp.maximum(predicted[1:], 0)), 1)
        terms = _divide_no_nan(
            slope * (d_tp + intercept * jnp.log(ratio)), jnp.maximum(tp[1:] + fn[1:], 0.0)
        )
        return self._per_label(terms)

    def result(self, state):
        if self._curve == "PR" and self._method == "interpolation":
            return self._interpolated_pr(state)
        tp, fp, tn, fn = state["tp"], state["fp"], state["tn"], state["fn"]
        recall = _divide_no_nan(tp, tp + fn)
        if self._curve == "ROC":
            x, y = _divide_no_nan(fp, fp + tn), recall
        elif self._curve == "PR":
            x, y = recall, _divide_no_nan(tp, tp + fp)
        else:
            scale = _divide_no_nan(tp + fn, tn + fp)
            recall_gain = 1.0 - scale * _divide_no_nan(fn, tp)
            precision_gain = 1.0 - scale * _divide_no_nan(fp, tp)
            x = jnp.maximum(jnp.where(tp == 0, 0.0, recall_gain), 0.0)
            y = jnp.where(tp == 0, 1.0, precision_gain)
        if self._method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self._method == "minoring":
            heights = jnp.minimum(y[:-1], y[1:])
        else:
            heights = jnp.maximum(y[:-1], y[1:])
        return self._per_label((x[:-1] - x[1:]) * heights)


# Resolution by name.

_CLASSES = (
    Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
    TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy, MeanSquaredError,
    MeanAbsoluteError, MeanAbsolutePercentageError, MeanSquaredLogarithmicError,
    RootMeanSquaredError, CosineSimilarity, LogCoshError, KLDivergence, Poisson, Hinge,
    SquaredHinge, CategoricalHinge, BinaryCrossentropy, CategoricalCrossentropy,
    SparseCategoricalCrossentropy, AUC, Precision, Recall, TruePositives, FalsePositives,
    TrueNegatives, FalseNegatives, MeanMetricWrapper,
)  # fmt: skip
_ALIASES = {
    "mse": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mape": MeanAbsolutePercentageError,
    "msle": MeanSquaredLogarithmicError,
    "bce": BinaryCrossentropy,
    "kld": KLDivergence,
    "kullback_leibler_divergence": KLDivergence,
    "logcosh": LogCoshError,
}
_FUNCTIONS = {
    fn.__name__: fn
    for fn in (
        accuracy, binary_accuracy, categorical_accuracy, sparse_categorical_accuracy,
        top_k_categorical_accuracy, sparse_top_k_categorical_accuracy, cosine_similarity,
    )
}  # fmt: skip
_CUSTOM = {}


def _norm(name):
    return name.lower().replace("_", "")


_BY_NORM = {_norm(cls.__name__): cls for cls in _CLASSES if cls is not MeanMetricWrapper}
_BY_NORM.update({_norm(k): v for k, v in _ALIASES.items()})


def accepted_names():
    named = [cls for cls in _CLASSES if cls is not MeanMetricWrapper]
    classes = {cls.__name__ for cls in named} | {cls._default_name for cls in named}
    builtin = classes | set(_ALIASES) | set(_FUNCTIONS)
    return sorted(builtin | {"acc", "accuracy", "ce", "crossentropy"} | set(_CUSTOM))


def register(name, obj):
    """Make a custom Metric subclass or per-sample function reachable by name."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"register: name must be a non-empty string, got {name!r}.")
    if _norm(name) in _BY_NORM or name in _FUNCTIONS or _norm(name) in ("acc", "accuracy"):
        raise ValueError(f"register: {name!r} is a built-in metric name; choose another.")
    if not (isinstance(obj, type) and issubclass(obj, Metric)) and not callable(obj):
        raise TypeError(f"register: metric {name!r} must be a Metric subclass or a function.")
    _CUSTOM[name] = obj
    return obj


def _serialize_function(fn):
    for name, obj in _CUSTOM.items():
        if obj is fn:
            return name
    if _FUNCTIONS.get(getattr(fn, "__name__", None)) is fn:
        return fn.__name__
    return _losses.serialize(fn)


def _function_from_config(value):
    if isinstance(value, str) and value in _CUSTOM:
        return _CUSTOM[value]
    if isinstance(value, str) and value in _FUNCTIONS:
        return _FUNCTIONS[value]
    return _losses.get(value)


def _kind(loss, output_shape, y_true_shape):
    """'binary' / 'sparse' / 'categorical' from the loss, else from the shapes."""
    from_logits = False
    if loss is not None:
        fn, kwargs = _losses.unwrap(loss)
        from_logits = bool(kwargs.get("from_logits", False))
        if fn in (_losses.binary_crossentropy, _losses.binary_focal_crossentropy):
            return "binary", from_logits
        if fn is _losses.sparse_categorical_crossentropy:
            return "sparse", from_logits
        if fn in (_losses.categorical_crossentropy, _losses.categorical_focal_crossentropy):
            return "categorical", from_logits
    if output_shape is None or not tuple(output_shape):
        return None, from_logits
    if y_true_shape is None:
        return ("binary" if tuple(output_shape)[-1] == 1 else "categorical"), from_logits
    return _losses.shape_kind(y_true_shape, output_shape), from_logits


def _resolve(identifier, loss, output_shape, y_true_shape):
    kind, from_logits = _kind(loss, output_shape, y_true_shape)
    if identifier.lower() in ("accuracy", "acc"):
        classes = {
            "binary": BinaryAccuracy,
            "sparse": SparseCategoricalAccuracy,
            "categorical": CategoricalAccuracy,
        }
        return classes.get(kind, Accuracy)(name=identifier)
    classes = {
        "binary": BinaryCrossentropy,
        "sparse": SparseCategoricalCrossentropy,
        "categorical": CategoricalCrossentropy,
    }
    if kind is None:
        raise ValueError(f"Metric {identifier!r} needs the loss or the output shape to resolve.")
    return classes[kind](from_logits=from_logits, name=identifier)


def get(identifier, loss=None, output_shape=None, y_true_shape=None):
    """Resolve a metric; 'acc'/'accuracy'/'ce'/'crossentropy' follow the loss (or shapes).

    A string keeps the spelling the user typed as the metric's name (History keys).
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        if identifier.lower() in ("accuracy", "acc", "crossentropy", "ce"):
            return _resolve(identifier, loss, output_shape, y_true_shape)
        obj = _CUSTOM.get(identifier) or _BY_NORM.get(_norm(identifier))
        if obj is None:
            raise ValueError(f"Unknown metric {identifier!r}. Accepted names: {accepted_names()}.")
        if isinstance(obj, type):
            return obj(name=identifier)
        return MeanMetricWrapper(obj, name=identifier)
    if isinstance(identifier, dict):
        name = identifier.get("class_name")
        cls = _CUSTOM.get(name) or _BY_NORM.get(_norm(str(name)))
        if name == "MeanMetricWrapper":
            cls = MeanMetricWrapper
        if not isinstance(cls, type):
            raise ValueError(f"Unknown metric class {name!r}. Accepted names: {accepted_names()}.")
        return cls.from_config(identifier.get("config") or {})
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, type) and issubclass(identifier, _losses.Loss):
        return MeanMetricWrapper(identifier())
    if callable(identifier):
        return MeanMetricWrapper(identifier)
    raise TypeError(f"Cannot interpret {identifier!r} as a metric; pass a name, dict or callable.")


def deserialize(config):
    """Keras's name for `get` on a serialized metric."""
    return get(config)


def serialize(metric):
    """{'class_name', 'config'} that `get` turns back into an equivalent metric.

    A metric function registered with `register` (or a built-in one) serializes to
    its name; any other function raises a TypeError saying how to register it.
    """
    if not isinstance(metric, Metric) and not isinstance(metric, type) and callable(metric):
        for name, obj in _CUSTOM.items():
            if obj is metric:
                return name
        if _FUNCTIONS.get(getattr(metric, "__name__", None)) is metric:
            return metric.__name__
        raise TypeError(
            f"Cannot serialize metric function {getattr(metric, '__name__', metric)!r}: "
            "register it first with jaxgraph.metrics.register(name, fn)."
        )
    if not isinstance(metric, Metric):
        raise TypeError(f"serialize expects a Metric, got {metric!r}.")
    names = {v: k for k, v in _CUSTOM.items() if isinstance(v, type)}
    return {"class_name": names.get(type(metric), type(metric).__name__),
            "config": metric.get_config()}  # fmt: skip

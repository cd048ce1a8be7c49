"""Keras-named losses as pure functions returning one value per sample.

Every loss reduces over the last axis only (as Keras does); sample weights,
padding masks and the batch mean belong to the trainer, so one jitted train
step can weight and mask all outputs the same way.
"""

import functools

import jax
import jax.numpy as jnp
import optax

from .step_context import row_mask

EPSILON = 1e-7  # Keras's backend.epsilon(): probability clipping and safe division.
REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


def _rank_fix(true_shape, pred_shape):
    """Keras reconciles ranks that differ by one through a trailing axis of size 1."""
    if len(true_shape) == len(pred_shape) + 1 and true_shape[-1] == 1:
        return "expand_pred" if len(pred_shape) == 1 else "squeeze_true"
    if len(pred_shape) == len(true_shape) + 1 and pred_shape[-1] == 1:
        return "expand_true" if len(true_shape) == 1 else "squeeze_pred"
    return None


def align(y_true, y_pred):
    """Squeeze or expand a trailing 1 so `(batch,)` labels meet `(batch, 1)` outputs."""
    fix = _rank_fix(y_true.shape, y_pred.shape)
    if fix == "expand_pred":
        y_pred = y_pred[..., None]
    elif fix == "squeeze_true":
        y_true = jnp.squeeze(y_true, -1)
    elif fix == "expand_true":
        y_true = y_true[..., None]
    elif fix == "squeeze_pred":
        y_pred = jnp.squeeze(y_pred, -1)
    return y_true, y_pred


def _prep(y_true, y_pred):
    y_pred = jnp.asarray(y_pred)
    if not jnp.issubdtype(y_pred.dtype, jnp.floating):
        y_pred = y_pred.astype(jnp.float32)
    return align(jnp.asarray(y_true).astype(y_pred.dtype), y_pred)


def _l2_normalize(x, axis):
    inv_norm = jax.lax.rsqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
    return x * jnp.minimum(inv_norm, 1.0 / EPSILON)


def _normalized_probs(y_pred, axis):
    y_pred = y_pred / jnp.sum(y_pred, axis=axis, keepdims=True)
    return jnp.clip(y_pred, EPSILON, 1.0 - EPSILON)


def _smooth_categorical(y_true, label_smoothing, axis):
    if not label_smoothing:
        return y_true
    return y_true * (1.0 - label_smoothing) + label_smoothing / y_true.shape[axis]


def _smooth_binary(y_true, label_smoothing):
    if not label_smoothing:
        return y_true
    return y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing


def mean_squared_error(y_true, y_pred):
    y_true, y_pred = _prep(y_true, y_pred)
    return jnp.mean(optax.losses.squared_error(y_pred, y_true), axis=-1)


def mean_absolute_error(y_true, y_pred):
    y_true, y_pred = _prep(y_true, y_pred)
    return jnp.mean(jnp.abs(y_true - y_pred), axis=-1)


def mean_absolute_percentage_error(y_true, y_pred):
    y_true, y_pred = _prep(y_true, y_pred)
    diff = jnp.abs((y_true - y_pred) / jnp.maximum(jnp.abs(y_true), EPSILON))
    return 100.0 * jnp.mean(diff, axis=-1)


def mean_squared_logarithmic_error(y_true, y_pred):
    y_true, y_pred = _prep(y_true, y_pred)
    first = jnp.log(jnp.maximum(y_pred, EPSILON) + 1.0)
    second = jnp.log(jnp.maximum(y_true, EPSILON) + 1.0)
    return jnp.mean(jnp.square(first - second), axis=-1)


def cosine_similarity(y_true, y_pred, axis=-1):
    """Negative cosine similarity (Keras's sign), so that lower is better."""
    y_true, y_pred = _prep(y_true, y_pred)
    return -jnp.sum(_l2_normalize(y_true, axis) * _l2_normalize(y_pred, axis), axis=axis)


def huber(y_true, y_pred, delta=1.0):
    y_true, y_pred = _prep(y_true, y_pred)
    return jnp.mean(optax.losses.huber_loss(y_pred, y_true, delta=delta), axis=-1)


def log_cosh(y_true, y_pred):
    y_true, y_pred = _prep(y_true, y_pred)
    return jnp.mean(optax.losses.log_cosh(y_pred, y_true), axis=-1)


def kl_divergence(y_true, y_pred):
    y_true, y_pred = _prep(y_true, y_pred)
    y_true = jnp.clip(y_true, EPSILON, 1.0)
    y_pred = jnp.clip(y_pred, EPSILON, 1.0)
    return jnp.sum(y_true * jnp.log(y_true / y_pred), axis=-1)


def poisson(y_true, y_pred):
    y_true, y_pred = _prep(y_true, y_pred)
    return jnp.mean(y_pred - y_true * jnp.log(y_pred + EPSILON), axis=-1)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    y_true, y_pred = _prep(y_true, y_pred)
    y_true = _smooth_categorical(y_true, label_smoothing, axis)
    if from_logits:
        return optax.losses.softmax_cross_entropy(y_pred, y_true, axis=axis)
    return -jnp.sum(y_true * jnp.log(_normalized_probs(y_pred, axis)), axis=axis)


def _sparse_labels(y_true, y_pred, axis):
    """Integer labels without the class axis (a size-1 one is squeezed away)."""
    labels = jnp.asarray(y_true)
    if labels.ndim == jnp.ndim(y_pred) and labels.shape[axis] == 1:
        labels = jnp.squeeze(labels, axis)
    return labels.astype(jnp.int32)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    """Integer labels shaped like y_pred without its class axis (or with it as size 1)."""
    y_pred = jnp.asarray(y_pred)
    if not jnp.issubdtype(y_pred.dtype, jnp.floating):
        y_pred = y_pred.astype(jnp.float32)
    labels = _sparse_labels(y_true, y_pred, axis)
    valid = None
    if ignore_class is not None:
        valid = labels != ignore_class
        labels = jnp.where(valid, labels, 0)
    if from_logits:
        log_prob = jax.nn.log_softmax(y_pred, axis=axis)
    else:
        log_prob = jnp.log(_normalized_probs(y_pred, axis))
    one_hot = jax.nn.one_hot(labels, y_pred.shape[axis], dtype=y_pred.dtype, axis=axis)
    loss = -jnp.sum(one_hot * log_prob, axis=axis)
    return loss if valid is None else jnp.where(valid, loss, 0.0)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    y_true, y_pred = _prep(y_true, y_pred)
    y_true = _smooth_binary(y_true, label_smoothing)
    if from_logits:
        bce = optax.losses.sigmoid_binary_cross_entropy(y_pred, y_true)
    else:
        y_pred = jnp.clip(y_pred, EPSILON, 1.0 - EPSILON)
        bce = -(y_true * jnp.log(y_pred) + (1.0 - y_true) * jnp.log(1.0 - y_pred))
    return jnp.mean(bce, axis=axis)


def binary_focal_crossentropy(
    y_true,
    y_pred,
    apply_class_balancing=False,
    alpha=0.25,
    gamma=2.0,
    from_logits=False,
    label_smoothing=0.0,
    axis=-1,
):
    y_true, y_pred = _prep(y_true, y_pred)
    y_true = _smooth_binary(y_true, label_smoothing)
    if from_logits:
        y_pred = jax.nn.sigmoid(y_pred)
    clipped = jnp.clip(y_pred, EPSILON, 1.0 - EPSILON)
    bce = -(y_true * jnp.log(clipped) + (1.0 - y_true) * jnp.log(1.0 - clipped))
    p_t = y_true * y_pred + (1.0 - y_true) * (1.0 - y_pred)
    focal = jnp.power(1.0 - p_t, gamma) * bce
    if apply_class_balancing:
        focal = (y_true * alpha + (1.0 - y_true) * (1.0 - alpha)) * focal
    return jnp.mean(focal, axis=axis)


def categorical_focal_crossentropy(
    y_true, y_pred, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1
):
    y_true, y_pred = _prep(y_true, y_pred)
    y_true = _smooth_categorical(y_true, label_smoothing, axis)
    if from_logits:
        y_pred = jax.nn.softmax(y_pred, axis=axis)
    probs = _normalized_probs(y_pred, axis)
    focal = alpha * jnp.power(1.0 - probs, gamma) * (-y_true * jnp.log(probs))
    return jnp.sum(focal, axis=axis)


def _to_signed_labels(y_true):
    """{0, 1} labels become {-1, 1}; labels already signed pass through (Keras's rule)."""
    is_binary = jnp.all((y_true == 0) | (y_true == 1))
    return jnp.where(is_binary, 2.0 * y_true - 1.0, y_true)


def hinge(y_true, y_pred):
    y_true, y_pred = _prep(y_true, y_pred)
    return jnp.mean(jnp.maximum(1.0 - _to_signed_labels(y_true) * y_pred, 0.0), axis=-1)


def squared_hinge(y_true, y_pred):
    y_true, y_pred = _prep(y_true, y_pred)
    margin = jnp.maximum(1.0 - _to_signed_labels(y_true) * y_pred, 0.0)
    return jnp.mean(jnp.square(margin), axis=-1)


def categorical_hinge(y_true, y_pred):
    y_true, y_pred = _prep(y_true, y_pred)
    pos = jnp.sum(y_true * y_pred, axis=-1)
    neg = jnp.max((1.0 - y_true) * y_pred, axis=-1)
    return jnp.maximum(neg - pos + 1.0, 0.0)


def _bind_arguments(owner, params, args, kwargs):
    """Keras-style constructor binding: positional in Keras's order, then keywords."""
    keys = [key for key, _ in params]
    if len(args) > len(keys):
        raise TypeError(f"{owner} takes at most {len(keys)} positional arguments ({keys}).")
    bound = dict(zip(keys, args))
    twice = sorted(set(bound) & set(kwargs))
    unknown = sorted(set(kwargs) - set(keys))
    if twice or unknown:
        raise TypeError(
            f"{owner} got unexpected or repeated argument(s) {twice + unknown}; accepted: {keys}."
        )
    bound.update(kwargs)
    return {key: bound.get(key, default) for key, default in params}


def reduce_loss(values, sample_weight=None, mask=None, reduction="sum_over_batch_size",
                valid=None):
    """One batch's loss from per-sample (or per-element) values, as Keras reduces it.

    `values` is (batch, ...). `sample_weight` and `valid` (the rows of a padded last batch
    that exist) are per row; `mask` has the shape of `values` (ignore_class) and leaves out
    its zeros as Keras's loss masks do: "sum_over_batch_size" and "mean" divide by the
    count of unmasked elements, "mean_with_sample_weight" by the weights' sum, "sum" not
    at all. "none"/None keep the values (weighted) in `Loss.__call__`; `fit` then takes
    their mean, as Keras's compiled loss does."""
    values = jnp.asarray(values)
    if not jnp.issubdtype(values.dtype, jnp.floating):
        values = values.astype(jnp.float32)
    if values.ndim == 0:
        raise ValueError("A loss function must return one value per sample, got a scalar")
    n = values.shape[0]
    flat = values.reshape(n, -1)
    rows = None  # (n, 1) per row, or (n, elements) per element (temporal weights)
    if sample_weight is not None:
        rows = jnp.asarray(sample_weight, flat.dtype).reshape(n, -1)
    if valid is not None:
        live = jnp.asarray(valid, flat.dtype).reshape(n, 1)
        rows = live if rows is None else rows * live
    weights = rows
    if mask is not None:
        m = jnp.broadcast_to(jnp.asarray(mask, flat.dtype).reshape(n, -1), flat.shape)
        weights = m if weights is None else weights * m
    weighted = flat if weights is None else flat * weights
    if reduction in ("none", None):
        return weighted.reshape(values.shape)
    total = jnp.sum(weighted)
    if reduction == "sum":
        return total
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        divisor = jnp.sum(weights)  # sample weights, times the mask where there is one
    else:  # the number of elements that count: unmasked ones in existing rows
        counted = jnp.ones_like(flat)
        if valid is not None:
            counted = counted * jnp.asarray(valid, flat.dtype).reshape(n, 1)
        if mask is not None:
            counted = counted * m
        divisor = jnp.sum(counted)
    return jnp.where(divisor > 0, total / jnp.where(divisor > 0, divisor, 1.0), 0.0)


def mask_for(values, mask, owner="A loss"):
    """`mask` (an output's propagated mask, say (batch, steps)) aligned to `values`:
    a trailing axis of 1 is squeezed or added as Keras does, then it must broadcast."""
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    values_shape = tuple(jnp.shape(values))
    fix = _rank_fix(mask.shape, values_shape)  # only the mask may change shape here
    if fix in ("squeeze_true", "expand_pred"):
        mask = jnp.squeeze(mask, -1)
    elif fix in ("expand_true", "squeeze_pred"):
        mask = mask[..., None]
    try:
        fits = jnp.broadcast_shapes(mask.shape, values_shape) == values_shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{owner}: the predictions' mask has shape {tuple(mask.shape)}, "
                         f"which does not fit the loss values of shape {values_shape}")
    return mask.astype(bool)


def batch_loss(loss, y_true, y_pred, sample_weight=None, valid=None, mask=None, output=None):
    """One batch's value of a compiled loss: a `Loss` object by its own `reduction` and
    `mask` (Keras's compiled loss calls the object), a plain per-sample function by the
    mean over existing rows and any other axis. "none" becomes that mean too, as in
    Keras's compiled loss. `mask` is the prediction's own (an `Embedding(mask_zero=True)`
    propagated to the output): masked steps count neither in the sum nor in the mean."""
    if isinstance(loss, Loss):
        values = jnp.asarray(loss.call(y_true, y_pred), jnp.float32)
        own, reduction = loss.mask(y_true, y_pred), loss.reduction
    else:
        values, own, reduction = jnp.asarray(loss(y_true, y_pred), jnp.float32), None, None
    mask = mask_for(values, mask, "A loss" if output is None else f"Output {output!r}")
    if own is not None:
        mask = own if mask is None else mask & own
    if reduction in ("none", None):
        reduction = "sum_over_batch_size"
    return reduce_loss(values, sample_weight, mask, reduction, valid)


class Loss:
    """A configured loss, Keras's way.

    `loss.call(y_true, y_pred)` returns per-sample values (subclasses override it);
    `loss(y_true, y_pred, sample_weight=None)` reduces them by `reduction`, leaving out
    what `mask()` masks, so `jax.grad` can differentiate it directly. `fit` calls `call`
    and reduces each batch the same way.
    """

    _fn = None
    _params = ()
    _default_name = "loss"

    def __init__(self, *args, **kwargs):
        extra = (("reduction", "sum_over_batch_size"), ("name", None))
        config = _bind_arguments(type(self).__name__, tuple(self._params) + extra, args, kwargs)
        reduction = config.pop("reduction")
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"{type(self).__name__}: invalid reduction={reduction!r}; expected one of "
                f"{REDUCTIONS}."
            )
        self.reduction = reduction
        self.name = config.pop("name") or self._default_name
        self.kwargs = config

    @property
    def fn(self):
        return type(self)._fn

    def __getattr__(self, item):
        kwargs = self.__dict__.get("kwargs", {})
        if item in kwargs:
            return kwargs[item]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {item!r}")

    def call(self, y_true, y_pred):
        """Keras-style subclasses override this with their own per-sample loss."""
        return self.fn(y_true, y_pred, **self.kwargs)

    def mask(self, y_true, y_pred):
        """Which of call()'s values count (broadcastable to them), or None for all."""
        return None

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Inside a custom train_step the padded rows of a partial last batch count for
        # nothing, as if the batch were the short one (see step_context).
        values = self.call(y_true, y_pred)
        return reduce_loss(values, sample_weight, self.mask(y_true, y_pred), self.reduction,
                           row_mask(values))

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, **self.kwargs}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r}, {self.kwargs})"


class LossFunctionWrapper(Loss):
    """Turns any `(y_true, y_pred, **kwargs) -> per-sample` function into a Loss."""

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, **kwargs):
        if not callable(fn):
            raise TypeError(f"LossFunctionWrapper: fn must be callable, got {fn!r}.")
        self._wrapped = fn
        self._params = tuple(kwargs.items())
        default = getattr(fn, "__name__", "loss")
        super().__init__(reduction=reduction, name=name or default, **kwargs)

    @property
    def fn(self):
        return self._wrapped

    def get_config(self):
        return {"fn": serialize(self._wrapped), **super().get_config()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(get(config.pop("fn")), **config)


# Keras 2 module-level spellings.
mse = mean_squared_error
mae = mean_absolute_error
mape = mean_absolute_percentage_error
msle = mean_squared_logarithmic_error
kld = kullback_leibler_divergence = kl_divergence
logcosh = log_cosh


def _loss_class(class_name, fn, params, default_name):
    doc = f"Keras's `{class_name}`: configured `{fn.__name__}` returning per-sample losses."
    attrs = {
        "_fn": staticmethod(fn),
        "_params": params,
        "_default_name": default_name,
        "__doc__": doc,
    }
    return type(class_name, (Loss,), attrs)


_CE = (("from_logits", False), ("label_smoothing", 0.0), ("axis", -1))
_FOCAL = (("alpha", 0.25), ("gamma", 2.0)) + _CE
MeanSquaredError = _loss_class("MeanSquaredError", mean_squared_error, (), "mean_squared_error")
MeanAbsoluteError = _loss_class("MeanAbsoluteError", mean_absolute_error, (), "mean_absolute_error")
MeanAbsolutePercentageError = _loss_class(
    "MeanAbsolutePercentageError",
    mean_absolute_percentage_error,
    (),
    "mean_absolute_percentage_error",
)
MeanSquaredLogarithmicError = _loss_class(
    "MeanSquaredLogarithmicError",
    mean_squared_logarithmic_error,
    (),
    "mean_squared_logarithmic_error",
)
CosineSimilarity = _loss_class(
    "CosineSimilarity", cosine_similarity, (("axis", -1),), "cosine_similarity"
)
Huber = _loss_class("Huber", huber, (("delta", 1.0),), "huber_loss")
LogCosh = _loss_class("LogCosh", log_cosh, (), "log_cosh")
KLDivergence = _loss_class("KLDivergence", kl_divergence, (), "kl_divergence")
Poisson = _loss_class("Poisson", poisson, (), "poisson")
Hinge = _loss_class("Hinge", hinge, (), "hinge")
SquaredHinge = _loss_class("SquaredHinge", squared_hinge, (), "squared_hinge")
CategoricalHinge = _loss_class("CategoricalHinge", categorical_hinge, (), "categorical_hinge")
CategoricalCrossentropy = _loss_class(
    "CategoricalCrossentropy", categorical_crossentropy, _CE, "categorical_crossentropy"
)


class SparseCategoricalCrossentropy(_loss_class(
        "SparseCategoricalCrossentropy",
        sparse_categorical_crossentropy,
        (("from_logits", False), ("ignore_class", None), ("axis", -1)),
        "sparse_categorical_crossentropy")):
    """Keras's `SparseCategoricalCrossentropy`: integer labels; `ignore_class` (e.g. a
    padding token) leaves those labels out of the loss and of its mean."""

    def mask(self, y_true, y_pred):
        """Labels equal to `ignore_class` count neither in the sum nor in the mean."""
        ignore = self.kwargs["ignore_class"]
        if ignore is None:
            return None
        return _sparse_labels(y_true, y_pred, self.kwargs["axis"]) != ignore


BinaryCrossentropy = _loss_class(
    "BinaryCrossentropy", binary_crossentropy, _CE, "binary_crossentropy"
)
BinaryFocalCrossentropy = _loss_class(
    "BinaryFocalCrossentropy",
    binary_focal_crossentropy,
    (("apply_class_balancing", False),) + _FOCAL,
    "binary_focal_crossentropy",
)
CategoricalFocalCrossentropy = _loss_class(
    "CategoricalFocalCrossentropy",
    categorical_focal_crossentropy,
    _FOCAL,
    "categorical_focal_crossentropy",
)

_CLASSES = (
    MeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError,
    MeanSquaredLogarithmicError, CosineSimilarity, Huber, LogCosh, KLDivergence, Poisson,
    Hinge, SquaredHinge, CategoricalHinge, CategoricalCrossentropy,
    SparseCategoricalCrossentropy, BinaryCrossentropy, BinaryFocalCrossentropy,
    CategoricalFocalCrossentropy, LossFunctionWrapper,
)  # fmt: skip
_FUNCTIONS = {cls._fn.__name__: cls._fn for cls in _CLASSES if cls._fn is not None}
_ALIASES = {
    "mse": "mean_squared_error",
    "mae": "mean_absolute_error",
    "mape": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error",
    "kld": "kl_divergence",
    "kullback_leibler_divergence": "kl_divergence",
    "bce": "binary_crossentropy",
    "huber_loss": "huber",
    "logcosh": "log_cosh",
}
_CUSTOM = {}


def _norm(name):
    return name.lower().replace("_", "")


_BY_NORM_FN = {_norm(k): v for k, v in _FUNCTIONS.items()}
_BY_NORM_FN.update({_norm(k): _FUNCTIONS[v] for k, v in _ALIASES.items()})
_BY_NORM_CLASS = {_norm(cls.__name__): cls for cls in _CLASSES}


def accepted_names():
    return sorted(set(_FUNCTIONS) | set(_ALIASES) | {c.__name__ for c in _CLASSES} | set(_CUSTOM))


def register(name, obj):
    """Make a custom loss function or Loss subclass reachable by name (and serializable)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"register: name must be a non-empty string, got {name!r}.")
    if _norm(name) in _BY_NORM_FN or _norm(name) in _BY_NORM_CLASS:
        raise ValueError(f"register: {name!r} is a built-in loss name; choose another.")
    if not callable(obj):
        raise TypeError(f"register: loss {name!r} must be callable, got {obj!r}.")
    _CUSTOM[name] = obj
    return obj


def _from_string(identifier):
    if identifier in _CUSTOM:
        obj = _CUSTOM[identifier]
        return obj() if isinstance(obj, type) else obj
    key = _norm(identifier)
    if identifier != identifier.lower() and key in _BY_NORM_CLASS:
        return _BY_NORM_CLASS[key]()
    if key in _BY_NORM_FN:
        return _BY_NORM_FN[key]
    if key in _BY_NORM_CLASS and _BY_NORM_CLASS[key] is not LossFunctionWrapper:
        return _BY_NORM_CLASS[key]()
    if key in ("crossentropy", "ce"):
        raise ValueError(
            f"Loss {identifier!r} depends on the data: call "
            "resolve_crossentropy(y_true_shape, y_pred_shape)."
        )
    raise ValueError(f"Unknown loss {identifier!r}. Accepted names: {accepted_names()}.")


def get(identifier):
    """Resolve a name, config dict, Loss instance or callable to a per-sample loss."""
    if isinstance(identifier, str):
        return _from_string(identifier)
    if isinstance(identifier, dict):
        if "class_name" not in identifier:
            raise ValueError(f"Loss config needs 'class_name' and 'config': {identifier!r}.")
        name, config = identifier["class_name"], identifier.get("config") or {}
        cls = _CUSTOM.get(name) or _BY_NORM_CLASS.get(_norm(name))
        if not isinstance(cls, type):
            raise ValueError(f"Unknown loss class {name!r}. Accepted names: {accepted_names()}.")
        return cls.from_config(config)
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier):
        return identifier
    raise TypeError(f"Cannot interpret {identifier!r} as a loss; pass a name, dict or callable.")


def deserialize(config):
    """Keras's name for `get` on a serialized loss."""
    return get(config)


def serialize(loss):
    """JSON-able form that `get` turns back into the same loss."""
    for name, obj in _CUSTOM.items():
        if obj is loss:
            return name
    if isinstance(loss, Loss):
        names = {v: k for k, v in _CUSTOM.items() if isinstance(v, type)}
        class_name = names.get(type(loss), type(loss).__name__)
        return {"class_name": class_name, "config": loss.get_config()}
    if any(fn is loss for fn in _FUNCTIONS.values()):
        return loss.__name__
    raise TypeError(
        f"Cannot serialize loss {loss!r}: register it first with "
        "jaxgraph.losses.register(name, fn)."
    )


def unwrap(loss):
    """(underlying function, its keyword arguments) of a loss, partials included."""
    loss = get(loss)
    if isinstance(loss, Loss) and type(loss).call is not Loss.call:
        fn, kwargs = loss, {}
    elif isinstance(loss, Loss):
        fn, kwargs = loss.fn, dict(loss.kwargs)
    else:
        fn, kwargs = loss, {}
    while isinstance(fn, functools.partial):
        kwargs = {**fn.keywords, **kwargs}
        fn = fn.func
    return fn, kwargs


def resolve_crossentropy(y_true_shape, y_pred_shape):
    """Keras 3's 'crossentropy' / 'ce': binary, sparse or categorical from the shapes."""
    kind = shape_kind(y_true_shape, y_pred_shape)
    return {
        "binary": binary_crossentropy,
        "sparse": sparse_categorical_crossentropy,
        "categorical": categorical_crossentropy,
    }[kind]


def shape_kind(y_true_shape, y_pred_shape):
    """'binary', 'sparse' or 'categorical', by Keras 3's shape rule."""
    true_shape, pred_shape = tuple(y_true_shape), tuple(y_pred_shape)
    if pred_shape and pred_shape[-1] == 1:
        return "binary"
    sparse = len(true_shape) < len(pred_shape) or (
        bool(true_shape) and true_shape[-1] == 1 and (pred_shape[-1] or 2) > 1
    )
    return "sparse" if sparse else "categorical"


_SPARSE = (sparse_categorical_crossentropy,)
_CATEGORICAL = (categorical_crossentropy, categorical_focal_crossentropy, categorical_hinge)


def _same(a, b):
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def _fmt(shape):
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def validate(loss_fn, y_true_shape, y_pred_shape, output_name, y_true_dtype=None):
    """Raise a ValueError naming the output before compiling a loss it cannot compute."""
    true_shape, pred_shape = tuple(y_true_shape), tuple(y_pred_shape)
    fn, kwargs = unwrap(loss_fn)
    label = getattr(get(loss_fn), "name", None) or getattr(fn, "__name__", repr(fn))
    where = (
        f"Output {output_name!r}: loss {label!r} cannot use y_true of shape "
        f"{_fmt(true_shape)} with y_pred of shape {_fmt(pred_shape)}"
    )
    if not pred_shape and fn in _SPARSE + _CATEGORICAL:
        raise ValueError(f"{where}: y_pred needs a class axis.")
    if fn in _SPARSE:
        axis = kwargs.get("axis", -1) % len(pred_shape)
        classless = pred_shape[:axis] + pred_shape[axis + 1 :]
        with_one = pred_shape[:axis] + (1,) + pred_shape[axis + 1 :]
        if _same(true_shape, classless) or _same(true_shape, with_one):
            return
        hint = ""
        if _same(true_shape, pred_shape):
            hint = " (y_true looks one-hot encoded: use categorical_crossentropy)"
        raise ValueError(f"{where}: expected integer labels of shape {_fmt(classless)}{hint}.")
    fix = _rank_fix(true_shape, pred_shape)
    aligned_true, aligned_pred = true_shape, pred_shape
    if fix == "expand_pred":
        aligned_pred = pred_shape + (1,)
    elif fix == "squeeze_true":
        aligned_true = true_shape[:-1]
    elif fix == "expand_true":
        aligned_true = true_shape + (1,)
    elif fix == "squeeze_pred":
        aligned_pred = pred_shape[:-1]
    if fn in _CATEGORICAL and not _same(aligned_true, aligned_pred):
        classless = pred_shape[:-1]
        hint = ""
        if _same(true_shape, classless) or _same(true_shape, classless + (1,)):
            hint = " (y_true looks like integer labels: use sparse_categorical_crossentropy)"
        raise ValueError(f"{where}: expected one-hot y_true of shape {_fmt(pred_shape)}{hint}.")
    if fn in _FUNCTIONS.values():
        if not _same(aligned_true, aligned_pred):
            raise ValueError(f"{where}: the shapes must match.")
        return
    _validate_custom(loss_fn, true_shape, pred_shape, y_true_dtype, where)


def _validate_custom(loss_fn, true_shape, pred_shape, y_true_dtype, where):
    batch = next((d for d in true_shape[:1] if d is not None), 2)
    concrete = lambda shape: tuple(batch if d is None else d for d in shape)  # noqa: E731
    y_true = jax.ShapeDtypeStruct(concrete(true_shape), y_true_dtype or jnp.float32)
    y_pred = jax.ShapeDtypeStruct(concrete(pred_shape), jnp.float32)
    try:
        # As fit computes it, so a loss returning a scalar is caught here, not in a trace.
        jax.eval_shape(functools.partial(batch_loss, get(loss_fn)), y_true, y_pred)
    except Exception as err:  # any tracing failure means the loss cannot run on these shapes
        raise ValueError(f"{where}: {type(err).__name__}: {err}") from err

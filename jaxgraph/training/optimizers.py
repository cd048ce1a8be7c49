"""Keras-named optimizers lowered to optax, with Keras 3's update rules.

`Optimizer.to_optax()` wraps the rule in `optax.inject_hyperparams`, so the
learning rate and the other float hyperparameters live in the optimizer state
as arrays: a callback changes them with `set_learning_rate` between steps and
the jitted train step is not traced again.
"""

import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

_COMMON = (("clipnorm", None), ("clipvalue", None), ("global_clipnorm", None), ("name", None))


class KerasAdamState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any
    nu_max: Any  # running max of nu for amsgrad, () otherwise


class KerasNadamState(NamedTuple):
    count: jax.Array
    u_product: jax.Array  # product of the momentum schedule so far
    mu: Any
    nu: Any


class KerasAdamaxState(NamedTuple):
    count: jax.Array
    mu: Any
    u: Any


def _ema(new, old, decay):
    return jax.tree.map(lambda n, o: o + (n - o) * (1.0 - decay), new, old)


def keras_adam(learning_rate, beta_1, beta_2, epsilon, amsgrad=False):
    """Keras's Adam: bias correction folded into the step size, epsilon outside the sqrt."""

    def init(params):
        zeros = optax.tree.zeros_like(params)
        return KerasAdamState(jnp.zeros([], jnp.int32), zeros, zeros, zeros if amsgrad else ())

    def update(grads, state, params=None):
        del params
        step = (state.count + 1).astype(jnp.result_type(learning_rate))
        mu = _ema(grads, state.mu, beta_1)
        nu = _ema(jax.tree.map(jnp.square, grads), state.nu, beta_2)
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu) if amsgrad else ()
        alpha = learning_rate * jnp.sqrt(1.0 - beta_2**step) / (1.0 - beta_1**step)
        denom = nu_max if amsgrad else nu
        updates = jax.tree.map(lambda m, v: -alpha * m / (jnp.sqrt(v) + epsilon), mu, denom)
        count = optax.safe_increment(state.count)
        return updates, KerasAdamState(count, mu, nu, nu_max)

    return optax.GradientTransformation(init, update)


def keras_nadam(learning_rate, beta_1, beta_2, epsilon):
    """Keras's Nadam, with its 0.96-decay momentum schedule (not optax.nadam's)."""

    def init(params):
        zeros = optax.tree.zeros_like(params)
        return KerasNadamState(jnp.zeros([], jnp.int32), jnp.ones([], jnp.float32), zeros, zeros)

    def update(grads, state, params=None):
        del params
        step = (state.count + 1).astype(jnp.result_type(learning_rate))
        u_t = beta_1 * (1.0 - 0.5 * 0.96**step)
        u_next = beta_1 * (1.0 - 0.5 * 0.96 ** (step + 1))
        u_product = state.u_product * u_t
        u_product_next = u_product * u_next
        mu = _ema(grads, state.mu, beta_1)
        nu = _ema(jax.tree.map(jnp.square, grads), state.nu, beta_2)
        nu_scale = 1.0 / (1.0 - beta_2**step)

        def step_of(m, v, g):
            m_hat = u_next * m / (1.0 - u_product_next) + (1.0 - u_t) * g / (1.0 - u_product)
            return -learning_rate * m_hat / (jnp.sqrt(v * nu_scale) + epsilon)

        updates = jax.tree.map(step_of, mu, nu, grads)
        count = optax.safe_increment(state.count)
        return updates, KerasNadamState(count, u_product, mu, nu)

    return optax.GradientTransformation(init, update)


def keras_adamax(learning_rate, beta_1, beta_2, epsilon):
    """Keras's Adamax: infinity-norm second moment, epsilon added to it."""

    def init(params):
        zeros = optax.tree.zeros_like(params)
        return KerasAdamaxState(jnp.zeros([], jnp.int32), zeros, zeros)

    def update(grads, state, params=None):
        del params
        step = (state.count + 1).astype(jnp.result_type(learning_rate))
        mu = _ema(grads, state.mu, beta_1)
        u = jax.tree.map(lambda u, g: jnp.maximum(beta_2 * u, jnp.abs(g)), state.u, grads)
        correction = 1.0 - beta_1**step
        updates = jax.tree.map(
            lambda m, u: -learning_rate * m / (correction * (u + epsilon)), mu, u
        )
        return updates, KerasAdamaxState(optax.safe_increment(state.count), mu, u)

    return optax.GradientTransformation(init, update)


def decoupled_weight_decay(weight_decay, learning_rate):
    """Keras's weight decay: `param -= param * weight_decay * learning_rate` every step."""

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("weight_decay needs the parameters: update(grads, state, params).")
        scale = learning_rate * weight_decay
        return jax.tree.map(lambda u, p: u - scale * p, updates, params), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


class HyperparamsState(NamedTuple):
    """Constant hyperparameters held as arrays beside the rule's own state."""

    hyperparams: dict
    inner_state: Any


def _as_hyperparam(value, dtype):
    value = jnp.asarray(value)
    return value.astype(dtype) if jnp.issubdtype(value.dtype, jnp.floating) else value


def inject_hyperparams(factory, initial: dict) -> optax.GradientTransformation:
    """`optax.inject_hyperparams(factory)(**initial)` without its step counter when no
    hyperparameter is a schedule: that counter only feeds schedules, yet it costs a kernel
    per step inside a compiled loop on accelerators. Same state fields otherwise, so
    `get_hyperparameter` / `set_hyperparameter` treat both alike."""
    if any(callable(v) for v in initial.values()):
        return optax.inject_hyperparams(factory)(**initial)
    static = {k: v for k, v in initial.items()
              if isinstance(v, bool) or not isinstance(v, (int, float, jax.Array, np.ndarray))}
    numeric = {k: v for k, v in initial.items() if k not in static}

    def init(params):
        dtype = optax.tree.dtype(params, "highest")  # as optax.inject_hyperparams
        hp = {k: _as_hyperparam(v, dtype) for k, v in numeric.items()}
        return HyperparamsState(hp, factory(**static, **hp).init(params))

    def update(updates, state, params=None):
        updates, inner = factory(**static, **state.hyperparams).update(
            updates, state.inner_state, params)
        return updates, HyperparamsState(state.hyperparams, inner)

    return optax.GradientTransformation(init, update)


def clip_each_by_norm(max_norm):
    """Keras's `clipnorm`: each gradient tensor is rescaled to an L2 norm <= max_norm."""

    def clip(g):
        squares = jnp.sum(jnp.square(g))
        norm = jnp.where(squares > 0, jnp.sqrt(jnp.where(squares > 0, squares, 1.0)), 0.0)
        return g * max_norm / jnp.maximum(norm, max_norm)

    return optax.stateless(lambda updates, params: jax.tree.map(clip, updates))


_CUSTOM = {}


class Optimizer:
    """Base: Keras's constructor arguments, `to_optax()` for the pure update."""

    _args = ()  # (name, default) in Keras's positional order
    _injected = ()  # float hyperparameters kept as arrays in the optimizer state
    _default_name = "optimizer"

    def __init__(self, *args, lr=None, **kwargs):
        owner = type(self).__name__
        if lr is not None:
            if args or "learning_rate" in kwargs:
                raise TypeError(f"{owner}: pass either learning_rate or its alias lr, not both.")
            kwargs["learning_rate"] = lr
        params = tuple(self._args) + _COMMON
        keys = [k for k, _ in params]
        if len(args) > len(keys):
            raise TypeError(f"{owner} takes at most {len(keys)} positional arguments ({keys}).")
        bound = dict(zip(keys, args))
        unknown = sorted((set(kwargs) - set(keys)) | (set(bound) & set(kwargs)))
        if unknown:
            raise TypeError(f"{owner} got unexpected or repeated argument(s) {unknown}; "
                            f"accepted: {keys + ['lr']}.")  # fmt: skip
        bound.update(kwargs)
        for key, default in params:
            setattr(self, key, bound.get(key, default))
        self.name = self.name or self._default_name
        self._validate(owner)

    def _validate(self, owner):
        lr = self.learning_rate
        if isinstance(lr, str):
            lr = self.learning_rate = _schedule_from_name(owner, lr)
        if not callable(lr):
            if isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr < 0:
                raise ValueError(f"{owner}: learning_rate must be a float >= 0 or a schedule "
                                 f"(step -> rate), got {lr!r}.")  # fmt: skip
            self.learning_rate = float(lr)
        for key in self._injected + ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm"):
            value = getattr(self, key)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"{owner}: {key} must be a float, got {value!r}.")
                setattr(self, key, float(value))
        clips = [k for k in ("clipnorm", "clipvalue", "global_clipnorm") if getattr(self, k)]
        if len(clips) > 1:
            raise ValueError(f"{owner}: only one of clipnorm, clipvalue and global_clipnorm can "
                             f"be set, got {clips}.")  # fmt: skip

    def _rule(self, hp):
        """The update (learning rate included) given hyperparameters as arrays."""
        raise NotImplementedError(f"{type(self).__name__} must define _rule(hp)")

    def _active_hyperparameters(self):
        return self._injected

    def _clipping(self):
        if self.clipnorm:
            return clip_each_by_norm(self.clipnorm)
        if self.global_clipnorm:
            return optax.clip_by_global_norm(self.global_clipnorm)
        if self.clipvalue:
            return optax.clip(self.clipvalue)
        return None

    def to_optax(self):
        """optax transformation: clipping, then the rule and weight decay with their
        hyperparameters as arrays in the state (`inject_hyperparams`)."""
        initial = {"learning_rate": self.learning_rate}
        initial.update({k: getattr(self, k) for k in self._active_hyperparameters()})
        if self.weight_decay is not None:
            initial["weight_decay"] = self.weight_decay

        def factory(**hp):
            rule = self._rule(hp)
            if "weight_decay" in hp:
                decay = decoupled_weight_decay(hp["weight_decay"], hp["learning_rate"])
                rule = optax.chain(rule, decay)
            return rule

        keyword = inspect.Parameter.KEYWORD_ONLY
        factory.__signature__ = inspect.Signature(
            [inspect.Parameter(name, keyword) for name in initial]
        )
        transform = inject_hyperparams(factory, initial)
        clipping = self._clipping()
        return transform if clipping is None else optax.chain(clipping, transform)

    def get_config(self):
        config = {key: getattr(self, key) for key, _ in tuple(self._args) + _COMMON}
        config["learning_rate"] = _serialize_schedule(type(self).__name__, self.learning_rate)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


class SGD(Optimizer):
    """Keras's SGD: the velocity accumulates `-lr * grad`, so lr changes apply smoothly."""

    _args = (("learning_rate", 0.01), ("momentum", 0.0), ("nesterov", False),
             ("weight_decay", None))  # fmt: skip
    _injected = ("momentum",)
    _default_name = "SGD"

    def _validate(self, owner):
        super()._validate(owner)
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"SGD: momentum must be a float in [0, 1], got {self.momentum}.")

    def _active_hyperparameters(self):
        return ("momentum",) if self.momentum else ()

    def _rule(self, hp):
        scale = optax.scale_by_learning_rate(hp["learning_rate"])
        if not self.momentum:
            return scale
        return optax.chain(scale, optax.trace(decay=hp["momentum"], nesterov=self.nesterov))


class RMSprop(Optimizer):
    """Keras's RMSprop: `lr * g / sqrt(v + eps)` (eps inside the root, as optax's default)."""

    _args = (("learning_rate", 0.001), ("rho", 0.9), ("momentum", 0.0), ("epsilon", 1e-7),
             ("centered", False), ("weight_decay", None))  # fmt: skip
    _injected = ("rho", "momentum", "epsilon")
    _default_name = "rmsprop"

    def _active_hyperparameters(self):
        return ("rho", "epsilon") + (("momentum",) if self.momentum > 0 else ())

    def _rule(self, hp):
        scale_by = optax.scale_by_stddev if self.centered else optax.scale_by_rms
        parts = [
            scale_by(decay=hp["rho"], eps=hp["epsilon"], eps_in_sqrt=True),
            optax.scale_by_learning_rate(hp["learning_rate"]),
        ]
        if self.momentum > 0:
            parts.append(optax.trace(decay=hp["momentum"]))
        return optax.chain(*parts)


class Adam(Optimizer):
    _args = (("learning_rate", 0.001), ("beta_1", 0.9), ("beta_2", 0.999), ("epsilon", 1e-7),
             ("amsgrad", False), ("weight_decay", None))  # fmt: skip
    _injected = ("beta_1", "beta_2", "epsilon")
    _default_name = "adam"

    def _rule(self, hp):
        return keras_adam(hp["learning_rate"], hp["beta_1"], hp["beta_2"], hp["epsilon"],
                          amsgrad=bool(self.amsgrad))  # fmt: skip


class AdamW(Adam):
    """Adam with Keras's decoupled weight decay (default 0.004)."""

    _args = (("learning_rate", 0.001), ("weight_decay", 0.004), ("beta_1", 0.9),
             ("beta_2", 0.999), ("epsilon", 1e-7), ("amsgrad", False))  # fmt: skip
    _default_name = "adamw"

    def _validate(self, owner):
        super()._validate(owner)
        if self.weight_decay is None:
            raise ValueError("AdamW: weight_decay must be a float, got None.")


class Adagrad(Optimizer):
    """Keras's Adagrad: accumulator starts at initial_accumulator_value, eps inside the root."""

    _args = (("learning_rate", 0.001), ("initial_accumulator_value", 0.1), ("epsilon", 1e-7),
             ("weight_decay", None))  # fmt: skip
    _injected = ("epsilon",)
    _default_name = "adagrad"

    def _rule(self, hp):
        return optax.chain(
            optax.scale_by_rss(float(self.initial_accumulator_value), hp["epsilon"]),
            optax.scale_by_learning_rate(hp["learning_rate"]),
        )


class Adadelta(Optimizer):
    _args = (("learning_rate", 0.001), ("rho", 0.95), ("epsilon", 1e-7),
             ("weight_decay", None))  # fmt: skip
    _injected = ("rho", "epsilon")
    _default_name = "adadelta"

    def _rule(self, hp):
        return optax.chain(
            optax.scale_by_adadelta(rho=hp["rho"], eps=hp["epsilon"]),
            optax.scale_by_learning_rate(hp["learning_rate"]),
        )


class Nadam(Optimizer):
    _args = (("learning_rate", 0.001), ("beta_1", 0.9), ("beta_2", 0.999), ("epsilon", 1e-7),
             ("weight_decay", None))  # fmt: skip
    _injected = ("beta_1", "beta_2", "epsilon")
    _default_name = "nadam"

    def _rule(self, hp):
        return keras_nadam(hp["learning_rate"], hp["beta_1"], hp["beta_2"], hp["epsilon"])


class Adamax(Nadam):
    _default_name = "adamax"

    def _rule(self, hp):
        return keras_adamax(hp["learning_rate"], hp["beta_1"], hp["beta_2"], hp["epsilon"])


class Lion(Optimizer):
    _args = (("learning_rate", 0.001), ("beta_1", 0.9), ("beta_2", 0.99),
             ("weight_decay", None))  # fmt: skip
    _injected = ("beta_1", "beta_2")
    _default_name = "lion"

    def _validate(self, owner):
        super()._validate(owner)
        if not 0.0 < self.beta_1 <= 1.0:
            raise ValueError(f"Lion: beta_1 must be in (0, 1], got {self.beta_1}.")

    def _rule(self, hp):
        return optax.chain(
            optax.scale_by_lion(b1=hp["beta_1"], b2=hp["beta_2"]),
            optax.scale_by_learning_rate(hp["learning_rate"]),
        )


_CLASSES = (SGD, RMSprop, Adam, AdamW, Adagrad, Adadelta, Nadam, Adamax, Lion)
_BY_NAME = {cls.__name__.lower(): cls for cls in _CLASSES}


def accepted_names():
    return sorted(set(_BY_NAME) | {c.__name__ for c in _CLASSES} | set(_CUSTOM))


def register(name, obj):
    """Register a custom Optimizer subclass, or a learning-rate schedule for serialization."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"register: name must be a non-empty string, got {name!r}.")
    if name.lower() in _BY_NAME:
        raise ValueError(f"register: {name!r} is a built-in optimizer name; choose another.")
    if not (isinstance(obj, type) and issubclass(obj, Optimizer)) and not callable(obj):
        raise TypeError(f"register: {name!r} must be an Optimizer subclass or a schedule.")
    _CUSTOM[name] = obj
    return obj


def _schedule_from_name(owner, name):
    schedule = _CUSTOM.get(name)
    if schedule is None or isinstance(schedule, type):
        raise ValueError(f"{owner}: learning_rate {name!r} is not a registered schedule.")
    return schedule


def _serialize_schedule(owner, learning_rate):
    if not callable(learning_rate):
        return learning_rate
    for name, obj in _CUSTOM.items():
        if obj is learning_rate:
            return name
    raise TypeError(
        f"{owner}: cannot serialize the learning-rate schedule {learning_rate!r}; register it "
        "with jaxgraph.optimizers.register(name, schedule)."
    )


def get(identifier):
    """A name, config dict, Optimizer, Optimizer class or optax transformation -> optimizer."""
    if isinstance(identifier, (Optimizer, optax.GradientTransformation)):
        return identifier
    if isinstance(identifier, str):
        cls = _CUSTOM.get(identifier) or _BY_NAME.get(identifier.lower())
        if not isinstance(cls, type):
            raise ValueError(
                f"Unknown optimizer {identifier!r}. Accepted names: {accepted_names()}."
            )
        return cls()
    if isinstance(identifier, dict):
        name = identifier.get("class_name")
        cls = _CUSTOM.get(name) or _BY_NAME.get(str(name).lower())
        if not isinstance(cls, type):
            raise ValueError(
                f"Unknown optimizer class {name!r}. Accepted names: {accepted_names()}."
            )
        return cls.from_config(identifier.get("config") or {})
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    raise TypeError(
        f"Cannot interpret {identifier!r} as an optimizer; pass a name, a config dict, "
        "a jaxgraph optimizer or an optax.GradientTransformation."
    )


def deserialize(config):
    """Keras's name for `get` on a serialized optimizer."""
    return get(config)


def serialize(optimizer):
    """{'class_name', 'config'}, which `get` turns back into the same optimizer."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"Cannot serialize {optimizer!r}: only jaxgraph optimizers have a config "
            "(a raw optax transformation does not)."
        )
    names = {v: k for k, v in _CUSTOM.items() if isinstance(v, type)}
    class_name = names.get(type(optimizer), type(optimizer).__name__)
    return {"class_name": class_name, "config": optimizer.get_config()}


def to_optax(identifier):
    """Anything `get` accepts, as an optax.GradientTransformation."""
    optimizer = get(identifier)
    return optimizer.to_optax() if isinstance(optimizer, Optimizer) else optimizer


# Hyperparameters inside an optax state tree.


def _is_injected(node):
    fields = getattr(node, "_fields", ())
    return isinstance(node, tuple) and "hyperparams" in fields and "inner_state" in fields


def _injected_states(tree):
    found = []
    for node in jax.tree_util.tree_leaves(tree, is_leaf=_is_injected):
        if _is_injected(node):
            found.append(node)
            found.extend(_injected_states(node.inner_state))
    return found


def get_hyperparameter(opt_state, name):
    """The first injected hyperparameter `name` in the state tree, or None."""
    for node in _injected_states(opt_state):
        if name in node.hyperparams:
            return node.hyperparams[name]
    return None


def set_hyperparameter(opt_state, name, value):
    """A new state with every injected `name` set to `value` (same dtype and shape)."""
    changed = []

    def replace(node):
        if not _is_injected(node):
            return node
        inner = jax.tree_util.tree_map(replace, node.inner_state, is_leaf=_is_injected)
        node = node._replace(inner_state=inner)
        if name not in node.hyperparams:
            return node
        if name in getattr(node, "hyperparams_states", {}):
            raise TypeError(
                f"The {name} is driven by a schedule, so it cannot be set; "
                "build the optimizer with a float to change it from a callback."
            )
        old = node.hyperparams[name]
        new = jnp.broadcast_to(jnp.asarray(value, dtype=jnp.result_type(old)), jnp.shape(old))
        changed.append(name)
        return node._replace(hyperparams={**node.hyperparams, name: new})

    new_state = jax.tree_util.tree_map(replace, opt_state, is_leaf=_is_injected)
    if not changed:
        raise ValueError(
            f"No injected hyperparameter {name!r} in this optimizer state: build the "
            "optimizer with jaxgraph.optimizers (to_optax) or optax.inject_hyperparams."
        )
    return new_state


def get_learning_rate(opt_state):
    """The learning rate held in the state (None for optax transformations without one)."""
    return get_hyperparameter(opt_state, "learning_rate")


def set_learning_rate(opt_state, value):
    """Change the learning rate without recompiling: only an array in the state changes."""
    return set_hyperparameter(opt_state, "learning_rate", value)

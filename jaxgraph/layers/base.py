"""The Layer base class: a named owner of parameters plus a pure `call`.

A layer never holds the arrays a jitted function computes with. `build` declares
weights (name, shape, initializer); `call(w, inputs, ...)` receives them as a dict
and is a pure function. The layer keeps only a cache of its latest values so Keras
conveniences (`get_weights`, `set_weights`) work; the pytree handed to
`Model.apply` is always the truth.

Writing a layer::

    class Scale(Layer):
        def build(self, input_shape):
            self.add_weight("gamma", (input_shape[-1],), initializer="ones")

        def call(self, w, x):
            return x * w["gamma"]
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import re
import threading
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import constraints as constraints_mod
from .. import dtype_policy
from .. import initializers as initializers_mod
from .. import random as jg_random
from .. import regularizers as regularizers_mod
from ..graph.node import Node, flatten_call
from ..graph.tensor import SymbolicTensor, canonical_shape, is_symbolic

# ---------------------------------------------------------------------------- naming

_name_lock = threading.Lock()
_name_counts: collections.Counter = collections.Counter()


def to_snake_case(name: str) -> str:
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    s = re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()
    return s.replace("__", "_")


def unique_name(base: str) -> str:
    """`dense`, `dense_1`, `dense_2`, ... process-wide, as Keras names layers."""
    with _name_lock:
        n = _name_counts[base]
        _name_counts[base] += 1
    return base if n == 0 else f"{base}_{n}"


def reset_names() -> None:
    """Forget auto-generated names (Keras's `clear_session`)."""
    with _name_lock:
        _name_counts.clear()


# ---------------------------------------------------------------------------- registry

_LAYER_REGISTRY: dict[str, type] = {}
#: Every Layer subclass ever defined, by class name, then by "module.qualname": a
#: redefinition of the same class (a re-run notebook cell) replaces the old one, and
#: two different classes that share a name stay apart.
_DEFINED_LAYERS: dict[str, dict[str, type]] = {}
#: The "package>Name" a class was registered under (register_serializable).
_REGISTERED_NAMES: dict[type, str] = {}


def _qualified_name(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_builtin(cls) -> bool:
    module = cls.__module__ or ""
    return module == "jaxgraph" or module.startswith("jaxgraph.")


def register_layer(cls_or_name=None):
    """Register a layer class for `from_config` / `load_model` (also done automatically)."""

    def deco(cls, name=None):
        _LAYER_REGISTRY[name or cls.__name__] = cls
        return cls

    if isinstance(cls_or_name, type):
        return deco(cls_or_name)
    return lambda cls: deco(cls, cls_or_name)


def register_layer_name(cls, registered_name: str) -> None:
    """Record `cls` under Keras's `'package>Name'`; configs then store that name."""
    old = _LAYER_REGISTRY.get(registered_name)
    if old is not None and old is not cls and _qualified_name(old) != _qualified_name(cls):
        import warnings

        warnings.warn(
            f"register_serializable: {registered_name!r} was registered to "
            f"{_qualified_name(old)}; it now names {_qualified_name(cls)}",
            stacklevel=3,
        )
    _LAYER_REGISTRY[registered_name] = cls
    _REGISTERED_NAMES[cls] = registered_name


def class_metadata(cls) -> dict:
    """What a config records next to `class_name` to find `cls` again on load.

    Built-in jaxgraph layers need nothing; other classes record their module (and
    the `'package>Name'` they were registered under), so two classes that share a
    name never stand in for each other.
    """
    if _is_builtin(cls):
        return {}
    meta = {"module": cls.__module__}
    registered = _REGISTERED_NAMES.get(cls)
    if registered is not None:
        meta["registered_name"] = registered
    return meta


def _ambiguous(name: str, candidates, module) -> ValueError:
    where = ", ".join(sorted(_qualified_name(c) for c in candidates))
    saved = f" (the file says module {module!r})" if module else ""
    return ValueError(
        f"Ambiguous layer class {name!r}{saved}: several classes of that name are defined "
        f"({where}). Register the intended one with "
        "@jaxgraph.saving.register_serializable(package=...) before saving, or pass "
        f"custom_objects={{{name!r}: TheClass}} to load_model."
    )


def get_layer_class(name: str, custom_objects: dict | None = None, *,
                    registered_name: str | None = None, module: str | None = None) -> type:
    """The class a config's `class_name` (plus `registered_name` / `module`) names.

    Order: `custom_objects` (by registered name, then class name), the registered
    `'package>Name'`, explicit registrations, then the classes defined so far with
    that name: the one from `module` when the config records it, else the only one
    (built-in jaxgraph layers win for configs that record no module). Several
    candidates and nothing to choose by raise an error naming them all.
    """
    if custom_objects:
        for key in (registered_name, name):
            if key is not None and key in custom_objects:
                return custom_objects[key]
    if registered_name is not None and registered_name in _LAYER_REGISTRY:
        return _LAYER_REGISTRY[registered_name]
    candidates = list(_DEFINED_LAYERS.get(name, {}).values())
    if module is not None:
        exact = [c for c in candidates if c.__module__ == module]
        if len(exact) == 1:
            return exact[0]
        if len(exact) > 1:
            raise _ambiguous(name, exact, module)
        # Saved from another module (a script's __main__, a moved class): any
        # non-builtin class of that name, if there is exactly one.
        candidates = [c for c in candidates if not _is_builtin(c)]
    elif name in _LAYER_REGISTRY:
        return _LAYER_REGISTRY[name]
    else:
        builtin = [c for c in candidates if _is_builtin(c)]
        if len(builtin) == 1:
            return builtin[0]
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        raise _ambiguous(name, candidates, module)
    if name in _LAYER_REGISTRY:
        return _LAYER_REGISTRY[name]
    raise ValueError(
        f"Unknown layer class {name!r}. Custom layers must be importable before loading "
        "(defining the class registers it) or passed as custom_objects={...}."
    )


# ---------------------------------------------------------------------------- masks in `call`

#: While a Keras-style layer's `call` runs: {id(tensor): (tensor, mask)}, the masks that
#: ride on its tensors (Keras's `_keras_mask`): those of its arguments and those the
#: layers it calls computed. One registry serves a whole nest of calls, as Keras's does.
_implicit_masks = threading.local()


@contextlib.contextmanager
def carried_masks(pairs=()):
    """Open (or join) the mask registry of a Keras-style call, holding `pairs`."""
    registry = getattr(_implicit_masks, "current", None)
    fresh = registry is None
    if fresh:
        registry = _implicit_masks.current = {}
    for value, mask in pairs:
        if mask is not None and hasattr(value, "shape"):
            registry.setdefault(id(value), (value, mask))
    try:
        yield registry
    finally:
        if fresh:
            _implicit_masks.current = None


def carry_mask(registry, value, mask) -> None:
    """Put `mask` on `value` unless it already carries one (Keras keeps the first)."""
    if mask is not None and hasattr(value, "shape") and carried_mask(registry, value) is None:
        registry[id(value)] = (value, mask)


def carried_mask(registry, value):
    """The mask riding on `value` (a tensor or a structure of them), or None."""
    def one(v):
        entry = registry.get(id(v))
        return entry[1] if entry is not None and entry[0] is v else None

    if hasattr(value, "shape"):
        return one(value)
    if isinstance(value, (list, tuple, dict)):
        masks = jax.tree_util.tree_map(one, value)
        if all(m is None for m in jax.tree_util.tree_leaves(masks, is_leaf=lambda x: x is None)):
            return None
        return masks
    return None


def _mask_pairs(value, mask) -> list:
    """[(tensor, its mask)] for a call argument and the mask (structure) it carries."""
    if mask is None:
        return []
    if hasattr(value, "shape"):
        return [(value, mask)]
    if isinstance(value, (list, tuple)) and isinstance(mask, (list, tuple)) \
            and len(value) == len(mask):
        return [p for v, m in zip(value, mask) for p in _mask_pairs(v, m)]
    if isinstance(value, dict) and isinstance(mask, dict):
        return [p for k, v in value.items() for p in _mask_pairs(v, mask.get(k))]
    return []


def _is_tensor_argument(value) -> bool:
    """Keras's CallSpec: a tensor, or a non-empty structure of tensors (and Nones)."""
    if hasattr(value, "shape"):
        return True
    if isinstance(value, (list, tuple, dict)) and len(value) > 0:
        leaves = jax.tree_util.tree_leaves(value)
        return bool(leaves) and all(hasattr(x, "shape") for x in leaves)
    return False


class _CallContext:
    """Keras's call context while a Keras-style layer's `call` runs. `cell` is the
    training value shared by the whole nest of calls (a graph run by the executor
    shares it too): `cell[0]` the value, `cell[1]` the layer that resolved it. Every
    layer called inside writes the value it resolved there, so a later call that does
    not say `training=` takes it (Keras's rule, order effects included). `rng` is this
    call's key; the keys of the layers it calls are folded from it, so they are fresh
    at every traced step."""

    __slots__ = ("cell", "rng", "count")

    def __init__(self, cell, rng):
        self.cell = cell
        self.rng = rng
        self.count = 0

    def next_rng(self):
        if self.rng is None:
            return None
        key = jax.random.fold_in(self.rng, self.count)
        self.count += 1
        return key

    def key_source(self, said=False):
        """Where a model called in this context takes a key if one of its layers draws:
        folded from this call's key; from the global stream when there is none and
        nothing is being traced (a direct eager call), or when the call said
        `training=` itself (as a layer's direct call does); else nowhere: a traced
        program given no key, whose drawing layer then says so."""
        if self.rng is not None:
            return self.next_rng
        return jg_random.next_key if said or not tracing() else None


def tracing() -> bool:
    """Whether a JAX transformation is tracing right now."""
    try:
        from jax._src.core import trace_state_clean
    except ImportError:  # pragma: no cover - a JAX without it
        return False
    return not trace_state_clean()


def carry(cell, value, source) -> None:
    """Write a resolved training value to the call context, as Keras does after
    resolving it; `source`, the layer that set it, is kept for error messages."""
    cell[0] = value
    cell[1] = None if value is None else source


def resolve_in_context(layer, kwargs, context):
    """Keras's rule for a call inside a call context: `training=` given (popped from
    `kwargs`, None included), else the context's value when not None, else the
    default of the layer's `call`; the result is written back to the context."""
    source = layer.name
    if "training" in kwargs:
        training = kwargs.pop("training")
    elif context is not None and context.cell[0] is not None:
        training, source = context.cell[0], context.cell[1]
    else:
        training = layer._default_training()
    if context is not None:
        carry(context.cell, training, source)
    return training


@contextlib.contextmanager
def sharing_cell(cell):
    """Run a Keras-style layer's `forward` inside `cell`, the call context of the graph
    that runs it, so the values its inner calls resolve reach the graph's next layers."""
    caller = getattr(_call_context, "current", None)
    if caller is not None and caller.cell is cell:
        yield
        return
    _call_context.current = _CallContext(cell, None)
    try:
        yield
    finally:
        _call_context.current = caller


_call_context = threading.local()

#: While a custom train/test/predict step is traced: the step's scope of bound layers
#: (`training.custom_step.BoundLayers`), through which a direct call of a layer the
#: model tracks runs on the step's variables and key.
_step_scope = threading.local()


def step_call(layer):
    """The context a direct, top-level call of `layer` runs in inside a traced custom
    step (a fresh call context keyed from the step, as Keras gives every top-level call
    its own), or None outside one, or for a call made inside another layer's call."""
    if getattr(_call_context, "current", None) is not None:
        return None
    scope = getattr(_step_scope, "current", None)
    return None if scope is None else scope.enter(layer)


# ---------------------------------------------------------------------------- loss collection

_loss_stack = threading.local()


@contextlib.contextmanager
def collecting_losses():
    """Collect `add_loss` values during one traced forward pass."""
    stack = getattr(_loss_stack, "stack", None)
    if stack is None:
        stack = _loss_stack.stack = []
    bucket: list = []
    stack.append(bucket)
    try:
        yield bucket
    finally:
        stack.pop()


# ---------------------------------------------------------------------------- weights

_weights_version = [0]
_pending_sync: list = []


def weights_version() -> int:
    """Bumped on every write to any layer's cached values (lets a trainer see edits)."""
    return _weights_version[0]


def defer_sync(publish) -> None:
    """Register `publish()` to run before the next read or write of any layer's values.

    A trainer publishes its live variables this way, so a copy is made only if a
    callback (or the user) actually looks at the weights.
    """
    if publish not in _pending_sync:
        _pending_sync.append(publish)


def cancel_sync(publish) -> None:
    if publish in _pending_sync:
        _pending_sync.remove(publish)


def flush_sync() -> None:
    while _pending_sync:
        _pending_sync.pop(0)()



class Weight:
    """Declaration of one variable of a layer (and a handle on its current value)."""

    def __init__(self, layer, name, shape, dtype, initializer, trainable, regularizer, constraint):
        self.layer = layer
        self.name = name
        self.shape = tuple(int(d) for d in shape)
        self.dtype = dtype
        self.initializer = initializer
        self.trainable = trainable
        self.regularizer = regularizer
        self.constraint = constraint

    @property
    def path(self) -> str:
        return f"{self.layer.name}/{self.name}"

    @property
    def value(self) -> jax.Array:
        return self.layer._current_values()[self.name]

    def numpy(self) -> np.ndarray:
        return np.asarray(self.value)

    def assign(self, value) -> None:
        self.layer._assign_value(self.name, value)

    def __array__(self, dtype=None, copy=None):
        # `np.asarray(layer.kernel)`, as with a Keras variable.
        out = np.asarray(self.value, dtype=dtype)
        return out.copy() if copy else out

    def __repr__(self):
        kind = "trainable" if self.trainable else "non-trainable"
        return f"<Weight {self.path} shape={self.shape} dtype={self.dtype} {kind}>"


def _keyed_initializer(init):
    """Accept Keras-style custom initializers `fn(shape, dtype=None)` next to ours
    `fn(key, shape, dtype)`; the former get no key (they are deterministic or use NumPy)."""
    if isinstance(init, initializers_mod.Initializer) or not callable(init):
        return init
    try:
        first = next(iter(inspect.signature(init).parameters))
    except (TypeError, ValueError, StopIteration):
        return init
    if first != "shape":
        return init

    def keyed(key, shape, dtype=jnp.float32):
        return jnp.asarray(init(shape, dtype=dtype), dtype=dtype)

    return keyed


class InputSpec:
    """What a built layer accepts: rank and the sizes of the axes it depends on."""

    def __init__(self, ndim=None, min_ndim=None, max_ndim=None, axes=None, dtype=None):
        self.ndim = ndim
        self.min_ndim = min_ndim
        self.max_ndim = max_ndim
        self.axes = dict(axes or {})
        self.dtype = dtype

    def check(self, layer_name: str, shape: tuple, index: int = 0) -> None:
        rank = len(shape)
        where = f"Input {index} of layer {layer_name!r}"
        if self.ndim is not None and rank != self.ndim:
            raise ValueError(
                f"{where} is incompatible with the layer: expected ndim={self.ndim}, "
                f"found ndim={rank}. Full shape received: {shape}"
            )
        if self.min_ndim is not None and rank < self.min_ndim:
            raise ValueError(
                f"{where} is incompatible with the layer: expected min_ndim={self.min_ndim}, "
                f"found ndim={rank}. Full shape received: {shape}"
            )
        if self.max_ndim is not None and rank > self.max_ndim:
            raise ValueError(
                f"{where} is incompatible with the layer: expected max_ndim={self.max_ndim}, "
                f"found ndim={rank}. Full shape received: {shape}"
            )
        for axis, size in self.axes.items():
            if size is None:
                continue
            if -rank <= axis < rank:
                got = shape[axis]
                if got is not None and got != size:
                    raise ValueError(
                        f"{where} is incompatible with the layer: expected axis {axis} of "
                        f"input shape to have value {size}, but received input with shape {shape}"
                    )


# ---------------------------------------------------------------------------- Layer


def _call_params(fn) -> frozenset:
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return frozenset({"training", "rng", "mask", "**"})
    return frozenset(params)


def _shapes_of(x):
    return jax.tree_util.tree_map(lambda t: t.shape, x, is_leaf=is_symbolic)


_FILL_A, _FILL_B = 83, 89  # stand-ins for unknown dims when inferring shapes


def _tensor_leaves(x) -> list:
    """The tensors (symbolic or concrete) of a call's first argument."""
    return [t for t in jax.tree_util.tree_leaves(x, is_leaf=is_symbolic) if hasattr(t, "shape")]


def _wrap_build(cls) -> None:
    """Make `cls.build` mark the layer built, so a direct `layer.build(shape)` leaves it
    usable as in Keras (weights readable, callable, not built twice).

    Only the outermost `build` of a call chain (a subclass calling `super().build`)
    sets `built`, and only when it returns. Classes that manage `built` themselves
    (they override `_maybe_build`: models) are left alone.
    """
    fn = cls.__dict__.get("build")
    if fn is None or getattr(fn, "_marks_built", False):
        return
    if cls is not Layer and cls._maybe_build is not Layer._maybe_build:
        return

    def build(self, *args, **kwargs):
        depth = self.__dict__.get("_build_depth", 0)
        self._build_depth = depth + 1
        try:
            result = fn(self, *args, **kwargs)
        finally:
            self._build_depth = depth
        if depth == 0:
            self.built = True
            if self._build_input_shape is None and args:
                self._build_input_shape = args[0]
        return result

    build.__name__, build.__qualname__ = fn.__name__, fn.__qualname__
    build.__doc__, build.__module__ = fn.__doc__, fn.__module__
    build.__wrapped__ = fn
    build._marks_built = True
    cls.build = build


class Layer:
    """Base class of every layer (and of `Model`)."""

    is_input_layer = False
    #: Float attributes (a Dropout's `rate`) that `apply` may replace by a traced array:
    #: `call` then receives it as the keyword argument of that name (lowering's OVERRIDES).
    traced_attributes: tuple[str, ...] = ()
    # What a call that does not say `training=` means (Keras: the default of the layer's
    # `call`). Augmentation layers augment when called directly, as in Keras. None: the
    # layer takes the value the calls before it left in the call context, and infers
    # when there is none (Keras's BatchNormalization and wrappers default to None).
    training_by_default: bool | None = False
    # Keras's `_convert_input_args`: float inputs are cast to the compute dtype (a mixed
    # policy's bfloat16) before the layer runs. Op nodes, as Keras's ops, are not.
    convert_input_args = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # By qualified name: a redefinition replaces the stale class, namesakes coexist.
        _DEFINED_LAYERS.setdefault(cls.__name__, {})[_qualified_name(cls)] = cls
        cls._call_accepts = None
        _wrap_build(cls)

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj._init_args = (args, dict(kwargs))
        return obj

    def __init__(
        self,
        *,
        name: str | None = None,
        trainable: bool = True,
        dtype=None,
        input_shape=None,
        batch_input_shape=None,
        input_dim: int | None = None,
        batch_size: int | None = None,
        activity_regularizer=None,
        **kwargs,
    ):
        if kwargs:
            raise TypeError(
                f"{type(self).__name__}() got unexpected keyword argument(s) {sorted(kwargs)}"
            )
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"Layer name must be a non-empty string without '/', got {name!r}")
        self.name = name or unique_name(to_snake_case(type(self).__name__))
        self._trainable = bool(trainable)
        self.dtype_policy = dtype_policy.get(dtype)
        self.activity_regularizer = regularizers_mod.get(activity_regularizer)
        self.built = False
        self.supports_masking = False
        self.input_spec = None
        self._weights: list[Weight] = []
        self._values: dict[str, jax.Array] | None = None
        self._nodes: list[Node] = []
        self._build_input_shape = None
        # The shape a Sequential model may build from (Keras's input_shape= / input_dim=).
        if batch_input_shape is not None:
            self._declared_input_shape = canonical_shape(batch_input_shape)[1:]
            self._declared_batch_size = batch_input_shape[0]
        elif input_shape is not None:
            self._declared_input_shape = canonical_shape(input_shape)
            self._declared_batch_size = batch_size
        elif input_dim is not None:
            self._declared_input_shape = (int(input_dim),)
            self._declared_batch_size = batch_size
        else:
            self._declared_input_shape = None
            self._declared_batch_size = None

    # ------------------------------------------------------------------ dtypes

    @property
    def dtype(self) -> str:
        """The dtype of the layer's variables."""
        return self.dtype_policy.variable_dtype

    @property
    def compute_dtype(self) -> str:
        return self.dtype_policy.compute_dtype

    # ------------------------------------------------------------------ sublayers

    @property
    def _values(self):
        """The cached values of `_weights`. A Keras-style layer that owns sublayers
        (`self.attention = MultiHeadAttention(...)`) lists their weights as its own
        (see `_link_sublayers`); their values stay in the sublayers' caches."""
        d = self.__dict__
        own = d.get("_own_values")
        links = d.get("_sublayer_links")
        if not links:
            return own
        if own is None and len(self._weights) > len(links):
            return None
        merged = dict(own or {})
        for name, (layer, key) in links.items():
            values = layer.__dict__.get("_own_values")
            if values is None:
                return None
            merged[name] = values[key]
        return merged

    @_values.setter
    def _values(self, values):
        d = self.__dict__
        links = d.get("_sublayer_links")
        if not links or values is None:
            d["_own_values"] = values
            return
        d["_own_values"] = {k: v for k, v in values.items() if k not in links}
        for layer, part in _group_links(links, values).items():
            layer.__dict__["_own_values"] = {**(layer.__dict__.get("_own_values") or {}),
                                             **part}

    def _direct_sublayers(self) -> list:
        """Layers held in attributes (alone, in lists/tuples or dict values), in
        assignment order, as Keras tracks them."""
        found, seen = [], {id(self)}
        for value in vars(self).values():
            items = value.values() if isinstance(value, dict) else (
                value if isinstance(value, (list, tuple)) else (value,))
            for item in items:
                if isinstance(item, Layer) and id(item) not in seen:
                    seen.add(id(item))
                    found.append(item)
        return found

    def _link_sublayers(self) -> None:
        """Make the weights of the built sublayers of a Keras-style layer its own
        (Keras's order: own weights, then each sublayer's `weights`), named
        `<owning layer>/<weight>`; a tracer cached while tracing shapes is dropped."""
        if not self._keras_style_call() or type(self)._maybe_build is not Layer._maybe_build:
            return
        links: dict = {}
        for sub in self._direct_sublayers():
            if not sub.built:
                continue
            for w in sub.weights:
                layer, key = _resolve_weight(w)
                links.setdefault(f"{layer.name}/{key}", (layer, key, w))
        old = self.__dict__.get("_sublayer_links") or {}
        if not links and not old:
            return
        for layer, _, _ in links.values():
            cached = layer.__dict__.get("_own_values")
            if cached and any(isinstance(v, jax.core.Tracer) for v in cached.values()):
                layer.__dict__["_own_values"] = None
        own = [w for w in self._weights if w.name not in old]
        own_values = self.__dict__.get("_own_values")
        self.__dict__["_sublayer_links"] = {k: (layer, key) for k, (layer, key, _) in
                                            links.items()}
        self._weights = own + [
            # The declared kind only (params or state): freezing a sublayer, before or
            # after this, shows in `trainable_weights`, which fit trains.
            Weight(self, name, w.shape, w.dtype, w.initializer,
                   w.trainable, w.regularizer, w.constraint)
            for name, (_, _, w) in links.items()]
        self.__dict__["_own_values"] = own_values

    # ------------------------------------------------------------------ trainable

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        if self._keras_style_call():
            # As Keras: the layers a Keras-style layer holds follow it.
            visiting = _call_context.__dict__.setdefault("visiting", set())
            if id(self) in visiting:
                return
            visiting.add(id(self))
            try:
                for sub in self._direct_sublayers():
                    sub.trainable = value
            finally:
                visiting.discard(id(self))

    # ------------------------------------------------------------------ to override

    def build(self, input_shape) -> None:
        """Declare weights with `add_weight`; called once with the first input's shape."""

    def call(self, w, inputs, **kwargs):
        raise NotImplementedError(f"Layer {type(self).__name__} must implement call(w, inputs)")

    def forward(self, w, *args, training=False, rng=None, mask=None, **kwargs):
        """Run the layer: returns (outputs, updates to its non-trainable state).

        Stateless layers implement `call` only; layers with state that changes during
        training (BatchNormalization) override this and return their new state.
        """
        accepts = self._accepted_call_args()
        keras_style = self._keras_style_call()
        # A Keras-style call with training None keeps its own default, as Keras leaves
        # the argument unfilled.
        if "training" in accepts and not (keras_style and training is None):
            kwargs["training"] = training
        if "rng" in accepts:
            kwargs["rng"] = rng
        if "mask" in accepts and mask is not None:
            kwargs["mask"] = mask
        if keras_style:
            caller = getattr(_call_context, "current", None)
            cell = caller.cell if caller is not None else [None, None]
            carry(cell, training, cell[1] if training is cell[0] else self.name)
            _call_context.current = _CallContext(cell, rng)
            # The inputs carry their mask into `call`, as Keras's tensors do.
            pairs = _mask_pairs(args[0], mask) if mask is not None and args else ()
            try:
                with carried_masks(pairs), self._weights_as_values(w):
                    out = self.call(*args, **kwargs)
                    return out, self._collect_sublayer_updates()
            finally:
                _call_context.current = caller
        return self.call(w, *args, **kwargs), {}

    def _default_training(self):
        """What a call that does not say `training=` runs in when its caller does not say
        either: Keras's default of `call`'s `training` argument. It may be None (a
        Keras-style layer, BatchNormalization, a layer whose `call` takes no `training`):
        the layer then follows the value carried in the call context, and leaves it."""
        if not self._keras_style_call() or self.training_by_default:
            if self.training_by_default is False and \
                    "training" not in self._accepted_call_args():
                return None
            return self.training_by_default
        cls = type(self)
        if "_training_default" not in cls.__dict__:
            param = inspect.signature(cls.call).parameters.get("training")
            default = None if param is None or param.default is param.empty else param.default
            cls._training_default = None if default is None else bool(default)
        return cls._training_default

    @classmethod
    def _keras_style_call(cls) -> bool:
        """A layer written the Keras way: `call(self, inputs)` reading the weights that
        `build` stored as attributes (`self.W = self.add_weight(...)`), not `call(w, x)`."""
        cached = cls.__dict__.get("_keras_style")  # per class: asked at every call
        if cached is None:
            params = [] if cls.call is Layer.call else [
                p for p in inspect.signature(cls.call).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][1:]
            cached = bool(params) and params[0].name != "w"
            cls._keras_style = cached
        return cached

    @contextlib.contextmanager
    def _weights_as_values(self, w):
        """While a Keras-style `call` runs (it is traced once per compile), the attributes
        holding this layer's weights hold their values from `w`, the variables pytree."""
        mine = {id(x) for x in self._weights}

        def value(v):
            return w[v.name] if isinstance(v, Weight) and id(v) in mine else v

        saved = {}
        for key, v in list(vars(self).items()):
            if isinstance(v, Weight) and id(v) in mine:
                saved[key] = v
            elif isinstance(v, (list, tuple)) and any(
                    isinstance(e, Weight) and id(e) in mine for e in v):
                saved[key] = v
        outer = self.__dict__.get("_call_values")
        links = self.__dict__.get("_sublayer_links")
        bound = {}
        if links:  # sublayers called inside `call` read their share of `w`
            if _pending_sync:
                flush_sync()
            for layer, part in _group_links(links, w).items():
                bound[layer] = (layer.__dict__.get("_own_values"), part)
                layer.__dict__["_own_values"] = {**(bound[layer][0] or {}), **part}
        try:
            for key, v in saved.items():
                object.__setattr__(self, key, type(v)(value(e) for e in v)
                                   if isinstance(v, (list, tuple)) else value(v))
            # Weights read by short name (`self.kernel`, see __getattr__) are values too.
            self._call_values = w
            yield self._sublayer_updates(bound)
        finally:
            for layer, (previous, _) in bound.items():
                layer.__dict__["_own_values"] = previous
            for key, v in saved.items():
                object.__setattr__(self, key, v)
            if outer is None:
                self.__dict__.pop("_call_values", None)
            else:
                self._call_values = outer

    def _sublayer_updates(self, bound) -> dict:
        """A dict that, once the call has run, holds the new values the bound sublayers
        wrote (a BatchNormalization's moving statistics), under this layer's names."""
        updates: dict = {}
        self.__dict__["_pending_sublayer_updates"] = (bound, updates)
        return updates

    def _collect_sublayer_updates(self) -> dict:
        bound, updates = self.__dict__.pop("_pending_sublayer_updates", ({}, {}))
        links = self.__dict__.get("_sublayer_links") or {}
        for name, (layer, key) in links.items():
            if layer not in bound:
                continue
            now = layer.__dict__.get("_own_values") or {}
            given = bound[layer][1].get(key)
            if key in now and now[key] is not given:
                updates[name] = now[key]
        return updates

    def compute_output_shape(self, input_shape):
        """Override for speed; by default shapes are inferred with `jax.eval_shape`."""
        raise NotImplementedError

    def compute_mask(self, inputs, mask=None):
        """The mask of the outputs; by default passed through when `supports_masking`."""
        return mask if self.supports_masking else None

    def needs_rng(self) -> bool:
        """Whether `call` wants a PRNG key (Dropout, noise, augmentation), itself or,
        for a Keras-style layer, through a layer it holds."""
        if "rng" in self._accepted_call_args():
            return True
        if not self._keras_style_call():
            return False
        visiting = _call_context.__dict__.setdefault("visiting", set())
        if id(self) in visiting:  # a sublayer that refers back to its owner
            return False
        visiting.add(id(self))
        try:
            return any(sub.needs_rng() for sub in self._direct_sublayers())
        finally:
            visiting.discard(id(self))

    @classmethod
    def _accepted_call_args(cls) -> frozenset:
        if cls._call_accepts is None:
            fn = cls.call if cls.forward is Layer.forward else cls.forward
            cls._call_accepts = _call_params(fn)
        return cls._call_accepts

    # ------------------------------------------------------------------ weights

    def add_weight(
        self,
        name: str | None = None,
        shape=None,
        initializer=None,
        dtype=None,
        trainable: bool = True,
        regularizer=None,
        constraint=None,
        **_ignored,
    ) -> Weight:
        """Declare a variable; its value is created later by `init` (or lazily)."""
        if isinstance(name, (tuple, list)) and shape is None:  # Keras 3: add_weight(shape, ...)
            name, shape = None, name
        if shape is None:
            shape = ()
        name = name or f"variable_{len(self._weights)}"
        if any(w.name == name for w in self._weights):
            raise ValueError(f"Layer {self.name!r} already has a weight named {name!r}")
        dtype = jnp.dtype(dtype or self.dtype).name
        if initializer is None:
            is_float = jnp.issubdtype(jnp.dtype(dtype), jnp.floating)
            initializer = "glorot_uniform" if is_float else "zeros"
        shape = tuple(shape)
        if any(d is None for d in shape):
            raise ValueError(
                f"Layer {self.name!r}: weight {name!r} needs a fully known shape, got {shape}. "
                "The input dimension it depends on is unknown (None)."
            )
        weight = Weight(
            self,
            name,
            shape,
            dtype,
            _keyed_initializer(initializers_mod.get(initializer)),
            bool(trainable),
            regularizers_mod.get(regularizer),
            constraints_mod.get(constraint),
        )
        self._weights.append(weight)
        self._values = None
        return weight

    def __getattr__(self, name: str):
        """Keras's `layer.kernel`: an attribute that normal lookup misses is this layer's
        own weight of that short name (only called after normal lookup failed)."""
        cls = type(self).__name__
        if name.startswith("_"):  # pickling, copy and __init__-time probes: never intercepted
            raise AttributeError(f"{cls!r} object has no attribute {name!r}")
        # A property of the class that raised AttributeError: let its own error through.
        for klass in type(self).__mro__:
            if name in klass.__dict__:
                attr = klass.__dict__[name]
                if hasattr(type(attr), "__get__"):
                    return attr.__get__(self, type(self))
                break
        state = self.__dict__
        traced = state.get("_call_values")
        if traced is not None and name in traced:  # inside a Keras-style `call`
            return traced[name]
        for weight in state.get("_weights") or ():
            if weight.name == name:
                return weight
        if "_weights" in state and not state.get("built", False):
            raise AttributeError(
                f"{cls!r} object has no attribute {name!r}: layer {state.get('name')!r} is "
                "not built yet, so it has no weights. Weights are created when the layer is "
                "first called on an input (or by layer.build(input_shape))."
            )
        raise AttributeError(f"{cls!r} object has no attribute {name!r}")

    @property
    def weights(self) -> list[Weight]:
        """All weights, trainable ones first, in Keras's order (then those of the
        sublayers of a Keras-style layer, sublayer by sublayer)."""
        links = self.__dict__.get("_sublayer_links") or {}
        own = [w for w in self._weights if w.name not in links]
        return [w for w in own if w.trainable] + [w for w in own if not w.trainable] + [
            w for w in self._weights if w.name in links]

    @property
    def trainable_weights(self) -> list[Weight]:
        if not self.trainable:
            return []
        links = self.__dict__.get("_sublayer_links")
        if not links:
            return [w for w in self.weights if w.trainable]
        # A linked weight is trained while its own layer (and every layer between) is:
        # asked of the sublayers now, so freezing one after linking counts, as in Keras.
        training = self._linked_trainable_names()
        return [w for w in self.weights
                if (w.name in training if w.name in links else w.trainable)]

    @property
    def non_trainable_weights(self) -> list[Weight]:
        if not self.trainable:
            return self.weights
        training = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in training]

    def _linked_trainable_names(self) -> set:
        names = set()
        for sub in self._direct_sublayers():
            if sub.built:
                for w in sub.trainable_weights:
                    layer, key = _resolve_weight(w)
                    names.add(f"{layer.name}/{key}")
        return names

    def init_values(self, key) -> dict[str, jax.Array]:
        """Fresh values for this layer's own weights, a pure function of `key`."""
        out = {}
        for i, w in enumerate(self._weights):
            out[w.name] = w.initializer(jax.random.fold_in(key, i), w.shape, jnp.dtype(w.dtype))
        return out

    def _current_values(self) -> dict[str, jax.Array]:
        if _pending_sync:
            flush_sync()
        if not self.built:
            raise ValueError(
                f"Layer {self.name!r} has no weights yet: it is built when first called on "
                "an input (or give the model an input shape)."
            )
        if self._values is None:
            self._values = self.init_values(jg_random.next_key())
        return self._values

    def _set_values(self, values: dict) -> None:
        if _pending_sync:
            flush_sync()
        self._values = dict(values)
        _weights_version[0] += 1

    def _assign_value(self, name: str, value) -> None:
        values = dict(self._current_values())
        spec = next((w for w in self._weights if w.name == name), None)
        if spec is None:
            raise ValueError(f"Layer {self.name!r} has no weight {name!r}")
        value = jnp.asarray(value, dtype=spec.dtype)
        if value.shape != spec.shape:
            raise ValueError(
                f"Layer {self.name!r}: weight {name!r} has shape {spec.shape}, "
                f"cannot assign a value of shape {value.shape}"
            )
        values[name] = value
        self._set_values(values)

    def get_weights(self) -> list[np.ndarray]:
        if not self._weights:
            return []
        values = self._current_values()
        return [np.asarray(values[w.name]) for w in self.weights]

    def set_weights(self, weights) -> None:
        specs = self.weights
        weights = list(weights)
        if len(weights) != len(specs):
            if not self.built:
                raise ValueError(
                    f"Layer {self.name!r} is not built yet, so it has no weights to set: "
                    "call it on an input first."
                )
            raise ValueError(
                f"Layer {self.name!r} expects {len(specs)} weights "
                f"({[w.name for w in specs]}), but set_weights got {len(weights)}"
            )
        # Every weight is replaced, so there is no need to draw initial values first.
        values = {}
        for spec, value in zip(specs, weights):
            value = np.asarray(value)
            if tuple(value.shape) != spec.shape:
                raise ValueError(
                    f"Layer {self.name!r}: weight {spec.name!r} has shape {spec.shape}, "
                    f"but set_weights got shape {tuple(value.shape)}"
                )
            values[spec.name] = jnp.asarray(value, dtype=spec.dtype)
        self._set_values(values)

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(
                f"You called count_params() on layer {self.name!r}, but it is not built yet: "
                "call it on an input first."
            )
        return int(sum(int(np.prod(w.shape)) for w in self._weights))

    def add_loss(self, value) -> None:
        """Add a scalar to the training objective from inside `call`."""
        stack = getattr(_loss_stack, "stack", None)
        if stack:
            stack[-1].append(jnp.sum(value))

    def regularization_loss(self, w: dict) -> jax.Array | float:
        """Sum of weight regularizers over this layer's variables `w`."""
        total = 0.0
        for spec in self._weights:
            if spec.regularizer is not None:
                total = total + spec.regularizer(w[spec.name])
        return total

    # ------------------------------------------------------------------ calling

    def __call__(self, *args, **kwargs):
        if not args and kwargs:
            # `attention(query=x, value=y)`: the first argument is the input, as in Keras.
            params = self._mask_parameters()
            if params and params[0] in kwargs:
                kwargs = dict(kwargs)
                args = (kwargs.pop(params[0]),)
        leaves, _ = flatten_call(args, kwargs)
        if any(is_symbolic(x) for x in leaves):
            return self._symbolic_call(args, kwargs)
        return self._eager_call(args, kwargs)

    def _maybe_build(self, first_arg) -> None:
        if self.built:
            return
        self._check_input_count(first_arg)
        shapes = _shapes_of(first_arg)
        try:
            self.build(shapes)
        except (ValueError, TypeError) as e:
            if self.name in str(e):
                raise
            received = _tensor_leaves(first_arg)
            if len(received) > 1:
                raise ValueError(
                    f"Layer {self.name!r} ({type(self).__name__}) cannot be built for the "
                    f"{len(received)} input tensors it received, with shapes "
                    f"{[tuple(t.shape) for t in received]}: {e}. A layer that takes one "
                    "tensor must be called on one tensor, not a list."
                ) from e
            raise ValueError(
                f"Layer {self.name!r} ({type(self).__name__}) cannot be built for input "
                f"shape {shapes}: {e}"
            ) from e
        self.built = True
        self._build_input_shape = shapes

    def _check_input_count(self, first_arg) -> None:
        """Keras's rule: a layer with a single InputSpec takes exactly one tensor."""
        if not isinstance(self.input_spec, InputSpec):
            return
        received = _tensor_leaves(first_arg)
        if len(received) > 1:
            raise ValueError(
                f"Layer {self.name!r} ({type(self).__name__}) expects 1 input, but it "
                f"received {len(received)} input tensors, with shapes "
                f"{[tuple(t.shape) for t in received]}"
            )

    def _check_inputs(self, first_arg) -> None:
        if self.input_spec is None:
            return
        self._check_input_count(first_arg)
        flat = jax.tree_util.tree_leaves(first_arg, is_leaf=is_symbolic)
        specs = self.input_spec if isinstance(self.input_spec, (list, tuple)) else [
            self.input_spec
        ] * len(flat)
        for i, (t, spec) in enumerate(zip(flat, specs)):
            if spec is not None and hasattr(t, "shape"):
                spec.check(self.name, tuple(t.shape), i)

    def _symbolic_call(self, args, kwargs):
        if not args:
            raise ValueError(f"Layer {self.name!r} was called without inputs")
        self._maybe_build(args[0])
        self._check_inputs(args[0])
        try:
            outputs = self.compute_output_spec(*args, **kwargs)
        except (ValueError, TypeError) as e:
            if self.name in str(e):
                raise
            received = _tensor_leaves(args[0])
            if len(received) > 1:
                raise ValueError(
                    f"Layer {self.name!r} ({type(self).__name__}) cannot be called on the "
                    f"{len(received)} input tensors it received, with shapes "
                    f"{[tuple(t.shape) for t in received]}: {e}. A layer that takes one "
                    "tensor must be called on one tensor, not a list."
                ) from e
            raise ValueError(
                f"Layer {self.name!r} ({type(self).__name__}) cannot be called on inputs with "
                f"shape {_shapes_of(args[0])}: {e}"
            ) from e
        self._link_sublayers()
        node = Node(self, args, kwargs)
        outputs = node.set_outputs(outputs)
        self._nodes.append(node)
        return outputs

    def _eager_call(self, args, kwargs):
        """Call on concrete arrays with the current weights (Keras's eager `layer(x)`)."""
        in_step = step_call(self)
        if in_step is not None:
            with in_step:
                return self._eager_call(args, kwargs)
        # Arrays stay the same objects: the masks riding on them are found by identity.
        args = jax.tree_util.tree_map(
            lambda a: a if isinstance(a, jax.Array) else jnp.asarray(a), args)
        if not self.built:
            self._maybe_build(jax.tree_util.tree_map(lambda a: _SpecView(a.shape), args[0]))
        self._check_inputs(args[0])
        registry = getattr(_implicit_masks, "current", None)  # inside a Keras-style `call`
        if registry is not None:
            kwargs, first, previous = self._with_implicit_masks(args, kwargs, registry)
        training, rng = self._resolve_training(kwargs)
        context = getattr(_call_context, "current", None)
        w = self._current_values() if self._weights else {}
        out, updates = self.forward(w, *args, training=training, rng=rng, **kwargs)
        if updates and context is not None:
            # Inside a Keras-style `call`: the caller collects these as its own state
            # updates; they are not a user's edit of the weights (no version bump).
            self._values = {**self._current_values(), **updates}
        elif updates:
            self._set_values({**self._current_values(), **updates})
        if registry is not None:
            self._carry_output_masks(first, out, previous, registry)
        if self._keras_style_call() and "_sublayer_links" not in self.__dict__:
            self._link_sublayers()
        return out

    def _resolve_training(self, kwargs) -> tuple:
        """(training, rng) of a direct call, by Keras's rule: the `training=` given, else
        the value of the enclosing calls (when not None), else the layer's own default;
        the value resolved is left for the calls after it. A key is drawn when the layer
        may draw one: inside a Keras-style `call`, folded from the caller's key."""
        context = getattr(_call_context, "current", None)
        said = "training" in kwargs
        training = resolve_in_context(self, kwargs, context)
        if training is None and not self._keras_style_call():
            training = self.training_by_default
        rng = jg_random.as_key(kwargs.pop("rng", None))
        if rng is None and (training is None or training) and self.needs_rng():
            rng = context.next_rng() if context is not None else None
            if rng is None and context is not None and not said and tracing():
                # A traced program given no key (apply without rng): a key drawn now
                # would be baked in, the same at every step. Say which layer draws.
                if training:
                    raise ValueError(_no_key_message(self, context.cell))
            elif rng is None:
                rng = jg_random.next_key()
        return training, rng

    @classmethod
    def _mask_parameters(cls) -> tuple:
        """The names the arguments of a direct call bind to (after self, and w)."""
        cached = cls.__dict__.get("_mask_params")
        if cached is None:
            fn = cls.call if cls.forward is Layer.forward else cls.forward
            names = [n for n, p in inspect.signature(fn).parameters.items()
                     if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            cached = tuple(names[1:] if cls._keras_style_call() else names[2:])
            cls._mask_params = cached
        return cached

    def _with_implicit_masks(self, args, kwargs, registry) -> tuple:
        """Keras's rule inside a Keras-style `call`: one tensor argument brings its mask
        as `mask`, several bring theirs as `<argument>_mask`, where not given. Returns the
        kwargs, the first argument, and the mask that `compute_mask` gets (the `mask`
        passed, else the first argument's)."""
        params = self._mask_parameters()
        bound = {**dict(zip(params, args)), **kwargs}
        first = args[0] if args else (bound.get(params[0]) if params else None)
        tensors = {k: v for k, v in bound.items() if _is_tensor_argument(v)}
        kwargs = dict(kwargs)
        if len(tensors) == 1:
            if kwargs.get("mask") is None:
                m = carried_mask(registry, next(iter(tensors.values())))
                if m is not None:
                    kwargs["mask"] = m
        elif len(tensors) > 1:
            for name, value in tensors.items():
                target = f"{name}_mask"
                if target in params and bound.get(target) is None:
                    m = carried_mask(registry, value)
                    if m is not None:
                        kwargs[target] = m
        previous = kwargs.get("mask")
        if previous is None:
            previous = carried_mask(registry, first)
        return kwargs, first, previous

    def _computes_masks(self) -> bool:
        """Keras's `supports_masking`: set, or implied by a `compute_mask` of its own."""
        return bool(self.supports_masking) or type(self).compute_mask is not Layer.compute_mask

    def _carry_output_masks(self, first, outputs, previous, registry) -> None:
        """Keras's `_set_mask_metadata`: the outputs of a masking layer carry
        `compute_mask(inputs, previous_mask)`, unless they all carry a mask already."""
        if not self._computes_masks():
            return
        flat = [o for o in jax.tree_util.tree_leaves(outputs) if hasattr(o, "shape")]
        if not flat or all(carried_mask(registry, o) is not None for o in flat):
            return
        masks = self.compute_mask(first, previous)
        if masks is None:
            return
        flat_masks = jax.tree_util.tree_leaves(masks, is_leaf=lambda x: x is None)
        for out, m in zip(flat, flat_masks):
            carry_mask(registry, out, m)

    def compute_output_spec(self, *args, **kwargs):
        """Output symbolic tensors for symbolic inputs (shape and dtype only)."""
        first = args[0]
        if type(self).compute_output_shape is not Layer.compute_output_shape:
            out_shapes = self.compute_output_shape(_shapes_of(first))
            dtype = self._default_output_dtype(first)
            return _specs_from_shapes(out_shapes, dtype)
        return self._infer_output_spec(args, kwargs)

    def _default_output_dtype(self, first):
        leaves = jax.tree_util.tree_leaves(first, is_leaf=is_symbolic)
        in_dtype = leaves[0].dtype if leaves else "float32"
        if not self._weights and not jnp.issubdtype(jnp.dtype(in_dtype), jnp.floating):
            return in_dtype
        return self.compute_dtype

    def _infer_output_spec(self, args, kwargs):
        """Infer output shapes by tracing with stand-in sizes for unknown dims."""
        leaves, treedef = flatten_call(args, kwargs)
        sym_positions = [i for i, x in enumerate(leaves) if is_symbolic(x)]
        wstruct = {
            w.name: jax.ShapeDtypeStruct(w.shape, jnp.dtype(w.dtype)) for w in self._weights
        }

        def run(w, *values):
            filled = list(leaves)
            for pos, v in zip(sym_positions, values):
                filled[pos] = v
            a, k = jax.tree_util.tree_unflatten(treedef, filled)
            k = dict(k)
            training = k.pop("training", False)
            rng = jax.random.key(0) if self.needs_rng() else None
            return self.forward(w, *a, training=training, rng=rng, **k)[0]

        results = []
        for fill in (_FILL_A, _FILL_B):
            structs = [
                jax.ShapeDtypeStruct(
                    tuple(fill if d is None else d for d in leaves[p].shape),
                    jnp.dtype(leaves[p].dtype),
                )
                for p in sym_positions
            ]
            results.append(jax.eval_shape(run, wstruct, *structs))
        a_flat, out_tree = jax.tree_util.tree_flatten(results[0])
        b_flat = jax.tree_util.tree_leaves(results[1])
        specs = []
        for a, b in zip(a_flat, b_flat):
            shape = tuple(da if da == db else None for da, db in zip(a.shape, b.shape))
            specs.append(SymbolicTensor(shape, a.dtype))
        return jax.tree_util.tree_unflatten(out_tree, specs)

    # ------------------------------------------------------------------ graph introspection

    @property
    def inbound_nodes(self) -> list[Node]:
        return list(self._nodes)

    def _node_attr(self, index: int, attr: str):
        if not self._nodes:
            raise AttributeError(
                f"Layer {self.name!r} has never been called on a symbolic input, so it has "
                f"no {attr} yet."
            )
        if index >= len(self._nodes):
            raise ValueError(
                f"Layer {self.name!r} was called {len(self._nodes)} time(s); "
                f"there is no call {index}."
            )
        node = self._nodes[index]
        if attr == "input":
            ins = node.input_tensors
            return ins[0] if len(ins) == 1 else list(ins)
        return node.outputs

    def _single_node_attr(self, attr: str):
        if len(self._nodes) > 1:
            raise AttributeError(
                f"Layer {self.name!r} has been called {len(self._nodes)} times (it is shared), "
                f"so `.{attr}` is ambiguous. Use `get_{attr}_at(i)` to name the call "
                f"(0..{len(self._nodes) - 1})."
            )
        return self._node_attr(0, attr)

    @property
    def input(self):
        return self._single_node_attr("input")

    @property
    def output(self):
        return self._single_node_attr("output")

    def get_input_at(self, index: int):
        return self._node_attr(index, "input")

    def get_output_at(self, index: int):
        return self._node_attr(index, "output")

    @property
    def input_shape(self):
        return _shapes_of(self.input)

    @property
    def output_shape(self):
        return _shapes_of(self.output)

    # ------------------------------------------------------------------ config

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-able, so that `from_config` rebuilds the layer.

        As in Keras, the arguments left at their defaults are listed too, with those
        defaults: all but defaults that are not plain JSON data (objects, functions,
        sentinels), which the constructor recreates by itself when they are left out, and
        the base Layer's input-shape arguments. `name`, `trainable` and `dtype` (the
        layer's dtype policy) are always there.
        """
        from .serialization import serialize_value

        cls = type(self)
        args, kwargs = self._init_args
        signature = inspect.signature(cls.__init__)
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError as e:
            raise TypeError(f"Layer {self.name!r}: cannot derive get_config ({e})") from e
        config = {}
        for index, (key, param) in enumerate(signature.parameters.items()):
            if index == 0:  # self
                continue
            if key not in bound.arguments:
                if _fills_default(cls, key, param):
                    config[key] = serialize_value(param.default)
                continue
            value = bound.arguments[key]
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                config.update({k: serialize_value(v) for k, v in value.items()})
            elif param.kind is inspect.Parameter.VAR_POSITIONAL:
                if value:
                    raise TypeError(
                        f"Layer {self.name!r}: *args constructors need their own get_config"
                    )
            else:
                config[key] = serialize_value(value)
        config["name"] = self.name
        config["trainable"] = self.trainable
        # The dtype policy; but a constructor that names `dtype` itself gets back the value
        # it was given (or its own default): its `dtype` may mean something else.
        param = signature.parameters.get("dtype")
        own_dtype = (cls.__init__ is not Layer.__init__ and param is not None
                     and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY))
        if not own_dtype or config.get("dtype") is None:
            config["dtype"] = self.dtype_policy.name
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} built={self.built}>"


_wrap_build(Layer)  # subclasses are wrapped by __init_subclass__


#: Layer.__init__ arguments whose defaults `get_config` never fills in: `name`,
#: `trainable` and `dtype` are added from the layer itself, and Keras lists none of the
#: input-shape ones.
_UNFILLED_ARGS = frozenset({"name", "trainable", "dtype", "input_shape", "batch_input_shape",
                            "input_dim", "batch_size"})


def _plain_json(value) -> bool:
    """Data that means the same in a config as in a constructor call (tuples become lists)."""
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if isinstance(value, (list, tuple)):
        return all(_plain_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_json(v) for k, v in value.items())
    return False


def _fills_default(cls, key: str, param: inspect.Parameter) -> bool:
    """Whether `get_config` lists the default of an argument that was not passed."""
    if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL, param.POSITIONAL_ONLY):
        return False
    if param.default is inspect.Parameter.empty or not _plain_json(param.default):
        return False
    if cls.__init__ is Layer.__init__:  # no constructor of its own: Keras's base config only
        return False
    # A subclass's own `dtype` argument with a default of its own (not None) is kept.
    if key == "dtype":
        return param.default is not None
    return key not in _UNFILLED_ARGS


def _resolve_weight(w: Weight) -> tuple[Layer, str]:
    """The layer whose cache holds weight `w`'s value, and its name there (through
    wrappers, whose weights are their inner layers', and linked sublayers)."""
    owner = w.layer
    links = owner.__dict__.get("_sublayer_links")
    if links and w.name in links:
        return links[w.name]
    for prefix, inner in owner.__dict__.get("_linked_parts") or ():
        if w.name.startswith(prefix):
            rest = w.name[len(prefix):]
            match = next((x for x in inner._weights if x.name == rest), None)
            if match is not None:
                return _resolve_weight(match)
    return owner, w.name


def _group_links(links: dict, values: dict) -> dict:
    """{storage layer: {its weight name: value}} for the linked names in `values`."""
    groups: dict = {}
    for name, (layer, key) in links.items():
        if name in values:
            groups.setdefault(layer, {})[key] = values[name]
    return groups


def _no_key_message(layer, cell) -> str:
    """The error of a layer that would draw in a traced program given no key."""
    carried = ""
    if cell is not None and cell[0] and cell[1] not in (None, layer.name):
        carried = (f" (training=True carried from layer {cell[1]!r} through the call "
                   "context, as in Keras)")
    return (f"Layer {layer.name!r} ({type(layer).__name__}) needs randomness when "
            f"training=True{carried}: pass rng=jax.random.key(...) to apply()")


class _SpecView:
    """A shape holder so eager calls can build from concrete arrays."""

    def __init__(self, shape):
        self.shape = tuple(shape)


def _specs_from_shapes(shapes, dtype):
    def is_shape(s):
        return isinstance(s, tuple) and all(d is None or isinstance(d, int) for d in s)

    if is_shape(shapes):
        return SymbolicTensor(shapes, dtype)
    return jax.tree_util.tree_map(lambda s: SymbolicTensor(s, dtype), shapes, is_leaf=is_shape)

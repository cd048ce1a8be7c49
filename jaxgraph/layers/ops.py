"""Arithmetic, indexing and `jaxgraph.ops` calls on symbolic tensors (`x + y`, `x[:, 0]`,
`ops.expand_dims(x, -1)`).

Each becomes a small serializable layer, so graphs built with plain Python operators
and ops still save, load and print like any other.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect

import jax.numpy as jnp
import numpy as np

from ..graph.tensor import SymbolicTensor
from .base import Layer, unique_name

_BINARY = {
    "add": jnp.add,
    "subtract": jnp.subtract,
    "multiply": jnp.multiply,
    "divide": jnp.divide,
    "matmul": jnp.matmul,
    "power": jnp.power,
}
_UNARY = {"negative": jnp.negative, "absolute": jnp.abs}


class OpNode:
    """The op layers' Keras 3 layout (`to_json`): Keras writes such a call as an Operation
    record, the op's constant arguments in its config and the rest as the node's call
    arguments (`keras_call_args`), so Keras reads jaxgraph's op nodes."""

    # As Keras's ops: computed in their inputs' dtypes, never cast to a dtype policy's.
    convert_input_args = False

    def keras_compatible(self) -> bool:
        return True

    def keras_record(self) -> dict:
        module, class_name, config = self._keras_class()
        return {"module": module, "class_name": class_name,
                "config": {"name": self.name, **config}, "registered_name": class_name}


class TensorOp(OpNode, Layer):
    """`op(x, y)` for a symbolic `x` and a symbolic or constant `y`."""

    def __init__(self, op: str, constant=None, reverse: bool = False, **kwargs):
        super().__init__(**kwargs)
        if op not in _BINARY and op not in _UNARY:
            raise ValueError(f"Unknown tensor op {op!r}")
        self.op = op
        self.constant = constant
        self.reverse = reverse

    def call(self, w, inputs):
        if self.op in _UNARY:
            return _UNARY[self.op](inputs)
        if isinstance(inputs, (list, tuple)):
            a, b = inputs
        else:
            a, b = inputs, _constant_like(self.constant, inputs)
        if self.reverse:
            a, b = b, a
        return _BINARY[self.op](a, b)

    def _keras_class(self):
        spec = keras_operations()[self.op]
        return spec.module, spec.class_name, {}

    def keras_call_args(self, inputs):
        """`inputs`: the node's tensor (or pair of tensors) as Keras records."""
        if isinstance(inputs, list):
            return list(inputs), {}
        if self.op in _UNARY:
            return [inputs], {}
        return ([self.constant, inputs] if self.reverse else [inputs, self.constant]), {}


def _constant_like(constant, x):
    """A recorded constant as Keras treats a Python number next to a tensor: it takes
    `x`'s dtype, except a float next to integers or booleans (`ints * 2.5` is float)
    and a number next to booleans."""
    c = jnp.asarray(constant)
    if x.dtype == jnp.bool_ or (jnp.issubdtype(c.dtype, jnp.floating)
                                and not jnp.issubdtype(x.dtype, jnp.inexact)):
        return c
    return c.astype(x.dtype)


def symbolic_op(op, x, other=None, reverse=False):
    from ..graph.tensor import is_symbolic

    if op in _UNARY:
        return TensorOp(op)(x)
    if is_symbolic(other):
        pair = [other, x] if reverse else [x, other]
        return TensorOp(op)(pair)
    if hasattr(other, "tolist"):
        other = other.tolist()
    return TensorOp(op, constant=other, reverse=reverse)(x)


def _encode_key(key):
    if isinstance(key, tuple):
        return {"tuple": [_encode_key(k) for k in key]}
    if isinstance(key, slice):
        return {"slice": [key.start, key.stop, key.step]}
    if key is None:
        return {"newaxis": True}
    if key is Ellipsis:
        return {"ellipsis": True}
    if isinstance(key, int):
        return key
    raise TypeError(f"Unsupported index {key!r} on a symbolic tensor (use ints and slices)")


def _decode_key(key):
    if isinstance(key, dict):
        if "tuple" in key:
            return tuple(_decode_key(k) for k in key["tuple"])
        if "slice" in key:
            return slice(*key["slice"])
        if "newaxis" in key:
            return None
        if "ellipsis" in key:
            return Ellipsis
    return key


class GetItem(OpNode, Layer):
    """`x[key]` with ints, slices, `None` and `...`."""

    def __init__(self, key, **kwargs):
        super().__init__(**kwargs)
        self.key = key if isinstance(key, (dict, int)) else _encode_key(key)

    def call(self, w, x):
        return x[_decode_key(self.key)]

    def _keras_class(self):
        return f"{_KERAS_OPS_MODULE}.numpy", "GetItem", {}

    def keras_call_args(self, inputs):
        return [inputs, _keras_key(_decode_key(self.key))], {}


def _keras_key(key):
    """A key as Keras serializes it (tuples as lists, slices and `...` as records)."""
    if isinstance(key, tuple):
        return [_keras_key(k) for k in key]
    if isinstance(key, slice):
        return {"class_name": "__slice__",
                "config": {"start": key.start, "stop": key.stop, "step": key.step}}
    if key is Ellipsis:
        return {"class_name": "__ellipsis__", "config": {}}
    return key


def _key_from_keras(key, where: str):
    """Keras's serialized key as GetItem's; a list is the tuple Keras wrote as one."""
    if isinstance(key, list):
        return {"tuple": [_key_from_keras(k, where) for k in key]}
    if key is None:
        return {"newaxis": True}
    if _is_int(key):
        return key
    if isinstance(key, dict):
        cls, config = key.get("class_name"), key.get("config")
        if cls == "__ellipsis__":
            return {"ellipsis": True}
        if cls == "__slice__" and isinstance(config, dict):
            bounds = [config.get(k) for k in ("start", "stop", "step")]
            if all(b is None or _is_int(b) for b in bounds):
                return {"slice": bounds}
    raise ValueError(f"{where}: unsupported index {key!r} (jaxgraph indexes symbolic "
                     "tensors with ints, slices, None and ...)")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def symbolic_getitem(x, key):
    return GetItem(_encode_key(key))(x)


# `jaxgraph.ops` on symbolic tensors: one layer for every op. Its config holds the op's
# name and its constant arguments, with {"tensor": i} where the i-th input goes; loading
# resolves the name in `jaxgraph.ops.OPS` only, never by importing what a file names.


def _encode_arg(value, tensors: list, op: str):
    if type(value) is SymbolicTensor:
        tensors.append(value)
        return {"tensor": len(tensors) - 1}
    if isinstance(value, (list, tuple)):
        return [_encode_arg(v, tensors, op) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (type, np.dtype)):  # np.float32 has `shape` and `dtype` too
        return {"dtype": jnp.dtype(value).name}
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        array = np.asarray(value)
        return {"array": array.tolist(), "dtype": array.dtype.name}
    try:
        return {"dtype": jnp.dtype(value).name}
    except TypeError:
        raise TypeError(f"ops.{op}: cannot record argument {value!r} in a graph (use "
                        "tensors, numbers, strings, dtypes or tuples of them)") from None


def _decode_arg(value, tensors):
    if isinstance(value, list):  # JSON has no tuples; shapes and axes want them
        return tuple(_decode_arg(v, tensors) for v in value)
    if isinstance(value, dict):
        if "tensor" in value:
            return tensors[value["tensor"]]
        if "array" in value:
            return np.asarray(value["array"], dtype=value["dtype"])
        if "dtype" in value:
            return value["dtype"]
    return value


class OpLayer(OpNode, Layer):
    """`jaxgraph.ops.<op>(...)` applied to symbolic tensors: a node of the graph."""

    def __init__(self, op: str, args=(), kwargs=None, **layer_kwargs):
        from .. import ops

        super().__init__(**layer_kwargs)
        if op not in ops.OPS:
            raise ValueError(f"Unknown op {op!r}: not a function of jaxgraph.ops")
        self.op = op
        self.op_args = list(args)
        self.op_kwargs = dict(kwargs or {})
        self._fn = ops.OPS[op]

    def call(self, w, inputs):
        args = [_decode_arg(a, inputs) for a in self.op_args]
        kwargs = {k: _decode_arg(v, inputs) for k, v in self.op_kwargs.items()}
        return self._fn(*args, **kwargs)

    def compute_output_spec(self, *args, **kwargs):
        try:
            return super().compute_output_spec(*args, **kwargs)
        except (ValueError, TypeError, IndexError) as e:
            shapes = [t.shape for t in args[0]]
            raise ValueError(f"ops.{self.op} (layer {self.name!r}) cannot be applied to "
                             f"inputs with shapes {shapes}: {e}") from e

    def _keras_spec(self):
        spec = keras_operations().get(self.op)
        if spec is None:
            raise ValueError(f"Layer {self.name!r} (ops.{self.op}) has no Keras 3 Operation "
                             "class, so it cannot be written in Keras's layout")
        try:
            bound = spec.signature.bind(*self.op_args, **self.op_kwargs)
        except TypeError as e:
            raise ValueError(f"Layer {self.name!r}: ops.{self.op} arguments: {e}") from e
        return spec, bound

    def keras_compatible(self) -> bool:
        """Whether Keras has this op's class and takes its constant arguments as constants
        (`ops.clip(x, low, high)` with tensor bounds has no Keras record: jaxgraph then
        writes its own OpLayer record, which only jaxgraph reads)."""
        spec = keras_operations().get(self.op)
        if spec is None:
            return False
        bound = spec.signature.bind(*self.op_args, **self.op_kwargs)
        return not any(_has_tensor(bound.arguments[p]) for p in spec.init
                       if p in bound.arguments)

    def _keras_class(self):
        spec, bound = self._keras_spec()
        bound.apply_defaults()
        config = {p: _to_keras(bound.arguments[p], None,
                               f"Layer {self.name!r} (ops.{self.op}) argument {p!r}")
                  for p in spec.init}
        return spec.module, spec.class_name, config

    def keras_call_args(self, inputs):
        """`inputs`: the node's tensors as Keras records, in the order of the layer's input."""
        spec, bound = self._keras_spec()
        where = f"Layer {self.name!r} (ops.{self.op})"
        call = spec.call_signature()
        given = _map_arguments(call, bound.arguments, lambda v: _to_keras(v, inputs, where))
        call_bound = inspect.BoundArguments(call, given)
        return list(call_bound.args), call_bound.kwargs


def symbolic_call(op: str, args, kwargs):
    """The graph node for `jaxgraph.ops.<op>(*args, **kwargs)` with symbolic tensors."""
    tensors: list = []
    encoded_args = [_encode_arg(a, tensors, op) for a in args]
    encoded_kwargs = {k: _encode_arg(v, tensors, op) for k, v in kwargs.items()}
    return OpLayer(op, encoded_args, encoded_kwargs, name=unique_name(op))(tensors)


# ---------------------------------------------------------------------------- Keras 3 records
# Keras 3 writes a `keras.ops` call on KerasTensors (and each mask op it inserts where a
# masked tensor meets a layer taking `mask`) as an Operation node: module
# `keras.src.ops.<module>`, the op's class (`Mean`), a config of the class's constructor
# arguments, and the op's other arguments as the node's call arguments. For every op
# jaxgraph has, those two sets split the function's parameters, named alike, and the
# call ones are exactly these names (tests/test_ops_interop.py checks it against Keras).

_KERAS_OPS_MODULE = "keras.src.ops"
_KERAS_CALL_PARAMS = frozenset({
    "x", "x1", "x2", "xs", "condition", "variable", "inputs", "start_indices", "updates",
    "indices", "start", "stop", "step", "weights", "fill_value", "constant_values",
    "operands", "kwargs",
})
#: Ops whose Keras class is not in `keras.src.ops.numpy`.
_KERAS_MODULES = {
    "core": "cast convert_to_tensor slice slice_update stop_gradient",
    "math": "erf logsumexp rsqrt top_k",
    "linalg": "norm",
    "nn": "elu gelu leaky_relu log_softmax moments one_hot relu relu6 sigmoid silu "
          "softmax softplus",
}
#: Ops Keras always computes eagerly (no tensor argument): no class, never a graph node.
_KERAS_EAGER = frozenset({"eye", "ones", "zeros"})


@dataclasses.dataclass(frozen=True)
class KerasOperation:
    """Keras 3's Operation class of one op of `jaxgraph.ops`."""

    op: str
    module: str
    class_name: str
    signature: inspect.Signature  # the jaxgraph op's
    init: tuple  # parameters Keras takes in the constructor (the record's config)
    call: tuple  # parameters Keras takes in `call` (the node's arguments)

    def call_signature(self) -> inspect.Signature:
        return self.signature.replace(
            parameters=[self.signature.parameters[p] for p in self.call])


@functools.cache
def keras_operations() -> dict:
    """Op name -> its `KerasOperation`, for every op of `jaxgraph.ops` Keras has a class
    for: the op's name in CamelCase (`not_equal` is `NotEqual`)."""
    from .. import ops

    module_of = {op: m for m, names in _KERAS_MODULES.items() for op in names.split()}
    table = {}
    for op, fn in ops.OPS.items():
        if op in _KERAS_EAGER:
            continue
        signature = inspect.signature(fn)
        table[op] = KerasOperation(
            op, f"{_KERAS_OPS_MODULE}.{module_of.get(op, 'numpy')}",
            "".join(part.capitalize() for part in op.split("_")), signature,
            tuple(p for p in signature.parameters if p not in _KERAS_CALL_PARAMS),
            tuple(p for p in signature.parameters if p in _KERAS_CALL_PARAMS))
    return table


@functools.cache
def _op_of_keras_class() -> dict:
    return {spec.class_name: op for op, spec in keras_operations().items()}


def is_keras_operation_record(entry) -> bool:
    """Whether a layer entry of a Keras config is an Operation (module `keras.src.ops.*`)."""
    module = entry.get("module") if isinstance(entry, dict) else None
    return isinstance(module, str) and module.startswith(_KERAS_OPS_MODULE + ".")


def _map_arguments(signature: inspect.Signature, arguments: dict, convert) -> dict:
    """`convert` of each of `arguments` that `signature` takes (of each value of a
    `**kwargs` one), in the signature's order."""
    out = {}
    for p, param in signature.parameters.items():
        if p in arguments:
            value = arguments[p]
            out[p] = ({k: convert(v) for k, v in value.items()}
                      if param.kind is param.VAR_KEYWORD else convert(value))
    return out


def _has_tensor(value) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_has_tensor(v) for v in value)
    return isinstance(value, dict) and "tensor" in value


def _to_keras(value, inputs, where: str):
    """A recorded op argument as Keras writes it: tensors as the node's tensor records
    (`inputs`; None for a constructor argument, which Keras cannot take a tensor for),
    arrays as `__numpy__` (plain lists in a config), dtypes as their names."""
    if isinstance(value, (list, tuple)):
        return [_to_keras(v, inputs, where) for v in value]
    if not isinstance(value, dict):
        return value
    if "tensor" in value:
        if inputs is None:
            raise ValueError(f"{where}: Keras takes this argument as a constant, not a tensor")
        return inputs[value["tensor"]]
    if "array" in value:
        if inputs is None:
            return value["array"]
        return {"class_name": "__numpy__",
                "config": {"value": value["array"], "dtype": value["dtype"]}}
    return value["dtype"]


def _from_keras(value, tensors: list, where: str):
    """An argument of a Keras op record in OpLayer's encoding, collecting its tensor
    references (`{"__tensor__": ...}`) into `tensors`. Only plain values, tensors and
    Keras's array records are accepted: nothing in a file names code to run."""
    if isinstance(value, (list, tuple)):  # a tuple: variadic operands, bound
        return [_from_keras(v, tensors, where) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict) and set(value) == {"__tensor__"}:
        tensors.append(value)
        return {"tensor": len(tensors) - 1}
    config = value.get("config") if isinstance(value, dict) else None
    if isinstance(value, dict) and value.get("class_name") in ("__numpy__", "__tensor__") \
            and isinstance(config, dict) and isinstance(config.get("dtype"), str):
        try:
            array = np.asarray(config.get("value"), dtype=jnp.dtype(config["dtype"]))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: cannot rebuild the array {value!r}: {e}") from e
        return {"array": array.tolist(), "dtype": array.dtype.name}
    raise ValueError(f"{where}: cannot rebuild the argument {value!r}")


def layer_entry_from_keras(entry: dict) -> dict:
    """Keras's record of an Operation node (already in jaxgraph's tensor references) as
    jaxgraph's: an `OpLayer` of the op Keras's class stands for (a `GetItem` for
    Keras's `GetItem`), called on each node's tensors.

    Keras's class name is looked up in this module's table only; a class jaxgraph has no
    op for raises a ValueError that names it and the layer.
    """
    cls, config = entry.get("class_name"), dict(entry.get("config") or {})
    name = entry.get("name") or config.get("name")
    where = f"Layer {name!r} (Keras operation {entry.get('module')}.{cls})"
    config.pop("name", None)
    if cls == "GetItem":
        spec = None
    elif cls in _op_of_keras_class():
        spec = keras_operations()[_op_of_keras_class()[cls]]
    else:
        raise ValueError(
            f"{where}: jaxgraph has no op for this Keras class, so the model cannot be "
            "rebuilt (the ops it can rebuild are those of jaxgraph.ops.OPS)")
    unknown = sorted(set(config) - set(spec.init if spec else ()))
    if unknown:
        raise ValueError(f"{where}: unknown constructor argument(s) {unknown}")
    layer_config, nodes = None, []
    for node in entry.get("inbound_nodes") or []:
        if not isinstance(node, dict):
            raise ValueError(f"{where}: malformed call record {node!r}")
        args, kwargs = node.get("args") or [], node.get("kwargs") or {}
        if spec is None:
            this, inputs = _getitem_call_from_keras(args, kwargs, where)
        else:
            this, inputs = _op_call_from_keras(spec, config, args, kwargs, where)
        if layer_config is None:
            layer_config = this
        elif this != layer_config:
            raise ValueError(f"{where}: its calls differ in constant arguments, which one "
                             "jaxgraph layer cannot hold")
        nodes.append({"args": [inputs], "kwargs": {}})
    if layer_config is None:  # never called: nothing to compute, keep the op
        layer_config = {"key": 0} if spec is None else {"op": spec.op}
    return {"class_name": "GetItem" if spec is None else "OpLayer",
            "config": {"name": name, **layer_config}, "name": name, "inbound_nodes": nodes}


def _getitem_call_from_keras(args, kwargs, where: str):
    """GetItem's config and input for Keras's call `GetItem()(x, key)`."""
    if len(args) != 2 or kwargs or not isinstance(args[0], dict) \
            or set(args[0]) != {"__tensor__"}:
        raise ValueError(f"{where}: expected (x, key), got {args!r}, {kwargs!r}")
    return {"key": _key_from_keras(args[1], where)}, args[0]


def _op_call_from_keras(spec: KerasOperation, config: dict, args, kwargs, where: str):
    """OpLayer's config and input list for one call of Keras's op class: the class's
    constructor arguments (`config`) and call arguments become the op's arguments, by
    name (positionally up to variadic operands), with the tensors as the inputs."""
    try:
        given = spec.call_signature().bind(*args, **kwargs).arguments
    except TypeError as e:
        raise ValueError(f"{where}: call arguments {args!r}, {kwargs!r}: {e}") from e
    tensors: list = []
    ordered = _map_arguments(spec.signature, {**config, **given},
                             lambda v: _from_keras(v, tensors, where))
    op_args, op_kwargs = [], ordered
    if any(p.kind is p.VAR_POSITIONAL for p in spec.signature.parameters.values()):
        bound = inspect.BoundArguments(spec.signature, ordered)
        op_args, op_kwargs = list(bound.args), bound.kwargs
    try:
        spec.signature.bind(*op_args, **op_kwargs)
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from e
    return {"op": spec.op, "args": op_args, "kwargs": op_kwargs}, tensors

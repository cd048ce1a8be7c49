"""`keras.ops` for jaxgraph: the array functions Keras 3 code calls inside a layer's
`call` and on the symbolic tensors of a functional model.

On arrays and traced values each op is its JAX computation, nothing more. On symbolic
tensors it adds an `OpLayer` node to the graph, which stores the op's name and its
constant arguments, so the model still saves, loads and prints. Names, arguments,
defaults and result dtypes follow Keras 3 on its JAX backend.
"""

from __future__ import annotations

import builtins
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .graph.tensor import SymbolicTensor

#: Op name -> the array implementation; the only names an `OpLayer` config can resolve.
OPS: dict = {}


def _has_symbolic(args, kwargs) -> bool:
    for a in args:
        if type(a) is SymbolicTensor or (
                type(a) in (list, tuple) and builtins.any(type(v) is SymbolicTensor for v in a)):
            return True
    for a in kwargs.values():
        if type(a) is SymbolicTensor:
            return True
    return False


def _op(fn):
    """Register `fn` and let it build a graph node when it is given symbolic tensors."""
    name = fn.__name__
    OPS[name] = fn

    @functools.wraps(fn)
    def op(*args, **kwargs):
        if _has_symbolic(args, kwargs):
            from .layers.ops import symbolic_call

            return symbolic_call(name, args, kwargs)
        return fn(*args, **kwargs)

    return op


def _dtype(dtype):
    return None if dtype is None else jnp.dtype(dtype)


def _floating(x):
    """Keras computes transcendental ops of integers and booleans in float32."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return x
    return x.astype(jnp.float32)


# ----------------------------------------------------------------------------- core


def shape(x):
    """A tuple; on a symbolic tensor its unknown dims (the batch) are None, as in Keras."""
    return tuple(x.shape)


def ndim(x):
    return len(x.shape)


@_op
def cast(x, dtype):
    return jnp.asarray(x).astype(dtype)


@_op
def convert_to_tensor(x, dtype=None, sparse=None, ragged=None):
    if ragged:
        raise ValueError("ragged=True is not supported by jaxgraph")
    if isinstance(x, jax.Array) and (dtype is None or x.dtype == jnp.dtype(dtype)):
        return x
    return jnp.asarray(x, dtype=_dtype(dtype))


def convert_to_numpy(x):
    if type(x) is SymbolicTensor:
        raise TypeError(f"convert_to_numpy needs a value; {x!r} is a symbolic tensor in a "
                        "graph definition")
    return np.array(x)


@_op
def stop_gradient(variable):
    return lax.stop_gradient(variable)


@_op
def slice(inputs, start_indices, shape):  # noqa: A001 - Keras's name
    return lax.dynamic_slice(inputs, start_indices, shape)


@_op
def slice_update(inputs, start_indices, updates):
    return lax.dynamic_update_slice(inputs, jnp.asarray(updates, inputs.dtype), start_indices)


# ----------------------------------------------------------------------------- creation


@_op
def arange(start, stop=None, step=None, dtype=None):
    return jnp.arange(start, stop, step, dtype=_dtype(dtype))


@_op
def ones(shape, dtype=None):
    return jnp.ones(shape, dtype=_dtype(dtype) or jnp.float32)


@_op
def zeros(shape, dtype=None):
    return jnp.zeros(shape, dtype=_dtype(dtype) or jnp.float32)


@_op
def full(shape, fill_value, dtype=None):
    return jnp.full(shape, fill_value, dtype=_dtype(dtype) or jnp.float32)


@_op
def ones_like(x, dtype=None):
    return jnp.ones_like(x, dtype=_dtype(dtype))


@_op
def zeros_like(x, dtype=None):
    return jnp.zeros_like(x, dtype=_dtype(dtype))


@_op
def full_like(x, fill_value, dtype=None):
    return jnp.full_like(x, fill_value, dtype=_dtype(dtype))


@_op
def eye(N, M=None, k=0, dtype=None):  # noqa: N803 - Keras's names
    return jnp.eye(N, M, k, dtype=_dtype(dtype) or jnp.float32)


# ----------------------------------------------------------------------------- arithmetic


@_op
def add(x1, x2):
    return jnp.add(x1, x2)


@_op
def subtract(x1, x2):
    return jnp.subtract(x1, x2)


@_op
def multiply(x1, x2):
    return jnp.multiply(x1, x2)


@_op
def divide(x1, x2):
    return jnp.divide(x1, x2)


@_op
def true_divide(x1, x2):
    return jnp.true_divide(x1, x2)


@_op
def floor_divide(x1, x2):
    return jnp.floor_divide(x1, x2)


@_op
def mod(x1, x2):
    return jnp.mod(x1, x2)


@_op
def power(x1, x2):
    return jnp.power(x1, x2)


@_op
def negative(x):
    return jnp.negative(x)


@_op
def absolute(x):
    return jnp.absolute(x)


@_op
def abs(x):  # noqa: A001 - Keras's name
    return jnp.absolute(x)


@_op
def sign(x):
    return jnp.sign(x)


@_op
def square(x):
    return jnp.square(x)


@_op
def sqrt(x):
    return jnp.sqrt(x)


@_op
def rsqrt(x):
    return lax.rsqrt(_floating(x))


@_op
def reciprocal(x):
    return jnp.reciprocal(_floating(x))


@_op
def exp(x):
    return jnp.exp(_floating(x))


@_op
def expm1(x):
    return jnp.expm1(_floating(x))


@_op
def log(x):
    return jnp.log(x)


@_op
def log1p(x):
    return jnp.log1p(_floating(x))


@_op
def sin(x):
    return jnp.sin(_floating(x))


@_op
def cos(x):
    return jnp.cos(_floating(x))


@_op
def tanh(x):
    return jnp.tanh(_floating(x))


@_op
def erf(x):
    return lax.erf(x)


@_op
def floor(x):
    return jnp.floor(_floating(x))


@_op
def ceil(x):
    return jnp.ceil(_floating(x))


@_op
def round(x, decimals=0):  # noqa: A001 - Keras's name
    x = jnp.asarray(x)
    if decimals < 0 and jnp.issubdtype(x.dtype, jnp.integer):
        # jnp rounds integers to a multiple of 10**-decimals through floats.
        factor = 10 ** (-decimals)
        return (jnp.round(x.astype(jnp.float32) / factor) * factor).astype(x.dtype)
    return jnp.round(x, decimals=decimals)


@_op
def clip(x, x_min, x_max):
    x = jnp.asarray(x)
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.int32)
    return jnp.clip(x, x_min, x_max)


@_op
def maximum(x1, x2):
    return jnp.maximum(x1, x2)


@_op
def minimum(x1, x2):
    return jnp.minimum(x1, x2)


# ----------------------------------------------------------------------------- comparisons


@_op
def equal(x1, x2):
    return jnp.equal(x1, x2)


@_op
def not_equal(x1, x2):
    return jnp.not_equal(x1, x2)


@_op
def greater(x1, x2):
    return jnp.greater(x1, x2)


@_op
def greater_equal(x1, x2):
    return jnp.greater_equal(x1, x2)


@_op
def less(x1, x2):
    return jnp.less(x1, x2)


@_op
def less_equal(x1, x2):
    return jnp.less_equal(x1, x2)


@_op
def logical_and(x1, x2):
    return jnp.logical_and(x1, x2)


@_op
def logical_or(x1, x2):
    return jnp.logical_or(x1, x2)


@_op
def logical_not(x):
    return jnp.logical_not(x)


@_op
def isnan(x):
    return jnp.isnan(x)


@_op
def isfinite(x):
    return jnp.isfinite(x)


@_op
def where(condition, x1=None, x2=None):
    return jnp.where(condition, x1, x2)


# ----------------------------------------------------------------------------- reductions


def _axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis


@_op
def sum(x, axis=None, keepdims=False):  # noqa: A001 - Keras's name
    return jnp.sum(jnp.asarray(x), axis=_axis(axis), keepdims=keepdims)


@_op
def prod(x, axis=None, keepdims=False, dtype=None):
    return jnp.prod(jnp.asarray(x), axis=_axis(axis), keepdims=keepdims, dtype=_dtype(dtype))


@_op
def mean(x, axis=None, keepdims=False):
    x = jnp.asarray(x)
    # Low-precision floats are averaged in float32 (no overflow) and cast back.
    compute = jnp.promote_types(x.dtype, jnp.float32)
    out = jnp.mean(x, axis=_axis(axis), keepdims=keepdims, dtype=compute)
    return out if not jnp.issubdtype(x.dtype, jnp.floating) else out.astype(x.dtype)


@_op
def var(x, axis=None, keepdims=False):
    x = jnp.asarray(x)
    out = jnp.var(x, axis=_axis(axis), keepdims=keepdims,
                  dtype=jnp.promote_types(x.dtype, jnp.float32))
    return out.astype(_floating(x).dtype)


@_op
def std(x, axis=None, keepdims=False):
    return jnp.std(jnp.asarray(x), axis=_axis(axis), keepdims=keepdims)


@_op
def max(x, axis=None, keepdims=False, initial=None):  # noqa: A001 - Keras's name
    return jnp.max(jnp.asarray(x), axis=_axis(axis), keepdims=keepdims, initial=initial)


@_op
def min(x, axis=None, keepdims=False, initial=None):  # noqa: A001 - Keras's name
    return jnp.min(jnp.asarray(x), axis=_axis(axis), keepdims=keepdims, initial=initial)


@_op
def any(x, axis=None, keepdims=False):  # noqa: A001 - Keras's name
    return jnp.any(jnp.asarray(x), axis=_axis(axis), keepdims=keepdims)


@_op
def all(x, axis=None, keepdims=False):  # noqa: A001 - Keras's name
    return jnp.all(jnp.asarray(x), axis=_axis(axis), keepdims=keepdims)


def _no_negative_zero(x):
    # XLA on CPU flushes -0.0 in arg-reductions; Keras maps it to -tiny so ties break alike.
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    return jnp.where((x == 0.0) & jnp.signbit(x), -jnp.finfo(x.dtype).tiny, x)


@_op
def argmax(x, axis=None, keepdims=False):
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating) and x.ndim:
        x = _no_negative_zero(x)
    return jnp.argmax(x, axis=axis, keepdims=keepdims)


@_op
def argmin(x, axis=None, keepdims=False):
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating) and x.ndim:
        x = _no_negative_zero(x)
    return jnp.argmin(x, axis=axis, keepdims=keepdims)


@_op
def cumsum(x, axis=None, dtype=None):
    return jnp.cumsum(x, axis=axis, dtype=_dtype(dtype))


@_op
def cumprod(x, axis=None, dtype=None):
    return jnp.cumprod(x, axis=axis, dtype=_dtype(dtype))


@_op
def average(x, axis=None, weights=None):
    x = jnp.asarray(x)
    dtype = _floating(x).dtype
    if weights is not None:
        weights = jnp.asarray(weights)
        dtype = jnp.promote_types(dtype, _floating(weights).dtype)
        weights = weights.astype(dtype)
    return jnp.average(x.astype(dtype), axis=axis, weights=weights)


@_op
def logsumexp(x, axis=None, keepdims=False):
    return jax.scipy.special.logsumexp(x, axis=_axis(axis), keepdims=keepdims)


@_op
def norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002 - Keras's name
    return jnp.linalg.norm(_floating(x), ord=ord, axis=_axis(axis), keepdims=keepdims)


@_op
def top_k(x, k, sorted=True):  # noqa: A002 - Keras's name
    return lax.top_k(x, k)


@_op
def moments(x, axes, keepdims=False, synchronized=False):
    if synchronized:
        raise NotImplementedError("moments(synchronized=True) needs a distributed backend")
    x = jnp.asarray(x)
    low = x.dtype in (jnp.float16, jnp.bfloat16)
    y = x.astype(jnp.float32) if low else x
    axes = _axis(axes)
    m = jnp.mean(y, axes, keepdims=True)
    v = jnp.var(y, axis=axes, keepdims=True)
    if not keepdims:
        m, v = jnp.squeeze(m, axes), jnp.squeeze(v, axes)
    if low:
        big = jnp.finfo(jnp.float16).max
        m, v = (jnp.clip(t, -big, big).astype(x.dtype) for t in (m, v))
    return m, v


# ----------------------------------------------------------------------------- shapes


@_op
def reshape(x, newshape):
    return jnp.reshape(x, newshape)


@_op
def transpose(x, axes=None):
    return jnp.transpose(x, axes)


@_op
def expand_dims(x, axis):
    return jnp.expand_dims(x, _axis(axis))


@_op
def squeeze(x, axis=None):
    return jnp.squeeze(x, _axis(axis))


@_op
def tile(x, repeats):
    return jnp.tile(x, repeats)


@_op
def repeat(x, repeats, axis=None):
    return jnp.repeat(x, repeats, axis=axis)


@_op
def broadcast_to(x, shape):
    return jnp.broadcast_to(x, shape)


@_op
def swapaxes(x, axis1, axis2):
    return jnp.swapaxes(x, axis1, axis2)


@_op
def moveaxis(x, source, destination):
    return jnp.moveaxis(x, _axis(source), _axis(destination))


@_op
def ravel(x):
    return jnp.ravel(x)


@_op
def concatenate(xs, axis=0):
    return jnp.concatenate(xs, axis=axis)


@_op
def stack(x, axis=0):
    return jnp.stack(x, axis=axis)


@_op
def split(x, indices_or_sections, axis=0):
    return jnp.split(x, indices_or_sections, axis=axis)


@_op
def flip(x, axis=None):
    return jnp.flip(x, _axis(axis))


@_op
def pad(x, pad_width, mode="constant", constant_values=None):
    if constant_values is not None and mode != "constant":
        raise ValueError(f"constant_values needs mode='constant', got mode={mode!r}")
    extra = {} if constant_values is None else {"constant_values": constant_values}
    return jnp.pad(x, pad_width, mode=mode, **extra)


@_op
def triu(x, k=0):
    return jnp.triu(x, k)


@_op
def tril(x, k=0):
    return jnp.tril(x, k)


@_op
def take(x, indices, axis=None):
    return jnp.take(x, jnp.asarray(indices), axis=axis)


@_op
def take_along_axis(x, indices, axis=None):
    return jnp.take_along_axis(x, jnp.asarray(indices), axis=axis)


@_op
def sort(x, axis=-1):
    return jnp.sort(x, axis=axis)


@_op
def argsort(x, axis=-1):
    return jnp.argsort(x, axis=axis).astype(jnp.int32)


# ----------------------------------------------------------------------------- linear algebra


@_op
def matmul(x1, x2):
    return jnp.matmul(x1, x2)


@_op
def dot(x1, x2):
    return jnp.dot(x1, x2)


@_op
def einsum(subscripts, *operands, **kwargs):
    return jnp.einsum(subscripts, *operands, **kwargs)


@_op
def outer(x1, x2):
    return jnp.outer(x1, x2)


# ----------------------------------------------------------------------------- nn


@_op
def relu(x):
    return jax.nn.relu(x)


@_op
def relu6(x):
    return jax.nn.relu6(x)


@_op
def sigmoid(x):
    return jax.nn.sigmoid(_floating(x))


@_op
def softplus(x):
    return jax.nn.softplus(_floating(x))


@_op
def silu(x):
    return jax.nn.silu(_floating(x))


@_op
def gelu(x, approximate=True):
    return jax.nn.gelu(_floating(x), approximate)


@_op
def elu(x, alpha=1.0):
    return jax.nn.elu(_floating(x), alpha)


@_op
def leaky_relu(x, negative_slope=0.2):
    return jax.nn.leaky_relu(_floating(x), negative_slope)


def _softmax_axis(x, axis):
    return tuple(range(jnp.ndim(x))) if axis is None else _axis(axis)


@_op
def softmax(x, axis=-1):
    return jax.nn.softmax(_floating(x), axis=_softmax_axis(x, axis))


@_op
def log_softmax(x, axis=-1):
    return jax.nn.log_softmax(_floating(x), axis=_softmax_axis(x, axis))


@_op
def one_hot(x, num_classes, axis=-1, dtype=None, sparse=False):
    if sparse:
        raise ValueError("sparse=True is not supported by jaxgraph")
    return jax.nn.one_hot(x, num_classes, axis=axis, dtype=_dtype(dtype) or jnp.float32)


__all__ = sorted([*OPS, "shape", "ndim", "convert_to_numpy"])

"""Merge layers: combine a list of tensors (Add, Concatenate, ...) and their helpers."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ..graph.tensor import is_symbolic
from .base import Layer


def _broadcast_shape(name, shapes):
    rank = max(len(s) for s in shapes)
    out = []
    for axis in range(rank):
        dims = [s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ValueError(
                f"Layer {name!r} cannot merge inputs with incompatible shapes {list(shapes)}"
            )
        if known:
            out.append(known.pop())
        elif any(d is None for d in dims):
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def _input_masks(xs, mask):
    """One mask (or None) per input, whatever form `mask` came in."""
    if mask is None:
        return [None] * len(xs)
    if not isinstance(mask, (list, tuple)):
        raise ValueError(f"A merge layer's mask must be a list (one per input), got {mask!r}")
    if len(mask) != len(xs):
        raise ValueError(
            f"A merge layer got {len(xs)} inputs but {len(mask)} masks"
        )
    return list(mask)


def _features_mask(mask, x):
    """Keras's `broadcast_to(expand_dims(mask, -1), shape(x))`: a steps mask over x."""
    return jnp.broadcast_to(jnp.expand_dims(jnp.asarray(mask, bool), -1), x.shape)


def _masked_op(op, xs, masks):
    """Keras 3's `Merge._apply_merge_op_and_or_mask` (Maximum, Minimum): a masked entry
    takes the other operand's value, so padding never wins over real data."""
    output = output_mask = None
    for x, mask in zip(xs, masks):
        if mask is not None:
            mask = _features_mask(mask, x)
        if output is None:
            output, output_mask = x, mask
            continue
        if mask is not None:
            x = jnp.where(mask, x, output)
        if output_mask is not None:
            output = jnp.where(output_mask, output, x)
        if mask is not None and output_mask is not None:
            output_mask = jnp.logical_or(output_mask, mask)
        else:
            output_mask = None
        output = op(output, x)
    return output


class _Merge(Layer):
    """Element-wise merge of two or more tensors of (broadcast-)compatible shapes."""

    min_inputs = 2

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def _check(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or not input_shape or not isinstance(
                input_shape[0], (list, tuple)):
            raise ValueError(
                f"Layer {self.name!r} ({type(self).__name__}) must be called on a list of "
                f"tensors, got a single input of shape {input_shape}"
            )
        if len(input_shape) < self.min_inputs:
            raise ValueError(
                f"Layer {self.name!r} ({type(self).__name__}) needs at least {self.min_inputs} "
                f"inputs, got {len(input_shape)}"
            )

    def build(self, input_shape):
        self._check(input_shape)

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        return _broadcast_shape(self.name, input_shape)

    def _merge(self, xs):
        raise NotImplementedError

    def call(self, w, inputs):
        return self._merge(list(inputs))

    def _default_output_dtype(self, first):
        """The promoted dtype of the inputs (float inputs run in the compute dtype), as
        the merge itself computes it: `add([int32, float32])` is float32."""
        leaves = jax.tree_util.tree_leaves(first, is_leaf=is_symbolic)
        compute = jnp.dtype(self.compute_dtype)
        structs = []
        for t in leaves:
            dtype = jnp.dtype(t.dtype)
            if jnp.issubdtype(dtype, jnp.floating):
                dtype = compute
            structs.append(jax.ShapeDtypeStruct((1,) * len(t.shape), dtype))
        out = jax.eval_shape(lambda *xs: self._merge(list(xs)), *structs)
        return jnp.dtype(out.dtype).name

    def compute_mask(self, inputs, mask=None):
        """Keras 3: the OR of the inputs' masks, and no mask if any input has none."""
        if mask is None:
            return None
        masks = _input_masks(inputs, mask)
        if any(m is None for m in masks):
            return None
        return functools.reduce(jnp.logical_or, [jnp.asarray(m, bool) for m in masks])


class Add(_Merge):
    def _merge(self, xs):
        return functools.reduce(jnp.add, xs)


class Subtract(_Merge):
    def _check(self, input_shape):
        super()._check(input_shape)
        if len(input_shape) != 2:
            raise ValueError(
                f"Layer {self.name!r} (Subtract) needs exactly 2 inputs, got {len(input_shape)}"
            )

    def _merge(self, xs):
        return xs[0] - xs[1]


class Multiply(_Merge):
    def _merge(self, xs):
        return functools.reduce(jnp.multiply, xs)

    def call(self, w, inputs, mask=None):
        """As Keras 3: masked entries count as 1 in the product; where every input is
        masked (all inputs carry a mask) the output is 0."""
        xs = list(inputs)
        masks = _input_masks(xs, mask)
        if all(m is None for m in masks):
            return self._merge(xs)
        has_output_mask = all(m is not None for m in masks)
        output = output_mask = None
        for x, m in zip(xs, masks):
            if m is not None:
                m = _features_mask(m, x)
                x = jnp.where(m, x, jnp.ones((), x.dtype))
                if has_output_mask:
                    output_mask = m if output_mask is None else jnp.logical_or(output_mask, m)
            output = x if output is None else output * x
        if has_output_mask:
            output = jnp.where(output_mask, output, jnp.zeros((), output.dtype))
        return output


class Average(_Merge):
    def _merge(self, xs):
        return functools.reduce(jnp.add, xs) / len(xs)


class Maximum(_Merge):
    """Element-wise max; as Keras 3, a masked entry takes the other inputs' value."""

    def _merge(self, xs):
        return functools.reduce(jnp.maximum, xs)

    def call(self, w, inputs, mask=None):
        xs = list(inputs)
        return _masked_op(jnp.maximum, xs, _input_masks(xs, mask))


class Minimum(_Merge):
    """Element-wise min; as Keras 3, a masked entry takes the other inputs' value."""

    def _merge(self, xs):
        return functools.reduce(jnp.minimum, xs)

    def call(self, w, inputs, mask=None):
        xs = list(inputs)
        return _masked_op(jnp.minimum, xs, _input_masks(xs, mask))


class Concatenate(_Merge):
    """Concatenate along `axis`; every other dimension must agree."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        rank = len(input_shape[0])
        if any(len(s) != rank for s in input_shape):
            raise ValueError(
                f"Layer {self.name!r} (Concatenate) needs inputs of equal rank, got "
                f"{list(input_shape)}"
            )
        axis = self.axis % rank
        out = []
        for i in range(rank):
            dims = [s[i] for s in input_shape]
            if i == axis:
                out.append(None if any(d is None for d in dims) else sum(dims))
                continue
            known = {d for d in dims if d is not None}
            if len(known) > 1 and i != 0:
                raise ValueError(
                    f"Layer {self.name!r} (Concatenate) requires inputs with matching shapes "
                    f"except for the concatenation axis {self.axis}. Received: "
                    f"input_shape={list(input_shape)}"
                )
            out.append(known.pop() if known else None)
        return tuple(out)

    def _merge(self, xs):
        return jnp.concatenate(xs, axis=self.axis)

    def compute_mask(self, inputs, mask=None):
        """Keras 3: each mask expanded to its input's shape (an unmasked input counts as
        all ones), concatenated along `axis`, then `any` over the last axis."""
        if mask is None:
            return None
        masks = _input_masks(inputs, mask)
        if all(m is None for m in masks):
            return None
        full = []
        for x, m in zip(inputs, masks):
            if m is None:
                full.append(jnp.ones(x.shape, bool))
            else:
                m = jnp.asarray(m, bool)
                if m.ndim < x.ndim:
                    m = jnp.logical_or(jnp.expand_dims(m, -1), jnp.zeros(x.shape, bool))
                full.append(m)
        return jnp.any(jnp.concatenate(full, axis=self.axis), axis=-1)


class Dot(_Merge):
    """Dot product of two tensors along `axes` (optionally cosine-normalized)."""

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        self.axes = axes if isinstance(axes, int) else tuple(axes)
        self.normalize = normalize

    def _axes(self, ranks):
        axes = (self.axes, self.axes) if isinstance(self.axes, int) else self.axes
        return tuple(a % r for a, r in zip(axes, ranks))

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        a, b = input_shape
        ax_a, ax_b = self._axes((len(a), len(b)))
        if a[ax_a] is not None and b[ax_b] is not None and a[ax_a] != b[ax_b]:
            raise ValueError(
                f"Layer {self.name!r} (Dot): dimension mismatch on axes {self.axes}: "
                f"{a} vs {b}"
            )
        out = [d for i, d in enumerate(a) if i != ax_a] + [
            d for i, d in enumerate(b) if i not in (0, ax_b)]
        if len(out) == 1:
            out.append(1)
        return tuple(out)

    def compute_mask(self, inputs, mask=None):
        return None  # as Keras 3: a dot product drops the masks

    def _merge(self, xs):
        a, b = xs
        ax_a, ax_b = self._axes((a.ndim, b.ndim))
        if self.normalize:
            a = a / jnp.maximum(jnp.linalg.norm(a, axis=ax_a, keepdims=True), 1e-12)
            b = b / jnp.maximum(jnp.linalg.norm(b, axis=ax_b, keepdims=True), 1e-12)
        return _batch_dot(a, b, ax_a, ax_b)


def _batch_dot(a, b, ax_a, ax_b):
    """Contract a's axis ax_a with b's axis ax_b, keeping the shared batch axis 0."""
    a_labels = list(range(a.ndim))
    b_labels = [0] + [a.ndim + i for i in range(1, b.ndim)]
    b_labels[ax_b] = a_labels[ax_a]
    out = [i for i in a_labels if i != ax_a] + [i for i in b_labels[1:] if i != a_labels[ax_a]]
    y = jnp.einsum(a, a_labels, b, b_labels, out)
    return y[:, None] if y.ndim == 1 else y


def _helper(cls):
    def merge(inputs, **kwargs):
        return cls(**kwargs)(inputs)

    merge.__name__ = cls.__name__.lower()
    merge.__doc__ = f"Functional shortcut: `{cls.__name__}(**kwargs)(inputs)`."
    return merge


add = _helper(Add)
subtract = _helper(Subtract)
multiply = _helper(Multiply)
average = _helper(Average)
maximum = _helper(Maximum)
minimum = _helper(Minimum)


def concatenate(inputs, axis=-1, **kwargs):
    """Functional shortcut: `Concatenate(axis)(inputs)`."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs, axes, normalize=False, **kwargs):
    """Functional shortcut: `Dot(axes, normalize)(inputs)`."""
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)

"""Merge layers: combine a list of tensors (Add, Concatenate, ...) and their helpers."""

from __future__ import annotations

import functools

import jax.numpy as jnp

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

    def compute_mask(self, inputs, mask=None):
        if mask is None or all(m is None for m in mask):
            return None
        masks = [m for m in mask if m is not None]
        return functools.reduce(jnp.logical_and, masks)


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


class Average(_Merge):
    def _merge(self, xs):
        return functools.reduce(jnp.add, xs) / len(xs)


class Maximum(_Merge):
    def _merge(self, xs):
        return functools.reduce(jnp.maximum, xs)


class Minimum(_Merge):
    def _merge(self, xs):
        return functools.reduce(jnp.minimum, xs)


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
        if mask is None or all(m is None for m in mask):
            return None
        rank = inputs[0].ndim
        if self.axis % rank == rank - 1:  # features: the timestep masks are the same
            return super().compute_mask(inputs, mask)
        full = [jnp.ones(x.shape[:-1], bool) if m is None else m for x, m in zip(inputs, mask)]
        return jnp.concatenate(full, axis=self.axis)


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

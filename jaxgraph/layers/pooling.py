"""Pooling: windowed max/average (1D-3D) and global max/average (1D-3D).

Windowed pooling is one `lax.reduce_window`. Average pooling with padding='same'
divides each window by the number of real (unpadded) elements in it, as Keras does.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from .base import InputSpec, Layer
from .conv import (
    conv_output_length,
    normalize_data_format,
    normalize_padding,
    normalize_tuple,
    spatial_axes,
)


def _lowest(dtype):
    """The identity of `max` for this dtype, as a Python scalar: lax only recognises
    (and differentiates) the max/add window reductions when the init value is one."""
    if jnp.issubdtype(dtype, jnp.floating):
        return -float("inf")
    if jnp.issubdtype(dtype, jnp.integer):
        return int(jnp.iinfo(dtype).min)
    return False


def _as_float(x, dtype):
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(dtype)


# ------------------------------------------------------------------ windowed pooling


class _Pooling(Layer):
    rank = 2
    _reduce = "max"

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        owner = f"{type(self).__name__} {self.name!r}"
        self.pool_size = normalize_tuple(pool_size, self.rank, "pool_size", owner)
        self.strides = (
            self.pool_size if strides is None
            else normalize_tuple(strides, self.rank, "strides", owner)
        )
        self.padding = normalize_padding(padding, owner)
        self.data_format = normalize_data_format(data_format, owner)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def _window(self, values):
        """Put the per-spatial-axis `values` into a full-rank tuple (1 for batch/channels)."""
        full = [1] * (self.rank + 2)
        for axis, v in zip(spatial_axes(self.rank, self.data_format), values):
            full[axis] = v
        return tuple(full)

    def _reduce_window(self, x, init, op):
        return lax.reduce_window(
            x, init, op, self._window(self.pool_size), self._window(self.strides),
            self.padding.upper(),
        )

    def call(self, w, x):
        if self._reduce == "max":
            return self._reduce_window(x, _lowest(x.dtype), lax.max)
        x = _as_float(x, self.compute_dtype)
        sums = self._reduce_window(x, 0.0, lax.add)
        if self.padding == "valid":
            count = 1
            for p in self.pool_size:
                count *= p
            return sums / jnp.array(count, x.dtype)
        # Count the real elements of each window: a reduction over ones of the spatial shape.
        spatial_shape = [1] * x.ndim
        for axis in spatial_axes(self.rank, self.data_format):
            spatial_shape[axis] = x.shape[axis]
        counts = self._reduce_window(jnp.ones(spatial_shape, x.dtype), 0.0, lax.add)
        return sums / counts

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        for i, axis in enumerate(spatial_axes(self.rank, self.data_format)):
            n = conv_output_length(shape[axis], self.pool_size[i], self.strides[i], self.padding)
            if n is not None and n <= 0:
                raise ValueError(
                    f"{type(self).__name__} {self.name!r}: pool_size={self.pool_size} does not "
                    f"fit input shape {tuple(input_shape)} with padding={self.padding!r}"
                )
            shape[axis] = n
        return tuple(shape)


class MaxPooling1D(_Pooling):
    rank, _reduce = 1, "max"

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class MaxPooling2D(_Pooling):
    rank, _reduce = 2, "max"

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class MaxPooling3D(_Pooling):
    rank, _reduce = 3, "max"

    def __init__(self, pool_size=(2, 2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


# Keras 3 requires pool_size for average pooling; Keras 2 defaulted it like max pooling,
# so the Keras 2 default is kept: code written for either runs.


class AveragePooling1D(_Pooling):
    rank, _reduce = 1, "avg"

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class AveragePooling2D(_Pooling):
    rank, _reduce = 2, "avg"

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class AveragePooling3D(_Pooling):
    rank, _reduce = 3, "avg"

    def __init__(self, pool_size=(2, 2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


# ------------------------------------------------------------------ global pooling


class _GlobalPooling(Layer):
    rank = 2
    _reduce = "max"

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = normalize_data_format(data_format, f"{type(self).__name__} "
                                                 f"{self.name!r}")
        self.keepdims = bool(keepdims)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def _axes(self):
        return spatial_axes(self.rank, self.data_format)

    def call(self, w, x):
        if self._reduce == "max":
            return jnp.max(x, axis=self._axes(), keepdims=self.keepdims)
        x = _as_float(x, self.compute_dtype)
        return jnp.mean(x, axis=self._axes(), keepdims=self.keepdims)

    def compute_output_shape(self, input_shape):
        axes = self._axes()
        if self.keepdims:
            return tuple(1 if i in axes else d for i, d in enumerate(input_shape))
        return tuple(d for i, d in enumerate(input_shape) if i not in axes)


class _GlobalPooling1D(_GlobalPooling):
    """Global pooling over steps; it accepts a mask and consumes it (no output mask)."""

    rank = 1

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(data_format, keepdims, **kwargs)
        self.supports_masking = True

    def _expand_mask(self, mask, x):
        return jnp.expand_dims(mask.astype(bool), 2 if self.data_format == "channels_last" else 1)

    def compute_mask(self, inputs, mask=None):
        return None


class GlobalMaxPooling1D(_GlobalPooling1D):
    """Max over all steps. As in Keras 3 an incoming mask does not change the result
    (padded steps take part in the max); the mask is consumed, not propagated."""

    _reduce = "max"


class GlobalAveragePooling1D(_GlobalPooling1D):
    """Mean over the unmasked steps (as Keras: a fully masked sample gives NaN)."""

    _reduce = "avg"

    def call(self, w, x, mask=None):
        if mask is None:
            return super().call(w, x)
        x = _as_float(x, self.compute_dtype)
        keep = self._expand_mask(mask, x)
        axis = self._axes()
        total = jnp.sum(jnp.where(keep, x, jnp.zeros_like(x)), axis=axis, keepdims=self.keepdims)
        count = jnp.sum(keep.astype(x.dtype), axis=axis, keepdims=self.keepdims)
        return total / count


class GlobalMaxPooling2D(_GlobalPooling):
    rank, _reduce = 2, "max"


class GlobalMaxPooling3D(_GlobalPooling):
    rank, _reduce = 3, "max"


class GlobalAveragePooling2D(_GlobalPooling):
    rank, _reduce = 2, "avg"


class GlobalAveragePooling3D(_GlobalPooling):
    rank, _reduce = 3, "avg"


# Keras's alternative spellings.
MaxPool1D = MaxPooling1D
MaxPool2D = MaxPooling2D
MaxPool3D = MaxPooling3D
AvgPool1D = AveragePooling1D
AvgPool2D = AveragePooling2D
AvgPool3D = AveragePooling3D
GlobalMaxPool1D = GlobalMaxPooling1D
GlobalMaxPool2D = GlobalMaxPooling2D
GlobalMaxPool3D = GlobalMaxPooling3D
GlobalAvgPool1D = GlobalAveragePooling1D
GlobalAvgPool2D = GlobalAveragePooling2D
GlobalAvgPool3D = GlobalAveragePooling3D

__all__ = [
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
    "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "MaxPool1D", "MaxPool2D", "MaxPool3D", "AvgPool1D", "AvgPool2D", "AvgPool3D",
    "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D",
    "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalAvgPool3D",
]

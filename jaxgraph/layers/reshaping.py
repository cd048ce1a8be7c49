"""Spatial reshaping: ZeroPadding, Cropping and UpSampling in 1D, 2D and 3D.

(Flatten, Reshape, Permute and RepeatVector live in core.py.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .base import InputSpec, Layer
from .conv import normalize_data_format, normalize_tuple, spatial_axes

_RESIZE_METHODS = ("nearest", "bilinear", "bicubic", "lanczos3", "lanczos5")


def _pairs(value, n: int, arg: str, owner: str) -> tuple:
    """Keras's forms: int (same everywhere), n ints (symmetric per axis), n (lo, hi) pairs."""
    if isinstance(value, int) and not isinstance(value, bool):
        pair = normalize_tuple(value, 2, arg, owner, allow_zero=True)
        return (pair,) * n
    try:
        items = list(value)
    except TypeError:
        raise ValueError(f"{owner}: invalid `{arg}` {value!r}") from None
    if len(items) != n:
        raise ValueError(
            f"{owner}: `{arg}` must be an int, {n} ints or {n} (before, after) pairs; "
            f"got {value!r}"
        )
    return tuple(normalize_tuple(v, 2, arg, owner, allow_zero=True) for v in items)


class _SpatialLayer(Layer):
    """Common pieces: a rank, a data format and a full-rank input spec."""

    rank = 2

    def _setup_format(self, data_format):
        self.data_format = normalize_data_format(data_format, self._owner())
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def _owner(self):
        return f"{type(self).__name__} {self.name!r}"

    def _axes(self):
        return spatial_axes(self.rank, self.data_format)

    def _map_spatial(self, input_shape, fn):
        shape = list(input_shape)
        for i, axis in enumerate(self._axes()):
            shape[axis] = None if shape[axis] is None else fn(shape[axis], i)
        return tuple(shape)


# ------------------------------------------------------------------ zero padding


class _ZeroPadding(_SpatialLayer):
    def _set_padding(self, padding):
        self.padding = _pairs(padding, self.rank, "padding", self._owner())

    def call(self, w, x):
        widths = [(0, 0)] * x.ndim
        for axis, pair in zip(self._axes(), self.padding):
            widths[axis] = pair
        return jnp.pad(x, widths)

    def compute_output_shape(self, input_shape):
        return self._map_spatial(input_shape, lambda n, i: n + sum(self.padding[i]))


class ZeroPadding1D(_ZeroPadding):
    """Pads the steps axis; `padding` is an int or (before, after)."""

    rank = 1

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self._setup_format(data_format)
        self.padding = (normalize_tuple(padding, 2, "padding", self._owner(), allow_zero=True),)


class ZeroPadding2D(_ZeroPadding):
    rank = 2

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self._setup_format(data_format)
        self._set_padding(padding)


class ZeroPadding3D(_ZeroPadding):
    rank = 3

    def __init__(self, padding=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self._setup_format(data_format)
        self._set_padding(padding)


# ------------------------------------------------------------------ cropping


class _Cropping(_SpatialLayer):
    def _set_cropping(self, cropping):
        self.cropping = _pairs(cropping, self.rank, "cropping", self._owner())

    def _cropped(self, n, i):
        out = n - sum(self.cropping[i])
        if out <= 0:
            raise ValueError(
                f"{self._owner()}: cropping {self.cropping} removes all of spatial axis {i} "
                f"(size {n})"
            )
        return out

    def call(self, w, x):
        index = [slice(None)] * x.ndim
        for i, axis in enumerate(self._axes()):
            lo, hi = self.cropping[i]
            index[axis] = slice(lo, x.shape[axis] - hi)
        return x[tuple(index)]

    def compute_output_shape(self, input_shape):
        return self._map_spatial(input_shape, self._cropped)


class Cropping1D(_Cropping):
    """Crops the steps axis (axis 1); `cropping` is an int or (before, after)."""

    rank = 1

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(**kwargs)
        self._setup_format(None)
        self.cropping = (normalize_tuple(cropping, 2, "cropping", self._owner(),
                                         allow_zero=True),)


class Cropping2D(_Cropping):
    rank = 2

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self._setup_format(data_format)
        self._set_cropping(cropping)


class Cropping3D(_Cropping):
    rank = 3

    def __init__(self, cropping=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self._setup_format(data_format)
        self._set_cropping(cropping)


# ------------------------------------------------------------------ up-sampling


class _UpSampling(_SpatialLayer):
    interpolation = "nearest"

    def _set_size(self, size):
        self.size = normalize_tuple(size, self.rank, "size", self._owner())

    def call(self, w, x):
        axes = self._axes()
        if self.interpolation == "nearest":
            for axis, factor in zip(axes, self.size):
                if factor != 1:
                    x = jnp.repeat(x, factor, axis=axis)
            return x
        shape = list(x.shape)
        for axis, factor in zip(axes, self.size):
            shape[axis] *= factor
        x = x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(self.compute_dtype)
        # Only spatial axes change size, so jax.image.resize leaves batch and channels alone.
        return jax.image.resize(x, tuple(shape), method=self.interpolation, antialias=False)

    def compute_output_shape(self, input_shape):
        return self._map_spatial(input_shape, lambda n, i: n * self.size[i])


class UpSampling1D(_UpSampling):
    """Repeats each step `size` times."""

    rank = 1

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        self._setup_format(None)
        self._set_size(size)


class UpSampling2D(_UpSampling):
    """Scales height and width by `size`, by repetition or by image interpolation."""

    rank = 2

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self._setup_format(data_format)
        self._set_size(size)
        method = str(interpolation).lower()
        if method not in _RESIZE_METHODS:
            raise ValueError(
                f"{self._owner()}: interpolation must be one of {_RESIZE_METHODS}, "
                f"got {interpolation!r}"
            )
        self.interpolation = method


class UpSampling3D(_UpSampling):
    rank = 3

    def __init__(self, size=(2, 2, 2), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self._setup_format(data_format)
        self._set_size(size)


__all__ = [
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
    "Cropping1D", "Cropping2D", "Cropping3D",
    "UpSampling1D", "UpSampling2D", "UpSampling3D",
]

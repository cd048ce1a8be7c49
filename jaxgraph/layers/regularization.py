"""Noise layers: SpatialDropout1D/2D/3D, GaussianNoise, GaussianDropout, AlphaDropout.

All are the identity at inference and draw their randomness from the `rng` key handed
to `apply` / `fit` when training; `seed` is accepted so Keras code and configs load.
Their `rate` (GaussianNoise: `stddev`) may be a traced array handed to `call` (see
`Layer.traced_attributes`), so a population varies it per member in one program.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ..random import flat_draw
from .base import InputSpec, Layer
from .core import Dropout, drop, is_static

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _check_rate(rate, owner):
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ValueError(f"{owner}: rate must be a float in [0, 1], got {rate!r}")
    return float(rate)


class _SpatialDropout(Dropout):
    """Dropout of whole feature maps: one draw per (sample, channel)."""

    _rank = 3

    def __init__(self, rate, data_format=None, seed=None, **kwargs):
        super().__init__(_check_rate(rate, type(self).__name__), seed=seed, **kwargs)
        data_format = data_format or "channels_last"
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"{type(self).__name__} {self.name!r}: data_format must be "
                             f"'channels_last' or 'channels_first', got {data_format!r}")
        self.data_format = data_format
        self.input_spec = InputSpec(ndim=self._rank)

    def needs_rng(self) -> bool:
        return self.rate > 0

    def _map_shape(self, x):
        ones = (1,) * (x.ndim - 2)
        if self.data_format == "channels_first":
            return (x.shape[0], x.shape[1]) + ones
        return (x.shape[0],) + ones + (x.shape[-1],)

    def call(self, w, x, training=False, rng=None, rate=None):
        if not training or rng is None:
            return x
        return drop(x, rng, self.rate if rate is None else rate, self._map_shape(x))

    def compute_output_shape(self, input_shape):
        return input_shape


class SpatialDropout1D(_SpatialDropout):
    """Drops entire channels of (batch, steps, channels) inputs."""

    _rank = 3

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(rate, data_format="channels_last", seed=seed, **kwargs)


class SpatialDropout2D(_SpatialDropout):
    """Drops entire 2D feature maps."""

    _rank = 4

    def __init__(self, rate, data_format=None, seed=None, **kwargs):
        super().__init__(rate, data_format=data_format, seed=seed, **kwargs)


class SpatialDropout3D(_SpatialDropout):
    """Drops entire 3D feature maps."""

    _rank = 5

    def __init__(self, rate, data_format=None, seed=None, **kwargs):
        super().__init__(rate, data_format=data_format, seed=seed, **kwargs)


class GaussianNoise(Layer):
    """Adds zero-mean Gaussian noise of standard deviation `stddev` when training."""

    traced_attributes = ("stddev",)

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(stddev, bool) or not isinstance(stddev, (int, float)) \
                or not 0 <= stddev <= 1:
            raise ValueError(f"GaussianNoise {self.name!r}: stddev must be a float in [0, 1] "
                             f"(as in Keras), got {stddev!r}")
        self.stddev = float(stddev)
        self.seed = seed
        self.supports_masking = True

    def needs_rng(self) -> bool:
        return self.stddev > 0

    def call(self, w, x, training=False, rng=None, stddev=None):
        stddev = self.stddev if stddev is None else stddev
        if not training or rng is None or (is_static(stddev) and stddev == 0):
            return x
        if not is_static(stddev):
            stddev = jnp.asarray(stddev, x.dtype)
        return x + stddev * flat_draw(jax.random.normal, rng, x.shape, dtype=x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


class GaussianDropout(Layer):
    """Multiplies by Gaussian noise of mean 1 and variance rate / (1 - rate) when training.

    rate=1 outputs zeros (the variance is infinite).
    """

    traced_attributes = ("rate",)

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _check_rate(rate, f"GaussianDropout {self.name!r}")
        self.seed = seed
        self.supports_masking = True

    def needs_rng(self) -> bool:
        return self.rate > 0

    def call(self, w, x, training=False, rng=None, rate=None):
        rate = self.rate if rate is None else rate
        if not training or rng is None:
            return x
        if is_static(rate):
            if rate == 0:
                return x
            if rate == 1:
                return jnp.zeros_like(x)
            stddev = math.sqrt(rate / (1.0 - rate))
            return x * (1.0 + stddev * flat_draw(jax.random.normal, rng, x.shape,
                                                 dtype=x.dtype))
        rate = jnp.asarray(rate, jnp.float32)
        below = rate < 1
        safe = jnp.where(below, rate, 0.0)  # keeps the masked-out branch finite
        stddev = jnp.sqrt(safe / (1.0 - safe)).astype(x.dtype)
        noisy = x * (1.0 + stddev * flat_draw(jax.random.normal, rng, x.shape, dtype=x.dtype))
        return jnp.where(below, noisy, jnp.zeros_like(x))

    def compute_output_shape(self, input_shape):
        return input_shape


class AlphaDropout(Layer):
    """Dropout for selu networks: dropped units go to selu's negative saturation, then an
    affine correction restores the inputs' mean and variance (Klambauer et al., 2017).
    rate=1 outputs zeros (the correction is unbounded).
    """

    traced_attributes = ("rate",)

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _check_rate(rate, f"AlphaDropout {self.name!r}")
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.seed = seed
        self.supports_masking = True

    def needs_rng(self) -> bool:
        return self.rate > 0

    def _noise_shape(self, x):
        if self.noise_shape is None:
            return x.shape
        return tuple(x.shape[i] if d is None else d for i, d in enumerate(self.noise_shape))

    def call(self, w, x, training=False, rng=None, rate=None):
        rate = self.rate if rate is None else rate
        if not training or rng is None:
            return x
        static = is_static(rate)
        if static and rate == 0:
            return x
        if static and rate == 1:
            return jnp.zeros_like(x)
        below = True
        if not static:
            rate = jnp.asarray(rate, jnp.float32)
            below = rate < 1
            rate = jnp.where(below, rate, 0.0)  # keeps the masked-out branch finite
        alpha_p = -_SELU_ALPHA * _SELU_SCALE
        kept = flat_draw(jax.random.uniform, rng, self._noise_shape(x)) >= rate
        kept = kept.astype(x.dtype)
        a = ((1.0 - rate) * (1.0 + rate * alpha_p**2)) ** -0.5
        b = -a * alpha_p * rate
        if not static:
            a, b = jnp.asarray(a, x.dtype), jnp.asarray(b, x.dtype)
        out = a * (x * kept + alpha_p * (1.0 - kept)) + b
        return out if static else jnp.where(below, out, jnp.zeros_like(x))

    def compute_output_shape(self, input_shape):
        return input_shape

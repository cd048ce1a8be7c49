"""Normalization layers: BatchNormalization, LayerNormalization, GroupNormalization,
UnitNormalization.

Statistics are computed in float32 whatever the compute dtype (as Keras does), and the
normalization is written `x * inv + (beta - mean * inv)` like Keras's JAX backend so
results agree to float rounding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import constraints, initializers, regularizers
from .base import InputSpec, Layer

_BACKEND_EPSILON = 1e-7  # Keras's backend.epsilon(), used in masked moments


def _stat_dtype(x):
    return jnp.promote_types(x.dtype, jnp.float32)


def _output_dtype(layer, x):
    """Keras casts floating inputs to the layer's compute dtype: a float16 array given to
    a float32 layer comes out float32 (as the symbolic output says)."""
    return layer.compute_dtype if jnp.issubdtype(x.dtype, jnp.floating) else x.dtype


def _normalize(x, mean, variance, gamma, beta, epsilon):
    inv = jax.lax.rsqrt(variance + epsilon)
    if gamma is not None:
        inv = inv * gamma
    res = -mean * inv
    if beta is not None:
        res = res + beta
    return x * inv + res


def _axis_in_range(axis, rank, owner):
    if not -rank <= axis < rank:
        raise ValueError(f"{owner}: axis {axis} is out of bounds for an input of rank {rank}")
    return axis % rank


class _SqrtInitializer:
    """sqrt of another initializer: renorm's standard deviations start at sqrt(variance)."""

    def __init__(self, base):
        self.base = base

    def __call__(self, key, shape, dtype=jnp.float32):
        return jnp.sqrt(self.base(key, shape, dtype))


class BatchNormalization(Layer):
    """Normalizes with batch statistics when training, moving averages otherwise.

    The moving mean and variance live in the variables' `state`; `apply(training=True)`
    returns their updated values. A frozen layer (`trainable=False`) always runs in
    inference mode, as in Keras. `synchronized` is accepted for Keras compatibility:
    under `jax.jit` with sharded batches the statistics are already global.
    """

    training_by_default = None  # Keras's `call(training=None)`: follows the call context

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, renorm=False, renorm_clipping=None,
                 renorm_momentum=0.99, synchronized=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            if len(axis) != 1:
                raise ValueError(f"BatchNormalization {self.name!r}: axis must be an int, "
                                 f"got {axis!r}")
            axis = axis[0]
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.synchronized = bool(synchronized)
        self.renorm = bool(renorm)
        clipping = dict(renorm_clipping or {})
        if self.renorm:
            unknown = set(clipping) - {"rmax", "rmin", "dmax"}
            if unknown:
                raise ValueError(f"BatchNormalization {self.name!r}: unknown renorm_clipping "
                                 f"keys {sorted(unknown)}; expected rmax, rmin, dmax")
            rmax, rmin, dmax = clipping.get("rmax"), clipping.get("rmin"), clipping.get("dmax")
            if rmax is not None and rmin is not None and rmax < rmin:
                raise ValueError(f"BatchNormalization {self.name!r}: renorm_clipping rmax "
                                 f"({rmax}) must be >= rmin ({rmin})")
            if dmax is not None and dmax < 0:
                raise ValueError(f"BatchNormalization {self.name!r}: renorm_clipping dmax "
                                 f"must be non-negative, got {dmax}")
        self.renorm_clipping = clipping
        self.renorm_momentum = float(renorm_momentum)
        self.supports_masking = True

    def build(self, input_shape):
        rank = len(input_shape)
        axis = _axis_in_range(self.axis, rank, f"BatchNormalization {self.name!r}")
        dim = input_shape[axis]
        if dim is None:
            raise ValueError(f"BatchNormalization {self.name!r}: axis {self.axis} of input "
                             f"shape {input_shape} must be known")
        shape = (dim,)
        if self.scale:
            self.add_weight("gamma", shape, self.gamma_initializer,
                            regularizer=self.gamma_regularizer, constraint=self.gamma_constraint)
        if self.center:
            self.add_weight("beta", shape, self.beta_initializer,
                            regularizer=self.beta_regularizer, constraint=self.beta_constraint)
        self.add_weight("moving_mean", shape, self.moving_mean_initializer, trainable=False)
        self.add_weight("moving_variance", shape, self.moving_variance_initializer,
                        trainable=False)
        if self.renorm:
            self.add_weight("moving_stddev", shape,
                            _SqrtInitializer(self.moving_variance_initializer), trainable=False)
            self.add_weight("renorm_mean", shape, self.moving_mean_initializer, trainable=False)
            self.add_weight("renorm_stddev", shape,
                            _SqrtInitializer(self.moving_variance_initializer), trainable=False)
        self.input_spec = InputSpec(ndim=rank, axes={self.axis: dim})

    def needs_rng(self) -> bool:
        return False

    def _moments(self, x, mask, axes):
        if mask is None:
            return jnp.mean(x, axis=axes), jnp.var(x, axis=axes)
        if mask.ndim != x.ndim - 1:
            raise ValueError(
                f"BatchNormalization {self.name!r}: the mask must have one dimension less "
                f"than the inputs; got mask {mask.shape} for inputs {x.shape}"
            )
        weights = jnp.broadcast_to(mask[..., None], x.shape).astype(bool)
        count = jnp.sum(weights.astype(x.dtype), axis=axes, keepdims=True)
        mean = jnp.sum(jnp.where(weights, x, 0.0), axis=axes, keepdims=True) / (
            count + _BACKEND_EPSILON)
        diff = jnp.where(weights, x - mean, 0.0)
        var = jnp.sum(jnp.square(diff), axis=axes, keepdims=True) / (count + _BACKEND_EPSILON)
        return jnp.squeeze(mean, axes), jnp.squeeze(var, axes)

    def forward(self, w, inputs, training=False, rng=None, mask=None, **kwargs):
        x = inputs
        out_dtype = _output_dtype(self, x)
        dtype = _stat_dtype(x)
        x = x.astype(dtype)
        axis = self.axis % x.ndim
        axes = tuple(i for i in range(x.ndim) if i != axis)
        bshape = [1] * x.ndim
        bshape[axis] = x.shape[axis]

        def bcast(v):
            return None if v is None else v.astype(dtype).reshape(bshape)

        gamma = w.get("gamma") if self.scale else None
        beta = w.get("beta") if self.center else None
        moving_mean = w["moving_mean"].astype(dtype)
        moving_var = w["moving_variance"].astype(dtype)
        updates = {}
        if training and self.trainable:
            mean, var = self._moments(x, mask, axes)
            if self.renorm:
                gamma, beta, updates = self._renorm(w, mean, var, gamma, beta, dtype)
            else:
                m = self.momentum
                updates = {"moving_mean": moving_mean * m + mean * (1.0 - m),
                           "moving_variance": moving_var * m + var * (1.0 - m)}
        else:
            mean, var = moving_mean, moving_var
        out = _normalize(x, bcast(mean), bcast(var), bcast(gamma), bcast(beta), self.epsilon)
        return out.astype(out_dtype), updates

    def _renorm(self, w, mean, var, gamma, beta, dtype):
        """Batch renormalization (Ioffe, 2017): scale and shift corrected toward moving stats."""
        stddev = jnp.sqrt(var + self.epsilon)
        renorm_mean = w["renorm_mean"].astype(dtype)
        renorm_stddev_raw = w["renorm_stddev"].astype(dtype)
        renorm_stddev = jnp.maximum(renorm_stddev_raw, jnp.sqrt(jnp.asarray(self.epsilon, dtype)))
        r = stddev / renorm_stddev
        d = (mean - renorm_mean) / renorm_stddev
        clip = self.renorm_clipping
        if clip.get("rmin") is not None:
            r = jnp.maximum(r, clip["rmin"])
        if clip.get("rmax") is not None:
            r = jnp.minimum(r, clip["rmax"])
        if clip.get("dmax") is not None:
            d = jnp.clip(d, -clip["dmax"], clip["dmax"])
        r = jax.lax.stop_gradient(r)
        d = jax.lax.stop_gradient(d)
        if gamma is not None:
            gamma = gamma.astype(dtype)
            new_gamma, new_beta = r * gamma, d * gamma
        else:
            new_gamma, new_beta = r, d
        if beta is not None:
            new_beta = new_beta + beta.astype(dtype)
        rm, m = self.renorm_momentum, self.momentum
        moving_stddev = w["moving_stddev"].astype(dtype) * m + stddev * (1.0 - m)
        updates = {
            "renorm_mean": renorm_mean * rm + mean * (1.0 - rm),
            "renorm_stddev": renorm_stddev_raw * rm + stddev * (1.0 - rm),
            "moving_mean": w["moving_mean"].astype(dtype) * m + mean * (1.0 - m),
            "moving_stddev": moving_stddev,
            "moving_variance": jax.nn.relu(moving_stddev * moving_stddev - self.epsilon),
        }
        return new_gamma, new_beta, updates

    def compute_output_shape(self, input_shape):
        _axis_in_range(self.axis, len(input_shape), f"BatchNormalization {self.name!r}")
        return input_shape


class LayerNormalization(Layer):
    """Normalizes each sample over `axis` (an int or a list of axes)."""

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            self.axis = [int(a) for a in axis]
        elif isinstance(axis, int):
            self.axis = axis
        else:
            raise TypeError(f"LayerNormalization {self.name!r}: axis must be an int or a list "
                            f"of ints, got {axis!r}")
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.rms_scaling = bool(rms_scaling)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.supports_masking = True

    def _axes(self, rank):
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        owner = f"LayerNormalization {self.name!r}"
        return sorted(_axis_in_range(a, rank, owner) for a in axes)

    def build(self, input_shape):
        axes = self._axes(len(input_shape))
        shape = tuple(input_shape[a] for a in axes)
        if any(d is None for d in shape):
            raise ValueError(f"LayerNormalization {self.name!r}: the normalized axes of input "
                             f"shape {input_shape} must be known")
        if self.scale or self.rms_scaling:
            self.add_weight("gamma", shape, self.gamma_initializer,
                            regularizer=self.gamma_regularizer, constraint=self.gamma_constraint)
        if self.center and not self.rms_scaling:
            self.add_weight("beta", shape, self.beta_initializer,
                            regularizer=self.beta_regularizer, constraint=self.beta_constraint)
        self.input_spec = InputSpec(ndim=len(input_shape),
                                    axes={a: input_shape[a] for a in axes})

    def call(self, w, x):
        out_dtype = _output_dtype(self, x)
        dtype = _stat_dtype(x)
        x = x.astype(dtype)
        axes = tuple(self._axes(x.ndim))
        bshape = [1] * x.ndim
        for a in axes:
            bshape[a] = x.shape[a]

        def bcast(name):
            return w[name].astype(dtype).reshape(bshape) if name in w else None

        variance = jnp.var(x, axis=axes, keepdims=True)
        if self.rms_scaling:  # Keras's (deprecated) variant: scales by the variance only
            out = x * jax.lax.rsqrt(variance + self.epsilon)
            gamma = bcast("gamma")
            out = out if gamma is None else out * gamma
        else:
            mean = jnp.mean(x, axis=axes, keepdims=True)
            out = _normalize(x, mean, variance, bcast("gamma"), bcast("beta"), self.epsilon)
        return out.astype(out_dtype)

    def compute_output_shape(self, input_shape):
        self._axes(len(input_shape))
        return input_shape


class GroupNormalization(Layer):
    """Normalizes each sample over groups of channels; `groups=-1` is instance norm."""

    def __init__(self, groups=32, axis=-1, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(groups, bool) or not isinstance(groups, int) or (
                groups <= 0 and groups != -1):
            raise ValueError(f"GroupNormalization {self.name!r}: groups must be a positive int "
                             f"or -1, got {groups!r}")
        self.groups = groups
        self.axis = int(axis)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.supports_masking = True
        self._groups = None if groups == -1 else groups

    def build(self, input_shape):
        owner = f"GroupNormalization {self.name!r}"
        axis = _axis_in_range(self.axis, len(input_shape), owner)
        dim = input_shape[axis]
        if dim is None:
            raise ValueError(f"{owner}: axis {self.axis} of input shape {input_shape} must be "
                             "known")
        groups = dim if self.groups == -1 else self.groups
        if dim < groups:
            raise ValueError(f"{owner}: number of groups ({groups}) cannot be more than the "
                             f"number of channels ({dim})")
        if dim % groups:
            raise ValueError(f"{owner}: the number of channels ({dim}) must be a multiple of "
                             f"the number of groups ({groups})")
        self._groups = groups
        if self.scale:
            self.add_weight("gamma", (dim,), self.gamma_initializer,
                            regularizer=self.gamma_regularizer, constraint=self.gamma_constraint)
        if self.center:
            self.add_weight("beta", (dim,), self.beta_initializer,
                            regularizer=self.beta_regularizer, constraint=self.beta_constraint)
        self.input_spec = InputSpec(ndim=len(input_shape), axes={self.axis: dim})

    def call(self, w, x):
        out_dtype = _output_dtype(self, x)
        dtype = _stat_dtype(x)
        x = x.astype(dtype)
        axis = self.axis % x.ndim
        groups = self._groups
        channels = x.shape[axis]
        grouped_shape = x.shape[:axis] + (groups, channels // groups) + x.shape[axis + 1:]
        xg = x.reshape(grouped_shape)
        axes = tuple(i for i in range(1, xg.ndim) if i != axis)
        mean = jnp.mean(xg, axis=axes, keepdims=True)
        variance = jnp.var(xg, axis=axes, keepdims=True)
        bshape = [1] * xg.ndim
        bshape[axis], bshape[axis + 1] = groups, channels // groups

        def bcast(name):
            return w[name].astype(dtype).reshape(bshape) if name in w else None

        out = _normalize(xg, mean, variance, bcast("gamma"), bcast("beta"), self.epsilon)
        return out.reshape(x.shape).astype(out_dtype)

    def compute_output_shape(self, input_shape):
        _axis_in_range(self.axis, len(input_shape), f"GroupNormalization {self.name!r}")
        return input_shape


class UnitNormalization(Layer):
    """Scales each sample to unit L2 norm over `axis` (norms below 1e-12 are floored)."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            self.axis = [int(a) for a in axis]
        elif isinstance(axis, int):
            self.axis = axis
        else:
            raise TypeError(f"UnitNormalization {self.name!r}: axis must be an int or a list "
                            f"of ints, got {axis!r}")
        self.supports_masking = True

    def _axes(self, rank):
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        return tuple(_axis_in_range(a, rank, f"UnitNormalization {self.name!r}") for a in axes)

    def call(self, w, x):
        square_sum = jnp.sum(jnp.square(x), axis=self._axes(x.ndim), keepdims=True)
        return x * jnp.minimum(jax.lax.rsqrt(square_sum), 1e12)

    def compute_output_shape(self, input_shape):
        self._axes(len(input_shape))
        return input_shape

"""Weight initializers with Keras 3 names, defaults, fan rules and configs.

Every initializer is a pure callable ``init(key, shape, dtype=jnp.float32)``: all
randomness comes from the JAX PRNG ``key`` so the same key always gives the same
weights. ``seed`` is accepted and kept only so Keras configs load unchanged.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from ._registry import Configurable, Registry

# Std of a unit normal truncated to [-2, 2]; dividing by it restores the wanted variance.
_TRUNCATED_STD = 0.87962566103423978


def _shape(shape):
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of ints, got {shape!r}") from None
    if not all(isinstance(d, (int, np.integer)) and d >= 0 for d in shape):
        raise ValueError(f"shape must hold non-negative ints, got {shape!r}")
    return tuple(int(d) for d in shape)


def _float_dtype(dtype):
    dtype = jnp.dtype(jnp.float32 if dtype is None else dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"random initializers need a floating dtype, got {dtype}")
    return dtype


def _draw(key, shape, dtype, distribution, loc, scale):
    """loc + scale * (a unit sample); compiled once per shape, dtype and distribution."""
    # Drawn flat and reshaped: XLA:CPU compiles rank >= 3 threefry draws far slower.
    flat = (math.prod(shape),)
    if distribution == "normal":
        unit = jax.random.normal(key, flat, dtype)
    elif distribution == "truncated_normal":
        unit = jax.random.truncated_normal(key, -2.0, 2.0, flat, dtype)
    else:  # uniform on [-1, 1)
        unit = jax.random.uniform(key, flat, dtype, -1.0, 1.0)
    return (loc + scale * unit).astype(dtype).reshape(shape)


_draw = jax.jit(_draw, static_argnames=("shape", "dtype", "distribution"))


def _sample(key, shape, dtype, distribution, loc=0.0, scale=1.0):
    dtype = _float_dtype(dtype)
    return _draw(key, _shape(shape), dtype, distribution, loc, scale)


def compute_fans(shape, input_axes=None, output_axes=None):
    """(fan_in, fan_out) of a weight shape, by Keras's rules (conv kernels end in in, out)."""
    shape = _shape(shape)
    if input_axes is not None and output_axes is not None:
        return (math.prod(shape[a] for a in input_axes),
                math.prod(shape[a] for a in output_axes))
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


class Initializer(Configurable):
    """Base class: subclasses implement ``__call__(key, shape, dtype)``."""

    def __call__(self, key, shape, dtype=jnp.float32):
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")


class Zeros(Initializer):
    """All zeros (the Keras default for biases)."""

    def __call__(self, key, shape, dtype=jnp.float32):
        return jnp.zeros(_shape(shape), dtype)


class Ones(Initializer):
    """All ones (the Keras default for BatchNormalization gamma)."""

    def __call__(self, key, shape, dtype=jnp.float32):
        return jnp.ones(_shape(shape), dtype)


class Constant(Initializer):
    """Every entry equal to one scalar ``value``."""

    def __init__(self, value=0.0):
        if np.ndim(value) != 0:
            raise ValueError(f"Constant takes a scalar value, got shape {np.shape(value)}")
        self.value = value.item() if hasattr(value, "item") else value

    def __call__(self, key, shape, dtype=jnp.float32):
        return jnp.full(_shape(shape), self.value, dtype)

    def get_config(self):
        return {"value": self.value}


class _Seeded(Initializer):
    """Shared ``seed`` bookkeeping; randomness itself comes from the call's key."""

    def __init__(self, seed=None):
        if seed is not None and not isinstance(seed, (int, dict)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.seed = seed

    def get_config(self):
        return {"seed": self.seed}


class RandomNormal(_Seeded):
    """Normal samples with the given mean and stddev."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = mean, stddev

    def __call__(self, key, shape, dtype=jnp.float32):
        return _sample(key, shape, dtype, "normal", self.mean, self.stddev)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class TruncatedNormal(RandomNormal):
    """Normal samples redrawn beyond 2 stddevs (stddev is before truncation, as Keras)."""

    def __call__(self, key, shape, dtype=jnp.float32):
        return _sample(key, shape, dtype, "truncated_normal", self.mean, self.stddev)


class RandomUniform(_Seeded):
    """Uniform samples in [minval, maxval)."""

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval, self.maxval = minval, maxval

    def __call__(self, key, shape, dtype=jnp.float32):
        half_width = (self.maxval - self.minval) / 2.0
        return _sample(key, shape, dtype, "uniform", self.minval + half_width, half_width)

    def get_config(self):
        return {**super().get_config(), "minval": self.minval, "maxval": self.maxval}


class VarianceScaling(_Seeded):
    """Samples whose variance is ``scale / fan``, the family behind Glorot, He and LeCun."""

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None,
                 input_axes=None, output_axes=None):
        super().__init__(seed)
        if not scale > 0:
            raise ValueError(f"VarianceScaling scale must be positive, got {scale}")
        if mode not in self._MODES:
            raise ValueError(f"VarianceScaling mode must be one of {self._MODES}, got {mode!r}")
        distribution = str(distribution).lower()
        distribution = "truncated_normal" if distribution == "normal" else distribution
        if distribution not in self._DISTRIBUTIONS:
            raise ValueError(f"VarianceScaling distribution must be one of "
                             f"{self._DISTRIBUTIONS}, got {distribution!r}")
        self.scale, self.mode, self.distribution = scale, mode, distribution
        self.input_axes, self.output_axes = input_axes, output_axes

    def __call__(self, key, shape, dtype=jnp.float32):
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}
        variance = self.scale / max(1.0, fan[self.mode])
        if self.distribution == "truncated_normal":
            std = math.sqrt(variance) / _TRUNCATED_STD
            return _sample(key, shape, dtype, "truncated_normal", 0.0, std)
        if self.distribution == "untruncated_normal":
            return _sample(key, shape, dtype, "normal", 0.0, math.sqrt(variance))
        return _sample(key, shape, dtype, "uniform", 0.0, math.sqrt(3.0 * variance))

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "mode": self.mode,
                "distribution": self.distribution, "input_axes": self.input_axes,
                "output_axes": self.output_axes}


class _Preset(VarianceScaling):
    """A VarianceScaling whose scale, mode and distribution are fixed by the subclass."""

    _PRESET = (1.0, "fan_in", "truncated_normal")  # scale, mode, distribution

    def __init__(self, seed=None, input_axes=None, output_axes=None):
        super().__init__(*self._PRESET, seed=seed, input_axes=input_axes,
                         output_axes=output_axes)

    def get_config(self):
        return {"seed": self.seed, "input_axes": self.input_axes,
                "output_axes": self.output_axes}


class GlorotUniform(_Preset):
    """Uniform with limit sqrt(6 / (fan_in + fan_out)); the Keras kernel default."""

    _PRESET = (1.0, "fan_avg", "uniform")  # scale, mode, distribution


class GlorotNormal(_Preset):
    """Truncated normal with stddev sqrt(2 / (fan_in + fan_out))."""

    _PRESET = (1.0, "fan_avg", "truncated_normal")  # scale, mode, distribution


class HeNormal(_Preset):
    """Truncated normal with stddev sqrt(2 / fan_in), suited to relu."""

    _PRESET = (2.0, "fan_in", "truncated_normal")  # scale, mode, distribution


class HeUniform(_Preset):
    """Uniform with limit sqrt(6 / fan_in)."""

    _PRESET = (2.0, "fan_in", "uniform")  # scale, mode, distribution


class LecunNormal(_Preset):
    """Truncated normal with stddev sqrt(1 / fan_in), suited to selu."""

    _PRESET = (1.0, "fan_in", "truncated_normal")  # scale, mode, distribution


class LecunUniform(_Preset):
    """Uniform with limit sqrt(3 / fan_in)."""

    _PRESET = (1.0, "fan_in", "uniform")  # scale, mode, distribution


def _orthogonal(key, shape, dtype, gain):
    rows, cols = math.prod(shape[:-1]), shape[-1]
    work = jnp.promote_types(dtype, jnp.float32)  # QR is unsupported in half precision
    a = jax.random.normal(key, (max(rows, cols), min(rows, cols)), work)
    q, r = jnp.linalg.qr(a)
    q = q * jnp.sign(jnp.diag(r))  # makes the distribution uniform over rotations
    if rows < cols:
        q = q.T
    return (gain * q.reshape(shape)).astype(dtype)


_orthogonal = jax.jit(_orthogonal, static_argnames=("shape", "dtype"))


class Orthogonal(_Seeded):
    """Orthogonal matrix (over the flattened leading dims) times ``gain``; for recurrences."""

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        self.gain = gain

    def __call__(self, key, shape, dtype=jnp.float32):
        shape, dtype = _shape(shape), _float_dtype(dtype)
        if len(shape) < 2:
            raise ValueError(f"Orthogonal needs a shape of rank >= 2, got {shape}")
        return _orthogonal(key, shape, dtype, self.gain)

    def get_config(self):
        return {**super().get_config(), "gain": self.gain}


class Identity(Initializer):
    """``gain`` times the (possibly rectangular) identity matrix; 2D shapes only."""

    def __init__(self, gain=1.0):
        self.gain = gain

    def __call__(self, key, shape, dtype=jnp.float32):
        shape = _shape(shape)
        if len(shape) != 2:
            raise ValueError(f"Identity only builds 2D matrices, got shape {shape}")
        return (self.gain * jnp.eye(*shape, dtype=dtype)).astype(dtype)

    def get_config(self):
        return {"gain": self.gain}


_REGISTRY = Registry("initializer", "jaxgraph.initializers")
register = _REGISTRY.register
serialize = _REGISTRY.serialize


def get(identifier):
    """Resolve None, a name, a {'class_name', 'config'} dict, a class or a callable."""
    return None if identifier is None else _REGISTRY.get(identifier)


for _cls, _names in [
    (Zeros, ("zeros", "zero")), (Ones, ("ones", "one")), (Constant, ("constant",)),
    (RandomNormal, ("random_normal", "normal")), (RandomUniform, ("random_uniform", "uniform")),
    (TruncatedNormal, ("truncated_normal",)), (VarianceScaling, ("variance_scaling",)),
    (GlorotUniform, ("glorot_uniform",)), (GlorotNormal, ("glorot_normal",)),
    (HeNormal, ("he_normal",)), (HeUniform, ("he_uniform",)),
    (LecunNormal, ("lecun_normal",)), (LecunUniform, ("lecun_uniform",)),
    (Orthogonal, ("orthogonal", "OrthogonalInitializer")),
    (Identity, ("identity", "IdentityInitializer")),
]:
    _REGISTRY.add_builtin(_cls, _cls.__name__, *_names)

# Keras's lowercase spellings, usable as constructors: initializers.glorot_uniform(seed=1).
zeros, ones, constant = Zeros, Ones, Constant
random_normal, random_uniform, truncated_normal = RandomNormal, RandomUniform, TruncatedNormal
variance_scaling, orthogonal, identity = VarianceScaling, Orthogonal, Identity
glorot_uniform, glorot_normal = GlorotUniform, GlorotNormal
he_normal, he_uniform, lecun_normal, lecun_uniform = HeNormal, HeUniform, LecunNormal, LecunUniform

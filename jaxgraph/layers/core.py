"""Core layers: Dense, Activation, Dropout, Flatten, Reshape, Embedding, Lambda, ..."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .. import activations, constraints, initializers, regularizers
from ..random import flat_draw
from .base import InputSpec, Layer
from .serialization import function_name, resolve_function


def _prod(dims):
    return None if any(d is None for d in dims) else int(math.prod(dims))


class Dense(Layer):
    """`activation(x @ kernel + bias)` on the last axis; kernel is (in, out) as in Keras."""

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if not isinstance(units, int) or units <= 0:
            raise ValueError(f"Dense {self.name!r}: units must be a positive int, got {units!r}")
        self.units = units
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.supports_masking = True
        self.input_spec = InputSpec(min_ndim=2)

    def build(self, input_shape):
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError(
                f"Dense {self.name!r} needs a known last dimension, got input shape {input_shape}"
            )
        self.add_weight("kernel", (in_dim, self.units), self.kernel_initializer,
                        regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer,
                            regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        self.input_spec = InputSpec(min_ndim=2, axes={-1: in_dim})

    def call(self, w, x):
        y = jnp.matmul(x, w["kernel"])
        if self.use_bias:
            y = y + w["bias"]
        return self.activation(y)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)


class Activation(Layer):
    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)
        self.supports_masking = True

    def call(self, w, x):
        return self.activation(x)

    def compute_output_shape(self, input_shape):
        return input_shape


class Identity(Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, w, x):
        return x

    def compute_output_shape(self, input_shape):
        return input_shape


def is_static(value) -> bool:
    """Whether a rate is a Python number (its special cases fold at trace time)."""
    return isinstance(value, (int, float))


def drop(x, rng, rate, noise_shape):
    """Inverted dropout of `x` at `rate`, one Bernoulli draw per element of `noise_shape`.

    A Python `rate` compiles its own program (0 is the identity); a traced `rate` (a
    population's per-member array) is one program for every value in [0, 1].
    """
    if is_static(rate):
        if rate == 0:
            return x
        if rate == 1:
            return jnp.zeros_like(x)
        keep = flat_draw(jax.random.bernoulli, rng, noise_shape, p=1.0 - rate)
        return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))
    keep_prob = 1.0 - jnp.asarray(rate, jnp.float32)
    keep = flat_draw(jax.random.bernoulli, rng, noise_shape, p=keep_prob)
    # At rate 1 nothing is kept; the safe divisor keeps the gradient finite there.
    scale = jnp.where(keep_prob > 0, keep_prob, 1.0).astype(x.dtype)
    return jnp.where(keep, x / scale, jnp.zeros_like(x))


class Dropout(Layer):
    """Zeroes a fraction `rate` of inputs when training; the key comes from `apply(rng=)`.

    `rate` may be overridden per call by a traced array (`traced_attributes`), which is
    how a population trains members with different rates in one program.
    """

    traced_attributes = ("rate",)

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate <= 1:
            raise ValueError(f"Dropout {self.name!r}: rate must be in [0, 1], got {rate}")
        self.rate = float(rate)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.seed = seed
        self.supports_masking = True

    def _noise_shape(self, x):
        if self.noise_shape is None:
            return x.shape
        return tuple(x.shape[i] if d is None else d for i, d in enumerate(self.noise_shape))

    def call(self, w, x, training=False, rng=None, rate=None):
        if not training or rng is None:
            return x
        return drop(x, rng, self.rate if rate is None else rate, self._noise_shape(x))

    def compute_output_shape(self, input_shape):
        return input_shape


class Flatten(Layer):
    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = data_format or "channels_last"
        self.input_spec = InputSpec(min_ndim=1)  # as Keras: one tensor, not a list

    def call(self, w, x):
        if self.data_format == "channels_first" and x.ndim > 2:
            x = jnp.moveaxis(x, 1, -1)
        return x.reshape(x.shape[0], -1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], _prod(input_shape[1:]))


class Reshape(Layer):
    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(target_shape)
        if sum(1 for d in self.target_shape if d == -1) > 1:
            raise ValueError(f"Reshape {self.name!r}: at most one -1 in {self.target_shape}")

    def _resolve(self, input_shape):
        total = _prod(input_shape[1:])
        known = _prod([d for d in self.target_shape if d != -1])
        if -1 not in self.target_shape:
            if total is not None and total != known:
                raise ValueError(
                    f"Reshape {self.name!r}: cannot reshape input of shape {input_shape} "
                    f"({total} values per sample) to {self.target_shape} ({known})"
                )
            return self.target_shape
        if total is None:
            return tuple(None if d == -1 else d for d in self.target_shape)
        if known == 0 or total % known:
            raise ValueError(
                f"Reshape {self.name!r}: cannot reshape input of shape {input_shape} "
                f"to {self.target_shape}"
            )
        return tuple(total // known if d == -1 else d for d in self.target_shape)

    def call(self, w, x):
        return x.reshape((x.shape[0],) + self.target_shape)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self._resolve(input_shape)


class Permute(Layer):
    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        self.dims = tuple(dims)
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ValueError(
                f"Permute {self.name!r}: dims must be a permutation of 1..{len(self.dims)}, "
                f"got {self.dims}"
            )

    def call(self, w, x):
        return jnp.transpose(x, (0,) + self.dims)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(input_shape[d] for d in self.dims)


class RepeatVector(Layer):
    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        self.n = int(n)
        self.input_spec = InputSpec(ndim=2)

    def call(self, w, x):
        return jnp.repeat(x[:, None, :], self.n, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n, input_shape[1])


class Embedding(Layer):
    """Integer indices -> dense vectors; `mask_zero=True` masks index 0 downstream."""

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 embeddings_regularizer=None, embeddings_constraint=None, mask_zero=False,
                 input_length=None, activity_regularizer=None, **kwargs):
        if input_length is not None and "input_shape" not in kwargs:
            kwargs["input_shape"] = (input_length,)
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.embeddings_constraint = constraints.get(embeddings_constraint)
        self.mask_zero = bool(mask_zero)
        self.input_length = input_length
        self._declared_input_dtype = "int32"
        self.input_spec = InputSpec(min_ndim=1)  # one tensor of indices, not a list

    def build(self, input_shape):
        self.add_weight("embeddings", (self.input_dim, self.output_dim),
                        self.embeddings_initializer, regularizer=self.embeddings_regularizer,
                        constraint=self.embeddings_constraint)

    def call(self, w, x):
        if not jnp.issubdtype(x.dtype, jnp.integer):
            x = x.astype(jnp.int32)
        return jnp.take(w["embeddings"], x, axis=0)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return inputs != 0

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)


class Masking(Layer):
    """Masks timesteps whose features all equal `mask_value`."""

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = mask_value
        self.supports_masking = True

    def call(self, w, x):
        keep = jnp.any(x != self.mask_value, axis=-1, keepdims=True)
        return x * keep.astype(x.dtype)

    def compute_mask(self, inputs, mask=None):
        return jnp.any(inputs != self.mask_value, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape


class ActivityRegularization(Layer):
    def __init__(self, l1=0.0, l2=0.0, **kwargs):
        super().__init__(activity_regularizer=regularizers.L1L2(l1=l1, l2=l2), **kwargs)
        self.l1, self.l2 = l1, l2
        self.supports_masking = True

    def call(self, w, x):
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2, "name": self.name, "trainable": self.trainable}


class Lambda(Layer):
    """Wraps any jnp function; its output shape is found with `jax.eval_shape`.

    Saving a Lambda stores the function by name: a function registered with
    `@jaxgraph.saving.register_serializable()`, a pure array function of `jax.numpy`,
    `jax.nn`, `jax.lax`, `jax.scipy.special` or `jaxgraph.activations`, or a
    module-level function, which loading then needs in `custom_objects` (by its
    name). Anonymous lambdas cannot be saved, and loading never imports a module or
    executes code named by a file.
    """

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(function, str):
            function = resolve_function(function, owner=self.name)
        if not callable(function):
            raise TypeError(f"Lambda {self.name!r}: function must be callable, got {function!r}")
        self.function = function
        self.output_shape_arg = output_shape
        self.mask = mask
        self.arguments = dict(arguments or {})
        self.supports_masking = mask is not None

    def call(self, w, inputs):
        return self.function(inputs, **self.arguments)

    def compute_mask(self, inputs, mask=None):
        if callable(self.mask):
            return self.mask(inputs, mask)
        return self.mask

    def get_config(self):
        return {"function": function_name(self.function, self.name),
                "arguments": self.arguments, "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if isinstance(config.get("function"), str):
            config["function"] = resolve_function(config["function"], custom_objects,
                                                  owner=config.get("name"))
        return cls(**config)



class ReLU(Layer):
    """Keras's ReLU layer: `max_value`, `negative_slope` and `threshold`."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        self.max_value = max_value
        self.negative_slope = negative_slope
        self.threshold = threshold
        self.supports_masking = True

    def call(self, w, x):
        return activations.relu(x, negative_slope=self.negative_slope,
                                max_value=self.max_value, threshold=self.threshold)

    def compute_output_shape(self, input_shape):
        return input_shape


class LeakyReLU(Layer):
    def __init__(self, negative_slope=0.3, **kwargs):
        alpha = kwargs.pop("alpha", None)  # the Keras 2 spelling
        super().__init__(**kwargs)
        self.negative_slope = alpha if alpha is not None else negative_slope
        self.supports_masking = True

    def call(self, w, x):
        return jnp.where(x >= 0, x, self.negative_slope * x)

    def compute_output_shape(self, input_shape):
        return input_shape


class ELU(Layer):
    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = alpha
        self.supports_masking = True

    def call(self, w, x):
        return activations.elu(x, alpha=self.alpha)

    def compute_output_shape(self, input_shape):
        return input_shape


class Softmax(Layer):
    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis
        self.supports_masking = True

    def call(self, w, x, mask=None):
        if mask is not None:
            x = jnp.where(mask[..., None] if mask.ndim < x.ndim else mask, x, -1e9)
        return jax.nn.softmax(x, axis=self.axis)

    def compute_output_shape(self, input_shape):
        return input_shape


class PReLU(Layer):
    """Leaky ReLU with a learned slope per unit (`shared_axes` share it)."""

    def __init__(self, alpha_initializer="zeros", alpha_regularizer=None, alpha_constraint=None,
                 shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        self.alpha_constraint = constraints.get(alpha_constraint)
        self.shared_axes = None if shared_axes is None else (
            [shared_axes] if isinstance(shared_axes, int) else list(shared_axes))
        self.supports_masking = True

    def build(self, input_shape):
        shape = list(input_shape[1:])
        for axis in self.shared_axes or []:
            shape[axis - 1] = 1
        self.add_weight("alpha", tuple(shape), self.alpha_initializer,
                        regularizer=self.alpha_regularizer, constraint=self.alpha_constraint)

    def call(self, w, x):
        return jnp.maximum(x, 0) + w["alpha"] * jnp.minimum(x, 0)

    def compute_output_shape(self, input_shape):
        return input_shape

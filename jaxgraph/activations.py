"""Activation functions with Keras 3 names, keyword arguments and defaults.

Plain jax.numpy functions, so they are pure and work under jit, grad and vmap.
A function's ``__name__`` is its serialized name, as in Keras layer configs.
"""

import jax
import jax.numpy as jnp

from ._registry import Registry


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """Keras's generalized relu: x above ``threshold`` (capped at ``max_value``), else a
    leak of ``negative_slope * (x - threshold)``."""
    x = jnp.asarray(x)
    if negative_slope == 0.0 and max_value is None and threshold == 0.0:
        # max(x, 0): XLA fuses it into the neighbouring matmul, a select it does not.
        return jax.nn.relu(x)
    out = jnp.where(x > threshold, x, jnp.zeros((), x.dtype))
    if max_value is not None:
        out = jnp.clip(out, 0, max_value)
    if negative_slope != 0.0:
        out = out - negative_slope * jax.nn.relu(threshold - x)
    return out


def relu6(x):
    return jax.nn.relu6(x)


def leaky_relu(x, negative_slope=0.2):
    return jax.nn.leaky_relu(x, negative_slope=negative_slope)


def elu(x, alpha=1.0):
    return jax.nn.elu(x, alpha=alpha)


def celu(x, alpha=1.0):
    return jax.nn.celu(x, alpha=alpha)


def selu(x):
    """Self-normalizing elu; pair with the lecun_normal initializer."""
    return jax.nn.selu(x)


def gelu(x, approximate=False):
    """Exact erf form by default, as Keras 3 (jax.nn defaults to the tanh approximation)."""
    return jax.nn.gelu(x, approximate=approximate)


def sigmoid(x):
    return jax.nn.sigmoid(x)


def hard_sigmoid(x):
    """Keras 3 definition relu6(x + 3) / 6 (Keras 2 used a slope of 0.2)."""
    return jax.nn.hard_sigmoid(x)


def hard_silu(x):
    return jax.nn.hard_silu(x)


def silu(x):
    return jax.nn.silu(x)


def softmax(x, axis=-1):
    return jax.nn.softmax(x, axis=axis)


def log_softmax(x, axis=-1):
    return jax.nn.log_softmax(x, axis=axis)


def softplus(x):
    return jax.nn.softplus(x)


def softsign(x):
    return jax.nn.soft_sign(x)


def tanh(x):
    return jnp.tanh(x)


def exponential(x):
    return jnp.exp(x)


def mish(x):
    return x * jnp.tanh(jax.nn.softplus(x))


def linear(x):
    """Identity; what ``activation=None`` means."""
    return x


def log_sigmoid(x):
    return jax.nn.log_sigmoid(x)


def hard_tanh(x):
    return jax.nn.hard_tanh(x)


def tanh_shrink(x):
    return x - jnp.tanh(x)


def soft_shrink(x, threshold=0.5):
    return jnp.where(x > threshold, x - threshold, jnp.where(x < -threshold, x + threshold, 0.0))


def hard_shrink(x, threshold=0.5):
    return jnp.where(jnp.abs(x) > threshold, x, 0.0)


def squareplus(x, b=4):
    return jax.nn.squareplus(x, b=b)


def sparse_plus(x):
    return jax.nn.sparse_plus(x)


def sparse_sigmoid(x):
    return jax.nn.sparse_sigmoid(x)


def glu(x, axis=-1):
    """Gated linear unit: first half of ``axis`` times sigmoid of the second half."""
    x = jnp.asarray(x)
    if x.shape[axis] % 2:
        raise ValueError(f"glu splits axis {axis} in two; its size {x.shape[axis]} is odd")
    return jax.nn.glu(x, axis=axis)


swish = silu
hard_swish = hard_silu

_REGISTRY = Registry("activation", "jaxgraph.activations")
register = _REGISTRY.register
serialize = _REGISTRY.serialize


def get(identifier):
    """Resolve None (linear), a name, a config dict, a class or a callable."""
    if identifier is None:
        return linear
    if isinstance(identifier, dict) and identifier.get("class_name") == "function" \
            and isinstance(identifier.get("config"), str):  # Keras 3's form for functions
        return _REGISTRY.lookup(identifier["config"])
    return _REGISTRY.get(identifier)


for _fn in (relu, relu6, leaky_relu, elu, celu, selu, gelu, sigmoid, hard_sigmoid, hard_silu,
            silu, softmax, log_softmax, softplus, softsign, tanh, exponential, mish, linear,
            log_sigmoid, hard_tanh, tanh_shrink, soft_shrink, hard_shrink, squareplus,
            sparse_plus, sparse_sigmoid, glu):
    _REGISTRY.add_builtin(_fn)
_REGISTRY.add_builtin(silu, "swish")
_REGISTRY.add_builtin(hard_silu, "hard_swish")

"""The four benchmark workloads, each built twice: Flax linen and Keras 3 functional.

Both builds use Keras defaults (glorot_uniform kernels, zero biases, uniform(-0.05, 0.05)
embeddings, BatchNormalization momentum 0.99 / epsilon 1e-3) so parameter counts and
training dynamics match. Losses and optimizers are named as Keras names them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

os.environ.setdefault("KERAS_BACKEND", "jax")

glorot = nn.initializers.glorot_uniform()
Dense = partial(nn.Dense, kernel_init=glorot)
Conv = partial(nn.Conv, kernel_init=glorot, padding="VALID")
EPS = 1e-7  # keras.backend.epsilon(), used for clipping probabilities and by the optimizers


@dataclass(frozen=True)
class Workload:
    """One benchmark: data, loss spec (Keras names) and the two model builders."""

    name: str
    batch_size: int
    samples: int  # training-set size of the default run (a multiple of batch_size)
    quick: tuple[int, int]  # (samples, batch size) of --quick, a smoke test
    optimizer: str  # "rmsprop" or "adam", Keras default hyperparameters
    loss: str | dict[str, str]
    make_data: Callable[[int, int], tuple]  # (n, seed) -> (x, y) numpy, y a dict if multi-output
    flax_model: Callable[[], nn.Module]  # module called as model(x, train=...)
    keras_model: Callable[[], object]
    loss_weights: dict[str, float] | None = None
    note: str = ""
    # Training-set size on an accelerator: the CPU sizes are a few milliseconds of GPU work,
    # too short to time a steady epoch. None: the CPU size.
    accel_samples: int | None = None
    policy: str = "float32"  # dtype policy: "mixed_bfloat16" = bf16 compute, float32 variables
    # Epochs of a default run: the first (compile included) and steady ones. Enough that
    # the steady ones last well over a scheduler hiccup (one MLP epoch is ~10 ms on CPU)
    # and are more than one sample (a CPU resnet epoch is one step, a CPU multi_output
    # epoch two).
    epochs: int = 2

    def data(self, seed: int = 0):
        return self.make_data(self.samples, seed)

    def quick_version(self) -> Workload:
        return replace(self, samples=self.quick[0], batch_size=self.quick[1])

    def accel_version(self) -> Workload:
        return replace(self, samples=self.accel_samples or self.samples)


def optax_optimizer(name: str) -> optax.GradientTransformation:
    """optax twin of Keras's default optimizer of that name.

    Keras 3 RMSprop divides by sqrt(v + eps) (eps inside the root: optax's default
    eps_in_sqrt=True). Keras Adam adds eps to sqrt(v) before bias correction, optax after;
    with eps=1e-7 the difference is below float32 noise.
    """
    if name == "rmsprop":
        return optax.rmsprop(1e-3, decay=0.9, eps=EPS, eps_in_sqrt=True)
    if name == "adam":
        return optax.adam(1e-3, b1=0.9, b2=0.999, eps=EPS)
    raise ValueError(name)


# Keras's probability-space losses, as keras.losses computes them: categorical ones first
# renormalise the predicted distribution (p / sum(p)), then clip to [eps, 1 - eps]; every loss
# is the mean over the batch.
def _clip(p):
    return jnp.clip(p, EPS, 1 - EPS)


def _normalized(p):
    return _clip(p / jnp.sum(p, axis=-1, keepdims=True))


LOSSES = {
    "mse": lambda y, p: jnp.mean((y - p) ** 2),
    "categorical_crossentropy": lambda y, p: -jnp.mean(jnp.sum(y * jnp.log(_normalized(p)), -1)),
    "sparse_categorical_crossentropy": lambda y, p: -jnp.mean(
        jnp.log(jnp.take_along_axis(_normalized(p), y[:, None].astype(jnp.int32), -1))
    ),
    "binary_crossentropy": lambda y, p: -jnp.mean(
        y * jnp.log(_clip(p)) + (1 - y) * jnp.log(1 - _clip(p))
    ),
}


def loss_fn(w: Workload) -> Callable:
    """(y_true, y_pred) -> weighted scalar loss, as Keras's compile(loss, loss_weights)."""
    if isinstance(w.loss, str):
        return LOSSES[w.loss]
    weights = w.loss_weights or {}
    return lambda y, p: sum(weights.get(k, 1.0) * LOSSES[v](y[k], p[k]) for k, v in w.loss.items())


def _teacher(x: np.ndarray, classes: int, rng) -> np.ndarray:
    """Labels from a fixed random projection, so there is something to learn."""
    flat = x.reshape(len(x), -1)
    w = rng.standard_normal((flat.shape[1], classes)).astype(np.float32)
    return np.argmax((flat - flat.mean()) @ w, axis=1)


def _one_hot(labels, classes):
    return np.eye(classes, dtype=np.float32)[labels]


# --- mlp: the book's digits MLP --------------------------------------------------------------

class MLP(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(Dense(32)(x))
        x = nn.relu(Dense(32)(x))
        return nn.softmax(Dense(10)(x))


def _mlp_keras():
    import keras
    from keras import layers

    inp = keras.Input((64,))
    x = layers.Dense(32, activation="relu")(inp)
    x = layers.Dense(32, activation="relu")(x)
    return keras.Model(inp, layers.Dense(10, activation="softmax")(x))


def _mlp_data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 64), dtype=np.float32)
    return x, _one_hot(_teacher(x, 10, rng), 10)


# --- convnet: the chapter 5 MNIST convnet ----------------------------------------------------

class ConvNet(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        x = nn.max_pool(nn.relu(Conv(32, (3, 3))(x)), (2, 2), (2, 2))
        x = nn.max_pool(nn.relu(Conv(64, (3, 3))(x)), (2, 2), (2, 2))
        x = nn.relu(Conv(64, (3, 3))(x)).reshape(x.shape[0], -1)
        return nn.softmax(Dense(10)(nn.relu(Dense(64)(x))))


def _convnet_keras():
    import keras
    from keras import layers

    inp = keras.Input((28, 28, 1))
    x = layers.MaxPooling2D(2)(layers.Conv2D(32, 3, activation="relu")(inp))
    x = layers.MaxPooling2D(2)(layers.Conv2D(64, 3, activation="relu")(x))
    x = layers.Flatten()(layers.Conv2D(64, 3, activation="relu")(x))
    x = layers.Dense(64, activation="relu")(x)
    return keras.Model(inp, layers.Dense(10, activation="softmax")(x))


def _convnet_data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 28, 28, 1), dtype=np.float32)
    return x, _one_hot(_teacher(x, 10, rng), 10)


# --- multi_output: the book's age / income / gender model ------------------------------------

SEQ_LEN, VOCAB, EMBED = 300, 2000, 64  # the book: 50000 x 256; shrunk for 2 CPU cores


def _embed_init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -0.05, 0.05)


class MultiOutput(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        x = nn.Embed(VOCAB, EMBED, embedding_init=_embed_init)(x)
        x = nn.max_pool(nn.relu(Conv(128, (5,))(x)), (5,), (5,))
        x = nn.relu(Conv(256, (5,))(x))
        x = nn.max_pool(nn.relu(Conv(256, (5,))(x)), (5,), (5,))
        x = nn.relu(Conv(256, (5,))(x))
        x = nn.relu(Conv(256, (5,))(x)).max(axis=1)
        x = nn.relu(Dense(128)(x))
        return {
            "age": Dense(1)(x),
            "income": nn.softmax(Dense(10)(x)),
            "gender": nn.sigmoid(Dense(1)(x)),
        }


def _multi_keras():
    import keras
    from keras import layers

    inp = keras.Input((SEQ_LEN,), dtype="int32")
    x = layers.Embedding(VOCAB, EMBED)(inp)
    x = layers.MaxPooling1D(5)(layers.Conv1D(128, 5, activation="relu")(x))
    x = layers.Conv1D(256, 5, activation="relu")(x)
    x = layers.MaxPooling1D(5)(layers.Conv1D(256, 5, activation="relu")(x))
    x = layers.Conv1D(256, 5, activation="relu")(x)
    x = layers.GlobalMaxPooling1D()(layers.Conv1D(256, 5, activation="relu")(x))
    x = layers.Dense(128, activation="relu")(x)
    outputs = [
        layers.Dense(1, name="age")(x),
        layers.Dense(10, activation="softmax", name="income")(x),
        layers.Dense(1, activation="sigmoid", name="gender")(x),
    ]
    return keras.Model(inp, outputs)


def _multi_data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, VOCAB, (n, SEQ_LEN), dtype=np.int32)
    y = {
        "age": rng.standard_normal((n, 1), dtype=np.float32),
        "income": _one_hot(rng.integers(0, 10, n), 10),
        "gender": rng.integers(0, 2, (n, 1)).astype(np.float32),
    }
    return x, y


# --- resnet: small residual convnet with BatchNormalization ----------------------------------

class Block(nn.Module):
    features: int
    stride: int
    dtype: object = jnp.float32  # compute dtype; parameters stay float32

    @nn.compact
    def __call__(self, x, train=False):
        conv = partial(Conv, padding="SAME", use_bias=False, dtype=self.dtype)
        bn = partial(nn.BatchNorm, use_running_average=not train, momentum=0.99, epsilon=1e-3,
                     dtype=self.dtype)
        s = (self.stride, self.stride)
        y = nn.relu(bn()(conv(self.features, (3, 3), s)(x)))
        y = bn()(conv(self.features, (3, 3))(y))
        if x.shape[-1] != self.features or self.stride != 1:
            x = conv(self.features, (1, 1), s)(x)
        return nn.relu(x + y)


class ResNet(nn.Module):
    dtype: object = jnp.float32  # compute dtype; parameters stay float32

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(Conv(32, (3, 3), padding="SAME", dtype=self.dtype)(x))
        for stage, features in enumerate((32, 64, 128)):
            x = Block(features, 2 if stage else 1, self.dtype)(x, train)
            x = Block(features, 1, self.dtype)(x, train)
        # As Keras's mixed policy: the head computes in the compute dtype, the loss in float32.
        out = nn.softmax(Dense(10, dtype=self.dtype)(x.mean(axis=(1, 2))))
        return out.astype(jnp.float32)


def _resnet_keras():
    import keras
    from keras import layers

    def block(x, features, stride):
        y = layers.Conv2D(features, 3, stride, padding="same", use_bias=False)(x)
        y = layers.ReLU()(layers.BatchNormalization()(y))
        y = layers.Conv2D(features, 3, padding="same", use_bias=False)(y)
        y = layers.BatchNormalization()(y)
        if x.shape[-1] != features or stride != 1:
            x = layers.Conv2D(features, 1, stride, use_bias=False)(x)
        return layers.ReLU()(layers.Add()([x, y]))

    inp = keras.Input((32, 32, 3))
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(inp)
    for stage, features in enumerate((32, 64, 128)):
        x = block(x, features, 2 if stage else 1)
        x = block(x, features, 1)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(10, activation="softmax")(x))


def _resnet_data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 32, 32, 3), dtype=np.float32)
    return x, _teacher(x, 10, rng).astype(np.int32)


_RESNET = Workload("resnet", 256, 256, (32, 32), "adam", "sparse_categorical_crossentropy",
                   _resnet_data, ResNet, _resnet_keras, accel_samples=32768, epochs=4)

WORKLOADS = {
    w.name: w
    for w in [
        Workload("mlp", 128, 16384, (1024, 128), "rmsprop", "categorical_crossentropy",
                 _mlp_data, MLP, _mlp_keras, accel_samples=262144, epochs=10),
        Workload("convnet", 64, 2048, (128, 64), "rmsprop", "categorical_crossentropy",
                 _convnet_data, ConvNet, _convnet_keras, accel_samples=32768, epochs=4),
        Workload("multi_output", 64, 128, (32, 32), "rmsprop",
                 {"age": "mse", "income": "categorical_crossentropy",
                  "gender": "binary_crossentropy"},
                 _multi_data, MultiOutput, _multi_keras,
                 loss_weights={"age": 0.25, "income": 1.0, "gender": 10.0},
                 note=f"embedding shrunk to {VOCAB}x{EMBED} (book: 50000x256), seq len {SEQ_LEN}",
                 accel_samples=8192, epochs=4),
        _RESNET,
        replace(_RESNET, name="resnet_bf16", flax_model=partial(ResNet, dtype=jnp.bfloat16),
                policy="mixed_bfloat16", note="mixed_bfloat16: bf16 compute, float32 variables"),
    ]
}

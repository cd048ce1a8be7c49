"""Model builders by name, for configs and examples: each returns an uncompiled model.

The builders follow "Deep Learning with Python" (chapters 5 and 7), resized where the
book's data is replaced by smaller data (8x8 digits instead of 28x28 MNIST). A config
names a builder from `REGISTRY` or any importable function as "package.module:function".
"""

from __future__ import annotations

import importlib

from . import layers
from .graph.input_layer import Input
from .models import Model


def digits_convnet(input_shape=(8, 8, 1), num_classes=10):
    """Chapter 5's MNIST convnet, with 'same' padding so three 3x3 convs fit in 8x8."""
    inputs = Input(shape=tuple(input_shape), name="image")
    x = layers.Conv2D(32, 3, activation="relu", padding="same")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu", padding="same")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu", padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="digit")(x)
    return Model(inputs, outputs, name="digits_convnet")


def digits_mlp(input_shape=(64,), num_classes=10, units=(64, 64), dropout=0.0):
    """A densely connected baseline: Flatten, then `units` Dense relu layers."""
    inputs = Input(shape=tuple(input_shape), name="image")
    x = layers.Flatten()(inputs) if len(tuple(input_shape)) > 1 else inputs
    for width in units:
        x = layers.Dense(int(width), activation="relu")(x)
        if dropout:
            x = layers.Dropout(float(dropout))(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="digit")(x)
    return Model(inputs, outputs, name="digits_mlp")


def multi_output_posts(vocabulary_size=2000, num_income_groups=10, seq_len=100,
                       embedding_dim=32, filters=64):
    """Section 7.1.3's three-head model: social-media posts -> age, income group, gender.

    The book's five Conv1D layers are cut to two (and narrowed) so it trains in
    seconds; the heads and their names (age, income, gender) are the book's.
    """
    posts = Input(shape=(int(seq_len),), dtype="int32", name="posts")
    x = layers.Embedding(int(vocabulary_size), int(embedding_dim))(posts)
    x = layers.Conv1D(filters, 5, activation="relu")(x)
    x = layers.MaxPooling1D(5)(x)
    x = layers.Conv1D(2 * filters, 5, activation="relu")(x)
    x = layers.GlobalMaxPooling1D()(x)
    x = layers.Dense(64, activation="relu")(x)
    age = layers.Dense(1, name="age")(x)
    income = layers.Dense(int(num_income_groups), activation="softmax", name="income")(x)
    gender = layers.Dense(1, activation="sigmoid", name="gender")(x)
    return Model(posts, [age, income, gender], name="multi_output_posts")


def residual_block(x, filters, downsample=False, momentum=0.9):
    """Conv-BN-relu, Conv-BN, plus a shortcut (a strided 1x1 projection when the shape
    changes, the identity otherwise), then relu: section 7.1.4's residual connection."""
    strides = 2 if downsample else 1
    y = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    y = layers.BatchNormalization(momentum=momentum)(y)
    y = layers.Activation("relu")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    y = layers.BatchNormalization(momentum=momentum)(y)
    shortcut = x
    if downsample or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False)(x)
        shortcut = layers.BatchNormalization(momentum=momentum)(shortcut)
    y = layers.add([y, shortcut])
    return layers.Activation("relu")(y)


def resnet_small(input_shape=(8, 8, 1), num_classes=10, blocks=(32, 64), stem_filters=32,
                 bn_momentum=0.9):
    """A small ResNet: a conv stem, one residual block per entry of `blocks` (filters;
    every block after the first halves the resolution), global pooling, softmax.

    `bn_momentum` is 0.9, not Keras's 0.99: a small data set gives few steps, and with
    0.99 the moving statistics used at inference lag far behind for the first epochs.
    """
    inputs = Input(shape=tuple(input_shape), name="image")
    x = layers.Conv2D(stem_filters, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization(momentum=bn_momentum)(x)
    x = layers.Activation("relu")(x)
    for i, filters in enumerate(blocks):
        x = residual_block(x, int(filters), downsample=i > 0, momentum=bn_momentum)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="digit")(x)
    return Model(inputs, outputs, name="resnet_small")


REGISTRY = {
    "digits_convnet": digits_convnet,
    "digits_mlp": digits_mlp,
    "multi_output_posts": multi_output_posts,
    "resnet_small": resnet_small,
}


def get_builder(name):
    """The builder called `name` in `REGISTRY`, or the function named "module:function"."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"model builder must be a non-empty string, got {name!r}")
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ValueError(f"cannot import module {module_name!r} for builder {name!r}: "
                             f"{err}") from err
        builder = getattr(module, attr, None)
        if not callable(builder):
            raise ValueError(f"module {module_name!r} has no function {attr!r}")
        return builder
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(REGISTRY))} "
                         "(or 'package.module:function')")
    return REGISTRY[name]


def synthetic_posts(num_samples=2000, vocabulary_size=2000, seq_len=100, num_income_groups=10,
                    seed=0):
    """Generated stand-in for the book's (unpublished) social-media posts data.

    Each post is `seq_len` token ids; a person's gender, income group and age (in
    decades, 1.8..7.0, so MSE starts near the book's 3-5) each plant `seq_len // 8`
    marker tokens from their own block of ids (age: one block per 0.65 decades) among
    uniform background words. Returns `(posts, {"age", "income", "gender"})`, seeded.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    age_bins = 8
    gender_base, income_base = 1, 21
    age_base = income_base + 10 * num_income_groups
    first_word = age_base + 10 * age_bins
    if vocabulary_size < first_word + 100:
        raise ValueError(f"synthetic_posts: vocabulary_size must be at least {first_word + 100} "
                         f"for {num_income_groups} income groups, got {vocabulary_size}")
    if seq_len < 30:
        raise ValueError(f"synthetic_posts: seq_len must be at least 30, got {seq_len}")
    n = int(num_samples)
    gender = rng.integers(0, 2, n)
    income = rng.integers(0, num_income_groups, n)
    age = rng.uniform(1.8, 7.0, n)
    age_bin = np.minimum(((age - 1.8) / (5.2 / age_bins)).astype(int), age_bins - 1)
    posts = rng.integers(first_word, vocabulary_size, (n, seq_len))
    markers = max(3, seq_len // 8)
    blocks = ((gender_base, gender), (income_base, income), (age_base, age_bin))
    for base, label in blocks:
        tokens = base + 10 * label[:, None] + rng.integers(0, 4, (n, markers))
        where = rng.integers(0, seq_len, (n, markers))
        np.put_along_axis(posts, where, tokens, axis=1)
    targets = {"age": age.astype("float32")[:, None], "income": income.astype("int32"),
               "gender": gender.astype("float32")[:, None]}
    return posts.astype("int32"), targets

"""Feature extraction and fine-tuning with a pretrained conv base (DLwP 5.3) on digits.

The "pretrained network" is a small conv base trained here on the first 1000
training digits (standing in for ImageNet, which also contains the book's target
classes). The target task then has only 5 labelled images per class, drawn from
the remaining training digits; everything is scored on the 360 test digits.
All randomness goes through `set_random_seed`, so the comparison is deterministic.
"""

import numpy as np
import pytest

import jaxgraph
from jaxgraph import Input, Model, Sequential, layers, optimizers
from jaxgraph.datasets import digits

PER_CLASS = 5


@pytest.fixture(scope="module")
def setup():
    (x, y), (xt, yt) = digits.load_data()
    x = x[..., None].astype("float32") / 255.0
    xt = xt[..., None].astype("float32") / 255.0
    jaxgraph.utils.set_random_seed(0)
    conv_base = Sequential([
        Input((8, 8, 1)),
        layers.Conv2D(32, 3, activation="relu", padding="same", name="block1_conv"),
        layers.MaxPooling2D(2, name="block1_pool"),
        layers.Conv2D(64, 3, activation="relu", padding="same", name="block2_conv"),
        layers.Flatten(name="flatten"),
    ], name="conv_base")
    pretrain = Sequential([Input((8, 8, 1)), conv_base, layers.Dense(10, activation="softmax")])
    pretrain.compile(optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["acc"])
    pretrain.fit(x[:1000], y[:1000], epochs=6, batch_size=32, verbose=0)
    rng = np.random.RandomState(0)
    pool_x, pool_y = x[1000:], y[1000:]
    idx = np.concatenate([rng.choice(np.flatnonzero(pool_y == c), PER_CLASS, replace=False)
                          for c in range(10)])
    return conv_base, (pool_x[idx], pool_y[idx]), (xt, yt)


def _train_head(train_x, y, test_x, yt):
    jaxgraph.utils.set_random_seed(1)
    head = Sequential([Input(train_x.shape[1:]), layers.Dense(10, activation="softmax")])
    head.compile(optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["acc"])
    head.fit(train_x, y, epochs=60, batch_size=16, verbose=0)
    return head.evaluate(test_x, yt, verbose=0)[1]


def test_feature_extraction_beats_raw_pixels(setup):
    conv_base, (xs, ys), (xt, yt) = setup
    conv_base.trainable = False
    before = [w.copy() for w in conv_base.get_weights()]
    # Run the frozen base once over the data, train a classifier on its features.
    features, test_features = conv_base.predict(xs, verbose=0), conv_base.predict(xt, verbose=0)
    assert features.shape == (10 * PER_CLASS, 4 * 4 * 64)
    feature_acc = _train_head(features, ys, test_features, yt)
    pixel_acc = _train_head(xs.reshape(len(xs), -1), ys, xt.reshape(len(xt), -1), yt)
    assert feature_acc > pixel_acc + 0.03, (feature_acc, pixel_acc)
    assert feature_acc > 0.85
    for a, b in zip(before, conv_base.get_weights()):
        assert np.array_equal(a, b)


def test_freeze_then_fine_tune_top_block(setup):
    conv_base, (xs, ys), (xt, yt) = setup
    jaxgraph.utils.set_random_seed(2)
    inputs = Input((8, 8, 1))
    outputs = layers.Dense(10, activation="softmax", name="head")(conv_base(inputs))
    model = Model(inputs, outputs)

    # Stage 1: frozen base, train the head only.
    conv_base.trainable = False
    model.compile(optimizers.RMSprop(1e-3), "sparse_categorical_crossentropy", metrics=["acc"])
    assert len(model.trainable_weights) == 2  # the head's kernel and bias
    base0 = conv_base.get_weights()
    head0 = model.get_layer("head").get_weights()
    model.fit(xs, ys, epochs=20, batch_size=10, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(base0, conv_base.get_weights()))
    assert not np.array_equal(head0[0], model.get_layer("head").get_weights()[0])
    stage1_acc = model.evaluate(xt, yt, verbose=0)[1]

    # Stage 2: unfreeze the top block, recompile with a lower learning rate, train on.
    conv_base.trainable = True
    for layer in conv_base.layers:
        layer.trainable = layer.name == "block2_conv"
    model.compile(optimizers.RMSprop(1e-4), "sparse_categorical_crossentropy", metrics=["acc"])
    assert len(model.trainable_weights) == 4
    block1 = [w.copy() for w in conv_base.get_layer("block1_conv").get_weights()]
    block2 = [w.copy() for w in conv_base.get_layer("block2_conv").get_weights()]
    model.fit(xs, ys, epochs=10, batch_size=10, verbose=0)
    for a, b in zip(block1, conv_base.get_layer("block1_conv").get_weights()):
        assert np.array_equal(a, b)  # still frozen: bit-identical
    assert not np.array_equal(block2[0], conv_base.get_layer("block2_conv").get_weights()[0])
    stage2_acc = model.evaluate(xt, yt, verbose=0)[1]
    assert stage1_acc > 0.8 and stage2_acc > stage1_acc - 0.05, (stage1_acc, stage2_acc)

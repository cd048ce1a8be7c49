"""Section 7.1.4: residual connections, with identity and with projection shortcuts.

An identity shortcut adds the input back unchanged (same shape); a projection shortcut
(a strided 1x1 convolution) reshapes the input when the block changes its size. The
script checks both, then trains `jaxgraph.zoo.resnet_small` (residual blocks with
BatchNormalization) on the real 8x8 digits.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from jaxgraph import Input, Model, datasets, layers, utils, zoo


def identity_block():
    x = Input(shape=(12, 12, 128))
    y = layers.Conv2D(128, 3, activation="relu", padding="same")(x)
    y = layers.Conv2D(128, 3, activation="relu", padding="same")(y)
    y = layers.Conv2D(128, 3, activation="relu", padding="same")(y)
    return Model(x, layers.add([y, x]), name="identity_residual")


def projection_block():
    x = Input(shape=(12, 12, 64))
    y = layers.Conv2D(128, 3, activation="relu", padding="same")(x)
    y = layers.Conv2D(128, 3, activation="relu", padding="same")(y)
    y = layers.MaxPooling2D(2, strides=2)(y)
    residual = layers.Conv2D(128, 1, strides=2, padding="same")(x)
    return Model(x, layers.add([y, residual]), name="projection_residual")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default 10 (2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short run, for smoke tests")
    parser.add_argument("--output-dir", default=None, help="unused: nothing is written")
    args = parser.parse_args()
    epochs = args.epochs or (2 if args.quick else 10)

    x = np.random.default_rng(0).normal(size=(2, 12, 12, 128)).astype("float32")
    block = identity_block()
    variables = block.init(jax.random.key(0))
    zeroed = jax.tree_util.tree_map(jnp.zeros_like, variables)
    out, _ = jax.jit(block.apply)(zeroed, x)
    print(f"identity shortcut: {block.input_shape} -> {block.output_shape}; with the "
          f"convolutions zeroed the block returns its input: {bool(np.allclose(out, x))}")
    block = projection_block()
    print(f"projection shortcut: {block.input_shape} -> {block.output_shape} "
          f"(a strided 1x1 Conv2D reshapes the input)")

    utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = datasets.digits.load_data()
    x_train = x_train[..., None].astype("float32") / 255
    x_test = x_test[..., None].astype("float32") / 255
    model = zoo.resnet_small(input_shape=(8, 8, 1), num_classes=10, blocks=(32, 64))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["acc"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, validation_split=0.1, verbose=2)
    _, acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"resnet_small ({model.count_params():,} parameters): test accuracy {acc:.4f}")


if __name__ == "__main__":
    main()

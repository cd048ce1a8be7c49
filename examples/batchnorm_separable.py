"""Section 7.3.1-7.3.2: BatchNormalization and depthwise separable convolutions.

A SeparableConv2D does a per-channel spatial convolution then a 1x1 convolution: far
fewer parameters than a Conv2D of the same shape. BatchNormalization keeps moving
statistics, which `fit` updates (model state, not trained parameters) and inference
uses. The book's model, resized for the real 8x8 digits. The batch norms use momentum
0.9 (Keras's default is 0.99): 1437 images give few steps, and with 0.99 the moving
statistics would still lag far behind after the first epochs.
"""

import argparse

import numpy as np

from jaxgraph import Input, Model, Sequential, datasets, layers, utils


def build_model(momentum=0.9):
    return Sequential([
        Input(shape=(8, 8, 1)),
        layers.SeparableConv2D(32, 3, padding="same", activation="relu"),
        layers.BatchNormalization(momentum=momentum),
        layers.SeparableConv2D(64, 3, padding="same", activation="relu"),
        layers.BatchNormalization(momentum=momentum),
        layers.MaxPooling2D(2),
        layers.SeparableConv2D(64, 3, padding="same", activation="relu"),
        layers.BatchNormalization(momentum=momentum),
        layers.SeparableConv2D(128, 3, padding="same", activation="relu"),
        layers.BatchNormalization(momentum=momentum, name="last_bn"),
        layers.GlobalAveragePooling2D(),
        layers.Dense(32, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ], name="separable_bn")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default 20 (3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short run, for smoke tests")
    parser.add_argument("--output-dir", default=None, help="unused: nothing is written")
    args = parser.parse_args()
    epochs = args.epochs or (3 if args.quick else 20)

    x = Input(shape=(8, 8, 64))
    separable = Model(x, layers.SeparableConv2D(128, 3)(x))
    regular = Model(x, layers.Conv2D(128, 3)(x))
    print(f"64 -> 128 channels, 3x3: SeparableConv2D {separable.count_params():,} parameters, "
          f"Conv2D {regular.count_params():,}")

    utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = datasets.digits.load_data()
    x_train = x_train[..., None].astype("float32") / 255
    x_test = x_test[..., None].astype("float32") / 255
    model = build_model()
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["acc"])
    before = np.array(model.get_layer("last_bn").get_weights()[2])  # moving_mean
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, validation_split=0.1, verbose=2)
    after = np.array(model.get_layer("last_bn").get_weights()[2])
    print(f"last BatchNormalization moving mean: before fit {before.mean():.4f}, after "
          f"{after.mean():.4f} (state updated by training: {not np.allclose(before, after)})")
    _, acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"test accuracy {acc:.4f}")


if __name__ == "__main__":
    main()

"""Section 7.1.4: an Inception module, four parallel branches concatenated on channels.

First the book's module on a (16, 16, 64) input (with 'same' padding, without which
the branches' sizes differ and cannot be concatenated); then a small Inception-style
classifier built from the same function, trained on the real 8x8 digits.
"""

import argparse

from jaxgraph import Input, Model, datasets, layers, utils


def inception_module(x, filters):
    """Four branches: 1x1 strided; 1x1 then 3x3 strided; avg-pool then 3x3; 1x1 then
    two 3x3, the last strided. The output has 4 * filters channels and half the size."""
    branch_a = layers.Conv2D(filters, 1, activation="relu", strides=2, padding="same")(x)
    branch_b = layers.Conv2D(filters, 1, activation="relu", padding="same")(x)
    branch_b = layers.Conv2D(filters, 3, activation="relu", strides=2, padding="same")(branch_b)
    branch_c = layers.AveragePooling2D(3, strides=2, padding="same")(x)
    branch_c = layers.Conv2D(filters, 3, activation="relu", padding="same")(branch_c)
    branch_d = layers.Conv2D(filters, 1, activation="relu", padding="same")(x)
    branch_d = layers.Conv2D(filters, 3, activation="relu", padding="same")(branch_d)
    branch_d = layers.Conv2D(filters, 3, activation="relu", strides=2, padding="same")(branch_d)
    return layers.concatenate([branch_a, branch_b, branch_c, branch_d], axis=-1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default 15 (3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short run, for smoke tests")
    parser.add_argument("--output-dir", default=None, help="unused: nothing is written")
    args = parser.parse_args()
    epochs = args.epochs or (3 if args.quick else 15)

    x = Input(shape=(16, 16, 64))
    book = Model(x, inception_module(x, 128), name="book_inception_module")
    print(f"the book's module: input {x.shape} -> output {book.output_shape}, "
          f"{book.count_params():,} parameters")

    utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = datasets.digits.load_data()
    x_train = x_train[..., None].astype("float32") / 255
    x_test = x_test[..., None].astype("float32") / 255
    inputs = Input(shape=(8, 8, 1))
    h = layers.Conv2D(32, 3, activation="relu", padding="same")(inputs)
    h = inception_module(h, 16)   # 8x8 -> 4x4x64
    h = inception_module(h, 32)   # 4x4 -> 2x2x128
    h = layers.GlobalAveragePooling2D()(h)
    outputs = layers.Dense(10, activation="softmax")(h)
    model = Model(inputs, outputs, name="mini_inception")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["acc"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, validation_split=0.1, verbose=2)
    _, acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"mini Inception net ({model.count_params():,} parameters): "
          f"test accuracy {acc:.4f} after {epochs} epochs")


if __name__ == "__main__":
    main()

"""Chapter 5: a small convnet (Conv2D + MaxPooling2D) classifies handwritten digits.

The book trains on 28x28 MNIST; this runs on the real 8x8 digits bundled with jaxgraph
(1437 training, 360 test images), with 'same' padding so three 3x3 convolutions fit.
"""

import argparse
import os
import time

from jaxgraph import datasets, utils, zoo


def load_digits():
    """Images scaled to 0..1 with a channel axis; labels one-hot."""
    (x_train, y_train), (x_test, y_test) = datasets.digits.load_data()
    x_train = x_train.reshape(-1, 8, 8, 1).astype("float32") / 255
    x_test = x_test.reshape(-1, 8, 8, 1).astype("float32") / 255
    return (x_train, utils.to_categorical(y_train)), (x_test, utils.to_categorical(y_test))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default 15 (3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short run, for smoke tests")
    parser.add_argument("--output-dir", default=os.path.join("runs", "digits_convnet_example"))
    args = parser.parse_args()
    epochs = args.epochs or (3 if args.quick else 15)

    utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = load_digits()
    model = zoo.digits_convnet()
    model.summary()
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, validation_split=0.1, verbose=2)
    seconds = time.perf_counter() - start
    test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
    os.makedirs(args.output_dir, exist_ok=True)
    path = os.path.join(args.output_dir, "digits_convnet.jgraph")
    model.save(path)
    print(f"trained {epochs} epochs in {seconds:.1f}s; saved to {path}")
    print(f"test accuracy: {test_acc:.4f} (test loss {test_loss:.4f})")


if __name__ == "__main__":
    main()

"""Data augmentation (DLwP 5.2) on a small digits dataset read from image files.

1. Writes a few hundred training digits as PNG files, one folder per class (the
   book's cats-vs-dogs layout), and streams them back with
   `image_dataset_from_directory`.
2. Saves a grid of randomly augmented digits: the augmentation layers are part of
   the model, random only when training, driven by the key `apply` is given.
3. Trains the same small convnet with and without augmentation and plots the
   validation curves; with so few images, augmentation reduces overfitting.

No flips: a mirrored digit is another symbol (or none).

    python examples/augmentation.py --quick --output-dir runs/augmentation
"""

import argparse
import os

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jaxgraph  # noqa: E402
from jaxgraph import Input, Model, Sequential, layers, optimizers  # noqa: E402
from jaxgraph.datasets import digits  # noqa: E402
from jaxgraph.preprocessing.image import save_img  # noqa: E402
from jaxgraph.utils.image_dataset import image_dataset_from_directory  # noqa: E402


def write_png_folders(x, y, root):
    """digits -> root/<class>/<i>.png, as the book's directory of images."""
    for i, (img, label) in enumerate(zip(x, y)):
        folder = os.path.join(root, str(label))
        os.makedirs(folder, exist_ok=True)
        save_img(os.path.join(folder, f"{i:04d}.png"), img[..., None], scale=False)


def augmentation():
    return Sequential([
        layers.RandomRotation(0.04, fill_mode="constant"),
        layers.RandomZoom(0.1, fill_mode="constant"),
        layers.RandomTranslation(0.1, 0.1, fill_mode="constant"),
    ], name="augmentation")


def convnet(augment):
    inputs = Input((8, 8, 1))
    x = layers.Rescaling(1 / 255)(inputs)
    if augment:
        x = augmentation()(x)
    x = layers.Conv2D(32, 3, activation="relu", padding="same")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu", padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    model = Model(inputs, outputs, name="augmented" if augment else "plain")
    model.compile(optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["acc"])
    return model


def save_augmented_grid(images, path, copies=8):
    """Row i: digit i, then `copies` augmented versions (one key each)."""
    aug = Sequential([Input((8, 8, 1)), layers.Rescaling(1 / 255), *augmentation().layers])
    variables = aug.init(jax.random.key(0))
    run = jax.jit(lambda key: aug.apply(variables, images, training=True, rng=key)[0])
    columns = [np.asarray(aug.apply(variables, images)[0])]  # inference: the identity
    columns += [np.asarray(run(jax.random.key(k))) for k in range(copies)]
    fig, axes = plt.subplots(len(images), copies + 1, figsize=(copies + 1, len(images)))
    for r in range(len(images)):
        for c, batch in enumerate(columns):
            axes[r, c].imshow(batch[r, ..., 0], cmap="gray_r", vmin=0, vmax=1)
            axes[r, c].axis("off")
    axes[0, 0].set_title("original", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return columns


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="few epochs (a smoke run)")
    parser.add_argument("--train-size", type=int, default=300)
    parser.add_argument("--output-dir", default="runs/augmentation")
    args = parser.parse_args(argv)
    epochs = 6 if args.quick else args.epochs
    os.makedirs(args.output_dir, exist_ok=True)
    jaxgraph.utils.set_random_seed(0)

    (x, y), (xt, yt) = digits.load_data()
    folder = os.path.join(args.output_dir, "digits_png")
    write_png_folders(x[:args.train_size], y[:args.train_size], os.path.join(folder, "train"))
    write_png_folders(xt, yt, os.path.join(folder, "test"))
    train_ds = image_dataset_from_directory(os.path.join(folder, "train"), image_size=(8, 8),
                                            color_mode="grayscale", batch_size=32, seed=0)
    test_ds = image_dataset_from_directory(os.path.join(folder, "test"), image_size=(8, 8),
                                           color_mode="grayscale", batch_size=64,
                                           shuffle=False)
    xb, yb = next(iter(train_ds))
    print(f"classes {train_ds.class_names}; batches of {xb.shape}, labels {yb.shape}; "
          f"{len(train_ds)} training batches per epoch")

    grid = os.path.join(args.output_dir, "augmented_digits.png")
    save_augmented_grid(xt[:6, ..., None].astype("float32"), grid)
    print(f"augmented samples: {grid}")

    histories = {}
    for augment in (False, True):
        jaxgraph.utils.set_random_seed(1)
        model = convnet(augment)
        history = model.fit(train_ds, validation_data=test_ds, epochs=epochs, verbose=0)
        histories[model.name] = history.history
        print(f"{model.name:>9}: final train acc {history.history['acc'][-1]:.3f}, "
              f"test acc {history.history['val_acc'][-1]:.3f}, "
              f"best test acc {max(history.history['val_acc']):.3f}")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, h in histories.items():
        axes[0].plot(h["acc"], label=f"{name} train")
        axes[0].plot(h["val_acc"], "--", label=f"{name} test")
        axes[1].plot(h["loss"], label=f"{name} train")
        axes[1].plot(h["val_loss"], "--", label=f"{name} test")
    axes[0].set_title("accuracy")
    axes[1].set_title("loss")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    curves = os.path.join(args.output_dir, "augmentation_curves.png")
    fig.savefig(curves)
    plt.close(fig)
    print(f"training curves: {curves}")
    return histories


if __name__ == "__main__":
    main()

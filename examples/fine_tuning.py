"""Using a pretrained convnet (DLwP 5.3) on the 8x8 digits: feature extraction, fine-tuning.

The book reuses VGG16 trained on ImageNet for cats vs dogs with 2000 images. Here
the "pretrained" base is a small convnet trained on the first 1000 training digits,
and the target task has only a few labelled images per class, taken from the rest.

1. Feature extraction: run the frozen base once over the data, train a Dense
   classifier on its features; compare with the same classifier on raw pixels.
2. Fine-tuning: base + head in one model; train the head with the base frozen,
   then unfreeze the top conv block, recompile with a lower learning rate and
   train on. The still-frozen block is checked to be bit-identical afterwards.

    python examples/fine_tuning.py --quick --output-dir runs/fine_tuning
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jaxgraph  # noqa: E402
from jaxgraph import Input, Model, Sequential, layers, optimizers  # noqa: E402
from jaxgraph.datasets import digits  # noqa: E402


def build_conv_base():
    return Sequential([
        Input((8, 8, 1)),
        layers.Conv2D(32, 3, activation="relu", padding="same", name="block1_conv"),
        layers.MaxPooling2D(2, name="block1_pool"),
        layers.Conv2D(64, 3, activation="relu", padding="same", name="block2_conv"),
        layers.Flatten(name="flatten"),
    ], name="conv_base")


def dense_classifier(input_shape):
    model = Sequential([Input(input_shape), layers.Dropout(0.2),
                        layers.Dense(10, activation="softmax")])
    model.compile(optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["acc"])
    return model


def plot_history(histories, path, title):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for label, h in histories.items():
        axes[0].plot(h["acc"], label=f"{label} train")
        axes[1].plot(h["loss"], label=f"{label} train")
        if "val_acc" in h:
            axes[0].plot(h["val_acc"], "--", label=f"{label} validation")
            axes[1].plot(h["val_loss"], "--", label=f"{label} validation")
    axes[0].set_title(f"{title}: accuracy")
    axes[1].set_title(f"{title}: loss")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="epochs of each training stage")
    parser.add_argument("--quick", action="store_true", help="few epochs (a smoke run)")
    parser.add_argument("--per-class", type=int, default=5,
                        help="labelled target images per class")
    parser.add_argument("--output-dir", default="runs/fine_tuning")
    args = parser.parse_args(argv)
    epochs = 8 if args.quick else args.epochs
    os.makedirs(args.output_dir, exist_ok=True)
    jaxgraph.utils.set_random_seed(0)

    (x, y), (xt, yt) = digits.load_data()
    x = x[..., None].astype("float32") / 255.0
    xt = xt[..., None].astype("float32") / 255.0

    # The "pretrained" network: a conv base and its classifier, trained on 1000 digits.
    conv_base = build_conv_base()
    pretrain = Sequential([Input((8, 8, 1)), conv_base, layers.Dense(10, activation="softmax")])
    pretrain.compile(optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["acc"])
    pretrain.fit(x[:1000], y[:1000], epochs=6, batch_size=32, verbose=0)
    print(f"pretrained base: test accuracy {pretrain.evaluate(xt, yt, verbose=0)[1]:.3f}")
    conv_base.summary()

    # The small target dataset.
    rng = np.random.RandomState(0)
    pool_x, pool_y = x[1000:], y[1000:]
    idx = np.concatenate([rng.choice(np.flatnonzero(pool_y == c), args.per_class,
                                     replace=False) for c in range(10)])
    xs, ys = pool_x[idx], pool_y[idx]
    print(f"target task: {len(xs)} labelled images, {len(xt)} test images")

    # 1. Feature extraction: one pass of the frozen base, then a Dense classifier.
    conv_base.trainable = False
    features, test_features = conv_base.predict(xs, verbose=0), conv_base.predict(xt, verbose=0)
    head_epochs = 2 * epochs
    jaxgraph.utils.set_random_seed(1)
    on_features = dense_classifier(features.shape[1:])
    h_feat = on_features.fit(features, ys, epochs=head_epochs, batch_size=16, verbose=0,
                             validation_data=(test_features, yt))
    jaxgraph.utils.set_random_seed(1)
    on_pixels = dense_classifier((64,))
    h_pix = on_pixels.fit(xs.reshape(len(xs), -1), ys, epochs=head_epochs, batch_size=16,
                          verbose=0, validation_data=(xt.reshape(len(xt), -1), yt))
    feat_acc = on_features.evaluate(test_features, yt, verbose=0)[1]
    pix_acc = on_pixels.evaluate(xt.reshape(len(xt), -1), yt, verbose=0)[1]
    print(f"feature extraction: test accuracy {feat_acc:.3f} "
          f"(the same classifier on raw pixels: {pix_acc:.3f})")
    plot_history({"features": h_feat.history, "pixels": h_pix.history},
                 os.path.join(args.output_dir, "feature_extraction.png"), "Feature extraction")

    # 2. Fine-tuning: base + head in one model, base frozen first.
    jaxgraph.utils.set_random_seed(2)
    inputs = Input((8, 8, 1))
    outputs = layers.Dense(10, activation="softmax", name="head")(conv_base(inputs))
    model = Model(inputs, outputs)
    conv_base.trainable = False
    model.compile(optimizers.RMSprop(1e-3), "sparse_categorical_crossentropy", metrics=["acc"])
    print(f"stage 1: {len(model.trainable_weights)} trainable weight arrays (the head)")
    h1 = model.fit(xs, ys, epochs=epochs, batch_size=10, verbose=0, validation_data=(xt, yt))
    stage1 = model.evaluate(xt, yt, verbose=0)[1]

    conv_base.trainable = True
    for layer in conv_base.layers:
        layer.trainable = layer.name == "block2_conv"
    model.compile(optimizers.RMSprop(1e-4), "sparse_categorical_crossentropy", metrics=["acc"])
    print(f"stage 2: {len(model.trainable_weights)} trainable weight arrays "
          "(head + block2_conv)")
    frozen_before = [w.copy() for w in conv_base.get_layer("block1_conv").get_weights()]
    h2 = model.fit(xs, ys, epochs=epochs, batch_size=10, verbose=0, validation_data=(xt, yt))
    stage2 = model.evaluate(xt, yt, verbose=0)[1]
    unchanged = all(np.array_equal(a, b) for a, b in
                    zip(frozen_before, conv_base.get_layer("block1_conv").get_weights()))
    print(f"fine-tuning: head only {stage1:.3f}, after unfreezing block2 {stage2:.3f}; "
          f"block1 bit-identical: {unchanged}")
    plot_history({"head only": h1.history, "fine-tuned": h2.history},
                 os.path.join(args.output_dir, "fine_tuning.png"), "Fine-tuning")
    print(f"plots written to {args.output_dir}/")
    return {"features": feat_acc, "pixels": pix_acc, "stage1": stage1, "stage2": stage2,
            "frozen_unchanged": unchanged}


if __name__ == "__main__":
    main()

"""Section 7.1.5: one convolutional base, shared, sees a left and a right camera image.

The book calls Xception (weights=None) on both images; with `--base xception` (the
default when `jaxgraph.applications` exists and `--quick` is not given) this does too.
Otherwise it builds a small Xception-like base of SeparableConv2D layers, and says so.
The data is SYNTHETIC (generated here, seeded): random smooth textures, the right image
shifted by 0-3 pixels; the model predicts the shift (the stereo disparity) from the two
feature maps concatenated along the channels.
"""

import argparse
import importlib.util

import numpy as np

from jaxgraph import Input, Model, layers, utils

SHIFTS = 4


def small_separable_base(shape):
    """An Xception-like stack: separable convolutions with batch norm, one pooling."""
    x = inputs = Input(shape=shape)
    for filters in (16, 32):
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.SeparableConv2D(32, 3, padding="same", activation="relu")(x)
    return Model(inputs, x, name="small_separable_base")


def stereo_pairs(n, size, seed):
    """Left: smoothed noise; right: the same scene seen `shift` pixels to the side."""
    rng = np.random.default_rng(seed)
    wide = rng.normal(size=(n, size, size + SHIFTS, 1))
    kernel = np.ones(3) / 3
    for axis in (1, 2):
        wide = np.apply_along_axis(lambda v: np.convolve(v, kernel, "same"), axis, wide)
    shift = rng.integers(0, SHIFTS, n)
    left = wide[:, :, :size]
    right = np.stack([w[:, s:s + size] for w, s in zip(wide, shift)])
    scale = left.std()
    return left.astype("float32") / scale, right.astype("float32") / scale, shift


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None,
                        help="default 10 (3 with Xception, 2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short run, for smoke tests")
    parser.add_argument("--base", choices=("auto", "xception", "small"), default="auto")
    parser.add_argument("--output-dir", default=None, help="unused: nothing is written")
    args = parser.parse_args()
    has_applications = importlib.util.find_spec("jaxgraph.applications") is not None
    use_xception = args.base == "xception" or (
        args.base == "auto" and has_applications and not args.quick)

    utils.set_random_seed(0)
    if use_xception:
        from jaxgraph import applications

        size = 71  # Xception's smallest input
        base = applications.Xception(weights=None, include_top=False,
                                     input_shape=(size, size, 1))
        print("base: jaxgraph.applications.Xception(weights=None, include_top=False)")
    else:
        size = 16
        base = small_separable_base((size, size, 1))
        why = "--quick" if has_applications else "jaxgraph.applications is not available"
        print(f"base: a small Xception-like SeparableConv2D stack ({why})")

    left_input = Input(shape=(size, size, 1), name="left")
    right_input = Input(shape=(size, size, 1), name="right")
    left_features = base(left_input)   # the same base object twice: shared weights
    right_features = base(right_input)
    merged_features = layers.concatenate([left_features, right_features], axis=-1)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(merged_features)
    x = layers.GlobalAveragePooling2D()(x)
    disparity = layers.Dense(SHIFTS, activation="softmax", name="disparity")(x)
    model = Model([left_input, right_input], disparity, name="dual_camera")
    print(f"the shared base has {base.count_params():,} parameters; the whole model "
          f"{model.count_params():,} (the base is counted once)")

    # Xception (22M parameters) is slow on a CPU: fewer samples and epochs by default.
    n_train = 512 if args.quick else (256 if use_xception else 2000)
    epochs = args.epochs or (2 if args.quick else (3 if use_xception else 10))
    left, right, shift = stereo_pairs(n_train + 256, size, seed=0)
    print(f"synthetic stereo pairs: {n_train} for training, 256 for test, shifts 0..3 px")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["acc"])
    model.fit([left[:n_train], right[:n_train]], shift[:n_train], epochs=epochs,
              batch_size=32, validation_split=0.1, verbose=2)
    _, acc = model.evaluate([left[n_train:], right[n_train:]], shift[n_train:], verbose=0)
    print(f"test accuracy of the predicted shift: {acc:.4f} (chance: {1 / SHIFTS:.2f})")


if __name__ == "__main__":
    main()

"""Visualizing what a convnet learns (DLwP 5.4), on a digits convnet trained here.

Writes three kinds of pictures:
1. intermediate activations: every channel of every conv / pooling layer for one digit;
2. filter patterns: the input each filter responds to most (gradient ascent);
3. Grad-CAM: which pixels the predicted class depends on, over several test digits.

    python examples/visualize_convnet.py --quick --output-dir runs/visualize_convnet
"""

import argparse
import os

import numpy as np

import jaxgraph
from jaxgraph import Input, Model, layers, optimizers, vis
from jaxgraph.datasets import digits


def build_model():
    inputs = Input((8, 8, 1))
    x = layers.Conv2D(16, 3, activation="relu", padding="same", name="conv1")(inputs)
    x = layers.Conv2D(32, 3, activation="relu", padding="same", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Conv2D(32, 3, activation="relu", padding="same", name="conv3")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10, activation="softmax", name="predictions")(x)
    model = Model(inputs, outputs)
    model.compile(optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["acc"])
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="few epochs (a smoke run)")
    parser.add_argument("--output-dir", default="runs/visualize_convnet")
    args = parser.parse_args(argv)
    epochs = 5 if args.quick else args.epochs
    os.makedirs(args.output_dir, exist_ok=True)
    jaxgraph.utils.set_random_seed(0)

    (x, y), (xt, yt) = digits.load_data()
    x = x[..., None].astype("float32") / 255.0
    xt = xt[..., None].astype("float32") / 255.0
    model = build_model()
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    print(f"test accuracy: {model.evaluate(xt, yt, verbose=0)[1]:.3f}")
    written = []

    # 1. Intermediate activations for one test digit.
    path = os.path.join(args.output_dir, "activations.png")
    grids = vis.plot_activations(model, xt[:1], path, images_per_row=16)
    print("activation grids:", {k: v.shape for k, v in grids.items()})
    written.append(path)

    # 2. Filter patterns of the first and last conv layers.
    for name, step_size in (("conv1", 0.5), ("conv3", 0.5)):
        path = os.path.join(args.output_dir, f"filters_{name}.png")
        vis.plot_filters(model, name, path, filter_indices=range(16), images_per_row=8,
                         steps=20 if args.quick else 40, step_size=step_size)
        _, before, after = vis.filter_pattern(model, name, 0, steps=40, step_size=step_size,
                                              return_activations=True)
        print(f"{name} filter 0: mean activation {before:.3f} -> {after:.3f} after ascent")
        written.append(path)

    # 3. Grad-CAM on a few test digits (last conv layer found automatically).
    path = os.path.join(args.output_dir, "grad_cam.png")
    vis.plot_grad_cam(model, xt[:8], path, alpha=0.45)
    heat = vis.grad_cam(model, xt)
    ink = xt[..., 0] > 0
    inside = np.mean([h[m].mean() for h, m in zip(heat, ink)])
    outside = np.mean([h[~m].mean() for h, m in zip(heat, ink)])
    print(f"Grad-CAM ({vis.last_conv_layer(model).name}): mean heat on ink {inside:.3f}, "
          f"on background {outside:.3f}")
    written.append(path)
    print("written:", *written, sep="\n  ")
    return written


if __name__ == "__main__":
    main()

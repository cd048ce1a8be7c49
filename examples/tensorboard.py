"""Section 7.2.2: TensorBoard for an Embedding model: scalars, histograms, embeddings.

The book's IMDB Conv1D model with `histogram_freq=1` (weight and activation
histograms every epoch) and `embeddings_freq=1` (the Embedding layer in the
projector). IMDB needs a download; this trains on SYNTHETIC reviews instead
(generated here, seeded): word ids 2-9 are "positive" words, 10-17 "negative" ones,
sprinkled among neutral words, and the label is which kind dominates.
"""

import argparse
import os

import numpy as np

from jaxgraph import Sequential, callbacks, layers, utils

MAX_FEATURES, MAX_LEN = 2000, 200


def synthetic_reviews(n, seed):
    rng = np.random.default_rng(seed)
    words = rng.integers(20, MAX_FEATURES, (n, MAX_LEN))
    label = rng.integers(0, 2, n)
    for i in range(n):
        k = rng.integers(8, 16)
        positions = rng.choice(MAX_LEN, k, replace=False)
        strong = rng.random(k) < 0.8  # most sentiment words agree with the label
        polarity = np.where(strong, label[i], 1 - label[i])
        words[i, positions] = np.where(polarity == 1, 2, 10) + rng.integers(0, 8, k)
    return words.astype("int32"), label.astype("float32")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default 10 (2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short run, for smoke tests")
    parser.add_argument("--output-dir", default=os.path.join("runs", "tensorboard_example"))
    args = parser.parse_args()
    epochs = args.epochs or (2 if args.quick else 10)
    n_train = 500 if args.quick else 4000
    log_dir = os.path.join(args.output_dir, "logs")

    utils.set_random_seed(0)
    x, y = synthetic_reviews(n_train + 500, seed=0)
    print(f"synthetic reviews: {n_train} for training, 500 for test, {MAX_LEN} words each")
    model = Sequential([
        layers.Embedding(MAX_FEATURES, 128, input_length=MAX_LEN, name="embed"),
        layers.Conv1D(32, 7, activation="relu"),
        layers.MaxPooling1D(5),
        layers.Conv1D(32, 7, activation="relu"),
        layers.GlobalMaxPooling1D(),
        layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["acc"])
    model.summary()
    tensorboard = callbacks.TensorBoard(log_dir=log_dir, histogram_freq=1, embeddings_freq=1)
    model.fit(x[:n_train], y[:n_train], epochs=epochs, batch_size=64, validation_split=0.2,
              callbacks=[tensorboard], verbose=2)
    _, acc = model.evaluate(x[n_train:], y[n_train:], verbose=0)
    print(f"test accuracy {acc:.4f}")
    written = sorted(os.path.relpath(os.path.join(root, f), log_dir)
                     for root, _, files in os.walk(log_dir) for f in files)
    print(f"{len(written)} files under {log_dir}: " + ", ".join(written[:8])
          + (" ..." if len(written) > 8 else ""))
    print(f"to browse them: tensorboard --logdir {log_dir}")


if __name__ == "__main__":
    main()

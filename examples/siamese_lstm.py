"""Section 7.1.5: a siamese LSTM, one layer instance (one set of weights) for two inputs.

Calling the same `LSTM` instance on the left and the right sentence shares its weights:
the parameters belong to the layer, not to the call. The script shows the params pytree
has a single LSTM entry, then trains on SYNTHETIC sentence pairs (generated here,
seeded): each sentence draws its words mostly from one of four topics, and a pair is
labelled 1 when both sentences share their topic.
"""

import argparse

import jax
import numpy as np

from jaxgraph import Input, Model, layers, utils

VOCABULARY, TOPICS, LENGTH = 200, 4, 12


def make_pairs(n, seed):
    """Half the pairs share a topic (label 1), half do not (label 0)."""
    rng = np.random.default_rng(seed)
    per_topic = VOCABULARY // TOPICS

    def sentences(topics):
        words = topics[:, None] * per_topic + rng.integers(0, per_topic, (len(topics), LENGTH))
        noise = rng.random(words.shape) < 0.25
        return np.where(noise, rng.integers(0, VOCABULARY, words.shape), words).astype("int32")

    left_topic = rng.integers(0, TOPICS, n)
    same = rng.random(n) < 0.5
    right_topic = np.where(same, left_topic,
                           (left_topic + rng.integers(1, TOPICS, n)) % TOPICS)
    return sentences(left_topic), sentences(right_topic), same.astype("float32")[:, None]


def build_model():
    embedding = layers.Embedding(VOCABULARY, 32, name="embedding")
    lstm = layers.LSTM(32, name="shared_lstm")
    left_input = Input(shape=(None,), dtype="int32", name="left")
    right_input = Input(shape=(None,), dtype="int32", name="right")
    left_output = lstm(embedding(left_input))
    right_output = lstm(embedding(right_input))
    merged = layers.concatenate([left_output, right_output], axis=-1)
    hidden = layers.Dense(32, activation="relu")(merged)
    predictions = layers.Dense(1, activation="sigmoid")(hidden)
    return Model([left_input, right_input], predictions, name="siamese_lstm")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default 15 (3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short run, for smoke tests")
    parser.add_argument("--output-dir", default=None, help="unused: nothing is written")
    args = parser.parse_args()
    epochs = args.epochs or (3 if args.quick else 15)
    n_train = 800 if args.quick else 3000

    utils.set_random_seed(0)
    model = build_model()
    variables = model.init(jax.random.key(0))
    shapes = jax.tree_util.tree_map(lambda a: tuple(a.shape), variables["params"])
    lstm_entries = [name for name in shapes if "lstm" in name]
    print("params pytree:", shapes)
    print(f"LSTM entries in the params pytree: {len(lstm_entries)} ({', '.join(lstm_entries)}),"
          f" used by {sum(1 for n in model._nodes_in_order if n.layer.name == 'shared_lstm')}"
          " calls")

    left, right, same = make_pairs(n_train + 500, seed=0)
    print(f"synthetic sentence pairs: {n_train} for training, 500 for test; label 1 = same topic")
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["acc"])
    model.fit([left[:n_train], right[:n_train]], same[:n_train], epochs=epochs, batch_size=64,
              validation_split=0.1, verbose=2)
    _, acc = model.evaluate({"left": left[n_train:], "right": right[n_train:]},
                            same[n_train:], verbose=0)
    print(f"test accuracy {acc:.4f} (chance: 0.5)")


if __name__ == "__main__":
    main()

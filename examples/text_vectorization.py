"""Working with text (DLwP 6.1): vectorization modes and a frozen pretrained embedding.

Uses the small review corpus shipped in examples/data (see make_data.py there):
1. vectorizes it with `TextVectorization` in each output mode ('int', 'multi_hot',
   'count', 'tf_idf', and bigrams), and with the legacy `Tokenizer` / `one_hot`;
2. trains a bag-of-bigrams classifier on the multi-hot vectors;
3. trains a sequence classifier whose `Embedding` is loaded from the shipped
   GloVe-format vector file and frozen (the book's `embedding_matrix` recipe).
TextVectorization runs on the host: it turns strings into arrays before the model.

    python examples/text_vectorization.py --quick --output-dir runs/text_vectorization
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jaxgraph  # noqa: E402
from jaxgraph import Input, Model, layers, optimizers  # noqa: E402
from jaxgraph.preprocessing.text import Tokenizer, one_hot  # noqa: E402
from jaxgraph.utils.embeddings import load_glove, pretrained_embedding  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def load_reviews(path=os.path.join(DATA, "reviews.tsv")):
    labels, texts = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            label, text = line.rstrip("\n").split("\t", 1)
            labels.append(int(label))
            texts.append(text)
    return texts, np.asarray(labels, np.float32)


def show_modes(train_texts, sample):
    print(f"sample: {sample!r}")
    for kw in [dict(output_mode="int", output_sequence_length=12),
               dict(output_mode="multi_hot"), dict(output_mode="count"),
               dict(output_mode="tf_idf"), dict(output_mode="multi_hot", ngrams=2)]:
        vec = layers.TextVectorization(**kw)
        vec.adapt(train_texts)
        out = vec([sample])
        shown = out[0] if kw["output_mode"] == "int" else np.round(out[0][out[0] != 0], 2)
        print(f"  {kw}: shape {out.shape}, vocabulary {vec.vocabulary_size()}, "
              f"{'ids' if kw['output_mode'] == 'int' else 'non-zero values'} {shown}")
    tok = Tokenizer(num_words=50)
    tok.fit_on_texts(train_texts)
    print(f"  Tokenizer: {tok.texts_to_sequences([sample])[0]}, "
          f"binary matrix {tok.texts_to_matrix([sample]).shape}")
    print(f"  one_hot (hashing, 100 buckets): {one_hot(sample, 100)}")


def bag_of_bigrams(train_texts, y, test_texts, yt, epochs):
    vec = layers.TextVectorization(ngrams=2, max_tokens=2000, output_mode="multi_hot")
    vec.adapt(train_texts)
    jaxgraph.utils.set_random_seed(1)
    inputs = Input((vec.vocabulary_size(),))
    x = layers.Dense(16, activation="relu")(inputs)
    x = layers.Dropout(0.5)(x)
    model = Model(inputs, layers.Dense(1, activation="sigmoid")(x), name="bag_of_bigrams")
    model.compile("rmsprop", "binary_crossentropy", metrics=["acc"])
    history = model.fit(vec(train_texts), y, validation_data=(vec(test_texts), yt),
                        epochs=epochs, batch_size=16, verbose=0)
    return model, history


def frozen_glove_classifier(train_texts, y, test_texts, yt, epochs):
    vec = layers.TextVectorization(output_sequence_length=16)
    vec.adapt(train_texts)
    glove = load_glove(os.path.join(DATA, "vectors.16d.txt"))
    vocab = vec.get_vocabulary()
    covered = sum(w in glove for w in vocab[2:])
    print(f"GloVe-format vectors: {len(glove)} words, cover {covered}/{len(vocab) - 2} "
          "of the vocabulary")
    jaxgraph.utils.set_random_seed(2)
    embedding = pretrained_embedding(vocab, glove, name="glove_embedding")
    inputs = Input((16,), dtype="int32")
    x = embedding(inputs)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dense(8, activation="relu")(x)
    model = Model(inputs, layers.Dense(1, activation="sigmoid")(x), name="frozen_glove")
    model.compile(optimizers.Adam(1e-2), "binary_crossentropy", metrics=["acc"])
    before = embedding.get_weights()[0].copy()
    history = model.fit(vec(train_texts), y, validation_data=(vec(test_texts), yt),
                        epochs=epochs, batch_size=16, verbose=0)
    assert np.array_equal(before, embedding.get_weights()[0]), "the embedding must stay frozen"
    print(f"frozen embedding: {embedding.count_params()} parameters, unchanged by fit; "
          f"trainable parameters of the model: "
          f"{sum(int(np.prod(w.shape)) for w in model.trainable_weights)}")
    return model, history


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="few epochs (a smoke run)")
    parser.add_argument("--output-dir", default="runs/text_vectorization")
    args = parser.parse_args(argv)
    epochs = 8 if args.quick else args.epochs
    os.makedirs(args.output_dir, exist_ok=True)
    jaxgraph.utils.set_random_seed(0)

    texts, labels = load_reviews()
    split = int(0.75 * len(texts))
    train_texts, y, test_texts, yt = texts[:split], labels[:split], texts[split:], labels[split:]
    print(f"{len(train_texts)} training and {len(test_texts)} test reviews")
    show_modes(train_texts, test_texts[0])

    results = {}
    for build in (bag_of_bigrams, frozen_glove_classifier):
        model, history = build(train_texts, y, test_texts, yt, epochs)
        results[model.name] = history.history
        print(f"{model.name}: test accuracy {history.history['val_acc'][-1]:.3f}")

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, h in results.items():
        ax.plot(h["val_acc"], label=f"{name} (test)")
        ax.plot(h["acc"], ":", label=f"{name} (train)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(args.output_dir, "text_classifiers.png")
    fig.savefig(path)
    plt.close(fig)
    print(f"curves: {path}")
    return results


if __name__ == "__main__":
    main()

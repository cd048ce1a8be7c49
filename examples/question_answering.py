"""Section 7.1.2: a two-input question-answering model, fed from a list and from a dict.

A text and a question (token ids) are each embedded and encoded by their own LSTM, the
two encodings concatenated and mapped to a softmax over answers. Like the book, this
trains on SYNTHETIC random token data (generated here, seeded): the point is the
multi-input plumbing, not what it learns.
"""

import argparse

import numpy as np

from jaxgraph import Input, Model, layers, utils

TEXT_VOCABULARY_SIZE = 1000
QUESTION_VOCABULARY_SIZE = 1000
ANSWER_VOCABULARY_SIZE = 50


def build_model():
    text_input = Input(shape=(None,), dtype="int32", name="text")
    embedded_text = layers.Embedding(TEXT_VOCABULARY_SIZE, 64)(text_input)
    encoded_text = layers.LSTM(32)(embedded_text)
    question_input = Input(shape=(None,), dtype="int32", name="question")
    embedded_question = layers.Embedding(QUESTION_VOCABULARY_SIZE, 32)(question_input)
    encoded_question = layers.LSTM(16)(embedded_question)
    concatenated = layers.concatenate([encoded_text, encoded_question], axis=-1)
    answer = layers.Dense(ANSWER_VOCABULARY_SIZE, activation="softmax")(concatenated)
    return Model([text_input, question_input], answer)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default 5 (1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short run, for smoke tests")
    parser.add_argument("--output-dir", default=None, help="unused: nothing is written")
    args = parser.parse_args()
    epochs = args.epochs or (1 if args.quick else 5)
    num_samples = 256 if args.quick else 1000

    utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    text = rng.integers(1, TEXT_VOCABULARY_SIZE, size=(num_samples, 40)).astype("int32")
    question = rng.integers(1, QUESTION_VOCABULARY_SIZE, size=(num_samples, 8)).astype("int32")
    answers = utils.to_categorical(rng.integers(0, ANSWER_VOCABULARY_SIZE, num_samples),
                                   ANSWER_VOCABULARY_SIZE)
    print("synthetic data: random token ids (as in the book); accuracy stays at chance")

    model = build_model()
    model.summary()
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["acc"])
    from_list = model.fit([text, question], answers, epochs=epochs, batch_size=128, verbose=2)
    from_dict = model.fit({"text": text, "question": question}, answers, epochs=epochs,
                          batch_size=128, verbose=2)
    print(f"fit from a list: loss {from_list.history['loss'][-1]:.4f}; "
          f"fit from a dict: loss {from_dict.history['loss'][-1]:.4f}")
    by_list = model.predict([text[:8], question[:8]], verbose=0)
    by_dict = model.predict({"question": question[:8], "text": text[:8]}, verbose=0)
    print(f"predictions from a list and from a dict agree: {bool(np.allclose(by_list, by_dict))}")


if __name__ == "__main__":
    main()

"""Text: TextVectorization, the legacy text helpers, and GloVe-initialized embeddings.

TextVectorization is compared with Keras 3's own layer (which needs TensorFlow) in
tests/test_text_keras_parity.py. The tests here run without TensorFlow: they check
the layer against (a) the exact outputs printed in Keras's own docstring and unit
tests (keras/src/layers/preprocessing/text_vectorization*.py) and (b) expectations
computed by hand from Keras's rules: reserved '' and '[UNK]', vocabulary by
descending count then descending token, and idf = log(1 + num_docs / (1 + doc_freq))
with the mean idf for '[UNK]'. The legacy helpers (`Tokenizer`, `hashing_trick`) are
pure Python in Keras and are compared with it directly.
"""

import math

import jax
import numpy as np
import pytest

import jaxgraph
from jaxgraph import Input, Model, Sequential, layers
from jaxgraph.layers import TextVectorization
from jaxgraph.preprocessing import text as jtext
from jaxgraph.saving import register_function
from jaxgraph.utils import embeddings

CORPUS = ["The cat sat.", "The dog sat!", "A cat, a DOG, a bird"]
QUERIES = ["the bird sat on a cat", "Dog dog!"]
LN2, LN25 = math.log(2.0), math.log(2.5)


@register_function
def split_on_bar(texts):
    return [t.split("|") for t in texts]


@register_function
def dash_to_space(texts):
    return np.char.replace(texts, "-", " ")


# ---------------------------------------------------------------------------- Keras's examples


def test_keras_docstring_example():
    layer = TextVectorization(max_tokens=5000, output_mode="int", output_sequence_length=4)
    layer.adapt(["foo bar", "bar baz", "baz bada boom"])
    out = layer([["foo qux bar"], ["qux baz"]])
    np.testing.assert_array_equal(out, [[4, 1, 3, 0], [1, 2, 0, 0]])
    assert out.dtype == np.int64
    assert layer.get_vocabulary() == ["", "[UNK]", "baz", "bar", "foo", "boom", "bada"]


def test_keras_unit_test_expectations():
    def vec(**kw):
        return TextVectorization(**kw)

    sentence = ["Hello, World!. This is just a nice test!"]
    vocab = ["hello", "world", "this", "is", "nice", "test"]
    np.testing.assert_array_equal(vec(vocabulary=vocab)(sentence), [[2, 3, 4, 5, 1, 1, 6, 7]])
    vocab = ["hello,", "hello", "world", "this", "is", "nice", "test"]
    np.testing.assert_array_equal(vec(standardize="lower", vocabulary=vocab)(sentence),
                                  [[2, 1, 5, 6, 1, 1, 7, 1]])
    np.testing.assert_array_equal(
        vec(split="character", vocabulary=list("abcde"))(["abcf"]), [[2, 3, 4, 1]])
    np.testing.assert_array_equal(
        vec(split=split_on_bar, vocabulary=["foo", "bar", "foobar"])(["foo|bar"]), [[4]])
    np.testing.assert_array_equal(
        vec(standardize="strip_punctuation", vocabulary=["Hello", "World", "Test"])(
            ["Hello, World! Test."]), [[2, 3, 4]])
    np.testing.assert_array_equal(
        vec(standardize=None, vocabulary=["Hello", "world"])(["Hello hello"]), [[2, 1]])
    np.testing.assert_array_equal(
        vec(standardize=dash_to_space, vocabulary=["foo", "bar"])(["foo-bar"]), [[2, 3]])
    np.testing.assert_array_equal(
        vec(split=None, vocabulary=["foo", "bar", "baz"])([["foo"], ["bar"], ["unknown"]]),
        [[2], [3], [1]])
    np.testing.assert_allclose(
        vec(output_mode="multi_hot", vocabulary=["foo", "bar", "baz"])(
            [["foo bar"], ["baz foo foo"]]), [[0, 1, 1, 0], [0, 1, 0, 1]])
    np.testing.assert_allclose(
        vec(output_mode="count", vocabulary=["foo", "bar", "baz"])(["foo bar", "baz foo foo"]),
        [[0, 1, 1, 0], [0, 2, 0, 1]])
    np.testing.assert_allclose(
        vec(output_mode="tf_idf", vocabulary=["foo", "bar", "baz"], idf_weights=[0.3, 0.5, 0.2])(
            ["foo bar", "baz foo foo"]), [[0.0, 0.3, 0.5, 0.0], [0.0, 0.6, 0.0, 0.2]], 1e-6)
    padded = vec(output_mode="multi_hot", vocabulary=["foo", "bar"], max_tokens=8,
                 pad_to_max_tokens=True)(["foo bar"])
    assert padded.shape == (1, 8)
    layer = vec(vocabulary=["foo", "bar", "baz"])
    assert layer.vocabulary_size() == 5
    assert layer.get_vocabulary(include_special_tokens=False) == ["foo", "bar", "baz"]
    tri = vec(ngrams=(1, 3))
    tri.adapt(["foo bar baz"])
    assert "foo bar baz" in tri.get_vocabulary() and "foo bar" not in tri.get_vocabulary()
    small = vec(max_tokens=5)
    small.adapt(["a b c d e f g h i j"])
    assert len(small.get_vocabulary()) == 5
    with pytest.raises(ValueError, match="output_sequence_length"):
        vec(output_mode="multi_hot", output_sequence_length=5)
    with pytest.raises(ValueError, match="ngrams"):
        vec(ngrams="invalid")


def test_vocabulary_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("foo\nbar\nbaz\n")
    out = TextVectorization(vocabulary=str(path))(["foo bar baz unknown"])
    np.testing.assert_array_equal(out, [[2, 3, 4, 1]])
    # As Keras (a TF text-file table): each line is a term, '[UNK]' included, '\r\n' ends
    # a line, and an empty line is an error; a list recognizes the reserved tokens.
    path.write_bytes(b"[UNK]\r\nfoo\r\nbar")
    multi = TextVectorization(vocabulary=str(path), output_mode="multi_hot", standardize=None)
    assert multi.get_vocabulary() == ["[UNK]", "[UNK]", "foo", "bar"]
    np.testing.assert_array_equal(multi(["[UNK] bar x"]), [[1, 1, 0, 1]])
    listed = TextVectorization(vocabulary=["[UNK]", "foo", "bar"], output_mode="multi_hot")
    assert listed.get_vocabulary() == ["[UNK]", "foo", "bar"]
    for bad in ["foo\n\nbar\n", "\n[UNK]\nfoo\n", "foo\nbar\n\n"]:
        path.write_text(bad)
        with pytest.raises(ValueError, match="empty line"):
            TextVectorization(vocabulary=str(path))


# ---------------------------------------------------------------------------- hand-computed


def _adapted(**kw):
    layer = TextVectorization(**kw)
    layer.adapt(CORPUS)
    return layer


def test_int_mode_vocabulary_order_and_padding():
    layer = _adapted(output_sequence_length=5)
    # a: 3; the, sat, dog, cat: 2 (ties by descending token); bird: 1.
    assert layer.get_vocabulary() == ["", "[UNK]", "a", "the", "sat", "dog", "cat", "bird"]
    np.testing.assert_array_equal(layer(QUERIES), [[3, 7, 4, 1, 2], [5, 5, 0, 0, 0]])
    ragged = _adapted()
    np.testing.assert_array_equal(ragged(QUERIES), [[3, 7, 4, 1, 2, 6], [5, 5, 0, 0, 0, 0]])
    np.testing.assert_array_equal(ragged("the cat"), [3, 6])  # one string -> one row


def test_multi_hot_count_and_tf_idf_modes():
    expected_vocab = ["[UNK]", "a", "the", "sat", "dog", "cat", "bird"]
    multi = _adapted(output_mode="multi_hot")
    assert multi.get_vocabulary() == expected_vocab
    np.testing.assert_array_equal(multi(QUERIES), [[1, 1, 1, 1, 0, 1, 1], [0, 0, 0, 0, 1, 0, 0]])
    count = _adapted(output_mode="count")
    np.testing.assert_array_equal(count(QUERIES), [[1, 1, 1, 1, 0, 1, 1], [0, 0, 0, 0, 2, 0, 0]])
    tfidf = _adapted(output_mode="tf_idf")
    # 3 documents; 'a' and 'bird' occur in 1 of them (idf ln 2.5), the others in 2 (ln 2).
    oov = (2 * LN25 + 4 * LN2) / 6
    np.testing.assert_allclose(tfidf.idf_weights, [oov, LN25, LN2, LN2, LN2, LN2, LN25], 1e-6)
    np.testing.assert_allclose(
        tfidf(QUERIES),
        [[oov, LN25, LN2, LN2, 0, LN2, LN25], [0, 0, 0, 0, 2 * LN2, 0, 0]], rtol=1e-6)
    assert tfidf(QUERIES).dtype == np.float32


def test_max_tokens_and_pad_to_max_tokens():
    assert _adapted(max_tokens=5).get_vocabulary() == ["", "[UNK]", "a", "the", "sat"]
    multi = _adapted(output_mode="multi_hot", max_tokens=5)
    assert multi.get_vocabulary() == ["[UNK]", "a", "the", "sat", "dog"]
    np.testing.assert_array_equal(multi(["bird dog"]), [[1, 0, 0, 0, 1]])
    padded = _adapted(output_mode="tf_idf", max_tokens=10, pad_to_max_tokens=True)
    out = padded(["bird"])
    assert out.shape == (1, 10)
    np.testing.assert_allclose(out[0, 6], LN25, 1e-6)
    np.testing.assert_array_equal(out[0, 7:], 0)


def test_bigrams():
    layer = _adapted(ngrams=2)
    assert layer.get_vocabulary() == [
        "", "[UNK]", "a", "the", "sat", "dog", "cat", "the dog", "the cat", "dog sat", "dog a",
        "cat sat", "cat a", "bird", "a dog", "a cat", "a bird"]
    # Per text: all unigrams, then all bigrams (tf.strings.ngrams's order).
    np.testing.assert_array_equal(layer(["the cat sat"]), [[3, 6, 4, 8, 11]])
    multi = _adapted(ngrams=2, output_mode="multi_hot")
    assert multi(["a bird"]).sum() == 3  # 'a', 'bird', 'a bird'


def test_standardization_details():
    layer = TextVectorization(standardize="lower_and_strip_punctuation")
    assert layer.tokenize(["It's  A Test-case: ÉTÉ\tdone"]) == [
        ["its", "a", "testcase", "ÉtÉ", "done"]]  # ASCII-only lower-casing, as tf.strings
    chars = TextVectorization(split="character", standardize=None)
    assert chars.tokenize(["ab c"]) == [["a", "b", " ", "c"]]


def test_adapt_from_batches_with_steps_and_errors():
    layer = TextVectorization()
    layer.adapt(iter([["foo bar"], ["bar baz"], ["unique_word"]]), steps=2)
    assert "bar" in layer.get_vocabulary() and "unique_word" not in layer.get_vocabulary()
    fixed = TextVectorization(vocabulary=["a"])
    with pytest.raises(ValueError, match="adapt"):
        fixed.adapt(["a b"])
    later = TextVectorization()  # set_vocabulary() does not block adapt(), as in Keras
    later.set_vocabulary(["x", "y"])
    later.adapt(["b a b"])
    assert later.get_vocabulary() == ["", "[UNK]", "b", "a"]
    for kw in [{}, dict(output_mode="multi_hot"),
               dict(output_mode="count", max_tokens=4, pad_to_max_tokens=True)]:
        with pytest.raises(RuntimeError, match="vocabulary"):  # every mode, as Keras
            TextVectorization(**kw)(["a"])
    with pytest.raises(ValueError, match="repeated"):
        TextVectorization(vocabulary=["a", "a"])
    with pytest.raises(ValueError, match="max_tokens"):
        TextVectorization(vocabulary=["a", "b", "c"], max_tokens=3)


def test_one_hot_and_split_none():
    layer = TextVectorization(output_mode="one_hot", split=None)
    layer.adapt(["Red", "green", "red", ""])
    assert layer.get_vocabulary() == ["[UNK]", "red", "green"]
    np.testing.assert_array_equal(layer(["red", "", "blue", "GREEN"]),
                                  [[0, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(layer("green"), [[0, 0, 1]])  # one string: one row
    with pytest.raises(ValueError, match="split=None"):
        TextVectorization(output_mode="one_hot")
    # split=None: a rank-1 batch gives the same rows as the (n, 1) batch (see the module
    # docstring for how Keras differs on rank-1 batches).
    for mode in ["int", "count"]:
        texts = np.array(["red", "", "Blue sky"])
        vec = TextVectorization(split=None, output_mode=mode)
        vec.adapt(["Red", "green", "red", "blue sky"])
        np.testing.assert_array_equal(vec(texts), vec(texts[:, None]))
        assert vec(texts).shape[0] == 3


def test_is_host_side_and_not_a_graph_layer():
    layer = _adapted(output_sequence_length=4)
    with pytest.raises(TypeError, match="host"):
        layer(Input((1,), dtype="string"))
    # The intended pipeline: strings -> ids on the host -> a jaxgraph model.
    jaxgraph.utils.set_random_seed(0)
    model = Sequential([Input((4,), dtype="int32"), layers.Embedding(8, 3),
                        layers.GlobalAveragePooling1D(), layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
    model.fit(layer(CORPUS), np.array([0.0, 1.0, 1.0]), epochs=1, verbose=0)
    assert model.predict(layer(QUERIES), verbose=0).shape == (2, 1)


def test_config_roundtrip():
    for kw in [dict(output_sequence_length=4), dict(output_mode="tf_idf"),
               dict(ngrams=2, output_mode="count", max_tokens=9),
               dict(split=split_on_bar, standardize=dash_to_space)]:
        layer = _adapted(**kw)
        clone = TextVectorization.from_config(layer.get_config())
        assert clone.get_vocabulary() == layer.get_vocabulary()
        np.testing.assert_allclose(clone(QUERIES), layer(QUERIES))


# ---------------------------------------------------------------------------- legacy helpers


def _keras_text():
    pytest.importorskip("keras")
    from keras.src.legacy.preprocessing import text

    return text


def test_tokenizer_matches_keras():
    ktext = _keras_text()
    texts = CORPUS + ["the end, the END!", "bird bird bird"]
    for kw in [{}, {"num_words": 5}, {"num_words": 5, "oov_token": "<OOV>"},
               {"char_level": True}]:
        ours, theirs = jtext.Tokenizer(**kw), ktext.Tokenizer(**kw)
        ours.fit_on_texts(texts)
        theirs.fit_on_texts(texts)
        assert ours.word_index == theirs.word_index
        assert ours.texts_to_sequences(QUERIES) == theirs.texts_to_sequences(QUERIES)
        seqs = theirs.texts_to_sequences(texts)
        assert ours.sequences_to_texts(seqs) == theirs.sequences_to_texts(seqs)
        for mode in ["binary", "count", "freq", "tfidf"]:
            np.testing.assert_allclose(ours.texts_to_matrix(QUERIES, mode=mode),
                                       theirs.texts_to_matrix(QUERIES, mode=mode))
    clone = jtext.tokenizer_from_json(ours.to_json())
    assert clone.word_index == ours.word_index
    assert clone.texts_to_sequences(QUERIES) == ours.texts_to_sequences(QUERIES)


def test_hashing_helpers():
    ktext = _keras_text()
    text = "The quick brown fox, the lazy dog."
    assert jtext.hashing_trick(text, 50, "md5") == ktext.hashing_trick(text, 50, "md5")
    assert jtext.text_to_word_sequence(text) == ktext.text_to_word_sequence(text)
    ids = jtext.one_hot(text, 50)
    assert len(ids) == 7 and all(1 <= i < 50 for i in ids)
    assert ids[0] == ids[4]  # 'the' twice, same bucket
    assert ids == jtext.hashing_trick(text, 50, "md5")  # stable across processes


# ---------------------------------------------------------------------------- GloVe


def _glove_file(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_text("cat 1 0 0\ndog 0 1 0\nthe 0 0 1\nnew york 1 1 1\n")
    return str(path)


def test_load_glove_and_embedding_matrix(tmp_path):
    glove = embeddings.load_glove(_glove_file(tmp_path))
    assert set(glove) == {"cat", "dog", "the", "new york"}
    np.testing.assert_array_equal(glove["dog"], [0, 1, 0])
    assert glove["cat"].dtype == np.float32
    only = embeddings.load_glove(_glove_file(tmp_path), vocabulary=["cat"])
    assert list(only) == ["cat"]
    # Tokenizer-style word_index (0 reserved), cut at max_tokens as in the book.
    m = embeddings.embedding_matrix({"the": 1, "cat": 2, "zebra": 3, "dog": 4}, glove,
                                    max_tokens=4)
    np.testing.assert_array_equal(m, [[0, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0]])
    # A TextVectorization vocabulary: positions are indices.
    m = embeddings.embedding_matrix(["", "[UNK]", "dog", "cat"], glove)
    np.testing.assert_array_equal(m, [[0, 0, 0], [0, 0, 0], [0, 1, 0], [1, 0, 0]])
    with pytest.raises(FileNotFoundError, match="GloVe"):
        embeddings.load_glove(str(tmp_path / "missing.txt"))


def test_pretrained_embedding_is_frozen_through_fit(tmp_path):
    glove = embeddings.load_glove(_glove_file(tmp_path))
    vec = _adapted(output_sequence_length=3)
    emb = embeddings.pretrained_embedding(vec.get_vocabulary(), glove)
    assert emb.trainable is False
    expected = embeddings.embedding_matrix(vec.get_vocabulary(), glove)
    inp = Input((3,), dtype="int32")
    out = layers.Dense(1, activation="sigmoid")(layers.GlobalAveragePooling1D()(emb(inp)))
    model = Model(inp, out)
    assert model.count_params() == expected.size + 4
    feats = Model(inp, emb.output).predict(vec(["the cat dog"]), verbose=0)
    np.testing.assert_array_equal(feats[0], expected[[3, 6, 5]])
    model.compile("adam", "binary_crossentropy")
    model.fit(vec(CORPUS), np.array([0.0, 1.0, 1.0]), epochs=2, verbose=0)
    np.testing.assert_array_equal(emb.get_weights()[0], expected)
    assert jax.tree_util.tree_leaves(model.trainable_weights)

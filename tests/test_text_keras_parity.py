"""TextVectorization against Keras 3's own `keras.layers.TextVectorization`.

Keras's layer runs on TensorFlow (a dev dependency, `tensorflow-cpu`); without it
these tests skip. Both layers are built with the same arguments, adapted on the same
texts (the review corpus the examples ship, plus hand-written edge cases: Unicode,
punctuation, odd whitespace, reserved tokens, empty texts), and compared on
vocabulary, vocabulary size, IDF weights and outputs for every output mode.
Outputs are compared by value; dtypes are checked against the documented choice
(int64 for 'int', float32 otherwise; Keras on JAX gives int32 for all but 'tf_idf').
The deviations kept on purpose (see jaxgraph/layers/text.py) are tested at the end.
"""

import os

import numpy as np
import pytest

from jaxgraph.layers import TextVectorization

REVIEWS_TSV = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "examples", "data", "reviews.tsv")
EDGE_TEXTS = [
    "The cat sat on the mat.", "The dog sat on the log!",
    "A cat, a DOG, a bird... and  a   FISH?", "It's a dog's life: dogs & cats.",
    "Été café naïve ÉCOLE Ünïcödé", "", "   ",
    "tab\tsep\nnew line\r\nand\x0bvertical\x0cfeed  spaces ",
    "[UNK] is not special, nor is [unk]", "the the the cat",
    "nbsp\u00a0here em\u2003space ideographic\u3000space nel\x85here",
    "\u201ccurly quotes\u201d \u2014 dashes \u2013 \u00bfqu\u00e9? \u00abguillemets\u00bb "
    "a_b a-b a'b a\"b a~b a`b a|b",
    "emoji \U0001f642 stays \U0001f600\U0001f600", "Stra\u00dfe \u03a3\u038a\u03a3\u03a5 "
    "\u0130stanbul",
]
EDGE_QUERIES = [
    "the bird sat on a cat", "Dog dog!", "", "unknown words only", "Été ÉTÉ été",
    "[UNK] [unk]", "the cat sat on the mat and the dog sat on the log", "a|b a_b",
]
MODES = ["int", "multi_hot", "count", "tf_idf"]


def _reviews():
    with open(REVIEWS_TSV, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t", 1)[1] for line in f]


REVIEWS = _reviews()
CORPUS = REVIEWS[:200] + EDGE_TEXTS
QUERIES = REVIEWS[200:] + EDGE_TEXTS[:6] + EDGE_QUERIES


@pytest.fixture(scope="module")
def keras_tv():
    """Keras's TextVectorization class (imports TensorFlow, ~4 s, once per process)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    return keras.layers.TextVectorization


def lower_dashes_to_spaces(texts):
    """A `standardize` callable: both layers hand it a NumPy array of str."""
    return np.char.replace(np.char.lower(texts), "-", " ")


def split_on_bar(texts):
    """A `split` callable: Keras hands it a tf.Tensor, jaxgraph a NumPy array."""
    if isinstance(texts, np.ndarray):
        return [t.split("|") for t in texts]
    import tensorflow as tf

    return tf.strings.split(texts, "|")


def _pair(keras_tv, adapt=CORPUS, **kw):
    ours, theirs = TextVectorization(**kw), keras_tv(**kw)
    if adapt is not None:
        ours.adapt(adapt)
        theirs.adapt(adapt)
    return ours, theirs


def _keras_idf(theirs):
    return np.asarray(theirs._lookup_layer.idf_weights_const)


def _assert_same(ours, theirs, texts, mode="int"):
    vocab = [str(t) for t in theirs.get_vocabulary()]
    assert ours.get_vocabulary() == vocab
    assert ours.get_vocabulary(include_special_tokens=False) == [
        str(t) for t in theirs.get_vocabulary(include_special_tokens=False)]
    assert ours.vocabulary_size() == theirs.vocabulary_size()
    got, want = ours(texts), np.asarray(theirs(texts))
    assert got.shape == want.shape
    assert got.dtype == (np.int64 if mode == "int" else np.float32)
    if mode == "tf_idf":
        np.testing.assert_allclose(ours.idf_weights, _keras_idf(theirs), rtol=1e-6)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    else:
        np.testing.assert_array_equal(got, want)
    return got


# ---------------------------------------------------------------------------- every mode

CONFIGS = {
    "default": {},
    "max_tokens": dict(max_tokens=12),
    "bigrams": dict(ngrams=2),
    "ngrams_1_3_capped": dict(ngrams=(1, 3), max_tokens=60),
    "ngrams_only_2": dict(ngrams=(2,)),
    "lower": dict(standardize="lower"),
    "strip_punctuation": dict(standardize="strip_punctuation"),
    "no_standardize": dict(standardize=None),
    "callable_standardize": dict(standardize=lower_dashes_to_spaces),
    "character": dict(split="character"),
    "character_bigrams": dict(split="character", ngrams=2, max_tokens=80),
    "pad_to_max_tokens": dict(max_tokens=400, pad_to_max_tokens=True),
    "pad_to_max_tokens_truncated": dict(max_tokens=9, pad_to_max_tokens=True),
}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("mode", MODES)
def test_output_modes_match_keras(keras_tv, mode, config):
    ours, theirs = _pair(keras_tv, output_mode=mode, **CONFIGS[config])
    _assert_same(ours, theirs, QUERIES, mode)


@pytest.mark.parametrize("mode", MODES)
def test_split_none_on_n_by_1_batches(keras_tv, mode):
    # One token per text; shape (n, 1) as Keras needs for split=None (see the deviation
    # test below for rank-1 batches). '' is the mask token: 0 in 'int', dropped otherwise.
    texts = np.array(["Red", "green", "red", "", "Blue sky", "red"])[:, None]
    ours, theirs = _pair(keras_tv, adapt=texts[:, 0], split=None, output_mode=mode)
    _assert_same(ours, theirs, np.array(["red", "", "blue sky", "purple", "GREEN"])[:, None],
                 mode)


def test_int_padding_and_truncation(keras_tv):
    for length in [None, 1, 5, 40]:
        ours, theirs = _pair(keras_tv, output_sequence_length=length)
        _assert_same(ours, theirs, QUERIES)
        _assert_same(ours, theirs, ["", "   "])  # no tokens at all: shape (2, length or 0)
        _assert_same(ours, theirs, "the cat sat on a mat and a log")  # one string, one row


@pytest.mark.parametrize("mode", MODES)
def test_single_string_input(keras_tv, mode):
    ours, theirs = _pair(keras_tv, output_mode=mode)
    assert _assert_same(ours, theirs, "The acting was really tedious.", mode).ndim == 1
    _assert_same(ours, theirs, [["The acting"], ["was really tedious."]], mode)  # (n, 1)


def test_callable_split(keras_tv):
    texts = ["foo|bar|foo bar", "bar|Baz", "qux|foo"]
    for mode in MODES:
        ours, theirs = _pair(keras_tv, adapt=texts, split=split_on_bar, output_mode=mode)
        _assert_same(ours, theirs, ["foo|baz|nope", "bar"], mode)


def test_reserved_tokens_in_texts(keras_tv):
    # '[UNK]' and '' never enter an adapted vocabulary; '[UNK]' in a text is OOV.
    texts = ["[UNK] a b", "a [UNK]", "", "b a"]
    for mode in MODES:
        ours, theirs = _pair(keras_tv, adapt=texts, standardize=None, output_mode=mode)
        _assert_same(ours, theirs, ["[UNK] a", "c [UNK] b", ""], mode)
    ours, theirs = _pair(keras_tv, adapt=texts, standardize=None, split=None)
    _assert_same(ours, theirs, np.array(["[UNK]", "", "a", "b a"])[:, None])


def test_adapt_from_batches_with_steps(keras_tv):
    def batches():
        for i in range(0, 240, 40):
            yield REVIEWS[i:i + 40]

    for mode in ["int", "tf_idf"]:
        ours, theirs = TextVectorization(output_mode=mode), keras_tv(output_mode=mode)
        ours.adapt(batches(), steps=3)
        theirs.adapt(batches(), steps=3)
        _assert_same(ours, theirs, QUERIES, mode)


# ---------------------------------------------------------------------------- fixed vocabulary

VOCAB = ["the", "cat", "dog", "sat", "a", "[UNK]", "bird"]  # '[UNK]' mid-list: a plain term
IDF = [0.5, 1.5, 1.25, 0.75, 0.1, 3.0, 2.0]


@pytest.mark.parametrize("mode", MODES)
def test_fixed_vocabulary(keras_tv, mode):
    texts = ["the cat sat on a mat", "Dog dog!", "", "[UNK] bird"]
    special = ["", "[UNK]"] if mode == "int" else ["[UNK]"]
    idf = dict(idf_weights=IDF) if mode == "tf_idf" else {}
    idf_special = dict(idf_weights=[9.0] * len(special) + IDF) if mode == "tf_idf" else {}
    for kw in [dict(vocabulary=VOCAB, **idf),
               dict(vocabulary=special + VOCAB, **idf_special),  # reserved tokens given
               dict(vocabulary=VOCAB, max_tokens=12, pad_to_max_tokens=True, **idf),
               dict(vocabulary=np.array(VOCAB), standardize=None, **idf)]:
        ours, theirs = _pair(keras_tv, adapt=None, output_mode=mode, **kw)
        _assert_same(ours, theirs, texts, mode)
    # set_vocabulary on a layer built without one, then adapt: both allow it (Keras
    # only with a fixed output width in the bag modes; see the deviation test below).
    pad = {} if mode == "int" else dict(max_tokens=500, pad_to_max_tokens=True)
    ours, theirs = _pair(keras_tv, adapt=None, output_mode=mode, **pad)
    ours.set_vocabulary(VOCAB, **idf)
    theirs.set_vocabulary(VOCAB, **idf)
    _assert_same(ours, theirs, texts, mode)
    ours.adapt(CORPUS)
    theirs.adapt(CORPUS)
    _assert_same(ours, theirs, QUERIES, mode)


def test_vocabulary_given_at_construction_blocks_adapt(keras_tv):
    for layer in _pair(keras_tv, adapt=None, vocabulary=VOCAB):
        with pytest.raises(ValueError, match="adapt"):
            layer.adapt(CORPUS)


@pytest.mark.parametrize("mode", ["int", "multi_hot", "count"])
def test_vocabulary_file(keras_tv, mode, tmp_path):
    texts = ["foo bar", "baz [UNK] x", ""]
    for i, content in enumerate(["foo\nbar\nbaz\n", "foo\r\nbar\r\nbaz", "[UNK]\nfoo\nbar\n",
                                 " foo\nbar \n"]):
        path = tmp_path / f"vocab{i}.txt"
        path.write_bytes(content.encode("utf-8"))
        ours, theirs = _pair(keras_tv, adapt=None, vocabulary=str(path), standardize=None,
                             output_mode=mode)
        _assert_same(ours, theirs, texts, mode)
    for i, content in enumerate(["foo\n\nbar\n", "\n[UNK]\nfoo\n", "foo\nbar\n\n",
                                 "foo\nfoo\n"]):
        path = tmp_path / f"bad{i}.txt"
        path.write_bytes(content.encode("utf-8"))
        for cls in (TextVectorization, keras_tv):
            with pytest.raises(Exception):  # noqa: B017 (TF raises its own error types)
                cls(vocabulary=str(path), output_mode=mode)


# ---------------------------------------------------------------------------- one_hot, errors


def test_one_hot_with_split_none(keras_tv):
    kw = dict(output_mode="one_hot", split=None)
    for extra in [{}, dict(max_tokens=8, pad_to_max_tokens=True), dict(max_tokens=3)]:
        ours, theirs = _pair(keras_tv, adapt=["Red", "green", "red", "", "Blue sky"],
                             **kw, **extra)
        for texts in [["red", "", "blue sky", "purple", "GREEN"], [["red"], ["green"]], "red"]:
            got = _assert_same(ours, theirs, texts, "one_hot")
            assert got.ndim == 2  # a single string gives one row, as Keras
    ours, theirs = _pair(keras_tv, adapt=None, vocabulary=["x", "y"], **kw)
    _assert_same(ours, theirs, ["y", "q", "x"], "one_hot")
    with pytest.raises(ValueError, match="split=None"):
        TextVectorization(output_mode="one_hot")  # Keras accepts it, then fails on call


def test_calling_without_a_vocabulary_fails(keras_tv):
    for kw in [{}, dict(output_mode="multi_hot", max_tokens=5, pad_to_max_tokens=True)]:
        for layer in _pair(keras_tv, adapt=None, **kw):
            with pytest.raises(RuntimeError):
                layer(["some text"])


# ---------------------------------------------------------------------------- kept deviations


@pytest.mark.parametrize("mode", MODES)
def test_split_none_rank1_batch_is_one_document_per_string(keras_tv, mode):
    # jaxgraph: a rank-1 batch gives the same rows as the (n, 1) batch in both layers.
    # Keras's call reads the batch axis of a rank-1 batch as the token axis instead
    # ('int' -> shape (n,), bag modes -> one row for the whole batch), unlike its adapt.
    texts = np.array(["red", "", "blue sky", "purple"])
    ours, theirs = _pair(keras_tv, adapt=["Red", "green", "red", "Blue sky"], split=None,
                         output_mode=mode)
    want = _assert_same(ours, theirs, texts[:, None], mode)
    np.testing.assert_array_equal(ours(texts), want)


def test_adapt_on_texts_without_tokens_gives_an_empty_vocabulary():
    # Keras leaves the layer unusable here (its lookup table is never initialized).
    expected = {"int": [[1, 1], [0, 0]], "multi_hot": [[1], [0]], "count": [[2], [0]],
                "tf_idf": [[0], [0]]}  # the OOV weight is the mean of no weights: 0
    for mode in MODES:
        layer = TextVectorization(output_mode=mode)
        layer.adapt(["", "  ", "..."])
        assert layer.get_vocabulary(include_special_tokens=False) == []
        np.testing.assert_array_equal(layer(["any words", ""]), expected[mode])


@pytest.mark.parametrize("mode", ["multi_hot", "tf_idf"])
def test_bag_modes_may_change_vocabulary_size(keras_tv, mode):
    # Keras freezes the output width of the bag modes (without pad_to_max_tokens) once a
    # vocabulary is set, for its graph's static shape; a host-side layer need not.
    idf = dict(idf_weights=IDF) if mode == "tf_idf" else {}
    ours, theirs = _pair(keras_tv, adapt=None, output_mode=mode)
    ours.set_vocabulary(VOCAB, **idf)
    theirs.set_vocabulary(VOCAB, **idf)
    _assert_same(ours, theirs, ["the cat", "bird"], mode)
    ours.adapt(CORPUS)  # Keras: RuntimeError, "the vocabulary size cannot be changed"
    reference = keras_tv(output_mode=mode)
    reference.adapt(CORPUS)
    _assert_same(ours, reference, QUERIES, mode)

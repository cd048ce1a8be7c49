"""pad_sequences, to_categorical and normalize against hand results and against Keras."""

import os

import numpy as np
import pytest

from jaxgraph.preprocessing.sequence import pad_sequences
from jaxgraph.utils.data_utils import normalize, to_categorical


@pytest.fixture(scope="module")
def kutils():
    os.environ["KERAS_BACKEND"] = "jax"
    keras = pytest.importorskip("keras")
    return keras.utils


SEQS = [[1, 2, 3], [4], [], [5, 6, 7, 8, 9], [10, 11]]


def test_pad_sequences_by_hand():
    assert pad_sequences([[1, 2, 3], [4]]).tolist() == [[1, 2, 3], [0, 0, 4]]
    out = pad_sequences([[1, 2, 3], [4]], maxlen=2, padding="post", truncating="post")
    assert out.tolist() == [[1, 2], [4, 0]]
    assert pad_sequences([[1, 2, 3]], maxlen=2).tolist() == [[2, 3]]
    assert pad_sequences([[1, 2]], maxlen=0).shape == (1, 0)
    assert pad_sequences([]).shape == (0, 0)
    assert pad_sequences([[1.5]], maxlen=2, dtype="float32", value=-1.0).tolist() == [[-1, 1.5]]
    assert pad_sequences(([1], [2, 3])).dtype == np.int32


@pytest.mark.parametrize("padding", ["pre", "post"])
@pytest.mark.parametrize("truncating", ["pre", "post"])
@pytest.mark.parametrize("maxlen", [None, 1, 3, 7])
def test_pad_sequences_matches_keras(kutils, padding, truncating, maxlen):
    for dtype, value in (("int32", 0), ("float32", -1.5), ("int64", 9)):
        kwargs = {"maxlen": maxlen, "padding": padding, "truncating": truncating,
                  "dtype": dtype, "value": value}
        ours, ref = pad_sequences(SEQS, **kwargs), kutils.pad_sequences(SEQS, **kwargs)
        assert ours.dtype == ref.dtype
        np.testing.assert_array_equal(ours, ref)


def test_pad_sequences_vectors_and_arrays_match_keras(kutils):
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(n, 2)) for n in (3, 0, 1, 5)]
    for kwargs in ({"dtype": "float64"}, {"maxlen": 2, "dtype": "float32", "value": 0.5}):
        ours, ref = pad_sequences(seqs, **kwargs), kutils.pad_sequences(seqs, **kwargs)
        assert ours.shape == ref.shape and ours.dtype == ref.dtype
        np.testing.assert_array_equal(ours, ref)
    arrays = [np.arange(4), np.arange(2)]
    np.testing.assert_array_equal(pad_sequences(arrays, maxlen=3),
                                  kutils.pad_sequences(arrays, maxlen=3))


def test_pad_sequences_strings_match_keras(kutils):
    words = [["the", "cat"], ["a"], ["one", "two", "three"]]
    for kwargs in ({"dtype": object, "value": "<pad>"}, {"dtype": "<U5", "value": "_"},
                   {"dtype": object, "value": "", "maxlen": 2, "padding": "post"}):
        ours, ref = pad_sequences(words, **kwargs), kutils.pad_sequences(words, **kwargs)
        assert ours.dtype == ref.dtype
        assert ours.tolist() == ref.tolist()
    assert pad_sequences(words, dtype="object", value="-")[1].tolist() == ["-", "-", "a"]


def test_pad_sequences_errors():
    with pytest.raises(ValueError, match="padding='middle'"):
        pad_sequences(SEQS, padding="middle")
    with pytest.raises(ValueError, match="truncating='both'"):
        pad_sequences(SEQS, truncating="both")
    with pytest.raises(ValueError, match="item 1"):
        pad_sequences([[1], 2])
    with pytest.raises(ValueError, match="list of sequences"):
        pad_sequences(5)
    with pytest.raises(ValueError, match="string padding value 'x'"):
        pad_sequences([["a"]], value="x")
    with pytest.raises(ValueError, match="sequence 1"):
        pad_sequences([[[1, 2]], [[1, 2, 3]]])
    with pytest.raises(ValueError, match="maxlen"):
        pad_sequences(SEQS, maxlen=-1)


def test_to_categorical_by_hand():
    out = to_categorical([0, 2, 1])
    assert out.dtype == np.float32
    assert out.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    assert to_categorical(np.array([[1], [0]]), 3).shape == (2, 3)
    assert to_categorical([1.0, 3.0], dtype="int8").tolist() == [[0, 1, 0, 0], [0, 0, 0, 1]]
    assert to_categorical([], num_classes=4).shape == (0, 4)


@pytest.mark.parametrize(
    "y, num_classes",
    [([0, 1, 2, 3], None), ([3, 1], 6), (np.array([[2], [0], [1]]), None),
     (np.array([[0, 1], [2, 1]]), 4), (np.arange(24).reshape(2, 3, 4) % 5, None),
     (np.array([1, 0], dtype=np.uint8), 2)],
)
def test_to_categorical_matches_keras(kutils, y, num_classes):
    ours, ref = to_categorical(y, num_classes), kutils.to_categorical(y, num_classes)
    assert ours.shape == ref.shape
    np.testing.assert_array_equal(ours, ref)


def test_to_categorical_errors_name_the_label():
    with pytest.raises(ValueError, match="Label 5 is out of range for num_classes=3"):
        to_categorical([0, 5, 1], num_classes=3)
    with pytest.raises(ValueError, match="label -1"):
        to_categorical([0, -1])
    with pytest.raises(ValueError, match=r"0\.5"):
        to_categorical([1.0, 0.5])
    with pytest.raises(ValueError, match="nan"):
        to_categorical([np.nan])
    with pytest.raises(ValueError, match="dtype <U1"):
        to_categorical(["a"])
    with pytest.raises(ValueError, match="empty"):
        to_categorical([])


@pytest.mark.parametrize("order", [1, 2, np.inf])
@pytest.mark.parametrize("axis", [-1, 1])
def test_normalize_matches_keras(kutils, order, axis):
    x = np.random.default_rng(1).normal(size=(4, 5, 3))
    x[0, :, 0] = 0.0
    x[1, 2, :] = 0.0
    np.testing.assert_allclose(normalize(x, axis, order), kutils.normalize(x, axis, order),
                               rtol=1e-12)


def test_normalize_by_hand():
    x = np.array([[3.0, 0.0], [4.0, 0.0]])
    np.testing.assert_allclose(normalize(x, axis=0), [[0.6, 0.0], [0.8, 0.0]])
    np.testing.assert_allclose(normalize([[3, 4]]), [[0.6, 0.8]])
    np.testing.assert_allclose(normalize([[1, -3]], order=1), [[0.25, -0.75]])
    with pytest.raises(TypeError, match="axis"):
        normalize(x, axis=None)

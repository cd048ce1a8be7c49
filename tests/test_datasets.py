"""Dataset loaders on small files in the real formats; the network is always stubbed out."""

import gzip
import hashlib
import io
import json
import os
import pickle
import re
import urllib.error

import numpy as np
import pytest

from jaxgraph.datasets import _files, digits, fashion_mnist, imdb, mnist


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """A private JAXGRAPH_HOME and a downloader that behaves as if there were no network."""
    calls = []

    def no_network(url, timeout):
        calls.append((url, timeout))
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("JAXGRAPH_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(_files, "_open_url", no_network)
    return calls


def cache(*parts):
    return os.path.join(os.environ["JAXGRAPH_HOME"], "datasets", *parts)


def image_arrays(n_train=6, n_test=4, side=28, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def assert_same(loaded, arrays):
    (x_train, y_train), (x_test, y_test) = loaded
    for got, key in ((x_train, "x_train"), (y_train, "y_train"), (x_test, "x_test"),
                     (y_test, "y_test")):
        assert got.dtype == arrays[key].dtype
        np.testing.assert_array_equal(got, arrays[key])


# --- digits -------------------------------------------------------------------------


def test_digits_split_shapes_and_scaling():
    (x_train, y_train), (x_test, y_test) = digits.load_data()
    assert x_train.shape == (1437, 8, 8) and x_test.shape == (360, 8, 8)
    assert x_train.dtype == y_train.dtype == np.uint8
    allowed = set(np.round(np.arange(17) * 255 / 16).astype(int).tolist())
    assert set(np.unique(np.concatenate([x_train, x_test])).tolist()) <= allowed
    assert x_train.max() == 255 and x_train.min() == 0
    counts_test = np.bincount(y_test, minlength=10)
    assert counts_test.min() >= 35 and counts_test.max() <= 37  # stratified: ~20% per digit
    assert set(np.unique(y_train).tolist()) == set(range(10))
    again = digits.load_data()
    np.testing.assert_array_equal(again[0][0], x_train)
    np.testing.assert_array_equal(again[1][1], y_test)


def test_digits_are_sklearn_digits_rescaled():
    sk = pytest.importorskip("sklearn.datasets")
    ref = sk.load_digits()
    ref_rows = np.column_stack([ref.target, np.round(ref.images * 255 / 16).reshape(-1, 64)])
    (x_train, y_train), (x_test, y_test) = digits.load_data()
    rows = np.column_stack([np.concatenate([y_train, y_test]),
                            np.concatenate([x_train, x_test]).reshape(-1, 64)]).astype(int)
    np.testing.assert_array_equal(np.unique(rows, axis=0), np.unique(ref_rows, axis=0))
    assert len(rows) == len(ref_rows) == 1797


# --- mnist and the file look-up -----------------------------------------------------


def test_mnist_from_file_directory_and_cache(tmp_path):
    arrays = image_arrays()
    np.savez(tmp_path / "mnist.npz", **arrays)
    assert_same(mnist.load_data(path=tmp_path / "mnist.npz"), arrays)
    assert_same(mnist.load_data(path=str(tmp_path)), arrays)
    os.makedirs(cache())
    other = image_arrays(seed=1)
    np.savez_compressed(cache("mnist.npz"), **other)
    assert_same(mnist.load_data(), other)
    np.savez(cache("old.npz"), **arrays)
    assert_same(mnist.load_data(path="old.npz"), arrays)  # Keras-style name in the cache


def test_mnist_missing_without_network_names_file_and_directory(offline):
    with pytest.raises(FileNotFoundError) as err:
        mnist.load_data()
    message = str(err.value)
    assert "'mnist.npz'" in message and cache() + os.sep in message
    assert offline == [(mnist.ORIGIN, 10.0)]  # one attempt, with a short timeout
    assert os.listdir(cache()) == []  # no partial file left behind


def test_mnist_bad_explicit_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        mnist.load_data(path=tmp_path / "nowhere" / "mnist.npz")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "empty"))):
        os.makedirs(tmp_path / "empty")
        mnist.load_data(path=tmp_path / "empty")


def test_mnist_malformed_files(tmp_path):
    arrays = image_arrays()
    np.savez(tmp_path / "nokey.npz", x_train=arrays["x_train"], y_train=arrays["y_train"])
    with pytest.raises(ValueError, match="x_test"):
        mnist.load_data(path=tmp_path / "nokey.npz")
    np.savez(tmp_path / "short.npz", **{**arrays, "y_test": arrays["y_test"][:2]})
    with pytest.raises(ValueError, match="y_test"):
        mnist.load_data(path=tmp_path / "short.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"junk\.npz"):
        mnist.load_data(path=tmp_path / "junk.npz")


def serve(monkeypatch, payload):
    """Replace the network with one that returns `payload` and records the timeout."""
    seen = []

    def fake(url, timeout):
        seen.append((url, timeout))
        return io.BytesIO(payload)

    monkeypatch.setattr(_files, "_open_url", fake)
    return seen


def test_download_verifies_checksum_and_writes_atomically(monkeypatch):
    arrays = image_arrays()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    payload = buffer.getvalue()
    seen = serve(monkeypatch, payload)
    monkeypatch.setattr(mnist, "SHA256", hashlib.sha256(payload).hexdigest())
    assert_same(mnist.load_data(), arrays)
    assert seen == [(mnist.ORIGIN, 10.0)]
    assert os.listdir(cache()) == ["mnist.npz"]
    assert_same(mnist.load_data(), arrays)
    assert len(seen) == 1  # the second call reads the cache


def test_download_with_wrong_checksum_is_discarded(monkeypatch):
    serve(monkeypatch, b"tampered")
    with pytest.raises(ValueError, match=r"Checksum mismatch for 'mnist\.npz'"):
        mnist.load_data()
    assert os.listdir(cache()) == []


def test_download_into_explicit_directory(monkeypatch, tmp_path):
    payload = b'{"the": 1, "and": 2}'
    serve(monkeypatch, payload)
    monkeypatch.setattr(imdb, "WORD_INDEX_MD5", hashlib.md5(payload).hexdigest())
    assert imdb.get_word_index(path=tmp_path) == {"the": 1, "and": 2}
    assert (tmp_path / "imdb_word_index.json").read_bytes() == payload


# --- fashion-mnist ------------------------------------------------------------------


def write_idx(path, array):
    magic = 2049 if array.ndim == 1 else 2051
    header = b"".join(int(v).to_bytes(4, "big") for v in (magic, *array.shape))
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def write_fashion(directory, arrays):
    os.makedirs(directory, exist_ok=True)
    for key, (fname, _) in fashion_mnist.FILES.items():
        write_idx(os.path.join(directory, fname), arrays[key])


def test_fashion_mnist_idx_files(tmp_path):
    arrays = image_arrays(seed=2)
    write_fashion(tmp_path / "fm", arrays)
    assert_same(fashion_mnist.load_data(path=tmp_path / "fm"), arrays)
    write_fashion(cache("fashion-mnist"), arrays)
    assert_same(fashion_mnist.load_data(), arrays)


def test_fashion_mnist_npz(tmp_path):
    arrays = image_arrays(seed=3)
    np.savez(tmp_path / "fashion.npz", **arrays)
    assert_same(fashion_mnist.load_data(path=tmp_path / "fashion.npz"), arrays)


def test_fashion_mnist_bad_files(tmp_path):
    arrays = image_arrays()
    write_fashion(tmp_path, arrays)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(labels, "wb") as f:
        f.write((1234).to_bytes(4, "big") + bytes(8))
    with pytest.raises(ValueError, match="magic 1234"):
        fashion_mnist.load_data(path=tmp_path)
    with gzip.open(labels, "wb") as f:
        f.write((2049).to_bytes(4, "big") + (9).to_bytes(4, "big") + bytes(3))
    with pytest.raises(ValueError, match=r"header says \(9,\)"):
        fashion_mnist.load_data(path=tmp_path)


def test_fashion_mnist_missing_names_file_and_directory():
    with pytest.raises(FileNotFoundError) as err:
        fashion_mnist.load_data()
    assert "'train-labels-idx1-ubyte.gz'" in str(err.value)
    assert cache("fashion-mnist") + os.sep in str(err.value)


# --- imdb ---------------------------------------------------------------------------


def ragged(seqs):
    out = np.empty(len(seqs), dtype=object)
    for i, s in enumerate(seqs):
        out[i] = list(s)
    return out


def write_imdb(path, train, test, y_train=None, y_test=None):
    np.savez(
        path,
        x_train=ragged(train),
        y_train=np.array(y_train if y_train is not None else [i % 2 for i in range(len(train))]),
        x_test=ragged(test),
        y_test=np.array(y_test if y_test is not None else [i % 2 for i in range(len(test))]),
    )


def as_lists(x):
    return [list(s) for s in x]


def test_imdb_transformations_follow_keras_docs(tmp_path):
    """One review per split so the shuffle is trivial and each rule is visible."""
    path = tmp_path / "imdb.npz"
    write_imdb(path, [[1, 5, 2, 9]], [[3, 7]], [1], [0])
    (x, y), (xt, yt) = imdb.load_data(path=path)
    assert as_lists(x) == [[1, 4, 8, 5, 12]] and as_lists(xt) == [[1, 6, 10]]
    assert y.tolist() == [1] and yt.tolist() == [0]
    (x, _), (xt, _) = imdb.load_data(path=path, num_words=9)  # indices >= 9 -> oov 2
    assert as_lists(x) == [[1, 4, 8, 5, 2]] and as_lists(xt) == [[1, 6, 2]]
    (x, _), _ = imdb.load_data(path=path, skip_top=5)  # indices < 5 -> oov, start mark too
    assert as_lists(x) == [[2, 2, 8, 5, 12]]
    (x, _), _ = imdb.load_data(path=path, num_words=9, skip_top=5, oov_char=None)
    assert as_lists(x) == [[8, 5]]
    (x, _), _ = imdb.load_data(path=path, start_char=None, index_from=0)
    assert as_lists(x) == [[1, 5, 2, 9]]
    (x, _), (xt, _) = imdb.load_data(path=path, start_char=7, index_from=10)
    assert as_lists(x) == [[7, 11, 15, 12, 19]] and as_lists(xt) == [[7, 13, 17]]


def test_imdb_maxlen_drops_long_reviews(tmp_path):
    path = tmp_path / "imdb.npz"
    write_imdb(path, [[4, 4, 4], [4], [4, 4]], [[4], [4, 4, 4, 4]], [0, 1, 0], [1, 0])
    (x, y), (xt, yt) = imdb.load_data(path=path, maxlen=3, seed=0)
    assert sorted(len(s) for s in x) == [2]  # with the start mark: 4, 2, 3 entries; keep < 3
    assert y.tolist() == [1] and as_lists(xt) == [[1, 7]] and yt.tolist() == [1]
    with pytest.raises(ValueError, match="maxlen=2"):
        imdb.load_data(path=path, maxlen=2)


def test_imdb_shuffle_is_seeded_and_keeps_pairs(tmp_path):
    path = tmp_path / "imdb.npz"
    train = [[i] * (i + 1) for i in range(20)]
    write_imdb(path, train, train[:7], list(range(20)), list(range(7)))
    (x, y), (xt, yt) = imdb.load_data(path=path, start_char=None, index_from=0, seed=5)
    assert y.tolist() != list(range(20)) and sorted(y.tolist()) == list(range(20))
    assert all(s == [label] * (label + 1) for s, label in zip(x, y, strict=True))
    assert all(s == [label] * (label + 1) for s, label in zip(xt, yt, strict=True))
    (_, y2), _ = imdb.load_data(path=path, seed=5)
    assert y2.tolist() == y.tolist()
    assert x.dtype == object and x.shape == (20,)


def test_imdb_equal_lengths_still_give_lists(tmp_path):
    path = tmp_path / "imdb.npz"
    write_imdb(path, [[4, 5], [6, 7]], [[8, 9]])
    (x, _), (xt, _) = imdb.load_data(path=path)
    assert x.shape == (2,) and xt.shape == (1,) and xt[0] == [1, 11, 12]


def test_imdb_matches_keras(tmp_path, monkeypatch):
    os.environ["KERAS_BACKEND"] = "jax"
    pytest.importorskip("keras")
    keras_imdb = pytest.importorskip("keras.src.datasets.imdb")
    rng = np.random.default_rng(0)
    train = [rng.integers(1, 60, rng.integers(0, 15)).tolist() for _ in range(40)]
    test = [rng.integers(1, 60, rng.integers(1, 15)).tolist() for _ in range(30)]
    path = tmp_path / "imdb.npz"
    write_imdb(path, train, test, rng.integers(0, 2, 40), rng.integers(0, 2, 30))
    monkeypatch.setattr(keras_imdb, "get_file", lambda fname, origin, file_hash: str(path))
    cases = [
        {"num_words": 40},
        {"num_words": 30, "skip_top": 4, "seed": 7},
        {"num_words": 50, "maxlen": 10, "oov_char": None},
        {"num_words": 25, "start_char": None, "index_from": 0},
        {"num_words": 70, "start_char": 3, "oov_char": 9, "index_from": 5, "maxlen": 12},
    ]
    for kwargs in cases:
        ours = imdb.load_data(path=path, **kwargs)
        ref = keras_imdb.load_data(**kwargs)
        for (x, y), (kx, ky) in zip(ours, ref, strict=True):
            assert as_lists(x) == as_lists(kx), kwargs
            np.testing.assert_array_equal(y, ky)


def test_imdb_num_words_none_keeps_every_word(tmp_path):
    path = tmp_path / "imdb.npz"
    write_imdb(path, [[1, 50]], [[2]])
    (x, _), _ = imdb.load_data(path=path)
    assert as_lists(x) == [[1, 4, 53]]


class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.makedirs, (self.target,))


def test_imdb_refuses_pickled_code(tmp_path):
    target = str(tmp_path / "pwned")
    evil = np.empty(1, dtype=object)
    evil[0] = _Payload(target)
    path = tmp_path / "imdb.npz"
    np.savez(path, x_train=evil, y_train=np.zeros(1), x_test=evil, y_test=np.zeros(1))
    with pytest.raises(pickle.UnpicklingError, match="makedirs"):
        imdb.load_data(path=path)
    assert not os.path.exists(target)


def test_imdb_word_index_and_missing_files(tmp_path):
    (tmp_path / "imdb_word_index.json").write_text(json.dumps({"the": 1, "film": 19}))
    assert imdb.get_word_index(path=tmp_path / "imdb_word_index.json") == {"the": 1, "film": 19}
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"bad\.json"):
        imdb.get_word_index(path=tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match=r"'imdb_word_index\.json'"):
        imdb.get_word_index()
    with pytest.raises(FileNotFoundError, match=r"'imdb\.npz'") as err:
        imdb.load_data()
    assert cache() + os.sep in str(err.value)

"""`utils.timeseries_dataset_from_array` and `utils.text_dataset_from_directory`
against Keras 3's own functions, and both fed to fit / evaluate / predict / adapt."""

import os

import numpy as np
import pytest

import jaxgraph
from jaxgraph import Input, Model, layers
from jaxgraph.utils import (
    set_random_seed,
    text_dataset_from_directory,
    timeseries_dataset_from_array,
)
from jaxgraph.utils.dataset import BatchDataset, MappedDataset


def _keras():
    return pytest.importorskip("keras")


def _keras_tf():
    """Keras's dataset utilities build tf.data datasets: they need TensorFlow."""
    pytest.importorskip("tensorflow")
    return _keras()


def _batches(ds):
    return list(ds)


def _keras_batches(ds):
    return list(ds.as_numpy_iterator())


def _assert_same_batches(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
        assert len(a) == len(b)
        for u, v in zip(a, b):
            assert u.dtype == v.dtype and u.shape == v.shape
            np.testing.assert_array_equal(u, v)


# ------------------------------------------------------------------------------- timeseries

SERIES = np.arange(100 * 3, dtype=np.float32).reshape(100, 3)
TARGETS = np.arange(100, dtype=np.int64) * 10

CASES = [
    dict(sequence_length=10, sampling_rate=2, sequence_stride=3, batch_size=7),  # Keras's example 1
    dict(sequence_length=5, batch_size=128),
    dict(sequence_length=5, start_index=10, end_index=60, batch_size=4),
    dict(sequence_length=4, sampling_rate=3, sequence_stride=2, start_index=7, end_index=90,
         batch_size=5),
    dict(sequence_length=6, end_index=40, batch_size=3),
    dict(sequence_length=6, start_index=0, end_index=None, sequence_stride=7, batch_size=2),
    dict(sequence_length=3, start_index=95, batch_size=2),
    dict(sequence_length=5, sampling_rate=2, batch_size=None),
]


@pytest.mark.parametrize("kwargs", CASES)
@pytest.mark.parametrize("with_targets", [True, False])
def test_timeseries_batches_equal_keras(kwargs, with_targets):
    keras = _keras_tf()
    targets = TARGETS if with_targets else None
    ours = timeseries_dataset_from_array(SERIES, targets, **kwargs)
    theirs = keras.utils.timeseries_dataset_from_array(SERIES, targets, **kwargs)
    assert len(ours) == len(theirs) == ours.cardinality()
    _assert_same_batches(_batches(ours), _keras_batches(theirs))
    if with_targets:
        first = next(iter(ours))
        assert isinstance(first, tuple) and len(first) == 2
    else:
        assert isinstance(next(iter(ours)), np.ndarray)


def test_timeseries_targets_alignment_as_keras_documents():
    # Keras's example 2: the past 10 steps predict the next one; example 1's windows.
    data = np.arange(50, dtype=np.float64)
    ds = timeseries_dataset_from_array(data[:-10], data[10:], sequence_length=10, batch_size=4)
    x, y = next(iter(ds))
    np.testing.assert_array_equal(x[0], data[:10])
    assert y[0] == data[10] and x.shape == (4, 10) and y.shape == (4,)
    idx = timeseries_dataset_from_array(np.arange(99), None, sequence_length=10, sampling_rate=2,
                                        sequence_stride=3, batch_size=1000)
    windows = next(iter(idx))
    np.testing.assert_array_equal(windows[0], np.arange(0, 20, 2))
    np.testing.assert_array_equal(windows[1], np.arange(3, 23, 2))
    np.testing.assert_array_equal(windows[-1], np.arange(78, 98, 2))
    # A series that is too short for one window gives no batches (Keras: an empty dataset).
    empty = timeseries_dataset_from_array(np.arange(10), None, sequence_length=20)
    assert len(empty) == 0 and list(empty) == []


def test_timeseries_keras_empty_case():
    keras = _keras_tf()
    kwargs = dict(sequence_length=30, sampling_rate=4, batch_size=8)
    ours = timeseries_dataset_from_array(SERIES, TARGETS, **kwargs)
    theirs = keras.utils.timeseries_dataset_from_array(SERIES, TARGETS, **kwargs)
    assert len(ours) == len(theirs) == 0 and _batches(ours) == _keras_batches(theirs) == []


def _window_rows(batches):
    """Every (window, target) pair of a pass, as hashable rows, sorted."""
    rows = [tuple(x.ravel().tolist()) + (int(t),) for xb, yb in batches for x, t in zip(xb, yb)]
    return sorted(rows)


def test_timeseries_shuffle_same_windows_as_keras_reproducible_with_seed():
    keras = _keras_tf()
    kwargs = dict(sequence_length=6, sampling_rate=2, sequence_stride=2, start_index=5,
                  end_index=95, batch_size=8, shuffle=True, seed=11)
    ours = timeseries_dataset_from_array(SERIES, TARGETS, **kwargs)
    theirs = keras.utils.timeseries_dataset_from_array(SERIES, TARGETS, **kwargs)
    first = _batches(ours)
    # Keras shuffles through a tf.data buffer with TensorFlow's RNG: only the multiset of
    # (window, target) pairs and the batch sizes can be compared, not the order.
    assert _window_rows(first) == _window_rows(_keras_batches(theirs))
    assert [len(b[0]) for b in first] == [len(b[0]) for b in _keras_batches(theirs)]
    # Each window still carries its own target: targets[start] for a window at start.
    for xb, yb in first:
        np.testing.assert_array_equal(yb, TARGETS[(xb[:, 0, 0] // 3).astype(int)])
    in_order = [tuple(x.ravel()) for x in np.concatenate([b[0] for b in first])]
    assert in_order != sorted(in_order)  # shuffled
    # The same seed gives the same passes; each new pass is a new order.
    again = timeseries_dataset_from_array(SERIES, TARGETS, **kwargs)
    _assert_same_batches(_batches(again), first)
    second = _batches(ours)
    assert _window_rows(second) == _window_rows(first)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first, second))
    _assert_same_batches(_batches(again), second)


def test_timeseries_shuffle_without_seed_follows_set_random_seed():
    kwargs = dict(sequence_length=4, batch_size=16, shuffle=True)
    set_random_seed(3)
    a = np.concatenate([y for _, y in timeseries_dataset_from_array(SERIES, TARGETS, **kwargs)])
    set_random_seed(3)
    b = np.concatenate([y for _, y in timeseries_dataset_from_array(SERIES, TARGETS, **kwargs)])
    set_random_seed(4)
    c = np.concatenate([y for _, y in timeseries_dataset_from_array(SERIES, TARGETS, **kwargs)])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and sorted(a) == sorted(c) == sorted(TARGETS[:97])


def test_timeseries_batches_are_gathered_lazily_from_the_series():
    data = np.random.RandomState(0).rand(20_000, 4).astype(np.float32)
    targets = data[:, 0].copy()
    ds = timeseries_dataset_from_array(data, targets, sequence_length=50, sampling_rate=3,
                                       batch_size=64, start_index=100, end_index=19_000)
    # The dataset keeps the caller's arrays (no copy, no window matrix up front) ...
    assert np.shares_memory(ds.data, data) and np.shares_memory(ds.targets, targets)
    assert not any(isinstance(v, np.ndarray) and v.size >= data.size and v is not ds.data
                   for v in vars(ds).values())
    # ... and each batch is the fancy-indexed windows, a fresh array per batch.
    x, y = next(iter(ds))
    assert x.shape == (64, 50, 4) and not np.shares_memory(x, data)
    np.testing.assert_array_equal(x[5], data[105:105 + 150:3])
    assert y[5] == targets[105]
    # A memory-mapped series is read the same way, batch by batch.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "series.npy")
        np.save(path, data)
        mapped = np.load(path, mmap_mode="r")
        mds = timeseries_dataset_from_array(mapped, targets, sequence_length=50,
                                            sampling_rate=3, batch_size=64, start_index=100,
                                            end_index=19_000)
        assert np.shares_memory(mds.data, mapped)
        _assert_same_batches(_batches(mds)[:3], _batches(ds)[:3])
        del mds, mapped


BAD_TIMESERIES = [
    dict(start_index=-1),
    dict(start_index=100),
    dict(start_index=10, end_index=5),
    dict(end_index=100),
    dict(end_index=-3),
    dict(sampling_rate=0),
    dict(sampling_rate=100),
    dict(sequence_stride=-1),
    dict(sequence_stride=150),
]


@pytest.mark.parametrize("bad", BAD_TIMESERIES)
def test_timeseries_argument_errors_match_keras(bad):
    keras = _keras()  # the checks run before Keras touches TensorFlow
    with pytest.raises(ValueError) as theirs:
        keras.utils.timeseries_dataset_from_array(SERIES, TARGETS, sequence_length=5, **bad)
    with pytest.raises(ValueError) as ours:
        timeseries_dataset_from_array(SERIES, TARGETS, sequence_length=5, **bad)
    assert str(ours.value) == str(theirs.value)


def test_timeseries_too_few_targets_fails_when_made():
    # Keras only fails while iterating (tf.gather out of range); here when it is made.
    with pytest.raises(ValueError,
                       match=r"`targets` has 20 entries.*data\[29\] and needs targets\[29\]"):
        timeseries_dataset_from_array(SERIES, TARGETS[:20], sequence_length=5, start_index=10)


def _copy_weights(model):
    return [w.copy() for w in model.get_weights()]


def _forecaster(seq_len, features):
    inputs = Input((seq_len, features))
    x = layers.Flatten()(inputs)
    x = layers.Dense(8, activation="relu")(x)
    return Model(inputs, layers.Dense(1)(x))


def test_fit_on_a_timeseries_dataset_matches_fit_on_its_arrays():
    rng = np.random.RandomState(1)
    t = np.arange(400, dtype=np.float32)
    raw = np.stack([np.sin(t / 8), np.cos(t / 13)], axis=1) + 0.05 * rng.randn(400, 2)
    raw = raw.astype(np.float32)
    seq_len, delay = 12, 12
    # The book's Jena recipe: data[:-delay] windows, targets[delay:].
    kwargs = dict(sequence_length=seq_len, batch_size=32, shuffle=False)
    train = timeseries_dataset_from_array(raw[:-delay], raw[delay:, 0], end_index=300, **kwargs)
    val = timeseries_dataset_from_array(raw[:-delay], raw[delay:, 0], start_index=300, **kwargs)
    assert len(train) == 10 and train.num_samples == 289
    x = np.concatenate([b[0] for b in train])
    y = np.concatenate([b[1] for b in train])
    np.testing.assert_array_equal(x[17], raw[17:17 + seq_len])
    assert y[17] == raw[17 + seq_len - 1 + 1, 0]

    set_random_seed(0)
    on_ds = _forecaster(seq_len, 2)
    start = _copy_weights(on_ds)
    on_arrays = _forecaster(seq_len, 2)
    on_arrays.set_weights(start)
    for m in (on_ds, on_arrays):
        m.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
    h_ds = on_ds.fit(train, validation_data=val, epochs=4, verbose=0)
    xv = np.concatenate([b[0] for b in val])
    yv = np.concatenate([b[1] for b in val])
    h_arr = on_arrays.fit(x, y, batch_size=32, validation_data=(xv, yv), epochs=4,
                          shuffle=False, verbose=0)
    loss = h_ds.history["loss"]
    assert loss[-1] < loss[0]
    for key in ("loss", "mae", "val_loss", "val_mae"):
        np.testing.assert_allclose(h_ds.history[key], h_arr.history[key], rtol=2e-4, atol=1e-6)
    for a, b in zip(on_ds.get_weights(), on_arrays.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(on_ds.evaluate(val, verbose=0), on_ds.evaluate(xv, yv, verbose=0),
                               rtol=1e-5)
    inputs_only = timeseries_dataset_from_array(raw[:-delay], None, start_index=300, **kwargs)
    preds = on_ds.predict(inputs_only, verbose=0)
    assert preds.shape == (len(xv), 1)
    np.testing.assert_allclose(preds, on_ds.predict(val, verbose=0), rtol=1e-6)
    np.testing.assert_allclose(preds, on_ds.predict(xv, verbose=0), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------ text

POSITIVE = ["a good movie", "great acting, good plot", "wonderful and great",
            "good good good", "great fun", "touching: a good story", "superb and great",
            "good film", "caf\u00e9 sc\u00e8ne great \u00e9t\u00e9"]
NEGATIVE = ["a bad movie", "awful acting, bad plot", "terrible and awful", "bad bad bad",
            "boring", "a dull, bad story", "awful film", "bad"]


def _text_tree(tmp_path):
    """aclImdb's layout in miniature: one folder per class, plus files to skip."""
    root = tmp_path / "texts"
    for label, texts in (("pos", POSITIVE), ("neg", NEGATIVE)):
        folder = root / label
        (folder / "more").mkdir(parents=True)
        for i, text in enumerate(texts):
            where = folder / "more" if i == 1 else folder
            (where / f"{i:02d}_{label}.txt").write_text(text, encoding="utf-8")
        (folder / "notes.md").write_text("not a .txt file")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.txt").write_text("hidden class folder")
    (root / "README.TXT").write_text("top level: not in a class folder")
    return str(root)


def _decode(batches):
    """Keras's text batches hold bytes: decode them to compare with our str."""
    out = []
    for batch in batches:
        texts, rest = (batch[0], batch[1:]) if isinstance(batch, tuple) else (batch, ())
        texts = np.array([t.decode("utf-8") if isinstance(t, bytes) else t
                          for t in np.atleast_1d(texts)], dtype=object)
        out.append((texts, *rest) if rest else texts)
    return out


@pytest.mark.parametrize("label_mode", ["int", "binary", "categorical", None])
@pytest.mark.parametrize("batch_size", [4, 32])
def test_text_unshuffled_batches_equal_keras(tmp_path, label_mode, batch_size):
    keras = _keras_tf()
    root = _text_tree(tmp_path)
    kwargs = dict(label_mode=label_mode, batch_size=batch_size, shuffle=False, verbose=False)
    ours = text_dataset_from_directory(root, **kwargs)
    theirs = keras.utils.text_dataset_from_directory(root, **kwargs)
    assert ours.class_names == theirs.class_names == (["neg", "pos"] if label_mode else None)
    assert len(ours) == len(theirs) == ours.cardinality()
    got, want = _batches(ours), _decode(_keras_batches(theirs))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        a, b = (a, b) if label_mode else ((a,), (b,))
        assert a[0].dtype == object and all(isinstance(t, str) for t in a[0])
        assert a[0].tolist() == b[0].tolist()
        if label_mode:
            assert a[1].dtype == b[1].dtype and a[1].shape == b[1].shape
            np.testing.assert_array_equal(a[1], b[1])
    flat = np.concatenate([b[0] if label_mode else b for b in got]).tolist()
    # Class folders only (.md files skipped); without labels, as in Keras, the whole
    # tree: the hidden folder and the top-level file too.
    extra = [] if label_mode else ["hidden class folder", "top level: not in a class folder"]
    assert sorted(flat) == sorted(POSITIVE + NEGATIVE + extra)


def test_text_single_samples_class_names_and_explicit_labels_equal_keras(tmp_path):
    keras = _keras_tf()
    root = _text_tree(tmp_path)
    kwargs = dict(batch_size=None, shuffle=False, verbose=False, class_names=["pos", "neg"])
    ours = text_dataset_from_directory(root, **kwargs)
    theirs = keras.utils.text_dataset_from_directory(root, **kwargs)
    assert ours.class_names == theirs.class_names == ["pos", "neg"]
    pairs = [(t, int(y)) for t, y in ours]
    assert isinstance(pairs[0][0], str)
    assert pairs == [(t.decode("utf-8"), int(y)) for t, y in theirs.as_numpy_iterator()]
    assert pairs[0] == (POSITIVE[0], 0)
    # labels=[...] in the order of the file paths: the whole tree, hidden folders and
    # README.TXT included.
    n = sum(f.lower().endswith(".txt") for _, _, files in os.walk(root) for f in files)
    assert n == len(POSITIVE) + len(NEGATIVE) + 2
    labels = [i % 3 for i in range(n)]
    for mode in ("int", "categorical"):
        kw = dict(labels=labels, label_mode=mode, batch_size=5, shuffle=False, verbose=False)
        ours = text_dataset_from_directory(root, **kw)
        theirs = keras.utils.text_dataset_from_directory(root, **kw)
        assert ours.class_names == theirs.class_names == ["0", "1", "2"]
        _assert_text_batches_equal(_batches(ours), _decode(_keras_batches(theirs)))


def _assert_text_batches_equal(got, want):
    assert len(got) == len(want)
    for (ta, ya), (tb, yb) in zip(got, want):
        assert ta.tolist() == tb.tolist() and ya.dtype == yb.dtype
        np.testing.assert_array_equal(ya, yb)


def test_text_max_length_cuts_utf8_bytes_as_keras(tmp_path):
    keras = _keras_tf()
    root = _text_tree(tmp_path)
    cafe = {}
    for max_length in (3, 4, 5, 6):
        kw = dict(max_length=max_length, batch_size=64, shuffle=False, verbose=False)
        (ours, labels), = _batches(text_dataset_from_directory(root, **kw))
        (theirs, their_labels), = _keras_batches(
            keras.utils.text_dataset_from_directory(root, **kw))
        np.testing.assert_array_equal(labels, their_labels)
        # The same bytes; a character Keras's byte cut splits in two is left out here.
        assert ours.tolist() == [t.decode("utf-8", "ignore") for t in theirs]
        assert all(len(t.encode("utf-8")) <= max_length for t in ours)
        cafe[max_length] = next(t for t in ours if t.startswith("caf"))
    # 'café' is 5 bytes: its 'é' (2 bytes) is cut at 4 and left out.
    assert cafe == {3: "caf", 4: "caf", 5: "caf\u00e9", 6: "caf\u00e9 "}


def test_text_split_subsets_match_keras_membership(tmp_path):
    keras = _keras_tf()
    root = _text_tree(tmp_path)
    kw = dict(validation_split=0.3, seed=1337, batch_size=4, verbose=False)
    train, val = text_dataset_from_directory(root, subset="both", **kw)
    k_train, k_val = keras.utils.text_dataset_from_directory(root, subset="both", **kw)
    assert train.class_names == val.class_names == k_train.class_names == ["neg", "pos"]
    assert (len(train), len(val)) == (len(k_train), len(k_val)) == (3, 2)

    def pairs(batches):
        return sorted((t, int(y)) for texts, ys in batches for t, y in zip(texts, ys))

    # Both index the files and shuffle them with NumPy's RandomState(seed) before the
    # split, so each subset holds the same files. Keras then shuffles the training
    # subset through a tf.data buffer with TensorFlow's RNG, an order NumPy cannot
    # reproduce: compare the sorted (text, label) pairs of each subset.
    assert pairs(_batches(train)) == pairs(_decode(_keras_batches(k_train)))
    assert pairs(_batches(val)) == pairs(_decode(_keras_batches(k_val)))
    assert not {t for t, _ in pairs(_batches(train))} & {t for t, _ in pairs(_batches(val))}
    # The validation subset of 'both' is not shuffled: its order is Keras's too.
    _assert_text_batches_equal(_batches(val), _decode(_keras_batches(k_val)))
    # One subset at a time gives the same files as 'both'.
    alone = text_dataset_from_directory(root, subset="training", **kw)
    assert sorted(alone.file_paths) == sorted(train.file_paths)
    # Reproducible under the seed, pass for pass; every pass reshuffles.
    fresh, _ = text_dataset_from_directory(root, subset="both", **kw)
    again, _ = text_dataset_from_directory(root, subset="both", **kw)
    first, second = _batches(fresh), _batches(fresh)
    _assert_text_batches_equal(_batches(again), first)
    _assert_text_batches_equal(_batches(again), second)
    assert [b[0].tolist() for b in first] != [b[0].tolist() for b in second]
    assert pairs(first) == pairs(second) == pairs(_batches(train))


def test_text_shuffle_without_seed_follows_set_random_seed(tmp_path):
    root = _text_tree(tmp_path)

    def texts():
        ds = text_dataset_from_directory(root, batch_size=100, verbose=False)
        return next(iter(ds))[0].tolist()

    set_random_seed(5)
    a = texts()
    set_random_seed(5)
    assert texts() == a
    set_random_seed(6)
    b = texts()
    assert b != a and sorted(b) == sorted(a)


def _text_errors(root):
    return [
        dict(labels="folders"),
        dict(labels=[0, 1], class_names=["a"]),
        dict(label_mode="sparse"),
        dict(label_mode=None, class_names=["neg"]),
        dict(validation_split=1.5, subset="training", seed=1),
        dict(subset="training"),
        dict(validation_split=0.2),
        dict(validation_split=0.2, subset="train", seed=1),
        dict(validation_split=0.2, subset="both"),
        dict(class_names=["neg", "cats"]),
        dict(labels=[0, 1, 1]),
        dict(label_mode="binary", class_names=["neg"]),
    ]


def test_text_argument_errors_match_keras(tmp_path):
    keras = _keras()  # these checks all run before Keras touches TensorFlow
    root = _text_tree(tmp_path)
    for bad in _text_errors(root):
        with pytest.raises(ValueError) as theirs:
            keras.utils.text_dataset_from_directory(root, verbose=False, **bad)
        with pytest.raises(ValueError) as ours:
            text_dataset_from_directory(root, verbose=False, **bad)
        assert str(ours.value) == str(theirs.value), bad
    # An array of labels: Keras fails on `labels not in ("inferred", None)` with NumPy's
    # "truth value of an array is ambiguous"; here its own message says what to pass.
    with pytest.raises(ValueError, match="should be a list/tuple of integer labels"):
        text_dataset_from_directory(root, labels=np.array([0, 1]), verbose=False)


def test_text_no_files_errors_match_keras(tmp_path):
    keras = _keras()
    root = tmp_path / "empty"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "image.png").write_bytes(b"not text")
    cases = [dict(directory=str(root / "a")), dict(directory=str(root)),
             dict(directory=str(root), validation_split=0.5, subset="both", seed=1),
             dict(directory=str(root), validation_split=0.5, subset="validation", seed=1)]
    for kw in cases:
        with pytest.raises(ValueError) as theirs:
            keras.utils.text_dataset_from_directory(verbose=False, **kw)
        with pytest.raises(ValueError) as ours:
            text_dataset_from_directory(verbose=False, **kw)
        assert str(ours.value) == str(theirs.value)
        assert "text files found" in str(ours.value)
    # Kept on purpose: when the split rounds to 0 validation files, Keras's
    # `samples[:-0]` leaves training empty (and validation gets every file); here
    # training keeps the files and the validation subset is the empty one.
    (root / "b" / "one.txt").write_text("only one file")
    with pytest.raises(ValueError, match="No validation text files found"):
        text_dataset_from_directory(str(root), validation_split=0.5, subset="both", seed=1,
                                    verbose=False)


def test_text_map_adapt_and_bag_of_words_fit(tmp_path):
    root = _text_tree(tmp_path)
    set_random_seed(0)
    train_ds, val_ds = text_dataset_from_directory(root, batch_size=4, validation_split=0.25,
                                                   subset="both", seed=3, verbose=False)
    # The book's chapter 11 recipe.
    text_only_train_ds = train_ds.map(lambda x, y: x)
    assert isinstance(text_only_train_ds, MappedDataset)
    assert len(text_only_train_ds) == len(train_ds)
    first = next(iter(text_only_train_ds))
    assert first.dtype == object and first.shape == (4,) and isinstance(first[0], str)
    vectorizer = layers.TextVectorization(max_tokens=40, output_mode="multi_hot")
    vectorizer.adapt(text_only_train_ds)
    direct = layers.TextVectorization(max_tokens=40, output_mode="multi_hot")
    all_train = [t for batch in text_only_train_ds for t in batch]
    direct.adapt(all_train)
    assert vectorizer.get_vocabulary() == direct.get_vocabulary()
    assert {"good", "bad", "great", "awful"} <= set(vectorizer.get_vocabulary())

    bow_train = train_ds.map(lambda x, y: (vectorizer(x), y), num_parallel_calls=4)
    bow_val = val_ds.map(lambda x, y: (vectorizer(x), y))
    x0, y0 = next(iter(bow_train))
    assert x0.shape == (4, vectorizer.vocabulary_size()) and y0.dtype == np.int32
    assert len(bow_train.map(lambda x, y: y)) == len(train_ds)  # maps chain

    inputs = Input((vectorizer.vocabulary_size(),))
    hidden = layers.Dense(8, activation="relu")(inputs)
    model = Model(inputs, layers.Dense(1, activation="sigmoid")(hidden))
    model.compile(optimizer=jaxgraph.optimizers.Adam(0.03), loss="binary_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(bow_train, validation_data=bow_val, epochs=20, verbose=0)
    loss = history.history["loss"]
    assert len(loss) == 20 and loss[-1] < 0.5 * loss[0]
    assert "val_accuracy" in history.history
    _, acc = model.evaluate(bow_train, verbose=0)
    assert acc >= 0.9
    probs = model.predict(bow_val, verbose=0)
    assert probs.shape == (val_ds.num_samples, 1)
    xs = np.concatenate([vectorizer(t) for t, _ in val_ds])
    np.testing.assert_allclose(probs, model.predict(xs, verbose=0), rtol=1e-5, atol=1e-6)


def test_text_adapt_on_mapped_dataset_matches_keras_vocabulary(tmp_path):
    keras = _keras_tf()
    root = _text_tree(tmp_path)
    kw = dict(batch_size=3, shuffle=False, verbose=False)
    ours = layers.TextVectorization(max_tokens=25, output_mode="tf_idf")
    ours.adapt(text_dataset_from_directory(root, **kw).map(lambda x, y: x))
    theirs = keras.layers.TextVectorization(max_tokens=25, output_mode="tf_idf")
    theirs.adapt(keras.utils.text_dataset_from_directory(root, **kw).map(lambda x, y: x))
    assert ours.get_vocabulary() == theirs.get_vocabulary()
    np.testing.assert_allclose(ours.idf_weights,
                               np.asarray(theirs._lookup_layer.idf_weights_const), rtol=1e-5)


def test_image_dataset_shares_map_and_cardinality(tmp_path):
    from PIL import Image

    from jaxgraph.utils.image_dataset import ImageDataset

    for label, value in (("dark", 10), ("light", 240)):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(tmp_path / label / f"{i}.png")
    ds = jaxgraph.utils.image_dataset_from_directory(str(tmp_path), image_size=(4, 4),
                                                     batch_size=4, shuffle=False, verbose=False)
    assert isinstance(ds, ImageDataset) and isinstance(ds, BatchDataset)
    assert ds.map.__func__ is BatchDataset.map  # one implementation for every dataset
    assert ds.cardinality() == len(ds) == 2
    scaled = [x for x, _ in ds.map(lambda x, y: (x / 255.0, y))]
    np.testing.assert_allclose(np.concatenate(scaled)[:, 0, 0, 0],
                               np.array([10] * 3 + [240] * 3) / 255.0, rtol=1e-6)

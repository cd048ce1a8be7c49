"""Streaming metrics against Keras 3 (JAX backend): weighted batches, padding, jit, scan."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgraph.training import losses, metrics

os.environ.setdefault("KERAS_BACKEND", "jax")


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


C = 5
BATCHES = 3
BATCH = 8


def _batches(kind, seed=0):
    """Three batches of (y_true, y_pred, sample_weight); some weights are zero."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(BATCHES):
        weights = rng.choice([0.0, 0.5, 1.0, 2.0], BATCH).astype(np.float32)
        if kind == "binary":
            y_true = rng.integers(0, 2, (BATCH, 1)).astype(np.float32)
            y_pred = rng.random((BATCH, 1)).astype(np.float32)
        elif kind == "multilabel":
            y_true = rng.integers(0, 2, (BATCH, C)).astype(np.float32)
            y_pred = rng.random((BATCH, C)).astype(np.float32)
        elif kind == "sparse":
            y_true = rng.integers(0, C, (BATCH,)).astype(np.int32)
            y_pred = rng.dirichlet(np.ones(C), BATCH).astype(np.float32)
        elif kind == "categorical":
            y_true = np.eye(C, dtype=np.float32)[rng.integers(0, C, BATCH)]
            y_pred = rng.dirichlet(np.ones(C), BATCH).astype(np.float32)
        elif kind == "logits":
            y_true = np.eye(C, dtype=np.float32)[rng.integers(0, C, BATCH)]
            y_pred = (rng.normal(size=(BATCH, C)) * 2).astype(np.float32)
        elif kind == "regression":
            y_true = rng.normal(size=(BATCH, 3)).astype(np.float32)
            y_pred = rng.normal(size=(BATCH, 3)).astype(np.float32)
        elif kind == "positive":
            y_true = rng.random((BATCH, 3)).astype(np.float32) + 0.1
            y_pred = rng.random((BATCH, 3)).astype(np.float32) + 0.1
        elif kind == "exact":
            y_true = rng.integers(0, 3, (BATCH, 2)).astype(np.float32)
            y_pred = rng.integers(0, 3, (BATCH, 2)).astype(np.float32)
        else:
            raise AssertionError(kind)
        out.append((y_true, y_pred, weights))
    return out


def _stream(metric, batches, weighted=True):
    state = metric.init()
    for y_true, y_pred, weights in batches:
        state = metric.update(state, y_true, y_pred, weights if weighted else None)
    return metric.result(state)


def _keras_stream(metric, batches, weighted=True):
    for y_true, y_pred, weights in batches:
        metric.update_state(y_true, y_pred, sample_weight=weights if weighted else None)
    return np.asarray(metric.result())


CASES = [
    ("Accuracy", {}, "exact"),
    ("BinaryAccuracy", {}, "binary"),
    ("BinaryAccuracy", {"threshold": 0.3}, "multilabel"),
    ("CategoricalAccuracy", {}, "categorical"),
    ("SparseCategoricalAccuracy", {}, "sparse"),
    ("TopKCategoricalAccuracy", {"k": 2}, "categorical"),
    ("SparseTopKCategoricalAccuracy", {"k": 3}, "sparse"),
    ("MeanSquaredError", {}, "regression"),
    ("MeanAbsoluteError", {}, "regression"),
    ("MeanAbsolutePercentageError", {}, "positive"),
    ("MeanSquaredLogarithmicError", {}, "positive"),
    ("RootMeanSquaredError", {}, "regression"),
    ("CategoricalCrossentropy", {}, "categorical"),
    ("CategoricalCrossentropy", {"from_logits": True, "label_smoothing": 0.1}, "logits"),
    ("SparseCategoricalCrossentropy", {}, "sparse"),
    ("BinaryCrossentropy", {}, "binary"),
    ("KLDivergence", {}, "categorical"),
    ("CosineSimilarity", {}, "regression"),
    ("LogCoshError", {}, "regression"),
    ("Poisson", {}, "positive"),
    ("Hinge", {}, "multilabel"),
    ("AUC", {}, "binary"),
    ("AUC", {"num_thresholds": 50, "curve": "PR"}, "binary"),
    ("AUC", {"curve": "PR", "summation_method": "majoring"}, "multilabel"),
    ("AUC", {"summation_method": "minoring", "from_logits": True}, "regression"),
    ("AUC", {"thresholds": [0.1, 0.35, 0.5, 0.9]}, "binary"),
    ("AUC", {"multi_label": True, "num_labels": C}, "multilabel"),
    ("Precision", {}, "binary"),
    ("Precision", {"thresholds": [0.2, 0.5, 0.7]}, "multilabel"),
    ("Precision", {"top_k": 2}, "multilabel"),
    ("Recall", {}, "binary"),
    ("Recall", {"thresholds": [0.3, 0.6], "class_id": 1}, "multilabel"),
    ("TruePositives", {}, "binary"),
    ("FalsePositives", {"thresholds": [0.25, 0.75]}, "multilabel"),
    ("TrueNegatives", {}, "binary"),
    ("FalseNegatives", {}, "multilabel"),
]


@pytest.mark.parametrize("name,kwargs,kind", CASES)
def test_weighted_stream_matches_keras(keras, name, kwargs, kind):
    batches = _batches(kind)
    ours = _stream(getattr(metrics, name)(**kwargs), batches)
    ref = _keras_stream(getattr(keras.metrics, name)(**kwargs), batches)
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,kind", [("CategoricalAccuracy", "categorical"), ("AUC", "binary"),
                                       ("MeanSquaredError", "regression")])  # fmt: skip
def test_unweighted_stream_matches_keras(keras, name, kind):
    batches = _batches(kind, seed=3)
    ours = _stream(getattr(metrics, name)(), batches, weighted=False)
    ref = _keras_stream(getattr(keras.metrics, name)(), batches, weighted=False)
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-5, atol=1e-5)


PADDING_CASES = [
    ("BinaryAccuracy", {}, "binary"),
    ("SparseTopKCategoricalAccuracy", {"k": 2}, "sparse"),
    ("RootMeanSquaredError", {}, "regression"),
    ("CategoricalCrossentropy", {"from_logits": True}, "logits"),
    ("CosineSimilarity", {}, "regression"),
    ("AUC", {}, "binary"),
    ("AUC", {"multi_label": True, "num_labels": C, "curve": "PR"}, "multilabel"),
    ("AUC", {"thresholds": [0.1, 0.35, 0.5, 0.9]}, "binary"),
    ("Precision", {"top_k": 2}, "multilabel"),
    ("Recall", {"thresholds": [0.3, 0.6], "class_id": 1}, "multilabel"),
]


@pytest.mark.parametrize("name,kwargs,kind", PADDING_CASES)
def test_zero_weight_rows_do_not_count(name, kwargs, kind):
    """Padding rows (weight 0, even holding NaN predictions) leave the result unchanged."""
    batches = _batches(kind, seed=1)
    metric = getattr(metrics, name)(**kwargs)
    rows = [np.concatenate(x) for x in zip(*batches)]
    keep = rows[2] > 0
    kept = [(rows[0][keep], rows[1][keep], rows[2][keep])]
    padded = []
    for t, p, w in batches:
        p = p.copy()
        p[w == 0] = np.nan
        padded.append((t, p, w))
    np.testing.assert_allclose(_stream(metric, padded), _stream(metric, kept), rtol=1e-6)


def test_inside_jit_and_scan_equals_eager():
    batches = _batches("sparse", seed=2)
    stacked = [np.stack(x) for x in zip(*batches)]
    for metric in (metrics.SparseCategoricalAccuracy(), metrics.AUC(), metrics.Precision()):
        if isinstance(metric, metrics.SparseCategoricalAccuracy):
            data = batches
        else:  # a binary problem for the confusion metrics
            data = [(t % 2, p[:, :1], w) for t, p, w in batches]
        eager = _stream(metric, data)
        update = jax.jit(metric.update)
        state = metric.init()
        for y_true, y_pred, weights in data:
            state = update(state, y_true, y_pred, weights)
        np.testing.assert_allclose(metric.result(state), eager, rtol=1e-6)
        stacked = [np.stack(x) for x in zip(*data)]

        def body(state, batch, metric=metric):
            return metric.update(state, *batch), None

        scanned, _ = jax.jit(lambda s, xs, body=body: jax.lax.scan(body, s, xs))(
            metric.init(), tuple(stacked)
        )
        np.testing.assert_allclose(jax.jit(metric.result)(scanned), eager, rtol=1e-6)


def test_merge_equals_single_stream():
    batches = _batches("binary", seed=4)
    for metric in (metrics.AUC(curve="PR"), metrics.RootMeanSquaredError(), metrics.Recall()):
        whole = _stream(metric, batches)
        first = metric.init()
        second = metric.init()
        first = metric.update(first, *batches[0])
        for batch in batches[1:]:
            second = metric.update(second, *batch)
        np.testing.assert_allclose(metric.result(metric.merge(first, second)), whole, rtol=1e-6)


def test_state_is_a_pytree_of_arrays():
    for cls in (metrics.AUC, metrics.Precision, metrics.BinaryAccuracy):
        leaves = jax.tree_util.tree_leaves(cls().init())
        assert leaves and all(isinstance(x, jax.Array) for x in leaves)


@pytest.mark.parametrize(
    "identifier,loss,expected",
    [
        ("acc", "binary_crossentropy", metrics.BinaryAccuracy),
        ("accuracy", "sparse_categorical_crossentropy", metrics.SparseCategoricalAccuracy),
        ("acc", "categorical_crossentropy", metrics.CategoricalAccuracy),
        ("accuracy", losses.CategoricalCrossentropy(from_logits=True), metrics.CategoricalAccuracy),
        ("acc", losses.BinaryFocalCrossentropy(), metrics.BinaryAccuracy),
        ("ce", "sparse_categorical_crossentropy", metrics.SparseCategoricalCrossentropy),
        ("crossentropy", "binary_crossentropy", metrics.BinaryCrossentropy),
    ],
)
def test_accuracy_and_crossentropy_follow_the_loss(identifier, loss, expected):
    metric = metrics.get(identifier, loss=loss)
    assert type(metric) is expected
    assert metric.name == identifier


def test_crossentropy_metric_inherits_from_logits():
    metric = metrics.get("ce", loss=losses.CategoricalCrossentropy(from_logits=True))
    assert metric.from_logits is True


def test_accuracy_follows_shapes_like_keras_when_loss_says_nothing():
    assert type(metrics.get("acc", "mse", (None, 1))) is metrics.BinaryAccuracy
    assert type(metrics.get("acc", "mse", (None, 10))) is metrics.CategoricalAccuracy
    sparse = metrics.get("acc", None, (None, 10), y_true_shape=(100,))
    assert type(sparse) is metrics.SparseCategoricalAccuracy
    assert type(metrics.get("accuracy")) is metrics.Accuracy
    with pytest.raises(ValueError, match="crossentropy"):
        metrics.get("crossentropy")


def test_get_keeps_typed_name_and_resolves_aliases():
    assert (type(metrics.get("mae")), metrics.get("mae").name) == (metrics.MeanAbsoluteError, "mae")
    assert type(metrics.get("AUC")) is metrics.AUC and metrics.get("auc").name == "auc"
    assert type(metrics.get("top_k_categorical_accuracy")) is metrics.TopKCategoricalAccuracy
    assert type(metrics.get("logcosh")) is metrics.LogCoshError
    assert metrics.get("precision").direction == "up"
    wrapped = metrics.get(losses.huber)
    assert isinstance(wrapped, metrics.MeanMetricWrapper) and wrapped.name == "huber"
    assert metrics.get(losses.Huber(delta=2.0)).name == "huber_loss"
    with pytest.raises(ValueError, match="precision"):
        metrics.get("precission")
    with pytest.raises(TypeError):
        metrics.get(42)


def test_constructor_validation():
    with pytest.raises(ValueError, match="thresholds"):
        metrics.Precision(thresholds=[0.5, 1.5])
    with pytest.raises(ValueError, match="curve"):
        metrics.AUC(curve="XYZ")
    with pytest.raises(ValueError, match="num_labels"):
        metrics.AUC(multi_label=True)
    with pytest.raises(TypeError, match="unexpected"):
        metrics.BinaryAccuracy(treshold=0.2)


@pytest.mark.parametrize(
    "metric",
    [
        metrics.AUC(num_thresholds=30, curve="PR", name="pr"),
        metrics.Precision(thresholds=[0.3, 0.6], top_k=2),
        metrics.BinaryAccuracy(threshold=0.7, name="acc"),
        metrics.SparseCategoricalCrossentropy(from_logits=True),
        metrics.MeanMetricWrapper(losses.huber, name="hub", delta=0.5),
    ],
)
def test_serialize_round_trip(metric):
    clone = metrics.get(metrics.serialize(metric))
    assert type(clone) is type(metric) and clone.get_config() == metric.get_config()


def test_register_custom_function():
    def within_tenth(y_true, y_pred):
        return jnp.mean((jnp.abs(y_true - y_pred) < 0.1).astype(jnp.float32), axis=-1)

    metrics.register("within_tenth_for_test", within_tenth)
    metric = metrics.get("within_tenth_for_test")
    state = metric.update(metric.init(), np.zeros((4, 2)), np.array([[0, 0.05], [1, 1]] * 2))
    np.testing.assert_allclose(metric.result(state), 0.5)
    clone = metrics.get(metrics.serialize(metric))
    assert clone.fn is within_tenth
    with pytest.raises(ValueError, match="built-in"):
        metrics.register("auc", within_tenth)


def test_batch_level_function_counts_once_per_live_batch():
    metric = metrics.MeanMetricWrapper(lambda t, p: jnp.mean(p), name="mean_pred")
    state = metric.update(metric.init(), np.zeros(4), np.full(4, 2.0), np.ones(4))
    state = metric.update(state, np.zeros(4), np.full(4, 4.0))
    state = metric.update(state, np.zeros(4), np.full(4, 99.0), np.zeros(4))  # all padding
    np.testing.assert_allclose(metric.result(state), 3.0)

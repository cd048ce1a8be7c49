"""Per-sample losses against Keras 3 (JAX backend), lookup by name, and shape validation."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgraph.training import losses

os.environ.setdefault("KERAS_BACKEND", "jax")


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


RNG = np.random.default_rng(0)
B, C = 6, 4


def _probs(shape):
    x = RNG.random(shape).astype(np.float32) + 0.05
    return x / x.sum(-1, keepdims=True)


def _data(kind):
    """(y_true, y_pred) float32 pairs of the kind each loss is meant for."""
    y_true, y_pred = _raw_data(kind)
    return np.asarray(y_true, np.float32), np.asarray(y_pred, np.float32)


def _raw_data(kind):
    if kind == "regression":
        return RNG.normal(size=(B, C)).astype(np.float32), RNG.normal(size=(B, C)).astype(
            np.float32
        )
    if kind == "positive":
        return RNG.random((B, C)).astype(np.float32) * 3, RNG.random((B, C)).astype(np.float32) * 3
    if kind == "binary":
        return RNG.integers(0, 2, (B, C)).astype(np.float32), RNG.random((B, C)).astype(np.float32)
    if kind == "binary_logits":
        return RNG.integers(0, 2, (B, C)).astype(np.float32), RNG.normal(size=(B, C)) * 3
    if kind == "signed":
        return RNG.choice([-1.0, 1.0], (B, C)).astype(np.float32), RNG.normal(size=(B, C))
    if kind == "onehot":
        return np.eye(C, dtype=np.float32)[RNG.integers(0, C, B)], _probs((B, C))
    if kind == "logits":
        return np.eye(C, dtype=np.float32)[RNG.integers(0, C, B)], RNG.normal(size=(B, C)) * 3
    if kind == "distribution":
        return _probs((B, C)), _probs((B, C))
    raise AssertionError(kind)


CASES = [
    ("mean_squared_error", {}, "regression"),
    ("mean_absolute_error", {}, "regression"),
    ("mean_absolute_percentage_error", {}, "regression"),
    ("mean_squared_logarithmic_error", {}, "positive"),
    ("cosine_similarity", {}, "regression"),
    ("cosine_similarity", {"axis": 0}, "regression"),
    ("huber", {}, "regression"),
    ("huber", {"delta": 0.3}, "regression"),
    ("log_cosh", {}, "regression"),
    ("kl_divergence", {}, "distribution"),
    ("poisson", {}, "positive"),
    ("hinge", {}, "binary"),
    ("hinge", {}, "signed"),
    ("squared_hinge", {}, "binary"),
    ("squared_hinge", {}, "signed"),
    ("categorical_hinge", {}, "onehot"),
    ("categorical_crossentropy", {}, "onehot"),
    ("categorical_crossentropy", {"label_smoothing": 0.2}, "onehot"),
    ("categorical_crossentropy", {"from_logits": True}, "logits"),
    ("categorical_crossentropy", {"from_logits": True, "label_smoothing": 0.1}, "logits"),
    ("binary_crossentropy", {}, "binary"),
    ("binary_crossentropy", {"label_smoothing": 0.1}, "binary"),
    ("binary_crossentropy", {"from_logits": True}, "binary_logits"),
    ("binary_focal_crossentropy", {}, "binary"),
    ("binary_focal_crossentropy", {"apply_class_balancing": True, "gamma": 3.0}, "binary"),
    ("binary_focal_crossentropy", {"from_logits": True, "label_smoothing": 0.1}, "binary_logits"),
    ("categorical_focal_crossentropy", {}, "onehot"),
    ("categorical_focal_crossentropy", {"from_logits": True, "alpha": 0.5}, "logits"),
]


@pytest.mark.parametrize("name,kwargs,kind", CASES)
def test_function_matches_keras(keras, name, kwargs, kind):
    y_true, y_pred = _data(kind)
    ours = getattr(losses, name)(y_true, y_pred, **kwargs)
    ref = getattr(keras.losses, name)(y_true, y_pred, **kwargs)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, np.asarray(ref), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("label_shape", [(B,), (B, 1)])
def test_sparse_categorical_crossentropy(keras, from_logits, label_shape):
    labels = RNG.integers(0, C, label_shape)
    y_pred = (RNG.normal(size=(B, C)) * 3).astype(np.float32) if from_logits else _probs((B, C))
    ours = losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=from_logits)
    ref = keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=from_logits)
    assert ours.shape == (B,)
    np.testing.assert_allclose(ours, np.asarray(ref), rtol=1e-5, atol=1e-5)


def test_sparse_ignore_class_zeroes_those_samples(keras):
    labels = np.array([0, 3, -1, 2, -1, 1])
    y_pred = RNG.normal(size=(B, C)).astype(np.float32)
    ours = losses.sparse_categorical_crossentropy(labels, y_pred, True, ignore_class=-1)
    ref = keras.losses.sparse_categorical_crossentropy(labels, y_pred, True, ignore_class=-1)
    np.testing.assert_allclose(ours, np.asarray(ref), rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(ours)[labels == -1] == 0)


CLASS_CASES = [
    ("MeanSquaredError", {}, "regression"),
    ("MeanAbsoluteError", {}, "regression"),
    ("Huber", {"delta": 2.0}, "regression"),
    ("LogCosh", {}, "regression"),
    ("CosineSimilarity", {}, "regression"),
    ("KLDivergence", {}, "distribution"),
    ("CategoricalCrossentropy", {"from_logits": True, "label_smoothing": 0.1}, "logits"),
    ("BinaryCrossentropy", {"from_logits": True}, "binary"),
    ("BinaryFocalCrossentropy", {"gamma": 1.0}, "binary"),
    ("CategoricalFocalCrossentropy", {}, "onehot"),
    ("Hinge", {}, "binary"),
]


@pytest.mark.parametrize("name,kwargs,kind", CLASS_CASES)
def test_class_matches_keras_unreduced(keras, name, kwargs, kind):
    y_true, y_pred = _data(kind)
    ours = getattr(losses, name)(**kwargs)
    ref = getattr(keras.losses, name)(reduction=None, **kwargs)
    np.testing.assert_allclose(ours.call(y_true, y_pred), np.asarray(ref(y_true, y_pred)),
                               1e-5, 1e-5)
    unreduced = getattr(losses, name)(reduction=None, **kwargs)
    np.testing.assert_allclose(unreduced(y_true, y_pred), np.asarray(ref(y_true, y_pred)),
                               1e-5, 1e-5)


@pytest.mark.parametrize("name,kwargs,kind", CLASS_CASES)
def test_class_call_reduces_like_keras(keras, name, kwargs, kind):
    """Calling a Loss object gives Keras's scalar, with and without sample weights, so a
    hand-written loop can take jax.grad of it."""
    y_true, y_pred = _data(kind)
    sw = RNG.random(B).astype(np.float32)
    for reduction in ("sum_over_batch_size", "sum", "mean_with_sample_weight"):
        ours = getattr(losses, name)(reduction=reduction, **kwargs)
        ref = getattr(keras.losses, name)(reduction=reduction, **kwargs)
        for w in (None, sw):
            got = ours(y_true, y_pred, sample_weight=w)
            assert np.shape(got) == ()
            np.testing.assert_allclose(got, np.asarray(ref(y_true, y_pred, sample_weight=w)),
                                       1e-5, 1e-5, err_msg=f"{reduction}, weights {w is not None}")
    grad = jax.grad(lambda p: getattr(losses, name)(**kwargs)(y_true, p))(jnp.asarray(y_pred))
    assert grad.shape == y_pred.shape and np.all(np.isfinite(grad))


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight",
                                       "none"])
@pytest.mark.parametrize("label_shape", [(B,), (B, 4)])
def test_ignore_class_leaves_labels_out_of_the_mean(keras, reduction, label_shape):
    """Keras masks ignored labels: the mean is over the others (per token for sequences)."""
    labels = RNG.integers(0, C, label_shape)
    labels[0] = 0
    y_pred = _probs(label_shape + (C,))
    sw = RNG.random(label_shape).astype(np.float32)  # per token for sequences
    ours = losses.SparseCategoricalCrossentropy(ignore_class=0, reduction=reduction)
    ref = keras.losses.SparseCategoricalCrossentropy(ignore_class=0, reduction=reduction)
    for w in (None, sw):
        np.testing.assert_allclose(ours(labels, y_pred, sample_weight=w),
                                   np.asarray(ref(labels, y_pred, sample_weight=w)), 1e-5, 1e-6)


def test_binary_labels_meet_single_unit_output_like_compile(keras):
    """Keras's compiled loss aligns (batch,) labels with (batch, 1) outputs; so must we."""
    labels = RNG.integers(0, 2, B).astype(np.float32)
    probs = RNG.random((B, 1)).astype(np.float32)
    ref = keras.losses.BinaryCrossentropy(reduction=None)(labels, probs)
    ours = losses.binary_crossentropy(labels, probs)
    assert ours.shape == (B,)
    np.testing.assert_allclose(ours, np.asarray(ref), rtol=1e-5, atol=1e-5)
    assert losses.mean_squared_error(labels, probs).shape == (B,)


def test_per_sample_shape_keeps_time_axis(keras):
    y_true = np.eye(C, dtype=np.float32)[RNG.integers(0, C, (B, 3))]
    y_pred = _probs((B, 3, C))
    assert losses.categorical_crossentropy(y_true, y_pred).shape == (B, 3)
    ref = keras.losses.mean_squared_error(y_true, y_pred)
    np.testing.assert_allclose(losses.get("mse")(y_true, y_pred), np.asarray(ref), rtol=1e-5)


def test_jit_matches_eager():
    y_true, y_pred = _data("logits")
    loss = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    np.testing.assert_allclose(jax.jit(loss)(y_true, y_pred), loss(y_true, y_pred), rtol=1e-6)
    grads = jax.grad(lambda p: jnp.mean(losses.huber(y_true, p)))(jnp.asarray(y_pred))
    assert np.all(np.isfinite(grads))


def test_get_names_aliases_and_classes():
    assert losses.get("mse") is losses.mean_squared_error
    assert losses.get("MSE") is losses.mean_squared_error
    assert losses.get("kld") is losses.kl_divergence
    assert losses.get("kullback_leibler_divergence") is losses.kl_divergence
    assert losses.get("logcosh") is losses.log_cosh
    assert isinstance(losses.get("MeanSquaredError"), losses.MeanSquaredError)
    assert isinstance(losses.get("Huber"), losses.Huber)
    assert losses.get("huber") is losses.huber
    assert losses.get(losses.Huber) is not None
    custom = lambda y_true, y_pred: jnp.mean(y_pred - y_true, -1)  # noqa: E731
    assert losses.get(custom) is custom
    with pytest.raises(ValueError, match="mean_squared_error"):
        losses.get("mean_sqared_error")
    with pytest.raises(TypeError):
        losses.get(3)
    with pytest.raises(TypeError, match="unexpected"):
        losses.BinaryCrossentropy(from_logit=True)
    with pytest.raises(ValueError, match="reduction"):
        losses.MeanSquaredError(reduction="median")


def test_positional_arguments_follow_keras_order():
    assert losses.Huber(2.0).delta == 2.0
    loss = losses.BinaryCrossentropy(True, 0.1)
    assert loss.from_logits and loss.label_smoothing == 0.1


@pytest.mark.parametrize("cls", [c for c in losses._CLASSES if c is not losses.LossFunctionWrapper])
def test_serialize_round_trip(cls):
    loss = cls(name="my_loss")
    config = losses.serialize(loss)
    clone = losses.get(config)
    assert type(clone) is cls and clone.get_config() == loss.get_config()
    y_true, y_pred = _data("onehot")
    if cls is losses.SparseCategoricalCrossentropy:
        y_true = np.argmax(y_true, -1)
    np.testing.assert_allclose(clone(y_true, y_pred), loss(y_true, y_pred))


def test_functions_and_customs_serialize():
    assert losses.serialize(losses.poisson) == "poisson"
    assert losses.get(losses.serialize(losses.poisson)) is losses.poisson

    def scaled_mae(y_true, y_pred, scale=2.0):
        return scale * losses.mean_absolute_error(y_true, y_pred)

    losses.register("scaled_mae_for_test", scaled_mae)
    assert losses.get("scaled_mae_for_test") is scaled_mae
    wrapped = losses.LossFunctionWrapper(scaled_mae, scale=3.0)
    clone = losses.get(losses.serialize(wrapped))
    y_true, y_pred = _data("regression")
    expected = 3.0 * losses.mean_absolute_error(y_true, y_pred)
    np.testing.assert_allclose(clone.call(y_true, y_pred), expected, rtol=1e-6)
    np.testing.assert_allclose(clone(y_true, y_pred), np.mean(expected), rtol=1e-6)
    with pytest.raises(TypeError, match="register"):
        losses.serialize(lambda a, b: a - b)
    with pytest.raises(ValueError, match="built-in"):
        losses.register("mse", scaled_mae)


def test_keras_style_subclass_with_call():
    class ScaledMSE(losses.Loss):
        def __init__(self, scale=2.0, name="scaled_mse", reduction="sum_over_batch_size"):
            super().__init__(name=name, reduction=reduction)
            self.scale = scale

        def call(self, y_true, y_pred):
            return self.scale * jnp.mean(jnp.square(y_true - y_pred), axis=-1)

    y_true, y_pred = _data("regression")
    loss = ScaledMSE(3.0)
    np.testing.assert_allclose(loss.call(y_true, y_pred), 3 * losses.mse(y_true, y_pred),
                               rtol=1e-6)
    np.testing.assert_allclose(loss(y_true, y_pred), 3 * np.mean(losses.mse(y_true, y_pred)),
                               rtol=1e-6)
    assert losses.unwrap(loss) == (loss, {})
    losses.validate(loss, (8, 4), (None, 4), "out")
    with pytest.raises(ValueError, match="out"):
        losses.validate(loss, (8, 4), (None, 3), "out")


def test_crossentropy_resolution_by_shape():
    assert losses.resolve_crossentropy((None, 1), (None, 1)) is losses.binary_crossentropy
    assert losses.resolve_crossentropy((None,), (None, 10)) is (
        losses.sparse_categorical_crossentropy
    )
    assert losses.resolve_crossentropy((None, 10), (None, 10)) is losses.categorical_crossentropy
    with pytest.raises(ValueError, match="resolve_crossentropy"):
        losses.get("crossentropy")


def test_validate_accepts_compatible_shapes():
    losses.validate("sparse_categorical_crossentropy", (60000,), (None, 10), "out")
    losses.validate("sparse_categorical_crossentropy", (60000, 1), (None, 10), "out")
    losses.validate("categorical_crossentropy", (64, 10), (None, 10), "out")
    losses.validate("binary_crossentropy", (25000,), (None, 1), "out")
    losses.validate(losses.MeanSquaredError(), (8, 1), (None,), "out")
    losses.validate(losses.mse, (8, 5, 3), (None, 5, 3), "out")
    losses.validate(lambda t, p: jnp.mean((t - p) ** 2, -1), (8, 3), (None, 3), "out")


@pytest.mark.parametrize(
    "loss,y_true,y_pred,needle",
    [
        ("sparse_categorical_crossentropy", (32, 10), (None, 10), "one-hot"),
        ("categorical_crossentropy", (32,), (None, 10), "sparse_categorical_crossentropy"),
        ("categorical_crossentropy", (32, 1), (None, 10), "sparse_categorical_crossentropy"),
        ("mse", (32, 3), (None, 10), "must match"),
        ("binary_crossentropy", (32, 10), (None, 1), "must match"),
        (lambda t, p: jnp.dot(t, p), (32, 3), (None, 4), "TypeError"),
    ],
)
def test_validate_rejects_with_clear_message(loss, y_true, y_pred, needle):
    with pytest.raises(ValueError) as err:
        losses.validate(loss, y_true, y_pred, "main_output")
    message = str(err.value)
    assert "main_output" in message and needle in message
    assert str(y_pred[-1]) in message


@pytest.mark.parametrize("case", ["ignore_class", "ignore_class_sequence", "sum", "mean_sw"])
def test_compiled_loss_reduction_matches_keras_evaluate(keras, case):
    """evaluate() reports what Keras's does for a Loss object's reduction and mask, with a
    partial last batch (7 rows in batches of 3) and sample weights."""
    import jaxgraph

    rng = np.random.default_rng(5)
    seq = case == "ignore_class_sequence"
    x = rng.normal(size=(7, 5, 3) if seq else (7, 3)).astype(np.float32)
    y = rng.integers(0, 3, (7, 5) if seq else (7,))
    y.flat[::3] = 0
    sw = None if seq else rng.random(7).astype(np.float32)
    kernel = rng.normal(size=(3, 3)).astype(np.float32)
    bias = rng.normal(size=3).astype(np.float32)
    if case.startswith("ignore_class"):
        kwargs = {"ignore_class": 0}
    else:
        kwargs = {"reduction": "sum" if case == "sum" else "mean_with_sample_weight"}

    def run(lib):
        inp = lib.Input(x.shape[1:])
        dense = lib.layers.Dense(3, activation="softmax")
        model = lib.Model(inp, dense(inp))
        dense.set_weights([kernel, bias])  # the same, non-uniform, predictions in both
        model.compile(loss=lib.losses.SparseCategoricalCrossentropy(**kwargs))
        return model.evaluate(x, y, sample_weight=sw, batch_size=3, verbose=0)

    np.testing.assert_allclose(run(jaxgraph), run(keras), rtol=1e-5)

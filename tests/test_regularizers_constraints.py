"""Regularizers and constraints against Keras 3 (JAX backend) and closed-form values."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgraph import constraints as cons
from jaxgraph import regularizers as regs


@pytest.fixture(scope="module")
def keras():
    os.environ["KERAS_BACKEND"] = "jax"
    return pytest.importorskip("keras")


@pytest.fixture(scope="module")
def w():
    return jax.random.normal(jax.random.key(0), (8, 5), jnp.float32)


@pytest.fixture(scope="module")
def kernel():
    return jax.random.normal(jax.random.key(1), (3, 3, 4, 6), jnp.float32)


# ---------------------------------------------------------------------- regularizers

REG_CASES = [
    ("L1", {}), ("L1", {"l1": 0.3}), ("L2", {}), ("L2", {"l2": 1e-3}),
    ("L1L2", {}), ("L1L2", {"l1": 0.01}), ("L1L2", {"l1": 0.02, "l2": 0.5}),
    ("OrthogonalRegularizer", {}), ("OrthogonalRegularizer", {"factor": 0.5}),
    ("OrthogonalRegularizer", {"factor": 0.2, "mode": "columns"}),
]


@pytest.mark.parametrize("name, kwargs", REG_CASES)
def test_regularizer_values_and_configs_match_keras(keras, w, name, kwargs):
    ours = getattr(regs, name)(**kwargs)
    theirs = getattr(keras.regularizers, name)(**kwargs)
    np.testing.assert_allclose(ours(w), np.asarray(theirs(w)), rtol=1e-5, atol=1e-7)
    # Keras stores some factors as float32 tensors (0.01 -> 0.009999999776).
    ours_config, theirs_config = ours.get_config(), theirs.get_config()
    assert ours_config.keys() == theirs_config.keys()
    for key, value in theirs_config.items():
        expected = value if isinstance(value, str) else pytest.approx(value, rel=1e-6)
        assert ours_config[key] == expected, key
    loaded = regs.get(keras.regularizers.serialize(theirs))
    np.testing.assert_allclose(loaded(w), np.asarray(theirs(w)), rtol=1e-5, atol=1e-7)


def test_regularizer_closed_forms():
    ones = jnp.ones((5, 5))
    assert float(regs.L2(2.0)(ones)) == pytest.approx(50.0)
    assert float(regs.L1(0.01)(2.0 * ones)) == pytest.approx(0.5)
    assert float(regs.L1L2(l1=0.1, l2=0.2)(-ones)) == pytest.approx(2.5 + 5.0)
    assert float(regs.L1L2()(ones)) == 0.0
    assert float(regs.Regularizer()(ones)) == 0.0
    orth = regs.OrthogonalRegularizer(factor=1.0)
    assert float(orth(jnp.eye(4))) == pytest.approx(0.0, abs=1e-7)
    # Identical rows: every pair has |cos| = 1, so the penalty is factor * 0.5 * 2.
    assert float(orth(jnp.ones((3, 4)))) == pytest.approx(1.0, rel=1e-6)


def test_lowercase_aliases_construct_like_keras():
    assert regs.l2(0.001).get_config() == {"l2": 0.001}
    assert regs.l1(0.5).get_config() == {"l1": 0.5}
    assert regs.l1_l2(l1=0.001, l2=0.002).get_config() == {"l1": 0.001, "l2": 0.002}
    assert isinstance(regs.orthogonal_regularizer(), regs.OrthogonalRegularizer)


def test_regularizer_names():
    assert regs.get("l1").get_config() == {"l1": 0.01}
    assert regs.get("L2").get_config() == {"l2": 0.01}
    assert regs.get("L1L2").get_config() == {"l1": 0.0, "l2": 0.0}
    assert regs.get("l1_l2").get_config() == {"l1": 0.01, "l2": 0.01}  # Keras's documented form
    assert regs.get("orthogonal_regularizer").get_config() == {"factor": 0.01, "mode": "rows"}
    assert regs.get(None) is None and regs.serialize(None) is None


def test_regularizer_serialize_round_trip_is_json(w):
    for reg in [regs.L1(0.2), regs.L2(0.3), regs.L1L2(0.1, 0.4),
                regs.OrthogonalRegularizer(0.3, "columns")]:
        config = json.loads(json.dumps(regs.serialize(reg)))
        assert config["class_name"] == type(reg).__name__
        back = regs.get(config)
        assert type(back) is type(reg) and back.get_config() == reg.get_config()
        np.testing.assert_allclose(back(w), reg(w), rtol=1e-6)


def test_regularizers_are_pure_under_jit_and_grad(w):
    chosen = [regs.L1(0.1), regs.L2(0.2), regs.L1L2(0.1, 0.2), regs.OrthogonalRegularizer()]

    def penalties(v):
        return [reg(v) for reg in chosen]

    for eager, jitted in zip(penalties(w), jax.jit(penalties)(w)):
        np.testing.assert_allclose(jitted, eager, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.grad(regs.L2(0.2)))(w), 0.4 * w, rtol=1e-6)
    np.testing.assert_allclose(jax.grad(regs.L1(0.1))(w), 0.1 * jnp.sign(w), rtol=1e-6)


def test_regularizer_keeps_weight_dtype():
    half = jnp.ones((4, 4), jnp.bfloat16)
    assert regs.L2(0.1)(half).dtype == jnp.bfloat16
    assert regs.L1L2(0.1, 0.1)(half).dtype == jnp.bfloat16


def test_regularizer_errors_name_the_culprit():
    with pytest.raises(ValueError, match="l1"):
        regs.L1(-0.1)
    with pytest.raises(ValueError, match="l2"):
        regs.L2(float("nan"))
    with pytest.raises(ValueError, match="l2"):
        regs.L1L2(l2="big")
    with pytest.raises(ValueError, match="mode"):
        regs.OrthogonalRegularizer(mode="diagonal")
    with pytest.raises(ValueError, match="rank-2"):
        regs.OrthogonalRegularizer()(jnp.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="l3.*L1L2"):
        regs.get("l3")
    with pytest.raises(ValueError, match="register"):
        regs.serialize(lambda v: jnp.sum(v))
    with pytest.raises(ValueError, match="built-in"):
        regs.register("l2", regs.L1)


def test_register_custom_regularizer(w):
    @regs.register("TestMaxAbs")
    class MaxAbs(regs.Regularizer):
        def __init__(self, factor=1.0):
            self.factor = factor

        def __call__(self, x):
            return self.factor * jnp.max(jnp.abs(x))

        def get_config(self):
            return {"factor": self.factor}

    config = regs.serialize(MaxAbs(2.0))
    assert config == {"class_name": "TestMaxAbs", "config": {"factor": 2.0}}
    np.testing.assert_allclose(regs.get(config)(w), 2.0 * jnp.max(jnp.abs(w)))

    def test_sum_sq(x):
        return jnp.sum(x**2)

    regs.register("test_sum_sq", test_sum_sq)
    assert regs.get(regs.serialize(test_sum_sq)) is test_sum_sq


# ----------------------------------------------------------------------- constraints

CONSTRAINT_CASES = [
    ("MaxNorm", {}), ("MaxNorm", {"max_value": 1.5, "axis": 1}),
    ("MaxNorm", {"max_value": 3, "axis": [0, 1, 2]}), ("NonNeg", {}),
    ("UnitNorm", {}), ("UnitNorm", {"axis": 1}), ("UnitNorm", {"axis": [0, 1, 2]}),
    ("MinMaxNorm", {}), ("MinMaxNorm", {"min_value": 0.5, "max_value": 1.5, "rate": 0.7}),
    ("MinMaxNorm", {"min_value": 2.0, "max_value": 4.0, "rate": 1.0, "axis": [0, 1, 2]}),
]


@pytest.mark.parametrize("name, kwargs", CONSTRAINT_CASES)
def test_constraint_values_and_configs_match_keras(keras, w, kernel, name, kwargs):
    ours = getattr(cons, name)(**kwargs)
    theirs = getattr(keras.constraints, name)(**kwargs)
    target = kernel if isinstance(kwargs.get("axis"), list) else 3.0 * w
    np.testing.assert_allclose(ours(target), np.asarray(theirs(target)), rtol=1e-6, atol=1e-7)
    assert ours.get_config() == theirs.get_config()
    loaded = cons.get(keras.constraints.serialize(theirs))
    np.testing.assert_allclose(loaded(target), np.asarray(theirs(target)), rtol=1e-6, atol=1e-7)


def test_constraint_closed_forms(w, kernel):
    norms = np.linalg.norm(np.asarray(cons.MaxNorm(1.0)(3.0 * w)), axis=0)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    small = 1e-2 * w
    np.testing.assert_allclose(cons.MaxNorm(2.0)(small), small, rtol=1e-4)  # within bound
    unit = np.asarray(cons.UnitNorm(axis=[0, 1, 2])(kernel))
    np.testing.assert_allclose(np.sqrt((unit**2).sum(axis=(0, 1, 2))), 1.0, rtol=1e-5)
    assert float(cons.NonNeg()(w).min()) == 0.0
    np.testing.assert_array_equal(cons.Constraint()(w), w)
    # rate 0.5 moves a norm of 4 halfway to the bound of 1: 2.5.
    half = np.asarray(cons.MinMaxNorm(0.0, 1.0, rate=0.5)(jnp.array([[4.0], [0.0]])))
    np.testing.assert_allclose(half, [[2.5], [0.0]], rtol=1e-6)
    np.testing.assert_array_equal(cons.MaxNorm()(jnp.zeros((3, 2))), 0.0)  # no division by 0


def test_constraints_are_pure_under_jit(w, kernel):
    chosen = [cons.MaxNorm(1.0), cons.NonNeg(), cons.UnitNorm(1), cons.MinMaxNorm(0.5, 1.0, 0.5)]

    def project(v):
        return [c(v) for c in chosen]

    for eager, jitted in zip(project(w), jax.jit(project)(w)):
        np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-7)
    conv = jax.jit(cons.MaxNorm(2.0, axis=(0, 1, 2)))(kernel)
    np.testing.assert_allclose(conv, cons.MaxNorm(2.0, axis=[0, 1, 2])(kernel), rtol=1e-6)


def test_constraint_aliases_names_and_round_trip(keras, kernel):
    assert isinstance(cons.max_norm(3), cons.MaxNorm) and cons.max_norm(3).max_value == 3
    assert isinstance(cons.non_neg(), cons.NonNeg)
    assert isinstance(cons.unit_norm(axis=1), cons.UnitNorm)
    assert isinstance(cons.min_max_norm(0.1, 0.9), cons.MinMaxNorm)
    for name in ["max_norm", "MaxNorm", "non_neg", "NonNeg", "unit_norm", "UnitNorm",
                 "min_max_norm", "MinMaxNorm", "constraint", "Constraint"]:
        ours, theirs = cons.get(name), keras.constraints.get(name)
        assert type(ours).__name__ == type(theirs).__name__
        assert ours.get_config() == theirs.get_config()
    for con in [cons.MaxNorm(3, axis=[0, 1, 2]), cons.MinMaxNorm(0.2, 0.8, 0.5, 1),
                cons.UnitNorm(axis=-1), cons.NonNeg()]:
        config = json.loads(json.dumps(cons.serialize(con)))
        back = cons.get(config)
        assert type(back) is type(con) and back.get_config() == con.get_config()
        np.testing.assert_allclose(back(kernel), con(kernel), rtol=1e-6)
    assert cons.get(None) is None and cons.serialize(None) is None


def test_constraint_errors_and_registration(w):
    with pytest.raises(ValueError, match="max_normm.*max_norm"):
        cons.get("max_normm")
    with pytest.raises(ValueError, match="class_name"):
        cons.get({"config": {}})
    with pytest.raises(ValueError, match="register"):
        cons.serialize(lambda v: v)
    with pytest.raises(TypeError, match="name"):
        cons.register("", cons.NonNeg)

    def test_clip_unit(v):
        return jnp.clip(v, -1.0, 1.0)

    cons.register("test_clip_unit", test_clip_unit)
    assert cons.serialize(test_clip_unit) == "test_clip_unit"
    assert cons.get("test_clip_unit") is test_clip_unit
    assert float(jnp.abs(cons.get("test_clip_unit")(3.0 * w)).max()) <= 1.0


def test_penalties_count_in_evaluate_and_val_loss_as_in_keras(keras):
    """Keras adds `model.losses` in its test step too; a padded last batch (50 rows in
    batches of 32) regularizes only its real rows, per real row."""
    import jaxgraph

    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 8)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 50)]

    def build(lib):
        i = lib.Input((8,))
        h = lib.layers.Dense(16, activation="relu", kernel_regularizer=lib.regularizers.l2(0.1),
                             activity_regularizer=lib.regularizers.l1(0.01))(i)
        return lib.Model(i, lib.layers.Dense(3, activation="softmax")(h))

    km, jm = build(keras), build(jaxgraph)
    jm.set_weights(km.get_weights())
    for m in (km, jm):
        m.compile("sgd", "categorical_crossentropy")
    np.testing.assert_allclose(jm.evaluate(x, y, verbose=0), km.evaluate(x, y, verbose=0),
                               rtol=1e-6)
    np.testing.assert_allclose(jm.test_on_batch(x, y), km.test_on_batch(x, y), rtol=1e-6)
    kh = km.fit(x, y, validation_data=(x, y), batch_size=32, epochs=2, shuffle=False,
                verbose=0).history
    jh = jm.fit(x, y, validation_data=(x, y), batch_size=32, epochs=2, shuffle=False,
                verbose=0).history
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(jh[key], kh[key], rtol=1e-6)
    p = jm.predict(x, verbose=0)
    bare = -np.mean(np.sum(y * np.log(np.clip(p, 1e-7, 1)), -1))
    assert jm.evaluate(x, y, verbose=0) > bare + 0.1  # the l2 penalty alone is above 0.1

"""Initializers and activations against Keras 3 (JAX backend) and closed-form statistics."""

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgraph import activations as acts
from jaxgraph import initializers as inits

TRUNC = 0.87962566103423978  # std of a unit normal truncated at +-2


@pytest.fixture(scope="module")
def keras():
    os.environ["KERAS_BACKEND"] = "jax"
    return pytest.importorskip("keras")


# ----------------------------------------------------------------------------- fans


@pytest.mark.parametrize("shape, fans", [
    ((), (1, 1)), ((7,), (7, 7)), ((3, 5), (3, 5)),
    ((3, 16, 32), (48, 96)), ((3, 3, 16, 32), (144, 288)), ((2, 3, 3, 4, 5), (72, 90)),
])
def test_compute_fans_follows_keras_rules(shape, fans):
    assert inits.compute_fans(shape) == fans


def test_compute_fans_explicit_axes():
    assert inits.compute_fans((4, 5, 6), input_axes=[0, 1], output_axes=[2]) == (20, 6)


# ------------------------------------------------------------------ random statistics

SHAPE = (3, 3, 64, 96)  # fan_in 576, fan_out 864, 55296 samples
FAN_IN, FAN_OUT = 576, 864
FAN_AVG = (FAN_IN + FAN_OUT) / 2


def _vs(scale, fan, dist):
    """(std, bound) Keras's VarianceScaling promises for a distribution."""
    if dist == "truncated_normal":
        std = math.sqrt(scale / fan)
        return std, 2 * std / TRUNC
    if dist == "uniform":
        limit = math.sqrt(3 * scale / fan)
        return limit / math.sqrt(3), limit
    return math.sqrt(scale / fan), None


RANDOM_CASES = {
    # name: (ours, keras factory, mean, std, bound)
    "RandomNormal": (inits.RandomNormal(0.5, 0.2), lambda k: k.RandomNormal(0.5, 0.2, seed=3),
                     0.5, 0.2, None),
    "RandomUniform": (inits.RandomUniform(), lambda k: k.RandomUniform(seed=3),
                      0.0, 0.1 / math.sqrt(12), 0.05),
    "TruncatedNormal": (inits.TruncatedNormal(stddev=0.1),
                        lambda k: k.TruncatedNormal(stddev=0.1, seed=3), 0.0, 0.1 * TRUNC, 0.2),
    "GlorotUniform": (inits.GlorotUniform(), lambda k: k.GlorotUniform(seed=3),
                      0.0, *_vs(1.0, FAN_AVG, "uniform")),
    "GlorotNormal": (inits.GlorotNormal(), lambda k: k.GlorotNormal(seed=3),
                     0.0, *_vs(1.0, FAN_AVG, "truncated_normal")),
    "HeNormal": (inits.HeNormal(), lambda k: k.HeNormal(seed=3),
                 0.0, *_vs(2.0, FAN_IN, "truncated_normal")),
    "HeUniform": (inits.HeUniform(), lambda k: k.HeUniform(seed=3),
                  0.0, *_vs(2.0, FAN_IN, "uniform")),
    "LecunNormal": (inits.LecunNormal(), lambda k: k.LecunNormal(seed=3),
                    0.0, *_vs(1.0, FAN_IN, "truncated_normal")),
    "LecunUniform": (inits.LecunUniform(), lambda k: k.LecunUniform(seed=3),
                     0.0, *_vs(1.0, FAN_IN, "uniform")),
    "VS_fan_out_untruncated": (
        inits.VarianceScaling(3.0, "fan_out", "untruncated_normal"),
        lambda k: k.VarianceScaling(3.0, "fan_out", "untruncated_normal", seed=3),
        0.0, *_vs(3.0, FAN_OUT, "untruncated_normal")),
    "VS_normal_alias": (
        inits.VarianceScaling(0.5, "fan_avg", "normal"),
        lambda k: k.VarianceScaling(0.5, "fan_avg", "normal", seed=3),
        0.0, *_vs(0.5, FAN_AVG, "truncated_normal")),
}


@pytest.mark.parametrize("name", sorted(RANDOM_CASES))
def test_random_initializer_matches_closed_form(name):
    init, _, mean, std, bound = RANDOM_CASES[name]
    w = np.asarray(init(jax.random.key(0), SHAPE))
    assert w.shape == SHAPE and w.dtype == np.float32
    assert abs(w.mean() - mean) < 4 * std / math.sqrt(w.size)
    assert w.std() == pytest.approx(std, rel=0.02)
    if bound is not None:
        assert np.abs(w - mean).max() <= bound * (1 + 1e-6)
        assert np.abs(w - mean).max() > 0.95 * bound  # the full range is used


@pytest.mark.parametrize("name", sorted(RANDOM_CASES))
def test_random_initializer_matches_keras_samples(keras, name):
    init, keras_factory, mean, _, _ = RANDOM_CASES[name]
    ours = np.asarray(init(jax.random.key(1), SHAPE))
    theirs = np.asarray(keras_factory(keras.initializers)(SHAPE))
    assert ours.std() == pytest.approx(theirs.std(), rel=0.03)
    assert abs(ours.mean() - theirs.mean()) < 6 * theirs.std() / math.sqrt(theirs.size)
    assert np.abs(ours - mean).max() == pytest.approx(np.abs(theirs - mean).max(), rel=0.1)


def test_dense_shape_uses_in_out_fans():
    w = np.asarray(inits.GlorotUniform()(jax.random.key(2), (20, 40)))
    assert np.abs(w).max() <= math.sqrt(6 / 60)
    assert np.abs(w).max() > 0.95 * math.sqrt(6 / 60)


def test_random_initializers_are_deterministic_and_key_driven():
    for name in ["RandomNormal", "TruncatedNormal", "GlorotUniform", "Orthogonal"]:
        init = inits.get(name)
        a = init(jax.random.key(7), (12, 6))
        np.testing.assert_array_equal(a, init(jax.random.key(7), (12, 6)))
        assert not np.array_equal(a, init(jax.random.key(8), (12, 6)))
    legacy = jax.random.PRNGKey(7)  # raw uint32 keys work too
    assert inits.HeNormal()(legacy, (12, 6)).shape == (12, 6)


def test_seed_does_not_change_samples():
    key = jax.random.key(0)
    np.testing.assert_array_equal(inits.HeNormal(seed=1)(key, (12, 6)),
                                  inits.HeNormal(seed=2)(key, (12, 6)))


def test_initializers_work_under_jit_and_vmap():
    names = ["GlorotUniform", "HeNormal", "RandomNormal", "Orthogonal", "Zeros", "Identity"]
    chosen = [inits.get(name) for name in names]

    def init_all(key):
        return [init(key, (12, 6)) for init in chosen]

    for eager, jitted in zip(init_all(jax.random.key(3)), jax.jit(init_all)(jax.random.key(3))):
        np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-6)
    he_normal = chosen[1]
    batched = jax.vmap(lambda key: he_normal(key, (12, 6)))(jax.random.split(jax.random.key(3), 4))
    assert batched.shape == (4, 12, 6)
    assert not np.array_equal(batched[0], batched[1])  # each key its own sample


def test_dtype_is_respected():
    for name, dtype in [("glorot_uniform", jnp.bfloat16), ("he_normal", "float16"),
                        ("orthogonal", jnp.bfloat16), ("zeros", "float16")]:
        w = inits.get(name)(jax.random.key(0), (12, 6), dtype)
        assert w.dtype == jnp.dtype(dtype) and np.isfinite(np.asarray(w, np.float32)).all()


def test_random_initializer_rejects_integer_dtype_and_bad_shape():
    with pytest.raises(TypeError, match="floating"):
        inits.GlorotUniform()(jax.random.key(0), (3, 3), jnp.int32)
    with pytest.raises(ValueError, match="shape"):
        inits.GlorotUniform()(jax.random.key(0), (3, None))
    with pytest.raises(ValueError, match="mode"):
        inits.VarianceScaling(mode="fan_sum")
    with pytest.raises(ValueError, match="distribution"):
        inits.VarianceScaling(distribution="cauchy")
    with pytest.raises(ValueError, match="scale"):
        inits.VarianceScaling(scale=0.0)


# ---------------------------------------------------------------- deterministic ones


def test_constant_family_matches_keras(keras):
    k = keras.initializers
    cases = [(inits.Zeros(), k.Zeros()), (inits.Ones(), k.Ones()),
             (inits.Constant(2.5), k.Constant(2.5)), (inits.Identity(), k.Identity()),
             (inits.Identity(gain=3.0), k.Identity(gain=3.0))]
    for ours, theirs in cases:
        for shape in [(4, 6), (6, 4)]:
            np.testing.assert_array_equal(ours(jax.random.key(0), shape), theirs(shape))
    np.testing.assert_array_equal(inits.Constant(np.float32(1.5))(None, (3,)), [1.5] * 3)
    assert inits.Constant(7)(None, (2,), jnp.int32).dtype == jnp.int32


def test_identity_and_orthogonal_reject_wrong_rank():
    with pytest.raises(ValueError, match="2D"):
        inits.Identity()(None, (2, 2, 2))
    with pytest.raises(ValueError, match="rank"):
        inits.Orthogonal()(jax.random.key(0), (5,))
    with pytest.raises(ValueError, match="scalar"):
        inits.Constant([1.0, 2.0])


@pytest.mark.parametrize("shape, gain", [((10, 30), 2.5), ((3, 3, 4, 8), 1.0)])
def test_orthogonal_gives_orthonormal_rows_or_columns(shape, gain):
    w = np.asarray(inits.Orthogonal(gain=gain)(jax.random.key(4), shape), np.float64)
    flat = w.reshape(-1, shape[-1])
    gram = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
    np.testing.assert_allclose(gram, gain**2 * np.eye(gram.shape[0]), atol=1e-4 * gain**2)


def test_orthogonal_matches_keras_distribution(keras):
    ours = np.asarray(inits.Orthogonal(gain=2.0)(jax.random.key(5), (256, 128)))
    theirs = np.asarray(keras.initializers.Orthogonal(gain=2.0, seed=5)((256, 128)))
    assert ours.std() == pytest.approx(theirs.std(), rel=0.01)  # both 2 / sqrt(2)
    assert ours.std() == pytest.approx(2.0 * math.sqrt(128 / (256 * 128)), rel=0.01)


# --------------------------------------------------------------------- serialization

KERAS_INIT_NAMES = [
    "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform", "TruncatedNormal",
    "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform",
    "LecunNormal", "LecunUniform", "Orthogonal", "Identity",
]


@pytest.mark.parametrize("name", KERAS_INIT_NAMES)
def test_initializer_configs_equal_keras(keras, name):
    theirs = getattr(keras.initializers, name)()
    ours = inits.get(name)
    assert type(ours).__name__ == name
    if name == "Identity":  # Keras drops gain from Identity's config; it is kept here
        assert ours.get_config() == {"gain": 1.0} and theirs.get_config() == {}
        return
    assert ours.get_config() == theirs.get_config()
    # A Keras-serialized config (module, registered_name...) loads here.
    loaded = inits.get(keras.initializers.serialize(theirs))
    assert loaded.get_config() == theirs.get_config()


@pytest.mark.parametrize("name", [
    "glorot_uniform", "GlorotUniform", "he_normal", "lecun_uniform", "orthogonal",
    "OrthogonalInitializer", "identity", "normal", "uniform", "zero", "one",
    "truncated_normal", "variance_scaling", "random_normal", "random_uniform",
])
def test_initializer_names_resolve_like_keras(keras, name):
    assert type(inits.get(name)).__name__ == type(keras.initializers.get(name)).__name__


def test_initializer_serialize_round_trip_is_json():
    for init in [inits.VarianceScaling(2.0, "fan_out", "uniform", seed=4),
                 inits.Constant(0.3), inits.Orthogonal(gain=0.5), inits.HeUniform(seed=9),
                 inits.RandomNormal(1.0, 3.0)]:
        config = json.loads(json.dumps(inits.serialize(init)))
        back = inits.get(config)
        assert type(back) is type(init) and back.get_config() == init.get_config()
    assert inits.serialize(None) is None and inits.get(None) is None


def test_initializer_get_passes_through_and_instantiates():
    init = inits.HeNormal()
    assert inits.get(init) is init
    assert isinstance(inits.get(inits.LecunNormal), inits.LecunNormal)
    assert isinstance(inits.glorot_uniform(seed=1), inits.GlorotUniform)

    def ramp(key, shape, dtype=jnp.float32):
        return jnp.arange(math.prod(shape), dtype=dtype).reshape(shape)

    assert inits.get(ramp) is ramp
    assert isinstance(inits.get("constant"), inits.Constant)
    assert inits.get({"class_name": "Constant", "config": {"value": 2}}).value == 2


def test_initializer_errors_name_the_culprit():
    with pytest.raises(ValueError, match="glorot_uniformm.*glorot_uniform"):
        inits.get("glorot_uniformm")
    with pytest.raises(ValueError, match="class_name"):
        inits.get({"config": {}})
    with pytest.raises(ValueError, match="42"):
        inits.get(42)
    with pytest.raises(ValueError, match="register"):
        inits.serialize(lambda key, shape, dtype=None: jnp.zeros(shape))
    with pytest.raises(ValueError, match="built-in"):
        inits.register("zeros", inits.Ones)


def test_register_custom_initializer():
    @inits.register("TestScaledOnes")
    class ScaledOnes(inits.Initializer):
        def __init__(self, factor=1.0):
            self.factor = factor

        def __call__(self, key, shape, dtype=jnp.float32):
            return self.factor * jnp.ones(shape, dtype)

        def get_config(self):
            return {"factor": self.factor}

    config = inits.serialize(ScaledOnes(4.0))
    assert config == {"class_name": "TestScaledOnes", "config": {"factor": 4.0}}
    np.testing.assert_array_equal(inits.get(config)(None, (2,)), [4.0, 4.0])

    def test_half(key, shape, dtype=jnp.float32):
        return jnp.full(shape, 0.5, dtype)

    inits.register("test_half", test_half)
    assert inits.serialize(test_half) == "test_half"
    assert inits.get("test_half") is test_half


# ----------------------------------------------------------------------- activations

SIMPLE = ["relu", "relu6", "leaky_relu", "elu", "celu", "selu", "gelu", "sigmoid",
          "hard_sigmoid", "hard_silu", "hard_swish", "silu", "swish", "softmax",
          "log_softmax", "softplus", "softsign", "tanh", "exponential", "mish", "linear",
          "log_sigmoid", "hard_tanh", "tanh_shrink", "soft_shrink", "hard_shrink",
          "squareplus", "sparse_plus", "sparse_sigmoid", "glu"]


@pytest.fixture(scope="module")
def x():
    return 4.0 * jax.random.normal(jax.random.key(0), (6, 5, 8), jnp.float32)


@pytest.mark.parametrize("name", SIMPLE)
def test_activation_matches_keras(keras, x, name):
    ours = getattr(acts, name)
    theirs = getattr(keras.activations, name)
    np.testing.assert_allclose(ours(x), np.asarray(theirs(x)), rtol=1e-6, atol=1e-6)
    assert acts.get(name) is ours
    assert acts.serialize(ours) == keras.activations.serialize(theirs)


@pytest.mark.parametrize("kwargs", [
    {"negative_slope": 0.1}, {"max_value": 6.0}, {"max_value": 2.5}, {"threshold": 0.5},
    {"threshold": -0.5}, {"negative_slope": 0.3, "max_value": 3.0},
    {"negative_slope": 0.2, "threshold": 1.0}, {"max_value": 4.0, "threshold": -1.0},
    {"negative_slope": 0.05, "max_value": 6.0, "threshold": 0.7},
])
def test_relu_keyword_arguments_match_keras(keras, x, kwargs):
    expected = np.asarray(keras.activations.relu(x, **kwargs))
    np.testing.assert_allclose(acts.relu(x, **kwargs), expected, rtol=1e-6, atol=1e-6)
    jitted = jax.jit(functools.partial(acts.relu, **kwargs))(x)
    np.testing.assert_allclose(jitted, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name, kwargs", [
    ("leaky_relu", {"negative_slope": 0.01}), ("elu", {"alpha": 0.5}),
    ("gelu", {"approximate": True}), ("softmax", {"axis": 0}), ("softmax", {"axis": 1}),
    ("log_softmax", {"axis": 1}), ("celu", {"alpha": 2.0}), ("glu", {"axis": 0}),
    ("soft_shrink", {"threshold": 1.0}), ("hard_shrink", {"threshold": 1.5}),
    ("squareplus", {"b": 1.0}),
])
def test_activation_arguments_match_keras(keras, x, name, kwargs):
    expected = np.asarray(getattr(keras.activations, name)(x, **kwargs))
    np.testing.assert_allclose(getattr(acts, name)(x, **kwargs), expected, rtol=1e-6, atol=1e-6)


def test_activation_closed_forms():
    v = jnp.array([-4.0, -3.0, -1.0, 0.0, 1.0, 3.0, 8.0])
    np.testing.assert_allclose(acts.hard_sigmoid(v), np.clip(v + 3, 0, 6) / 6)
    np.testing.assert_allclose(acts.gelu(1.0), 0.5 * (1 + math.erf(1 / math.sqrt(2))),
                               rtol=1e-6)
    np.testing.assert_allclose(acts.leaky_relu(v), np.where(v > 0, v, 0.2 * v))
    np.testing.assert_allclose(acts.softmax(v).sum(), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(acts.relu(v, max_value=2.0), np.clip(v, 0, 2))


def test_activations_are_jittable_and_differentiable(x):
    fns = [acts.get(name) for name in SIMPLE]

    def outputs_and_grads(v):
        return ([fn(v) for fn in fns],
                [jax.grad(lambda u, fn=fn: jnp.sum(fn(u)))(v) for fn in fns])

    outputs, grads = jax.jit(outputs_and_grads)(x)
    for name, fn, out, grad in zip(SIMPLE, fns, outputs, grads):
        np.testing.assert_allclose(out, fn(x), rtol=1e-6, atol=1e-6, err_msg=name)
        assert np.isfinite(np.asarray(grad)).all(), name


def test_activation_get_and_serialize():
    assert acts.get(None) is acts.linear
    assert acts.get("swish") is acts.silu and acts.get("hard_swish") is acts.hard_silu
    assert acts.get(jnp.tanh) is jnp.tanh
    assert acts.get({"module": "keras.activations", "class_name": "function",
                     "config": "relu", "registered_name": "relu"}) is acts.relu
    for name in SIMPLE:
        fn = acts.get(name)
        assert acts.get(json.loads(json.dumps(acts.serialize(fn)))) is fn
    with pytest.raises(ValueError, match="rellu.*relu"):
        acts.get("rellu")
    with pytest.raises(ValueError, match="register"):
        acts.serialize(lambda v: v * 2)
    with pytest.raises(ValueError, match="3"):
        acts.get(3)
    with pytest.raises(ValueError, match="odd"):
        acts.glu(jnp.ones((2, 3)))


def test_register_custom_activation():
    def test_cube(v):
        return v**3

    acts.register("test_cube", test_cube)
    assert acts.get("test_cube") is test_cube
    assert acts.serialize(test_cube) == "test_cube"
    with pytest.raises(ValueError, match="built-in"):
        acts.register("relu", test_cube)

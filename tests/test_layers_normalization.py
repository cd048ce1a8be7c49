"""Normalization layers against Keras 3: inference, training, moving statistics, grads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxgraph as jg
from jaxgraph import layers as L

keras = pytest.importorskip("keras")

RNG = np.random.default_rng(0)
X4 = (RNG.normal(size=(4, 3, 5, 6)) * 2 + 1).astype("float32")
X2 = (RNG.normal(size=(8, 6)) * 3 - 2).astype("float32")


def _randomize(keras_layer):
    """Non-trivial weights (gamma, beta, moving stats) so every term is tested."""
    values = [RNG.uniform(0.5, 1.5, size=w.shape).astype("float32")
              for w in keras_layer.get_weights()]
    keras_layer.set_weights(values)


def _pair(make, x, randomize=True):
    ki = keras.Input(x.shape[1:])
    klayer = make(keras.layers)
    km = keras.Model(ki, klayer(ki))
    if randomize:
        _randomize(klayer)
    ji = jg.Input(x.shape[1:])
    jlayer = make(L)
    jm = jg.Model(ji, jlayer(ji))
    jm.set_weights(km.get_weights())
    assert [w.shape for w in jm.get_weights()] == [tuple(w.shape) for w in km.get_weights()]
    assert jm.count_params() == km.count_params()
    return klayer, km, jlayer, jm


def _close(a, b, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=atol, rtol=1e-5)


@pytest.mark.parametrize("x,kwargs", [
    (X2, {}),
    (X4, {}),
    (X4, {"axis": 1, "momentum": 0.9, "epsilon": 1e-2}),
    (X4, {"center": False, "scale": False}),
    (X2, {"renorm": True, "renorm_clipping": {"rmax": 1.2, "rmin": 0.9, "dmax": 0.3}}),
])
def test_batchnorm_matches_keras_in_inference_and_training(x, kwargs):
    klayer, km, jlayer, jm = _pair(lambda m: m.BatchNormalization(**kwargs), x)
    variables = jm.variables
    y, state = jm.apply(variables, x, training=False)
    _close(y, km(x, training=False))
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(
        lambda a, b: bool(jnp.all(a == b)), state, variables["state"]))

    y_train, new_state = jm.apply(variables, x, training=True)
    k_train = km(x, training=True)  # Keras updates its moving statistics in place
    _close(y_train, k_train)
    names = [w.name for w in jlayer.weights]
    for name, kw in zip(names, klayer.weights):
        if not kw.trainable:
            _close(new_state[jlayer.name][name], kw.numpy())
    assert not np.allclose(new_state[jlayer.name]["moving_mean"],
                           variables["state"][jlayer.name]["moving_mean"])


def test_batchnorm_weight_order_and_state_split():
    bn = L.BatchNormalization()
    model = jg.Model(i := jg.Input((3,)), bn(i))
    assert [w.name for w in bn.weights] == ["gamma", "beta", "moving_mean", "moving_variance"]
    variables = model.init(jax.random.key(0))
    assert sorted(variables["params"][bn.name]) == ["beta", "gamma"]
    assert sorted(variables["state"][bn.name]) == ["moving_mean", "moving_variance"]
    assert model.count_params() == 12


def test_frozen_batchnorm_runs_in_inference_mode():
    klayer, km, jlayer, jm = _pair(lambda m: m.BatchNormalization(), X2)
    klayer.trainable = False
    jlayer.trainable = False
    y, state = jm.apply(jm.variables, X2, training=True)
    _close(y, km(X2, training=True))
    _close(y, jm.apply(jm.variables, X2, training=False)[0])
    _close(state[jlayer.name]["moving_mean"], jm.variables["state"][jlayer.name]["moving_mean"])


def test_batchnorm_with_mask_matches_keras():
    tokens = np.array([[3, 5, 2, 0, 0], [1, 0, 0, 0, 0], [1, 2, 3, 4, 5]], "int32")

    def build(m, Input):
        t = Input((None,), dtype="int32")
        return t, m.BatchNormalization(momentum=0.5)(m.Embedding(8, 4, mask_zero=True)(t))

    ki, ko = build(keras.layers, keras.Input)
    km = keras.Model(ki, ko)
    ji, jo = build(L, jg.Input)
    jm = jg.Model(ji, jo)
    jm.set_weights(km.get_weights())
    y, state = jm.apply(jm.variables, tokens, training=True)
    _close(y, km(tokens, training=True))
    bn = jm.layers[-1]
    keras_bn = km.layers[-1]
    _close(state[bn.name]["moving_mean"], keras_bn.moving_mean.numpy())
    _close(state[bn.name]["moving_variance"], keras_bn.moving_variance.numpy())


def test_batchnorm_state_updates_under_jit_and_eager_call():
    bn = L.BatchNormalization(momentum=0.0)
    model = jg.Model(i := jg.Input((6,)), bn(i))
    step = jax.jit(lambda v, x: model.apply(v, x, training=True))
    _, state = step(model.variables, X2)
    _close(state[bn.name]["moving_mean"], X2.mean(0))
    _close(state[bn.name]["moving_variance"], X2.var(0), atol=1e-4)
    bn(X2, training=True)  # an eager call updates the layer's own values, as in Keras
    _close(bn.get_weights()[2], X2.mean(0))
    assert not bn.needs_rng()


def test_batchnorm_input_spec_names_layer_and_shapes():
    bn = L.BatchNormalization(name="bn_feat")
    bn(jg.Input((4,)))
    with pytest.raises(ValueError, match="bn_feat") as err:
        bn(jg.Input((5,)))
    assert "(None, 5)" in str(err.value)


@pytest.mark.parametrize("x,kwargs", [
    (X2, {}),
    (X4, {"axis": [1, 3], "epsilon": 1e-5}),
    (X4, {"axis": -2, "center": False}),
    (X4, {"rms_scaling": True}),
])
@pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`")  # Keras deprecates it
def test_layernorm_matches_keras(x, kwargs):
    _, km, _, jm = _pair(lambda m: m.LayerNormalization(**kwargs), x)
    _close(jm.apply(jm.variables, x)[0], km(x))


@pytest.mark.parametrize("kwargs", [{"groups": 2}, {"groups": -1, "epsilon": 1e-5},
                                    {"groups": 3, "axis": 1, "scale": False}])
def test_groupnorm_matches_keras(kwargs):
    _, km, layer, jm = _pair(lambda m: m.GroupNormalization(**kwargs), X4)
    _close(jm.apply(jm.variables, X4)[0], km(X4))
    assert layer.get_config()["groups"] == kwargs["groups"]


def test_groupnorm_rejects_bad_groups():
    with pytest.raises(ValueError, match="multiple"):
        L.GroupNormalization(groups=4)(jg.Input((6,)))
    with pytest.raises(ValueError, match="more than"):
        L.GroupNormalization()(jg.Input((6,)))


@pytest.mark.parametrize("axis", [-1, [1, 2]])
def test_unitnorm_matches_keras(axis):
    x = X4.copy()
    x[0, 0] = 0.0  # a zero vector stays zero instead of dividing by zero
    _, km, _, jm = _pair(lambda m: m.UnitNormalization(axis=axis), x, randomize=False)
    y = jm.apply(jm.variables, x)[0]
    _close(y, km(x))
    assert np.all(np.isfinite(y))


def test_config_round_trip():
    for layer in (L.BatchNormalization(axis=1, momentum=0.9, renorm=True),
                  L.LayerNormalization(axis=[1, 2], rms_scaling=True),
                  L.GroupNormalization(groups=-1), L.UnitNormalization(axis=[1])):
        config = layer.get_config()
        assert type(layer).from_config(config).get_config() == config


def test_gradients_are_correct():
    x = RNG.normal(size=(5, 3, 4))
    with jax.enable_x64(True):
        x = jnp.asarray(x, jnp.float64)
        for layer in (L.BatchNormalization(), L.LayerNormalization(axis=[1, 2]),
                      L.GroupNormalization(groups=2)):
            layer._maybe_build(jg.Input((3, 4)))
            values = layer.init_values(jax.random.key(1))
            w = {k: jnp.asarray(v, jnp.float64) + 0.3 for k, v in values.items()}
            if isinstance(layer, L.BatchNormalization):
                f = jax.jit(lambda w, x, layer=layer: layer.forward(w, x, training=True)[0])
            else:
                f = jax.jit(lambda w, x, layer=layer: layer.call(w, x))
            check_grads(f, (w, x), order=1, modes=["rev"])

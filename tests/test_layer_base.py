"""Layer base behaviours not covered elsewhere: Keras-style custom initializers,
lazy weights drawn from the global seed, trainable weights listing."""

import numpy as np
import pytest

from jaxgraph import Input, Model, layers
from jaxgraph.utils import set_random_seed


def test_keras_style_initializer_callable():
    dense = layers.Dense(3, kernel_initializer=lambda shape, dtype=None: np.full(shape, 2.0))
    i = Input(shape=(2,))
    Model(i, dense(i))
    np.testing.assert_array_equal(dense.get_weights()[0], np.full((2, 3), 2.0))


def test_lazy_weights_follow_set_random_seed():
    def build():
        i = Input(shape=(4,))
        return Model(i, layers.Dense(2)(layers.Dense(3)(i)))

    set_random_seed(42)
    a = build().get_weights()
    set_random_seed(42)
    b = build().get_weights()
    set_random_seed(43)
    c = build().get_weights()
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a[0], c[0])


def test_frozen_layer_weights_move_to_non_trainable():
    i = Input(shape=(4,))
    d = layers.Dense(2)
    model = Model(i, d(i))
    assert len(model.trainable_weights) == 2 and not model.non_trainable_weights
    d.trainable = False
    assert not model.trainable_weights and len(model.non_trainable_weights) == 2
    assert [w.path for w in model.weights] == [f"{d.name}/kernel", f"{d.name}/bias"]


def test_weight_creation_program_is_shared_by_architecture(monkeypatch):
    """Models of one architecture reuse one compiled weight-creation program; the values
    are the same as an unshared program's, and the cache stays bounded."""
    import collections

    import jax.numpy as jnp
    import numpy as np

    from jaxgraph import Input, Model, layers
    from jaxgraph.lowering import executor
    from jaxgraph.utils import set_random_seed

    monkeypatch.setattr(executor, "_INIT_PROGRAMS", collections.OrderedDict())

    def build(units=8, init="glorot_uniform"):
        inp = Input((4,))
        return Model(inp, layers.Dense(units, kernel_initializer=init)(inp))

    def weights(model):  # model.variables creates all missing weights in one program
        assert model.variables["params"]
        return model.get_weights()

    set_random_seed(0)
    first = weights(build())
    other = weights(build())
    assert len(executor._INIT_PROGRAMS) == 1
    assert not np.allclose(first[0], other[0])  # the same program, fresh keys
    executor._INIT_PROGRAMS.clear()  # an unshared program gives the very same values
    set_random_seed(0)
    np.testing.assert_array_equal(weights(build())[0], first[0])

    weights(build(units=16))
    assert len(executor._INIT_PROGRAMS) == 2
    ones = build(init=lambda key, shape, dtype=jnp.float32: jnp.ones(shape, dtype))
    np.testing.assert_array_equal(weights(ones)[0], np.ones((4, 8)))
    assert len(executor._INIT_PROGRAMS) == 2  # a custom initializer is never shared

    monkeypatch.setattr(executor, "_INIT_PROGRAMS_MAX", 2)
    weights(build(units=3))
    assert len(executor._INIT_PROGRAMS) == 2


def test_accelerator_weights_are_drawn_on_the_host(monkeypatch):
    """On an accelerator, weights are drawn by a host program (compiled in a fraction of
    the time) and moved once; the values equal drawing them on the device, and they
    land uncommitted on the default device. Past the size limit they are drawn where
    they live."""
    import jax

    from jaxgraph.lowering import executor

    def build():
        inp = Input((6,))
        x = layers.Dense(5)(inp)
        return Model(inp, layers.BatchNormalization()(x))

    set_random_seed(3)
    model = build()
    assert model.variables["params"]  # all weights drawn by one program, as below
    reference = model.get_weights()

    calls = []
    real = executor._host_device

    def as_if_gpu(layers_):
        monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
        try:
            dev = real(layers_)
        finally:
            monkeypatch.undo()
        calls.append(dev)
        return dev

    monkeypatch.setattr(executor, "_host_device", as_if_gpu)
    set_random_seed(3)
    model = build()
    values = model.variables["params"]
    assert calls == [jax.devices("cpu")[0]]
    leaf = jax.tree_util.tree_leaves(values)[0]
    assert not leaf.committed and leaf.devices() == {jax.devices()[0]}
    for got, want in zip(model.get_weights(), reference):
        np.testing.assert_array_equal(got, want)

    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(executor, "HOST_INIT_MAX_ELEMENTS", 10)
    big = build()
    assert executor._host_device([layer for layer in big.layers if layer.built]) is None
    monkeypatch.setattr(executor, "HOST_INIT_MAX_ELEMENTS", 1 << 26)
    assert executor._host_device(big.layers) == jax.devices("cpu")[0]


# ---------------------------------------------------------------------------- build()


def _keras():
    return pytest.importorskip("keras")


def test_direct_build_leaves_the_layer_usable_like_keras():
    keras = _keras()
    ours, theirs = layers.Dense(3), keras.layers.Dense(3)
    ours.build((None, 4))
    theirs.build((None, 4))
    assert ours.built and theirs.built
    assert len(ours.get_weights()) == len(theirs.get_weights()) == 2
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
    ours.set_weights(theirs.get_weights())
    x = np.arange(8, dtype="float32").reshape(2, 4)
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), rtol=1e-6)
    assert len(ours.weights) == 2  # calling did not build (declare weights) again
    # ... and it takes part in a graph with the weights it already has.
    i = Input(shape=(4,))
    model = Model(i, ours(i))
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(theirs(x)), rtol=1e-6)


def test_direct_build_for_layers_with_and_without_their_own_build():
    act = layers.Activation("relu")  # inherits Layer.build
    act.build((None, 4))
    assert act.built and act.get_weights() == []
    lstm = layers.LSTM(2)  # builds an inner cell
    lstm.build((None, 5, 3))
    assert lstm.built
    assert [w.shape for w in lstm.get_weights()] == [(3, 8), (2, 8), (8,)]
    assert np.asarray(lstm(np.ones((1, 5, 3), "float32"))).shape == (1, 2)
    bidi = layers.Bidirectional(layers.GRU(2))
    bidi.build((None, 5, 3))
    assert bidi.built and len(bidi.get_weights()) == 6
    mha = layers.MultiHeadAttention(2, 4)  # build(query_shape, value_shape)
    mha.build((None, 5, 8), (None, 5, 8))
    assert mha.built and len(mha.get_weights()) == 8


def test_failed_build_leaves_the_layer_unbuilt():
    dense = layers.Dense(2)
    with pytest.raises(ValueError, match="known last dimension"):
        dense.build((None, None))
    assert not dense.built and not dense.weights
    dense.build((None, 3))
    assert dense.built and [w.shape for w in dense.weights] == [(3, 2), (2,)]


def test_single_input_layer_called_on_a_list_names_layer_and_inputs():
    keras = _keras()
    i1, i2 = Input(shape=(3,)), Input(shape=(3,))
    with pytest.raises(ValueError, match=r"expects 1 input"):
        keras.layers.Dense(2)([keras.Input((3,)), keras.Input((3,))])
    pattern = r"'two_in' \(Dense\) expects 1 input.*received 2 input tensors.*\(None, 3\)"
    with pytest.raises(ValueError, match=pattern):
        layers.Dense(2, name="two_in")([i1, i2])
    for layer in (layers.Flatten(), layers.Embedding(5, 2), layers.Conv1D(2, 2)):
        with pytest.raises(ValueError, match=r"expects 1 input.*received 2 input tensors"):
            layer([i1, i2])
    # A layer without an InputSpec that fails on the list still says what it received.
    with pytest.raises(ValueError, match=r"received, with shapes \[\(None, 3\), \(None, 3\)\]"):
        layers.LayerNormalization()([i1, i2])
    # Eagerly too, also once built.
    dense = layers.Dense(2)
    dense(np.ones((1, 3), "float32"))
    with pytest.raises(ValueError, match="expects 1 input.*received 2"):
        dense([np.ones((1, 3), "float32"), np.ones((1, 3), "float32")])

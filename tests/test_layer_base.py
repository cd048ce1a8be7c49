"""Layer base behaviours not covered elsewhere: Keras-style custom initializers,
lazy weights drawn from the global seed, trainable weights listing."""

import numpy as np

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

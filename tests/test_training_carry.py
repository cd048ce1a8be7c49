"""The `training` value carried through Keras's call context, against Keras 3 itself.

Keras's `Layer.__call__` resolves `training` (the argument given, else the context's
value when not None, else the default of the layer's `call`) and writes it back to the
call context, so the layers called after it in the same outermost call see it. In a
graph model the nodes of a plain call also keep the value their layer resolved when the
graph was built (its own default, when not None): a graph's Dropout keeps False after a
RandomFlip, while a BatchNormalization, a nested model or a Keras-style layer (default
None) takes the value the layers before it left. Checked with deterministic outcomes:
whether a Dropout drops, whether a RandomFlip flips, and BatchNormalization outputs
(batch or moving statistics) compared to Keras's with the same weights.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph as jg

keras = pytest.importorskip("keras")


def _distinct(n=32):
    """Positive images whose horizontal flip differs from them."""
    return np.arange(1, n * 4 * 6 + 1, dtype="float32").reshape(n, 4, 6, 1)


def _symmetric(n=16, seed=0):
    """Images constant along the width: a horizontal flip leaves their values as they
    are, so outputs compare exactly with Keras's whatever flips either library draws."""
    rng = np.random.default_rng(seed)
    cols = rng.uniform(1.0, 5.0, size=(n, 4, 1, 2)) * np.array([1.0, 3.0])
    return np.repeat(cols, 6, axis=2).astype("float32")


def _dropped(out) -> bool:
    return float(np.mean(np.asarray(out) == 0)) > 0.2


def _flipped(out, x) -> bool:
    return not np.allclose(np.asarray(out), x)


def _bn_weights(seed=1):
    """BatchNormalization weights far from the batch statistics of `_symmetric`."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.5, 2.0, 2).astype("float32"), rng.normal(size=2).astype("float32"),
            np.array([-1.0, 7.0], "float32"), np.array([0.5, 4.0], "float32")]


def _matched(build, weights=None):
    km, jm = build(keras), build(jg)
    if weights is not None:
        km.set_weights(weights)
    jm.set_weights(km.get_weights())
    return km, jm


# ------------------------------------------------------------------ graph models


@pytest.mark.parametrize("flip_first", [True, False], ids=["flip_dropout", "dropout_flip"])
def test_sequential_of_random_flip_and_dropout_matches_keras(flip_first):
    def build(lib):
        flip, drop = lib.layers.RandomFlip("horizontal"), lib.layers.Dropout(0.5)
        return lib.Sequential([flip, drop] if flip_first else [drop, flip])

    x = _distinct()
    k_out, j_out = np.asarray(build(keras)(x)), np.asarray(build(jg)(x))
    assert _dropped(j_out) == _dropped(k_out)
    assert _flipped(j_out, x) == _flipped(k_out, x)
    # Either way the graph's nodes keep their own defaults (Keras records them when the
    # Sequential builds): the flip flips, the Dropout does not drop.
    assert not _dropped(j_out) and _flipped(j_out, x)


def _flip_then_norm(lib):
    inputs = lib.Input((4, 6, 2))
    flipped = lib.layers.RandomFlip("horizontal")(inputs)
    return lib.Model(inputs, lib.layers.BatchNormalization(momentum=0.5)(flipped))


def _norm_only(lib):
    inputs = lib.Input((4, 6, 2))
    return lib.Model(inputs, lib.layers.BatchNormalization(momentum=0.5)(inputs))


def test_batchnorm_after_random_flip_takes_batch_statistics_as_in_keras():
    x = _symmetric()
    km, jm = _matched(_flip_then_norm, _bn_weights())
    before = [w.copy() for w in jm.get_weights()]
    k_out, j_out = np.asarray(km(x)), np.asarray(jm(x))
    np.testing.assert_allclose(j_out, k_out, rtol=1e-4, atol=1e-4)
    # Batch statistics: each channel comes out with mean beta.
    np.testing.assert_allclose(j_out.mean(axis=(0, 1, 2)), _bn_weights()[1], atol=1e-3)
    # ... and the moving statistics moved, in both libraries alike.
    for a, b in zip(jm.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert not np.allclose(jm.get_weights()[2], before[2])
    # predict and training=False keep to the moving statistics.
    np.testing.assert_allclose(jm.predict(x, verbose=0), km.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(jm(x, training=False)),
                               np.asarray(km(x, training=False)), rtol=1e-4, atol=1e-4)


def test_batchnorm_alone_infers_and_keeps_its_statistics_as_in_keras():
    x = _symmetric()
    km, jm = _matched(_norm_only, _bn_weights())
    before = jm.get_weights()
    np.testing.assert_allclose(np.asarray(jm(x)), np.asarray(km(x)), rtol=1e-4, atol=1e-4)
    for a, b, was in zip(jm.get_weights(), km.get_weights(), before):
        np.testing.assert_array_equal(a, was)
        np.testing.assert_allclose(a, b)


def test_branches_run_in_keras_order_so_a_sibling_sees_the_flip():
    # The walk from the output meets the BatchNormalization first, but Keras runs the
    # deeper branch's RandomFlip first: the BatchNormalization then sees True.
    def build(lib):
        L = lib.layers
        inputs = lib.Input((4, 6, 2))
        norm = L.BatchNormalization(name="norm")(inputs)
        flipped = L.Identity(name="ident")(L.RandomFlip("horizontal", name="flip")(inputs))
        return lib.Model(inputs, L.Concatenate(name="cat")([norm, flipped]))

    x = _symmetric()
    km, jm = _matched(build, _bn_weights())
    assert [n.layer.name for n in jm._nodes_in_order][0] == "norm"
    assert [n.layer.name for n in jm._run_order][0] == "flip"
    k_out, j_out = np.asarray(km(x)), np.asarray(jm(x))
    np.testing.assert_allclose(j_out, k_out, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(j_out[..., :2].mean(axis=(0, 1, 2)), _bn_weights()[1],
                               atol=1e-3)


def test_nested_sequential_and_inner_model_take_the_carried_value():
    def with_sequential(lib):
        inputs = lib.Input((4, 6, 1))
        inner = lib.Sequential([lib.Input((4, 6, 1)), lib.layers.Dropout(0.5)])
        return lib.Model(inputs, inner(lib.layers.RandomFlip("horizontal")(inputs)))

    def without_flip(lib):
        inputs = lib.Input((4, 6, 1))
        inner = lib.Sequential([lib.Input((4, 6, 1)), lib.layers.Dropout(0.5)])
        return lib.Model(inputs, inner(inputs))

    x = _distinct()
    for build, drops in ((with_sequential, True), (without_flip, False)):
        k_out, j_out = np.asarray(build(keras)(x)), np.asarray(build(jg)(x))
        assert _dropped(j_out) == _dropped(k_out) == drops, build.__name__

    def inner_model(lib):  # a functional model used as a layer
        inner_in = lib.Input((4, 6, 2))
        inner = lib.Model(inner_in, lib.layers.BatchNormalization(momentum=0.5)(inner_in))
        inputs = lib.Input((4, 6, 2))
        return lib.Model(inputs, inner(lib.layers.RandomFlip("horizontal")(inputs)))

    x = _symmetric()
    km, jm = _matched(inner_model, _bn_weights())
    np.testing.assert_allclose(np.asarray(jm(x)), np.asarray(km(x)), rtol=1e-4, atol=1e-4)
    for a, b in zip(jm.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_a_node_called_with_more_than_one_tensor_follows_the_context():
    # Keras keeps the resolved value only in the node of a one-tensor call: a Dropout
    # after a layer that leaves True keeps its False, an Attention called on a list
    # follows the True and drops attention weights.
    def classes(lib):
        class Trains(lib.layers.Layer):
            def call(self, inputs, training=True):
                return inputs

        return Trains

    def dropout(lib):
        inputs = lib.Input((6, 4))
        return lib.Model(inputs, lib.layers.Dropout(0.5)(classes(lib)()(inputs)))

    def attention(lib, setter=True):
        inputs = lib.Input((6, 4))
        h = classes(lib)()(inputs) if setter else inputs
        return lib.Model(inputs, lib.layers.Attention(dropout=0.9)([h, h]))

    x = np.random.default_rng(0).uniform(1, 2, size=(8, 6, 4)).astype("float32")
    k_out, j_out = np.asarray(dropout(keras)(x)), np.asarray(dropout(jg)(x))
    assert not _dropped(j_out) and not _dropped(k_out)
    for lib in (keras, jg):
        model, plain = attention(lib), attention(lib, setter=False)
        plain.set_weights(model.get_weights())
        assert not np.allclose(np.asarray(model(x)), np.asarray(plain(x))), lib.__name__
        np.testing.assert_allclose(np.asarray(model(x, training=False)), np.asarray(plain(x)),
                                   rtol=1e-5)


def test_a_node_given_training_none_resets_the_context_as_in_keras():
    def build(lib):
        L = lib.layers
        inputs = lib.Input((4, 6, 2))
        h = L.Dropout(0.5)(L.RandomFlip("horizontal")(inputs), training=None)
        return lib.Model(inputs, L.BatchNormalization(momentum=0.5)(h))

    x = _symmetric()
    km, jm = _matched(build, _bn_weights())
    before = jm.get_weights()
    np.testing.assert_allclose(np.asarray(jm(x)), np.asarray(km(x)), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(jm.get_weights()[2], before[2])  # moving statistics
    np.testing.assert_allclose(jm.get_weights()[2], km.get_weights()[2])


def test_explicit_training_still_decides():
    inputs = jg.Input((4, 6, 1))
    inner = jg.Sequential([jg.Input((4, 6, 1)), jg.layers.Dropout(0.5)])
    model = jg.Model(inputs, inner(jg.layers.RandomFlip("horizontal")(inputs)))
    x = _distinct()
    out = np.asarray(model(x, training=False))
    np.testing.assert_array_equal(out, x)
    assert _dropped(model(x, training=True))
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)
    out, _ = model.apply(model.variables, x)  # apply's default is training=False
    np.testing.assert_array_equal(np.asarray(out), x)


# ------------------------------------------------------------------ Keras-style layers and models


def _context_classes(lib):
    L = lib.layers

    class OwnsDropout(L.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.drop = L.Dropout(0.5)

        def call(self, inputs):
            return self.drop(inputs)

    class OwnsFlip(L.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.flip = L.RandomFlip("horizontal")

        def call(self, inputs):
            return self.flip(inputs)

    def then_flip(first):
        class ThenFlip(L.Layer):
            """A layer whose `call` has no training default resolves None and leaves the
            context alone: the flip after it still flips."""

            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.first = first()
                self.flip = L.RandomFlip("horizontal")

            def call(self, inputs):
                return self.first(inputs), self.flip(inputs)

        return ThenFlip

    return (OwnsDropout, OwnsFlip, then_flip(lambda: L.Dense(3)),
            then_flip(L.BatchNormalization))


def test_keras_style_layer_owning_dropout_follows_a_flip_before_it():
    x = _distinct()
    for flip_first in (True, False):
        outs = []
        for lib in (keras, jg):
            inputs = lib.Input((4, 6, 1))
            h = lib.layers.RandomFlip("horizontal")(inputs) if flip_first else inputs
            outs.append(np.asarray(lib.Model(inputs, _context_classes(lib)[0]()(h))(x)))
        assert _dropped(outs[1]) == _dropped(outs[0]) == flip_first


def test_dropout_first_leaves_false_for_a_keras_style_layer_after_it():
    x = _distinct()
    for drop_first in (True, False):
        outs = []
        for lib in (keras, jg):
            inputs = lib.Input((4, 6, 1))
            h = lib.layers.Dropout(0.5)(inputs) if drop_first else inputs
            outs.append(np.asarray(lib.Model(inputs, _context_classes(lib)[1]()(h))(x)))
        assert _flipped(outs[1], x) == _flipped(outs[0], x) == (not drop_first)
        assert not _dropped(outs[1])


def test_layers_without_a_training_default_leave_the_context_alone():
    x = _distinct()
    for index in (2, 3):
        k_layer, j_layer = _context_classes(keras)[index](), _context_classes(jg)[index]()
        k_flip, j_flip = np.asarray(k_layer(x)[1]), np.asarray(j_layer(x)[1])
        assert _flipped(j_flip, x) and _flipped(k_flip, x), type(j_layer).__name__


def test_model_called_inside_a_keras_style_call_sees_the_flip_before_it():
    def layer_class(lib):
        class FlipThenNorm(lib.layers.Layer):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.flip = lib.layers.RandomFlip("horizontal")
                self.seq = lib.Sequential([lib.Input((4, 6, 2)),
                                           lib.layers.BatchNormalization(momentum=0.5)])

            def call(self, inputs):
                return self.seq(self.flip(inputs))

        return FlipThenNorm

    x = _symmetric()
    k_layer, j_layer = layer_class(keras)(), layer_class(jg)()
    k_layer(x)
    j_layer(x)
    k_layer.set_weights(_bn_weights())
    j_layer.set_weights(_bn_weights())
    np.testing.assert_allclose(np.asarray(j_layer(x)), np.asarray(k_layer(x)),
                               rtol=1e-4, atol=1e-4)
    for a, b in zip(j_layer.get_weights(), k_layer.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert not np.allclose(j_layer.get_weights()[2], _bn_weights()[2])


def _subclassed(lib):
    class FlipDrop(lib.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.flip = lib.layers.RandomFlip("horizontal")
            self.drop = lib.layers.Dropout(0.5)

        def call(self, inputs):
            return self.drop(self.flip(inputs))

    class PassesTraining(lib.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = lib.layers.Dense(64, kernel_initializer="ones")
            self.drop = lib.layers.Dropout(0.5)

        def call(self, inputs, training=None):
            return self.drop(self.dense(inputs), training=training)

    return FlipDrop, PassesTraining


def test_subclassed_model_calls_its_layers_directly_as_in_keras():
    # No graph nodes record anything in Keras here: the Dropout takes the flip's True.
    x = _distinct()
    k_out = np.asarray(_subclassed(keras)[0]()(x))
    j_out = np.asarray(_subclassed(jg)[0]()(x))
    assert _dropped(j_out) and _dropped(k_out)


def test_training_passed_through_a_subclassed_call_reaches_its_layers():
    x = np.ones((16, 8), "float32")
    k_model, j_model = _subclassed(keras)[1](), _subclassed(jg)[1]()
    for training, drops in ((True, True), (False, False), (None, False)):
        k_out = np.asarray(k_model(x, training=training))
        j_out = np.asarray(j_model(x, training=training))
        assert _dropped(j_out) == _dropped(k_out) == drops, training
    out, _ = j_model.apply(j_model.variables, x, training=True, rng=jax.random.key(0))
    assert _dropped(out)


# ------------------------------------------------------------------ the pure function


def _flip_dense_model():
    inputs = jg.Input((4, 6, 1))
    inner = jg.Sequential([jg.Input((4, 6, 1)), jg.layers.Dropout(0.5)])
    return jg.Model(inputs, inner(jg.layers.RandomFlip("horizontal")(inputs)))


def test_apply_carries_training_under_jit():
    model = _flip_dense_model()
    v, x = model.variables, _distinct()
    apply = jax.jit(model.apply, static_argnames="training")
    a, _ = apply(v, x, training=None, rng=jax.random.key(0))
    b, _ = apply(v, x, training=None, rng=jax.random.key(1))
    assert _dropped(a) and _dropped(b)
    assert not np.array_equal(np.asarray(a), np.asarray(b))  # the key is not baked in
    again, _ = apply(v, x, training=None, rng=jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(again), np.asarray(a))
    # Carried True runs every node as training=True does, drawing the same keys.
    explicit, _ = apply(v, x, training=True, rng=jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(explicit), np.asarray(a))
    c, _ = apply(v, x, training=False)
    np.testing.assert_array_equal(np.asarray(c), x)


def test_apply_without_a_key_names_the_layer_that_would_draw():
    model = _flip_dense_model()
    v, x = model.variables, _distinct()
    with pytest.raises(ValueError, match=r"'random_flip\w*' \(RandomFlip\).*pass rng="):
        jax.jit(lambda v, x: model.apply(v, x, training=None))(v, x)

    inputs = jg.Input((4, 6, 1))
    norm = jg.layers.BatchNormalization(name="norm_first")(inputs, training=True)
    inner = jg.Sequential([jg.Input((4, 6, 1)), jg.layers.Dropout(0.5, name="inner_drop")])
    model = jg.Model(inputs, inner(norm))
    with pytest.raises(ValueError, match=r"'inner_drop'.*carried from layer 'norm_first'"):
        jax.jit(lambda v, x: model.apply(v, x, training=None))(model.variables, x)
    # Inside a Keras-style layer's call too, when the traced program has no key.
    inputs = jg.Input((4, 6, 1))
    owner = _context_classes(jg)[1](name="owner")
    model = jg.Model(inputs, owner(inputs))
    with pytest.raises(ValueError, match=r"\(RandomFlip\).*pass rng="):
        jax.jit(lambda v, x: model.apply(v, x, training=None))(model.variables, x)
    out, _ = jax.jit(lambda v, x, k: model.apply(v, x, training=None, rng=k))(
        model.variables, x, jax.random.key(3))
    assert _flipped(out, x)


def test_grad_and_vmap_of_apply_with_a_carried_value():
    inputs = jg.Input((4, 6, 2))
    h = jg.layers.BatchNormalization()(jg.layers.RandomFlip("horizontal")(inputs))
    model = jg.Model(inputs, jg.layers.Dense(1)(jg.layers.Flatten()(h)))
    v, x = model.variables, _symmetric()

    def loss(params, training, key):
        out, state = model.apply({"params": params, "state": v["state"]}, x,
                                 training=training, rng=key)
        return jnp.mean(out ** 2), state

    key = jax.random.key(0)
    (carried, state), g_carried = jax.jit(jax.value_and_grad(loss, has_aux=True),
                                          static_argnums=1)(v["params"], None, key)
    (explicit, _), g_explicit = jax.value_and_grad(loss, has_aux=True)(v["params"], True, key)
    # One side is jitted, the other eager: XLA fuses them differently (seen: 1.5e-6
    # relative on the loss, 7e-5 on a gradient).
    np.testing.assert_allclose(float(carried), float(explicit), rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(g_carried), jax.tree_util.tree_leaves(g_explicit)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    # The BatchNormalization trained: its moving statistics moved.
    assert not np.allclose(np.asarray(jax.tree_util.tree_leaves(state)[0]),
                           np.asarray(jax.tree_util.tree_leaves(v["state"])[0]))

    drop_model = _flip_dense_model()
    keys = jax.random.split(jax.random.key(1), 4)
    outs, _ = jax.vmap(lambda k: drop_model.apply(drop_model.variables, _distinct(),
                                                  training=None, rng=k))(keys)
    outs = np.asarray(outs)
    assert all(_dropped(o) for o in outs)
    assert not np.array_equal(outs[0], outs[1])

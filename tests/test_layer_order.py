"""`model.layers` lists layers in Keras 3's order, masks included: Keras walks the ops
that compute a mask a layer receives, so they deepen the layers behind them."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import pytest

from jaxgraph import Input, Model
from jaxgraph import layers as jl


def _masked_second_branch(L, inp, model):
    a = inp((3, 4), name="a")
    b = inp((3,), dtype="int32", name="b")
    d = L.Dense(4, name="d")(a)
    e = L.Dense(4, name="d2")(L.Embedding(10, 4, mask_zero=True, name="emb")(b))
    return model([a, b], L.LSTM(2, name="l")(L.Concatenate(name="cat")([d, e])))


def _masked_first_branch(L, inp, model):
    a = inp((3, 4), name="a")
    b = inp((3,), dtype="int32", name="b")
    e = L.Embedding(10, 4, mask_zero=True, name="emb")(b)
    merged = L.Concatenate(name="cat")([e, L.Dense(4, name="d")(a)])
    return model([a, b], L.GRU(2, name="g")(merged))


def _concat_only(L, inp, model):
    a = inp((3, 4), name="a")
    b = inp((3,), dtype="int32", name="b")
    e = L.Embedding(10, 4, mask_zero=True, name="emb")(b)
    return model([a, b], L.Concatenate(name="cat")([a, e]))


def _masked_add(L, inp, model):
    a = inp((5,), dtype="int32", name="a")
    b = inp((5, 3), name="b")
    x = L.Embedding(9, 3, mask_zero=True, name="emb")(a)
    y = L.Dense(3, name="dy")(L.Masking(name="masking")(b))
    s = L.Add(name="add")([x, y])
    return model([a, b], L.SimpleRNN(2, name="rnn")(L.Dense(3, name="post")(s)))


def _shared(L, inp, model):
    a = inp((5,), name="a")
    b = inp((5,), name="b")
    sh = L.Dense(3, name="shared")
    return model([a, b], L.Concatenate(name="cat")([sh(a), L.Dense(3, name="pre")(sh(b))]))


def _inception(L, inp, model):
    i = inp((8, 8, 3), name="i")
    b1 = L.Conv2D(2, 1, name="b1")(i)
    b2 = L.Conv2D(2, 3, padding="same", name="b2a")(L.Conv2D(2, 1, name="b2")(i))
    b3 = L.Conv2D(2, 1, name="b3b")(L.MaxPooling2D(3, 1, padding="same", name="b3")(i))
    return model(i, L.Concatenate(name="cat")([b1, b2, b3]))


def _multi_output(L, inp, model):
    i = inp((4,), name="i")
    h = L.Dense(4, name="h")(i)
    return model(i, [L.Dense(1, name="o1")(h), L.Dense(2, name="o2")(L.Dense(3, name="mid")(h))])


def _nested(L, inp, model):
    i = inp((4,), name="in")
    inner = model(i, L.Dense(2, name="idense")(i), name="inner")
    a = inp((4,), name="a")
    b = inp((4,), name="b")
    return model([a, b], L.Add(name="add")([inner(a), L.Dense(2, name="x")(b)]))


def _pooled_mask(L, inp, model):
    a = inp((4,), name="a")
    b = inp((3,), dtype="int32", name="b")
    e = L.GlobalAveragePooling1D(name="gap")(L.Embedding(10, 4, mask_zero=True, name="emb")(b))
    return model([a, b], L.Dense(2, name="d")(L.Concatenate(name="cat")([a, e])))


CASES = [_masked_second_branch, _masked_first_branch, _concat_only, _masked_add, _shared,
         _inception, _multi_output, _nested, _pooled_mask]


@pytest.mark.parametrize("build", CASES, ids=lambda f: f.__name__.strip("_"))
def test_layer_order_matches_keras(build):
    ours = build(jl, Input, Model)
    theirs = build(keras.layers, keras.Input, keras.Model)
    assert [lay.name for lay in ours.layers] == [lay.name for lay in theirs.layers]
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]

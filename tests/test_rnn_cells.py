"""`layer.cell` of LSTM / GRU / SimpleRNN and `RNN(cell)`, checked against Keras 3."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import numpy as np
import pytest

from jaxgraph import Input, Model
from jaxgraph import layers as jl
from jaxgraph.models import load_model

RNG = np.random.default_rng(0)
X = RNG.normal(size=(3, 5, 3)).astype("float32")
X[0, 3:] = 0.0  # masked by Masking: the first sequence is shorter
X[2, :2] = 0.0

PAIRS = [("LSTM", "LSTMCell"), ("GRU", "GRUCell"), ("SimpleRNN", "SimpleRNNCell")]


@pytest.mark.parametrize("layer_name,cell_name", PAIRS)
def test_cell_shows_the_layers_weights_like_keras(layer_name, cell_name):
    # Named: automatic names depend on what the worker ran before (xdist).
    ours = getattr(jl, layer_name)(4, name="rnn")
    ours.build((None, 5, 3))
    theirs = getattr(keras.layers, layer_name)(4, name="rnn")
    theirs.build((None, 5, 3))
    cell = ours.cell
    assert type(cell).__name__ == cell_name and cell.name == theirs.cell.name
    assert cell.units == 4
    assert cell.kernel is ours.weights[0] and cell.kernel is ours.kernel
    assert cell.recurrent_kernel is ours.weights[1] and cell.bias is ours.weights[2]
    assert cell.weights == ours.weights
    assert [w.path for w in ours.weights] == [w.path for w in theirs.weights]
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    assert set(cell.get_config()) == set(theirs.cell.get_config())
    assert cell.state_size == theirs.cell.state_size
    # one set of values: written through the layer or the cell, read through either
    values = [RNG.normal(size=w.shape).astype("float32") for w in ours.weights]
    ours.set_weights(values)
    np.testing.assert_array_equal(cell.kernel.numpy(), values[0])
    cell.bias.assign(np.zeros(cell.bias.shape, "float32"))
    np.testing.assert_array_equal(ours.get_weights()[2], 0.0)
    np.testing.assert_array_equal(cell.get_weights()[1], values[1])
    # the layer's attributes are the cell's
    ours.dropout = 0.25
    assert cell.dropout == 0.25


def _pair(cell_name, **kwargs):
    cell_kwargs = {"reset_after": False} if kwargs.pop("no_reset", False) else {}
    ours = jl.RNN(getattr(jl, cell_name)(4, **cell_kwargs), **kwargs)
    theirs = keras.layers.RNN(getattr(keras.layers, cell_name)(4, **cell_kwargs), **kwargs)
    i = Input((5, 3))
    model = Model(i, ours(jl.Masking()(i)))
    ki = keras.Input((5, 3))
    kmodel = keras.Model(ki, theirs(keras.layers.Masking()(ki)))
    return model, kmodel, ours, theirs


@pytest.mark.parametrize("cell_name", [c for _, c in PAIRS])
@pytest.mark.parametrize("kwargs", [
    {}, {"return_sequences": True}, {"return_sequences": True, "go_backwards": True},
    {"return_state": True}, {"go_backwards": True, "unroll": True},
    {"return_sequences": True, "zero_output_for_mask": True},
], ids=lambda kw: "-".join(kw) or "default")
def test_rnn_of_cell_matches_keras_with_masks(cell_name, kwargs):
    model, kmodel, ours, theirs = _pair(cell_name, **kwargs)
    model.set_weights(kmodel.get_weights())
    got, want = model.predict(X, verbose=0), kmodel.predict(X, verbose=0)
    got = list(got) if isinstance(got, (list, tuple)) else [got]
    want = list(want) if isinstance(want, (list, tuple)) else [want]
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    assert [w.path for w in ours.weights] == [w.path for w in theirs.weights]
    assert ours.cell.kernel is ours.weights[0]


def test_gru_cell_without_reset_after_matches_keras():
    model, kmodel, _, _ = _pair("GRUCell", no_reset=True, return_sequences=True)
    model.set_weights(kmodel.get_weights())
    np.testing.assert_allclose(model.predict(X, verbose=0), kmodel.predict(X, verbose=0),
                               atol=1e-5)


@pytest.mark.parametrize("layer_name,cell_name", PAIRS)
def test_rnn_of_cell_equals_the_layer(layer_name, cell_name):
    """RNN(LSTMCell) runs the loop LSTM runs: same weights, same outputs."""
    i = Input((5, 3))
    layer = getattr(jl, layer_name)(4, return_sequences=True)
    wrapped = jl.RNN(getattr(jl, cell_name)(4), return_sequences=True)
    a, b = Model(i, layer(i)), Model(i, wrapped(i))
    b.set_weights(a.get_weights())
    np.testing.assert_allclose(a.predict(X, verbose=0), b.predict(X, verbose=0), atol=1e-6)


def test_cell_called_alone_matches_keras():
    for cell_name in [c for _, c in PAIRS]:
        ours = getattr(jl, cell_name)(4)
        theirs = getattr(keras.layers, cell_name)(4)
        theirs.build((None, 3))
        ours.build((None, 3))
        ours.set_weights(theirs.get_weights())
        states = [RNG.normal(size=(3, 4)).astype("float32") for _ in range(ours._n_states)]
        out, new = ours(X[:, 0], states if len(states) > 1 else states[0])
        kout, knew = theirs(X[:, 0], states)
        np.testing.assert_allclose(np.asarray(out), np.asarray(kout), atol=1e-5)
        for a, b in zip(new, knew):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_rnn_config_and_saving_round_trip(tmp_path):
    i = Input((5, 3))
    layer = jl.RNN(jl.LSTMCell(4, dropout=0.1), return_sequences=True, name="wrapped")
    model = Model(i, layer(i))
    config = layer.get_config()
    assert config["cell"]["class_name"] == "LSTMCell" and config["return_sequences"] is True
    rebuilt = jl.RNN.from_config(config)
    assert isinstance(rebuilt.cell, jl.LSTMCell) and rebuilt.cell.dropout == 0.1
    path = tmp_path / "rnn.keras"
    model.save(path)
    loaded = load_model(path)
    np.testing.assert_allclose(loaded.predict(X, verbose=0), model.predict(X, verbose=0),
                               atol=1e-6)
    assert loaded.get_layer("wrapped").cell.kernel is loaded.get_layer("wrapped").weights[0]


def test_keras_reads_rnn_of_cell_json():
    i = Input((5, 3))
    model = Model(i, jl.RNN(jl.GRUCell(3))(jl.Masking()(i)))
    kmodel = keras.models.model_from_json(model.to_json())
    kmodel.set_weights(model.get_weights())
    np.testing.assert_allclose(model.predict(X, verbose=0), kmodel.predict(X, verbose=0),
                               atol=1e-5)


def test_rnn_rejects_what_is_not_a_cell():
    with pytest.raises(ValueError, match="cell must be"):
        jl.RNN(jl.Dense(3))
    cell = jl.LSTMCell(2)
    jl.RNN(cell)(Input((4, 3)))
    with pytest.raises(ValueError, match="already belongs"):
        jl.RNN(cell)
    with pytest.raises(NotImplementedError, match="stateful"):
        jl.RNN(jl.LSTMCell(2), stateful=True)

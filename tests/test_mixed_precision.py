"""mixed_bfloat16: bf16 compute, float32 variables, optimizer and loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgraph import Input, Model, layers, mixed_precision
from jaxgraph.utils import set_random_seed


@pytest.fixture
def mixed():
    mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    mixed_precision.set_global_policy("float32")


def test_mixed_bfloat16_computes_in_bf16_and_keeps_float32_variables(mixed):
    set_random_seed(0)
    x = Input(shape=(8,))
    h = layers.Dense(16, activation="relu")(x)
    y = layers.Dense(3, activation="softmax", dtype="float32")(h)  # Keras's advice: f32 head
    model = Model(x, y)
    assert h.dtype == "bfloat16" and y.dtype == "float32"
    variables = model.init(jax.random.key(0))
    assert all(v.dtype == jnp.float32 for v in jax.tree_util.tree_leaves(variables))
    hidden, _ = Model(x, h).apply(variables, np.ones((2, 8), "f4"))
    assert hidden.dtype == jnp.bfloat16

    rng = np.random.default_rng(0)
    xs = rng.normal(size=(128, 8)).astype("f4")
    ys = (xs[:, 0] > 0).astype("i4") + (xs[:, 1] > 0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["acc"])
    hist = model.fit(xs, ys, epochs=20, batch_size=32, verbose=0)
    assert np.isfinite(hist.history["loss"]).all()
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert all(w.dtype == np.float32 for w in model.get_weights())


def test_policy_names():
    assert mixed_precision.DTypePolicy("mixed_bfloat16").compute_dtype == "bfloat16"
    assert mixed_precision.DTypePolicy("mixed_bfloat16").variable_dtype == "float32"
    with pytest.raises(ValueError, match="Unknown dtype policy"):
        mixed_precision.DTypePolicy("mixed_int4")

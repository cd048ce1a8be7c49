"""An output's propagated mask (Embedding(mask_zero=True) -> ... -> output) weights the
compiled losses and mean metrics exactly as Keras 3's does: masked steps count neither
in the sum nor in the mean."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph
from jaxgraph.training import losses, metrics

VOCAB, STEPS, ROWS = 7, 5, 7


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def _tokens(rng):
    x = rng.integers(1, VOCAB, (ROWS, STEPS))
    for row, pad in enumerate([0, 1, 2, 3, 4, 2, 1]):  # trailing padding of varied length
        if pad:
            x[row, -pad:] = 0
    return x


def _tagger(lib, units, activation, embed, kernel, bias):
    inp = lib.Input((STEPS,), dtype="int32")
    embedding = lib.layers.Embedding(VOCAB, embed.shape[1], mask_zero=True)
    dense = lib.layers.Dense(units, activation=activation)
    model = lib.Model(inp, dense(embedding(inp)))
    embedding.set_weights([embed])
    dense.set_weights([kernel, bias])
    return model


CASES = {
    "sparse": dict(units=3, activation="softmax", loss="sparse_categorical_crossentropy",
                   metrics=["accuracy", "sparse_categorical_crossentropy"]),
    "ignore_class": dict(units=3, activation="softmax",
                         loss=("SparseCategoricalCrossentropy", {"ignore_class": 2}),
                         metrics=["accuracy"]),
    "sum": dict(units=3, activation="softmax",
                loss=("SparseCategoricalCrossentropy", {"reduction": "sum"}),
                metrics=["accuracy"]),
    "mse_temporal_weights": dict(units=2, activation=None, loss="mse",
                                 metrics=["mae", "root_mean_squared_error"], weights=True,
                                 weighted_metrics=["mae"]),
}


def _case_data(case, rng):
    x = _tokens(rng)
    if CASES[case]["units"] == 3:
        y = rng.integers(0, 3, (ROWS, STEPS))
    else:
        y = rng.normal(size=(ROWS, STEPS, 2)).astype(np.float32)
    sw = rng.random((ROWS, STEPS)).astype(np.float32) if CASES[case].get("weights") else None
    return x, y, sw


def _loss(lib, spec):
    if isinstance(spec, tuple):
        name, kwargs = spec
        return getattr(lib.losses, name)(**kwargs)
    return spec


@pytest.mark.parametrize("case", sorted(CASES))
def test_evaluate_with_masked_outputs_matches_keras(keras, case):
    """Loss and metrics of a partial last batch (7 rows in batches of 3)."""
    rng = np.random.default_rng(11)
    spec = CASES[case]
    x, y, sw = _case_data(case, rng)
    embed = rng.normal(size=(VOCAB, 4)).astype(np.float32)
    kernel = rng.normal(size=(4, spec["units"])).astype(np.float32)
    bias = rng.normal(size=spec["units"]).astype(np.float32)

    def run(lib):
        model = _tagger(lib, spec["units"], spec["activation"], embed, kernel, bias)
        model.compile(loss=_loss(lib, spec["loss"]), metrics=list(spec["metrics"]),
                      weighted_metrics=spec.get("weighted_metrics"))
        return model.evaluate(x, y, sample_weight=sw, batch_size=3, verbose=0,
                              return_dict=True)

    ours, ref = run(jaxgraph), run(keras)
    assert set(ours) == set(ref)
    for name in ref:
        np.testing.assert_allclose(ours[name], ref[name], rtol=2e-5, atol=1e-6, err_msg=name)

    if case == "sparse":
        # Closed form: each batch's mean over its unpadded steps, averaged over the
        # batches by their rows (Keras's loss tracker); all steps would give another value.
        model = _tagger(jaxgraph, 3, "softmax", embed, kernel, bias)
        nll = -np.log(np.take_along_axis(np.asarray(model.predict(x, verbose=0)),
                                         y[..., None], -1)[..., 0])
        batches = [slice(0, 3), slice(3, 6), slice(6, 7)]
        expected = sum(nll[b][x[b] != 0].mean() * len(nll[b]) for b in batches) / ROWS
        everywhere = sum(nll[b].mean() * len(nll[b]) for b in batches) / ROWS
        np.testing.assert_allclose(ours["loss"], expected, rtol=1e-5)
        assert abs(everywhere - ours["loss"]) > 1e-3


def test_fit_on_masked_outputs_follows_keras(keras):
    """Two epochs of SGD: the gradients leave the padded steps out as Keras's do."""
    rng = np.random.default_rng(3)
    x, y, _ = _case_data("sparse", rng)
    embed = rng.normal(size=(VOCAB, 4)).astype(np.float32)
    kernel = rng.normal(size=(4, 3)).astype(np.float32)
    bias = rng.normal(size=3).astype(np.float32)

    def run(lib):
        model = _tagger(lib, 3, "softmax", embed, kernel, bias)
        model.compile(optimizer=lib.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
        hist = model.fit(x, y, batch_size=3, epochs=2, shuffle=False, verbose=0)
        return hist.history["loss"], [np.asarray(w) for w in model.get_weights()]

    (ours, ours_w), (ref, ref_w) = run(jaxgraph), run(keras)
    np.testing.assert_allclose(ours, ref, rtol=1e-4)
    for a, b in zip(ours_w, ref_w):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_training_metrics_honour_the_mask_as_evaluate_does(keras):
    """fit's running accuracy leaves padded steps out, as evaluate's does. Keras 3 on JAX
    counts them in fit (its train step loses the mask of the predictions it returns from
    the gradient) but not in evaluate; jaxgraph uses the mask in both, as tf.keras does."""
    rng = np.random.default_rng(3)
    x, y, _ = _case_data("sparse", rng)
    embed = rng.normal(size=(VOCAB, 4)).astype(np.float32)
    kernel = rng.normal(size=(4, 3)).astype(np.float32)
    bias = rng.normal(size=3).astype(np.float32)
    model = _tagger(jaxgraph, 3, "softmax", embed, kernel, bias)
    model.compile(optimizer=jaxgraph.optimizers.SGD(0.0),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    hits = np.asarray(model.predict(x, verbose=0)).argmax(-1) == y
    fitted = model.fit(x, y, batch_size=ROWS, epochs=1, verbose=0).history["accuracy"][0]
    evaluated = model.evaluate(x, y, batch_size=ROWS, verbose=0, return_dict=True)
    np.testing.assert_allclose(fitted, hits[x != 0].mean(), rtol=1e-6)
    np.testing.assert_allclose(evaluated["accuracy"], hits[x != 0].mean(), rtol=1e-6)
    assert abs(hits.mean() - fitted) > 1e-3

    ref = _tagger(keras, 3, "softmax", embed, kernel, bias)
    ref.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy",
                metrics=["accuracy"])
    ref_eval = ref.evaluate(x, y, batch_size=ROWS, verbose=0, return_dict=True)
    np.testing.assert_allclose(evaluated["accuracy"], ref_eval["accuracy"], rtol=1e-6)
    np.testing.assert_allclose(evaluated["loss"], ref_eval["loss"], rtol=1e-5)


def test_padding_tokens_do_not_move_the_loss():
    """Changing the labels under the mask changes nothing, in the loss or its gradient."""
    rng = np.random.default_rng(0)
    x, y, _ = _case_data("sparse", rng)
    embed = rng.normal(size=(VOCAB, 4)).astype(np.float32)
    kernel = rng.normal(size=(4, 3)).astype(np.float32)
    bias = rng.normal(size=3).astype(np.float32)
    y_other = np.where(x == 0, (y + 1) % 3, y)
    assert (y_other != y).any()
    results = []
    for labels in (y, y_other):
        model = _tagger(jaxgraph, 3, "softmax", embed, kernel, bias)
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        hist = model.fit(x, labels, batch_size=ROWS, epochs=1, verbose=0, shuffle=False)
        results.append((hist.history, model.get_weights()))
    (h1, w1), (h2, w2) = results
    assert h1 == h2
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_mask_for_aligns_a_trailing_axis_and_names_a_misfit():
    values = jnp.ones((4, 5))
    assert losses.mask_for(values, jnp.ones((4, 5, 1), bool)).shape == (4, 5)
    assert losses.mask_for(jnp.ones((4, 5, 1)), jnp.ones((4, 5), bool)).shape == (4, 5, 1)
    with pytest.raises(ValueError, match=r"Output 'tags'.*\(4, 6\).*\(4, 5\)"):
        losses.batch_loss(losses.mean_squared_error, jnp.ones((4, 5, 2)), jnp.ones((4, 5, 2)),
                          mask=jnp.ones((4, 6), bool), output="tags")


def test_combine_weights_broadcast_rows_over_steps():
    mask = jnp.asarray([[1, 1, 0], [1, 0, 0]], bool)
    np.testing.assert_array_equal(metrics.combine_weights(None, mask), mask.astype(np.float32))
    np.testing.assert_array_equal(metrics.combine_weights(jnp.asarray([2.0, 3.0]), mask),
                                  [[2, 2, 0], [3, 0, 0]])
    np.testing.assert_array_equal(
        metrics.combine_weights(jnp.asarray([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), mask),
        [[1, 2, 0], [4, 0, 0]])
    assert metrics.combine_weights(None, None) is None

"""The benchmark's hand-written reference must compute what Keras computes, or its ratios
compare different work: same losses, same parameter counts, same mixed-precision split."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

from benchmarks.baselines import _flax_setup  # noqa: E402
from benchmarks.jaxgraph_method import build  # noqa: E402
from benchmarks.workloads import LOSSES, WORKLOADS  # noqa: E402


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_reference_losses_equal_keras(name):
    rng = np.random.default_rng(0)
    if name == "sparse_categorical_crossentropy":
        y, p = rng.integers(0, 10, 16), rng.random((16, 10)).astype(np.float32)
    elif name == "categorical_crossentropy":
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 16)]
        p = rng.random((16, 10)).astype(np.float32)  # not normalised: Keras renormalises
        p[0, y[0].argmax()] = 0.0  # clipped, not -inf
    else:
        y = rng.integers(0, 2, (16, 1)).astype(np.float32)
        p = rng.random((16, 1)).astype(np.float32)
    expected = np.mean(keras.losses.get(name)(y, p))
    np.testing.assert_allclose(float(LOSSES[name](jnp.asarray(y), jnp.asarray(p))), expected,
                               rtol=1e-6)


@pytest.mark.parametrize("name", ["mlp", "multi_output", "resnet_bf16"])
def test_three_builds_have_equal_parameter_counts(name):
    w = WORKLOADS[name].quick_version()
    x, _ = w.data()
    _, _, flax_params = _flax_setup(w, x)
    keras.mixed_precision.set_global_policy(w.policy)
    try:
        keras_model = w.keras_model()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    jaxgraph_model = build(w)
    assert flax_params == keras_model.count_params() == jaxgraph_model.count_params()


def test_mixed_precision_twin_keeps_float32_parameters_and_computes_in_bf16():
    w = WORKLOADS["resnet_bf16"].quick_version()
    x, _ = w.data()
    (params, *_), _, _ = _flax_setup(w, x)
    assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype("float32")}
    model = build(w)
    assert model.layers[1].dtype_policy.compute_dtype == "bfloat16"
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(model.variables))


def test_adaptive_repeats_bounds():
    """Cheap workloads get more repeats (their peak memory is noisy compile scratch), at
    least 3 and at most 9; no warm-up round to time means the plain 3."""
    from benchmarks.run import _adaptive_repeats

    assert _adaptive_repeats(None, 60.0) == 3
    assert _adaptive_repeats(7.0, 60.0) == 8
    assert _adaptive_repeats(1.0, 60.0) == 9
    assert _adaptive_repeats(45.0, 60.0) == 3


def test_paired_ratios_pair_the_columns_of_each_repeat():
    """A slow spell on a shared machine hits the columns of one repeat together: the
    paired ratio keeps it out, the ratio of medians does not."""
    from benchmarks.run import REFERENCE, paired_ratios

    def run(method, repeat, sps):
        return {"method": method, "repeat": repeat, "samples_per_s": sps}

    runs = [run(REFERENCE, 0, 40.0), run("flax_step", 0, 40.0),
            run(REFERENCE, 1, 30.0), run("flax_step", 1, 30.0),
            run(REFERENCE, 2, 30.0), run("flax_step", 2, 40.0)]
    assert paired_ratios(runs) == {"flax_step": 1.0}

"""fit over several (virtual CPU) devices with jax.sharding, checked in a subprocess
because the device count is fixed when JAX starts."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np
    assert jax.device_count() == 4, jax.devices()
    import jaxgraph
    from jaxgraph import Input, Model, layers, optimizers
    from jaxgraph.distribution import DataParallel, ModelParallel
    from jaxgraph.utils import set_random_seed

    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8)).astype("f4")
    y = rng.integers(0, 4, 96)

    def build():
        i = Input(shape=(8,))
        h = layers.Dense(16, activation="relu", name="hidden")(i)
        return Model(i, layers.Dense(4, activation="softmax", name="out")(h))

    results = {}
    for label, dist in [("single", None), ("data", DataParallel()),
                        ("model", ModelParallel((2, 2), {r"hidden/kernel": (None, "model")}))]:
        set_random_seed(0)
        m = build()
        m.compile(optimizer=optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
                  distribution=dist)
        h = m.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0)
        results[label] = (h.history["loss"], m.get_weights())
        if label == "model":
            kernel = m._trainer.ts["train"]["hidden"]["kernel"]
            spec = kernel.sharding.spec
            assert tuple(spec) == (None, "model"), spec
            assert len(kernel.addressable_shards) == 4
        if label == "data":
            try:
                m.fit(x, y, epochs=1, batch_size=30, verbose=0)
            except ValueError as e:
                assert "divisible" in str(e), e
            else:
                raise AssertionError("indivisible batch accepted")
    for label in ("data", "model"):
        np.testing.assert_allclose(results[label][0], results["single"][0], rtol=1e-5)
        for a, b in zip(results[label][1], results["single"][1]):
            np.testing.assert_allclose(a, b, atol=1e-5)
    try:
        mp = ModelParallel((2, 2), {r"out/kernel": (None, "model")})
        mp.param_sharding("out/kernel", (16, 5))
    except ValueError as e:
        assert "not divisible" in str(e) and "out/kernel" in str(e)
    else:
        raise AssertionError("indivisible weight accepted")
    print("OK")
    """
)


def test_data_and_model_parallel_fit_match_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK" in proc.stdout

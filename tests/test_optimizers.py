"""Optimizers against Keras 3 (JAX backend), and hyperparameters changed without retracing."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgraph.training import optimizers as opt

os.environ.setdefault("KERAS_BACKEND", "jax")


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


STEPS = 20
_rng = np.random.default_rng(0)
INITIAL = [_rng.normal(size=(3, 4)).astype(np.float32), _rng.normal(size=(4,)).astype(np.float32)]
GRADS = [
    [_rng.normal(size=w.shape).astype(np.float32) * s for w, s in zip(INITIAL, (1.0, 3.0))]
    for _ in range(STEPS)
]
GRADS[5][1][:] = 0.0  # a step with a zero gradient (Adagrad, Adamax, Lion corner cases)


def _run_ours(optimizer):
    tx = optimizer.to_optax() if isinstance(optimizer, opt.Optimizer) else optimizer
    params = [jnp.asarray(w) for w in INITIAL]
    state = tx.init(params)
    step = jax.jit(lambda p, s, g: _apply(tx, p, s, g))
    for grads in GRADS:
        params, state = step(params, state, [jnp.asarray(g) for g in grads])
    return [np.asarray(p) for p in params]


def _apply(tx, params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state


def _run_keras(keras, optimizer):
    variables = [keras.Variable(w) for w in INITIAL]
    for grads in GRADS:
        optimizer.apply_gradients(zip(grads, variables))
    return [np.asarray(v.value) for v in variables]


CASES = [
    ("SGD", {}),
    ("SGD", {"learning_rate": 0.05, "momentum": 0.9}),
    ("SGD", {"learning_rate": 0.05, "momentum": 0.8, "nesterov": True}),
    ("SGD", {"learning_rate": 0.1, "weight_decay": 0.05}),
    ("RMSprop", {}),
    ("RMSprop", {"learning_rate": 0.01, "rho": 0.8, "momentum": 0.5, "centered": True}),
    ("Adam", {"learning_rate": 0.01}),
    ("Adam", {"learning_rate": 0.02, "amsgrad": True, "epsilon": 1e-3}),
    ("AdamW", {"learning_rate": 0.01}),
    ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.2, "amsgrad": True}),
    ("Adagrad", {"learning_rate": 0.1}),
    ("Adagrad", {"learning_rate": 0.1, "initial_accumulator_value": 0.0}),
    ("Adadelta", {"learning_rate": 1.0}),
    ("Nadam", {"learning_rate": 0.01}),
    ("Adamax", {"learning_rate": 0.01}),
    ("Lion", {"learning_rate": 0.01}),
    ("Lion", {"learning_rate": 0.01, "beta_1": 0.5, "weight_decay": 0.1}),
    # large epsilons make its placement (inside/outside the root, before/after bias
    # correction) visible at 1e-5
    ("RMSprop", {"learning_rate": 0.01, "epsilon": 0.5}),
    ("Adam", {"learning_rate": 0.01, "epsilon": 0.1}),
    ("Adagrad", {"learning_rate": 0.1, "epsilon": 0.5}),
    ("Nadam", {"learning_rate": 0.01, "epsilon": 0.1}),
    ("Adamax", {"learning_rate": 0.01, "epsilon": 0.1}),
    ("Adam", {"learning_rate": 0.05, "clipnorm": 0.5}),
    ("RMSprop", {"learning_rate": 0.01, "clipvalue": 0.3}),
    ("SGD", {"learning_rate": 0.1, "global_clipnorm": 1.0}),
]


@pytest.mark.parametrize("name,kwargs", CASES)
def test_twenty_steps_match_keras(keras, name, kwargs):
    ours = _run_ours(getattr(opt, name)(**kwargs))
    ref = _run_keras(keras, getattr(keras.optimizers, name)(**kwargs))
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_schedule_matches_keras_schedule(keras):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=5, decay_rate=0.5)
    ref = _run_keras(keras, keras.optimizers.SGD(learning_rate=schedule, momentum=0.5))
    ours = _run_ours(opt.SGD(optax.exponential_decay(0.1, 5, 0.5), momentum=0.5))
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "name,kwargs",
    [("SGD", {"momentum": 0.9}), ("RMSprop", {"momentum": 0.5}), ("AdamW", {})],
)
def test_learning_rate_changed_mid_training_matches_keras(keras, name, kwargs):
    """What a ReduceLROnPlateau does: Keras assigns optimizer.learning_rate between steps."""
    ref_opt = getattr(keras.optimizers, name)(learning_rate=0.1, **kwargs)
    variables = [keras.Variable(w) for w in INITIAL]
    tx = getattr(opt, name)(learning_rate=0.1, **kwargs).to_optax()
    params = [jnp.asarray(w) for w in INITIAL]
    state = tx.init(params)
    step = jax.jit(lambda p, s, g: _apply(tx, p, s, g))
    for i, grads in enumerate(GRADS):
        if i == STEPS // 2:
            ref_opt.learning_rate = 0.01
            state = opt.set_learning_rate(state, 0.01)
        ref_opt.apply_gradients(zip(grads, variables))
        params, state = step(params, state, grads)
    for a, b in zip(params, variables):
        np.testing.assert_allclose(a, np.asarray(b.value), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adam", "adamw", "adagrad", "adadelta",
                                  "nadam", "adamax", "lion"])  # fmt: skip
def test_strings_carry_keras_defaults(keras, name):
    ours = opt.get(name).get_config()
    ref = keras.optimizers.get(name).get_config()
    shared = (set(ours) & set(ref)) - {"name"}  # Keras uniquifies names
    assert {"learning_rate", "weight_decay", "clipnorm"} <= shared
    for key in shared:
        if isinstance(ref[key], float):
            assert ours[key] == pytest.approx(ref[key]), key
        else:
            assert ours[key] == ref[key], key


def test_lr_alias():
    assert opt.Adam(lr=0.05).learning_rate == opt.Adam(learning_rate=0.05).learning_rate == 0.05
    a = _run_ours(opt.RMSprop(lr=0.01))
    b = _run_ours(opt.RMSprop(learning_rate=0.01))
    np.testing.assert_array_equal(a[0], b[0])
    with pytest.raises(TypeError, match="lr"):
        opt.SGD(learning_rate=0.1, lr=0.2)


def test_constructor_errors():
    with pytest.raises(ValueError, match="only one of"):
        opt.Adam(clipnorm=1.0, clipvalue=0.5)
    with pytest.raises(ValueError, match="learning_rate"):
        opt.Adam(learning_rate="fast")
    with pytest.raises(ValueError, match="momentum"):
        opt.SGD(momentum=1.5)
    with pytest.raises(TypeError, match="unexpected"):
        opt.Adam(decay=0.1)
    with pytest.raises(ValueError, match="rmsprop"):
        opt.get("rmsprob")
    with pytest.raises(TypeError):
        opt.get(3)


def test_learning_rate_change_in_jitted_loop_does_not_retrace():
    traces = []
    tx = opt.Adam(learning_rate=0.01).to_optax()

    @jax.jit
    def step(params, state, grads):
        traces.append(1)
        return _apply(tx, params, state, grads)

    params = [jnp.asarray(w) for w in INITIAL]
    state = tx.init(params)
    params, state = step(params, state, GRADS[0])
    state = opt.set_learning_rate(state, 0.0)
    frozen, state = step(params, state, GRADS[1])
    np.testing.assert_array_equal(frozen[0], params[0])  # lr 0: nothing moves
    state = opt.set_learning_rate(state, np.float32(0.5))
    moved, state = step(frozen, state, GRADS[2])
    assert np.abs(np.asarray(moved[0]) - np.asarray(frozen[0])).max() > 0.1
    np.testing.assert_allclose(opt.get_learning_rate(state), 0.5)
    assert len(traces) == 1


def test_learning_rate_set_inside_scan():
    """A per-step learning rate fed through the state inside one compiled scan."""
    traces = []
    tx = opt.SGD(learning_rate=1.0).to_optax()
    lrs = jnp.asarray([0.1, 0.0, 0.2], jnp.float32)

    def body(carry, lr):
        traces.append(1)
        params, state = carry
        state = opt.set_learning_rate(state, lr)
        return _apply(tx, params, state, jnp.ones_like(params)), opt.get_learning_rate(state)

    params = jnp.zeros(())
    run = jax.jit(lambda p, s, xs: jax.lax.scan(body, (p, s), xs))
    (final, _), seen = run(params, tx.init(params), lrs)
    np.testing.assert_allclose(final, -0.3, rtol=1e-6)
    np.testing.assert_allclose(seen, lrs)
    run(final, tx.init(final), lrs * 2)
    assert len(traces) == 1


def test_hyperparameters_found_in_nested_states():
    params = {"dense": jnp.ones((2, 2)), "frozen": jnp.ones((2,))}
    labels = {"dense": "train", "frozen": "freeze"}
    inner = opt.AdamW(learning_rate=0.003, clipnorm=1.0).to_optax()
    tx = optax.chain(
        optax.partition({"train": inner, "freeze": optax.set_to_zero()}, labels),
        optax.masked(optax.identity(), {"dense": True, "frozen": False}),
    )
    state = tx.init(params)
    np.testing.assert_allclose(opt.get_learning_rate(state), 0.003)
    np.testing.assert_allclose(opt.get_hyperparameter(state, "weight_decay"), 0.004)
    state = opt.set_learning_rate(state, 0.1)
    np.testing.assert_allclose(opt.get_learning_rate(state), 0.1)
    updates, _ = tx.update(params, state, params)
    np.testing.assert_array_equal(updates["frozen"], 0.0)

    multi = optax.MultiSteps(opt.SGD(0.2).to_optax(), every_k_schedule=2)
    np.testing.assert_allclose(opt.get_learning_rate(multi.init(params)), 0.2)


def test_raw_optax_transformations_pass_through():
    params = jnp.zeros((3,))
    plain = optax.adam(1e-3)
    assert opt.get(plain) is plain and opt.to_optax(plain) is plain
    assert opt.get_learning_rate(plain.init(params)) is None
    with pytest.raises(ValueError, match="learning_rate"):
        opt.set_learning_rate(plain.init(params), 0.1)
    injected = optax.inject_hyperparams(optax.sgd)(learning_rate=0.3)
    np.testing.assert_allclose(opt.get_learning_rate(injected.init(params)), 0.3)


def test_scheduled_learning_rate_is_reported_but_not_settable():
    tx = opt.Adam(optax.linear_schedule(0.1, 0.0, 10)).to_optax()
    params = jnp.zeros((2,))
    state = tx.init(params)
    _, state = tx.update(jnp.ones((2,)), state, params)
    np.testing.assert_allclose(opt.get_learning_rate(state), 0.1)  # the rate of the step taken
    _, state = tx.update(jnp.ones((2,)), state, params)
    np.testing.assert_allclose(opt.get_learning_rate(state), 0.09, rtol=1e-6)
    with pytest.raises(TypeError, match="schedule"):
        opt.set_learning_rate(state, 0.5)


def test_serialize_round_trip_and_registry():
    adam = opt.Adam(learning_rate=0.02, amsgrad=True, clipnorm=1.0, name="my_adam")
    config = opt.serialize(adam)
    clone = opt.get(config)
    assert type(clone) is opt.Adam and clone.get_config() == adam.get_config()
    for name in ("SGD", "RMSprop", "AdamW", "Adagrad", "Adadelta", "Nadam", "Adamax", "Lion"):
        original = getattr(opt, name)()
        assert opt.get(opt.serialize(original)).get_config() == original.get_config()

    schedule = optax.cosine_decay_schedule(0.1, 100)
    with pytest.raises(TypeError, match="register"):
        opt.serialize(opt.SGD(schedule))
    opt.register("cosine_for_test", schedule)
    clone = opt.get(opt.serialize(opt.SGD(schedule)))
    assert clone.learning_rate is schedule
    with pytest.raises(TypeError, match="optax"):
        opt.serialize(optax.sgd(0.1))
    with pytest.raises(ValueError, match="built-in"):
        opt.register("adam", opt.Adam)


@pytest.mark.parametrize("name", ["rmsprop", "adam", "sgd"])
def test_constant_hyperparameters_carry_no_step_counter_and_match_optax(name):
    # The counter optax.inject_hyperparams keeps only feeds schedules; without it the
    # updates must be exactly those of optax's own injection.
    import inspect

    spec = opt.get(name)
    params = [jnp.asarray(w) for w in INITIAL]
    ours = spec.to_optax()
    initial = {"learning_rate": spec.learning_rate,
               **{k: getattr(spec, k) for k in spec._active_hyperparameters()}}

    def factory(**hp):
        return spec._rule(hp)

    factory.__signature__ = inspect.Signature(
        [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY) for k in initial])
    reference = optax.inject_hyperparams(factory)(**initial)
    state, ref_state = ours.init(params), reference.init(params)
    assert isinstance(state, opt.HyperparamsState) and "count" not in state._fields
    assert set(state.hyperparams) == set(ref_state.hyperparams)
    p, q = params, params
    for grads in GRADS[:5]:
        g = [jnp.asarray(a) for a in grads]
        u, state = ours.update(g, state, p)
        v, ref_state = reference.update(g, ref_state, q)
        p, q = optax.apply_updates(p, u), optax.apply_updates(q, v)
    for a, b in zip(p, q):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    state = opt.set_learning_rate(state, 0.5)
    assert float(opt.get_learning_rate(state)) == 0.5

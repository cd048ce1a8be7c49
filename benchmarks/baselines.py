"""Reference training loops: the best hand-written JAX loops, and Keras 3's fit.

Every method has the signature ``method(workload, x, y, epochs) -> record`` where x, y are the
workload's numpy data and the record holds

    epoch_s     wall seconds of each epoch; the first includes moving the data to the device,
                tracing and compilation (everything after the model is built)
    final_loss  mean training loss over the last epoch (Keras's total weighted loss)
    params      parameter count, non-trainable ones (BatchNorm moving stats) included

All methods shuffle every epoch, as Keras's fit does by default.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.workloads import Workload, loss_fn, optax_optimizer


def _count(tree) -> int:
    return int(sum(np.size(a) for a in jax.tree.leaves(tree)))


def step_flops(w: Workload, x, y) -> float:
    """Floating-point operations of one training step (forward, backward, optimizer update).

    XLA's cost analysis of the hand-written step before optimisation, so it counts
    convolutions as convolutions whatever kernels the backend later picks. Every column
    trains the same model, so achieved FLOP/s = this x steps per second.
    """
    # Counted on the CPU backend: GPU backends return no cost analysis before compiling.
    with jax.default_device(jax.devices("cpu")[0]):
        carry, step, _ = _flax_setup(w, x)
        idx = jnp.arange(w.batch_size)
        cost = jax.jit(step).lower(carry, idx, x, y).cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax: one dict per program
        cost = cost[0]
    return float(cost["flops"])


def _flax_setup(w: Workload, x):
    """Init the Flax model; return (initial carry, step, param count).

    The carry is (params, other collections e.g. batch_stats, opt state, loss sum, step index);
    ``step(carry, idx, x, y)`` trains on the rows idx of the device-resident x, y.
    """
    model, loss, tx = w.flax_model(), loss_fn(w), optax_optimizer(w.optimizer)
    init = jax.jit(model.init, static_argnames="train")  # one compile, not one per eager op
    variables = init(jax.random.key(0), x[: w.batch_size], train=False)
    params = variables.pop("params")
    extra = dict(variables)

    def step(carry, idx, x, y):
        params, extra, opt_state, loss_sum, i = carry
        xb, yb = jax.tree.map(lambda a: a[idx], (x, y))

        def objective(p):
            out, new_extra = model.apply(
                {"params": p, **extra}, xb, train=True, mutable=list(extra)
            )
            return loss(yb, out), new_extra

        (value, extra), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), extra, opt_state, loss_sum + value, i + 1

    carry = (params, extra, tx.init(params), jnp.zeros(()), jnp.zeros((), jnp.int32))
    return carry, step, _count(params) + _count(extra)


def _train(w: Workload, x, y, epochs: int, make_epoch) -> dict:
    """Shared driver: device_put once, then run_epoch(carry, key, x, y) -> carry per epoch.

    make_epoch(step, steps, batch_size) builds run_epoch; loss sum and step index restart at 0.
    """
    carry, step, params = _flax_setup(w, x)
    steps = len(x) // w.batch_size
    assert steps * w.batch_size == len(x), "sample count must be a multiple of the batch size"
    run_epoch = make_epoch(step, steps, w.batch_size)
    t = time.perf_counter()
    x, y = jax.device_put((x, y))
    times, key = [], jax.random.key(1)
    for epoch in range(epochs):
        carry = run_epoch(carry, jax.random.fold_in(key, epoch), x, y)
        final_loss = float(carry[3]) / steps  # the only host sync of the epoch
        carry = (*carry[:3], jnp.zeros(()), jnp.zeros((), jnp.int32))
        now = time.perf_counter()
        times.append(now - t)
        t = now
    return {"epoch_s": times, "final_loss": final_loss, "params": params}


def step_loop(w: Workload, x, y, epochs: int) -> dict:
    """(b) one jitted, donating step per batch; the batch is gathered on device by index."""

    def make(step, steps, bs):
        perm = jax.jit(lambda key: jax.random.permutation(key, steps * bs))
        one = jax.jit(
            lambda c, p, x, y: step(c, jax.lax.dynamic_slice_in_dim(p, c[4] * bs, bs), x, y),
            donate_argnums=0,
        )

        def run_epoch(carry, key, x, y):
            p = perm(key)
            for _ in range(steps):
                carry = one(carry, p, x, y)
            return carry

        return run_epoch

    return _train(w, x, y, epochs, make)


def scan_loop(w: Workload, x, y, epochs: int) -> dict:
    """(c) a whole epoch as one jitted lax.scan over the (steps, batch) shuffled indices."""

    def make(step, steps, bs):
        def epoch(carry, key, x, y):
            idx = jax.random.permutation(key, steps * bs).reshape(steps, bs)
            carry, _ = jax.lax.scan(lambda c, i: (step(c, i, x, y), None), carry, idx)
            return carry

        return jax.jit(epoch, donate_argnums=0)

    return _train(w, x, y, epochs, make)


def keras_fit(w: Workload, x, y, epochs: int) -> dict:
    """(d) Keras 3 model.fit on the JAX backend, jit_compile=True, verbose=0."""
    import keras

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(w.policy)
    try:
        model = w.keras_model()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.compile(optimizer=w.optimizer, loss=w.loss, loss_weights=w.loss_weights,
                  jit_compile=True)
    ends = []

    class EpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            ends.append(time.perf_counter())

    t = time.perf_counter()
    hist = model.fit(x, y, batch_size=w.batch_size, epochs=epochs, verbose=0,
                     callbacks=[EpochEnd()])
    times = np.diff([t, *ends]).tolist()
    return {"epoch_s": times, "final_loss": hist.history["loss"][-1],
            "params": model.count_params()}

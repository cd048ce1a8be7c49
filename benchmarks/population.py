"""K learning rates at once: a vmapped population vs K sequential `fit` calls.

    python -m benchmarks.population [--k 8] [--epochs 20] [--batch-size 32] [--quick]
                                    [--ensemble]

The book's densely connected digits classifier (64-32-32-10, RMSprop) is trained
with K learning rates on the 8x8 digits (1437 training and 360 validation images),
once as one `jaxgraph.tune.train_population` program and once as K separate
`model.fit` calls. Both are timed twice: "cold" (building, tracing and compiling
included; JAX's persistent compilation cache is off so the first run really
compiles) and "warm" (the same compiled programs run again). The two ways compute
the same numbers; the largest difference of final validation losses is printed.

With --ensemble the K members differ by seed instead (`jaxgraph.ensemble.fit_vmapped`,
one program) and are compared with K sequential `fit` calls of freshly built models.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ["JAXGRAPH_NO_COMPILATION_CACHE"] = "1"  # time real compiles, not cache hits

import numpy as np  # noqa: E402

import jaxgraph  # noqa: E402
from jaxgraph import Input, Model, layers, optimizers, tune  # noqa: E402
from jaxgraph.utils import set_random_seed  # noqa: E402


def build_mlp():
    """The book's 64-32-32-10 network for 8x8 digits."""
    inputs = Input(shape=(64,))
    x = layers.Dense(32, activation="relu")(inputs)
    x = layers.Dense(32, activation="relu")(x)
    model = Model(inputs, layers.Dense(10, activation="softmax")(x))
    model.compile(optimizer=optimizers.RMSprop(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["acc"])
    return model


def load():
    (x, y), (xv, yv) = jaxgraph.datasets.digits.load_data()
    return (x.reshape(-1, 64).astype("float32") / 255, y,
            xv.reshape(-1, 64).astype("float32") / 255, yv)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=8, help="population size")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="3 epochs")
    parser.add_argument("--ensemble", action="store_true",
                        help="members from K seeds with ensemble.fit_vmapped")
    args = parser.parse_args(argv)
    epochs = 3 if args.quick else args.epochs
    x, y, xv, yv = load()
    if args.ensemble:
        return ensemble_benchmark(args.k, epochs, args.batch_size, x, y, xv, yv)
    rates = np.geomspace(1e-4, 3e-2, args.k).tolist()
    fit_kwargs = dict(epochs=epochs, batch_size=args.batch_size, validation_data=(xv, yv))

    def population(build):
        return tune.train_population(build, [{"learning_rate": r} for r in rates], x, y,
                                     seed=0, **fit_kwargs)

    models = []

    def sequential(build):
        histories = []
        for i, rate in enumerate(rates):
            if build:  # seeded as train_population(seed=0) is: same weights, batches, keys
                set_random_seed(0)
                models.append(build_mlp())
            models[i].optimizer.learning_rate = rate
            histories.append(models[i].fit(x, y, verbose=0, **fit_kwargs).history)
        return histories

    pop_cold, pop = timed(lambda: population(build_mlp))
    seq_cold, seq = timed(lambda: sequential(build=True))
    pop_warm, _ = timed(lambda: population(pop.model))  # reuses the compiled programs
    seq_warm, _ = timed(lambda: sequential(build=False))

    def max_diff(epoch):
        return max(abs(p["val_loss"][epoch] - s["val_loss"][epoch])
                   for p, s in zip(pop.histories, seq))

    steps = int(np.ceil(len(x) / args.batch_size))
    print(f"population benchmark: K={args.k} MLPs 64-32-32-10 (RMSprop, learning rates "
          f"{rates[0]:.0e}..{rates[-1]:.0e}), digits {len(x)} train / {len(xv)} val, "
          f"{epochs} epochs x {steps} steps of {args.batch_size}, on {device()}")
    print(f"{'':28}{'vmapped population':>20}{'K sequential fits':>20}{'speed-up':>10}")
    print(f"{'cold (compile included)':28}{pop_cold:>19.2f}s{seq_cold:>19.2f}s"
          f"{seq_cold / pop_cold:>9.1f}x")
    print(f"{'warm (compiled)':28}{pop_warm:>19.2f}s{seq_warm:>19.2f}s"
          f"{seq_warm / pop_warm:>9.1f}x")
    print(f"train-step traces: population {pop.trace_counts['train_step']}, sequential "
          f"{sum(m._trainer.trace_counts['train_step'] for m in models)}")
    print(f"max |val_loss(population) - val_loss(fit)| over members: {max_diff(0):.1e} after "
          f"epoch 1, {max_diff(-1):.1e} after epoch {epochs} (batched matmuls sum in another "
          "order; training at high rates amplifies the last-bit differences)")
    best = pop.best()
    print(f"best learning rate {rates[best]:.2e}: "
          f"val_acc {pop.histories[best]['val_acc'][-1]:.4f}")


def ensemble_benchmark(k, epochs, batch_size, x, y, xv, yv):
    fit_kwargs = dict(epochs=epochs, batch_size=batch_size)
    vm_cold, ens = timed(lambda: jaxgraph.ensemble.fit_vmapped(build_mlp, k, x, y, seed=0,
                                                               **fit_kwargs))
    models = []

    def sequential():
        for i in range(k):
            set_random_seed(i)
            models.append(build_mlp())
            models[-1].fit(x, y, verbose=0, **fit_kwargs)

    seq_cold, _ = timed(sequential)
    traces = ens.population.trace_counts["train_step"]
    accs = [float(np.mean(np.argmax(m.predict(xv, verbose=0), -1) == yv)) for m in models]
    ens_acc = float(np.mean(np.argmax(ens.predict(xv, verbose=0), -1) == yv))
    print(f"fit_vmapped benchmark: K={k} MLPs 64-32-32-10 from K seeds, digits {len(x)} "
          f"train, {epochs} epochs of batch {batch_size}, on {device()}")
    print(f"fit_vmapped (one program): {vm_cold:.2f}s; {k} sequential fits: {seq_cold:.2f}s; "
          f"speed-up {seq_cold / vm_cold:.1f}x (compilation included in both)")
    print(f"train-step traces: fit_vmapped {traces}, sequential "
          f"{sum(m._trainer.trace_counts['train_step'] for m in models)}")
    print(f"validation accuracy: ensemble {ens_acc:.4f}; sequential members "
          f"{min(accs):.4f}..{max(accs):.4f}")


def device() -> str:
    import jax

    d = jax.devices()[0]
    return f"{d.platform} ({d.device_kind}, {os.cpu_count()} cores)"


if __name__ == "__main__":
    main()

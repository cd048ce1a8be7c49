"""How long graphs take to build and lower, and what the graph costs per jitted step.

Two questions:

1. Python-side cost of a deep graph: building a 100-layer graph (100 Dense layers, or
   50 residual blocks of Dense + add), `init`, tracing `apply` to a jaxpr/StableHLO
   (`jax.jit(...).lower`), compiling, and the first jitted call (trace + compile + run),
   then a steady-state call. All of this happens once per compile, never per step.
2. Per-step overhead of the graph at run time: the book's MLP (64-32-32-10, batch 128)
   as a jitted jaxgraph `apply` against the same network hand-written in flax.linen,
   timed in interleaved rounds; the medians and their ratio are printed.

Run: `python -m benchmarks.graph_build [--layers 100] [--repeats 5] [--rounds 30]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxgraph import Input, Model, layers  # noqa: E402


def dense_chain(n_layers: int, width: int = 64) -> Model:
    x = inputs = Input(shape=(width,))
    for _ in range(n_layers):
        x = layers.Dense(width, activation="relu")(x)
    return Model(inputs, x)


def residual_chain(n_layers: int, width: int = 64) -> Model:
    """n_layers // 2 blocks of `x + Dense(x)`: a graph with n_layers layers and fan-out."""
    x = inputs = Input(shape=(width,))
    for _ in range(n_layers // 2):
        x = layers.add([x, layers.Dense(width, activation="relu")(x)])
    return Model(inputs, x)


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    return time.perf_counter() - start, out


def _one_repeat(builder, n_layers: int, x) -> dict[str, float]:
    """Seconds of each stage on a freshly built graph."""
    out = {}
    out["build"], model = _timed(builder, n_layers)
    out["init"], variables = _timed(model.init, jax.random.key(0))

    def forward(v, x):
        return model.apply(v, x)[0]

    def forward_again(v, x):  # a distinct function, so jax's caches cannot serve it
        return model.apply(v, x)[0]

    out["trace+lower"], lowered = _timed(jax.jit(forward).lower, variables, x)
    out["compile"], _ = _timed(lowered.compile)
    jitted = jax.jit(forward_again)  # its first call traces, compiles and runs
    out["first call"], _ = _timed(jitted, variables, x)
    out["steady call"], _ = _timed(jitted, variables, x)
    return out


def lowering_figures(builder, n_layers: int, repeats: int) -> dict[str, float]:
    """Median seconds of each stage over `repeats` fresh graphs."""
    x = jnp.ones((32, 64), jnp.float32)
    runs = [_one_repeat(builder, n_layers, x) for _ in range(repeats)]
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def mlp_comparison(rounds: int, inner: int = 200) -> tuple[float, float]:
    """Median microseconds per jitted forward of the book's MLP: jaxgraph, flax.linen."""
    from benchmarks.workloads import MLP

    inputs = Input(shape=(64,))
    h = layers.Dense(32, activation="relu")(inputs)
    h = layers.Dense(32, activation="relu")(h)
    model = Model(inputs, layers.Dense(10, activation="softmax")(h))
    flax_model = MLP()
    x = jnp.asarray(np.random.default_rng(0).normal(size=(128, 64)).astype("float32"))
    ours_vars = model.init(jax.random.key(0))
    flax_vars = flax_model.init(jax.random.key(0), x)
    ours = jax.jit(lambda v, x: model.apply(v, x)[0])
    theirs = jax.jit(lambda v, x: flax_model.apply(v, x))
    jax.block_until_ready((ours(ours_vars, x), theirs(flax_vars, x)))

    def per_call(fn, variables):
        start = time.perf_counter()
        for _ in range(inner):
            out = fn(variables, x)
        jax.block_until_ready(out)
        return (time.perf_counter() - start) / inner * 1e6

    ours_t, theirs_t = [], []
    for r in range(rounds):  # interleaved, alternating who goes first
        pair = [(ours, ours_vars, ours_t), (theirs, flax_vars, theirs_t)]
        for fn, variables, sink in (pair if r % 2 == 0 else pair[::-1]):
            sink.append(per_call(fn, variables))
    return statistics.median(ours_t), statistics.median(theirs_t)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; median of {args.repeats}")
    header = ["graph", *("build", "init", "trace+lower", "compile", "first call",
                         "steady call")]
    print(" | ".join(f"{h:>12}" for h in header))
    for label, builder in ((f"{args.layers} Dense", dense_chain),
                           (f"{args.layers // 2} residual", residual_chain)):
        figures = lowering_figures(builder, args.layers, args.repeats)
        cells = [f"{figures[k] * 1e3:10.1f}ms" for k in header[1:]]
        print(" | ".join([f"{label:>12}", *cells]))

    ours, flax_t = mlp_comparison(args.rounds)
    print(f"book MLP 64-32-32-10, batch 128, jitted forward (median of {args.rounds} rounds):")
    print(f"  jaxgraph {ours:8.1f} us   flax.linen {flax_t:8.1f} us   "
          f"ratio jaxgraph/flax {ours / flax_t:.2f}")


if __name__ == "__main__":
    main()

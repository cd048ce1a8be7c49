"""Where a method's first epoch goes: tracing, lowering, XLA compilation, running.

    python -m benchmarks.compile_breakdown resnet jaxgraph [--quick]

Runs one method once on one workload in this fresh process (no in-process compile or
autotuning cache warmed by another column) and prints the JAX monitoring durations it
recorded (trace, MLIR lowering, backend compile), summed by event, beside its epoch times.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time
from dataclasses import replace

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAXGRAPH_NO_COMPILATION_CACHE", "1")

import jax  # noqa: E402
import jax.monitoring  # noqa: E402

from benchmarks import run  # noqa: E402
from benchmarks.workloads import WORKLOADS  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workload", choices=list(WORKLOADS))
    p.add_argument("method")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--json", action="store_true",
                   help="end with one JSON line: the method's record (run.py --fresh-first-epoch)")
    p.add_argument("--run-once-options", choices=["jaxgraph", "none"], default="jaxgraph",
                   help="'none': compile jaxgraph's run-once programs (weights, training "
                        "state) with XLA's default options instead of executor.RUN_ONCE")
    args = p.parse_args(argv)
    if args.run_once_options == "none":
        from jaxgraph.lowering import executor
        from jaxgraph.training import trainer

        executor.RUN_ONCE = trainer.RUN_ONCE = None
    w = WORKLOADS[args.workload]
    w = w.quick_version() if args.quick else w if run.ON_CPU else w.accel_version()
    if args.samples:
        w = replace(w, samples=args.samples)
    x, y = w.data()

    events = []  # (end time, event, seconds, program name)

    def listen(event, duration, **kw):
        events.append((time.perf_counter(), event.rsplit("/", 1)[-1], duration,
                       kw.get("fun_name", "")))

    jax.monitoring.register_event_duration_secs_listener(listen)
    t = time.perf_counter()
    rec = run.METHODS[args.method](w, x, y, args.epochs)
    end = time.perf_counter()
    # The method returns right after its last epoch; its first epoch began sum(epoch_s) before.
    fit_start = end - sum(rec["epoch_s"])
    first_end = fit_start + rec["epoch_s"][0]
    print(f"{args.workload} {args.method} on {jax.devices()[0].device_kind}: epochs "
          + " ".join(f"{e:.3f}" for e in rec["epoch_s"])
          + f" s; build before the fit {fit_start - t:.2f} s")
    for label, lo, hi in (("before the fit (model build)", 0, fit_start),
                          ("first epoch", fit_start, first_end), ("later epochs", first_end, end)):
        sums, counts = collections.Counter(), collections.Counter()
        for when, event, seconds, name in events:
            if lo <= when < hi:
                sums[(event, name)] += seconds
                counts[(event, name)] += 1
        total = sum(sums.values())
        print(f" {label}: {total:.3f} s in jax/XLA events")
        for (event, name), seconds in sums.most_common():
            if seconds >= 0.01:
                print(f"  {seconds:8.3f} s  x{counts[(event, name)]:<3} {event:<32} {name}")

    if args.json:
        print(json.dumps(rec))


if __name__ == "__main__":
    main()

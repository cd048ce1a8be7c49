"""Side-by-side training benchmark: jaxgraph fit vs hand-written JAX loops vs Keras 3.

    python -m benchmarks.run [--workloads mlp,convnet] [--methods ...] [--repeats 3]
                             [--epochs 2] [--quick] [--out results.json]

Every method trains the same numpy data in this one process; repeats are interleaved (the
method order rotates each repeat) and medians are reported. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.util
import json
import os
import platform
import statistics
import threading
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
# Cold compiles for every column: jaxgraph would otherwise switch JAX's persistent cache on
# for everything after its first compile, and later columns would time cache hits.
# --compilation-cache DIR turns the cache on for all columns alike.
os.environ.setdefault("JAXGRAPH_NO_COMPILATION_CACHE", "1")

import jax  # noqa: E402

from benchmarks.baselines import keras_fit, scan_loop, step_loop  # noqa: E402
from benchmarks.workloads import WORKLOADS  # noqa: E402

REFERENCE = "jaxgraph"
# Conv backward passes inside lax.scan lose XLA:CPU's fast path (jax-ml/jax#12868): measured
# 20x slower than flax_step on these two, i.e. minutes per run. Pass --skip "" to run them.
CPU_SKIP = "multi_output:flax_scan,resnet:flax_scan"
METHODS = {"flax_step": step_loop, "flax_scan": scan_loop}
if importlib.util.find_spec("keras") is not None:
    METHODS["keras"] = keras_fit


def register_method(name: str, fn) -> None:
    """Add a column: fn(workload, x, y, epochs) -> {"epoch_s", "final_loss", "params"}."""
    METHODS[name] = fn


try:
    from benchmarks.jaxgraph_method import jaxgraph_fit
except ModuleNotFoundError as e:
    if e.name != "benchmarks.jaxgraph_method":
        raise
else:
    register_method(REFERENCE, jaxgraph_fit)


class PeakRSS:
    """Peak resident memory above the starting level, sampled every 10 ms by a thread.

    Freed heap is returned to the OS first (gc + malloc_trim) so the start level does not hide
    memory a previous run left in the allocator. Counts host memory only (CPU backend).
    """

    def __enter__(self):
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())
        self.mb = (self.peak - self.start) / 2**20


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def measure(name: str, w, x, y, epochs: int) -> dict:
    """Run one method once; derive throughput, compile time and memory from its record."""
    t = time.perf_counter()
    with PeakRSS() as mem:
        rec = METHODS[name](w, x, y, epochs)
    epoch_s = rec["epoch_s"]
    steady = epoch_s[1:]
    return {
        "workload": w.name, "method": name, **rec,
        "samples_per_s": len(x) * len(steady) / sum(steady),
        "first_epoch_s": epoch_s[0],
        "compile_s": epoch_s[0] - statistics.median(steady),
        "peak_mb": mem.mb,
        "wall_s": time.perf_counter() - t,
    }


COLUMNS = ["samples_per_s", "first_epoch_s", "compile_s", "peak_mb", "final_loss"]


def summarize(runs: list[dict]) -> dict:
    by_method = {}
    for r in runs:
        by_method.setdefault(r["method"], []).append(r)
    params = {m: rs[0]["params"] for m, rs in by_method.items()}
    assert len(set(params.values())) == 1, f"parameter counts differ: {params}"
    return {
        m: {"n": len(rs), "params": rs[0]["params"],
            **{c: statistics.median(r[c] for r in rs) for c in COLUMNS}}
        for m, rs in by_method.items()
    }


def print_table(w, n: int, epochs: int, summary: dict) -> None:
    print(f"\n== {w.name}: batch {w.batch_size}, {n} samples, {epochs} epochs, {w.optimizer}"
          + (f"; {w.note}" if w.note else ""))
    print(f"{'method':<10} {'n':>2} {'samples/s':>11} {'1st epoch s':>11} {'compile s':>9} "
          f"{'peak MB':>8} {'final loss':>10} {'params':>9}")
    for m, s in summary.items():
        print(f"{m:<10} {s['n']:>2} {s['samples_per_s']:>11.1f} {s['first_epoch_s']:>11.2f} "
              f"{s['compile_s']:>9.2f} {s['peak_mb']:>8.1f} {s['final_loss']:>10.4f} "
              f"{s['params']:>9}")
    ref = REFERENCE if REFERENCE in summary else "flax_step"
    ratios = [f"{ref}/{m} {summary[ref]['samples_per_s'] / s['samples_per_s']:.2f}"
              for m, s in summary.items() if m != ref]
    print("throughput ratios: " + ", ".join(ratios))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--methods", default=None, help="default: all registered")
    p.add_argument("--repeats", type=int, default=None, help="default 3 (1 with --quick)")
    p.add_argument("--epochs", type=int, default=2, help="first epoch + steady ones (>= 2)")
    p.add_argument("--quick", action="store_true", help="smoke test: small data and batches")
    p.add_argument("--max-run-s", type=float, default=60.0,
                   help="a method whose run takes longer is not repeated on that workload")
    p.add_argument("--skip", default=CPU_SKIP if jax.default_backend() == "cpu" else "",
                   help=f"workload:method pairs not to run (CPU default: {CPU_SKIP})")
    p.add_argument("--out", default=None, help="write every run and the medians as JSON")
    p.add_argument("--compilation-cache", default=None, metavar="DIR",
                   help="JAX persistent compilation cache for every column (default: off)")
    args = p.parse_args(argv)
    if args.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    assert args.epochs >= 2, "need at least one steady-state epoch after the first"
    repeats = args.repeats or (1 if args.quick else 3)
    methods = args.methods.split(",") if args.methods else list(METHODS)
    if REFERENCE in methods:  # the reference column first
        methods.insert(0, methods.pop(methods.index(REFERENCE)))
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}, {os.cpu_count()} cpus; "
          f"methods {methods}, {repeats} repeats")

    runs, summaries = [], {}
    for wname in args.workloads.split(","):
        w = WORKLOADS[wname].quick_version() if args.quick else WORKLOADS[wname]
        x, y = w.data()
        skipped = [m for m in methods if f"{wname}:{m}" in args.skip.split(",")]
        done, slow = [], set(skipped)
        for r in range(repeats):
            order = methods[r % len(methods):] + methods[:r % len(methods)]
            for m in order:
                if m in slow:
                    continue
                done.append(measure(m, w, x, y, args.epochs))
                print(f"  {wname:<12} {m:<10} repeat {r}: {done[-1]['samples_per_s']:10.1f} "
                      f"samples/s, run {done[-1]['wall_s']:.1f} s", flush=True)
                if done[-1]["wall_s"] > args.max_run_s:
                    slow.add(m)
        runs += done
        summaries[wname] = summarize(done)
        print_table(w, len(x), args.epochs, summaries[wname])
        if skipped:
            print(f"skipped (--skip): {', '.join(skipped)}")

    if args.out:
        meta = {"jax": jax.__version__, "device": jax.devices()[0].device_kind,
                "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
                "quick": args.quick, "epochs": args.epochs, "repeats": repeats,
                "compilation_cache": args.compilation_cache}
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "summary": summaries, "runs": runs}, f, indent=1)
    return summaries


if __name__ == "__main__":
    main()

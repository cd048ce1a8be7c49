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
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import replace

os.environ.setdefault("KERAS_BACKEND", "jax")
# Cold compiles for every column: jaxgraph would otherwise switch JAX's persistent cache on
# for everything after its first compile, and later columns would time cache hits.
# --compilation-cache DIR turns the cache on for all columns alike.
os.environ.setdefault("JAXGRAPH_NO_COMPILATION_CACHE", "1")

import jax  # noqa: E402

from benchmarks.baselines import keras_fit, scan_loop, step_flops, step_loop  # noqa: E402
from benchmarks.workloads import WORKLOADS  # noqa: E402

ON_CPU = jax.default_backend() == "cpu"
# bf16 convolutions have no fast path on XLA:CPU; the mixed-precision twin is for accelerators.
DEFAULT_WORKLOADS = [w for w in WORKLOADS if not (ON_CPU and WORKLOADS[w].policy != "float32")]

REFERENCE = "jaxgraph"
# Conv backward passes inside lax.scan lose XLA:CPU's fast path (jax-ml/jax#12868): measured
# 20x slower than flax_step on these two, i.e. minutes per run. Pass --skip "" to run them.
CPU_SKIP = "multi_output:flax_scan,resnet:flax_scan"
METHODS = {"flax_step": step_loop, "flax_scan": scan_loop}
if importlib.util.find_spec("keras") is not None:
    METHODS["keras"] = keras_fit
OPT_IN: set[str] = set()  # registered columns that run only when --methods names them


def register_method(name: str, fn, default: bool = True) -> None:
    """Add a column: fn(workload, x, y, epochs) -> {"epoch_s", "final_loss", "params"}."""
    METHODS[name] = fn
    if not default:
        OPT_IN.add(name)


try:
    from benchmarks.jaxgraph_method import jaxgraph_fit, jaxgraph_fit_per_step
except ModuleNotFoundError as e:
    if e.name != "benchmarks.jaxgraph_method":
        raise
else:
    register_method(REFERENCE, jaxgraph_fit)
    register_method("jaxgraph_spe1", jaxgraph_fit_per_step, default=False)


class PeakMemory:
    """Peak memory above the starting level, sampled every 10 ms by a thread.

    On CPU, resident host memory: freed heap is returned to the OS first (gc + malloc_trim)
    so the start level does not hide memory a previous run left in the allocator. On an
    accelerator, the device allocator's bytes in use (JAX's pool is preallocated, so only
    live buffers and the programs' scratch space count).
    """

    def __init__(self):
        self._read = _rss if ON_CPU else _device_bytes

    def __enter__(self):
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        self.start = self.peak = self._read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._read())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._read())
        self.mb = (self.peak - self.start) / 2**20


def _device_bytes() -> int:
    return int((jax.devices()[0].memory_stats() or {}).get("bytes_in_use", 0))


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def measure(name: str, w, x, y, epochs: int, flops: float | None = None) -> dict:
    """Run one method once; derive throughput, compile time and memory from its record."""
    t = time.perf_counter()
    with PeakMemory() as mem:
        rec = METHODS[name](w, x, y, epochs)
    epoch_s = rec["epoch_s"]
    steady = epoch_s[1:]
    samples_per_s = len(x) * len(steady) / sum(steady)
    return {
        "workload": w.name, "method": name, "samples": len(x), **rec,
        "samples_per_s": samples_per_s,
        "tflops": None if flops is None else flops * samples_per_s / w.batch_size / 1e12,
        "first_epoch_s": epoch_s[0],
        "compile_s": epoch_s[0] - statistics.median(steady),
        "peak_mb": mem.mb,
        "wall_s": time.perf_counter() - t,
    }


COLUMNS = ["samples_per_s", "first_epoch_s", "compile_s", "peak_mb", "final_loss", "tflops"]


def summarize(runs: list[dict]) -> dict:
    by_method = {}
    for r in runs:
        by_method.setdefault(r["method"], []).append(r)
    params = {m: rs[0]["params"] for m, rs in by_method.items()}
    assert len(set(params.values())) == 1, f"parameter counts differ: {params}"
    return {
        m: {"n": len(rs), "params": rs[0]["params"],
            **{c: None if rs[0][c] is None else statistics.median(r[c] for r in rs)
               for c in COLUMNS}}
        for m, rs in by_method.items()
    }


def _adaptive_repeats(round_s: float | None, budget_s: float) -> int:
    """3 repeats, or as many as one round's time fits into the budget, at most 9.

    A median of 3 is enough where a run is seconds of steady work; where it is a second of
    compilation (the MLP on CPU) its peak memory is XLA's compile scratch, which differs
    by +-10 MB between identical runs, and more repeats cost little."""
    if not round_s:
        return 3
    return max(3, min(9, int(budget_s // round_s)))


def paired_ratios(runs: list[dict]) -> dict:
    """The reference column's throughput over each other column's, within each repeat,
    median over repeats. Columns of one repeat run back to back, so a machine that slows
    down for minutes (a shared VM) moves both sides of each ratio; the ratio of medians
    can instead pair one column's slow runs with another's fast ones."""
    by_repeat: dict = {}
    for r in runs:
        by_repeat.setdefault(r.get("repeat"), {})[r["method"]] = r["samples_per_s"]
    methods = {r["method"] for r in runs}
    ref = REFERENCE if REFERENCE in methods else "flax_step"
    out = {}
    for m in sorted(methods - {ref}):
        ratios = [rep[ref] / rep[m] for rep in by_repeat.values() if ref in rep and m in rep]
        if ratios:
            out[m] = statistics.median(ratios)
    return out


def fresh_first_epoch(workload: str, method: str, args, samples: int,
                      epochs: int) -> float | None:
    """The first epoch of one run in a new Python process (benchmarks.compile_breakdown).

    Inside one process, columns after the first reuse what the process already compiled:
    jax's eager-op executables (Keras's fit runs some), XLA:GPU autotuning results. A user's
    script starts cold, so this is the first-epoch figure to compare."""
    if args.compilation_cache:
        return None  # a shared cache would make the fresh process warm again
    cmd = [sys.executable, "-m", "benchmarks.compile_breakdown", workload, method, "--json",
           "--epochs", str(epochs), "--samples", str(samples)]
    # This process holds XLA's default 75% of an accelerator's memory: the child gets
    # a share of the rest (the workloads here peak near 1 GB).
    env = {**os.environ, "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.15"}
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        print(f"  fresh-process run of {workload}:{method} failed:\n{out.stderr[-2000:]}")
        return None
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  {workload:<12} {method:<10} fresh process: first epoch {rec['epoch_s'][0]:.2f} s",
          flush=True)
    return rec["epoch_s"][0]


def print_table(w, n: int, epochs: int, summary: dict, flops: float | None) -> None:
    print(f"\n== {w.name}: batch {w.batch_size}, {n} samples, {epochs} epochs, {w.optimizer}"
          + (f"; {w.note}" if w.note else "")
          + ("" if flops is None else f"; {flops / 1e9:.2f} GFLOP per step"))
    print(f"{'method':<13} {'n':>2} {'samples/s':>11} {'1st epoch s':>11} {'compile s':>9} "
          f"{'peak MB':>8} {'final loss':>10} {'params':>9} {'TFLOP/s':>8}")
    for m, s in summary.items():
        tflops = "" if s["tflops"] is None else f"{s['tflops']:8.3f}"
        print(f"{m:<13} {s['n']:>2} {s['samples_per_s']:>11.1f} {s['first_epoch_s']:>11.2f} "
              f"{s['compile_s']:>9.2f} {s['peak_mb']:>8.1f} {s['final_loss']:>10.4f} "
              f"{s['params']:>9} {tflops:>8}")
    ref = REFERENCE if REFERENCE in summary else "flax_step"
    ratios = [f"{ref}/{m} {summary[ref]['samples_per_s'] / s['samples_per_s']:.2f}"
              for m, s in summary.items() if m != ref]
    print("throughput ratios: " + ", ".join(ratios))
    paired = [f"{ref}/{m} {s['paired_throughput_ratio']:.2f}" for m, s in summary.items()
              if s.get("paired_throughput_ratio") is not None]
    if paired:
        print("paired (median of each repeat's ratio): " + ", ".join(paired))
    fresh = {m: s.get("fresh_first_epoch_s") for m, s in summary.items()}
    if any(v is not None for v in fresh.values()):
        print("first epoch in a fresh process (median): " + ", ".join(
            f"{m} {v:.2f} s" for m, v in fresh.items() if v is not None))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS),
                   help=f"of {', '.join(WORKLOADS)} (default on CPU: all but the bf16 one)")
    p.add_argument("--methods", default=None,
                   help="default: all registered but the opt-in ones (jaxgraph_spe1)")
    p.add_argument("--repeats", type=int, default=None,
                   help="default: 3 (1 with --quick), more for a workload whose warm-up round "
                        "of every method took under 20 s, up to 9 (see --repeat-budget-s)")
    p.add_argument("--repeat-budget-s", type=float, default=60.0,
                   help="without --repeats, a workload gets as many repeats (3 to 9) as its "
                        "warm-up round fits into this many seconds: the MLP's peak memory is "
                        "XLA's compile scratch, which moves by +-10 MB between identical runs, "
                        "and its runs take a second")
    p.add_argument("--epochs", type=int, default=None,
                   help="first epoch + steady ones (>= 2; default: the workload's, 10 for mlp, "
                        "whose epochs are milliseconds long, 4 for the others, whose CPU "
                        "epochs are a few steps)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed rounds of every method before the repeats (default 1, 0 with "
                        "--quick; see "
                        "benchmarks/README.md): the process's first run of anything pays one-time "
                        "setup that would otherwise land on whichever column happens to be first")
    p.add_argument("--quick", action="store_true", help="smoke test: small data and batches")
    p.add_argument("--max-run-s", type=float, default=60.0,
                   help="a method whose run takes longer is not repeated on that workload")
    p.add_argument("--samples", type=int, default=None,
                   help="training-set size (default: the workload's; larger on accelerators)")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count per step")
    p.add_argument("--fresh-runs", type=int, default=3,
                   help="with --fresh-first-epoch: fresh processes per method, interleaved "
                        "across methods, median reported (default 3)")
    p.add_argument("--fresh-first-epoch", action="store_true",
                   help="also time each method's first epoch in fresh processes, where "
                        "no compile or autotuning cache of another column can help it")
    p.add_argument("--skip", default=CPU_SKIP if ON_CPU else "",
                   help=f"workload:method pairs not to run (CPU default: {CPU_SKIP})")
    p.add_argument("--out", default=None, help="write every run and the medians as JSON")
    p.add_argument("--compilation-cache", default=None, metavar="DIR",
                   help="JAX persistent compilation cache for every column (default: off)")
    args = p.parse_args(argv)
    if args.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    assert args.epochs is None or args.epochs >= 2, "need a steady epoch after the first"
    fixed_repeats = args.repeats or (1 if args.quick else None)
    if args.warmup is None:
        args.warmup = 0 if args.quick else 1
    methods = (args.methods.split(",") if args.methods
               else [m for m in METHODS if m not in OPT_IN])
    if REFERENCE in methods:  # the reference column first
        methods.insert(0, methods.pop(methods.index(REFERENCE)))
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}, {os.cpu_count()} cpus; "
          f"methods {methods}, {fixed_repeats or '3 to 9'} repeats")

    runs, summaries, step_flop_counts, failed, epochs_of, repeats_of = [], {}, {}, [], {}, {}

    def save():  # after every workload, so a run cut short keeps what it measured
        if not args.out:
            return
        meta = {"jax": jax.__version__, "device": jax.devices()[0].device_kind,
                "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
                "quick": args.quick, "epochs": epochs_of, "repeats": repeats_of,
                "warmup": args.warmup,
                "compilation_cache": args.compilation_cache, "flops_per_step": step_flop_counts,
                "samples": {r["workload"]: r["samples"] for r in runs}, "failed": failed}
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "summary": summaries, "runs": runs}, f, indent=1)

    for wname in args.workloads.split(","):
        w = WORKLOADS[wname]
        w = w.quick_version() if args.quick else w if ON_CPU else w.accel_version()
        if args.samples:
            w = replace(w, samples=args.samples)
        x, y = w.data()
        epochs = epochs_of[wname] = args.epochs or w.epochs
        flops = step_flop_counts[wname] = None if args.no_flops else step_flops(w, x, y)
        skipped = [m for m in methods if f"{wname}:{m}" in args.skip.split(",")]
        done, slow = [], set(skipped)
        t_warm = time.perf_counter()
        for r in range(args.warmup):
            for m in methods:
                if m in slow:
                    continue
                try:
                    METHODS[m](w, x, y, epochs)
                except Exception:  # the timed repeats report it
                    traceback.print_exc()
            print(f"  {wname:<12} warm-up round {r} done (not measured)", flush=True)
        repeats = repeats_of[wname] = fixed_repeats or _adaptive_repeats(
            (time.perf_counter() - t_warm) / args.warmup if args.warmup else None,
            args.repeat_budget_s)
        for r in range(repeats):
            order = methods[r % len(methods):] + methods[:r % len(methods)]
            for m in order:
                if m in slow:
                    continue
                try:
                    done.append({**measure(m, w, x, y, epochs, flops), "repeat": r})
                except Exception:  # one broken column must not lose the others' figures
                    traceback.print_exc()
                    failed.append(f"{wname}:{m}")
                    slow.add(m)
                    continue
                print(f"  {wname:<12} {m:<10} repeat {r}: {done[-1]['samples_per_s']:10.1f} "
                      f"samples/s, run {done[-1]['wall_s']:.1f} s", flush=True)
                if done[-1]["wall_s"] > args.max_run_s:
                    slow.add(m)
        runs += done
        if done:
            summaries[wname] = summarize(done)
            for m, ratio in paired_ratios(done).items():
                summaries[wname][m]["paired_throughput_ratio"] = ratio
            if args.fresh_first_epoch:
                fresh = {m: [] for m in summaries[wname]}
                for _ in range(args.fresh_runs):  # interleaved, as the repeats are
                    for m in fresh:
                        fresh[m].append(fresh_first_epoch(wname, m, args, w.samples, epochs))
                for m, times in fresh.items():
                    times = [t for t in times if t is not None]
                    summaries[wname][m]["fresh_first_epoch_runs"] = times
                    summaries[wname][m]["fresh_first_epoch_s"] = (
                        statistics.median(times) if times else None)
            print_table(w, len(x), epochs, summaries[wname], flops)
        if skipped:
            print(f"skipped (--skip): {', '.join(skipped)}")
        save()
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return summaries


if __name__ == "__main__":
    main()

"""GELU's exact (erf) form beside its tanh form, forward and backward, at the CPU preset's (B, T, 4C).

    python benchmarks/bench_gelu.py                  # minilm (NumPy), float32, (12, 64, 512)
    python benchmarks/bench_gelu.py --torch          # and torch.nn.GELU beside it, on as many threads
    python benchmarks/bench_gelu.py --no-scipy       # scipy hidden from the workers (the old math.erf path)

Every timing runs in a fresh process of its own (one side, one form, one pass), so neither a library's
threads nor another case's freed memory touch it. A worker builds its input, runs the pass 3 times to warm
up (first-touch pages, lazy imports), then times ``--repeats`` calls and reports the median and the fastest.
The forward is ``GELU(form)(x)``; the backward is ``layer.backward(dy)`` after one forward (it recomputes
tanh or erf from the kept x, see minilm.nn.activation). torch's backward is ``autograd.grad`` on a kept
graph, its forward builds that graph (x requires grad), as in training. ``--no-scipy`` makes ``import
scipy`` fail in the workers: it measures the package as it was before issue 26 (PYTHONPATH at that
version), when ``erf`` fell back to ``math.erf`` element by element without SciPy.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from bench_step import cpu_model, openblas_info

B, T, C = 12, 64, 128
SHAPE = (B, T, 4 * C)  # the GELU's input inside the feed-forward block
FORMS = ("tanh", "none")
PASSES = ("forward", "backward")


def minilm_pass(form, which, x, dy):
    from minilm.backend import keep_freed_heap
    from minilm.nn.activation import GELU

    keep_freed_heap()  # as the minilm command does (backend.py: not on import)

    layer = GELU(form)
    if which == "forward":
        return lambda: layer(x)
    layer(x)
    return lambda: layer.backward(dy)


def torch_pass(form, which, x, dy, threads):
    import torch

    torch.set_num_threads(threads)
    x, dy = torch.from_numpy(x).requires_grad_(), torch.from_numpy(dy)
    gelu = torch.nn.GELU(approximate=form)
    if which == "forward":
        return lambda: gelu(x)
    y = gelu(x)
    return lambda: torch.autograd.grad(y, x, dy, retain_graph=True)


def worker(args):
    if args.no_scipy:
        sys.modules["scipy"] = None  # makes `import scipy` (and scipy.special) raise ImportError
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SHAPE).astype(args.dtype)  # (B, T, 4C) pre-activations of order 1
    dy = rng.standard_normal(SHAPE).astype(args.dtype)  # (B, T, 4C)
    if args.worker == "minilm":
        run = minilm_pass(args.form, args.which, x, dy)
    else:
        run = torch_pass(args.form, args.which, x, dy, args.threads)
    for _ in range(3):
        run()
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    print(json.dumps({"median_us": 1e6 * statistics.median(times), "min_us": 1e6 * min(times),
                      "openblas_core": openblas_info()[0]}))


def measure(side, form, which, args):
    command = [sys.executable, __file__, "--worker", side, "--form", form, "--which", which, "--dtype", args.dtype,
               "--repeats", str(args.repeats), "--threads", str(args.threads)]
    command += ["--no-scipy"] if args.no_scipy else []
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"{side} {form} {which} failed:\n{run.stderr}")
    return json.loads(run.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per process")
    parser.add_argument("--torch", action="store_true", help="time torch.nn.GELU too, each in its own process")
    parser.add_argument("--threads", type=int, default=1, help="torch's threads (NumPy's ufuncs run on one)")
    parser.add_argument("--no-scipy", action="store_true", help="hide scipy from the workers (the old fallback)")
    parser.add_argument("--worker", choices=["minilm", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--form", choices=FORMS, help=argparse.SUPPRESS)
    parser.add_argument("--which", choices=PASSES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    sides = ["minilm", "torch"] if args.torch else ["minilm"]
    results = {(side, form, which): measure(side, form, which, args)
               for side in sides for form in FORMS for which in PASSES}
    print(f"machine: {cpu_model()}, {len(os.sched_getaffinity(0))} usable cores, load average "
          f"{os.getloadavg()[0]:.2f}; OpenBLAS kernels {results['minilm', 'tanh', 'forward']['openblas_core']} "
          f"(OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}); shape {SHAPE} {args.dtype}; "
          f"torch threads {args.threads}; scipy {'hidden' if args.no_scipy else 'importable'}")
    print("| side | pass | tanh µs (median, min) | exact µs (median, min) | exact / tanh (median) |")
    print("|---|---|---|---|---|")
    for side in sides:
        for which in PASSES:
            tanh, exact = results[side, "tanh", which], results[side, "none", which]
            print(f"| {side} | {which} | {tanh['median_us']:,.0f}, {tanh['min_us']:,.0f} | "
                  f"{exact['median_us']:,.0f}, {exact['min_us']:,.0f} | "
                  f"{exact['median_us'] / tanh['median_us']:.2f} |", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

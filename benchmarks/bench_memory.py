"""Where a training step's memory goes: minilm's kept activations by layer, and one step's peak beside torch's.

    python benchmarks/bench_memory.py                          # GPT-2 124M shape, B = 1 and 2, T = 1024
    python benchmarks/bench_memory.py --batch 4 --seq 512
    python benchmarks/bench_memory.py --batch 1 --time 3    # also what recomputing A costs in time

Two measurements, each side in a fresh process of its own:
- kept: after minilm's forward, every array a module holds for its backward (its cache), summed by module
  type and attribute: what the activations cost, and which layer to make leaner.
- peak: the rise of the process's peak resident memory (VmHWM, Linux) over one forward + backward + loss,
  above the memory the built model already holds; minilm both keeping its attention weights A and
  recomputing them in backward (``--recompute-attention`` in training). Gradients are allocated in that step on both sides. The
  torch side is nanoGPT's model (bench_step.py's), whose F.scaled_dot_product_attention(is_causal=True)
  keeps no (B, H, T, T) weights. On the CPU this stands in for the GPU comparison the issue names (CuPy's
  pool against torch.cuda.max_memory_allocated), which needs a GPU.
- time (--time N): minilm's forward + loss + backward with A kept and with A recomputed, N steps each,
  alternating in one process (both sides are NumPy, so no BLAS threads of another library spin between).
"""

import argparse
import collections
import json
import re
import statistics
import subprocess
import sys
import time

import numpy as np

SIDES = ("minilm", "minilm-recompute", "torch")
SHAPE = dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, dropout=0.0, bias=True)


def resident_gib(key):
    """VmRSS (now) or VmHWM (the peak since the last reset) of this process, in GiB."""
    with open("/proc/self/status") as status:
        return int(re.search(rf"{key}:\s+(\d+) kB", status.read()).group(1)) / 2**20


def kept_arrays(modules):
    """(module type.attribute) -> bytes of the arrays modules keep after forward, each buffer counted once."""
    seen, kept = set(), collections.Counter()
    for module in modules:
        params = {id(param.data) for param in getattr(module, "parameters", lambda: [])()}
        for attr, value in vars(module).items():
            for array in value if isinstance(value, tuple) else (value,):
                if not isinstance(array, np.ndarray) or id(array) in params:
                    continue
                buffer = array if array.base is None else array.base
                if id(buffer) not in seen:
                    seen.add(id(buffer))
                    kept[f"{type(module).__name__}.{attr}"] += buffer.nbytes
    return kept


def recompute_cost(batch, seq, steps):
    """Median seconds of one forward + loss + backward, A kept and A recomputed, alternating turns."""
    from minilm.backend import keep_freed_heap
    from minilm.models import GPT, GPTConfig
    from minilm.nn.attention import keep_attention_weights
    from minilm.nn.loss import CrossEntropyLoss

    keep_freed_heap()  # as `minilm train` does (backend.py: not on import)
    model = GPT(GPTConfig(**SHAPE), rng=0)
    idx = np.random.default_rng(0).integers(0, SHAPE["vocab_size"], (batch, seq + 1))
    times = {True: [], False: []}
    for turn in range(steps):
        for keep in (True, False) if turn % 2 == 0 else (False, True):
            keep_attention_weights(model, keep)
            started = time.perf_counter()
            criterion = CrossEntropyLoss()
            criterion(model(idx[:, :-1]), idx[:, 1:])
            model.zero_grad()
            model.backward(criterion.backward())
            times[keep].append(time.perf_counter() - started)
    return statistics.median(times[True]), statistics.median(times[False])


def one_side(side, batch, seq):
    idx = np.random.default_rng(0).integers(0, SHAPE["vocab_size"], (batch, seq + 1))
    x, y = idx[:, :-1], idx[:, 1:]
    if side.startswith("minilm"):
        from minilm.backend import keep_freed_heap
        from minilm.models import GPT, GPTConfig
        from minilm.nn.attention import keep_attention_weights
        from minilm.nn.loss import CrossEntropyLoss

        keep_freed_heap()  # as `minilm train` does (backend.py: not on import)

        model, criterion = GPT(GPTConfig(**SHAPE), rng=0), CrossEntropyLoss()
        keep_attention_weights(model, side != "minilm-recompute")

        def step():
            criterion(model(x), y)
            kept = kept_arrays([module for _, module in model.named_modules()] + [criterion])
            model.zero_grad()
            model.backward(criterion.backward())
            return kept
    else:
        import torch

        from bench_step import build_nanogpt

        model = build_nanogpt(SHAPE)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)

        def step():
            torch.nn.functional.cross_entropy(model(tx).flatten(0, 1), ty.flatten()).backward()
            return {}
    model_gib = resident_gib("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset VmHWM to the current resident size
    kept = step()
    print(json.dumps({"side": side, "model_gib": model_gib, "step_peak_gib": resident_gib("VmHWM") - model_gib,
                      "kept": dict(kept)}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--time", type=int, default=0, metavar="N",
                        help="also time N steps of minilm with A kept and with A recomputed (in this process)")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return one_side(args.side, args.batch[0], args.seq)
    print("| B | T | minilm step peak (GiB) | minilm, A recomputed | torch | minilm / torch | recomputed / torch |")
    print("|---|---|---|---|---|---|---|")
    kept = None
    for batch in args.batch:
        runs = {}
        for side in SIDES:
            command = [sys.executable, __file__, "--side", side, "--batch", str(batch), "--seq", str(args.seq)]
            runs[side] = json.loads(subprocess.run(command, check=True, capture_output=True, text=True,
                                                   cwd=sys.path[0]).stdout.strip().splitlines()[-1])
        kept = kept or (batch, runs["minilm"]["kept"])
        ours, lean, theirs = (runs[side]["step_peak_gib"] for side in SIDES)
        print(f"| {batch} | {args.seq} | {ours:.2f} | {lean:.2f} | {theirs:.2f} | {ours / theirs:.2f} | {lean / theirs:.2f} |")
    batch, arrays = kept
    total = sum(arrays.values())
    print(f"\nminilm's kept activations at B {batch}, T {args.seq}: {total / 2**30:.2f} GiB")
    print("| module.attribute | MiB | share |")
    print("|---|---|---|")
    for name, nbytes in sorted(arrays.items(), key=lambda item: -item[1]):
        print(f"| {name} | {nbytes / 2**20:,.1f} | {nbytes / total:.0%} |")
    if args.time:
        kept, recomputed = recompute_cost(args.batch[0], args.seq, args.time)
        print(f"\nforward + loss + backward at B {args.batch[0]}, T {args.seq}, median of {args.time}: "
              f"A kept {kept:.2f} s, A recomputed {recomputed:.2f} s ({recomputed / kept - 1:+.1%})")


if __name__ == "__main__":
    main()

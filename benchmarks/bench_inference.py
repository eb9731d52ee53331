"""What the inference switch saves: the peak memory of one forward pass with and without minilm.nn.inference().

    python benchmarks/bench_inference.py                    # GPT-2 124M's shape, B = 1, T = 1024
    python benchmarks/bench_inference.py --batch 2 --seq 512

Each mode runs in a fresh process: build the model in eval mode, then trace one forward of random token ids
with tracemalloc (NumPy reports every array it allocates to it) and report the peak of memory allocated
during that forward, the model's own weights excluded. (The process's resident high-water mark would not do:
initialising the weights, drawn in float64 on the host, peaks higher than a forward.) Without the
switch every layer keeps its backward cache until the forward returns (the (B, H, T, T) attention weights of
all L layers among it); under it each layer drops its cache as soon as it has run, so only one layer's
activations and the logits are alive at once. The logits of the two modes are checked equal.
"""

import argparse
import json
import subprocess
import sys
import tracemalloc

import numpy as np

GPT2 = dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, bias=True)


def worker(args):
    from minilm.backend import keep_freed_heap
    from minilm.models import GPT, GPTConfig

    keep_freed_heap()  # as the minilm command does (backend.py: not on import)
    from minilm.nn import inference

    model = GPT(GPTConfig(**{**GPT2, "block_size": max(args.seq, 1)}), rng=0).eval()
    ids = np.random.default_rng(1).integers(0, GPT2["vocab_size"], (args.batch, args.seq))
    tracemalloc.start()
    if args.mode == "inference":
        with inference():
            logits = model(ids)
    else:
        logits = model(ids)
    _, peak = tracemalloc.get_traced_memory()
    print(json.dumps({"mode": args.mode, "peak_rise_mib": peak / 2**20,
                      "logits_sum": float(logits.sum(dtype=np.float64))}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--mode", choices=["kept", "inference"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        return worker(args)
    results = {}
    for mode in ("kept", "inference"):
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--batch", str(args.batch), "--seq",
                              str(args.seq)], capture_output=True, text=True, check=True).stdout
        results[mode] = json.loads(out)
    assert results["kept"]["logits_sum"] == results["inference"]["logits_sum"], "the switch changed the logits"
    logits_mib = args.batch * args.seq * GPT2["vocab_size"] * 4 / 2**20
    print(f"GPT-2 124M shape, B {args.batch}, T {args.seq}: peak memory allocated during one forward "
          f"(the float32 logits alone are {logits_mib:.0f} MiB)")
    for mode in ("kept", "inference"):
        print(f"  {mode:<10} {results[mode]['peak_rise_mib']:8.0f} MiB")
    print(f"  ratio      {results['inference']['peak_rise_mib'] / results['kept']['peak_rise_mib']:8.2f}")


if __name__ == "__main__":
    main()

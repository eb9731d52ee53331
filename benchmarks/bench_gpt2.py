"""GPT-2 124M (random weights): forward and forward+backward time, minilm beside transformers, same machine.

    python benchmarks/bench_gpt2.py                 # B = 1, T = 1024, median of 3 after a warm-up
    python benchmarks/bench_gpt2.py --batch 4 --seq 256 --backend cupy

Each side runs in its own process (OpenBLAS threads spin after each call; two libraries in one process slow
each other). The torch side is transformers' GPT2LMHeadModel in float32 eager mode; minilm's is its GPT with
GPT-2's shape (12 layers, 12 heads, 768 channels, 50257 tokens, 1024 positions, tied head).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

SHAPE = dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)


def timed(fn, repeats):
    fn()  # warm-up: allocations, BLAS thread start-up, lazy imports
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run_minilm(args, idx):
    import minilm
    from minilm.backend import keep_freed_heap

    keep_freed_heap()  # as the minilm command does (backend.py: not on import)
    from minilm.backend import asarray, backend_name
    from minilm.models import GPT, GPTConfig

    minilm.use_backend(args.backend)
    model = GPT(GPTConfig(**SHAPE, bias=True), rng=0)
    ids = asarray(idx)
    sync = lambda: None  # noqa: E731
    if backend_name() == "cupy":
        import cupy

        sync = cupy.cuda.Device().synchronize

    def forward():
        model(ids)
        sync()

    def forward_backward():
        logits = model(ids)
        model.zero_grad()
        model.backward(logits * 0 + 1e-3)  # any upstream gradient: the work is the same
        sync()

    return {"params": model.num_params(), "forward": timed(forward, args.repeats),
            "forward_backward": timed(forward_backward, args.repeats)}


def run_torch(args, idx):
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_positions=SHAPE["block_size"], n_embd=SHAPE["n_embd"], n_layer=SHAPE["n_layer"],
                                     n_head=SHAPE["n_head"], vocab_size=SHAPE["vocab_size"],
                                     resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    device = "cuda" if args.backend != "numpy" else "cpu"
    model = transformers.GPT2LMHeadModel(config).to(device).train()
    ids = torch.from_numpy(idx).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def forward():
        with torch.no_grad():
            model(ids)
        sync()

    def forward_backward():
        model.zero_grad(set_to_none=True)
        logits = model(ids).logits
        logits.backward(torch.full_like(logits, 1e-3))
        sync()

    return {"params": sum(p.numel() for p in model.parameters()), "forward": timed(forward, args.repeats),
            "forward_backward": timed(forward_backward, args.repeats)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--side", choices=["minilm", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    idx = np.random.default_rng(0).integers(0, SHAPE["vocab_size"], (args.batch, args.seq))
    if args.side:
        print(json.dumps((run_minilm if args.side == "minilm" else run_torch)(args, idx)))
        return
    results = {}
    for side in ("minilm", "torch"):
        command = [sys.executable, __file__, "--side", side, "--batch", str(args.batch), "--seq", str(args.seq),
                   "--repeats", str(args.repeats), "--backend", args.backend]
        results[side] = json.loads(subprocess.run(command, check=True, capture_output=True, text=True)
                                   .stdout.strip().splitlines()[-1])
    print(f"GPT-2 124M shape, B={args.batch}, T={args.seq}, backend {args.backend}; "
          f"{platform.machine()}, {os.cpu_count()} cores, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print("| | minilm (s) | transformers (s) | ratio |")
    print("|---|---|---|---|")
    for key in ("forward", "forward_backward"):
        mine, theirs = results["minilm"][key], results["torch"][key]
        print(f"| {key.replace('_', ' + ')} | {mine:.2f} | {theirs:.2f} | {mine / theirs:.2f} |")
    print(f"parameters: minilm {results['minilm']['params']:,}, transformers {results['torch']['params']:,}")


if __name__ == "__main__":
    main()

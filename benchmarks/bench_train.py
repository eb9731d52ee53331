"""Train a preset with minilm and with a PyTorch eager twin; report val loss, wall time and tokens/s side by side.

    python benchmarks/bench_train.py                  # the CPU preset, 2000 iterations, both sides
    python benchmarks/bench_train.py --max-iters 200  # a quicker look
    python benchmarks/bench_train.py --only minilm --seeds 1337,1,2,3   # the spread over seeds

Besides the 20-batch estimate nanoGPT reports, each run measures its final weights on the whole val split
(every non-overlapping window), which has no sampling noise: the 20-batch estimate's own noise is ~±0.012.

Both sides start from the same weights (minilm's GPT-2 init, copied by name into minilm.verify.reference's
GPTTwin), draw the same batches (minilm.data.get_batch, same seed), follow the same warmup-cosine
schedule, clip, and step AdamW with nanoGPT's decay groups. Each side runs in its own process: OpenBLAS
worker threads spin ~0.1 s after every call, so two libraries stepping in one process slow each other.
"""

import argparse
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import time

import numpy as np


def run_minilm(cfg, shape):
    from minilm.backend import keep_freed_heap
    from minilm.training.trainer import Trainer, split_loss

    keep_freed_heap()  # as `minilm train` does (backend.py: not on import)

    trainer = Trainer(cfg, shape, log=lambda *_: None)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    return trainer.history, seconds, split_loss(trainer.model, trainer.val_data, cfg)


def run_torch(cfg, shape):
    import torch

    from minilm.verify import reference
    from minilm.data import CharTokenizer, every_window, get_batch, load_text, split
    from minilm.models import GPT
    from minilm.optim import WarmupCosine
    from minilm.training.trainer import model_config

    torch.manual_seed(cfg.seed)
    tokenizer = CharTokenizer.from_text(load_text(cfg.data))
    train_data, val_data = split(tokenizer.encode(load_text(cfg.data)))
    model = reference.twin(GPT(model_config(shape, cfg, tokenizer.vocab_size), rng=cfg.seed))
    params = [p for p in model.parameters()]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8)
    decay = cfg.lr_decay_iters or cfg.max_iters
    schedule = WarmupCosine(cfg.lr, cfg.min_lr, min(cfg.warmup_iters, decay), decay)
    rng, eval_rng = np.random.default_rng(cfg.seed), np.random.default_rng(cfg.seed + 1)

    def batch(data, generator):
        x, y = get_batch(data, cfg.batch_size, cfg.block_size, generator)
        return torch.from_numpy(np.asarray(x)), torch.from_numpy(np.asarray(y))

    @torch.no_grad()
    def estimate(data):
        model.eval()
        losses = [torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
                  for x, y in (batch(data, eval_rng) for _ in range(cfg.eval_iters))]
        model.train()
        return float(np.mean(losses))

    history, started = [], time.perf_counter()
    for step in range(cfg.max_iters + 1):
        if step % cfg.eval_interval == 0 or step == cfg.max_iters:
            history.append({"step": step, "train": estimate(train_data), "val": estimate(val_data)})
        if step == cfg.max_iters:
            break
        for group in optimizer.param_groups:
            group["lr"] = schedule(step)
        x, y = batch(train_data, rng)
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
    seconds = time.perf_counter() - started
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():  # minilm.training.trainer.split_loss's windows, in torch
        for x, y in every_window(val_data, cfg.batch_size, cfg.block_size):
            x, y = torch.from_numpy(np.asarray(x)), torch.from_numpy(np.asarray(y))
            total += torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).item() * y.numel()
            count += y.numel()
    return history, seconds, total / count


def one_side(args):
    from minilm.training.trainer import PRESETS

    shape = PRESETS[args.preset].model
    cfg = dataclasses.replace(PRESETS[args.preset].train, backend=args.backend, out=args.out, sample_tokens=0,
                              **({"seed": args.seed} if args.seed is not None else {}),
                              **({"max_iters": args.max_iters} if args.max_iters else {}))
    if args.max_iters:
        cfg = dataclasses.replace(cfg, eval_interval=min(cfg.eval_interval, args.max_iters))
    history, seconds, whole = (run_minilm if args.side == "minilm" else run_torch)(cfg, shape)
    steps = cfg.max_iters
    print(json.dumps({"side": args.side, "seed": cfg.seed, "val": history[-1]["val"], "whole_val": whole,
                      "train": history[-1]["train"],
                      "seconds": seconds, "steps": steps,
                      "tokens_per_s": steps * cfg.batch_size * cfg.block_size / seconds, "history": history}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--max-iters", type=int, default=None)
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--out", default="out/bench-train")
    parser.add_argument("--only", choices=["minilm", "torch"], default=None)
    parser.add_argument("--seeds", default=[None], type=lambda text: [int(seed) for seed in text.split(",")],
                        help="comma-separated seeds, each a run per side (default: the preset's seed)")
    parser.add_argument("--side", choices=["minilm", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return one_side(args)
    results = []
    for seed in args.seeds:
        for side in [args.only] if args.only else ["minilm", "torch"]:
            out = f"{args.out}-{side}-{seed}-{int(time.time())}"
            command = [sys.executable, __file__, "--side", side, "--preset", args.preset, "--backend", args.backend,
                       "--out", out, *(["--max-iters", str(args.max_iters)] if args.max_iters else []),
                       *(["--seed", str(seed)] if seed is not None else [])]
            line = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            results.append(json.loads(line))
            print(f"{side} seed {results[-1]['seed']}: val {results[-1]['val']:.4f}, whole val {results[-1]['whole_val']:.4f}", flush=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset: autodetect)')}")
    print("| side | seed | steps | final train loss | final val loss (20 batches) | whole val split | wall time (s) | tokens/s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['side']} | {r['seed']} | {r['steps']} | {r['train']:.4f} | {r['val']:.4f} | {r['whole_val']:.4f} | "
              f"{r['seconds']:.1f} | {r['tokens_per_s']:,.0f} |")
    for side in dict.fromkeys(r["side"] for r in results):
        runs = [r for r in results if r["side"] == side]
        if len(runs) > 1:
            stats = {key: (np.mean([r[key] for r in runs]), np.std([r[key] for r in runs], ddof=1))
                     for key in ("train", "val", "whole_val")}
            print(f"{side}, {len(runs)} seeds, mean ± sd: " +
                  ", ".join(f"{key} {mean:.4f} ± {sd:.4f}" for key, (mean, sd) in stats.items()))
    if len(results) == 2 and results[0]["side"] != results[1]["side"]:
        print(f"minilm / torch wall-time ratio: {results[0]['seconds'] / results[1]['seconds']:.2f}")
    assert all(math.isfinite(r["val"]) and math.isfinite(r["whole_val"]) for r in results)


if __name__ == "__main__":
    main()

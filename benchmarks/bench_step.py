"""One training step, minilm beside a PyTorch eager nanoGPT, each in its own process, same threads, same shapes.

    python benchmarks/bench_step.py                          # CPU preset and GPU-preset shape, both OpenBLAS setups
    python benchmarks/bench_step.py --configs cpu --rounds 9 # the CPU preset only, more rounds
    python benchmarks/bench_step.py --openblas configured    # only the environment as it is set
    python benchmarks/bench_step.py --device gpu             # CuPy beside torch.cuda, plus GPT-2 124M (B 8, T 1024)
    python benchmarks/bench_step.py --configs cpu --split 2  # a third side: minilm with the batch on 2 threads

A step is what a training loop does: logits = model(x); loss = CE(logits, y); zero the grads; backward; clip
the global norm to 1; AdamW (decay on matrices only). Printed per configuration: median ms/step, tokens/s,
achieved GFLOP/s (nanoGPT's count: 6 flops per matmul parameter per token, plus 12·L·T·C per token for
the attention products, causal or not), peak memory on a GPU (torch.cuda.max_memory_allocated beside the
high-water mark of bytes in use in CuPy's memory pool, recorded at every allocation), and minilm / torch.

fair: the torch side is nanoGPT's model.py structure in eager mode: one fused c_attn Linear, F.scaled_dot_
    product_attention(is_causal=True), GELU(approximate="tanh") (nanoGPT has the exact form; tanh is what
    minilm's GPT computes, so both sides do the same work), LayerNorm (with bias, as minilm's), the head tied
    to wte, and torch.optim.AdamW with the implementation torch picks (nanoGPT asks for fused=True on a GPU;
    we do too). Same shapes, bias and dropout as the preset (minilm.training.trainer.PRESETS), same random batches.
timing: two long-lived worker processes (minilm, torch) take turns: round r runs ``--steps`` steps on one side,
    then the other, the order alternating every round, with a pause between turns: OpenBLAS and OpenMP worker
    threads spin ~0.1 s after their last call, and would steal cores from the other side. Both sides get the
    same thread count (OPENBLAS_NUM_THREADS and torch.set_num_threads); the median over every timed step is
    reported.
split: with --split N a third worker runs minilm as ``minilm train --threads N`` does (minilm.training.threads):
    the batch cut in N micro-batches, each on its own replica and thread, BLAS held to one thread per replica
    meanwhile; its turns alternate with the other two, and its ratio is printed beside the one-thread side's.
OpenBLAS: "configured" is the environment as it is; "autodetect" runs the workers with OPENBLAS_CORETYPE
    removed (only in their environment), so OpenBLAS picks the kernels for this CPU (AVX-512 where it has
    them). The kernel set OpenBLAS actually loaded is printed for each. torch uses its own BLAS (MKL/oneDNN),
    so its times should not move between the two.
"""

import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

# name -> (batch B, model shape). cpu and gpu are minilm.training.trainer.PRESETS; gpt2 is GPT-2 small (124M).
CONFIGS = {
    "cpu": dict(batch_size=12, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False),
    "gpu": dict(batch_size=64, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2, bias=False),
    "gpt2": dict(batch_size=8, block_size=1024, n_layer=12, n_head=12, n_embd=768, dropout=0.0, bias=True,
                 vocab_size=50257),
}
# the same shape with minilm recomputing its attention weights in backward (--recompute-attention): the
# memory benchmark forecasts ~1.35x torch's peak with them kept, against the target's 1.3x
CONFIGS["gpt2_recompute"] = dict(CONFIGS["gpt2"], recompute_attention=True)
CHAR_VOCAB = 65  # distinct characters of the embedded tiny Shakespeare: the presets' vocabulary
DEFAULT_CONFIGS = {"cpu": ["cpu", "gpu"], "gpu": ["cpu", "gpu", "gpt2", "gpt2_recompute"]}
GAP_S = 0.25  # pause between turns, longer than OpenBLAS's ~0.1 s of spinning after its last call


def shape_of(name):
    spec = dict(CONFIGS[name])
    spec.setdefault("vocab_size", CHAR_VOCAB)
    return spec


def flops_per_step(spec):
    """nanoGPT's estimate_mfu count (PaLM, appendix B) for one forward + backward of B·T tokens."""
    B, T, L, C, V = (spec[k] for k in ("batch_size", "block_size", "n_layer", "n_embd", "vocab_size"))
    matmul_params = L * 12 * C * C + V * C  # q, k, v, out (4C²) and the MLP (8C²) per layer; the tied head
    return B * T * (6 * matmul_params + 12 * L * T * C)


def openblas_info():
    """(core name, threads) of the OpenBLAS NumPy loaded in this process, or (None, None) if not found."""
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line}
    for path in sorted(paths):
        lib = ctypes.CDLL(path)
        for prefix, suffix in (("scipy_openblas_", "64_"), ("scipy_openblas_", ""), ("openblas_", "")):
            try:
                corename = getattr(lib, f"{prefix}get_corename{suffix}")
                threads = getattr(lib, f"{prefix}get_num_threads{suffix}")
            except AttributeError:
                continue
            corename.restype = ctypes.c_char_p
            return corename().decode(), int(threads())
    return None, None


# ---------------------------------------------------------------- the two sides, each in its own worker process

def minilm_side(spec, device, xs, ys, split=1):
    """(step function, sync, peak-memory function) for minilm; ``split`` > 1: the batch on that many threads."""
    from minilm import backend
    from minilm.models import GPT, GPTConfig
    from minilm.nn.attention import keep_attention_weights
    from minilm.nn.loss import CrossEntropyLoss
    from minilm.optim import AdamW, clip_grad_norm, decay_groups
    from minilm.communicator import World
    from minilm.training.distributed import micro_batches, step_loss
    from minilm.training.overlap import GradientSum
    from minilm.training.threads import Replicas

    backend.use_backend(backend.GPU if device == "gpu" else backend.CPU)
    backend.keep_freed_heap()  # as `minilm train` does (backend.py: not on import)
    xp, peak = backend.xp, [0]
    sync = lambda: None  # noqa: E731
    if device == "gpu":  # the memory pool keeps no high-water mark: wrap its malloc to record one
        pool = xp.get_default_memory_pool()

        def tracking_malloc(size):
            memory = pool.malloc(size)
            peak[0] = max(peak[0], pool.used_bytes())
            return memory

        xp.cuda.set_allocator(tracking_malloc)
        sync = xp.cuda.runtime.deviceSynchronize
    model_fields = {k: v for k, v in spec.items() if k not in ("batch_size", "recompute_attention")}
    model = GPT(GPTConfig(**model_fields), rng=1337)
    keep_attention_weights(model, not spec.get("recompute_attention", False))
    optimizer = AdamW(decay_groups(model, 0.1), lr=1e-4, betas=(0.9, 0.99), weight_decay=0.1)
    xs, ys = backend.asarray(xs), backend.asarray(ys)
    world = World()  # one process: the Trainer's step_loss below, with nothing to sum over ranks
    replicas, gradients = Replicas(model, split), GradientSum(model, world, None)

    def step(i):
        x, y = xs[i % len(xs)], ys[i % len(ys)]
        if split > 1:  # the Trainer's own step: B/split rows a replica, each backward weighted by its share
            loss = step_loss(model, micro_batches((x,), y, world, 1, split), world, gradients, replicas)
        else:
            criterion = CrossEntropyLoss()
            loss = float(criterion(model(x), y))
            model.zero_grad()
            model.backward(criterion.backward())
        clip_grad_norm(model.parameters(), 1.0)
        optimizer.step()
        return loss

    return step, sync, lambda: peak[0]


def nanogpt_modules():
    """nanoGPT's model.py classes in torch (imported lazily: the driver runs without torch)."""
    import math
    import types

    import torch
    from torch import nn
    from torch.nn import functional as F

    class CausalSelfAttention(nn.Module):
        def __init__(self, C, H, bias, dropout):
            super().__init__()
            self.c_attn = nn.Linear(C, 3 * C, bias=bias)  # q, k, v in one matmul, as nanoGPT
            self.c_proj = nn.Linear(C, C, bias=bias)
            self.resid_dropout = nn.Dropout(dropout)
            self.H, self.dropout = H, dropout

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(x).split(C, dim=2)
            q, k, v = (t.view(B, T, self.H, C // self.H).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                               is_causal=True)
            return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))

    class MLP(nn.Module):
        def __init__(self, C, bias, dropout):
            super().__init__()
            self.c_fc, self.gelu = nn.Linear(C, 4 * C, bias=bias), nn.GELU(approximate="tanh")
            self.c_proj, self.dropout = nn.Linear(4 * C, C, bias=bias), nn.Dropout(dropout)

        def forward(self, x):
            return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))

    class Block(nn.Module):
        def __init__(self, C, H, bias, dropout):
            super().__init__()
            self.ln_1, self.attn = nn.LayerNorm(C), CausalSelfAttention(C, H, bias, dropout)
            self.ln_2, self.mlp = nn.LayerNorm(C), MLP(C, bias, dropout)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class NanoGPT(nn.Module):
        def __init__(self, V, T, L, H, C, dropout, bias):
            super().__init__()
            self.wte, self.wpe, self.drop = nn.Embedding(V, C), nn.Embedding(T, C), nn.Dropout(dropout)
            self.h = nn.ModuleList(Block(C, H, bias, dropout) for _ in range(L))
            self.ln_f, self.lm_head = nn.LayerNorm(C), nn.Linear(C, V, bias=False)
            self.lm_head.weight = self.wte.weight  # tied, as GPT-2
            for name, p in self.named_parameters():  # GPT-2's init, as nanoGPT
                if p.dim() == 2:
                    std = 0.02 / math.sqrt(2 * L) if name.endswith("c_proj.weight") else 0.02
                    nn.init.normal_(p, 0.0, std)
                elif name.endswith("bias"):
                    nn.init.zeros_(p)

        def forward(self, idx):
            pos = torch.arange(idx.shape[1], device=idx.device)
            x = self.drop(self.wte(idx) + self.wpe(pos))
            for block in self.h:
                x = block(x)
            return self.lm_head(self.ln_f(x))

    return types.SimpleNamespace(CausalSelfAttention=CausalSelfAttention, MLP=MLP, Block=Block, NanoGPT=NanoGPT)


def build_nanogpt(spec):
    torch_model = nanogpt_modules().NanoGPT
    return torch_model(*(spec[k] for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "dropout", "bias")))


def torch_side(spec, device, xs, ys):
    """(step function, sync, peak-memory function) for nanoGPT's model in torch eager mode."""
    import torch
    from torch.nn import functional as F

    torch.manual_seed(1337)
    dev = "cuda" if device == "gpu" else "cpu"
    model = build_nanogpt(spec).to(dev).train()
    params = list(model.parameters())
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.99), **({"fused": True} if dev == "cuda" else {}))
    xs, ys = torch.from_numpy(xs).to(dev), torch.from_numpy(ys).to(dev)
    V = spec["vocab_size"]

    def step(i):
        x, y = xs[i % len(xs)], ys[i % len(ys)]
        loss = F.cross_entropy(model(x).view(-1, V), y.view(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss

    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    peak = (lambda: torch.cuda.max_memory_allocated()) if dev == "cuda" else (lambda: 0)
    return step, sync, peak


def serve(cases, sync, peak):
    """The worker's loop: answer "run NAME K" with K timings of cases[NAME](i), and "quit" with the peak memory."""
    count = 0
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        _, name, repeats = line.split()
        times = []
        for _ in range(int(repeats)):
            started = time.perf_counter()
            cases[name](count)
            sync()
            times.append(time.perf_counter() - started)
            count += 1
        print(json.dumps({"times": times}), flush=True)
    print(json.dumps({"peak_bytes": peak()}), flush=True)


def ready(**info):
    corename, blas_threads = openblas_info()
    print(json.dumps({"openblas_core": corename, "openblas_threads": blas_threads, **info}), flush=True)


def worker(args):
    """Build one side, warm it up, then serve timed steps."""
    spec = shape_of(args.config)
    if args.side == "torch":
        import torch

        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    data = rng.integers(0, spec["vocab_size"], (4, spec["batch_size"], spec["block_size"] + 1))
    xs, ys = np.ascontiguousarray(data[:, :, :-1]), np.ascontiguousarray(data[:, :, 1:])
    if args.side == "minilm":
        step, sync, peak = minilm_side(spec, args.device, xs, ys, args.split)
    else:
        step, sync, peak = torch_side(spec, args.device, xs, ys)
    for i in range(args.warmup):
        step(i)
    sync()
    ready()
    serve({"step": step}, sync, peak)


class Worker:
    """One side in its own process, driven line by line over its stdin and stdout."""

    def __init__(self, command, env):
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = self._read()

    def _read(self):
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {' '.join(self.process.args[1:4])} exited with {self.process.wait()}")
        return json.loads(line)

    def _send(self, text):
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def run(self, name, repeats):
        self._send(f"run {name} {repeats}")
        return self._read()["times"]

    def close(self):
        self._send("quit")
        peak = self._read()["peak_bytes"]
        self.process.wait()
        return peak


def alternate(workers, name, rounds, repeats):
    """side -> every timing of ``name``, over ``rounds`` turns per side whose order alternates."""
    sides, times = list(workers), {side: [] for side in workers}
    for r in range(rounds):
        for side in (sides if r % 2 == 0 else sides[::-1]):
            time.sleep(GAP_S)  # let the other side's BLAS threads stop spinning
            times[side] += workers[side].run(name, repeats)
    return times


# ---------------------------------------------------------------- the driver

def compare(config, device, setup, env, threads, args):
    """Alternating rounds of minilm (and minilm on --split threads) and torch; one result dict per side, torch last."""
    threaded = {f"minilm x{args.split}": ("minilm", args.split)} if args.split > 1 else {}
    sides = {"minilm": ("minilm", 1), **threaded, "torch": ("torch", 1)}  # name: (worker side, its --split)
    workers = {name: Worker([sys.executable, __file__, "--worker", side, "--configs", config, "--device", device,
                             "--threads", str(threads), "--warmup", str(args.warmup), "--split", str(split)], env)
               for name, (side, split) in sides.items()}
    times = alternate(workers, "step", args.rounds, args.steps)
    spec, results = shape_of(config), []
    for side, worker_ in workers.items():
        peak = worker_.close()
        seconds = statistics.median(times[side])
        q1, _, q3 = statistics.quantiles(times[side], n=4) if len(times[side]) > 1 else (seconds,) * 3
        results.append({"config": config, "device": device, "setup": setup, "side": side, "ms": 1e3 * seconds,
                        "iqr_ms": (1e3 * q1, 1e3 * q3), "steps": len(times[side]),
                        "tokens_per_s": spec["batch_size"] * spec["block_size"] / seconds,
                        "gflops": flops_per_step(spec) / seconds / 1e9, "peak_gib": peak / 2**30,
                        "openblas_core": worker_.info["openblas_core"],
                        "openblas_threads": worker_.info["openblas_threads"]})
    return results


def gpu_available():
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=None,
                        help="comma-separated, from " + ", ".join(CONFIGS) + " (default: cpu,gpu; on a GPU also gpt2 and gpt2_recompute)")
    parser.add_argument("--device", choices=["cpu", "gpu", "auto"], default="auto",
                        help="auto: the CPU, and the GPU too when torch sees one")
    parser.add_argument("--openblas", choices=["configured", "autodetect", "both"], default="both")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both sides (default: OPENBLAS_NUM_THREADS if set, else the usable cores)")
    parser.add_argument("--rounds", type=int, default=None, help="turns per side (default: 5; 3 for the large "
                                                                  "shapes on the CPU)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per turn (default: 10; 2 for the large shapes on the CPU)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps in each worker before the rounds")
    parser.add_argument("--split", type=int, default=1,
                        help="also time minilm with the batch on this many threads (minilm train --threads N)")
    parser.add_argument("--worker", choices=["minilm", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    threads = args.threads or int(os.environ.get("OPENBLAS_NUM_THREADS", 0)) or len(os.sched_getaffinity(0))
    if args.worker:
        args.side, args.config, args.threads = args.worker, args.configs, threads
        return worker(args)

    devices = {"auto": ["cpu", "gpu"], "cpu": ["cpu"], "gpu": ["gpu"]}[args.device]
    if "gpu" in devices and not gpu_available():
        print("note: no CUDA GPU visible to torch: the GPU runs (CuPy beside torch.cuda, GPT-2 124M, peak memory) "
              "are skipped")
        devices.remove("gpu")
    configured = os.environ.get("OPENBLAS_CORETYPE")
    setups = {"configured": dict(os.environ), "autodetect": {k: v for k, v in os.environ.items()
                                                              if k != "OPENBLAS_CORETYPE"}}
    setups["configured"]["OPENBLAS_NUM_THREADS"] = setups["autodetect"]["OPENBLAS_NUM_THREADS"] = str(threads)
    chosen = ["configured", "autodetect"] if args.openblas == "both" else [args.openblas]
    if configured is None and len(chosen) == 2:
        chosen = ["configured"]  # nothing to remove: the environment already autodetects
    print(f"machine: {cpu_model()}, {len(os.sched_getaffinity(0))} usable cores; threads per side: {threads}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"OPENBLAS_CORETYPE={configured if configured is not None else '(unset: autodetect)'}; "
          f"numpy {np.__version__}")
    groups = []  # one list of results per configuration and setup, torch's last
    for device in devices:
        for config in (args.configs.split(",") if args.configs else DEFAULT_CONFIGS[device]):
            light = config == "cpu" or device == "gpu"
            run_args = argparse.Namespace(**{**vars(args), "steps": args.steps or (10 if light else 2),
                                             "rounds": args.rounds or (5 if light else 3)})
            for setup in (chosen if device == "cpu" else ["configured"]):
                try:
                    groups.append(compare(config, device, setup, setups[setup], threads, run_args))
                except RuntimeError as err:  # e.g. torch sees a GPU but CuPy is not installed
                    print(f"note: {config} on the {device} skipped: {err}")
                    continue
                report(groups[-1])
    print("\n| config | device | OpenBLAS | side | ms/step (median) | IQR (ms) | tokens/s | GFLOP/s | peak GiB | "
          "minilm / torch |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for group in groups:
        theirs = group[-1]
        for r in group:
            setup = r["setup"] + (f" ({r['openblas_core']})" if r["side"] != "torch" and r["openblas_core"] else "")
            peak = f"{r['peak_gib']:.2f}" if r["device"] == "gpu" else "-"
            ratio = f"**{r['ms'] / theirs['ms']:.2f}**" if r is not theirs else ""
            print(f"| {r['config']} | {r['device']} | {setup} | {r['side']} | {r['ms']:.1f} | "
                  f"{r['iqr_ms'][0]:.1f}–{r['iqr_ms'][1]:.1f} | {r['tokens_per_s']:,.0f} | {r['gflops']:.1f} | "
                  f"{peak} | {ratio} |")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


def report(group):
    mine, theirs = group[0], group[-1]
    split = "".join(f", {r['side']} {r['ms']:.1f} ms (ratio {r['ms'] / theirs['ms']:.2f})" for r in group[1:-1])
    print(f"{mine['config']:>5} {mine['device']} {mine['setup']:<10} ({mine['openblas_core']}, "
          f"{mine['openblas_threads']} threads): minilm {mine['ms']:.1f} ms{split}, torch {theirs['ms']:.1f} ms, "
          f"ratio {mine['ms'] / theirs['ms']:.2f}", flush=True)


if __name__ == "__main__":
    main()

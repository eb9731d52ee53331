"""Forward + backward of each layer, minilm beside torch at the CPU preset's shapes: where a step's time goes.

    python benchmarks/bench_layers.py                       # every layer, the environment as configured
    python benchmarks/bench_layers.py --openblas autodetect # OPENBLAS_CORETYPE removed in the workers
    python benchmarks/bench_layers.py --only gelu,layernorm --threads 1
    python benchmarks/bench_layers.py --floor               # the element-wise layers against their memory floor

Shapes (minilm.training.trainer.PRESETS["cpu"]): B 12, T 64, C 128, H 4, hs 32, V 65, L 4, no biases. Each case times
one forward and its backward (gradients reset first, as a training step does); "calls/step" is how often a
training step runs it, so µs x calls gives the layer's share of a step (the cases overlap: attention holds
its softmax and its Linear layers; "matmuls" is every matrix product of a step on its own, the BLAS floor).
The torch side is what nanoGPT's model runs: nn.LayerNorm, nn.GELU (in its tanh form, as minilm's GPT),
a masked softmax, nanoGPT's CausalSelfAttention (fused c_attn, F.scaled_dot_product_attention(is_causal=True)),
F.cross_entropy, nn.Embedding and torch.optim.AdamW (the implementation torch picks). softmax_mask on minilm's
side is the lines of scaled_dot_product_attention around its softmax and the dS line of its backward. Each
side runs in its own worker process, alternating turns, the same thread count on both (see bench_step.py).

The memory floor (--floor) of an element-wise layer is the time of the full passes over its largest array that
its formula cannot avoid, forward + backward, as one fused kernel would make them: a pass reads or writes the
whole array once, and the floor is passes / 3 times the time of one NumPy add of that shape (an add reads two
arrays and writes one; its output preallocated, so no page is faulted in). The passes counted (FLOOR):
    layernorm      (B, T, C)     5   forward reads x, writes y; backward reads dy and x, writes dx (dw, db in it)
    gelu           (B, T, 4C)    5   the same: x -> y; x, dy -> dx
    softmax_mask   (B, H, T, T)  5   S -> A (the mask is a comparison of indices, never read); A, dA -> dS
    cross_entropy  (B, T, V)     3   forward reads the logits; backward reads them again, writes dlogits
    embedding      (B, T, C)     3   forward reads the B·T rows, writes them; backward reads dy (dW is V x C, in cache)
Both sides are reported against the same NumPy floor, measured in the minilm worker.
"""

import argparse
import os
import statistics
import sys

import numpy as np

from bench_step import CHAR_VOCAB, Worker, alternate, cpu_model, ready, serve

B, T, C, H, L, V = 12, 64, 128, 4, 4, CHAR_VOCAB
hs = C // H
# --shape gpu: the GPU preset's model and batch (B 64, T 256, C 384, H 6, L 6) on the CPU, where every array
# outgrows the caches and the memory floor is memory's; at the CPU preset's shape each array fits in L2
SHAPES = {"cpu": (12, 64, 128, 4, 4), "gpu": (64, 256, 384, 6, 6)}
# name -> (calls per training step, what it is), for the shape in use (use_shape sets it)
CASES = {}


def cases_for(L):
    """The cases of a model of L layers: how often a step calls each, and what it is."""
    return {
        "linear_fc": (L, "Linear C -> 4C (mlp.c_fc)"),
        "linear_proj": (L, "Linear 4C -> C (mlp.c_proj)"),
        "lm_head": (1, "Linear C -> V (the tied head)"),
        "layernorm": (2 * L + 1, "LayerNorm (B, T, C)"),
        "gelu": (L, "GELU tanh (B, T, 4C)"),
        "softmax_mask": (L, "scale, causal mask, softmax (B, H, T, T)"),
        "attention": (L, "causal self-attention: qkv, sdpa, out proj"),
        "block": (L, "a whole transformer block"),
        "cross_entropy": (1, "cross-entropy (B, T, V)"),
        "embedding": (1, "Embedding (B, T) ids -> (B, T, C), repeated ids"),
        "adamw": (1, "AdamW step, every parameter of the model"),
        "clip": (1, "clip_grad_norm, every gradient of the model"),
        "matmuls": (1, "every matmul of a step, plain arrays"),
    }


# the memory floor: layer -> (the shape its passes run over, full passes forward + backward) (module docstring)
FLOOR_SHAPES = {}


def use_shape(name):
    """Set the module's B, T, C, H, L (and hs, FLOOR_SHAPES, CASES) to SHAPES[name], before any case is built."""
    global B, T, C, H, L, hs
    B, T, C, H, L = SHAPES[name]
    hs = C // H
    FLOOR_SHAPES.update(btc=(B, T, C), bt4c=(B, T, 4 * C), bhtt=(B, H, T, T), btv=(B, T, V))
    CASES.update(cases_for(L))


use_shape("cpu")
FLOOR = {"layernorm": ("btc", 5), "gelu": ("bt4c", 5), "softmax_mask": ("bhtt", 5), "cross_entropy": ("btv", 3),
         "embedding": ("btc", 3)}


def add_cases():
    """"add_<shape>": one NumPy add of arrays of that shape into a preallocated output (three passes)."""
    rng = np.random.default_rng(1)
    cases = {}
    for key, shape in FLOOR_SHAPES.items():
        a, b, out = (rng.standard_normal(shape).astype(np.float32) for _ in range(3))
        cases["add_" + key] = lambda _, a=a, b=b, out=out: np.add(a, b, out=out)
    return cases


def step_matmuls(mm, t, rng_normal):
    """The matrix products of one training step of the CPU preset, as (a, b) pairs to multiply."""
    N = B * T
    x, h, qkv = rng_normal(N, C), rng_normal(N, 4 * C), rng_normal(N, 3 * C)
    w_qkv, w_o, w_fc, w_proj, w_head = (rng_normal(3 * C, C), rng_normal(C, C), rng_normal(4 * C, C),
                                        rng_normal(C, 4 * C), rng_normal(V, C))
    q, k, v, A = rng_normal(B * H, T, hs), rng_normal(B * H, T, hs), rng_normal(B * H, T, hs), rng_normal(B * H, T, T)
    logits = rng_normal(N, V)
    per_layer = [
        (x, t(w_qkv)), (q, t(k)), (A, v), (x, t(w_o)), (x, t(w_fc)), (h, t(w_proj)),  # forward
        (x, w_proj), (t(x), h),  # c_proj backward: dx = dy W, dW = dyᵀ h (dy stands in as x: same shape)
        (h, w_fc), (t(h), x),  # c_fc backward
        (x, w_o), (t(x), x),  # out proj backward
        (q, t(v)), (t(A), q), (A, k), (t(A), q),  # sdpa backward: dA, dV, dQ, dK
        (qkv, w_qkv), (t(qkv), x),  # qkv backward
    ]
    head = [(x, t(w_head)), (logits, w_head), (t(logits), x)]
    pairs = per_layer * L + head

    def run(_):
        for a, b in pairs:
            mm(a, b)

    return run


def minilm_cases():
    from minilm.backend import asarray, keep_freed_heap, softmax_shift
    from minilm.models import GPT, GPTConfig
    from minilm.nn.activation import GELU
    from minilm.nn.attention import MultiHeadAttention, attention_mask
    from minilm.nn.embedding import Embedding
    from minilm.nn.linear import Linear
    from minilm.nn.loss import CrossEntropyLoss
    from minilm.nn.normalization import LayerNorm
    from minilm.nn.softmax import softmax_in_place
    from minilm.nn.transformer import TransformerBlock
    from minilm.optim import AdamW, clip_grad_norm, decay_groups

    keep_freed_heap()  # as the minilm command does (backend.py: not on import)
    rng = np.random.default_rng(0)

    def randn(*shape):
        return asarray(rng.standard_normal(shape).astype(np.float32))

    def layer_case(layer, x, dy):
        def run(_):
            layer.zero_grad()
            layer(x)
            layer.backward(dy)
        return run

    x, x4, dx4 = randn(B, T, C), randn(B, T, 4 * C), randn(B, T, 4 * C)
    cases = {
        "linear_fc": layer_case(Linear(C, 4 * C, bias=False, rng=0), x, dx4),
        "linear_proj": layer_case(Linear(4 * C, C, bias=False, rng=0), x4, randn(B, T, C)),
        "lm_head": layer_case(Linear(C, V, bias=False, rng=0), x, randn(B, T, V)),
        "layernorm": layer_case(LayerNorm(C), x, randn(B, T, C)),
        "gelu": layer_case(GELU("tanh"), x4, dx4),
        "attention": layer_case(MultiHeadAttention(C, H, bias=False, causal=True, rng=0), x, randn(B, T, C)),
        "block": layer_case(TransformerBlock(C, H, 4 * C, bias=False, rng=0), x, randn(B, T, C)),
    }
    S, dA, mask = randn(B, H, T, T), randn(B, H, T, T), attention_mask(B, T, causal=True, dtype=np.float32)

    def softmax_mask(_):  # the lines of scaled_dot_product_attention and its backward around the softmax
        scores = S * (1.0 / hs**0.5)
        shift = softmax_shift(scores)
        scores += mask
        A = softmax_in_place(scores, axis=-1, shift=shift)
        A * (dA - (dA * A).sum(axis=-1, keepdims=True))
    cases["softmax_mask"] = softmax_mask

    logits, targets = randn(B, T, V), asarray(rng.integers(0, V, (B, T)))

    def cross_entropy(_):
        criterion = CrossEntropyLoss()
        criterion(logits, targets)
        criterion.backward()
    cases["cross_entropy"] = cross_entropy
    ids = asarray(rng.integers(0, V, (B, T)))  # 768 ids over 65 rows: every id repeats
    cases["embedding"] = layer_case(Embedding(V, C, rng=0), ids, x)

    model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=H, n_embd=C, bias=False), rng=0)
    for p in model.parameters():
        p.grad = randn(*p.shape) * 1e-3
    optimizer = AdamW(decay_groups(model, 0.1), lr=1e-4, betas=(0.9, 0.99), weight_decay=0.1)
    cases["adamw"] = lambda _: optimizer.step()
    cases["clip"] = lambda _: clip_grad_norm(model.parameters(), 1e9)  # the norm, never a rescale
    cases["matmuls"] = step_matmuls(lambda a, b: a @ b, lambda a: a.swapaxes(-1, -2), randn)
    return {**cases, **add_cases()}


def torch_cases():
    import torch
    from torch.nn import functional as F

    from bench_step import nanogpt_modules

    torch.manual_seed(0)
    ng = nanogpt_modules()

    def randn(*shape, grad=False):
        return torch.randn(*shape, requires_grad=grad)

    def layer_case(fn, params, x, dy):
        def run(_):
            for p in params:
                p.grad = None
            if x.requires_grad:
                x.grad = None
            fn(x).backward(dy)
        return run

    def module_case(module, x, dy):
        return layer_case(module, list(module.parameters()), x, dy)

    x, x4, dx4 = randn(B, T, C, grad=True), randn(B, T, 4 * C, grad=True), randn(B, T, 4 * C)
    cases = {
        "linear_fc": module_case(torch.nn.Linear(C, 4 * C, bias=False), x, dx4),
        "linear_proj": module_case(torch.nn.Linear(4 * C, C, bias=False), x4, randn(B, T, C)),
        "lm_head": module_case(torch.nn.Linear(C, V, bias=False), x, randn(B, T, V)),
        "layernorm": module_case(torch.nn.LayerNorm(C), x, randn(B, T, C)),
        "gelu": module_case(torch.nn.GELU(approximate="tanh"), x4, dx4),
        "attention": module_case(ng.CausalSelfAttention(C, H, False, 0.0), x, randn(B, T, C)),
        "block": module_case(ng.Block(C, H, False, 0.0), x, randn(B, T, C)),
    }
    S, dA = randn(B, H, T, T, grad=True), randn(B, H, T, T)
    causal = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    cases["softmax_mask"] = layer_case(lambda s: (s * (1.0 / hs**0.5)).masked_fill(causal, float("-inf")).softmax(-1),
                                       [], S, dA)
    logits, targets = randn(B, T, V, grad=True), torch.randint(0, V, (B, T))
    cases["cross_entropy"] = layer_case(lambda z: F.cross_entropy(z.view(-1, V), targets.view(-1)), [], logits,
                                        torch.tensor(1.0))
    embedding = torch.nn.Embedding(V, C)
    ids = torch.randint(0, V, (B, T))

    def embed(_):
        embedding.weight.grad = None
        embedding(ids).backward(x.detach())
    cases["embedding"] = embed

    model = ng.NanoGPT(V, T, L, H, C, 0.0, False)
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.99))
    cases["adamw"] = lambda _: optimizer.step()
    cases["clip"] = lambda _: torch.nn.utils.clip_grad_norm_(params, 1e9)
    cases["matmuls"] = step_matmuls(torch.matmul, lambda a: a.transpose(-1, -2), lambda *s: torch.randn(*s))
    return {**cases, **add_cases()}  # the floor is timed on the minilm side; these keep the protocol symmetric


def worker(args):
    if args.worker == "torch":
        import torch

        torch.set_num_threads(args.threads)
        grad_mode = torch.enable_grad()
    cases = minilm_cases() if args.worker == "minilm" else torch_cases()
    if args.worker == "torch":
        grad_mode.__enter__()
    for name in args.names:
        for i in range(3):  # warm-up: first-touch allocations, lazily built state (AdamW's moments)
            cases[name](i)
    ready()
    serve(cases, lambda: None, lambda: 0)


def print_floor(medians, sides):
    """Each element-wise layer's time against its memory floor (module docstring), both sides on the same floor."""
    print("\n| layer | array | passes | floor µs | " + " | ".join(f"{s} µs | {s} / floor" for s in sides) + " |")
    print("|---|---|---|---|" + "---|---|" * len(sides))
    for name, (key, passes) in FLOOR.items():
        if name not in medians:
            continue
        floor = passes / 3 * medians["add_" + key]["minilm"]
        print(f"| {name} | {FLOOR_SHAPES[key]} | {passes} | {floor:,.1f} | "
              + " | ".join(f"{medians[name][s]:,.0f} | {medians[name][s] / floor:.2f}" for s in sides) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="comma-separated cases, from " + ", ".join(CASES))
    parser.add_argument("--openblas", choices=["configured", "autodetect"], default="configured")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both sides (default: OPENBLAS_NUM_THREADS if set, else the usable cores)")
    parser.add_argument("--floor", action="store_true",
                        help="the element-wise layers only, each against its memory floor (module docstring)")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="cpu",
                        help="the CPU preset's shapes (default) or the GPU preset's, run on the CPU")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per turn")
    parser.add_argument("--sides", default="minilm,torch", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=["minilm", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.threads = args.threads or int(os.environ.get("OPENBLAS_NUM_THREADS", 0)) or len(os.sched_getaffinity(0))
    args.names = args.only.split(",") if args.only else list(FLOOR) if args.floor else list(CASES)
    if args.floor:
        args.names = [name for name in args.names if name in FLOOR]
        args.names += sorted({"add_" + FLOOR[name][0] for name in args.names})
    unknown = sorted(set(args.names) - set(CASES) - {"add_" + key for key in FLOOR_SHAPES})
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    use_shape(args.shape)
    if args.worker:
        return worker(args)

    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads))
    if args.openblas == "autodetect":
        env.pop("OPENBLAS_CORETYPE", None)
    sides = args.sides.split(",")
    workers = {side: Worker([sys.executable, __file__, "--worker", side, "--threads", str(args.threads),
                             "--shape", args.shape, "--only", ",".join(args.names)], env) for side in sides}
    print(f"shape: {args.shape} preset's, B {B}, T {T}, C {C}, H {H}, L {L}, V {V}")
    print(f"machine: {cpu_model()}, {len(os.sched_getaffinity(0))} usable cores; threads per side: {args.threads}; "
          f"load average {os.getloadavg()[0]:.2f}")
    core = workers["minilm"].info["openblas_core"] if "minilm" in workers else None
    print(f"OpenBLAS: {args.openblas} (OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE', '(unset)')}, "
          f"kernels {core})")
    print("| case | calls/step | " + " | ".join(f"{s} µs" for s in sides) + " | ratio | "
          + " | ".join(f"{s} ms/step" for s in sides) + " |")
    print("|---|---|" + "---|" * (2 * len(sides) + 1))
    medians = {}
    for name in args.names:
        times = alternate(workers, name, args.rounds, args.repeats)
        us = medians[name] = {side: 1e6 * statistics.median(times[side]) for side in sides}
        if name.startswith("add_"):
            print(f"| {name}: one NumPy add, {FLOOR_SHAPES[name[4:]]} | - | "
                  + " | ".join(f"{us[s]:,.1f}" for s in sides)
                  + " | - |" + " - |" * len(sides), flush=True)
            continue
        calls = CASES[name][0]
        ratio = f"{us['minilm'] / us['torch']:.2f}" if len(sides) == 2 else "-"
        print(f"| {name}: {CASES[name][1]} | {calls} | " + " | ".join(f"{us[s]:,.0f}" for s in sides)
              + f" | {ratio} | " + " | ".join(f"{us[s] * calls / 1e3:.2f}" for s in sides) + " |", flush=True)
    for w in workers.values():
        w.close()
    if args.floor:
        print_floor(medians, sides)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

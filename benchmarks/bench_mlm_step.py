"""A BERT masked-LM training step beside the GPT's causal-LM step, at the CPU preset's shape (issue 15's target:
the MLM step within 1.1x of the GPT step).

    python benchmarks/bench_mlm_step.py                    # 7 rounds of 20 steps each side
    python benchmarks/bench_mlm_step.py --rounds 9 --steps 30

A step is the Trainer's: draw a batch with the objective (random windows; for the MLM also BERT's 15% masking),
logits = model(x); loss = CE(logits, y); zero the grads; backward; clip the global norm to 1; AdamW. Both models
are minilm's at the preset shape (4 layers, 4 heads, 128 channels, B 12, T 64, dropout 0): the GPT pre-LN with
the tanh GELU, BERT post-LN with the exact GELU, segment embeddings and the MLM head. Two long-lived worker
processes take turns, the order alternating every round, with a pause between turns (OpenBLAS threads spin
~0.1 s after their last call); the median over every timed step is reported, and the ratio of the medians.
A third worker, "bert, Φ recomputed", runs BERT with the exact GELU's backward recomputing Φ(x) = ½(1 + erf(x/√2))
instead of reading the Φ its forward kept (minilm.nn.activation before issue 15): what keeping it saves.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

GAP_S = 0.25
NAMES = ("gpt", "bert", "bert_recompute")
LABELS = {"gpt": "GPT, causal LM (tanh GELU)", "bert": "BERT, masked LM (exact GELU)",
          "bert_recompute": "BERT, masked LM, Φ recomputed"}


def worker(model_type):
    """Answers "run N" on stdin with the N step times (seconds) as JSON on stdout."""
    import numpy as np

    from minilm.data import CharTokenizer, load_text, split
    from minilm.data.char_tokenizer import BERT_SPECIALS
    from minilm.models import BERT, BERTConfig, GPT, GPTConfig
    from minilm.nn import CrossEntropyLoss
    from minilm.optim import AdamW, clip_grad_norm
    from minilm.training.objectives import CausalLM, MaskedLM
    from minilm.backend import keep_freed_heap

    keep_freed_heap()  # as `minilm train` does (backend.py: not on import)

    if model_type == "bert_recompute":  # the exact GELU as it was: the backward calls erf again
        from minilm.nn import activation

        def forward(self, x):
            self.x = x
            return activation.gelu_tanh(x) if self.approximate == "tanh" else activation.gelu_exact(x)

        def backward(self, dy):
            grad = activation.gelu_tanh_grad if self.approximate == "tanh" else activation.gelu_exact_grad
            return grad(self.x, dy)

        activation.GELU.forward, activation.GELU.backward = forward, backward
    text = load_text()
    shape = dict(block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0)
    if model_type == "gpt":  # the other two are BERT
        tok = CharTokenizer.from_text(text)
        model, objective = GPT(GPTConfig(vocab_size=tok.vocab_size, bias=False, **shape), rng=0), CausalLM()
    else:
        tok = CharTokenizer.from_text(text, specials=BERT_SPECIALS)
        model = BERT(BERTConfig(vocab_size=tok.vocab_size, pad_token_id=tok.pad_id, **shape), rng=0)
        objective = MaskedLM().for_tokenizer(tok)
    data, _ = split(tok.encode(text))
    optimizer = AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    criterion, rng = CrossEntropyLoss(), np.random.default_rng(0)

    def step():
        inputs, targets = objective.batch(data, 12, 64, rng)
        criterion(model(*inputs), targets)
        model.zero_grad()
        model.backward(criterion.backward())
        clip_grad_norm(model.parameters(), 1.0)
        optimizer.step()

    for _ in range(3):  # warm-up: first-touch pages, lazy imports
        step()
    serve_steps(step)


def serve_steps(step, answers=None):
    """A worker's loop: say "ready", then answer each "run N" on stdin with the N step times (seconds) as JSON;
    a line naming one of ``answers`` (word -> function) gets that function's result as JSON instead."""
    print("ready", flush=True)
    for line in sys.stdin:
        word = line.split()[0]
        if answers and word in answers:
            print(json.dumps(answers[word]()), flush=True)
            continue
        times = []
        for _ in range(int(line.split()[1])):
            began = time.perf_counter()
            step()
            times.append(time.perf_counter() - began)
        print(json.dumps(times), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--worker", choices=NAMES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    env = dict(os.environ, OPENBLAS_NUM_THREADS=os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    workers = {name: subprocess.Popen([sys.executable, __file__, "--worker", name], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, env=env) for name in NAMES}
    for proc in workers.values():
        assert proc.stdout.readline().strip() == "ready"
    times = {name: [] for name in workers}
    for r in range(args.rounds):
        for name in (NAMES if r % 2 == 0 else NAMES[::-1]):
            time.sleep(GAP_S)
            workers[name].stdin.write(f"run {args.steps}\n")
            workers[name].stdin.flush()
            times[name] += json.loads(workers[name].stdout.readline())
    for proc in workers.values():
        proc.stdin.close()
        proc.wait()
    median = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    print(f"OPENBLAS_NUM_THREADS={env['OPENBLAS_NUM_THREADS']}, {args.rounds} rounds x {args.steps} steps per side")
    for name in NAMES:
        print(f"{LABELS[name]:<32} {median[name]:7.1f} ms/step   {median[name] / median['gpt']:.2f}x the GPT step")


if __name__ == "__main__":
    main()

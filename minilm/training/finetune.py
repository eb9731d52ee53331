"""Fine-tuning a BERT classifier on a labelled task: the Trainer's loop with a task for data (BERT §4).

    model = encoder (a minilm BERT checkpoint or a Hugging Face BERT folder) + a new "cls" head (heads.py)
    for it in range(start, max_iters): the Trainer's step, batches of B examples (objectives.Classification)
    every eval_interval steps: the train loss on eval_iters random batches, and the held-out split's loss and
        accuracy over every example; OUT/best is the lowest held-out loss, OUT/latest the last save
    at the end: held-out accuracy beside chance, the majority class and bag-of-words logistic regression,
        fitted on the same train split in the same run (minilm.training.baselines)

Defaults follow BERT's fine-tuning recipe (Devlin et al. 2019, §4 and appendix A.3: AdamW, batch 32, 2 to 4
epochs, 10% linear warmup, weight decay 0.01, dropout 0.1) with two changes for a small encoder on a CPU:
lr 1e-4, from the grid the BERT authors give for their small models (google-research/bert's README for
BERT-Tiny to -Medium, Turc et al. 2019: 3e-4, 1e-4, 5e-5, 3e-5), as BERT-base's 5e-5 barely moves a
4-layer, 128-channel encoder in 3 epochs (on the speakers task from the CPU preset's masked LM, one run
each: 5e-5 stayed at the majority class, 0.361 held-out, 1e-4 reached 0.439, 3e-4 0.421 with a noisier
loss); and a cosine to 0 instead of BERT's linear decay to 0, as the notebooks' runs were measured with it
(--decay linear gives BERT's line, as transformers' Trainer does; benchmarks/finetune_real_bert.py uses it with
lr 5e-5 to compare with the Trainer on the real MiniLM).
A run's length is epochs × train examples / batch, resolved at its start and recorded, as are the task, its
label names (the model config's label_names) and a fingerprint of its examples, so --resume continues the
same run exactly and refuses a task that changed.
"""

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

from minilm.data import tokenizer_from_dict
from minilm.data.tasks import load_task
from minilm.models import BERT, BERTConfig
from minilm.training.baselines import baselines
from minilm.training.config import TrainConfig
from minilm.training.heads import init_classifier
from minilm.training.memory import check_memory
from minilm.training.objectives import Classification
from minilm.training.trainer import Trainer

DROPOUT = 0.1  # BERT's, on every layer and the classifier (the pre-training preset's is 0)
WARMUP_SHARE = 0.1  # BERT's warmup_proportion
UNUSED = ("data", "tokenizer", "vocab_size", "sample_tokens")  # TrainConfig's fields a fine-tuning run has no use for


@dataclass
class FineTuneConfig(TrainConfig):
    """A fine-tuning run: TrainConfig's fields with BERT's fine-tuning defaults, and the task."""

    task: str = None  # "speakers" (which of 4 speakers says a line), "word-order" (shuffled or not?), a .csv or .jsonl
    init_from: str = None  # the encoder to start from: a minilm BERT checkpoint or a Hugging Face BERT folder
    out: str = "out/finetune"  # where OUT/latest and OUT/best checkpoints go
    tokenizer: str = None  # the --init-from checkpoint's; not a choice here
    seed: int = 1337  # seeds the new head's weights, the batches and dropout
    block_size: int = None  # longest example in tokens, [CLS] and [SEP] included; None: the model's context
    batch_size: int = 32  # examples per step, BERT's (its appendix A.3: 16 or 32)
    epochs: int = 3  # passes over the train split, in expectation (BERT: 2 to 4)
    max_iters: int = None  # optimiser steps; None: epochs × train examples / batch_size, rounded up
    lr: float = 1e-4  # peak learning rate, for a small BERT (minilm.training.finetune says why not 5e-5)
    min_lr: float = 0.0  # the schedule's floor: BERT decays to 0
    warmup_iters: int = None  # linear warmup steps; None: a tenth of max_iters, BERT's warmup_proportion (0.1)
    weight_decay: float = 0.01  # AdamW's decoupled decay on 2-D weights, BERT's
    beta2: float = 0.999  # second-moment decay: Adam's default, BERT's
    eval_interval: int = 50  # steps between evaluations and checkpoints (the speakers task: ~0.6 epoch)
    eval_iters: int = 10  # train batches per train-loss estimate (the held-out split is scored whole)
    sample_tokens: int = 0  # unused: a classifier does not sample


def task_fingerprint(task):
    """What a resume checks the task against: its size and the SHA-256 of its examples and label names."""
    content = json.dumps([task.label_names, task.texts, task.labels, task.text_pairs, task.groups])
    return {"examples": len(task), "sha256": hashlib.sha256(content.encode("utf-8")).hexdigest()}


class FineTuner(Trainer):
    """The Trainer on a labelled Task, from a pre-trained encoder (see the module docstring).

    cfg: a FineTuneConfig; dropout: the model's (BERT's 0.1; on a resume the checkpoint's unless given);
    given: as the Trainer's (None: every field of cfg not left None, and the dropout).
    """

    command = resume_user = "minilm finetune"
    val_name = "held-out"

    def __init__(self, cfg, log=print, given=None, dropout=DROPOUT):
        if given is None:
            given = {f.name for f in dataclasses.fields(cfg) if f.name not in UNUSED} | {"dropout"}
        # None: "derive it" (from the task, the model), so not a choice a resume compares with the checkpoint's
        given = {name for name in given if name == "dropout" or getattr(cfg, name, None) is not None}
        super().__init__(cfg, BERTConfig(dropout=dropout), log=log, given=given, objective=Classification())

    def _build(self, model, model_type, objective, resumed, given):
        cfg = self.cfg
        if resumed is not None:
            config = BERTConfig.from_checkpoint(resumed.config.get("model"), resumed.path)
            if config.head != "cls":
                raise ValueError(f"{resumed.path} holds a BERT with head {config.head!r}, not a classifier being "
                                 f"fine-tuned: start a run from it with --init-from {self.out} --out OTHER")
            self.tokenizer = tokenizer_from_dict(resumed.tokenizer)
            task = load_task(cfg.task, config.label_names)  # a label outside the classifier's is named
            saved = (resumed.train_state or {}).get("data")
            if saved is not None and saved != task_fingerprint(task):
                raise ValueError(f"the task {cfg.task} has changed since {self.out / 'latest'} was saved "
                                 f"({saved['examples']:,} examples then, {len(task):,} now): resume trains on "
                                 f"the same examples, or start a new run")
            self.model = BERT(config, rng=cfg.seed)  # its weights are loaded by _restore
        else:
            if cfg.task is None or cfg.init_from is None:
                raise ValueError("minilm finetune needs --init-from CKPT and --task NAME|FILE.csv|FILE.jsonl "
                                 "(or --resume to continue OUT/latest)")
            task = load_task(cfg.task)
            self.model, self.tokenizer, task = init_classifier(cfg.init_from, task, model.dropout, cfg.seed)
        self.task, self.data_fingerprint = task, task_fingerprint(task)
        self.objective = objective.for_tokenizer(self.tokenizer)
        self.train_task, self.val_task = task.split()
        for name, part in (("train", self.train_task), ("held-out", self.val_task)):
            if len(part) == 0:
                raise ValueError(f"the task {cfg.task} has {len(task)} examples, and its {name} split none: "
                                 f"every 10th example (or speech) is held out, so give at least 10")
        block = cfg.block_size or self.model.config.block_size
        steps = cfg.max_iters
        if steps is None:
            steps = math.ceil(cfg.epochs * len(self.train_task) / cfg.batch_size)
        warmup = cfg.warmup_iters if cfg.warmup_iters is not None else int(WARMUP_SHARE * steps)
        self.cfg = cfg = dataclasses.replace(cfg, block_size=block, max_iters=steps, warmup_iters=warmup)
        check_memory(self.model.config, cfg.batch_size, block, not cfg.recompute_attention, cfg.threads)
        self.train_data = self.objective.encode(self.train_task, block)
        self.val_data = self.objective.encode(self.val_task, block)

    def report(self):
        """Lines: held-out accuracy of the final weights and of OUT/best beside the baselines, as a table."""
        figures = baselines(self.train_task, self.val_task)
        final = self.history[-1]
        best = min(self.history, key=lambda h: h["val"])
        rows = [("chance (1 / labels)", figures["chance"]), ("majority class of the train split", figures["majority"]),
                ("bag of words, logistic regression", figures["bag of words"]),
                (f"BERT fine-tuned, final weights (step {final['step']})", final["val_accuracy"]),
                (f"BERT fine-tuned, {self.out / 'best'} (step {best['step']})", best["val_accuracy"])]
        width = max(len(name) for name, _ in rows)
        return ([f"held-out accuracy on {self.task.name} ({len(self.val_task)} examples, {self.task.num_labels} "
                 f"labels; trained on {len(self.train_task)}):"]
                + [f"  {name:<{width}}  {value:.4f}" for name, value in rows])

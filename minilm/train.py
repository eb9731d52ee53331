"""Train a GPT on a text corpus: the loop every framework hides, written out.

    for it in range(start, max_iters):
        lr = schedule(it)                                  linear warmup, then cosine down to min_lr
        x, y = get_batch(train, B, T, rng)                 random windows of T + 1 tokens; y is x shifted by one
        loss = CE(model(x), y)
        model.zero_grad(); model.backward(CE.backward())   every gradient by hand
        clip_grad_norm(params, grad_clip); optimizer.step()
        every eval_interval steps: estimate train and val loss, save OUT/latest (and OUT/best when val improves)

Checkpoints hold the model, the optimiser, the tokenizer and the train state (step, both random
generators, best val loss, loss history), so ``--resume`` continues exactly where the last save left off:
an interrupted run and an uninterrupted one end with the same weights.
ref: Karpathy's nanoGPT train.py, whose Shakespeare configs the presets reproduce.
"""

import argparse
import dataclasses
import inspect
import math
import pathlib
import re
import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from minilm.backend import BACKENDS, CPU, GPU, to_numpy, use_backend
from minilm.checkpoint import check_config, load_checkpoint, save_checkpoint
from minilm.hf import gpt2_tokenizer, load_gpt2
from minilm.data import (BPETokenizer, CharTokenizer, every_window, get_batch, load_text, rng_from_state, split,
                         tokenizer_from_dict)
from minilm.models import GPT, GPTConfig
from minilm.nn.attention import keep_attention_weights
from minilm.nn.dropout import Dropout
from minilm.nn.loss import CrossEntropyLoss
from minilm.optim import AdamW, WarmupCosine, clip_grad_norm, decay_groups

MODEL_FIELDS = ("block_size", "n_layer", "n_head", "n_embd", "dropout", "bias", "pos", "norm", "tie_weights")
CHOICES = {"backend": BACKENDS, "pos": ("learned", "sinusoidal"), "norm": ("pre", "post"), "tokenizer": ("char", "bpe")}
# fields a resumed run may change without changing what is being trained
RESUMABLE_CHANGES = ("max_iters", "eval_interval", "eval_iters", "out", "resume", "sample_tokens", "backend", "data",
                     "recompute_attention")


@dataclass
class TrainConfig:
    data: str = None  # a UTF-8 text file or a folder of .txt files; None: the embedded tiny Shakespeare
    out: str = "out"  # where OUT/latest and OUT/best checkpoints go
    resume: bool = False  # continue from OUT/latest: step, weights, optimiser and random state
    backend: str = CPU  # "numpy" (the CPU) or the GPU backend (see minilm.backend)
    seed: int = 1337  # seeds the initial weights, the batches and dropout
    init_from: str = None  # a Hugging Face GPT-2 folder to fine-tune (its weights and tokenizer); None: a new model
    tokenizer: str = "char"  # "char" (one token per character, as nanoGPT) or "bpe" (byte-level BPE trained on the data)
    vocab_size: int = 1000  # tokens in a BPE vocabulary (a char vocabulary is every distinct character)
    # model (GPTConfig; vocab_size comes from the tokenizer)
    block_size: int = 64  # context length T, in tokens
    n_layer: int = 4  # transformer blocks L
    n_head: int = 4  # attention heads H per block
    n_embd: int = 128  # channels C
    dropout: float = 0.0  # drop probability; 0 for small data at low budget, 0.2 at nanoGPT's GPU size
    bias: bool = False  # biases in Linear layers (nanoGPT's default is none: a little faster, no worse)
    pos: str = "learned"  # "learned" or "sinusoidal" positions
    norm: str = "pre"  # "pre" (GPT-2) or "post" (original transformer) LayerNorm placement
    tie_weights: bool = True  # LM head shares the token embedding
    # optimisation
    batch_size: int = 12  # sequences per step B
    max_iters: int = 2000  # optimiser steps
    lr: float = 1e-3  # peak learning rate, reached after warmup
    min_lr: float = 1e-4  # the cosine's floor, lr / 10 as nanoGPT
    warmup_iters: int = 100  # linear warmup steps (capped at lr_decay_iters, so short runs need no change)
    lr_decay_iters: int = None  # step at which min_lr is reached; None: max_iters
    weight_decay: float = 0.1  # AdamW's decoupled decay, on 2-D weights only
    beta1: float = 0.9  # Adam's first-moment decay
    beta2: float = 0.99  # second-moment decay; 0.99 rather than 0.999 because few tokens per step
    grad_clip: float = 1.0  # clip the global gradient norm to this; 0 disables
    recompute_attention: bool = False  # recompute attention weights in backward, not keep them: B·H·T² fewer numbers per layer
    # evaluation and output
    eval_interval: int = 250  # steps between loss estimates and checkpoints
    eval_iters: int = 20  # batches per loss estimate (per split)
    sample_tokens: int = 300  # characters of text printed at the end; 0 prints none


PRESETS = {
    # nanoGPT's low-budget CPU run of train_shakespeare_char (its README: val 1.88 after 2000 iterations)
    "cpu": TrainConfig(),
    # nanoGPT's config/train_shakespeare_char.py (its README: val 1.4697 after 5000 iterations on a GPU)
    "gpu": TrainConfig(backend=GPU, block_size=256, batch_size=64, n_layer=6, n_head=6, n_embd=384,
                       dropout=0.2, max_iters=5000, eval_iters=200),
}


def model_config(cfg, vocab_size):
    return GPTConfig(vocab_size=vocab_size, **{name: getattr(cfg, name) for name in MODEL_FIELDS})


def estimate_loss(model, data, cfg, rng):
    """Mean cross-entropy over ``eval_iters`` random batches, in evaluation mode (dropout off)."""
    model.eval()
    criterion = CrossEntropyLoss()
    losses = [float(criterion(model(x), y)) for x, y in
              (get_batch(data, cfg.batch_size, cfg.block_size, rng) for _ in range(cfg.eval_iters))]
    model.train()
    return float(np.mean(losses))


def split_loss(model, data, cfg):
    """Mean cross-entropy over a whole split (every non-overlapping window, evaluation mode): exact where
    ``estimate_loss`` samples, at the cost of one pass over the split (the val split: ~1 s at the CPU preset)."""
    model.eval()
    criterion, total, count = CrossEntropyLoss(), 0.0, 0
    for x, y in every_window(data, cfg.batch_size, cfg.block_size):
        total += float(criterion(model(x), y)) * y.size
        count += y.size
    model.train()
    return total / count


def dropout_states(model):
    """name -> the bit-generator state of every Dropout's Generator (JSON-able on NumPy), for exact resumes."""
    states = {}
    for name, module in model.named_modules():
        state = getattr(getattr(module, "rng", None), "bit_generator", None)
        if isinstance(module, Dropout) and state is not None and isinstance(state.state, dict):
            states[name] = state.state
    return states


def restore_dropout_states(model, states):
    for name, module in model.named_modules():
        if name in states:
            module.rng.bit_generator.state = states[name]


class Trainer:
    """Holds the model, optimiser, data and random state of one run; ``train()`` runs it to ``max_iters``."""

    def __init__(self, cfg, log=print):
        self.cfg, self.log = cfg, log
        self.out = pathlib.Path(cfg.out)
        use_backend(cfg.backend)
        text = load_text(cfg.data)
        resumed = load_checkpoint(self.out / "latest") if cfg.resume else None
        if resumed is None and (self.out / "latest").exists():
            raise FileExistsError(f"{self.out / 'latest'} already holds a checkpoint: pass --resume to continue "
                                  f"it, or choose another --out (nothing was overwritten)")
        if resumed is not None:  # the architecture and tokenizer are the checkpoint's own
            check_config(resumed.config["train"], _plain(cfg), ignore=RESUMABLE_CHANGES)
            self.tokenizer = tokenizer_from_dict(resumed.tokenizer)
            self.model = GPT(GPTConfig(**resumed.config["model"]), rng=cfg.seed)
        elif cfg.init_from:  # fine-tune GPT-2: its weights, its tokenizer
            self.model, self.tokenizer = load_gpt2(cfg.init_from).train(), gpt2_tokenizer(cfg.init_from)
            if self.tokenizer is None:
                raise FileNotFoundError(f"{cfg.init_from} has no vocab.json + merges.txt: fine-tuning needs its tokenizer")
        else:
            self.tokenizer = (BPETokenizer.train(text, cfg.vocab_size) if cfg.tokenizer == "bpe"
                              else CharTokenizer.from_text(text))
            self.model = GPT(model_config(cfg, self.tokenizer.vocab_size), rng=cfg.seed)
        keep_attention_weights(self.model, not cfg.recompute_attention)
        if cfg.block_size > self.model.config.block_size:
            raise ValueError(f"block_size {cfg.block_size} exceeds the model's context of {self.model.config.block_size}")
        self.train_data, self.val_data = split(self.tokenizer.encode(text))
        self.optimizer = AdamW(decay_groups(self.model, cfg.weight_decay), lr=cfg.lr,
                               betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
        decay_iters = cfg.lr_decay_iters or cfg.max_iters
        self.schedule = WarmupCosine(cfg.lr, cfg.min_lr, min(cfg.warmup_iters, decay_iters), decay_iters)
        self.rng = np.random.default_rng(cfg.seed)  # training batches
        self.eval_rng = np.random.default_rng(cfg.seed + 1)  # evaluation batches, apart so evals never shift training
        self.step, self.best_val, self.history = 0, math.inf, []
        if resumed is not None:
            self._restore(resumed)

    def _restore(self, ckpt):
        self.model.load_state_dict(ckpt.model_state)
        self.optimizer.load_state_dict(*ckpt.optimizer_state)
        state = ckpt.train_state
        self.step, self.best_val, self.history = state["step"], state["best_val_loss"], state["history"]
        self.rng, self.eval_rng = rng_from_state(state["rng"]), rng_from_state(state["eval_rng"])
        restore_dropout_states(self.model, state.get("dropout_rngs", {}))
        self.log(f"resumed from {self.out / 'latest'} at step {self.step}")

    def save(self, name):
        save_checkpoint(self.out / name, self.model.state_dict(),
                        {"model": dataclasses.asdict(self.model.config), "train": _plain(self.cfg)},
                        tokenizer=self.tokenizer.to_dict(), optimizer_state=self.optimizer.state_dict(),
                        train_state={"step": self.step, "best_val_loss": self.best_val, "history": self.history,
                                     "rng": self.rng.bit_generator.state, "eval_rng": self.eval_rng.bit_generator.state,
                                     "dropout_rngs": dropout_states(self.model)})

    def evaluate_and_save(self):
        train_loss = estimate_loss(self.model, self.train_data, self.cfg, self.eval_rng)
        val_loss = estimate_loss(self.model, self.val_data, self.cfg, self.eval_rng)
        self.history.append({"step": self.step, "train": train_loss, "val": val_loss, "lr": self.schedule(self.step)})
        self.log(f"step {self.step}: train loss {train_loss:.4f}, val loss {val_loss:.4f} "
                 f"(perplexity {math.exp(val_loss):.2f})")
        improved = val_loss < self.best_val
        self.best_val = min(self.best_val, val_loss)
        self.save("latest")
        if improved:
            self.save("best")

    def train_step(self):
        cfg = self.cfg
        self.schedule.apply(self.optimizer, self.step)
        x, y = get_batch(self.train_data, cfg.batch_size, cfg.block_size, self.rng)
        criterion = CrossEntropyLoss()
        loss = float(criterion(self.model(x), y))
        if not math.isfinite(loss):
            last = self.history[-1]["step"] if self.history else None
            raise RuntimeError(f"loss is {loss} at step {self.step}; nothing was saved for this step, the last "
                               f"good checkpoint is {self.out / 'latest'} (step {last})")
        self.model.zero_grad()
        self.model.backward(criterion.backward())
        if cfg.grad_clip > 0:
            clip_grad_norm(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        return loss

    def train(self):
        cfg = self.cfg
        tokens_per_step = cfg.batch_size * cfg.block_size
        bar = tqdm(total=cfg.max_iters, initial=self.step, desc="training", unit="step", dynamic_ncols=True,
                   disable=None)  # None: a bar on a terminal, nothing in a log file
        with bar:
            while True:
                due = self.step % cfg.eval_interval == 0 or self.step == cfg.max_iters
                if due and not (self.history and self.history[-1]["step"] == self.step):  # a resume starts evaluated
                    self.evaluate_and_save()
                if self.step >= cfg.max_iters:
                    break
                started = time.perf_counter()
                loss = self.train_step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_step / (time.perf_counter() - started):,.0f}")
        return self.history


def _plain(cfg):
    return dataclasses.asdict(cfg)


def _field_help(cls):
    """field name -> its end-of-line comment in the dataclass source: the one description of each option."""
    lines = inspect.getsource(cls).splitlines()
    return {m.group(1): m.group(2) for m in (re.match(r"\s+(\w+): .*?#\s*(.*)$", line) for line in lines) if m}


def add_arguments(parser):
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                        help="starting configuration: cpu (nanoGPT's low-budget Shakespeare run, the default) "
                             "or gpu (nanoGPT's train_shakespeare_char); every option below overrides it")
    descriptions = _field_help(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        flag, help_text = "--" + field.name.replace("_", "-"), descriptions.get(field.name)
        if field.type is bool:
            action = "store_true" if field.name == "resume" else argparse.BooleanOptionalAction
            parser.add_argument(flag, action=action, default=None, dest=field.name, help=help_text)
        else:
            parser.add_argument(flag, type=field.type, default=None, dest=field.name, choices=CHOICES.get(field.name),
                                metavar=None if field.name in CHOICES else field.type.__name__.upper(), help=help_text)


def config_from_args(args):
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                 if getattr(args, f.name, None) is not None}
    return dataclasses.replace(PRESETS[args.preset], **overrides)


def run(args):
    cfg = config_from_args(args)
    trainer = Trainer(cfg, log=tqdm.write)
    trainer.train()
    print(f"best val loss {trainer.best_val:.4f}; checkpoints in {trainer.out}/latest and {trainer.out}/best")
    print(f"val loss of the final weights on the whole val split, without sampling noise: "
          f"{split_loss(trainer.model, trainer.val_data, cfg):.4f}")
    if cfg.sample_tokens > 0:
        from minilm.sample import generate

        start = trainer.tokenizer.encode("\n")[None, :]  # (1, 1)
        ids = generate(trainer.model, start, cfg.sample_tokens, rng=np.random.default_rng(cfg.seed))
        print(trainer.tokenizer.decode(to_numpy(ids)[0]))
    return 0

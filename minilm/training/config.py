"""What a run is made of: TrainConfig (the run), the model's shape (a GPTConfig), and the presets pairing them.

The command line is built from these two dataclasses (minilm.cli.train): each field's end-of-line comment is
its option's help, and the CPU preset's value its default.
"""

import dataclasses
from dataclasses import dataclass

from minilm.backend import GPU
from minilm.models import GPTConfig


@dataclass
class TrainConfig:
    """The run: its data and tokenizer, optimisation, evaluation and output (the model's shape is a GPTConfig)."""

    data: str = None  # a UTF-8 text file or a folder of .txt files; None: the embedded tiny Shakespeare
    out: str = "out"  # where OUT/latest and OUT/best checkpoints go
    resume: bool = False  # continue from OUT/latest: its model, data, optimiser, schedule and random state
    overwrite: bool = False  # let a new run replace checkpoints already in OUT (otherwise it refuses)
    backend: str = None  # "numpy" (the CPU) or the GPU backend (see minilm.backend); None: MINILM_BACKEND or numpy
    seed: int = 1337  # seeds the initial weights, the batches and dropout
    init_from: str = None  # a Hugging Face GPT-2 folder to fine-tune (its weights and tokenizer); None: a new model
    tokenizer: str = "char"  # "char" (one token per character, as nanoGPT) or "bpe" (byte-level BPE trained on the data)
    vocab_size: int = 1000  # tokens in a BPE vocabulary (a char vocabulary is every distinct character)
    block_size: int = 64  # context length T of the training windows, in tokens; a new model's context too
    # optimisation
    batch_size: int = 12  # sequences per step B
    max_iters: int = 2000  # optimiser steps
    lr: float = 1e-3  # peak learning rate, reached after warmup
    min_lr: float = 1e-4  # the cosine's floor, lr / 10 as nanoGPT
    warmup_iters: int = 100  # linear warmup steps (capped at lr_decay_iters, so short runs need no change)
    lr_decay_iters: int = None  # step at which min_lr is reached; None: max_iters of the first run
    weight_decay: float = 0.1  # AdamW's decoupled decay, on 2-D weights only
    beta1: float = 0.9  # Adam's first-moment decay
    beta2: float = 0.99  # second-moment decay; 0.99 rather than 0.999 because few tokens per step
    grad_clip: float = 1.0  # clip the global gradient norm to this; 0 disables
    recompute_attention: bool = False  # recompute attention weights in backward, not keep them: B·H·T² fewer numbers per layer
    # evaluation and output
    eval_interval: int = 250  # steps between loss estimates and checkpoints
    eval_iters: int = 20  # batches per loss estimate (per split)
    sample_tokens: int = 300  # characters of text printed at the end; 0 prints none


@dataclass(frozen=True)
class Preset:
    model: GPTConfig  # the model's shape; its vocab_size is the tokenizer's and its block_size the run's
    train: TrainConfig  # the run


PRESETS = {
    # nanoGPT's low-budget CPU run of train_shakespeare_char (its README: val 1.88 after 2000 iterations);
    # no biases, as nanoGPT's default: a little faster, no worse; no dropout for small data at low budget
    "cpu": Preset(GPTConfig(n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False), TrainConfig()),
    # nanoGPT's config/train_shakespeare_char.py (its README: val 1.4697 after 5000 iterations on a GPU)
    "gpu": Preset(GPTConfig(n_layer=6, n_head=6, n_embd=384, dropout=0.2, bias=False),
                  TrainConfig(backend=GPU, block_size=256, batch_size=64, max_iters=5000, eval_iters=200)),
}
# the GPTConfig fields a user chooses; vocab_size comes from the tokenizer and block_size from the run
MODEL_OPTIONS = tuple(f.name for f in dataclasses.fields(GPTConfig) if f.name not in ("vocab_size", "block_size"))


def with_changes(preset, **changes):
    """(TrainConfig, GPTConfig) of ``preset`` with each change made to the dataclass that holds the field."""
    model = {name: value for name, value in changes.items() if name in MODEL_OPTIONS}
    run = {name: value for name, value in changes.items() if name not in MODEL_OPTIONS}
    return dataclasses.replace(preset.train, **run), dataclasses.replace(preset.model, **model)


def model_config(model, cfg, vocab_size):
    """The GPTConfig a new run builds: ``model``'s shape, the tokenizer's vocabulary, the run's context."""
    return dataclasses.replace(model, vocab_size=vocab_size, block_size=cfg.block_size)

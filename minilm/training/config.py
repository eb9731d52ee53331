"""What a run is made of: TrainConfig (the run), the model's shape (its family's config: GPTConfig, BERTConfig,
Seq2SeqConfig, LSTMConfig, RNNConfig, TutorialConfig or NGramConfig), and the presets pairing them, per model type.

The command line is built from these dataclasses (minilm.cli.train): each field's end-of-line comment is its
option's help, and the CPU preset's value its default. A model's options are its config's fields less
NOT_OPTIONS, which the tokenizer, the run and the objective decide.
"""

import dataclasses
from dataclasses import dataclass

from minilm.backend import GPU
from minilm.models import (MODELS, BERTConfig, GPTConfig, LSTMConfig, NGramConfig, RNNConfig, Seq2SeqConfig,
                           TutorialConfig)


@dataclass
class TrainConfig:
    """The run: its data and tokenizer, optimisation, evaluation and output (the model's shape is its family's
    config: GPTConfig, BERTConfig, ...)."""

    data: str = None  # a UTF-8 text file or folder of .txt files; None: tiny Shakespeare (seq2seq: pairs, "numbers")
    out: str = "out"  # where OUT/latest and OUT/best checkpoints go
    resume: bool = False  # continue from OUT/latest: its model, data, optimiser, schedule and random state
    overwrite: bool = False  # let a new run replace checkpoints already in OUT (otherwise it refuses)
    backend: str = None  # "numpy" (the CPU) or the GPU backend (see minilm.backend); None: MINILM_BACKEND or numpy
    seed: int = 1337  # seeds the initial weights, the batches (and their masks) and dropout
    init_from: str = None  # a Hugging Face GPT-2 folder to fine-tune (its weights and tokenizer); None: a new model
    tokenizer: str = "char"  # "char" (one per character, as nanoGPT), "bpe" (byte-level) or "wordpiece" (encoders only)
    vocab_size: int = 1000  # tokens in a BPE or WordPiece vocabulary (a char vocabulary is every distinct character)
    block_size: int = 64  # context length T of the training windows, in tokens; a new model's context too
    # optimisation
    batch_size: int = 12  # sequences per step B
    grad_accum: int = 1  # micro-batches per step: B split in this many, their gradients summed (nanoGPT's)
    overlap: bool = True  # under mpiexec: sum each block's gradients over ranks as its backward ends, not all after
    zero1: bool = False  # under mpiexec: shard AdamW's moments over the ranks, 1/N each (ZeRO-1; never overlapped)
    threads: int = 1  # on the CPU: run the step's micro-batches at once, one per thread and core (B split in as many)
    max_iters: int = 2000  # optimiser steps
    lr: float = 1e-3  # peak learning rate, reached after warmup
    min_lr: float = 1e-4  # the cosine's floor, lr / 10 as nanoGPT
    warmup_iters: int = 100  # linear warmup steps (capped at lr_decay_iters, so short runs need no change)
    lr_decay_iters: int = None  # step at which min_lr is reached; None: max_iters of the first run
    decay: str = "cosine"  # after warmup: "cosine" (nanoGPT's) or "linear" (BERT's, transformers' Trainer's)
    weight_decay: float = 0.1  # AdamW's decoupled decay, on 2-D weights only
    beta1: float = 0.9  # Adam's first-moment decay
    beta2: float = 0.99  # second-moment decay; 0.99 rather than 0.999 because few tokens per step
    grad_clip: float = 1.0  # clip the global gradient norm to this; 0 disables
    recompute_attention: bool = False  # recompute attention weights in backward, not keep them: B·H·T² fewer numbers per layer
    # evaluation and output
    eval_interval: int = 250  # steps between loss estimates and checkpoints
    eval_iters: int = 20  # batches per loss estimate (per split)
    sample_tokens: int = 300  # characters of text printed at the end (a masked LM: guesses on a val window); 0: none


@dataclass(frozen=True)
class Preset:
    model: object  # the model's shape (GPTConfig, BERTConfig); its vocab_size is the tokenizer's, block_size the run's
    train: TrainConfig  # the run


PRESETS = {
    # nanoGPT's low-budget CPU run of train_shakespeare_char (its README: val 1.88 after 2000 iterations);
    # no biases, as nanoGPT's default: a little faster, no worse; no dropout for small data at low budget
    "cpu": Preset(GPTConfig(n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False), TrainConfig()),
    # nanoGPT's config/train_shakespeare_char.py (its README: val 1.4697 after 5000 iterations on a GPU)
    "gpu": Preset(GPTConfig(n_layer=6, n_head=6, n_embd=384, dropout=0.2, bias=False),
                  TrainConfig(backend=GPU, block_size=256, batch_size=64, max_iters=5000, eval_iters=200)),
}
BERT_PRESETS = {
    # the GPT's CPU run with an encoder of its shape (4 layers, 4 heads, 128 channels, context 64, the same
    # optimiser), so the two compare step for step. Dropout 0, as the GPT's rather than BERT's 0.1 (set for a
    # million steps): 2000 steps of 12 windows see the corpus ~1.4 times, too little to overfit, and the
    # step times compare like for like
    "cpu": Preset(BERTConfig(n_layer=4, n_head=4, n_embd=128, dropout=0.0), TrainConfig()),
}
SEQ2SEQ_PRESETS = {
    # the numbers task on 2 CPU cores in a few minutes (benchmarks/RESULTS.md): the paper's post-LN model at a
    # character scale, 2 + 2 layers of 64 channels (128 channels learned a little faster per step but not per
    # second: 98.1% exact after 1000 steps against 97.6% after 2000, at 1.4 times the time); batches of 32
    # pairs; a context that holds the longest source (72 characters) and target (71 + [BOS] or [EOS])
    "cpu": Preset(Seq2SeqConfig(d_model=64, nhead=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=256,
                                dropout=0.1),
                  TrainConfig(block_size=80, batch_size=32, max_iters=2000, lr=1e-3, min_lr=1e-4, warmup_iters=100,
                              eval_interval=250, eval_iters=10, weight_decay=0.01)),
}
# the history's language models (issue 17) on the GPT's CPU run, step for step: the same data, windows, batches,
# optimiser and schedule, so that one table compares them; models of a similar size (0.8-0.9M parameters)
HISTORY_PRESETS = {
    "lstm": {"cpu": Preset(LSTMConfig(n_embd=128, hidden_size=256, n_layer=2, dropout=0.0), TrainConfig())},
    "rnn": {"cpu": Preset(RNNConfig(n_embd=128, hidden_size=256, n_layer=2, dropout=0.0), TrainConfig())},
    "tutorial": {"cpu": Preset(TutorialConfig(n_embd=128, n_head=4, n_layer=4, d_ff=512, dropout=0.0), TrainConfig())},
    # counted, not trained (minilm.training.counting): the run's block_size is its evaluation windows'
    "ngram": {"cpu": Preset(NGramConfig(), TrainConfig())},
}
# model type -> its presets (PRESETS stays the GPT's)
MODEL_PRESETS = {"gpt": PRESETS, "bert": BERT_PRESETS, "seq2seq": SEQ2SEQ_PRESETS, **HISTORY_PRESETS}
# model fields a user does not choose: the tokenizer gives vocab_size (and BERT's pad_token_id, the [PAD] id),
# the run block_size; the objective picks BERT's head (mlm: the MLM head) and a classification task num_labels
# and label_names
NOT_OPTIONS = ("vocab_size", "block_size", "pad_token_id", "head", "num_labels", "label_names")


def model_options(config_class):
    """The fields of a model config class that a user chooses (its command-line options)."""
    return tuple(f.name for f in dataclasses.fields(config_class) if f.name not in NOT_OPTIONS)


MODEL_OPTIONS = model_options(GPTConfig)  # the GPT's


def type_of_config(config):
    """The registered model type ("gpt", "bert") of a model config instance."""
    for model_type, (config_class, _) in MODELS.items():
        if type(config) is config_class:
            return model_type
    raise ValueError(f"{type(config).__name__} is not the config of a registered model type")


def preset_for(model_type, name="cpu"):
    """The Preset ``name`` of ``model_type``; a ValueError naming the presets it has."""
    presets = MODEL_PRESETS.get(model_type, {})
    if name not in presets:
        raise ValueError(f"--model {model_type} has no {name} preset (its presets: {', '.join(presets) or 'none'})")
    return presets[name]


def with_changes(preset, **changes):
    """(TrainConfig, model config) of ``preset`` with each change made to the dataclass that holds the field."""
    options = model_options(type(preset.model))
    model = {name: value for name, value in changes.items() if name in options}
    run = {name: value for name, value in changes.items() if name not in options}
    stray = [name for name in run if name not in {f.name for f in dataclasses.fields(TrainConfig)}]
    if stray:
        flags = ", ".join("--" + name.replace("_", "-") for name in stray)
        raise ValueError(f"{flags}: not an option of --model {type_of_config(preset.model)} "
                         f"({type(preset.model).__name__})")
    return dataclasses.replace(preset.train, **run), dataclasses.replace(preset.model, **model)


def model_config(model, cfg, tokenizer):
    """The config a new run builds: ``model``'s shape, the tokenizer's vocabulary (and [PAD] id, for a model
    that has a pad_token_id), the run's context."""
    changes = {"vocab_size": tokenizer.vocab_size, "block_size": cfg.block_size}
    if any(f.name == "pad_token_id" for f in dataclasses.fields(model)):
        changes["pad_token_id"] = tokenizer.pad_id
    return dataclasses.replace(model, **changes)

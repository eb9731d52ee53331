"""`minilm train`: TrainConfig as command-line options, each checked when it is parsed, and the run itself.

Every option is a TrainConfig field, with the field's end-of-line comment as its help and the CPU preset's
value as its default. Numbers are checked against RANGES by argparse itself, so `--max-iters -5` is a usage
error naming --max-iters (exit code 2) before any data is read. On --resume only the options given on the
command line are compared with the checkpoint; everything else, a --preset included, comes from it.
"""

import argparse
import dataclasses
import inspect
import re

import numpy as np
from tqdm import tqdm

from minilm.backend import BACKENDS, to_numpy
from minilm.cli import POSITIVE, bounded
from minilm.models import MODELS, GPTConfig
from minilm.training.objectives import OBJECTIVES
from minilm.training.config import with_changes
from minilm.training.trainer import MODEL_OPTIONS, PRESETS, TrainConfig, Trainer, split_loss

CHOICES = {"backend": BACKENDS, "pos": ("learned", "sinusoidal"), "norm": ("pre", "post"), "tokenizer": ("char", "bpe")}
# field -> (smallest allowed, bound above or None, whether that bound is excluded)
RANGES = {
    "seed": (0, None, False),  # NumPy seeds are non-negative
    "vocab_size": (256, None, False),  # a byte-level BPE starts from the 256 bytes
    "block_size": (1, None, False), "n_layer": (1, None, False), "n_head": (1, None, False), "n_embd": (1, None, False),
    "dropout": (0.0, 1.0, True),  # a probability of dropping; 1 would drop everything
    "batch_size": (1, None, False), "max_iters": (0, None, False),
    "lr": (POSITIVE, None, False), "min_lr": (0.0, None, False),  # lr > 0: a zero peak trains nothing
    "warmup_iters": (0, None, False), "lr_decay_iters": (1, None, False), "weight_decay": (0.0, None, False),
    "beta1": (0.0, 1.0, True), "beta2": (0.0, 1.0, True),  # moment decays: 1 would never move
    "grad_clip": (0.0, None, False), "eval_interval": (1, None, False), "eval_iters": (1, None, False),
    "sample_tokens": (0, None, False), "layer_norm_eps": (POSITIVE, None, False),
}


def _field_help(cls):
    """field name -> its end-of-line comment in the dataclass source: the one description of each option."""
    lines = inspect.getsource(cls).splitlines()
    return {m.group(1): m.group(2) for m in (re.match(r"\s+(\w+): .*?#\s*(.*)$", line) for line in lines) if m}


def add_arguments(parser):
    """Train a GPT on a text corpus (tiny Shakespeare by default), checkpointing to OUT/latest and OUT/best."""
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="starting configuration: cpu (nanoGPT's low-budget Shakespeare run, the defaults shown "
                             "here) or gpu (nanoGPT's train_shakespeare_char); every option below overrides it")
    parser.add_argument("--model", choices=sorted(MODELS), default="gpt",
                        help="the model family (its registry name; the encoder and the others come with their issues)")
    parser.add_argument("--objective", choices=sorted(OBJECTIVES), default="clm",
                        help="what the model learns to predict: clm, the next token (causal language modelling)")
    for group, cls, part in ((parser.add_argument_group("the run (TrainConfig)"), TrainConfig, "train"),
                             (parser.add_argument_group("the model (GPTConfig)"), GPTConfig, "model")):
        _add_fields(group, cls, part)


def _add_fields(group, cls, part):
    """One option per field of ``cls`` (a model's config: its fields a user chooses), defaults from the presets."""
    descriptions = _field_help(cls)
    cpu, gpu = getattr(PRESETS["cpu"], part), getattr(PRESETS["gpu"], part)
    for field in dataclasses.fields(cls):
        name = field.name
        if part == "model" and name not in MODEL_OPTIONS:
            continue
        default = getattr(cpu, name)
        help_text = descriptions.get(name, "")
        if getattr(gpu, name) != default:
            help_text += f" [gpu preset: {getattr(gpu, name)}]"
        flag = "--" + name.replace("_", "-")
        # default=None so that the options given on the command line are known; the help shows the preset's value
        if field.type is bool:
            action = "store_true" if name in ("resume", "overwrite") else argparse.BooleanOptionalAction
            group.add_argument(flag, action=action, default=None, dest=name, help=f"{help_text} (default: {default})")
        else:
            kind = {"int": int, "float": float, "str": str}[getattr(field.type, "__name__", str(field.type))]
            parse = bounded(kind, *RANGES[name]) if name in RANGES else kind
            paths = ("data", "out", "init_from")
            metavar = None if name in CHOICES else "PATH" if name in paths else kind.__name__.upper()
            group.add_argument(flag, type=parse, default=None, dest=name, choices=CHOICES.get(name), metavar=metavar,
                               help=f"{help_text} (default: {default})")


def config_from_args(args):
    """(TrainConfig, GPTConfig, the names of the fields given on the command line), from the preset."""
    train_names = [f.name for f in dataclasses.fields(TrainConfig)]
    given = {name for name in (*train_names, *MODEL_OPTIONS) if getattr(args, name, None) is not None}
    cfg, model = with_changes(PRESETS[args.preset or "cpu"], **{name: getattr(args, name) for name in given})
    return cfg, model, given


def run(args):
    cfg, model, given = config_from_args(args)
    objective = OBJECTIVES[args.objective]()
    if args.model not in objective.model_types:
        raise ValueError(f"--objective {objective.name} trains a model of type {' or '.join(objective.model_types)}, "
                         f"not --model {args.model}")
    trainer = Trainer(cfg, model, log=tqdm.write, given=given, objective=objective)
    trainer.train()
    cfg, out = trainer.cfg, trainer.out
    print(f"best val loss {trainer.best_val:.4f}; checkpoints in {out}/latest and {out}/best")
    print(f"val loss of the final weights on the whole val split, without sampling noise: "
          f"{split_loss(trainer.model, trainer.val_data, cfg, trainer.objective):.4f}")
    if cfg.sample_tokens > 0:
        from minilm.training.sampling import generate

        ids = generate(trainer.model, trainer.sample_start, cfg.sample_tokens, temperature=SAMPLE_TEMPERATURE,
                       rng=np.random.default_rng(cfg.seed))
        print(f"a sample of {cfg.sample_tokens} tokens (temperature {SAMPLE_TEMPERATURE}; minilm sample --ckpt "
              f"{out} for more):")
        print(trainer.tokenizer.decode(to_numpy(ids)[0]))
    return 0


# a little sharper than the model's own distribution: fewer misspelt words, as nanoGPT's sample.py
SAMPLE_TEMPERATURE = 0.8

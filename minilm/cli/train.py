"""`minilm train`: TrainConfig and the model configs as command-line options, each checked when it is parsed,
and the run itself.

Every option is a field of TrainConfig or of a model's config (GPTConfig, BERTConfig, Seq2SeqConfig, LSTMConfig,
RNNConfig, TutorialConfig, NGramConfig: one option group per model, an option they share listed once), with the
field's end-of-line comment as its help and the CPU preset's value as its default. --model picks the family (gpt,
bert, seq2seq, lstm, rnn, tutorial, ngram) and its presets; --objective what it learns (clm, mlm, seq2seq), each
defaulting to the other's partner, and a bare --resume to the checkpoint's (cls is `minilm finetune`'s; an ngram
is counted in one pass, with no objective).
Numbers are checked against RANGES by argparse itself, so `--max-iters -5` is a usage
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
from minilm.models import MODELS
from minilm.optim import SCHEDULES
from minilm.training.objectives import OBJECTIVES, CausalLM, objective_for
from minilm.training.config import MODEL_PRESETS, model_options, preset_for, with_changes
from minilm.training.run_state import saved_model_type, saved_objective
from minilm.training.trainer import PRESETS, TrainConfig, Trainer, split_scores
from minilm.training.translator import Seq2SeqTrainer

CHOICES = {"backend": BACKENDS, "decay": tuple(SCHEDULES), "pos": ("learned", "sinusoidal"), "norm": ("pre", "post"),
           "tokenizer": ("char", "bpe", "wordpiece"), "activation": ("relu", "gelu"),
           "smoothing": ("kneser-ney", "add-k")}
# field -> (smallest allowed, bound above or None, whether that bound is excluded)
RANGES = {
    "seed": (0, None, False),  # NumPy seeds are non-negative
    "vocab_size": (256, None, False),  # a byte-level BPE starts from the 256 bytes
    "block_size": (1, None, False), "n_layer": (1, None, False), "n_head": (1, None, False), "n_embd": (1, None, False),
    "dropout": (0.0, 1.0, True),  # a probability of dropping; 1 would drop everything
    "batch_size": (1, None, False), "grad_accum": (1, None, False), "threads": (1, None, False),
    "max_iters": (0, None, False), "epochs": (1, None, False),
    "lr": (POSITIVE, None, False), "min_lr": (0.0, None, False),  # lr > 0: a zero peak trains nothing
    "warmup_iters": (0, None, False), "lr_decay_iters": (1, None, False), "weight_decay": (0.0, None, False),
    "beta1": (0.0, 1.0, True), "beta2": (0.0, 1.0, True),  # moment decays: 1 would never move
    "grad_clip": (0.0, None, False), "eval_interval": (1, None, False), "eval_iters": (1, None, False),
    "sample_tokens": (0, None, False), "layer_norm_eps": (POSITIVE, None, False),
    "d_ff": (0, None, False), "type_vocab_size": (1, None, False),  # d_ff 0: 4 n_embd
    "d_model": (1, None, False), "nhead": (1, None, False), "num_encoder_layers": (1, None, False),
    "num_decoder_layers": (1, None, False), "dim_feedforward": (1, None, False), "hidden_size": (1, None, False),
    "n": (1, None, False), "k": (POSITIVE, None, False), "discount": (POSITIVE, 1.0, False),
}


def _field_help(cls):
    """field name -> its end-of-line comment in the dataclass source: the one description of each option (a
    subclass's comment replacing its base's)."""
    helps = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        lines = inspect.getsource(klass).splitlines()
        helps.update({m.group(1): m.group(2) for m in (re.match(r"\s+(\w+): .*?#\s*(.*)$", line) for line in lines)
                      if m})
    return helps


def add_arguments(parser):
    """Train a GPT, BERT, LSTM, RNN, tutorial Transformer or n-gram on a text, or a seq2seq on translation pairs.

    The text is tiny Shakespeare by default, the pairs English number words to French; checkpoints go to
    OUT/latest and OUT/best."""
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="starting configuration: cpu (nanoGPT's low-budget Shakespeare run, the defaults shown "
                             "here) or gpu (nanoGPT's train_shakespeare_char, --model gpt only); every option below "
                             "overrides it")
    parser.add_argument("--model", choices=sorted(MODELS), default=None,
                        help="the model family: gpt (a decoder; the default), bert (an encoder of the same shape), "
                             "seq2seq (an encoder-decoder for translation: --data numbers, numbers-digits or a "
                             "file of source<TAB>target lines), or the history's language models lstm, rnn and "
                             "tutorial (PyTorch's tutorial Transformer); a bare --resume continues the checkpoint's")
    parser.add_argument("--objective", choices=sorted(OBJECTIVES), default=None,
                        help="what the model learns to predict: clm, the next token (causal language modelling, the "
                             "default for gpt), mlm, 15%% of the tokens masked (masked language modelling, "
                             "bert's), or seq2seq, the target given the source (seq2seq's); cls, a labelled task, "
                             "is minilm finetune's")
    _add_fields(parser.add_argument_group("the run (TrainConfig)"), TrainConfig,
                [f.name for f in dataclasses.fields(TrainConfig)],
                {"cpu": PRESETS["cpu"].train, "gpu preset": PRESETS["gpu"].train})
    seen = set()
    for model_type, presets in MODEL_PRESETS.items():  # one group per model; a shared option in the first
        config_class = MODELS[model_type][0]
        shared = [_flag(name) for name in model_options(config_class) if name in seen]
        group = parser.add_argument_group(f"the model of --model {model_type} ({config_class.__name__})",
                                          f"also {', '.join(shared)} above" if shared else None)
        shown = {"cpu": presets["cpu"].model, **{f"{name} preset": p.model for name, p in presets.items()
                                                  if name != "cpu"},
                 **{f"--model {other}": p["cpu"].model for other, p in MODEL_PRESETS.items() if other != model_type}}
        _add_fields(group, config_class, [name for name in model_options(config_class) if name not in seen], shown)
        seen.update(model_options(config_class))


def _flag(name):
    return "--" + name.replace("_", "-")


def _add_fields(group, cls, names, shown):
    """One option per field of ``cls`` in ``names``; ``shown``: label -> a config, the first giving the default
    (the CPU preset's value), each other its value in brackets where it differs: [gpu preset: 256]."""
    descriptions = _field_help(cls)
    (_, first), *others = shown.items()
    for field in dataclasses.fields(cls):
        name = field.name
        if name not in names:
            continue
        default = getattr(first, name)
        help_text = descriptions.get(name, "")
        for label, other in others:
            if hasattr(other, name) and getattr(other, name) != default:
                help_text += f" [{label}: {getattr(other, name)}]"
        flag = _flag(name)
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


def model_and_objective(args):
    """(model type, objective) of the command line: --model, else --objective's model, else (a bare --resume)
    the checkpoint's, else gpt; --objective, else the model's first. A pair that does not go together is a
    ValueError naming both."""
    model_type = args.model or (OBJECTIVES[args.objective].model_types[0] if args.objective else None)
    name = args.objective
    if model_type is None:
        out = TrainConfig().out if args.out is None else args.out
        saved = saved_model_type(out) if args.resume else "gpt"
        model_type = saved if objective_for(saved) else "gpt"  # a type nothing trains: the Trainer names both
        recorded = saved_objective(out) if args.resume else None  # None: a checkpoint older than the record
        name = recorded if recorded in OBJECTIVES and model_type in OBJECTIVES[recorded].model_types else None
    objective = OBJECTIVES[name]() if name else objective_for(model_type) or CausalLM()
    if model_type not in objective.model_types:
        raise ValueError(f"--objective {objective.name} trains a model of type {' or '.join(objective.model_types)}, "
                         f"not --model {model_type}")
    return model_type, objective


def config_from_args(args, model_type="gpt"):
    """(TrainConfig, model config, the names of the fields given on the command line), from ``model_type``'s
    preset; an option of another model (--bias for a bert) is a ValueError."""
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    names += sorted({name for config_class, _ in MODELS.values() for name in model_options(config_class)})
    given = {name for name in names if getattr(args, name, None) is not None}
    cfg, model = with_changes(preset_for(model_type, args.preset or "cpu"), **{name: getattr(args, name)
                                                                              for name in given})
    return cfg, model, given


def run(args):
    if args.model == "ngram":  # counted, not trained: no objective, optimiser or steps
        return _count(args)
    model_type, objective = model_and_objective(args)
    cfg, model, given = config_from_args(args, model_type)
    trainer_class = Seq2SeqTrainer if model_type == "seq2seq" else Trainer
    trainer = trainer_class(cfg, model, log=tqdm.write, given=given, objective=objective)
    trainer.train()
    if trainer.world.rank != 0:  # under mpiexec every rank trained; rank 0 reports
        return 0
    cfg, out, objective = trainer.cfg, trainer.out, trainer.objective
    print(f"best val loss {trainer.best_val:.4f}; checkpoints in {out}/latest and {out}/best")
    loss, metric = split_scores(trainer.model, trainer.val_data, cfg, objective)
    if metric is None:
        print(f"val loss of the final weights on the whole val split, without sampling noise: {loss:.4f}")
    else:  # a masked LM: its split masked with a fixed seed, so the figure is the same every time
        masks = " (its masks fixed by a seed)" if objective.name == "mlm" else ""
        print(f"val loss of the final weights on the whole val split, without sampling noise{masks}: {loss:.4f}; "
              f"{objective.metric} {metric:.4f}")
    if isinstance(trainer, Seq2SeqTrainer):
        print("\n".join(trainer.report()[0]))
        print(f"translate more with: minilm translate --ckpt {out} \"TEXT\"")
    elif cfg.sample_tokens > 0 and not isinstance(objective, CausalLM):
        print("\n".join(objective.fill_mask(trainer.model, trainer.tokenizer, trainer.val_data, cfg.block_size)))
    elif cfg.sample_tokens > 0:
        from minilm.training.sampling import generate

        ids = generate(trainer.model, trainer.sample_start, cfg.sample_tokens, temperature=SAMPLE_TEMPERATURE,
                       rng=np.random.default_rng(cfg.seed))
        print(f"a sample of {cfg.sample_tokens} tokens (temperature {SAMPLE_TEMPERATURE}; minilm sample --ckpt "
              f"{out} for more):")
        print(trainer.tokenizer.decode(to_numpy(ids)[0]))
    return 0


def _count(args):
    from minilm.training.counting import count
    from minilm.training.sampling import generate

    cfg, config, _ = config_from_args(args, "ngram")
    model, tokenizer, _, _ = count(cfg, config)
    print(f"checkpoints in {cfg.out}/latest and {cfg.out}/best")
    if cfg.sample_tokens > 0:
        ids = generate(model, tokenizer.encode("\n")[None, :], cfg.sample_tokens, temperature=SAMPLE_TEMPERATURE,
                       rng=np.random.default_rng(cfg.seed))
        print(f"a sample of {cfg.sample_tokens} tokens (temperature {SAMPLE_TEMPERATURE}):")
        print(tokenizer.decode(ids[0]))
    return 0


# a little sharper than the model's own distribution: fewer misspelt words, as nanoGPT's sample.py
SAMPLE_TEMPERATURE = 0.8

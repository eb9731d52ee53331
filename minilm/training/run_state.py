"""What a run must carry to continue, and what a resume may change (DESIGN.md, "--resume").

A checkpoint written by ``minilm train`` records the whole TrainConfig, the learning-rate schedule resolved at
the first save and a fingerprint of the data. A resume rebuilds the run from those: the options a user
repeats must agree with them (a different model, data or optimiser is refused by name), and only RESUMABLE
may change. New runs never replace a checkpoint the user did not ask to replace (--overwrite).
"""

import dataclasses
import hashlib
import json
import math
import os
import pathlib

from minilm.atomic import refuse_to_replace
from minilm.files.checkpoint import CONFIG, load_checkpoint
from minilm.models import model_type_of
from minilm.nn.dropout import Dropout
from minilm.optim import SCHEDULES

# what a resumed run may change: its length, evaluation cadence, backend and memory switches;
# lr_decay_iters only when asked for by name, since it moves the schedule recorded at the first save
RESUMABLE = ("max_iters", "eval_interval", "eval_iters", "out", "resume", "overwrite", "sample_tokens", "backend",
             "recompute_attention", "lr_decay_iters", "grad_accum")  # grad_accum: the same update, in more pieces
# how this launch spreads the work over its ranks and threads: never taken from the checkpoint (a resume may run
# on another number of either), always this launch's own choice or default
LAUNCH = ("overlap", "zero1", "threads")
# what the GPT-2 folder of --init-from decides, so a run must not also ask for it (dropout it may change)
FROM_INIT = ("tokenizer", "vocab_size", "n_layer", "n_head", "n_embd", "bias", "pos", "norm", "tie_weights",
             "layer_norm_eps")


def flag(name):
    return "--" + name.replace("_", "-")


def fingerprint(text):
    """What a resume checks the data against: its length and SHA-256."""
    return {"characters": len(text), "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}


def check_out(out, overwrite):
    """Before any work: OUT must be a folder (or creatable as one) whose checkpoints a new run may replace."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a folder for checkpoints")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise NotADirectoryError(f"--out {out}: {parent} is a file, so no folder can be made inside it")
    for name in ("latest", "best"):
        try:
            refuse_to_replace(out / name, overwrite)
        except FileExistsError:
            raise FileExistsError(f"{out / name} already holds a checkpoint: pass --resume to continue it, "
                                  f"--overwrite to replace it with a new run, or choose another --out "
                                  f"(nothing was written)") from None


def _saved_config(out):
    """OUT/latest's config.json (or latest.previous's) as a dict; None where there is none to read."""
    for folder in ("latest", "latest.previous"):
        try:
            config = json.loads((pathlib.Path(out) / folder / CONFIG).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(config, dict):
            return config
    return None


def saved_model_type(out):
    """The model_type in OUT/latest's config.json (or latest.previous's): what a bare --resume continues. "gpt"
    where there is none to read, so the Trainer's own load of the checkpoint names what is wrong."""
    try:
        return model_type_of(_saved_config(out) or {})
    except ValueError:
        return "gpt"


def saved_objective(out):
    """The objective recorded in OUT/latest's config.json ("train": {"objective": ...}); None for a checkpoint
    written before objectives were recorded (its model type's first objective is the one it trained)."""
    train = (_saved_config(out) or {}).get("train")
    return train.get("objective") if isinstance(train, dict) else None


def check_objective(saved, objective, out, command="minilm train"):
    """A resume continues the objective the checkpoint recorded (config.json's "train" section ``saved``)."""
    recorded = saved.get("objective") if isinstance(saved, dict) else None
    if recorded is not None and recorded != objective:
        how = ("minilm finetune --out OUT --resume" if recorded == "cls" else
               f"minilm train --out OUT --resume --objective {recorded}")
        raise ValueError(f"{out / 'latest'} was trained with objective {recorded}, and {command} continues it "
                         f"with {objective}: continue it with {how}, or start a new run in another --out")


def check_init_from(cfg, given):
    """--init-from takes the model and tokenizer from the GPT-2 folder: refuse options that would ask otherwise."""
    clashes = [flag(name) for name in FROM_INIT if name in given]
    if clashes:
        raise ValueError(f"--init-from takes the model and tokenizer from {cfg.init_from}; leave out "
                         f"{', '.join(clashes)}")


def resumed_config(saved, cfg, given, out):
    """The config a resume runs: the checkpoint's (``saved``, a dict), with only the RESUMABLE fields in ``given``
    taken from ``cfg``, and the LAUNCH fields always. A field in ``given`` outside both must equal the
    checkpoint's, else a ValueError names every one that differs."""
    if not isinstance(saved, dict):
        raise ValueError(f"{out / 'latest'} has no training config (was it written by import-hf?): it cannot resume")
    fields = {f.name for f in dataclasses.fields(cfg)}
    base = dataclasses.replace(type(cfg)(), **{k: v for k, v in saved.items() if k in fields})  # older: more keys
    if base.data is not None:
        base = dataclasses.replace(base, data=os.path.abspath(base.data))  # older checkpoints kept it as typed
    if "data" in given and cfg.data is not None:
        cfg = dataclasses.replace(cfg, data=os.path.abspath(cfg.data))  # the same file, named from another folder
    clashes = [f"{flag(name)} (the checkpoint has {getattr(base, name)!r}, this run asks for {getattr(cfg, name)!r})"
               for name in sorted((given & fields) - set(RESUMABLE) - set(LAUNCH))
               if getattr(cfg, name) != getattr(base, name)]
    if clashes:
        raise ValueError(f"--resume continues {out / 'latest'} with its own model, data and optimiser settings, "
                         f"and these options differ from them: {'; '.join(clashes)}. Leave them out, or start a "
                         f"new run in another --out")
    backend = cfg.backend if "backend" in given else os.environ.get("MINILM_BACKEND") or base.backend
    chosen = {name: getattr(cfg, name) for name in RESUMABLE if name in given}
    launch = {name: getattr(cfg, name) for name in LAUNCH}
    return dataclasses.replace(base, **{**chosen, **launch, "backend": backend, "out": str(out), "resume": True})


def check_model_options(saved, model, given, out):
    """A resume builds the checkpoint's model: a model option given (``given``, names of ``model``'s fields)
    must equal the checkpoint's "model" section ``saved``, else a ValueError names every one that differs."""
    saved = saved if isinstance(saved, dict) else {}
    clashes = [f"{flag(name)} (the checkpoint has {saved.get(name)!r}, this run asks for {getattr(model, name)!r})"
               for name in sorted(given) if saved.get(name, getattr(type(model)(), name)) != getattr(model, name)]
    if clashes:
        raise ValueError(f"--resume continues {out / 'latest'} with its own model, and these options differ from "
                         f"it: {'; '.join(clashes)}. Leave them out, or start a new run in another --out")


def schedule_for(cfg, resumed, given, log):
    """The run's schedule (cfg.decay's): on a resume the one recorded at the first save, unless
    --lr-decay-iters asks for another; a new run's from cfg (decaying over max_iters unless lr_decay_iters says
    otherwise)."""
    recorded, kind = None, SCHEDULES[cfg.decay]
    if resumed is not None:
        recorded = (resumed.train_state or {}).get("schedule")
        if recorded is None:  # saved before schedules were recorded: the one its config implied
            saved = resumed.config.get("train", {})
            decay = saved.get("lr_decay_iters") or saved.get("max_iters", cfg.max_iters)
            recorded = dict(lr=cfg.lr, min_lr=cfg.min_lr, warmup_iters=min(cfg.warmup_iters, decay),
                            lr_decay_iters=decay)
    asked = "lr_decay_iters" in given and cfg.lr_decay_iters
    if recorded is not None and not (asked and cfg.lr_decay_iters != recorded["lr_decay_iters"]):
        recorded = dict(recorded)
        kind = SCHEDULES[recorded.pop("decay", "cosine")]  # saved before --decay existed: the cosine
        schedule = kind(**recorded)
        if cfg.max_iters > schedule.lr_decay_iters:
            log(f"keeping the learning-rate schedule recorded at the first save: the {kind.decay} reaches min_lr "
                f"{schedule.min_lr:g} at step {schedule.lr_decay_iters} and later steps train at min_lr "
                f"(pass --lr-decay-iters N to stretch it to step N)")
        return schedule
    decay = cfg.lr_decay_iters or cfg.max_iters
    if recorded is not None:
        log(f"the learning-rate schedule changes as asked: the {kind.decay} now reaches min_lr at step {decay} instead "
            f"of {recorded['lr_decay_iters']}, so the learning rate moves at the step this run resumes from")
    return kind(cfg.lr, cfg.min_lr, min(cfg.warmup_iters, decay), decay)


def best_loss_on_disk(folder):
    """The best val loss recorded in checkpoint ``folder``; inf when there is none.

    OUT/best is saved before OUT/latest, so after a stop between the two saves best holds a lower loss than
    latest knows of; a resume takes the lower, so it never replaces best with worse weights.
    """
    if not (folder.is_dir() or folder.with_name(folder.name + ".previous").is_dir()):
        return math.inf
    return (load_checkpoint(folder).train_state or {}).get("best_val_loss", math.inf)


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

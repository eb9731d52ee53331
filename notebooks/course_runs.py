"""The course's one trained GPT: notebook 9 trains it, notebook 10 reads it back (or trains it, if it is absent).

The size is MINILM_COURSE_SIZE, read once from the environment:
    full   (the default, what a student runs) nanoGPT's low-budget CPU preset, PRESETS["cpu"]: 2000 steps of a
           4-layer, 128-channel model, about two minutes on two CPU cores, val loss near 1.9
    small  (what the test suite runs) 500 steps of a 2-layer, 64-channel model at a higher learning rate,
           about ten seconds: the same code, every check, a weaker model
Training to a quality figure is a benchmark, not a test (DESIGN.md): benchmarks/course_full.py executes
notebooks 9 and 10 at full size and records what they measure in benchmarks/RESULTS.md.
"""

import dataclasses
import os
from pathlib import Path

from minilm.files.loader import load_model
from minilm.training.trainer import PRESETS, Trainer, model_config

SIZES = ("full", "small")
SIZE = os.environ.get("MINILM_COURSE_SIZE", "full")
if SIZE not in SIZES:
    raise ValueError(f"MINILM_COURSE_SIZE must be one of {SIZES}, got {SIZE!r}")

# the small run's changes to the preset: fewer steps need a higher learning rate to get anywhere
SMALL_RUN = dict(max_iters=500, lr=5e-3, min_lr=5e-4, warmup_iters=30, eval_interval=50, eval_iters=10)
SMALL_MODEL = dict(n_layer=2, n_embd=64)


def shakespeare_run(size=SIZE):
    """(cfg, shape, out): the run (TrainConfig), the model's shape (GPTConfig) and the folder its checkpoints go to."""
    preset = PRESETS["cpu"]
    cfg, shape = preset.train, preset.model
    if size == "small":
        cfg, shape = dataclasses.replace(cfg, **SMALL_RUN), dataclasses.replace(shape, **SMALL_MODEL)
    out = str(Path("runs") / f"shakespeare_{size}")  # beside the notebooks: notebooks/runs/ is not in git
    return dataclasses.replace(cfg, out=out, overwrite=True), shape, out


def finished_model(size=SIZE):
    """(model, tokenizer) of the run as it ended, from its latest checkpoint; None unless that run finished."""
    cfg, shape, out = shakespeare_run(size)
    latest = Path(out) / "latest"
    if not latest.is_dir():
        return None
    model, tokenizer, ckpt = load_model(latest)
    finished = ckpt.train_state is not None and ckpt.train_state.get("step") == cfg.max_iters
    same = model.config == model_config(shape, cfg, tokenizer)
    return (model, tokenizer) if finished and same else None


def trained_model(size=SIZE, log=print):
    """(model, tokenizer) of the run, in eval mode: read back if notebook 9 finished it, else trained now."""
    found = finished_model(size)
    if found is None:
        cfg, shape, out = shakespeare_run(size)
        log(f"no finished {size} run in {out}: training it ({cfg.max_iters} steps)")
        trainer = Trainer(cfg, shape, log=log)
        trainer.train()
        found = trainer.model, trainer.tokenizer
    else:
        log(f"notebook 9's {size} run, read from {shakespeare_run(size)[2]}/latest")
    model, tokenizer = found
    return model.eval(), tokenizer

"""Train a model (a GPT, a BERT, the history's LSTM, RNN or tutorial Transformer) on a text: the loop, written out.

    for it in range(start, max_iters):
        lr = schedule(it)                                  linear warmup, then a cosine (or a line) to min_lr
        inputs, y = objective.batch(train, B, T, rng)      causal LM: random windows of T + 1 tokens, y = x shifted;
                                                           masked LM: random windows of T tokens, 15% masked
        loss = CE(model(*inputs), y)                       (in grad_accum micro-batches, and over ranks under
        model.zero_grad(); model.backward(CE.backward())    mpiexec: distributed.py; every gradient by hand)
        clip_grad_norm(params, grad_clip); optimizer.step()   (--zero1: each rank steps its slice, zero.py)
        every eval_interval steps: estimate train and val loss, save OUT/best (when val improves), then OUT/latest

Checkpoints hold the model, the optimiser, the tokenizer and the train state (step, both random
generators, best val loss, loss history, the resolved learning-rate schedule and a fingerprint of the data),
so ``--resume`` continues exactly where the last save left off: an interrupted run and an uninterrupted one
end with the same weights (the masks of a masked LM are drawn from the batch generator, so they resume too).
A resume takes everything that defines the run from the checkpoint and may change only RESUMABLE
(DESIGN.md); the schedule recorded at the first save is kept unless --lr-decay-iters asks for another. A resume
may run on another number of ranks (distributed.py says what that keeps).
The model type comes from the model config given, else the objective's (clm: gpt, mlm: bert, seq2seq: seq2seq),
built through the registry (minilm.models.MODELS); a resume refuses a checkpoint of another type or objective
(config.json's "train" section records it). The FineTuner (finetune.py: a labelled task, a pre-trained encoder;
it replaces only _build) and Seq2SeqTrainer (translator.py: pairs) are this Trainer; an n-gram is counted (counting.py).
ref: Karpathy's nanoGPT train.py, whose Shakespeare configs the presets reproduce.
"""

import dataclasses
import math
import os
import pathlib
import time

import numpy as np
from tqdm import tqdm

from minilm.backend import backend_name, use_backend
from minilm.files.checkpoint import load_checkpoint, save_checkpoint
from minilm.data import (BPETokenizer, CharTokenizer, WordPieceTokenizer, load_text, rng_from_state, split,
                         tokenizer_from_dict)
from minilm.files.hf import gpt2_tokenizer, load_gpt2
from minilm.models import MODELS, expect_type, type_of_model
from minilm.training.memory import check_memory
from minilm.nn.attention import keep_attention_weights
from minilm.training.evaluation import estimate, estimate_loss, split_loss, split_scores  # noqa: F401
from minilm.communicator import World
from minilm.training.distributed import micro_batch_rows, micro_batches, own_dropout_streams, step_loss
from minilm.training.overlap import GradientSum
from minilm.training.threads import Replicas
from minilm.training.zero import ZeroAdamW
from minilm.training.objectives import OBJECTIVES, CausalLM, Classification, objective_for
from minilm.optim import AdamW, clip_grad_norm, decay_groups
# the run's configuration lives in training.config; these names are imported from here too
from minilm.training.config import (MODEL_OPTIONS, PRESETS, Preset, TrainConfig, model_config,  # noqa: F401
                                    model_options, preset_for, type_of_config)
from minilm.training.run_state import (best_loss_on_disk, check_init_from, check_model_options, check_objective,
                                       check_out, dropout_states, fingerprint, restore_dropout_states,
                                       resumed_config, saved_model_type, saved_objective, schedule_for)

def start_ids(tokenizer, text):
    """The one-token prompt a sample starts from: a newline where the tokenizer knows one, else the text's first
    character (a corpus without any newline has no "\\n" in its character vocabulary)."""
    try:
        return tokenizer.encode("\n")[None, :]  # (1, 1)
    except ValueError:
        return tokenizer.encode(text[0])[None, :]


class Trainer:
    """Holds the model, optimiser, data and random state of one run; ``train()`` runs it to ``max_iters``.

    cfg: the run (TrainConfig); model: the shape of a new model (GPTConfig, BERTConfig; vocab_size and
    block_size are filled in), by default the CPU preset of the objective's model type. objective: by default
    the model's first (clm for a GPT, mlm for a BERT; with neither, the objective a resumed checkpoint records,
    or for one older than that record its model type's first). given: the names of the fields (of either) the caller
    chose, the command line's explicit options; on a resume only these are checked against the checkpoint and
    the rest come from it. None: every field was chosen, as when a library caller builds the whole config.
    """

    command = "minilm train"  # what the messages name
    resume_user = "minilm train --resume --model {model_type} --objective {objective}"
    val_name = "val"  # what the log calls the held-out split

    def __init__(self, cfg, model=None, log=print, given=None, objective=None, world=None):
        self.world = World.current() if world is None else world
        self.log = log if self.world.rank == 0 else (lambda *_: None)  # rank 0 speaks for every rank
        model_type = type_of_config(model) if model is not None else None
        if model is None and objective is None and cfg.resume:  # a bare resume: the checkpoint's objective
            saved = saved_objective(cfg.out)
            objective = OBJECTIVES[saved]() if saved in OBJECTIVES else objective_for(saved_model_type(cfg.out))
        objective = objective or (objective_for(model_type) if model_type else None) or CausalLM()
        model_type = model_type or objective.model_types[0]
        if model_type not in objective.model_types:
            raise ValueError(f"--objective {objective.name} trains a model of type "
                             f"{' or '.join(objective.model_types)}, not --model {model_type}")
        self.objective = objective
        self.out = pathlib.Path(cfg.out)
        if given is not None and cfg.init_from and not cfg.resume:
            check_init_from(cfg, set(given))  # a library caller's whole config has every field "given"
        if given is None:  # a library caller chose its whole config, and the model's shape only if it passed one
            given = {f.name for f in dataclasses.fields(type(cfg))} | (set(model_options(type(model))) if model
                                                                        else set())
        given = set(given)
        model = preset_for(model_type).model if model is None else model
        chosen_model = given & set(model_options(type(model)))
        resumed = self._resumed(cfg) if cfg.resume else None
        if resumed is not None:
            user = self.resume_user.format(model_type=model_type, objective=objective.name)
            expect_type(resumed.config, (model_type,), resumed.path, user)
            check_objective(resumed.config.get("train"), objective.name, self.out, f"{self.command} --resume")
            check_model_options(resumed.config.get("model"), model, chosen_model, self.out)
            cfg = resumed_config(resumed.config.get("train"), cfg, given, self.out)
        else:
            check_out(self.out, cfg.overwrite)
        use_backend(cfg.backend or backend_name())
        self.cfg = cfg = dataclasses.replace(cfg, backend=backend_name())  # recorded as resolved
        self.world.connect_devices()  # on the GPU: this rank's GPU and NCCL, before the model is made
        if cfg.min_lr > cfg.lr:
            raise ValueError(f"min_lr {cfg.min_lr} is above lr {cfg.lr}: the cosine would climb")
        self._build(model, model_type, objective, resumed, given)  # the tokenizer, model, objective and splits
        cfg = self.cfg  # _build may resolve what depends on the data (a fine-tuning run's length)
        micro_batch_rows(cfg.batch_size, self.world, cfg.grad_accum, cfg.threads)  # B must split evenly: fail now
        # every rank has read OUT and its data: now they must agree, and only then may rank 0 write
        self.world.agree({**{f"--{k.replace('_', '-')}": v for k, v in _plain(cfg).items()},
                          **{f"model {k}": v for k, v in dataclasses.asdict(self.model.config).items()},
                          "data": self.data_fingerprint}, "options and data")
        keep_attention_weights(self.model, not cfg.recompute_attention)
        if cfg.block_size > self.model.config.block_size:
            raise ValueError(f"block_size {cfg.block_size} exceeds the model's context of "
                             f"{self.model.config.block_size}")
        hyper = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
        groups = decay_groups(self.model, cfg.weight_decay)
        self.optimizer = (ZeroAdamW(self.world, groups, max_norm=cfg.grad_clip, **hyper) if cfg.zero1 else
                          AdamW(groups, **hyper))
        how = None if cfg.zero1 else "overlap" if cfg.overlap else "flat"  # ZeRO-1 sums in its step (reduce-scatter)
        self.gradients, self.replicas = GradientSum(self.model, self.world, how), Replicas(self.model, cfg.threads)
        self.schedule = schedule_for(cfg, resumed, given, log)
        self.rng = np.random.default_rng(cfg.seed)  # training batches (and a masked LM's masks)
        self.eval_rng = np.random.default_rng(cfg.seed + 1)  # evaluation batches, apart so evals never shift training
        self.step, self.best_val, self.history = 0, math.inf, []
        if resumed is not None:
            self._restore(resumed)
        else:
            own_dropout_streams(self.model, self.world.rank)  # rank r > 0: masks of its own (distributed.py)
        self.out.mkdir(parents=True, exist_ok=True)

    def _build(self, model, model_type, objective, resumed, given):
        """Set the tokenizer, the model (a resume's is built here and loaded by _restore), the objective bound to
        the tokenizer, and the train and val splits, from a text corpus."""
        cfg = self.cfg
        if isinstance(objective, Classification):
            raise ValueError(f"{self.out / 'latest'} is a fine-tuned classifier: continue it with minilm finetune "
                             f"--out {self.out} --resume" if resumed is not None else
                             "--objective cls fine-tunes a BERT on a labelled task: run minilm finetune --init-from "
                             "CKPT --task NAME|FILE.csv|FILE.jsonl")
        if cfg.init_from and model_type != "gpt":
            raise ValueError(f"--init-from fine-tunes a Hugging Face GPT-2 folder, a gpt: not --model {model_type}")
        if resumed is None and objective.special_tokens and cfg.tokenizer == "bpe":
            raise ValueError(f"--objective {objective.name} needs the special tokens "
                             f"{' '.join(objective.special_tokens)}, which --tokenizer char adds and wordpiece "
                             f"has (not --tokenizer bpe)")
        if resumed is None and cfg.tokenizer == "wordpiece" and model_type == "gpt":
            raise ValueError("--tokenizer wordpiece drops case, accents and spacing, so a GPT trained on it could "
                             "not write text back: use --tokenizer char or bpe for a GPT")
        model_class = MODELS[model_type][1]
        text = load_text(cfg.data)
        self.data_fingerprint = fingerprint(text)
        if resumed is not None:
            saved = (resumed.train_state or {}).get("data")
            if saved is not None and saved != self.data_fingerprint:
                where = cfg.data or "the embedded corpus"
                raise ValueError(f"the data at {where} has changed since {self.out / 'latest'} was saved "
                                 f"({saved['characters']:,} characters then, {len(text):,} now): resume trains on "
                                 f"the same text, or start a new run")
            self.tokenizer = tokenizer_from_dict(resumed.tokenizer)
            config = MODELS[model_type][0].from_checkpoint(resumed.config.get("model"), resumed.path)
            check_memory(config, cfg.batch_size, cfg.block_size, not cfg.recompute_attention, cfg.threads)
            self.model = model_class(config, rng=cfg.seed)
        elif cfg.init_from:  # fine-tune GPT-2: its weights, its tokenizer
            dropout = model.dropout if "dropout" in given else None  # left out: the folder's own dropout
            self.model = load_gpt2(cfg.init_from, rng=cfg.seed, dropout=dropout).train()
            check_memory(self.model.config, cfg.batch_size, cfg.block_size, not cfg.recompute_attention, cfg.threads)
            self.tokenizer = gpt2_tokenizer(cfg.init_from)
            if self.tokenizer is None:
                raise FileNotFoundError(f"{cfg.init_from} has no vocab.json + merges.txt: fine-tuning needs its "
                                        f"tokenizer")
        else:
            self.tokenizer = (BPETokenizer.train(text, cfg.vocab_size) if cfg.tokenizer == "bpe" else
                              WordPieceTokenizer.train(text, cfg.vocab_size) if cfg.tokenizer == "wordpiece" else
                              CharTokenizer.from_text(text, objective.special_tokens))
            config = model_config(model, cfg, self.tokenizer)
            check_memory(config, cfg.batch_size, cfg.block_size, not cfg.recompute_attention, cfg.threads)
            self.model = model_class(config, rng=cfg.seed)
        self.objective = objective.for_tokenizer(self.tokenizer)  # a masked LM: its [MASK] and special ids
        self.sample_start = start_ids(self.tokenizer, text)
        self.train_data, self.val_data = split(self.tokenizer.encode(text))
        for name, part, share in (("train", self.train_data, "first 90%"), ("val", self.val_data, "last 10%")):
            if len(part) < cfg.block_size + 1:
                raise ValueError(f"the {name} split (the {share} of the data) has {len(part)} tokens, fewer than "
                                 f"block_size + 1 = {cfg.block_size + 1}: give more data or a smaller --block-size")

    def _resumed(self, cfg):
        latest = self.out / "latest"
        if not latest.exists() and not latest.with_name("latest.previous").is_dir():
            raise FileNotFoundError(f"nothing to resume: {latest} does not exist (train without --resume to start)")
        return load_checkpoint(latest)

    def _restore(self, ckpt):
        state = ckpt.train_state or {}
        missing = [what for what, present in (("optimizer.safetensors", ckpt.optimizer_state is not None),
                                              ("train_state.json", bool(state))) if not present]
        missing += [f"train_state.json's {key!r}" for key in ("step", "best_val_loss", "history", "rng", "eval_rng")
                    if state and key not in state]
        if missing:
            raise ValueError(f"{ckpt.path} cannot resume a run: it has no {', no '.join(missing)} (a checkpoint "
                             f"written by import-hf, or edited by hand?)")
        self.model.load_state_dict(ckpt.model_state)
        self.optimizer.load_state_dict(*ckpt.optimizer_state)
        self.step, self.best_val, self.history = state["step"], state["best_val_loss"], state["history"]
        self.rng, self.eval_rng = rng_from_state(state["rng"]), rng_from_state(state["eval_rng"])
        restore_dropout_states(self.model, state.get("dropout_rngs", {}))
        own_dropout_streams(self.model, self.world.rank, state.get("dropout_rngs_by_rank"))
        self.best_val = min(self.best_val, best_loss_on_disk(self.out / "best"))
        self.log(f"resumed from {self.out / 'latest'} at step {self.step}")

    def save(self, name):
        optimizer_state = self.optimizer.state_dict()  # under --zero1 every rank sends rank 0 its slice
        streams = self.world.gather_objects(dropout_states(self.model))  # every rank's dropout generators, on rank 0
        if self.world.rank != 0:  # every rank holds the same weights: one writer
            return
        schedule = {**dataclasses.asdict(self.schedule), "decay": self.schedule.decay}
        save_checkpoint(self.out / name, self.model.state_dict(),
                        {"model_type": type_of_model(self.model), "model": dataclasses.asdict(self.model.config),
                         "train": {**_plain(self.cfg), "objective": self.objective.name}},
                        tokenizer=self.tokenizer.to_dict(), optimizer_state=optimizer_state,
                        train_state={"step": self.step, "best_val_loss": self.best_val, "history": self.history,
                                     "rng": self.rng.bit_generator.state, "eval_rng": self.eval_rng.bit_generator.state,
                                     "dropout_rngs": streams[0], "schedule": schedule,
                                     **({"dropout_rngs_by_rank": streams} if len(streams) > 1 else {}),
                                     "data": self.data_fingerprint})

    def evaluate_and_save(self):
        train_loss = estimate_loss(self.model, self.train_data, self.cfg, self.eval_rng, self.objective)
        if getattr(self.objective, "whole_split", False):  # a classifier: every held-out example, exactly
            val_loss, metric = split_scores(self.model, self.val_data, self.cfg, self.objective)
        else:
            val_loss, metric = estimate(self.model, self.val_data, self.cfg, self.eval_rng, self.objective)
        self.history.append({"step": self.step, "train": train_loss, "val": val_loss, "lr": self.schedule(self.step)})
        shown = "" if self.objective.metric == "accuracy" else f" (perplexity {math.exp(val_loss):.2f})"
        if metric is not None:  # a masked LM's accuracy on the val batches, a classifier's on the held-out split
            self.history[-1]["val_" + self.objective.metric.replace(" ", "_")] = metric
            shown += f", {self.val_name} {self.objective.metric} {metric:.4f}"
        self.log(f"step {self.step}: train loss {train_loss:.4f}, {self.val_name} loss {val_loss:.4f}{shown}")
        if val_loss < self.best_val:
            self.best_val = val_loss
            # best first: a stop between the two saves leaves a best whose loss is its own weights', and
            # latest one evaluation behind, which a resume repeats exactly
            self.save("best")
        self.save("latest")

    def train_step(self):
        cfg = self.cfg
        self.schedule.apply(self.optimizer, self.step)
        # the global batch, the same on every rank (one seeded stream); this rank's micro-batches of it
        inputs, targets = self.objective.batch(self.train_data, cfg.batch_size, cfg.block_size, self.rng)
        pieces = micro_batches(inputs, targets, self.world, cfg.grad_accum, cfg.threads)
        loss = step_loss(self.model, pieces, self.world, self.gradients, self.replicas)  # each .grad now Σ_ranks
        if not math.isfinite(loss):
            last = self.history[-1]["step"] if self.history else None
            raise RuntimeError(f"loss is {loss} at step {self.step}; nothing was saved for this step, the last "
                               f"good checkpoint is {self.out / 'latest'} (step {last})")
        if cfg.grad_clip > 0 and not cfg.zero1:  # ZeRO-1 clips in its step, by the global norm (zero.py)
            clip_grad_norm(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()  # --zero1: reduce-scatter, clip, AdamW on this rank's slice, all-gather
        self.step += 1
        return loss

    def train(self):
        cfg = self.cfg
        tokens_per_step = cfg.batch_size * cfg.block_size
        bar = tqdm(total=cfg.max_iters, initial=min(self.step, cfg.max_iters), desc="training", unit="step",
                   dynamic_ncols=True,  # None: a bar on a terminal, nothing in a log file; one bar, rank 0's
                   disable=None if self.world.rank == 0 else True)
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
    plain = dataclasses.asdict(cfg)
    if plain["data"] is not None:
        plain["data"] = os.path.abspath(plain["data"])  # a resume from another folder finds the same file
    return plain

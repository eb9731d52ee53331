"""`minilm train --model ngram`: an n-gram model is counted, not trained: one pass over the train split.

    text -> CharTokenizer -> (train, val) = the 90/10 split every model uses
    model = NGram(config).fit(train)                     counts of every m-gram, m = 1 … n (minilm.models.ngram)
    val loss = the whole val split's mean negative log-likelihood, windows of block_size (evaluation.split_loss)
    OUT/latest and OUT/best: the counts and the tokenizer, a checkpoint `minilm sample` and minilm.load read

There is no optimiser, schedule or step: --resume is refused (counting again is the whole run), and the
options of a gradient run (--lr, --max-iters, ...) have nothing to act on.
"""

import dataclasses
import pathlib
import time

from minilm.data import CharTokenizer, load_text, split
from minilm.files.checkpoint import save_checkpoint
from minilm.models import NGram
from minilm.training.evaluation import split_loss
from minilm.training.run_state import check_out


def count(cfg, config, log=print):
    """Fit ``config`` (an NGramConfig; vocab_size and block_size from the data and the run) on ``cfg.data``, save
    it to OUT/latest and OUT/best; returns (model, tokenizer, val split, val loss)."""
    if cfg.resume:
        raise ValueError("an n-gram model has nothing to resume: counting is the whole run (drop --resume)")
    if cfg.tokenizer != "char":
        raise ValueError(f"--model ngram counts characters, not --tokenizer {cfg.tokenizer}")
    out = pathlib.Path(cfg.out)
    check_out(out, cfg.overwrite)
    text = load_text(cfg.data)
    tokenizer = CharTokenizer.from_text(text)
    train, val = split(tokenizer.encode(text))
    config = dataclasses.replace(config, vocab_size=tokenizer.vocab_size, block_size=cfg.block_size)
    began = time.perf_counter()
    model = NGram(config).fit(train)
    val_loss = split_loss(model, val, cfg)
    log(f"counted {config.n}-grams ({config.smoothing}) on {len(train):,} tokens in {time.perf_counter() - began:.1f} s; "
        f"val loss {val_loss:.4f} over the whole val split")
    meta = {"model_type": "ngram", "model": dataclasses.asdict(config),
            "train": {**dataclasses.asdict(cfg), "objective": "count"}}
    for name in ("best", "latest"):
        save_checkpoint(out / name, model.state_dict(), meta, tokenizer=tokenizer.to_dict())
    return model, tokenizer, val, val_loss

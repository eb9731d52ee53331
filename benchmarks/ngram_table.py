"""The n-gram baselines on tiny Shakespeare: val loss and perplexity for n = 1 … 7, Kneser-Ney and add-k.

    python benchmarks/ngram_table.py                     # n = 1 … 7, d = 0.75, k = 0.03 (NGramConfig's defaults)
    python benchmarks/ngram_table.py --max-n 9 --k 1     # further, and Laplace's add-one

The embedded corpus, the char tokenizer (65 characters) and nanoGPT's 90/10 split (minilm.data). Each model is
counted on the train split (``fit``; the fastest of --repeats fits is reported) and scored on the val split
two ways:
  stream   the whole val split as one row (block_size = its length): every character but the first n - 1
           is predicted from the n - 1 before it; the mean negative log-likelihood per character, in nats,
           and its perplexity exp(loss). The time is that one forward.
  windows  minilm.training.evaluation.split_loss with the CausalLM objective, as a GPT is scored after
           training: windows of --block + 1 characters, so the first n - 2 positions of each window read a
           shorter context (minilm.models.ngram, "row start"), hence a slightly higher loss.
"""

import argparse
import os
import time
import types

import numpy as np

from minilm.backend import to_numpy
from minilm.data import CharTokenizer, load_text, split
from minilm.models.ngram import NGram, NGramConfig
from minilm.training.evaluation import split_loss

from bench_step import cpu_model  # run from benchmarks/, as bench_layers.py and bench_gelu.py do


def stream_loss(model, val):
    """Mean NLL (nats per character) of val[1:] with the whole split as one row, and the forward's seconds."""
    start = time.perf_counter()
    logp = to_numpy(model(val[None, :-1]))[0]  # (N - 1, V)
    seconds = time.perf_counter() - start
    return -float(logp[np.arange(len(val) - 1), val[1:]].astype(np.float64).mean()), seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-n", type=int, default=7, help="largest order")
    parser.add_argument("--k", type=float, default=NGramConfig.k, help="add-k's pseudo-count")
    parser.add_argument("--discount", type=float, default=NGramConfig.discount, help="Kneser-Ney's d")
    parser.add_argument("--block", type=int, default=256, help="window length T of the split_loss column")
    parser.add_argument("--repeats", type=int, default=3, help="fits timed per model (the fastest is shown)")
    args = parser.parse_args()

    text = load_text()
    tokenizer = CharTokenizer.from_text(text)
    train, val = split(np.array(tokenizer.encode(text), dtype=np.int64))
    eval_cfg = types.SimpleNamespace(batch_size=64, block_size=args.block)
    print(f"machine: {cpu_model()}, {len(os.sched_getaffinity(0))} usable cores; NumPy {np.__version__}; "
          f"train {len(train):,} / val {len(val):,} characters, V = {tokenizer.vocab_size}")
    print("| n | smoothing | val loss (stream, nats) | perplexity | val loss (split_loss, T = "
          f"{args.block}) | fit s | stream eval s | distinct n-grams |")
    print("|---|---|---|---|---|---|---|---|")
    for smoothing, setting in (("kneser-ney", f"d = {args.discount}"), ("add-k", f"k = {args.k}")):
        for n in range(1, args.max_n + 1):
            cfg = NGramConfig(vocab_size=tokenizer.vocab_size, n=n, smoothing=smoothing, k=args.k,
                              discount=args.discount, block_size=len(val))
            fits = []
            for _ in range(args.repeats):
                model = NGram(cfg)
                start = time.perf_counter()
                model.fit(train)
                fits.append(time.perf_counter() - start)
            loss, seconds = stream_loss(model, val)
            windowed = split_loss(model, val, eval_cfg)
            grams = model.state_dict()[f"order{n}_codes"].size
            print(f"| {n} | {smoothing}, {setting} | {loss:.4f} | {np.exp(loss):.2f} | {windowed:.4f} | "
                  f"{min(fits):.3f} | {seconds:.2f} | {grams:,} |", flush=True)


if __name__ == "__main__":
    main()

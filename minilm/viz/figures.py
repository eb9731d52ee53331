"""Pictures of models: the ``minilm attention`` command (PNG heatmaps, the explorer's page), the README's figures.

    minilm attention --ckpt DIR --text TEXT [--layer L] [--head H] [--out FILE.png] [--html FILE.html]
        a GPT checkpoint's attention on a text: one heatmap per head of layer L (default: the last), tokens on
        both axes; the text must fit in block_size tokens of the checkpoint's own tokenizer. A seq2seq
        checkpoint: TEXT is a source, translated greedily, and each heatmap is decoder layer L's
        cross-attention, [BOS] + the translation down, the source across (minilm.viz.cross_attention).
        --html writes the explorer instead or as well (minilm.viz.explorer): one self-contained page, opened on
        layer L and head H, for a GPT, a BERT, a seq2seq or the tutorial Transformer

    OMP_NUM_THREADS=1 python -m minilm.viz.figures [--out figures] [--max-iters 2000]
        regenerates figures/:

        positional_encoding.png   the sinusoidal table, 128 positions × 128 channels
        loss_curve.png            a small GPT trained on the embedded Shakespeare (the cpu preset's whole
                                  run), train and val loss against the bigram baseline
        attention.png             that model's last layer, every head, on a line of the validation text
        gradcheck.png             `minilm check --json`: every backward against finite differences and torch

The model trains into a temporary folder, so the repository only ever receives the four PNGs, each written
atomically. About two and a half minutes on two CPU cores, most of it the 2000 training steps: the cpu preset's
run, whose val loss the README quotes (a smaller --max-iters draws a quicker, less trained model).
OMP_NUM_THREADS=1: at this size one BLAS thread is as fast as several, and on a machine busy with other work
several threads waiting on each other made a step 100 times slower.

bigram baseline: P(b | a) = (count(a → b) + 1) / (count(a → ·) + V) on the train split (add-one smoothing
gives every pair a non-zero probability), scored by its cross-entropy on the val split: the loss a model that
looks one character back gets, the bar a transformer must clear.
"""

import argparse
import contextlib
import dataclasses
import importlib
import io
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from minilm.viz import plots
from minilm.backend import BACKENDS, use_backend
from minilm.data import load_text, split
from minilm.nn.positional import sinusoidal_table

# a line from the validation split (the last 10%), which the model never trained on
LINE = "GREMIO:\nGood morrow, neighbour Baptista.\n"
TITLE_CHARS = 16  # of a translation in a cross-attention title: one with no spaces cannot be wrapped


def bigram_loss(train, val, vocab_size):
    """Cross-entropy (nats per token) on ``val`` of the add-one-smoothed bigram counts of ``train`` (ids)."""
    train, val = np.asarray(train), np.asarray(val)
    counts = np.bincount(train[:-1] * vocab_size + train[1:], minlength=vocab_size**2)  # (V·V,)
    counts = counts.reshape(vocab_size, vocab_size).astype(np.float64) + 1.0  # (V, V) row a: the next after a
    log_p = np.log(counts / counts.sum(axis=1, keepdims=True))  # (V, V) log P(b | a)
    return float(-log_p[val[:-1], val[1:]].mean())


def positional_encoding(out):
    fig = plots.positional_encoding_heatmap(
        sinusoidal_table(128, 128),
        title="sinusoidal positional encoding: PE(pos, 2i) = sin(pos·ωᵢ), PE(pos, 2i+1) = cos(pos·ωᵢ)")
    return plots.save_figure(fig, out / "positional_encoding.png")


def trained_model(max_iters):
    """(model, tokenizer, history, seconds) of the cpu preset trained ``max_iters`` steps in a temp folder."""
    from minilm.training.trainer import PRESETS, Trainer

    with tempfile.TemporaryDirectory(prefix="minilm-figures-") as folder:
        cfg = dataclasses.replace(PRESETS["cpu"].train, out=str(Path(folder) / "run"), max_iters=max_iters,
                                  eval_interval=max(1, max_iters // 12), sample_tokens=0)
        started = time.perf_counter()
        trainer = Trainer(cfg)
        history = trainer.train()
        return trainer.model, trainer.tokenizer, history, time.perf_counter() - started


def loss_curve(out, tokenizer, history):
    train, val = split(tokenizer.encode(load_text()))
    baseline = bigram_loss(train, val, tokenizer.vocab_size)
    print(f"bigram baseline: val loss {baseline:.4f} (perplexity {math.exp(baseline):.2f})")
    steps = history[-1]["step"]
    fig = plots.loss_curves(history, baseline=baseline, baseline_label="bigram baseline (val)",
                            title=f"a 4-layer GPT on tiny Shakespeare (minilm train --preset cpu --max-iters {steps})")
    return plots.save_figure(fig, out / "loss_curve.png")


def attention(out, model, tokenizer):
    ids = tokenizer.encode(LINE)  # (T,)
    layer = len(model.h) - 1
    weights = plots.attention_weights(model, ids)[layer][0]  # (H, T, T)
    title = f"last layer ({layer}) of the trained GPT, every head, on a line it never saw"
    fig = plots.attention_heatmaps(weights, plots.token_strings(tokenizer, ids), title=title)
    return plots.save_figure(fig, out / "attention.png")


def gradcheck(out):
    """The check's chart, or None (with a note) where minilm.verify.check is not there."""
    try:
        check = importlib.import_module("minilm.verify.check")
    except ModuleNotFoundError as err:
        if err.name != "minilm.verify.check":
            raise
        print("minilm.verify.check is not available: gradcheck.png not drawn")
        return None
    parser = argparse.ArgumentParser()
    check.add_arguments(parser)
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        check.run(parser.parse_args(["--json"]))  # exit code 1 (a failed row) is still drawn, in red
    fig = plots.gradcheck_chart(json.loads(captured.getvalue()))
    return plots.save_figure(fig, out / "gradcheck.png")


# --- minilm attention --------------------------------------------------------------------------------

def add_attention_arguments(parser):
    """Draw a checkpoint's attention on a text: one heatmap per head (a seq2seq's: cross-attention)."""
    parser.add_argument("--ckpt", required=True, metavar="DIR",
                        help="a checkpoint folder, or a training output folder (its best/, else its latest/)")
    parser.add_argument("--text", required=True,
                        help="the text to run the model on (at most block_size tokens); for a seq2seq checkpoint "
                             "the source, which it translates greedily")
    parser.add_argument("--layer", type=int, default=None, metavar="L",
                        help="the layer (a seq2seq's decoder layer) to draw, numbered from 0 (default: the last)")
    parser.add_argument("--head", type=int, default=None, metavar="H",
                        help="draw only this head in the PNG, and open the explorer on it; numbered from 0 "
                             "(default: every head; the explorer opens on head 0)")
    parser.add_argument("--out", default=None, metavar="FILE.png",
                        help="the PNG of heatmaps to write (replaced atomically); a gpt or seq2seq checkpoint")
    parser.add_argument("--html", default=None, metavar="FILE.html",
                        help="the attention explorer to write: one self-contained page to open in a browser, "
                             "opened on --layer and --head (replaced atomically); gpt, bert, seq2seq or tutorial")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="array library (default: the active one, MINILM_BACKEND or numpy)")


def run_attention(args):
    from minilm.files.loader import load_model  # the model code, only once the command runs
    from minilm.models import type_of_model
    from minilm.viz.attention_data import MODEL_TYPES, check_index
    from minilm.viz.explorer import attention_view, check_html_path

    if args.out is None and args.html is None:
        raise ValueError("nothing to write: give --out FILE.png, --html FILE.html or both")
    if args.html is not None:
        check_html_path(args.html)  # before any work, and before the PNG is written
    if args.out is not None:
        try:
            plots.require_matplotlib()  # a missing matplotlib is reported before the checkpoint is read
        except ImportError as err:  # as a RuntimeError, which the CLI prints as one line (exit 2), not a traceback
            raise RuntimeError(f"matplotlib is missing, and minilm attention draws with it: "
                               f"{plots.INSTALL_MATPLOTLIB}") from err
    if args.backend is not None:
        use_backend(args.backend)  # before the model is built, so its weights live on that backend
    png = args.out is not None
    model, tokenizer, ckpt = load_model(args.ckpt, expect=("gpt", "seq2seq") if png else MODEL_TYPES,
                                        user="minilm attention --out" if png else "minilm attention")
    if args.text == "":
        raise ValueError("--text is empty: give at least one character")
    what, layers, heads = _layers_and_heads(model)
    layer = layers - 1 if args.layer is None else args.layer
    check_index(what, layer, layers)
    if args.head is not None:
        check_index("head", args.head, heads)
    if png and type_of_model(model) == "seq2seq":
        _cross_attention(args, model, tokenizer, ckpt, layer)
    elif png:
        _self_attention(args, model, tokenizer, ckpt, layer)
    if args.html is not None:
        where = "/".join(Path(ckpt.path).parts[-2:])
        title = f"{type_of_model(model)} {where}, {layers} layers × {heads} heads, on {args.text[:60]!r}"
        print(attention_view(model, tokenizer, args.text, layer=layer, head=args.head, title=title).save(args.html))
    return 0


def _layers_and_heads(model):
    """(what a layer is called, layers, heads) of the attention `minilm attention` opens on."""
    config = model.config
    if hasattr(config, "num_decoder_layers"):  # a Seq2Seq: its decoder's cross-attention
        return "decoder layer", config.num_decoder_layers, config.nhead
    return "layer", config.n_layer, config.n_head


def _self_attention(args, model, tokenizer, ckpt, layer):
    """run_attention's PNG for a GPT: the layer's self-attention, every head (or one)."""
    config = model.config
    ids = tokenizer.encode(args.text)  # (T,) names a character outside the vocabulary
    if len(ids) > config.block_size:
        raise ValueError(f"the text is {len(ids)} tokens long, longer than the model's block_size {config.block_size}")
    weights = plots.attention_weights(model, ids)[layer][0]  # (H, T, T)
    heads = range(config.n_head) if args.head is None else [args.head]
    tokens = plots.token_strings(tokenizer, ids)
    where = "/".join(Path(ckpt.path).parts[-2:])
    title = f"attention in layer {layer} (layers 0–{config.n_layer - 1}) of {where}"
    fig = plots.attention_heatmaps(weights[list(heads)], tokens, title=title, heads=heads)
    print(plots.save_figure(fig, args.out))


def _cross_attention(args, model, tokenizer, ckpt, layer):
    """run_attention's PNG for a Seq2Seq: a decoder layer's cross-attention on the source and its greedy translation."""
    from minilm.viz.cross_attention import TARGET_SOURCE, cross_attention_weights

    config = model.config
    weights, source, target = cross_attention_weights(model, tokenizer, args.text)  # (L, H, T, S)
    translation = "".join(target[1:])  # after [BOS]
    print(f"{args.text} -> {translation}")
    heads = range(config.nhead) if args.head is None else [args.head]
    where = "/".join(Path(ckpt.path).parts[-2:])
    short = translation if len(translation) <= TITLE_CHARS else translation[:TITLE_CHARS - 1] + "…"
    title = (f"cross-attention in decoder layer {layer} (layers 0–{config.num_decoder_layers - 1}) of {where}: "
             f"{args.text!r} -> {short!r} (greedy)")
    fig = plots.attention_heatmaps(weights[layer][list(heads)], target, keys=source, title=title, heads=heads,
                                   axis_labels=TARGET_SOURCE)
    print(plots.save_figure(fig, args.out))


# --- python -m minilm.viz.figures ----------------------------------------------------------------------------

PRESET_STEPS = 2000  # minilm.training.config.PRESETS["cpu"].train.max_iters: the figures show the run the README quotes


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minilm.viz.figures", description="Regenerate the README's figures.")
    parser.add_argument("--out", default="figures", help="folder for the PNGs (default: figures)")
    parser.add_argument("--max-iters", type=int, default=PRESET_STEPS,
                        help="training steps for the loss curve and attention (default: the CPU preset's, "
                             "whose val loss the README quotes)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(positional_encoding(out))
    model, tokenizer, history, seconds = trained_model(args.max_iters)
    print(f"trained {args.max_iters} steps in {seconds:.0f} s")
    print(loss_curve(out, tokenizer, history))
    print(attention(out, model, tokenizer))
    started = time.perf_counter()
    path = gradcheck(out)
    if path is not None:
        print(f"{path} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

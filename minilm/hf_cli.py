"""The command-line side of minilm.hf: `minilm import-hf DIR --out CKPT` and `minilm export --ckpt DIR --hf OUT`."""

import dataclasses
from pathlib import Path

import numpy as np

from minilm.checkpoint import load_checkpoint, save_checkpoint
from minilm.data.bpe import BPETokenizer
from minilm.hf import check_exportable, gpt2_tokenizer, load_gpt2, save_gpt2
from minilm.models.gpt import GPT, GPTConfig


def add_import_arguments(parser):
    """Import a local Hugging Face GPT-2 folder (config.json + model.safetensors) as a minilm checkpoint."""
    parser.add_argument("dir", metavar="DIR", help="a local Hugging Face GPT-2 folder (config.json, model.safetensors)")
    parser.add_argument("--out", required=True, metavar="CKPT", help="the minilm checkpoint folder to write")


def run_import(args):
    """minilm import-hf DIR --out CKPT: a Hugging Face GPT-2 folder as a minilm checkpoint."""
    model, tokenizer = load_gpt2(args.dir), gpt2_tokenizer(args.dir)
    eps = model.ln_f.eps
    if eps != 1e-5:
        raise ValueError(f"layer_norm_epsilon {eps} cannot be stored in a minilm checkpoint: GPTConfig has no eps "
                         "field and minilm's LayerNorm uses 1e-5 (load_gpt2 still reads this model in Python)")
    save_checkpoint(args.out, model.state_dict(), {"model": dataclasses.asdict(model.config), "train": {}},
                    tokenizer=None if tokenizer is None else tokenizer.to_dict())
    print(f"imported {model.num_params():,} parameters from {args.dir} into {args.out}")
    return 0


def add_export_arguments(parser):
    """Export a minilm checkpoint as a folder transformers.GPT2LMHeadModel.from_pretrained opens."""
    parser.add_argument("--ckpt", required=True, metavar="DIR", help="the minilm checkpoint folder to export")
    parser.add_argument("--hf", required=True, metavar="OUT", help="the Hugging Face folder to write (new or empty)")


def run_export(args):
    """minilm export --ckpt DIR --hf OUT: a minilm checkpoint as a Hugging Face GPT-2 folder."""
    ckpt = load_checkpoint(args.ckpt)
    fields = ckpt.config.get("model")
    if not isinstance(fields, dict):
        raise ValueError(f"checkpoint {args.ckpt} config.json has no 'model' section")
    cfg = GPTConfig(**fields)  # an unknown field is a TypeError naming it
    check_exportable(cfg)  # before building: a refusal should not cost the model's initialisation
    model = GPT(cfg).to(ckpt.model_state.get("wte.weight", np.float32(0)).dtype)  # keep a float64 model float64
    model.load_state_dict(ckpt.model_state)
    save_gpt2(model, args.hf)
    if ckpt.tokenizer is not None and ckpt.tokenizer.get("type") == "bpe":
        tokenizer = BPETokenizer.from_dict(ckpt.tokenizer)
        tokenizer.save_gpt2_files(Path(args.hf) / "vocab.json", Path(args.hf) / "merges.txt")
    elif ckpt.tokenizer is not None:
        print(f"note: a {ckpt.tokenizer.get('type')} tokenizer has no GPT-2 file layout; it was not exported")
    print(f"exported {model.num_params():,} parameters from {args.ckpt} to {args.hf}")
    return 0

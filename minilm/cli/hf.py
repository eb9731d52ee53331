"""The command-line side of minilm.files.hf: `minilm import-hf DIR --out CKPT` and `minilm export --ckpt DIR --hf OUT`.

Both refuse to replace what OUT already holds unless given --overwrite (checkpoint.refuse_to_replace), and
check that before reading anything, so a refusal costs nothing and changes nothing.
"""

import dataclasses
import os

import numpy as np

from minilm.atomic import refuse_to_replace
from minilm.files.checkpoint import load_checkpoint, save_checkpoint
from minilm.data.bpe import BPETokenizer
from minilm.files.hf import check_export_path, check_exportable, gpt2_tokenizer, load_gpt2, save_gpt2
from minilm.models import GPT, GPTConfig, expect_type, type_of_model

OVERWRITE_HELP = "replace an existing checkpoint/folder at OUT"


def add_import_arguments(parser):
    """Import a local Hugging Face GPT-2 folder (config.json + model.safetensors) as a minilm checkpoint."""
    parser.add_argument("dir", metavar="DIR", help="a local Hugging Face GPT-2 folder (config.json, model.safetensors)")
    parser.add_argument("--out", required=True, metavar="CKPT", help="the minilm checkpoint folder to write")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def run_import(args):
    """minilm import-hf DIR --out CKPT: a Hugging Face GPT-2 folder as a minilm checkpoint."""
    _refuse_same_folder(args.dir, args.out)
    refuse_to_replace(args.out, args.overwrite, what="checkpoint")
    model, tokenizer = load_gpt2(args.dir), gpt2_tokenizer(args.dir)
    save_checkpoint(args.out, model.state_dict(),
                    {"model_type": type_of_model(model), "model": dataclasses.asdict(model.config), "train": {}},
                    tokenizer=None if tokenizer is None else tokenizer.to_dict())
    print(f"imported {model.num_params():,} parameters from {args.dir} into {args.out}")
    return 0


def add_export_arguments(parser):
    """Export a minilm checkpoint as a folder transformers.GPT2LMHeadModel.from_pretrained opens."""
    parser.add_argument("--ckpt", required=True, metavar="DIR", help="the minilm checkpoint folder to export")
    parser.add_argument("--hf", required=True, metavar="OUT",
                        help="the Hugging Face folder to write: new, empty, or an earlier export with --overwrite")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def run_export(args):
    """minilm export --ckpt DIR --hf OUT: a minilm checkpoint as a Hugging Face GPT-2 folder."""
    _refuse_same_folder(args.ckpt, args.hf)
    check_export_path(args.hf, args.overwrite)  # with --overwrite: only an earlier export, never other files
    ckpt = load_checkpoint(args.ckpt)  # a file there is a NotADirectoryError naming it
    expect_type(ckpt.config, ("gpt",), ckpt.path, "minilm export (to the GPT-2 layout)")
    cfg = GPTConfig.from_checkpoint(ckpt.config.get("model"), ckpt.path)
    check_exportable(cfg)  # before building: a refusal should not cost the model's initialisation
    model = GPT(cfg).to(ckpt.model_state.get("wte.weight", np.float32(0)).dtype)  # keep a float64 model float64
    model.load_state_dict(ckpt.model_state)
    bpe = ckpt.tokenizer is not None and ckpt.tokenizer.get("type") == "bpe"
    save_gpt2(model, args.hf, tokenizer=BPETokenizer.from_dict(ckpt.tokenizer) if bpe else None,
              overwrite=args.overwrite)
    if ckpt.tokenizer is not None and not bpe:
        print(f"note: a {ckpt.tokenizer.get('type')} tokenizer has no GPT-2 file layout; it was not exported")
    print(f"exported {model.num_params():,} parameters from {args.ckpt} to {args.hf}")
    return 0


def _refuse_same_folder(source, target):
    """Reading a folder and replacing it in one command would destroy what is read, --overwrite or not."""
    if os.path.realpath(source) == os.path.realpath(target):
        raise ValueError(f"{target} is the folder being read; write to another folder")

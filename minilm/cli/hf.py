"""The command-line side of minilm.files.hf and hf_bert: `minilm import-hf DIR --out CKPT` and
`minilm export --ckpt DIR --hf OUT`, for GPT-2 and BERT.

import-hf tells the family from DIR's config.json model_type ("gpt2" or "bert"); export from the checkpoint's
("gpt" or "bert"). Both refuse to replace what OUT already holds unless given --overwrite
(atomic.refuse_to_replace), and check that before reading anything, so a refusal costs nothing and changes nothing.
"""

import dataclasses
import os

import numpy as np

from minilm.atomic import refuse_to_replace
from minilm.data.bpe import BPETokenizer
from minilm.data.wordpiece import WordPieceTokenizer
from minilm.files.checkpoint import load_checkpoint, save_checkpoint
from minilm.files.hf import check_exportable, gpt2_tokenizer, load_gpt2, save_gpt2
from minilm.files.hf_bert import bert_tokenizer, load_bert, save_bert
from minilm.files.hf_folder import check_export_path, read_config
from minilm.models import BERT, GPT, BERTConfig, GPTConfig, expect_type, type_of_model

OVERWRITE_HELP = "replace an existing checkpoint/folder at OUT"
READERS = {"gpt2": (load_gpt2, gpt2_tokenizer), "bert": (load_bert, bert_tokenizer)}  # config.json model_type


def add_import_arguments(parser):
    """Import a local Hugging Face GPT-2 or BERT folder (config.json + model.safetensors) as a minilm checkpoint."""
    parser.add_argument("dir", metavar="DIR",
                        help="a local Hugging Face GPT-2 or BERT folder (config.json, model.safetensors)")
    parser.add_argument("--out", required=True, metavar="CKPT", help="the minilm checkpoint folder to write")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def run_import(args):
    """minilm import-hf DIR --out CKPT: a Hugging Face GPT-2 or BERT folder as a minilm checkpoint."""
    _refuse_same_folder(args.dir, args.out)
    refuse_to_replace(args.out, args.overwrite, what="checkpoint")
    family = read_config(args.dir).get("model_type", "gpt2")  # as GPT-2 import always read a config without one
    if family not in READERS:
        raise ValueError(f"{args.dir}'s config.json has model_type {family!r}; minilm imports "
                         f"{' and '.join(READERS)} folders")
    load, read_tokenizer = READERS[family]
    model, tokenizer = load(args.dir), read_tokenizer(args.dir)
    if family == "bert" and tokenizer is not None and tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(f"{args.dir}'s tokenizer has {tokenizer.vocab_size} tokens, more than the model's "
                         f"vocab_size {model.config.vocab_size}")
    save_checkpoint(args.out, model.state_dict(),
                    {"model_type": type_of_model(model), "model": dataclasses.asdict(model.config), "train": {}},
                    tokenizer=None if tokenizer is None else tokenizer.to_dict())
    print(f"imported {model.num_params():,} parameters from {args.dir} into {args.out}")
    return 0


def add_export_arguments(parser):
    """Export a minilm GPT or BERT checkpoint as a folder transformers' from_pretrained opens."""
    parser.add_argument("--ckpt", required=True, metavar="DIR", help="the minilm checkpoint folder to export")
    parser.add_argument("--hf", required=True, metavar="OUT",
                        help="the Hugging Face folder to write: new, empty, or an earlier export with --overwrite")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def run_export(args):
    """minilm export --ckpt DIR --hf OUT: a minilm checkpoint as a Hugging Face GPT-2 or BERT folder."""
    _refuse_same_folder(args.ckpt, args.hf)
    check_export_path(args.hf, args.overwrite)  # with --overwrite: only an earlier export, never other files
    ckpt = load_checkpoint(args.ckpt)  # a file there is a NotADirectoryError naming it
    family = expect_type(ckpt.config, ("gpt", "bert"), ckpt.path, "minilm export (to the Hugging Face layout)")
    if family == "gpt":
        cfg = GPTConfig.from_checkpoint(ckpt.config.get("model"), ckpt.path)
        check_exportable(cfg)  # before building: a refusal should not cost the model's initialisation
        model, embedding, save, kind, tokenizer_class = GPT(cfg), "wte.weight", save_gpt2, "bpe", BPETokenizer
    else:
        cfg = BERTConfig.from_checkpoint(ckpt.config.get("model"), ckpt.path)
        model, embedding, save = BERT(cfg), "embeddings.wte.weight", save_bert
        kind, tokenizer_class = "wordpiece", WordPieceTokenizer
    model.to(ckpt.model_state.get(embedding, np.float32(0)).dtype)  # keep a float64 model float64
    model.load_state_dict(ckpt.model_state)
    ours = ckpt.tokenizer is not None and ckpt.tokenizer.get("type") == kind
    save(model, args.hf, tokenizer=tokenizer_class.from_dict(ckpt.tokenizer) if ours else None,
         overwrite=args.overwrite)
    if ckpt.tokenizer is not None and not ours:
        print(f"note: a {ckpt.tokenizer.get('type')} tokenizer has no {'GPT-2' if family == 'gpt' else 'BERT'} "
              "file layout; it was not exported")
    print(f"exported {model.num_params():,} parameters from {args.ckpt} to {args.hf}")
    return 0


def _refuse_same_folder(source, target):
    """Reading a folder and replacing it in one command would destroy what is read, --overwrite or not."""
    if os.path.realpath(source) == os.path.realpath(target):
        raise ValueError(f"{target} is the folder being read; write to another folder")

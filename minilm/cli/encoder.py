"""The commands that use a BERT: `minilm classify`, `minilm fill-mask` and `minilm embed`.

classify:   [CLS] text [SEP] (pair [SEP]), tokenized exactly as fine-tuning did (objectives.Classification),
            through a "cls" model: each text's label and the softmax of its logits over the label names
fill-mask:  the MLM head's softmax at each [MASK], its top k tokens, most probable first. The input is what
            the model was pre-trained on: a char tokenizer's text as it is (minilm's masked LM trains on raw
            windows of the corpus), a WordPiece tokenizer's [CLS] text [SEP] (BERT's pre-training); a char
            tokenizer reads "[MASK]" as one token, as it reads every special token written out
embed:      the encoder of any BERT checkpoint (its head dropped, heads.with_head) on [CLS] text [SEP]: a
            safetensors file (never a pickle) of last_hidden_state (N, T, C), cls (N, C) = its position 0,
            sentence (N, C) = its mean over the real tokens, of unit length (sentences.mean_pool: the
            sentence vector all-MiniLM-L6-v2 was trained to give, compared by cosine), input_ids and
            attention_mask (N, T); padded positions hold what the model computes there (as transformers),
            the mask says which they are. The texts go in the file's metadata, as JSON.
Each refuses a checkpoint of another model type, or a BERT without the head it needs, naming both; each
runs under minilm.nn.inference(): in eval mode, no backward cache kept.
"""

import json

import numpy as np
import safetensors.numpy

from minilm.atomic import refuse_to_replace, replace_file
from minilm.backend import BACKENDS, asarray, to_numpy, use_backend
from minilm.cli import bounded
from minilm.data.char_tokenizer import CharTokenizer
from minilm.data.tasks import Task
from minilm.files.loader import load_model
from minilm.nn import inference, softmax
from minilm.training.objectives import Classification
from minilm.training.sentences import encoder_of, mean_pool

HEADS = {"cls": "a classification head (a checkpoint of minilm finetune)",
         "mlm": "a masked-LM head (a checkpoint of minilm train --model bert, or an imported BertForMaskedLM)"}


def _common(parser, what):
    parser.add_argument("--ckpt", required=True, metavar="DIR",
                        help="a BERT checkpoint folder, or a training output folder (its best/, else its latest/)")
    parser.add_argument("texts", nargs="+", metavar="TEXT", help=what)
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="array library (default: the active one, MINILM_BACKEND or numpy)")


def _load(args, user, head=None):
    """(model in eval mode, tokenizer, checkpoint); a GPT or a BERT without ``head`` refused by name."""
    if args.backend is not None:
        use_backend(args.backend)
    model, tokenizer, ckpt = load_model(args.ckpt, expect=("bert",), user=user)
    if head is not None and model.config.head != head:
        raise ValueError(f"{user} needs a BERT with {HEADS[head]}, but {ckpt.path} holds a BERT with head "
                         f"{model.config.head!r}")
    return model.eval(), tokenizer, ckpt


def _sentences(model, tokenizer, texts, pairs=None):
    """(ids, token_type_ids, attention_mask) (N, T) of [CLS] text [SEP] (pair [SEP]), as fine-tuning makes them."""
    objective = Classification().for_tokenizer(tokenizer)
    examples = objective.encode(Task("input", ["-"], list(texts), [0] * len(texts), pairs), model.config.block_size)
    inputs, _ = next(objective.every_batch(examples, len(texts), model.config.block_size))
    return inputs


def add_classify_arguments(parser):
    """Classify texts with a fine-tuned BERT: each text's label and the probability of every label."""
    _common(parser, "the texts to classify")
    parser.add_argument("--pair", action="append", default=None, metavar="TEXT",
                        help="the second text (text_pair) of a pair task: once for every TEXT, or once per TEXT")


def run_classify(args):
    model, tokenizer, _ = _load(args, "minilm classify", head="cls")
    pairs = args.pair
    if pairs is not None and len(pairs) not in (1, len(args.texts)):
        raise ValueError(f"--pair is given {len(pairs)} times for {len(args.texts)} texts: give it once, or once "
                         f"per text")
    pairs = None if pairs is None else pairs * len(args.texts) if len(pairs) == 1 else pairs
    names = model.config.label_names or [f"LABEL_{k}" for k in range(model.config.num_labels)]
    with inference():
        probs = to_numpy(softmax(model(*_sentences(model, tokenizer, args.texts, pairs))))  # (N, K)
    width = max(len(name) for name in names)
    for text, p in zip(args.texts, probs):
        print(f"{text!r} -> {names[int(np.argmax(p))]}")
        print("\n".join(f"  {name:<{width}}  {q:.4f}" for name, q in zip(names, p)))
    return 0


def add_fill_mask_arguments(parser):
    """Fill each [MASK] of a text with a BERT's masked-LM head: its top-k tokens and their probabilities."""
    _common(parser, 'texts with one or more [MASK] ("to be or [MASK] to be")')
    parser.add_argument("--top-k", type=bounded(int, 1), default=5, metavar="K", help="tokens shown per [MASK]")


def run_fill_mask(args):
    model, tokenizer, _ = _load(args, "minilm fill-mask", head="mlm")
    raw = isinstance(tokenizer, CharTokenizer)  # minilm's masked LM: raw windows; WordPiece: BERT's [CLS] ... [SEP]
    for text in args.texts:
        ids = tokenizer.encode(text) if raw else tokenizer.encode(text, add_special_tokens=True)  # (T,)
        where = np.flatnonzero(ids == tokenizer.mask_id)  # (M,)
        if where.size == 0:
            raise ValueError(f"no [MASK] in {text!r}: write [MASK] where a token should be filled in")
        if ids.size > model.config.block_size:
            raise ValueError(f"{text!r} is {ids.size} tokens, more than the model's block_size "
                             f"{model.config.block_size}")
        with inference():
            probs = to_numpy(softmax(model(asarray(ids[None, :]))[0, asarray(where)]))  # (M, V)
        top = np.argsort(-probs, axis=-1, kind="stable")[:, :min(args.top_k, probs.shape[-1])]  # (M, k)
        filled = ids.copy()
        filled[where] = top[:, 0]
        kept = filled if raw else filled[1:-1]  # without the [CLS] and [SEP] it added
        print(f"{text!r} -> {tokenizer.decode(kept)!r}")
        for m, (position, best) in enumerate(zip(where, top)):
            print(f"  [MASK] {m + 1} of {where.size} (token {position}):")
            print("\n".join(f"    {tokenizer.decode([int(i)])!r:<12} {probs[m, i]:.4f}" for i in best))
    return 0


def add_embed_arguments(parser):
    """Write a BERT's last hidden states, [CLS] vectors and sentence vectors of texts to a safetensors file."""
    _common(parser, "the texts to embed")
    parser.add_argument("--out", required=True, metavar="FILE.safetensors", help="the file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file at --out")


def run_embed(args):
    refuse_to_replace(args.out, args.overwrite, what="embeddings file")  # before any work
    if not str(args.out).endswith(".safetensors"):
        raise ValueError(f"--out {args.out}: the embeddings are written as safetensors; name a .safetensors file")
    model, tokenizer, ckpt = _load(args, "minilm embed")
    encoder = encoder_of(model).eval()  # the same weights, the head dropped
    ids, types, mask = _sentences(model, tokenizer, args.texts)
    with inference():
        hidden = to_numpy(encoder(ids, types, mask))  # (N, T, C)
    sentence = mean_pool(hidden, mask).astype(hidden.dtype)  # (N, C)
    arrays = {"last_hidden_state": hidden, "cls": np.ascontiguousarray(hidden[:, 0]), "sentence": sentence,
              "input_ids": to_numpy(ids), "attention_mask": to_numpy(mask)}
    metadata = {"texts": json.dumps(args.texts), "checkpoint": str(ckpt.path)}
    replace_file(args.out, safetensors.numpy.save(arrays, metadata=metadata))
    print(f"wrote last_hidden_state {hidden.shape}, cls and sentence {sentence.shape} of {len(args.texts)} texts "
          f"to {args.out}")
    return 0

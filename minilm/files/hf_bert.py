"""BERT weights in the Hugging Face layout: a transformers BERT folder in, a minilm BERT out, and back.

folder:   config.json, model.safetensors (hf_folder reads them, sharded or not, and refuses pickled .bin files),
          vocab.txt and tokenizer_config.json. config.json's "architectures" names the head: BertForMaskedLM
          -> "mlm" (BertForPreTraining too, read as its masked-LM half), BertForSequenceClassification -> "cls"
          (num_labels = len(id2label), its names label_names), BertModel -> "none" (hf_bert_config.py reads and
          writes config.json). A head model's encoder names start "bert.", a bare BertModel's do not; either is
          read as either.
names:    name_map(n_layer, head) is the whole correspondence. Every BERT matrix is a torch Linear (out, in),
          as minilm's, so nothing is transposed (GPT-2's Conv1D is); the one reshaping is attention:
          transformers keeps query, key and value as three (C, C) Linears, minilm one in_proj_weight (3C, C)
          whose row blocks are q, k, v in that order (torch.nn.MultiheadAttention's), biases likewise (3C,).
tied:     cls.predictions.decoder.weight is word_embeddings and decoder.bias is cls.predictions.bias; files
          usually leave both out, and a copy that is there must be equal. minilm's mlm.decoder.weight is wte.
skipped:  what the model built has no place for: the next-sentence head cls.seq_relationship.* (Google's
          uploads), the pooler under "mlm", other heads' tensors, old files' position_ids buffer. Any other
          tensor is an error, as is a missing one. Old files' LayerNorm.gamma / .beta read as weight / bias.
head=:    load_bert(head=...) builds another head than the folder's (to fine-tune an encoder): head tensors
          the folder lacks keep BERT's init from rng, as from_pretrained does; the encoder must be complete.
refusals: config_from_hf (hf_bert_config.py) names the field and value minilm's BERT cannot build.
ref:      transformers' models/bert/modeling_bert.py and configuration_bert.py; Devlin et al. 2019 (BERT)
"""

import json
from pathlib import Path

import numpy as np
import safetensors.numpy

from minilm.backend import to_numpy
from minilm.data.wordpiece import WordPieceTokenizer
from minilm.files.hf_folder import CONFIG, WEIGHTS, read_folder, read_json, write_export
from minilm.files.hf_bert_config import (ARCHITECTURES, EXPORTED_AS, MUST_BE, SIZES, config_from_hf,  # noqa: F401
                                          folder_head, hf_config)
from minilm.models.bert import BERT

PREFIX = "bert."  # the encoder's names inside a model with a head
VOCAB, TOKENIZER_CONFIG = "vocab.txt", "tokenizer_config.json"
TOKENIZER_OPTIONS = ("do_lower_case", "strip_accents", "tokenize_chinese_chars")

# The whole name map: (Hugging Face names, minilm name); the minilm tensor is the Hugging Face ones stacked
# along rows (axis 0). Encoder rows get "encoder.layer.N." / "h.N." and, under a head, the "bert." prefix.
EMBEDDINGS = (
    (("embeddings.word_embeddings.weight",), "embeddings.wte.weight"),  # (V, C)
    (("embeddings.position_embeddings.weight",), "embeddings.wpe.weight"),  # (T_max, C)
    (("embeddings.token_type_embeddings.weight",), "embeddings.wtt.weight"),  # (type_vocab_size, C)
    (("embeddings.LayerNorm.weight",), "embeddings.ln.weight"),
    (("embeddings.LayerNorm.bias",), "embeddings.ln.bias"),
)
QKV = ("query", "key", "value")
BLOCK = (
    (tuple(f"attention.self.{p}.weight" for p in QKV), "attn.in_proj_weight"),  # 3 x (C, C) -> (3C, C)
    (tuple(f"attention.self.{p}.bias" for p in QKV), "attn.in_proj_bias"),  # 3 x (C,) -> (3C,)
    (("attention.output.dense.weight",), "attn.out_proj.weight"),  # (C, C)
    (("attention.output.dense.bias",), "attn.out_proj.bias"),
    (("attention.output.LayerNorm.weight",), "ln_1.weight"),  # post-LN: after attention's residual sum
    (("attention.output.LayerNorm.bias",), "ln_1.bias"),
    (("intermediate.dense.weight",), "mlp.c_fc.weight"),  # (d_ff, C)
    (("intermediate.dense.bias",), "mlp.c_fc.bias"),
    (("output.dense.weight",), "mlp.c_proj.weight"),  # (C, d_ff)
    (("output.dense.bias",), "mlp.c_proj.bias"),
    (("output.LayerNorm.weight",), "ln_2.weight"),  # after the feed-forward's residual sum
    (("output.LayerNorm.bias",), "ln_2.bias"),
)
POOLER = ((("pooler.dense.weight",), "pooler.weight"), (("pooler.dense.bias",), "pooler.bias"))  # "cls", "none"
HEADS = {  # each head's own tensors, outside the "bert." prefix
    "mlm": ((("cls.predictions.transform.dense.weight",), "mlm.dense.weight"),
            (("cls.predictions.transform.dense.bias",), "mlm.dense.bias"),
            (("cls.predictions.transform.LayerNorm.weight",), "mlm.ln.weight"),
            (("cls.predictions.transform.LayerNorm.bias",), "mlm.ln.bias"),
            (("cls.predictions.bias",), "mlm.decoder.bias")),  # the decoder's weight is wte: tied, no row
    "cls": ((("classifier.weight",), "classifier.weight"), (("classifier.bias",), "classifier.bias")),
    "none": (),
}
HEAD_PARAMS = ("pooler.", "mlm.", "classifier.")  # minilm names load_bert(head=...) may leave at their init
TIED = (("cls.predictions.decoder.weight", "embeddings.wte.weight"),  # (file name, the minilm tensor it equals)
        ("cls.predictions.decoder.bias", "mlm.decoder.bias"))
ALWAYS_SKIPPED = ("embeddings.position_ids", "embeddings.token_type_ids", "cls.seq_relationship.")
SKIPPED = {"mlm": ("pooler.",), "cls": ("cls.predictions.",), "none": ("cls.predictions.", "classifier.")}



def name_map(n_layer, head):
    """[(Hugging Face names, minilm name)] for every weight of an ``n_layer``-block BERT with ``head``, named as
    that head's transformers class saves them; several names (q, k, v) stack along rows into one minilm array."""
    rows = list(EMBEDDINGS)
    for i in range(n_layer):
        rows += [(tuple(f"encoder.layer.{i}.{t}" for t in theirs), f"h.{i}.{ours}") for theirs, ours in BLOCK]
    rows += POOLER if head != "mlm" else ()
    prefix = "" if head == "none" else PREFIX
    return [(tuple(prefix + t for t in theirs), ours) for theirs, ours in rows] + list(HEADS[head])


def hf_state(model):
    """Hugging Face name -> C-contiguous NumPy array; in_proj split back into q, k, v; the tied decoder left out."""
    ours = {name: to_numpy(array) for name, array in model.state_dict().items()}
    state = {}
    for theirs, name in name_map(model.config.n_layer, model.config.head):
        parts = np.split(ours[name], len(theirs))  # row blocks q, k, v (or the one array whole)
        state.update({t: np.ascontiguousarray(part) for t, part in zip(theirs, parts)})
    return state


def _canonical(name, head):
    """A file's tensor name as name_map spells it for ``head``: "bert." added or dropped, gamma/beta renamed."""
    if ".LayerNorm." in name and name.endswith((".gamma", ".beta")):  # TF-era names, as from_pretrained reads
        name = name[:-6] + ".weight" if name.endswith(".gamma") else name[:-5] + ".bias"
    body = name.removeprefix(PREFIX)
    if body.startswith(("embeddings.", "encoder.", "pooler.")):
        return body if head == "none" else PREFIX + body
    return name


def minilm_state(arrays, model, where, fresh_head=False):
    """(minilm name -> array, [minilm names left at their init]) from Hugging Face name -> array, checked against
    ``model``; errors name ``where``. fresh_head: the head's tensors may be missing (load_bert's head=)."""
    head = model.config.head
    arrays = {_canonical(name, head): array for name, array in arrays.items()}
    shapes = {name: tuple(array.shape) for name, array in model.state_dict().items()}
    state, fresh, problems = {}, [], []
    for theirs, ours in name_map(model.config.n_layer, head):
        if fresh_head and ours.startswith(HEAD_PARAMS) and not any(t in arrays for t in theirs):
            fresh.append(ours)
            continue
        got = {t: arrays.pop(t) for t in theirs if t in arrays}
        wanted = (shapes[ours][0] // len(theirs), *shapes[ours][1:])  # q, k, v: a third of the rows each
        bad = [f"tensor {t} has shape {tuple(got[t].shape)}, expected {wanted}" if t in got else f"missing tensor {t}"
               for t in theirs if t not in got or tuple(got[t].shape) != wanted]
        problems += bad
        if not bad:
            state[ours] = np.concatenate(list(got.values()))  # (3C, C) from q, k, v; a copy of a lone one
    for theirs, ours in TIED:
        array = arrays.pop(theirs, None)
        if head == "mlm" and array is not None and ours in state and not np.array_equal(array, state[ours]):
            problems.append(f"{theirs} differs from the tensor it is tied to, but BERT ties them")
    skipped = ALWAYS_SKIPPED + SKIPPED[head]
    problems += [f"unexpected tensor {name}" for name in arrays if not name.removeprefix(PREFIX).startswith(skipped)]
    if problems:
        raise ValueError(f"{where} does not hold this BERT's weights: " + "; ".join(problems))
    if head == "mlm":
        state["mlm.decoder.weight"] = state["embeddings.wte.weight"]  # the tied decoder: one Parameter, two names
    return state, fresh


def load_bert(path, dtype="float32", *, rng=None, dropout=None, head=None, num_labels=None):
    """The BERT held by the Hugging Face BERT folder ``path``, in ``dtype``, in eval mode (as from_pretrained).

    rng seeds the initialisation and dropout masks as ``BERT(config, rng)`` does; dropout None keeps the
    folder's, a float in [0, 1) replaces it. head ("mlm" | "cls" | "none") and num_labels None take the
    folder's; another head keeps BERT's initialisation for head tensors the folder lacks (module docstring).
    """
    hf, arrays = read_folder(path)
    cfg = config_from_hf(hf, head=head, num_labels=num_labels, dropout=dropout)
    model = BERT(cfg, rng=rng).to(dtype)  # the random weights drawn here are overwritten just below
    state, fresh = minilm_state(arrays, model, Path(path), fresh_head=cfg.head != folder_head(hf, strict=False))
    model.load_state_dict(state, strict=not fresh)
    return model.eval()


def save_bert(model, path, tokenizer=None, overwrite=False):
    """Write ``model`` (and a WordPiece ``tokenizer`` as vocab.txt + tokenizer_config.json) as a Hugging Face
    BERT folder that its transformers class (config.json's architectures) opens with from_pretrained(path).

    ``path``: absent, an empty folder, or with ``overwrite`` an earlier export (hf_folder.check_export_path);
    written atomically, a temp folder renamed into place.
    """
    files = {CONFIG: (json.dumps(hf_config(model), indent=2) + "\n").encode(),
             WEIGHTS: safetensors.numpy.save(hf_state(model), metadata={"format": "pt"})}
    if tokenizer is not None:
        if not isinstance(tokenizer, WordPieceTokenizer) or tokenizer.vocab_size > model.config.vocab_size:
            raise ValueError(f"a BERT folder holds a WordPiece tokenizer of at most vocab_size "
                             f"{model.config.vocab_size} tokens, got {tokenizer!r}")
        settings = {name: getattr(tokenizer, name) for name in TOKENIZER_OPTIONS}
        settings = {"tokenizer_class": "BertTokenizer", **settings, "model_max_length": model.config.block_size}
        files[TOKENIZER_CONFIG] = (json.dumps(settings, indent=2) + "\n").encode()
    extra = None if tokenizer is None else (lambda tmp: tokenizer.save_vocab(tmp / VOCAB))
    return write_export(path, files, overwrite, "Hugging Face BERT folder", extra)


def bert_tokenizer(folder):
    """BERT's WordPiece tokenizer from the folder's vocab.txt, with tokenizer_config.json's casing options when
    it has them (else BertTokenizer's defaults); else from a fast tokenizer's tokenizer.json (its WordPiece
    vocabulary and BertNormalizer's options); None when the folder has neither."""
    folder = Path(folder)
    if not (folder / VOCAB).is_file():
        return _from_tokenizer_json(folder / "tokenizer.json") if (folder / "tokenizer.json").is_file() else None
    options = {}
    if (folder / TOKENIZER_CONFIG).is_file():
        settings = read_json(folder / TOKENIZER_CONFIG)
        options = {name: settings[name] for name in TOKENIZER_OPTIONS if name in settings}
    try:
        return WordPieceTokenizer.from_vocab_file(folder / VOCAB, **options)
    except TypeError as err:  # do_lower_case: "yes" and the like
        raise ValueError(f"{folder / TOKENIZER_CONFIG}: {err}") from None



def _from_tokenizer_json(path):
    """The WordPieceTokenizer a Hugging Face tokenizer.json describes; ValueError naming the field and value that
    BERT's WordPiece (minilm.data.wordpiece) cannot express."""
    spec = read_json(path)
    model, normalizer = spec.get("model") or {}, spec.get("normalizer") or {}
    expected = [(("model", "type"), model.get("type"), "WordPiece"),
                (("model", "unk_token"), model.get("unk_token"), "[UNK]"),
                (("model", "continuing_subword_prefix"), model.get("continuing_subword_prefix"), "##"),
                (("normalizer", "type"), normalizer.get("type"), "BertNormalizer"),
                (("pre_tokenizer", "type"), (spec.get("pre_tokenizer") or {}).get("type"), "BertPreTokenizer")]
    for (part, field), value, wanted in expected:
        if value != wanted:
            raise ValueError(f"{path}: {part}.{field} is {value!r}; minilm reads BERT's WordPiece ({wanted!r})")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or sorted(vocab.values()) != list(range(len(vocab))):
        raise ValueError(f"{path}: model.vocab must map every token to the ids 0 … n-1, once each")
    tokens = sorted(vocab, key=vocab.get)  # by id
    return WordPieceTokenizer(tokens, do_lower_case=bool(normalizer.get("lowercase", True)),
                              strip_accents=normalizer.get("strip_accents"),
                              tokenize_chinese_chars=bool(normalizer.get("handle_chinese_chars", True)))

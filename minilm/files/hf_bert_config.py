"""A Hugging Face BERT config.json and minilm's BERTConfig, each read from the other (hf_bert.py holds the weights).

head:     config.json's "architectures" names it: BertForMaskedLM -> "mlm" (BertForPreTraining too, read as its
          masked-LM half), BertForSequenceClassification -> "cls", BertModel -> "none".
labels:   transformers counts a classifier's classes in id2label ({"0": name, ...}; num_labels is an older
          spelling). Its default names LABEL_0, LABEL_1 ... mean "unnamed" (label_names None) both ways; any
          other names are a fine-tuned classifier's label_names, written back as id2label and label2id.
refusals: config_from_hf names the field and value minilm's BERT cannot build: an activation but the erf GELU,
          relative positions, a decoder or cross-attention, an untied MLM decoder, dropouts that differ (minilm
          has one p; load_bert(dropout=p) sets them all), a regression or multi-label problem_type.
ref:      transformers' models/bert/configuration_bert.py and PretrainedConfig (id2label)
"""

import numbers

from minilm.models.bert import BERTConfig
from minilm.nn.normalization import LayerNorm

ARCHITECTURES = {"BertForMaskedLM": "mlm", "BertForPreTraining": "mlm", "BertForSequenceClassification": "cls",
                 "BertModel": "none"}
EXPORTED_AS = {"mlm": "BertForMaskedLM", "cls": "BertForSequenceClassification", "none": "BertModel"}

# config.json field -> (values minilm can build, BertConfig's default, why the others cannot be)
MUST_BE = {
    "model_type": (("bert",), "bert", "not a BERT config"),
    "hidden_act": (("gelu",), "gelu", "minilm's BERT uses the exact (erf) GELU, transformers' \"gelu\""),
    "position_embedding_type": (("absolute",), "absolute", "minilm's BERT learns absolute positions only"),
    "is_decoder": ((False,), False, "minilm's BERT is an encoder, without a causal mask"),
    "add_cross_attention": ((False,), False, "minilm's BERT has no cross-attention"),
    "problem_type": ((None, "single_label_classification"), None,
                     "minilm trains a classifier with single-label cross-entropy only"),
}
SIZES = {"vocab_size": "vocab_size", "max_position_embeddings": "block_size", "num_hidden_layers": "n_layer",
         "num_attention_heads": "n_head", "hidden_size": "n_embd", "intermediate_size": "d_ff",
         "type_vocab_size": "type_vocab_size", "pad_token_id": "pad_token_id"}  # config.json -> BERTConfig


def folder_head(hf, strict=True):
    """The head config.json's "architectures" names; when minilm has none such, a ValueError naming the field
    (strict) or None."""
    names = hf.get("architectures")
    if isinstance(names, list) and len(names) == 1 and names[0] in ARCHITECTURES:
        return ARCHITECTURES[names[0]]
    if not strict:
        return None
    raise ValueError(f"config.json architectures={names!r} cannot be imported: minilm's BERT is one of "
                     f"{', '.join(ARCHITECTURES)} (or pass head= to choose the head)")


def _integer(field, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"config.json {field} must be an integer >= {low}, got {value!r}")
    return int(value)


def config_from_hf(hf, head=None, num_labels=None, dropout=None):
    """The BERTConfig of a config.json dict; ValueError naming a field minilm cannot build.

    head, num_labels: None takes them from the config (architectures, id2label); dropout: None takes the
    config's, which must then agree, a float replaces them all.
    """
    for field, (allowed, default, why) in MUST_BE.items():
        value = hf.get(field, default)
        if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
            raise ValueError(f"config.json {field}={value!r} cannot be imported: {why}")
    head = folder_head(hf) if head is None else head
    if head == "mlm" and hf.get("tie_word_embeddings", True) is not True:
        raise ValueError(f"config.json tie_word_embeddings={hf['tie_word_embeddings']!r} cannot be imported: "
                         "minilm's MLM decoder is the word embedding matrix itself")
    sizes = {ours: _integer(field, hf.get(field), 0 if field == "pad_token_id" else 1)
             for field, ours in SIZES.items()}
    if sizes["n_embd"] % sizes["n_head"]:
        raise ValueError(f"config.json hidden_size={sizes['n_embd']} is not divisible by "
                         f"num_attention_heads={sizes['n_head']}")
    if sizes["pad_token_id"] >= sizes["vocab_size"]:
        raise ValueError(f"config.json pad_token_id={sizes['pad_token_id']} is out of range for "
                         f"vocab_size={sizes['vocab_size']}")
    if sizes["d_ff"] == 4 * sizes["n_embd"]:
        sizes["d_ff"] = 0  # BERTConfig's way of saying the usual 4C
    probs = {field: hf.get(field, 0.1) for field in ("hidden_dropout_prob", "attention_probs_dropout_prob")}
    if hf.get("classifier_dropout") is not None:  # None: the classifier uses hidden_dropout_prob
        probs["classifier_dropout"] = hf["classifier_dropout"]
    for field, p in probs.items():
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
            raise ValueError(f"config.json {field} must be a probability in [0, 1), got {p!r}")
    if dropout is None:
        for field, p in probs.items():
            if p != probs["hidden_dropout_prob"] and (head == "cls" or field != "classifier_dropout"):
                raise ValueError(f"config.json {field}={p!r} cannot be imported: it differs from hidden_dropout_prob="
                                 f"{probs['hidden_dropout_prob']!r}, and minilm's BERT has one dropout probability "
                                 "(pass dropout= to set one for all)")
        dropout = float(probs["hidden_dropout_prob"])
    eps = hf.get("layer_norm_eps", 1e-12)
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:
        raise ValueError(f"config.json layer_norm_eps must be a positive number, got {eps!r}")
    label_names = None
    if num_labels is None:  # transformers counts the labels in id2label; num_labels is an older spelling
        labels = hf.get("id2label")
        num_labels = len(labels) if isinstance(labels, dict) and labels else hf.get("num_labels", 2)
        num_labels = _integer("num_labels", num_labels, 1)
        label_names = names_from_id2label(labels, num_labels) if head == "cls" else None  # others: unused
    return BERTConfig(**sizes, dropout=dropout, layer_norm_eps=float(eps), head=head, num_labels=num_labels,
                      label_names=label_names)


def names_from_id2label(id2label, num_labels):
    """label_names from config.json's id2label: None for transformers' defaults (LABEL_k) or no id2label;
    a ValueError naming the field when it is not one name per class 0 .. num_labels - 1."""
    if id2label is None:
        return None
    keys = [str(k) for k in range(num_labels)]
    if not isinstance(id2label, dict) or sorted(map(str, id2label)) != sorted(keys):
        raise ValueError(f"config.json id2label must map 0 .. {num_labels - 1} to names, got {id2label!r}")
    names = [id2label[k] if k in id2label else id2label[int(k)] for k in keys]
    if not all(isinstance(name, str) and name for name in names) or len(set(names)) != len(names):
        raise ValueError(f"config.json id2label must name each class once, got {id2label!r}")
    return None if names == [f"LABEL_{k}" for k in range(num_labels)] else names


def hf_config(model):
    """The config.json dict of ``model`` for transformers' BertForMaskedLM / ...SequenceClassification / BertModel."""
    cfg = model.config
    eps = sorted({m.eps for _, m in model.named_modules() if isinstance(m, LayerNorm)})
    if eps != [cfg.layer_norm_eps]:  # an eps set by hand on a module, which the config would not carry
        raise ValueError(f"BERT has one layer_norm_eps, the config's {cfg.layer_norm_eps}, "
                         f"but this model's LayerNorms use {eps}")
    config = {
        "architectures": [EXPORTED_AS[cfg.head]], "model_type": "bert",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.n_embd, "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head, "intermediate_size": cfg.ff_width, "hidden_act": "gelu",
        "hidden_dropout_prob": cfg.dropout, "attention_probs_dropout_prob": cfg.dropout, "classifier_dropout": None,
        "max_position_embeddings": cfg.block_size, "type_vocab_size": cfg.type_vocab_size,
        "initializer_range": 0.02, "layer_norm_eps": float(cfg.layer_norm_eps), "pad_token_id": cfg.pad_token_id,
        "position_embedding_type": "absolute", "is_decoder": False, "add_cross_attention": False,
        "tie_word_embeddings": True, "use_cache": True, "dtype": str(model.embeddings.wte.weight.data.dtype),
    }
    if cfg.head == "cls":  # transformers counts the labels from id2label; LABEL_k: its names for unnamed ones
        names = cfg.label_names or [f"LABEL_{k}" for k in range(cfg.num_labels)]
        config["id2label"] = {str(k): name for k, name in enumerate(names)}
        config["label2id"] = {name: k for k, name in enumerate(names)}
    return config

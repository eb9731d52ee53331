"""BERT: a bidirectional transformer encoder, with a masked-language-model head or a classification head.

forward:  x₀ = Dropout(LN(wte[ids] + wpe[:T] + wtt[token_type_ids]))   minilm.nn.Embeddings (segments, then LN)
          x_l = Block_l(x_{l-1}; key_padding_mask)   l = 1 … L, post-LN as the original transformer:
                u = LN₁(x + Drop(Attn(x))),  x_l = LN₂(u + FFN(u)), FFN with the exact (erf) GELU;
                no causal mask: every position attends to every non-padding position, both sides
          head "none": h = x_L                                          (B, T, C)  BertModel's last hidden state
          head "mlm":  logits = LN_m(GELU(x_L W_tᵀ + b_t)) wteᵀ + b     (B, T, V)  the decoder is tied to wte
          head "cls":  p = tanh(x_L[:, 0] W_pᵀ + b_p)                   (B, C)     the pooler reads [CLS]
                       logits = Dropout(p) W_cᵀ + b_c                   (B, K)     K = num_labels
backward: the list read bottom to top; the tied wte gets the sum of its embedding and decoder gradients;
          the pooler reads position 0 only, so dx_L is zero except at [:, 0].
masks:    attention_mask (B, T) as transformers: 1 = a real token, 0 = padding; padded keys get no weight.
          Padded *queries* still compute (garbage) outputs, as in transformers; a loss ignores them.
shapes:   ids, token_type_ids, attention_mask (B, T); x (B, T, C)
init:     BERT's: every weight matrix and embedding ~ N(0, 0.02²), biases 0, LayerNorm (1, 0), the
          [PAD] row of wte 0 (padding_idx: the lookup gives it no gradient; with the MLM head the tied
          decoder still does, exactly as in transformers' BertForMaskedLM).
names:    embeddings.{wte, wpe, wtt, ln}, h.N.{attn, ln_1, mlp.c_fc, mlp.c_proj, ln_2} (minilm's block),
          mlm.{dense, ln, decoder} (decoder.weight is wte's), pooler, classifier. Hugging Face's names
          (bert.encoder.layer.N.attention.self.query ...) are reached through minilm.files's BERT name map.
ref:      Devlin et al. 2019, "BERT", §3 and appendix A; transformers' modeling_bert
"""

import numbers
from dataclasses import dataclass

import numpy as np

from minilm.backend import xp
from minilm.models.registry import config_from_fields
from minilm.nn.activation import GELU, Tanh
from minilm.nn.dropout import Dropout
from minilm.nn.embeddings import Embeddings
from minilm.nn.linear import Linear
from minilm.nn.module import Module, host_rng, init_normal
from minilm.nn.normalization import LayerNorm
from minilm.nn.transformer import TransformerBlock

HEADS = ("none", "mlm", "cls")


@dataclass
class BERTConfig:
    vocab_size: int = 65  # tokens, the special ones ([PAD] [UNK] [CLS] [SEP] [MASK]) included
    block_size: int = 64  # longest sequence: rows of the position table (max_position_embeddings)
    n_layer: int = 4  # encoder blocks
    n_head: int = 4  # attention heads per block; n_embd must divide by it
    n_embd: int = 128  # channels C (hidden_size)
    d_ff: int = 0  # the feed-forward's width (intermediate_size); 0: 4 n_embd
    type_vocab_size: int = 2  # segments (token types): sentence A and B
    dropout: float = 0.1  # drop probability on embeddings, attention weights, residual branches and the classifier
    layer_norm_eps: float = 1e-12  # BERT's (transformers' default), not torch's 1e-5
    pad_token_id: int = 0  # the [PAD] id: its embedding row is 0 and never trained
    head: str = "mlm"  # "mlm" (BertForMaskedLM), "cls" (BertForSequenceClassification) or "none" (BertModel)
    num_labels: int = 2  # classes of the "cls" head
    label_names: list = None  # class k's name is label_names[k] (a fine-tuned classifier's); None: unnamed

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "type_vocab_size", "num_labels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, value in (("d_ff", self.d_ff), ("pad_token_id", self.pad_token_id)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if self.pad_token_id >= self.vocab_size:
            raise ValueError(f"pad_token_id {self.pad_token_id} out of range for vocab_size {self.vocab_size}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, numbers.Real) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        names = self.label_names
        if names is not None:
            if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n for n in names):
                raise ValueError(f"label_names must be a list of non-empty strings, got {names!r}")
            if len(set(names)) != len(names) or len(names) != self.num_labels:
                raise ValueError(f"label_names must be num_labels={self.num_labels} distinct names, got {names!r}")
            self.label_names = list(names)
        eps = self.layer_norm_eps
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:
            raise ValueError(f"layer_norm_eps must be positive, got {eps!r}")

    @property
    def ff_width(self):
        return self.d_ff or 4 * self.n_embd

    @classmethod
    def from_checkpoint(cls, fields, folder):
        """The config a checkpoint's config.json holds as its "model" section; ValueError naming the file."""
        return config_from_fields(cls, fields, folder, "BERT")


def block_settings(cfg):
    """BERT's encoder block: bidirectional (no causal mask), post-LN, the exact GELU, biases everywhere."""
    return dict(d_model=cfg.n_embd, n_heads=cfg.n_head, d_ff=cfg.ff_width, norm="post", causal=False,
                cross_attention=False, activation="gelu_exact", dropout=cfg.dropout, bias=True,
                layer_norm_eps=float(cfg.layer_norm_eps))


class MLMHead(Module):
    """logits = LN(GELU(x W_tᵀ + b_t)) wteᵀ + b: BERT's transform, then a decoder tied to the word embeddings."""

    def __init__(self, wte, eps, rng=None):
        V, C = wte.weight.shape
        self.dense = Linear(C, C, rng=rng)
        self.act = GELU("none")
        self.ln = LayerNorm(C, eps=eps)
        self.decoder = Linear(C, V, rng=rng)
        self.decoder.weight = wte.weight  # tied: one (V, C) matrix, its gradient the sum of both uses

    def forward(self, x):
        return self.decoder(self.ln(self.act(self.dense(x))))  # (B, T, V)

    def backward(self, dlogits):
        return self.dense.backward(self.act.backward(self.ln.backward(self.decoder.backward(dlogits))))


class BERT(Module):
    def __init__(self, config, rng=None):
        rng = host_rng(rng)
        self.config = cfg = config
        self.embeddings = Embeddings(cfg.vocab_size, cfg.n_embd, cfg.block_size, type_vocab_size=cfg.type_vocab_size,
                                     layer_norm=True, layer_norm_eps=float(cfg.layer_norm_eps), dropout=cfg.dropout,
                                     padding_idx=cfg.pad_token_id, rng=rng)
        self.h = [TransformerBlock(**block_settings(cfg), rng=rng) for _ in range(cfg.n_layer)]
        self.mlm = MLMHead(self.embeddings.wte, float(cfg.layer_norm_eps), rng=rng) if cfg.head == "mlm" else None
        # BertModel has a pooler (for its second output); BertForMaskedLM drops it
        self.pooler = Linear(cfg.n_embd, cfg.n_embd, rng=rng) if cfg.head != "mlm" else None
        self.pooler_act = Tanh() if self.pooler is not None else None
        self.classifier_dropout = Dropout(cfg.dropout, rng=rng.integers(2**63)) if cfg.head == "cls" else None
        self.classifier = Linear(cfg.n_embd, cfg.num_labels, rng=rng) if cfg.head == "cls" else None
        self._init_bert(rng)

    def _init_bert(self, rng):
        for name, param in self.named_parameters():
            if param.data.ndim == 2:  # every weight matrix and embedding table
                param.data = init_normal(rng, param.shape, 0.02)
            elif name.endswith("bias"):
                param.data = xp.zeros_like(param.data)
        self.embeddings.wte.weight.data[self.config.pad_token_id] = 0

    def forward(self, ids, token_type_ids=None, attention_mask=None):
        """(B, T, C) hidden states, (B, T, V) MLM logits or (B, K) class logits, as config.head says."""
        _check_ids(ids, "ids")
        B, T = ids.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        key_padding_mask = None
        if attention_mask is not None:
            attention_mask = xp.asarray(attention_mask)
            if attention_mask.shape != ids.shape:
                raise ValueError(f"attention_mask has shape {attention_mask.shape}, ids {ids.shape}")
            key_padding_mask = attention_mask == 0  # (B, T) True = padding, minilm's convention
        if token_type_ids is not None:
            token_type_ids = xp.asarray(token_type_ids)
            _check_ids(token_type_ids, "token_type_ids")
            if token_type_ids.shape != ids.shape:  # a (1, T) would broadcast forward, then break wtt's backward
                raise ValueError(f"token_type_ids has shape {token_type_ids.shape}, ids {ids.shape}")
        x = self.embeddings(ids, token_type_ids)  # (B, T, C)
        for block in self.h:
            x = block(x, key_padding_mask=key_padding_mask)  # (B, T, C)
        self._shape = x.shape
        if self.config.head == "mlm":
            return self.mlm(x)  # (B, T, V)
        if self.config.head == "none":
            return x  # (B, T, C)
        pooled = self.pooler_act(self.pooler(x[:, 0]))  # (B, C): the [CLS] position
        return self.classifier(self.classifier_dropout(pooled))  # (B, K)

    def backward(self, dout):
        if self.config.head == "mlm":
            dx = self.mlm.backward(dout)  # (B, T, C)
        elif self.config.head == "none":
            dx = dout
        else:
            dpooled = self.pooler.backward(self.pooler_act.backward(
                self.classifier_dropout.backward(self.classifier.backward(dout))))  # (B, C)
            dx = xp.zeros(self._shape, dtype=dpooled.dtype)  # only [CLS] reached the head
            dx[:, 0] = dpooled
        for block in reversed(self.h):
            dx = block.backward(dx)
        return self.embeddings.backward(dx)  # None: token ids have no gradient


def _check_ids(ids, name):
    if not np.issubdtype(ids.dtype, np.integer) or ids.ndim != 2:
        raise ValueError(f"BERT expects {name} of shape (B, T) and integer dtype, got {ids.shape} {ids.dtype}")

"""Twins of BERT (minilm.models.bert): the MLM head and the whole encoder with each of its heads, in plain torch
modules under minilm's parameter names, so ``twin()`` copies the weights by name as it does for the GPT.

The encoder reuses the layer twins (EmbeddingsTwin, TransformerBlockTwin: post-LN, bidirectional, exact GELU),
so a BERT twin is built from the same pieces each layer is already held to; the comparison with transformers'
own BertModel / BertForMaskedLM / BertForSequenceClassification (tests/test_bert.py) is the independent one.
"""

import torch

from minilm.verify.reference.blocks import TransformerBlockTwin
from minilm.verify.reference.layers import EmbeddingsTwin


class MLMHeadTwin(torch.nn.Module):
    """logits = LN(GELU(x W_tᵀ + b_t)) W_decᵀ + b: BertLMPredictionHead, minilm's names (dense, ln, decoder)."""

    def __init__(self, head, tied=None):
        super().__init__()
        V, C = head.decoder.weight.shape
        self.dense = torch.nn.Linear(C, C)
        self.act = torch.nn.GELU()  # the exact (erf) form, BERT's "gelu"
        self.ln = torch.nn.LayerNorm(C, eps=head.ln.eps)
        self.decoder = torch.nn.Linear(C, V)
        if tied is not None:
            self.decoder.weight = tied  # the word embeddings: one tensor, its gradient the sum of both uses

    def forward(self, x):
        return self.decoder(self.ln(self.act(self.dense(x))))


class BERTTwin(torch.nn.Module):
    """Embeddings, post-LN blocks with the key-padding mask, then the head config.head names."""

    def __init__(self, bert):
        super().__init__()
        cfg = self.config = bert.config
        self.embeddings = EmbeddingsTwin(bert.embeddings)
        self.h = torch.nn.ModuleList(TransformerBlockTwin(block) for block in bert.h)
        if bert.mlm is not None:
            self.mlm = MLMHeadTwin(bert.mlm, tied=self.embeddings.wte.weight)
        if bert.pooler is not None:
            self.pooler = torch.nn.Linear(cfg.n_embd, cfg.n_embd)
        if bert.classifier is not None:
            self.classifier_dropout = torch.nn.Dropout(cfg.dropout)
            self.classifier = torch.nn.Linear(cfg.n_embd, cfg.num_labels)

    def forward(self, ids, token_type_ids=None, attention_mask=None):
        key_padding_mask = None if attention_mask is None else attention_mask == 0  # True = padding
        x = self.embeddings(ids, token_type_ids)
        for block in self.h:
            x = block(x, key_padding_mask=key_padding_mask)
        if self.config.head == "mlm":
            return self.mlm(x)
        if self.config.head == "none":
            return x
        pooled = torch.tanh(self.pooler(x[:, 0]))  # the [CLS] position
        return self.classifier(self.classifier_dropout(pooled))

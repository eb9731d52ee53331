"""The twin of minilm.models.Seq2Seq: torch's embeddings, torch.nn.Transformer and a torch Linear, as torch's
"Language Translation with nn.Transformer" tutorial assembles them, under minilm's names.

Tied tables are tied here too (one torch Parameter under each name), so a weight used three times gets its
gradient summed by autograd, the reference for minilm's hand-written sums.
"""

import torch

from minilm.verify.reference.layers import EmbeddingsTwin
from minilm.verify.reference.transformer import TransformerTwin


class Seq2SeqTwin(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        cfg = model.config
        self.pad_token_id = cfg.pad_token_id
        self.src_embed = EmbeddingsTwin(model.src_embed)
        self.tgt_embed = EmbeddingsTwin(model.tgt_embed)
        if cfg.share_embeddings:
            self.tgt_embed.wte.weight = self.src_embed.wte.weight
        self.transformer = TransformerTwin(model.transformer)
        self.lm_head = torch.nn.Linear(cfg.d_model, cfg.vocab_size)
        if cfg.tie_weights:
            self.lm_head.weight = self.tgt_embed.wte.weight

    def forward(self, src, tgt, src_key_padding_mask=None, tgt_key_padding_mask=None):
        src_pad = src == self.pad_token_id if src_key_padding_mask is None else src_key_padding_mask
        tgt_pad = tgt == self.pad_token_id if tgt_key_padding_mask is None else tgt_key_padding_mask
        h = self.transformer(self.src_embed(src), self.tgt_embed(tgt), src_key_padding_mask=src_pad,
                             tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=src_pad)
        return self.lm_head(h)

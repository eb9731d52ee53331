"""Twins of single layers: losses, positions, attention (scaled dot-product, projection-free, multi-head),
the feed-forward block and the embeddings. Each computes what its minilm layer computes, under its names."""

import math

import torch
import torch.nn.functional as F


class CrossEntropyTwin(torch.nn.Module):
    """F.cross_entropy over the last axis of logits of any leading shape (torch wants classes on axis 1)."""

    def __init__(self, ignore_index):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits, targets):
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=self.ignore_index)


class LogSoftmaxTwin(torch.nn.Module):
    def __init__(self, axis):
        super().__init__()
        self.axis = axis

    def forward(self, x):
        return torch.log_softmax(x, dim=self.axis)


class SinusoidalTwin(torch.nn.Module):
    """x + PE[:T], PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))."""

    def __init__(self, max_len, d_model):
        super().__init__()
        pos = torch.arange(max_len, dtype=torch.float64)[:, None]
        inv_freq = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
        pe = torch.zeros(max_len, d_model, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(pos * inv_freq)
        pe[:, 1::2] = torch.cos(pos * inv_freq)[:, : d_model // 2]
        self.register_buffer("pe", pe, persistent=False)  # a function of the shape, not state

    def forward(self, x):
        return x + self.pe[: x.shape[-2]].to(x.dtype)


def _visible(q, k, causal, key_padding_mask):
    """Bool (B or 1, 1, Tq, Tk), True where query i may see key j: torch's attn_mask convention for sdpa."""
    visible = torch.ones(1, 1, q.shape[-2], k.shape[-2], dtype=torch.bool)  # (1, 1, Tq, Tk)
    visible = visible.tril() if causal else visible  # tril acts on the last two axes: key j ≤ query i
    if key_padding_mask is not None:
        visible = visible & ~key_padding_mask[:, None, None, :]
    return visible


class ScaledDotProductAttentionTwin(torch.nn.Module):
    """F.scaled_dot_product_attention over (B, H, T, hs) with the causal and key-padding masks as one bool mask."""

    def __init__(self, causal):
        super().__init__()
        self.causal = causal

    def forward(self, q, k, v, key_padding_mask=None):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=_visible(q, k, self.causal, key_padding_mask))


class SelfAttentionTwin(torch.nn.Module):
    """softmax(e eᵀ · scale) e, scale = 1/√C (scaled) or 1: F.scaled_dot_product_attention with q = k = v = e."""

    def __init__(self, scaled):
        super().__init__()
        self.scaled = scaled

    def forward(self, e):
        return F.scaled_dot_product_attention(e, e, e, scale=None if self.scaled else 1.0)


def _with_future(attn_mask, T, causal):
    """attn_mask (bool, True = may not attend, or additive), with the future keys j > i blocked too when causal."""
    future = torch.ones(T, T, dtype=torch.bool).triu(1) if causal else None  # (T, T)
    if future is None or attn_mask is None:
        return attn_mask if future is None else future
    return future | attn_mask if attn_mask.dtype == torch.bool else attn_mask.masked_fill(future, -math.inf)


class MultiheadAttentionTwin(torch.nn.MultiheadAttention):
    """torch.nn.MultiheadAttention(batch_first=True): self-attention on x, or cross-attention from x to memory.

    A subclass rather than a wrapper so the parameter names stay torch's (in_proj_weight, out_proj.weight, ...).
    For a query whose every key is masked torch gives NaN (need_weights=True) or zeros (need_weights=False, through
    F.scaled_dot_product_attention in recent versions): compare against it only where some key is visible.
    """

    def __init__(self, d_model, n_heads, bias, causal, dropout):
        super().__init__(d_model, n_heads, dropout=dropout, bias=bias, batch_first=True)
        self.causal = causal

    def forward(self, x, memory=None, key_padding_mask=None, attn_mask=None, need_weights=False):
        memory = x if memory is None else memory
        out, weights = super().forward(x, memory, memory, key_padding_mask=key_padding_mask,
                                       attn_mask=_with_future(attn_mask, x.shape[1], self.causal),
                                       need_weights=need_weights, average_attn_weights=False)
        return (out, weights) if need_weights else out


class FeedForwardTwin(torch.nn.Module):
    """c_proj(act(c_fc(x))): minilm's FeedForward, with GPT-2's names for the two Linear layers."""

    def __init__(self, d_model, d_ff, activation, bias):
        super().__init__()
        self.c_fc = torch.nn.Linear(d_model, d_ff, bias=bias)
        self.act = {"gelu": torch.nn.GELU("tanh"), "gelu_exact": torch.nn.GELU(), "relu": torch.nn.ReLU()}[activation]
        self.c_proj = torch.nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x):
        return self.c_proj(self.act(self.c_fc(x)))


class EmbeddingsTwin(torch.nn.Module):
    """dropout(LN(s·wte[ids] + P[start:start+T] + wtt[token_type_ids])), minilm.nn.Embeddings's sublayer names."""

    def __init__(self, emb):
        super().__init__()
        C, self.learned, self.scale = emb.wte.embedding_dim, emb.pos == "learned", emb.scale
        self.wte = torch.nn.Embedding(emb.wte.num_embeddings, C, padding_idx=emb.wte.padding_idx)
        self.wpe = torch.nn.Embedding(emb.max_len, C) if self.learned else SinusoidalTwin(emb.max_len, C)
        self.wtt = torch.nn.Embedding(emb.wtt.num_embeddings, C) if emb.wtt is not None else None
        self.ln = torch.nn.LayerNorm(C, eps=emb.ln.eps) if emb.ln is not None else None
        self.drop = torch.nn.Dropout(emb.drop.p)

    def forward(self, ids, token_type_ids=None, start=0):
        T = ids.shape[1]
        tokens = self.wte(ids) * self.scale
        if self.learned:
            x = tokens + self.wpe(torch.arange(start, start + T))
        else:
            x = tokens + self.wpe.pe[start:start + T].to(self.wte.weight.dtype)
        if self.wtt is not None:
            x = x + self.wtt(torch.zeros_like(ids) if token_type_ids is None else token_type_ids)
        return self.drop(self.ln(x) if self.ln is not None else x)

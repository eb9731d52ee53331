"""Embeddings: what every transformer family does to token ids before its first block.

forward:  x = s·wte[ids] + P[start : start + T] + wtt[token_type_ids]   (B, T, C); wtt with segments only
          s = 1, or √C in the original transformer (Vaswani et al. §3.4: the embedding's weights are scaled
          by √d_model, so they are not drowned by the positions' ±1 where they share a table with the output)
          x = LN(x)                                                       BERT only (layer_norm=True)
          x = dropout(x)
          P is a learned (max_len, C) table wpe (GPT-2, BERT) or the fixed sinusoids (Vaswani et al. §3.5);
          start is the position of the first token: 0, or the tokens a key/value cache already holds.
backward: dx = dropout'(dx), then LN'(dx)
          dwtt[v] = Σ_{b,t: token_type_ids = v} dx[b, t]    dwpe[start + t] = Σ_b dx[b, t]
          dwte[v] = s·Σ_{b,t: ids = v} dx[b, t]             (scatter-adds: minilm.nn.embedding)
          ids are integers: no gradient, backward returns None. With sinusoids P is a constant.
shapes:   ids, token_type_ids (B, T) integers; x (B, T, C); wte (V, C), wpe (max_len, C), wtt (type_vocab, C)
padding:  padding_idx (BERT's [PAD] id) is wte's row that stays 0 and is never trained, as in torch.
kept:     nothing of its own: each lookup keeps its ids, LayerNorm and dropout what they need.
names:    the sublayers are wte, wpe, wtt, ln, drop; the GPT adopts them under its own top-level names
          (wte.weight, wpe.weight, as GPT-2), so its checkpoints and the Hugging Face map are unchanged.
ref:      Radford et al. 2019 (GPT-2: wte + wpe); Devlin et al. 2019, §3.2 (BERT: + segment, then LayerNorm)
"""

from minilm.backend import xp
from minilm.nn.dropout import Dropout
from minilm.nn.embedding import Embedding
from minilm.nn.module import Module, host_rng
from minilm.nn.normalization import LayerNorm
from minilm.nn.positional import SinusoidalPositionalEncoding


class Embeddings(Module):
    def __init__(self, vocab_size, d_model, max_len, pos="learned", type_vocab_size=0, layer_norm=False,
                 layer_norm_eps=1e-5, dropout=0.0, padding_idx=None, scale=1.0, rng=None):
        if pos not in ("learned", "sinusoidal"):
            raise ValueError(f"pos must be 'learned' or 'sinusoidal', got {pos!r}")
        rng = host_rng(rng)
        self.pos, self.max_len, self.scale = pos, max_len, float(scale)
        self.wte = Embedding(vocab_size, d_model, padding_idx=padding_idx, rng=rng)
        self.wpe = Embedding(max_len, d_model, rng=rng) if pos == "learned" else \
            SinusoidalPositionalEncoding(max_len, d_model)
        self.wtt = Embedding(type_vocab_size, d_model, rng=rng) if type_vocab_size else None
        self.ln = LayerNorm(d_model, eps=layer_norm_eps) if layer_norm else None
        self.drop = Dropout(dropout, rng=rng.integers(2**63))

    def forward(self, ids, token_type_ids=None, start=0):
        B, T = ids.shape
        if start + T > self.max_len:
            raise ValueError(f"sequence length {start + T} exceeds block_size {self.max_len}")
        tokens = self.wte(ids)  # (B, T, C)
        if self.scale != 1.0:  # skipped at 1, so a GPT's or BERT's sums are bit for bit as before
            tokens = tokens * self.scale
        if self.pos == "learned":
            x = tokens + self.wpe(xp.arange(start, start + T))  # (B, T, C) + (T, C)
        elif start == 0:
            x = self.wpe(tokens)  # (B, T, C) + PE[:T]
        else:
            x = tokens + self.wpe.pe[start:start + T].astype(tokens.dtype)  # (B, T, C) + PE[start : start + T]
        if self.wtt is not None:
            if token_type_ids is None:
                token_type_ids = xp.zeros_like(ids)  # one segment, as transformers assumes
            x = x + self.wtt(token_type_ids)  # (B, T, C)
        elif token_type_ids is not None:
            raise ValueError("token_type_ids given, but these embeddings have no segment table (type_vocab_size 0)")
        if self.ln is not None:
            x = self.ln(x)
        return self.drop(x)

    def backward(self, dx):
        # forward: x = dropout(LN(wte[ids] + P[positions] + wtt[token_type_ids]))
        dx = self.drop.backward(dx)  # (B, T, C)
        if self.ln is not None:
            dx = self.ln.backward(dx)
        if self.wtt is not None:
            self.wtt.backward(dx)
        if self.pos == "learned":
            self.wpe.backward(dx.sum(axis=0))  # the (T, C) positions were broadcast over B
        else:
            dx = self.wpe.backward(dx)
        # forward: tokens = s·wte[ids]
        self.wte.backward(dx * self.scale if self.scale != 1.0 else dx)
        return None  # token ids have no gradient

"""Embedding: a lookup table, one learned row per token id.

forward:  y[b, t] = W[ids[b, t]]           (a row gather; equivalently onehot(ids) @ W)
backward: dW[v] = Σ_{(b, t): ids[b, t] = v} dy[b, t]    (a scatter-add: rows of repeated ids are summed)
          the ids are integers and have no gradient, so backward returns None.
padding_idx: as torch's, a row that is never trained: it starts at 0 and its gradient is always 0, so the
          padding token (BERT's [PAD]) contributes a constant zero vector wherever it appears.
shapes:   ids any shape, e.g. (B, T), integers in [0, V); y (B, T, C); W (V, C) as in torch
kept:     ids, the only thing dW needs (dy carries the values, ids say which rows they go to).
init:     W ~ N(0, 1), torch.nn.Embedding's default.
why scatter-add: ``dW[ids] += dy`` looks right but is wrong whenever an id repeats (every batch of text
          repeats tokens): fancy-index assignment keeps only one of the updates. ``scatter_add`` from
          minilm.backend sums them, and is fast on both backends.
ref:      torch.nn.Embedding; Bengio et al. 2003, §2 (the "C" matrix of word features)
"""

from minilm.backend import asarray, scatter_add, xp
from minilm.nn.module import Module, Parameter, host_rng, init_normal


class Embedding(Module):
    kept = ("ids",)  # what backward reads; dropped under inference()

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, rng=None):
        if padding_idx is not None and not 0 <= padding_idx < num_embeddings:
            raise ValueError(f"padding_idx {padding_idx} out of range for num_embeddings {num_embeddings}")
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        self.weight = Parameter(init_normal(host_rng(rng), (num_embeddings, embedding_dim), 1.0))  # (V, C)
        if padding_idx is not None:
            self.weight.data[padding_idx] = 0

    def forward(self, ids):
        ids = asarray(ids)  # host ids (a list, a NumPy array) move to the active backend
        if ids.dtype.kind not in "iu":
            raise TypeError(f"Embedding expects integer token ids, got dtype {ids.dtype}")
        out_of_range = (ids < 0) | (ids >= self.num_embeddings)  # (B, T)
        if out_of_range.any():
            # NumPy would silently wrap a negative id to the end of the table; name the first bad one instead
            first = int(ids.reshape(-1)[int(out_of_range.reshape(-1).argmax())])
            raise ValueError(f"token id {first} out of range for vocab_size {self.num_embeddings}")
        self.ids = ids
        return self.weight.data[ids]  # (B, T, C)

    def backward(self, dy):
        C = self.embedding_dim
        if dy.shape != (*self.ids.shape, C):
            raise ValueError(f"Embedding expected a gradient of shape {(*self.ids.shape, C)}, got {dy.shape}")
        # forward: y = W[ids]
        dW = xp.zeros_like(self.weight.data)  # (V, C)
        scatter_add(dW, self.ids.reshape(-1), dy.reshape(-1, C))  # (V, C), from (B*T,) ids and (B*T, C) rows
        if self.padding_idx is not None:
            dW[self.padding_idx] = 0  # the padding row is never trained
        self.weight.accumulate(dW)
        return None

"""Multi-head attention, one layer for self-, causal and cross-attention and cached decoding; SelfAttention.

shapes:   B batch, T queries (the positions of x), Tk keys (T in self-attention, the memory's length in
          cross-attention, T_past + T with a key/value cache), C channels (= d_model), H heads, hs = C / H.
parts:    the mask M comes from minilm.nn.masks, the attention itself from minilm.nn.sdpa; both are
          re-exported here (attention_mask, scaled_dot_product_attention, ScaledDotProductAttention, ...).

SelfAttention, the projection-free form the tutorials start from: Q = K = V = e (B, T, C), one head, hs = C:
    y_i = Σ_j softmax_j(e_i · e_j / √C) e_j        (without the √C when scaled=False)
    e is used three times, so its gradient sums the three paths: de = dQ + dK + dV. Keeping only dV, or
    treating e_i · e_j as one use of e, is the favourite mistake.

MultiHeadAttention, as torch.nn.MultiheadAttention(batch_first=True):
    [q k v] = x W_inᵀ + b_in      (B, T, 3C); W_in = in_proj_weight (3C, C): the q rows, then k, then v
    q, k, v -> (B, H, T, hs)      each head takes hs consecutive channels (a reshape and a transpose)
    y = merge(sdpa(q, k, v))      (B, T, C), the heads side by side again
    out = y W_outᵀ + b_out        out_proj, a Linear
    backward in reverse: out_proj, merge undone (split dy into heads), sdpa, split undone (dq, dk, dv
    concatenated into d[q k v]), then the input projection like a Linear. Dropout (training mode only)
    acts on A, as in torch: Y = dropout(A) V. ``.attention_weights`` is A (B, H, T, Tk) before dropout. The
    key third of b_in gets exactly zero gradient: q_i · b_k shifts query i's whole row of scores, which
    softmax ignores.

cross-attention (memory given): queries from x (B, T, C), keys and values from memory (B, Tk, C):
    q = x W_qᵀ + b_q,   [k v] = memory W_kvᵀ + b_kv     W_q = W_in[:C], W_kv = W_in[C:]: one parameter still
    out = merge(sdpa(q, k, v)) W_outᵀ + b_out           (B, T, C); the weights A are (B, H, T, Tk)
    backward: dx = dq W_q,  dmemory = d[k v] W_kv,  dW_in = [dqᵀ x ; d[k v]ᵀ memory] (rows over B·T, B·Tk),
    returned as (dx, dmemory). Self-attention is the case memory = x, where the two input gradients meet
    in one sum: dx = d[q k v] W_in, one matmul.

cached decoding (cache= a minilm.nn.kv_cache.LayerKV): x holds the T new positions; their keys and values are
    appended to the cache's and the queries attend to all T_past + T keys, under the causal mask offset by
    T_past (minilm.nn.masks): the same projection, mask and sdpa as the full forward. A non-causal layer
    (a decoder's self-attention, whose causal mask comes as attn_mask) takes one new position at a time, which
    may see every key. With memory, the cache holds the memory's keys and values, projected at the first step
    and read at every later one (they depend on the memory alone).
    Forward only: nothing is kept for a backward, and the cached keys are overwritten as decoding goes on.

kept:     x (and memory) for dW_in; sdpa's cache (q, k, v, A, the mask); out_proj keeps its input.
ref:      Vaswani et al. 2017, §3.2.2; torch.nn.MultiheadAttention
"""

import math

from minilm.backend import is_floating, xp
from minilm.nn.dropout import Dropout
from minilm.nn.linear import Linear
from minilm.nn.masks import attention_mask
from minilm.nn.module import Module, Parameter, host_rng, in_inference, init_uniform
from minilm.nn.sdpa import (  # noqa: F401  (re-exported: the public import path of these names)
    AttentionCache,
    ScaledDotProductAttention,
    attention_weights,
    check_rank,
    scaled_dot_product_attention,
    scaled_dot_product_attention_backward,
)


class SelfAttention(Module):
    """y_i = Σ_j softmax_j(e_i · e_j / √C) e_j: attention with Q = K = V = e and no weights."""

    kept = ("cache",)  # what backward reads; dropped under inference()

    def __init__(self, scaled=True):
        self.scaled = scaled

    def forward(self, e):
        check_rank("SelfAttention", e, ("B", "T", "C"))
        y, self.cache = scaled_dot_product_attention(e, e, e, scale=None if self.scaled else 1.0)  # (B, T, C)
        return y

    def backward(self, dy):
        de_as_query, de_as_key, de_as_value = scaled_dot_product_attention_backward(dy, self.cache)
        # forward: q = k = v = e, so the chain rule sums the three paths
        return de_as_query + de_as_key + de_as_value  # (B, T, C)


class MultiHeadAttention(Module):
    """Multi-head attention, with torch.nn.MultiheadAttention(batch_first=True)'s parameters and names.

    in_proj_weight (3C, C): xavier-uniform, U(±√(6 / (C + 3C))); in_proj_bias (3C,): zeros;
    out_proj: a Linear(C, C), torch's default init with its bias zeroed, as torch does.
    causal: each query sees only the keys up to its own position (self-attention and cached decoding).
    rng: a seed or NumPy Generator for the initialisation; the attention dropout is seeded from it.
    keep_weights: False recomputes A in backward instead of keeping it, and ``.attention_weights`` is None.
    """

    kept = ("x", "memory", "cache")  # what backward reads; dropped under inference()
    need_weights = False  # keep .attention_weights under inference() too (the heatmaps set it; torch's name)

    def __init__(self, d_model, n_heads, bias=True, causal=False, dropout=0.0, rng=None, keep_weights=True):
        if n_heads < 1 or d_model < 1:
            raise ValueError(f"d_model and n_heads must be positive, got d_model {d_model}, n_heads {n_heads}")
        if d_model % n_heads != 0:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.d_model, self.n_heads, self.head_size = d_model, n_heads, d_model // n_heads
        self.causal, self.keep_weights = causal, keep_weights
        rng = host_rng(rng)
        C = d_model
        self.in_proj_weight = Parameter(init_uniform(rng, (3 * C, C), math.sqrt(6.0 / (C + 3 * C))))  # (3C, C)
        self.in_proj_bias = Parameter(xp.zeros(3 * C, dtype=xp.float32)) if bias else None  # (3C,)
        self.out_proj = Linear(C, C, bias=bias, rng=rng)
        if bias:
            self.out_proj.bias.data[...] = 0  # as torch does, so a fresh layer adds nothing after the projection
        self.attn_dropout = Dropout(dropout, rng=int(rng.integers(2**63)))

    def forward(self, x, memory=None, *, key_padding_mask=None, attn_mask=None, cache=None):
        """out (B, T, C). memory (B, Tk, C): keys and values come from it (cross-attention), else from x.
        key_padding_mask: bool (B, Tk), True = padded key. attn_mask: bool (True = blocked) or additive,
        (T, Tk) or (B or 1, H or 1, T, Tk). cache: a LayerKV, for decoding (module docstring)."""
        B, T, C = self._check_input("MultiHeadAttention", x)
        T_past = 0
        if memory is None:
            q, k, v = self._project(x, 0, 3)  # (B, H, T, hs) each
        else:
            if self.causal:
                raise ValueError("cross-attention (memory given) takes no causal mask: the keys are the memory's, "
                                 "not earlier positions of x")
            if self._check_input("MultiHeadAttention memory", memory)[0] != B:
                raise ValueError(f"memory has batch size {memory.shape[0]}, x has {B}")
            (q,) = self._project(x, 0, 1)  # (B, H, T, hs)
            if cache is None:
                k, v = self._project(memory, 1, 3)  # (B, H, Tk, hs) each
            elif cache.length == 0:  # the first decoding step: the memory's keys and values, once for every step
                k, v = cache.append(*self._project(memory, 1, 3))  # (B, H, Tk, hs) each
            else:
                k, v = cache.keys, cache.values  # (B, H, Tk, hs) each: the memory does not change while decoding
        if cache is not None and memory is None:
            if not self.causal and T > 1:
                raise ValueError("a key/value cache on non-causal attention takes one new position at a time "
                                 f"(got {T}): causal=False would let old positions see new ones")
            T_past = cache.length
            k, v = cache.append(k, v)  # (B, H, T_past + T, hs) each
        mask = attention_mask(B, T, self.causal, key_padding_mask, x.dtype, Tk=k.shape[2], T_past=T_past,
                              attn_mask=attn_mask)  # (B or 1, 1 or H, T, Tk), or None
        y, attention = scaled_dot_product_attention(q, k, v, mask, dropout=self.attn_dropout,
                                                    keep_weights=self.keep_weights)  # (B, H, T, hs)
        # (B, H, T, Tk) before dropout, for the heatmaps; or None. Under inference() only when asked for: there
        # nothing else holds A, and L layers of (B, H, T, T) would be the largest thing the forward keeps
        self.attention_weights = attention.A if self.need_weights or not in_inference() else None
        # a cached forward keeps nothing: its k and v are views of buffers the next step writes into
        self.x, self.memory, self.cache = (x, memory, attention) if cache is None else (None, None, None)
        y = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C) the heads side by side again
        return self.out_proj(y)  # (B, T, C)

    def backward(self, dout):
        if self.cache is None:
            raise RuntimeError("MultiHeadAttention.backward needs a forward without cache= first "
                               "(a cached forward is for inference and keeps nothing)")
        B, T, C = self.x.shape
        H, hs = self.n_heads, self.head_size
        # forward: out = y W_outᵀ + b_out
        dy = self.out_proj.backward(dout)  # (B, T, C)
        # forward: y = merge(heads)
        dy = dy.reshape(B, T, H, hs).transpose(0, 2, 1, 3)  # (B, H, T, hs)
        # forward: y = sdpa(q, k, v)
        dq, dk, dv = scaled_dot_product_attention_backward(dy, self.cache)  # (B, H, T or Tk, hs)
        # forward: [q k v] = x W_inᵀ + b_in, or q = x W_qᵀ + b_q and [k v] = memory W_kvᵀ + b_kv
        if self.memory is None:
            dx, dW, db = self._project_backward(self.x, 0, (dq, dk, dv))  # (B, T, C), (3C, C), (3C,)
        else:
            dx, dW_q, db_q = self._project_backward(self.x, 0, (dq,))  # (B, T, C), (C, C), (C,)
            dmemory, dW_kv, db_kv = self._project_backward(self.memory, 1, (dk, dv))  # (B, Tk, C), (2C, C), (2C,)
            dW = xp.concatenate([dW_q, dW_kv])  # (3C, C)
            db = None if db_q is None else xp.concatenate([db_q, db_kv])  # (3C,)
        self.in_proj_weight.accumulate(dW)
        if self.in_proj_bias is not None:
            self.in_proj_bias.accumulate(db)
        return dx if self.memory is None else (dx, dmemory)

    def _check_input(self, name, a):
        if not is_floating(a):  # a key_padding_mask passed by position lands here
            raise TypeError(f"{name} must be floating (B, T, C), got dtype {a.dtype}; pass masks by keyword")
        check_rank(name, a, ("B", "T", "C"))
        if a.shape[2] != self.d_model:
            raise ValueError(f"MultiHeadAttention expected last dim {self.d_model}, got {a.shape[2]} "
                             f"({name} shape {a.shape})")
        return a.shape

    def _project(self, a, first, last):
        """Thirds first … last - 1 of the input projection (0 = q, 1 = k, 2 = v) of a (B, T, C), split into heads."""
        B, T, C = a.shape
        rows = slice(first * C, last * C)  # the whole of W_in for self-attention: one matmul for q, k and v
        out = a.reshape(B * T, C) @ self.in_proj_weight.data[rows].T  # (B·T, nC), n = last - first
        if self.in_proj_bias is not None:
            out += self.in_proj_bias.data[rows]
        out = out.reshape(B, T, last - first, self.n_heads, self.head_size)  # (B, T, n, H, hs)
        return out.transpose(2, 0, 3, 1, 4)  # (n, B, H, T, hs)

    def _project_backward(self, a, first, grads):
        """(da, dW, db) of ``_project(a, first, first + n)`` for the n head gradients ``grads``, each (B, H, T, hs)."""
        B, T, C = a.shape
        n = len(grads)
        # each gradient is copied once into its place in one buffer (xp.stack(...).transpose(...).reshape(...)
        # copies twice, the second time 20x slower, measured)
        d = xp.empty((B, T, n, self.n_heads, self.head_size), dtype=grads[0].dtype)  # (B, T, n, H, hs)
        for i, g in enumerate(grads):
            d[:, :, i] = g.transpose(0, 2, 1, 3)  # (B, T, H, hs)
        d_rows = d.reshape(B * T, n * C)  # (B·T, nC)
        dW = d_rows.T @ a.reshape(B * T, C)  # (nC, C)
        db = d_rows.sum(axis=0) if self.in_proj_bias is not None else None  # (nC,)
        da = d_rows @ self.in_proj_weight.data[first * C:(first + n) * C]  # (B·T, C)
        return da.reshape(B, T, C), dW, db  # (B, T, C)


def keep_attention_weights(model, keep):
    """Set ``keep_weights`` on every MultiHeadAttention in ``model``: False trades memory for one more Q Kᵀ
    per layer in backward (minilm.nn.sdpa's memory). A training setting, not part of the architecture."""
    for _, module in model.named_modules():
        if isinstance(module, MultiHeadAttention):
            module.keep_weights = keep

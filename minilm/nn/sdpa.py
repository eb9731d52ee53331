"""sdpa, scaled dot-product attention: every query takes a softmax-weighted average of the values.

shapes:   (..., Tq, hs) queries against (..., Tk, hs) keys and values, e.g. (B, H, T, hs): a batched matmul
          over every (B, H) pair, so read it one head at a time. Tq = Tk = T in self-attention; Tq ≠ Tk in
          cross-attention (the keys come from another sequence) and with a key/value cache (Tk = T_past + T).

Scaled dot-product attention (one head):
    S = Q Kᵀ / √hs + M     (Tq, Tk)  how well query i matches key j
    A = softmax(S)         (Tq, Tk)  along the keys j: row i is how query i shares its attention out
    Y = A V                (Tq, hs)  output row i is the A-weighted average of the value rows
    √hs: for q, k with independent unit-variance entries, q · k has variance hs; dividing keeps scores O(1)
    so the softmax does not saturate to one-hot, where its gradient vanishes (Vaswani et al. §3.2.1).
    M is the additive mask of minilm.nn.masks: 0 where query i may see key j, -inf where it may not.

backward, each line undoing one forward line, last first:
    Y = A V              ->  dA = dY Vᵀ,   dV = Aᵀ dY
    A = softmax(S)       ->  dS = A ⊙ (dA - rowsum(dA ⊙ A))
    S = Q Kᵀ / √hs + M   ->  dQ = dS K / √hs,   dK = dSᵀ Q / √hs       (M is a constant)
    The softmax line: in one row a_j = exp(s_j) / Σ_k exp(s_k), so ∂a_j/∂s_i = a_j (δ_ij - a_i): the
    Jacobian diag(a) - a aᵀ, Tk x Tk for every row (B·H·Tq·Tk² numbers if formed). Applied to da, never formed:
        ds_i = Σ_j da_j a_j (δ_ij - a_i) = a_i da_i - a_i Σ_j da_j a_j = a_i (da_i - Σ_j da_j a_j)
    rowsum(dA ⊙ A) is that Σ_j, one number per query row, broadcast over the keys. Dropping it (dS = A ⊙ dA)
    is the classic mistake: it forgets that a row sums to 1, so raising one weight lowers all the others.
    It is minilm.nn.softmax's softmax_backward, used here as is (one buffer; measured no slower than the
    inline expression, ~15% faster on (12, 4, 64, 64) float32 weights).
    dK has a transpose that dQ lacks: S_ij pairs query i with key j, so key j sums over the queries i. With
    Tq ≠ Tk a missing transpose fails on shapes; with Tq = Tk it runs and is wrong, which is why the tests
    use square scores too.

fully masked rows: a query whose every key is masked (a padded query under left padding and a causal mask,
    a sequence of padding only) has a row of -inf, and its softmax is 0/0. minilm.nn.softmax defines it as
    zeros, so Y's row is 0, and dS = A ⊙ (...) = 0 there: the row adds nothing to dQ, dK or dV, never NaN.
    (torch.nn.MultiheadAttention gives NaN there with need_weights=True, its default; torch's sdpa gives 0.)

kept:     q, k, v and A (..., Tq, Tk); not the scores S: the softmax backward needs only A. The dropped weights
          dropout(A) are recomputed in backward from A and dropout's kept mask. The mask M is kept too (only
          to recompute A): B·H times smaller than A, and freed with its layer's cache.
dtype:    everything runs in the dtype of the inputs; the mask is expected in it (minilm.nn.masks builds it so).
memory:   A is the only array quadratic in T: B·H·T² numbers per layer. GPT-2 small in float32 (B = 8,
          T = 1024, H = 12) keeps 400 MB of A per layer, 4.8 GB over 12 layers, ten times its weights;
          dropout keeps another (B, H, T, T) array, its mask. FlashAttention (Dao et al. 2022) keeps
          neither: it recomputes A block by block in the backward pass. ``keep_weights=False`` recomputes A
          whole instead (one more Q Kᵀ and softmax per backward): A then lives only while its own layer's
          backward runs (benchmarks/bench_memory.py: A is half of GPT-2's kept activations at T = 1024).
ref:      Vaswani et al. 2017, §3.2.1; torch.nn.functional.scaled_dot_product_attention
"""

import math
from collections import namedtuple

from minilm.backend import asarray, is_floating, softmax_shift, xp
from minilm.nn.masks import attention_mask
from minilm.nn.module import Module
from minilm.nn.softmax import softmax_backward, softmax_in_place

# What the attention backward needs. A: the softmax output before dropout, or None when not kept (then
# backward recomputes it from q, k, the mask and the scale); dropout: None or the Dropout module that acted
# on A (it holds its own mask); scale: the factor on Q Kᵀ (1/√hs unless given); mask: M, or None.
AttentionCache = namedtuple("AttentionCache", "q k v A scale dropout mask")


def attention_weights(q, k, mask, scale):
    """A = softmax(Q Kᵀ · scale + M) (..., Tq, Tk), computed in the scores' own memory."""
    S = q @ k.swapaxes(-1, -2)  # (..., Tq, Tk)
    S *= scale
    shift = softmax_shift(S)  # taken before the mask, whose -inf would hide the smallest score
    if shift is not None and mask is not None and bool(xp.any(xp.isfinite(mask) & (mask != 0))):
        shift = None  # an additive bias (not only 0 and -inf) moves rows apart: each row takes its own max
    if mask is not None:
        S += mask  # -inf on masked pairs; S is a fresh array, so in place is safe
    return softmax_in_place(S, axis=-1, shift=shift)  # (..., Tq, Tk) in S's memory; all-(-inf) rows give zeros


def scaled_dot_product_attention(q, k, v, mask=None, scale=None, dropout=None, keep_weights=True):
    """Y = dropout(softmax(Q Kᵀ · scale + M)) V over the last two axes; returns (Y, cache).

    q: (..., Tq, hs); k, v: (..., Tk, hs). mask: additive (0 or -inf), broadcastable to (..., Tq, Tk), e.g.
    from ``attention_mask``. scale: 1/√hs by default. dropout: None or a Dropout module.
    keep_weights: False leaves A out of the cache, and backward recomputes it (the module docstring's memory).
    """
    if q.ndim < 2 or k.shape != v.shape or q.shape[:-2] + q.shape[-1:] != k.shape[:-2] + k.shape[-1:]:
        raise ValueError(f"q, k and v must share one shape but for the query length: q (..., Tq, hs), k and v "
                         f"(..., Tk, hs); got {q.shape}, {k.shape}, {v.shape}")
    scores_shape = (*q.shape[:-1], k.shape[-2])  # (..., Tq, Tk)
    if mask is not None:
        mask = asarray(mask)  # a host mask joins the active backend
        if not is_floating(mask):
            raise TypeError(f"mask must be additive (0 or -inf, floating), got dtype {mask.dtype}")
        if mask.ndim > len(scores_shape) or any(
                m not in (1, s) for m, s in zip(mask.shape[::-1], scores_shape[::-1])):
            raise ValueError(f"mask of shape {mask.shape} does not broadcast to the scores {scores_shape}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    A = attention_weights(q, k, mask, scale)  # (..., Tq, Tk)
    Ad = A if dropout is None else dropout(A)  # (..., Tq, Tk)
    y = Ad @ v  # (..., Tq, hs)
    return y, AttentionCache(q, k, v, A if keep_weights else None, scale, dropout, mask)


def scaled_dot_product_attention_backward(dy, cache):
    """(dQ, dK, dV) for dY (..., Tq, hs), the gradient of the output of ``scaled_dot_product_attention``."""
    q, k, v, A, scale, dropout, mask = cache
    if A is None:  # not kept: the same computation as forward's, so the same A
        A = attention_weights(q, k, mask, scale)  # (..., Tq, Tk)
    # dropout's backward multiplies by the mask it kept, so applied to A it gives back dropout(A) exactly
    Ad = A if dropout is None else dropout.backward(A)  # (..., Tq, Tk)
    # forward: y = Ad V
    dAd = dy @ v.swapaxes(-1, -2)  # (..., Tq, Tk)
    dv = Ad.swapaxes(-1, -2) @ dy  # (..., Tk, hs)
    # forward: Ad = dropout(A)
    dA = dAd if dropout is None else dropout.backward(dAd)  # (..., Tq, Tk)
    # forward: A = softmax(S); the Jacobian diag(a) - a aᵀ of each row applied to dA (module docstring)
    dS = softmax_backward(dA, A)  # (..., Tq, Tk)
    # forward: S = Q Kᵀ · scale + M
    dq = (dS @ k) * scale  # (..., Tq, hs)
    dk = (dS.swapaxes(-1, -2) @ q) * scale  # (..., Tk, hs)
    return dq, dk, dv


def check_rank(name, x, letters):
    """ValueError naming ``name`` and the expected letters unless x has len(letters) axes."""
    if x.ndim != len(letters):
        raise ValueError(f"{name} expects shape ({', '.join(letters)}), got shape {tuple(x.shape)}")


class ScaledDotProductAttention(Module):
    """The functional form as a module over (B, H, Tq, hs) × (B, H, Tk, hs), with causal and key-padding masks."""

    kept = ("cache",)  # what backward reads; dropped under inference()

    def __init__(self, causal=False):
        self.causal = causal

    def forward(self, q, k, v, key_padding_mask=None):
        check_rank("ScaledDotProductAttention", q, ("B", "H", "T", "hs"))
        B, _, T, _ = q.shape
        mask = attention_mask(B, T, self.causal, key_padding_mask, q.dtype, Tk=k.shape[2])  # (B or 1, 1, T, Tk)
        y, self.cache = scaled_dot_product_attention(q, k, v, mask)  # (B, H, T, hs)
        return y

    def backward(self, dy):
        return scaled_dot_product_attention_backward(dy, self.cache)

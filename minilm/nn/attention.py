"""Attention: scaled dot-product attention, projection-free self-attention, multi-head attention.

shapes:   B batch, T time, C channels (= d_model), H heads, hs = C / H the head size.

Scaled dot-product attention (a batched matmul over every (B, H) pair, so read it one head at a time):
    S = Q Kᵀ / √hs + M     (T, T)  how well query i matches key j
    A = softmax(S)         (T, T)  along the keys j: row i is how query i shares its attention out
    Y = A V                (T, hs) output row i is the A-weighted average of the value rows
    √hs: for q, k with independent unit-variance entries, q · k has variance hs; dividing keeps scores O(1)
    so the softmax does not saturate to one-hot, where its gradient vanishes (Vaswani et al. §3.2.1).
    M is an additive mask: 0 where query i may see key j, -inf where it may not (a future key j > i under
    a causal mask, or a padded key). exp(-inf) = 0 exactly, so a masked key gets weight 0 and gradient 0;
    a finite "large negative" (-1e9, -10000) leaks a little of both.

backward, each line undoing one forward line, last first:
    Y = A V              ->  dA = dY Vᵀ,   dV = Aᵀ dY
    A = softmax(S)       ->  dS = A ⊙ (dA - rowsum(dA ⊙ A))
    S = Q Kᵀ / √hs + M   ->  dQ = dS K / √hs,   dK = dSᵀ Q / √hs       (M is a constant)
    The softmax line: in one row a_j = exp(s_j) / Σ_k exp(s_k), so ∂a_j/∂s_i = a_j (δ_ij - a_i): the
    Jacobian diag(a) - a aᵀ, T x T for every row (B·H·T³ numbers if formed). Applied to da, never formed:
        ds_i = Σ_j da_j a_j (δ_ij - a_i) = a_i da_i - a_i Σ_j da_j a_j = a_i (da_i - Σ_j da_j a_j)
    rowsum(dA ⊙ A) is that Σ_j, one number per query row, broadcast over the keys. Dropping it (dS = A ⊙ dA)
    is the classic mistake: it forgets that a row sums to 1, so raising one weight lowers all the others.
    dK has a transpose that dQ lacks: S_ij pairs query i with key j, so key j sums over the queries i.

fully masked rows: a query whose every key is masked (a padded query under left padding and a causal mask,
    a sequence of padding only) has a row of -inf, and its softmax is 0/0. minilm.nn.softmax defines it as
    zeros, so Y's row is 0, and dS = A ⊙ (...) = 0 there: the row adds nothing to dQ, dK or dV, never NaN.
    (torch.nn.MultiheadAttention gives NaN there with need_weights=True, its default; torch's sdpa gives 0.)

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
    acts on A, as in torch: Y = dropout(A) V. ``.attention_weights`` is A before dropout. The key third of
    b_in gets exactly zero gradient: q_i · b_k shifts query i's whole row of scores, which softmax ignores.

kept:     q, k, v (B, H, T, hs) and A (B, H, T, T); not the scores S: the softmax backward needs only A.
          The dropped weights dropout(A) are recomputed in backward from A and dropout's kept mask.
          MultiHeadAttention also keeps x (B, T, C) for dW_in, and out_proj its input.
dtype:    everything runs in the dtype of the input; the -inf mask is built in it, so float32 stays float32.
memory:   A is the only array quadratic in T: B·H·T² numbers per layer. GPT-2 small in float32 (B = 8,
          T = 1024, H = 12) keeps 400 MB of A per layer, 4.8 GB over 12 layers, ten times its weights;
          dropout keeps another (B, H, T, T) array, its mask. FlashAttention (Dao et al. 2022) keeps
          neither: it recomputes A block by block in the backward pass. ``keep_weights=False`` recomputes A
          whole instead (one more Q Kᵀ and softmax per backward): A then lives only while its own layer's
          backward runs (benchmarks/bench_memory.py: A is half of GPT-2's kept activations at T = 1024).
          The causal mask M (1, 1, T, T) is built afresh by each call and kept by its layer: B·H times
          smaller than A, and freed with the layer's cache (nothing process-wide holds one).
ref:      Vaswani et al. 2017, §3.2; torch.nn.functional.scaled_dot_product_attention; torch.nn.MultiheadAttention
"""

import math
from collections import namedtuple

from minilm.backend import asarray, is_floating, softmax_shift, xp
from minilm.nn.dropout import Dropout
from minilm.nn.linear import Linear
from minilm.nn.module import Module, Parameter, host_rng, init_uniform
from minilm.nn.softmax import softmax_in_place

# What the attention backward needs. A: the softmax output before dropout, or None when not kept (then
# backward recomputes it from q, k, the mask and the scale); dropout: None or the Dropout module that acted
# on A (it holds its own mask); scale: the factor on Q Kᵀ (1/√hs unless given); mask: M, or None.
AttentionCache = namedtuple("AttentionCache", "q k v A scale dropout mask")


def attention_mask(B, T, causal=False, key_padding_mask=None, dtype=None):
    """The additive mask M: 0 where query i may see key j, -inf where it may not. None when nothing is masked.

    key_padding_mask: bool (B, T), True for a padded key (ignored), as in torch.nn.MultiheadAttention.
    Returns (1, 1, T, T) for causal only, (B, 1, T, T) with padding, in ``dtype`` (float64 when None); it
    broadcasts over the heads.
    """
    if not causal and key_padding_mask is None:
        return None
    blocked = xp.zeros((1, 1, T, T), dtype=bool)  # (1, 1, T, T) True where query i may not see key j
    if causal:
        blocked = blocked | xp.triu(xp.ones((T, T), dtype=bool), k=1)  # (1, 1, T, T) the future: j > i
    if key_padding_mask is not None:
        key_padding_mask = asarray(key_padding_mask)  # a host mask joins the active backend
        if key_padding_mask.dtype != bool:
            raise TypeError(f"key_padding_mask must be boolean (True = padded key), got dtype {key_padding_mask.dtype}")
        if tuple(key_padding_mask.shape) != (B, T):
            raise ValueError(f"key_padding_mask must have shape (B, T) = {(B, T)}, got {tuple(key_padding_mask.shape)}")
        blocked = blocked | key_padding_mask[:, None, None, :]  # (B, 1, T, T) the same keys for every query
    return xp.where(blocked, -xp.inf, 0.0).astype(dtype)  # (B or 1, 1, T, T)


def attention_weights(q, k, mask, scale):
    """A = softmax(Q Kᵀ · scale + M) (..., T, T), computed in the scores' own memory."""
    S = q @ k.swapaxes(-1, -2)  # (..., T, T)
    S *= scale
    shift = softmax_shift(S)  # taken before the mask, whose -inf would hide the smallest score
    if mask is not None:
        S += mask  # -inf on masked pairs; S is a fresh array, so in place is safe
    return softmax_in_place(S, axis=-1, shift=shift)  # (..., T, T) in S's memory; all-(-inf) rows give zeros


def scaled_dot_product_attention(q, k, v, mask=None, scale=None, dropout=None, keep_weights=True):
    """Y = dropout(softmax(Q Kᵀ · scale + M)) V over the last two axes; returns (Y, cache).

    q, k, v: (..., T, hs), e.g. (B, H, T, hs). mask: additive (0 or -inf), broadcastable to (..., T, T),
    e.g. from ``attention_mask``. scale: 1/√hs by default. dropout: None or a Dropout module.
    keep_weights: False leaves A out of the cache, and backward recomputes it (the module docstring's memory).
    """
    if q.ndim < 2 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"q, k and v must share one shape (..., T, hs), got {q.shape}, {k.shape}, {v.shape}")
    scores_shape = (*q.shape[:-1], q.shape[-2])  # (..., T, T)
    if mask is not None:
        mask = asarray(mask)  # a host mask joins the active backend
        if not is_floating(mask):
            raise TypeError(f"mask must be additive (0 or -inf, floating), got dtype {mask.dtype}")
        if mask.ndim > len(scores_shape) or any(
                m not in (1, s) for m, s in zip(mask.shape[::-1], scores_shape[::-1])):
            raise ValueError(f"mask of shape {mask.shape} does not broadcast to the scores {scores_shape}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    A = attention_weights(q, k, mask, scale)  # (..., T, T)
    Ad = A if dropout is None else dropout(A)  # (..., T, T)
    y = Ad @ v  # (..., T, hs)
    return y, AttentionCache(q, k, v, A if keep_weights else None, scale, dropout, mask)


def scaled_dot_product_attention_backward(dy, cache):
    """(dQ, dK, dV) for dY (..., T, hs), the gradient of the output of ``scaled_dot_product_attention``."""
    q, k, v, A, scale, dropout, mask = cache
    if A is None:  # not kept: the same computation as forward's, so the same A
        A = attention_weights(q, k, mask, scale)  # (..., T, T)
    # dropout's backward multiplies by the mask it kept, so applied to A it gives back dropout(A) exactly
    Ad = A if dropout is None else dropout.backward(A)  # (..., T, T)
    # forward: y = Ad V
    dAd = dy @ v.swapaxes(-1, -2)  # (..., T, T)
    dv = Ad.swapaxes(-1, -2) @ dy  # (..., T, hs)
    # forward: Ad = dropout(A)
    dA = dAd if dropout is None else dropout.backward(dAd)  # (..., T, T)
    # forward: A = softmax(S); the Jacobian diag(a) - a aᵀ of each row applied to dA (module docstring)
    dS = A * (dA - (dA * A).sum(axis=-1, keepdims=True))  # (..., T, T)
    # forward: S = Q Kᵀ · scale + M
    dq = (dS @ k) * scale  # (..., T, hs)
    dk = (dS.swapaxes(-1, -2) @ q) * scale  # (..., T, hs)
    return dq, dk, dv


def _check_rank(name, x, letters):
    if x.ndim != len(letters):
        raise ValueError(f"{name} expects shape ({', '.join(letters)}), got shape {tuple(x.shape)}")


class ScaledDotProductAttention(Module):
    """The functional form as a module over (B, H, T, hs), with causal and key-padding masks."""

    def __init__(self, causal=False):
        self.causal = causal

    def forward(self, q, k, v, key_padding_mask=None):
        _check_rank("ScaledDotProductAttention", q, ("B", "H", "T", "hs"))
        mask = attention_mask(q.shape[0], q.shape[2], self.causal, key_padding_mask, q.dtype)  # (B or 1, 1, T, T)
        y, self.cache = scaled_dot_product_attention(q, k, v, mask)  # (B, H, T, hs)
        return y

    def backward(self, dy):
        return scaled_dot_product_attention_backward(dy, self.cache)


class SelfAttention(Module):
    """y_i = Σ_j softmax_j(e_i · e_j / √C) e_j: attention with Q = K = V = e and no weights."""

    def __init__(self, scaled=True):
        self.scaled = scaled

    def forward(self, e):
        _check_rank("SelfAttention", e, ("B", "T", "C"))
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
    rng: a seed or NumPy Generator for the initialisation; the attention dropout is seeded from it.
    keep_weights: False recomputes A in backward instead of keeping it, and ``.attention_weights`` is None.
    """

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

    def forward(self, x, key_padding_mask=None):
        _check_rank("MultiHeadAttention", x, ("B", "T", "C"))
        B, T, C = x.shape
        H, hs = self.n_heads, self.head_size
        if C != self.d_model:
            raise ValueError(f"MultiHeadAttention expected last dim {self.d_model}, got {C} (input shape {x.shape})")
        self.x = x
        qkv = x.reshape(B * T, C) @ self.in_proj_weight.data.T  # (B·T, 3C) one matmul for every position
        if self.in_proj_bias is not None:
            qkv += self.in_proj_bias.data
        qkv = qkv.reshape(B, T, 3, H, hs).transpose(2, 0, 3, 1, 4)  # (3, B, H, T, hs) split into q, k, v and heads
        # a fresh mask every call, never one cached and shared: a shared array written by one caller would
        # corrupt every later one (GPU arrays cannot be made read-only), and a per-process cache holds T²
        # numbers per (T, dtype) for ever. Building it takes ~2 ms at T = 1024 on a CPU core, under 1% of this forward
        # at C = 768, H = 12 and even B = 1 (measured).
        mask = attention_mask(B, T, self.causal, key_padding_mask, x.dtype)  # (B or 1, 1, T, T), or None
        y, self.cache = scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], mask, dropout=self.attn_dropout,
                                                     keep_weights=self.keep_weights)
        self.attention_weights = self.cache.A  # (B, H, T, T) before dropout, for the heatmaps; or None
        y = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C) the heads side by side again
        return self.out_proj(y)  # (B, T, C)

    def forward_cached(self, x, kv):
        """Forward only, for generation: x (B, T_new, C) holds the new positions only; their keys and values
        are appended to ``kv`` (a minilm.nn.kv_cache.LayerKV) and each new query attends to every key up to
        its own absolute position. Equals ``forward`` on the whole sequence (causal, eval mode); no backward.
        """
        _check_rank("MultiHeadAttention", x, ("B", "T", "C"))
        B, T, C = x.shape
        H, hs = self.n_heads, self.head_size
        if C != self.d_model:
            raise ValueError(f"MultiHeadAttention expected last dim {self.d_model}, got {C} (input shape {x.shape})")
        if not self.causal:
            raise ValueError("a key/value cache needs causal attention (causal=False lets old positions see new ones)")
        qkv = x @ self.in_proj_weight.data.T  # (B, T_new, 3C)
        if self.in_proj_bias is not None:
            qkv += self.in_proj_bias.data
        qkv = qkv.reshape(B, T, 3, H, hs).transpose(2, 0, 3, 1, 4)  # (3, B, H, T_new, hs)
        y = kv.attend(qkv[0], qkv[1], qkv[2])  # (B, H, T_new, hs)
        y = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T_new, C)
        return self.out_proj(y)  # (B, T_new, C)

    def backward(self, dout):
        B, T, C = self.x.shape
        H, hs = self.n_heads, self.head_size
        # forward: out = y W_outᵀ + b_out
        dy = self.out_proj.backward(dout)  # (B, T, C)
        # forward: y = merge(heads)
        dy = dy.reshape(B, T, H, hs).transpose(0, 2, 1, 3)  # (B, H, T, hs)
        # forward: y = sdpa(q, k, v)
        dq, dk, dv = scaled_dot_product_attention_backward(dy, self.cache)  # each (B, H, T, hs)
        # forward: q, k, v = split(qkv) into heads; each gradient is copied once into its place in one buffer
        # (xp.stack(...).transpose(...).reshape(...) copies twice, the second time 20x slower, measured)
        dqkv = xp.empty((B, T, 3, H, hs), dtype=dq.dtype)  # (B, T, 3, H, hs)
        for i, d in enumerate((dq, dk, dv)):
            dqkv[:, :, i] = d.transpose(0, 2, 1, 3)  # (B, T, H, hs)
        # forward: qkv = x W_inᵀ + b_in
        dqkv_rows = dqkv.reshape(B * T, 3 * C)  # (B·T, 3C)
        self.in_proj_weight.accumulate(dqkv_rows.T @ self.x.reshape(B * T, C))  # (3C, C)
        if self.in_proj_bias is not None:
            self.in_proj_bias.accumulate(dqkv_rows.sum(axis=0))  # (3C,)
        return (dqkv_rows @ self.in_proj_weight.data).reshape(B, T, C)  # (B, T, C)


def keep_attention_weights(model, keep):
    """Set ``keep_weights`` on every MultiHeadAttention in ``model``: False trades memory for one more Q Kᵀ
    per layer in backward (the module docstring's memory). A training setting, not part of the architecture."""
    for _, module in model.named_modules():
        if isinstance(module, MultiHeadAttention):
            module.keep_weights = keep

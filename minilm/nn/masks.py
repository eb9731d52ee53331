"""The attention mask: which key each query may see, as the additive M of S = Q Kᵀ / √hs + M.

forward:  M_ij = 0 where query i may see key j, -inf where it may not, plus a given additive mask
          blocked by causal:       j > T_past + i      (a key after the query's own absolute position)
          blocked by key padding:  key_padding_mask[b, j] is True      (the same keys for every query)
          blocked by attn_mask:    attn_mask[i, j] is True (boolean), or M += attn_mask (floating, additive)
backward: none: M is a constant of the scores; S's gradient passes it by (minilm.nn.sdpa).
shapes:   B batch, T queries, Tk keys (T for self-attention; T_past + T with a key/value cache; the memory's
          length for cross-attention). key_padding_mask (B, Tk); attn_mask (T, Tk) or (B or 1, H or 1, T, Tk);
          M (B or 1, 1, T, Tk), (B or 1, H, T, Tk) with a per-head attn_mask: it broadcasts over the heads.
offset:   with T_past positions already in a key/value cache, query i sits at absolute position T_past + i,
          so the causal rule keeps keys 0 … T_past + i. With T_past = 0 and Tk = T this is the usual
          triangle; one new token (T = 1, Tk = T_past + 1) sees every key.
-inf:     exp(-inf) = 0 exactly, so a masked key gets weight 0 and gradient 0; a finite "large negative"
          (-1e9, -10000) leaks a little of both. A query that sees no key at all gets a zero row
          (minilm.nn.softmax defines that case), never NaN.
booleans: True means "may not attend", as torch.nn.MultiheadAttention's key_padding_mask and attn_mask
          (torch.nn.functional.scaled_dot_product_attention's boolean attn_mask means the opposite).
dtype:    M is built in ``dtype`` (float64 when None), so float32 scores stay float32.
fresh:    every call builds a new array, never one cached and shared: a shared array written by one caller
          would corrupt every later one (GPU arrays cannot be made read-only), and a per-process cache would
          hold T² numbers per (T, dtype) for ever. Building it takes ~2 ms at T = 1024 on a CPU core, under 1%
          of a multi-head forward at C = 768, H = 12 and even B = 1 (measured).
ref:      torch.nn.MultiheadAttention (key_padding_mask, attn_mask); Vaswani et al. 2017, §3.2.3
"""

from minilm.backend import asarray, is_floating, xp


def attention_mask(B, T, causal=False, key_padding_mask=None, dtype=None, *, Tk=None, T_past=0, attn_mask=None):
    """The additive mask M (module docstring), or None when nothing is masked.

    B, T: batch and number of queries. causal: block keys after each query's absolute position T_past + i.
    key_padding_mask: bool (B, Tk), True for a padded key. attn_mask: bool (True = blocked) or additive
    floating, (T, Tk) or (B or 1, H or 1, T, Tk). Tk: number of keys, T_past + T by default.
    Returns (B or 1, 1 or H, T, Tk) in ``dtype`` (float64 when None).
    """
    Tk = T_past + T if Tk is None else Tk
    if not causal and key_padding_mask is None and attn_mask is None:
        return None
    blocked = xp.zeros((1, 1, T, Tk), dtype=bool)  # (1, 1, T, Tk) True where query i may not see key j
    if causal:
        # query i sits at absolute position T_past + i: the keys after it are the future
        blocked = blocked | xp.triu(xp.ones((T, Tk), dtype=bool), k=T_past + 1)  # (1, 1, T, Tk)
    if key_padding_mask is not None:
        key_padding_mask = asarray(key_padding_mask)  # a host mask joins the active backend
        if key_padding_mask.dtype != bool:
            raise TypeError(f"key_padding_mask must be boolean (True = padded key), got dtype {key_padding_mask.dtype}")
        if tuple(key_padding_mask.shape) != (B, Tk):
            keys = "(B, T)" if Tk == T else "(B, Tk)"
            raise ValueError(f"key_padding_mask must have shape {keys} = {(B, Tk)}, "
                             f"got {tuple(key_padding_mask.shape)}")
        blocked = blocked | key_padding_mask[:, None, None, :]  # (B, 1, T, Tk) the same keys for every query
    additive = None
    if attn_mask is not None:
        attn_mask = _as_4d(asarray(attn_mask), B, T, Tk)  # (B or 1, H or 1, T, Tk)
        if attn_mask.dtype == bool:
            blocked = blocked | attn_mask  # (B or 1, H or 1, T, Tk)
        else:
            additive = attn_mask
    M = xp.where(blocked, -xp.inf, 0.0).astype(dtype)  # (B or 1, 1 or H, T, Tk)
    if additive is not None:
        M = M + additive.astype(M.dtype, copy=False)  # a new array: the caller's attn_mask is never written
    return M


def _as_4d(attn_mask, B, T, Tk):
    """attn_mask as (B or 1, H or 1, T, Tk), after checking its dtype and shape."""
    if attn_mask.dtype != bool and not is_floating(attn_mask):
        raise TypeError(f"attn_mask must be boolean (True = blocked) or floating (additive), "
                        f"got dtype {attn_mask.dtype}")
    as_4d = attn_mask[None, None] if attn_mask.ndim == 2 else attn_mask  # (1, 1, T, Tk) from (T, Tk)
    if as_4d.ndim != 4 or tuple(as_4d.shape[2:]) != (T, Tk) or as_4d.shape[0] not in (1, B):
        raise ValueError(f"attn_mask must have shape (T, Tk) = {(T, Tk)} or (B or 1, H or 1, T, Tk) with B = {B}, "
                         f"got {tuple(attn_mask.shape)}")
    return as_4d

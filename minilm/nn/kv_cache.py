"""The key/value cache: incremental decoding, where each new token costs O(T) instead of O(T²).

why:      generating token T+1 by running the model on all T+1 tokens recomputes, in every block, the keys
          and values of the T tokens it has already seen; under a causal mask they cannot change, because
          position j only ever looks at positions ≤ j. So keep them: per block, K and V (B, H, T_past, hs)
          of every position seen, and feed only the new token(s) (B, T_new). Each block then computes
          queries, keys and values for the new positions only, appends the keys and values here, and lets
          the new queries attend to all T_past + T_new keys.
forward:  for the queries of the new positions p = T_past + i, i = 0 … T_new - 1:
              S = q Kᵀ / √hs + M     (T_new, T_past + T_new)   M_ij = -inf where key j > p = T_past + i
              A = softmax(S),  y = A V                            (T_new, hs)
          the causal rule with a cache: a new query at absolute position p sees keys 0 … p. This module
          only holds K and V: the attention over them is MultiHeadAttention.forward(x, cache=layer), through
          the one scaled_dot_product_attention (minilm.nn.sdpa) and the one mask builder (minilm.nn.masks,
          its T_past offset). The positions must be absolute too: the model adds position T_past + i (a wpe
          row or a sinusoidal row), not i. The token-by-token result equals the full forward's, which the
          tests check at every step (float64 to ~1e-12).
backward: none. The cache is for inference only (generation, in eval mode); nothing is kept for a backward,
          and a backward after a cached forward is refused.
shapes:   B batch, H heads, hs head size, T_past positions cached, T_new new positions, L blocks.
memory:   2·L·B·H·T·hs numbers (= 2·L·B·T·C: a K and a V per block); the buffers are allocated once, for
          T = capacity (the model's block_size), in the dtype of the keys, and again only when a reset cache
          meets another batch size, head layout or dtype.
ref:      Pope et al. 2022, "Efficiently Scaling Transformer Inference", §2; Hugging Face's past_key_values
"""

from minilm.backend import xp


class LayerKV:
    """One block's keys and values: (B, H, capacity, hs) buffers of which the first ``length`` positions are filled."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.length = 0
        self.k = self.v = None  # allocated at the first append, when B, H, hs and the dtype are known

    @property
    def keys(self):
        return None if self.k is None else self.k[:, :, : self.length]  # (B, H, T_past, hs)

    @property
    def values(self):
        return None if self.v is None else self.v[:, :, : self.length]  # (B, H, T_past, hs)

    def append(self, k_new, v_new):
        """Store the keys and values (B, H, T_new, hs) of the new positions; returns all (B, H, T_past + T_new, hs)."""
        B, H, T_new, hs = k_new.shape
        fits = self.k is not None and (self.k.shape[0], self.k.shape[1], self.k.shape[3]) == (B, H, hs)
        if self.length == 0 and not (fits and self.k.dtype == k_new.dtype and self.v.dtype == v_new.dtype):
            # empty (new, or reset): the buffers are free to take this batch's shape and dtype
            self.k = self.v = None  # let the old buffers go first, so old and new need not fit in memory together
            self.k = xp.zeros((B, H, self.capacity, hs), dtype=k_new.dtype)  # (B, H, capacity, hs)
            self.v = xp.zeros((B, H, self.capacity, hs), dtype=v_new.dtype)  # (B, H, capacity, hs)
        elif not fits:
            held = (self.k.shape[0], self.k.shape[1], self.k.shape[3])
            raise ValueError(f"the cache holds (B, H, hs) = {held} for {self.length} positions of batch size "
                             f"{held[0]}, got keys of shape {tuple(k_new.shape)} (batch size {B}); "
                             "reset the cache to start a new batch")
        elif self.k.dtype != k_new.dtype:  # assigning would cast them silently, mid-sequence
            raise ValueError(f"the cache holds {self.k.dtype} keys for {self.length} positions, got {k_new.dtype}; "
                             "reset the cache to change dtype")
        end = self.length + T_new
        if end > self.capacity:
            raise ValueError(f"sequence length {end} exceeds the cache's capacity {self.capacity}")
        self.k[:, :, self.length:end] = k_new
        self.v[:, :, self.length:end] = v_new
        self.length = end
        return self.keys, self.values


class KVCache:
    """The keys and values of every block: ``layers[l]`` is block l's ``LayerKV``. Forward only."""

    def __init__(self, n_layer, capacity):
        if n_layer < 1 or capacity < 1:
            raise ValueError(f"a KVCache needs n_layer and capacity >= 1, got n_layer {n_layer}, capacity {capacity}")
        self.capacity = capacity
        self.layers = [LayerKV(capacity) for _ in range(n_layer)]

    @property
    def length(self):
        """How many positions the cache holds (T_past)."""
        return self.layers[0].length

    def reset(self):
        """Forget every position. The buffers are kept, to be overwritten, unless the next batch differs in
        batch size, heads, head size or dtype: then its first append allocates new ones."""
        for layer in self.layers:
            layer.length = 0

    def num_elements(self):
        """Numbers held by the allocated buffers: 2·L·B·H·capacity·hs."""
        return sum(int(layer.k.size + layer.v.size) for layer in self.layers if layer.k is not None)

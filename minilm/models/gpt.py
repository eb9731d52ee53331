"""GPT: a decoder-only transformer language model, read top to bottom like its architecture diagram.

forward:  x₀ = Dropout(wte[idx] + P[:T])     minilm.nn.Embeddings: tokens plus positions (learned wpe, or
                                             sinusoidal); its wte, wpe and drop are the GPT's own names
          x_l = Block_l(x_{l-1})             l = 1 … L (pre-LN: x + Attn(LN(x)), then + FFN(LN(·)))
          z = LN_f(x_L)                      (pre-LN only: post-LN blocks already end in a LayerNorm)
          logits = z W_headᵀ                 W_head = wte (tied, by default) or its own (V, C) matrix
backward: the same list read bottom to top; a weight used twice (tied wte / lm_head) receives the sum of
          both gradients because every backward adds into Parameter.grad; the learned position table is
          shared by the B rows of the batch, so its gradient sums over B.
shapes:   idx (B, T) integers < V; x (B, T, C); logits (B, T, V)
init:     GPT-2: every weight matrix and embedding ~ N(0, 0.02²), biases 0, LayerNorm (1, 0); the two
          projections that write into the residual stream (attn.out_proj, mlp.c_proj) ~ N(0, (0.02/√(2L))²),
          so the residual's variance does not grow with depth.
names:    wte, wpe, h.N.{ln_1, attn, ln_2, mlp}, ln_f, lm_head (GPT-2 / nanoGPT); the layers inside keep
          their torch names (attn.in_proj_weight, attn.out_proj.weight, mlp.c_fc.weight, ...).
generate: forward_cached(idx, cache) runs only the new tokens, reading and extending a key/value cache
          (minilm.nn.kv_cache); forward only. Sampling itself lives in minilm.training.sampling.
ref:      Radford et al. 2019 (GPT-2); Karpathy's nanoGPT model.py
"""

import math
import numbers
from dataclasses import dataclass

from minilm.backend import xp
from minilm.models.inputs import token_ids
from minilm.models.registry import config_from_fields
from minilm.nn.embeddings import Embeddings
from minilm.nn.kv_cache import KVCache
from minilm.nn.linear import Linear
from minilm.nn.module import Module, host_rng, init_normal
from minilm.nn.normalization import LayerNorm
from minilm.nn.transformer import TransformerBlock


@dataclass
class GPTConfig:
    vocab_size: int = 65  # tokens; 65 distinct characters in tiny Shakespeare
    block_size: int = 64  # longest context, in tokens
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads per block; n_embd must divide by it
    n_embd: int = 128  # channels C of the residual stream
    dropout: float = 0.0  # drop probability on embeddings, attention weights and residual branches
    bias: bool = True  # biases in Linear layers (GPT-2 has them)
    pos: str = "learned"  # "learned" (GPT-2's wpe table) or "sinusoidal" (Vaswani et al., no parameters)
    norm: str = "pre"  # "pre" (GPT-2: x + f(LN(x))) or "post" (original paper: LN(x + f(x)))
    tie_weights: bool = True  # lm_head shares wte's (V, C) matrix, as in GPT-2
    layer_norm_eps: float = 1e-5  # added to the variance in every LayerNorm; 1e-5 as torch and GPT-2 (fine-tunes vary)

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("dropout", "layer_norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{name} must be a number, got {value!r}")
        for name in ("bias", "tie_weights"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if self.pos not in ("learned", "sinusoidal"):
            raise ValueError(f"pos must be 'learned' or 'sinusoidal', got {self.pos!r}")
        if self.norm not in ("pre", "post"):
            raise ValueError(f"norm must be 'pre' or 'post', got {self.norm!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if isinstance(self.layer_norm_eps, bool) or not self.layer_norm_eps > 0:  # not > 0 also catches NaN
            raise ValueError(f"layer_norm_eps must be positive (it keeps a constant row finite), "
                             f"got {self.layer_norm_eps}")


    @classmethod
    def from_checkpoint(cls, fields, folder):
        """The config a checkpoint's config.json holds as its "model" section; ValueError naming the file."""
        return config_from_fields(cls, fields, folder, "GPT")


def block_settings(cfg):
    """The TransformerBlock of a GPT, from its config: a decoder-only LM's blocks are causal self-attention with
    no cross-attention, and the feed-forward width is GPT-2's d_ff = 4C with its tanh GELU."""
    return dict(d_model=cfg.n_embd, n_heads=cfg.n_head, d_ff=4 * cfg.n_embd, norm=cfg.norm, causal=True,
                cross_attention=False, activation="gelu", dropout=cfg.dropout, bias=cfg.bias,
                layer_norm_eps=float(cfg.layer_norm_eps))


class GPT(Module):
    def __init__(self, config, rng=None):
        rng = host_rng(rng)
        self.config = cfg = config
        self._embeddings = Embeddings(cfg.vocab_size, cfg.n_embd, cfg.block_size, pos=cfg.pos, dropout=cfg.dropout,
                                      rng=rng)
        # GPT-2's names: the embeddings' token table, position table and dropout are the GPT's own wte, wpe, drop.
        # _embeddings is private, so not a child: train()/eval() reach its dropout as self.drop, its only mode
        self.wte, self.wpe, self.drop = self._embeddings.wte, self._embeddings.wpe, self._embeddings.drop
        self.h = [TransformerBlock(**block_settings(cfg), rng=rng) for _ in range(cfg.n_layer)]
        self.ln_f = LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps) if cfg.norm == "pre" else None
        self.lm_head = Linear(cfg.n_embd, cfg.vocab_size, bias=False, rng=rng)
        if cfg.tie_weights:
            self.lm_head.weight = self.wte.weight
        self._init_gpt2(rng)

    def _init_gpt2(self, rng):
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, param in self.named_parameters():
            if name.endswith(("attn.out_proj.weight", "mlp.c_proj.weight")):
                param.data = init_normal(rng, param.shape, residual_std)
            elif param.data.ndim == 2:  # every other weight matrix and both embedding tables
                param.data = init_normal(rng, param.shape, 0.02)
            elif name.endswith("bias"):
                param.data = xp.zeros_like(param.data)

    def forward(self, idx):
        idx = token_ids(idx, "GPT", self.config.block_size)  # (B, T)
        x = self._embeddings(idx)  # (B, T, C) = dropout(wte[idx] + P[:T])
        for block in self.h:
            x = block(x)  # (B, T, C)
        if self.ln_f is not None:
            x = self.ln_f(x)
        return self.lm_head(x)  # (B, T, V)

    def new_cache(self):
        """An empty KVCache for ``forward_cached``: 2·L·B·H·block_size·hs numbers once the first batch arrives."""
        return KVCache(self.config.n_layer, self.config.block_size)

    def forward_cached(self, idx, cache):
        """Forward only, for generation: logits (B, T_new, V) of the new tokens idx (B, T_new), which follow
        the cache.length tokens whose keys and values ``cache`` holds (their keys and values are appended).

        Equals ``forward`` on the whole sequence, position for position (minilm.nn.kv_cache), in eval mode:
        the dropouts are skipped, so a training-mode model with dropout is refused. No backward.
        """
        idx = token_ids(idx, "GPT")  # (B, T_new); the cache's length is checked below
        if self.training and self.config.dropout > 0:
            raise RuntimeError("forward_cached is for inference and applies no dropout; call model.eval() first")
        if len(cache.layers) != len(self.h):
            raise ValueError(f"the cache has {len(cache.layers)} layers, the model {len(self.h)}")
        T_past, T = cache.length, idx.shape[1]
        if T_past + T > self.config.block_size:
            raise ValueError(f"sequence length {T_past + T} ({T_past} cached + {T} new) "
                             f"exceeds block_size {self.config.block_size}")
        # absolute positions: the new tokens sit at T_past ... T_past + T - 1, not at 0 ... T - 1
        x = self._embeddings(idx, start=T_past)  # (B, T, C)
        for block, kv in zip(self.h, cache.layers):
            x = block(x, cache=kv)  # (B, T, C): the block's own forward, its attention reading and filling kv
        if self.ln_f is not None:
            x = self.ln_f(x)
        return self.lm_head(x)  # (B, T, V)

    def backward(self, dlogits):
        dx = self.lm_head.backward(dlogits)  # (B, T, C)
        if self.ln_f is not None:
            dx = self.ln_f.backward(dx)
        for block in reversed(self.h):
            dx = block.backward(dx)
        return self._embeddings.backward(dx)  # None: token ids have no gradient


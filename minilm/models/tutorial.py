"""TutorialTransformer: the causal language model of PyTorch's tutorial "Language Modeling with nn.Transformer".

forward:  x = dropout(√C · E[idx] + PE[:T])            (B, T, C)  sinusoids (Vaswani et al. §3.5), scaled tokens
          x_l = LN₂(u + FFN(u)),  u = LN₁(x_{l-1} + Attn(x_{l-1}))   l = 1 … L: post-LN encoder layers
                                                                 (nn.TransformerEncoderLayer), ReLU, causal mask
          logits = x_L W_linᵀ + b_lin                   (B, T, V)
          Against minilm's GPT: post-LN instead of pre-LN, no final LayerNorm (the tutorial gives its
          TransformerEncoder no norm), ReLU instead of GELU, fixed sinusoids instead of a learned table,
          embeddings scaled by √C, an untied output layer with a bias.
backward: the list read bottom to top, each block's backward as minilm.nn.transformer's post-LN block.
names:    embedding.wte, layers.N.{ln_1, attn, ln_2, mlp}, linear; ``torch_parameter_names`` maps them onto the
          tutorial's TransformerModel (embedding.weight, transformer_encoder.layers.N.self_attn…, linear.*).
init:     embedding and linear weights U(-0.1, 0.1), linear bias 0 (the tutorial's init_weights); the encoder
          layers torch's defaults (Linear U(±1/√fan_in), attention Xavier).
ref:      PyTorch tutorial "Language Modeling with nn.Transformer and torchtext" (TransformerModel,
          PositionalEncoding, generate_square_subsequent_mask); Vaswani et al. 2017
"""

import math
import numbers
from dataclasses import dataclass

from minilm.backend import xp
from minilm.models.inputs import token_ids
from minilm.models.registry import config_from_fields
from minilm.nn import Embeddings, Linear, TransformerBlock
from minilm.nn.module import Module, host_rng, init_uniform

INIT_RANGE = 0.1  # the tutorial's initrange


@dataclass
class TutorialConfig:
    vocab_size: int = 65  # tokens (ntoken); 65 distinct characters in tiny Shakespeare
    block_size: int = 64  # longest context, in tokens (rows of the sinusoid table)
    n_embd: int = 128  # channels C (d_model; the tutorial's emsize)
    n_head: int = 4  # attention heads per layer (nhead)
    n_layer: int = 4  # encoder layers (nlayers)
    d_ff: int = 512  # the feed-forward's width (d_hid)
    dropout: float = 0.0  # on the embeddings, attention weights, residual branches and the feed-forward

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_embd", "n_head", "n_layer", "d_ff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, numbers.Real) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    @classmethod
    def from_checkpoint(cls, fields, folder):
        return config_from_fields(cls, fields, folder, "TutorialTransformer")


class TutorialTransformer(Module):
    def __init__(self, config, rng=None):
        rng = host_rng(rng)
        self.config = cfg = config
        C = cfg.n_embd
        self.embedding = Embeddings(cfg.vocab_size, C, cfg.block_size, pos="sinusoidal", dropout=cfg.dropout,
                                    scale=math.sqrt(C), rng=rng)
        self.embedding.wte.weight.data = init_uniform(rng, (cfg.vocab_size, C), INIT_RANGE)
        self.layers = [TransformerBlock(C, cfg.n_head, cfg.d_ff, norm="post", causal=True, activation="relu",
                                        dropout=cfg.dropout, rng=rng) for _ in range(cfg.n_layer)]
        self.linear = Linear(C, cfg.vocab_size, rng=rng)
        self.linear.weight.data = init_uniform(rng, (cfg.vocab_size, C), INIT_RANGE)
        self.linear.bias.data = xp.zeros(cfg.vocab_size, dtype=self.linear.bias.data.dtype)

    def forward(self, idx):
        idx = token_ids(idx, "TutorialTransformer", self.config.block_size)  # (B, T)
        x = self.embedding(idx)  # (B, T, C)
        for layer in self.layers:
            x = layer(x)  # (B, T, C)
        return self.linear(x)  # (B, T, V)

    def backward(self, dlogits):
        dx = self.linear.backward(dlogits)  # (B, T, C)
        for layer in reversed(self.layers):
            dx = layer.backward(dx)
        return self.embedding.backward(dx)  # None: token ids have no gradient

    def torch_parameter_names(self):
        """{name in the tutorial's TransformerModel state_dict: this model's Parameter}."""
        mapped = {"embedding.weight": self.embedding.wte.weight, "linear.weight": self.linear.weight,
                  "linear.bias": self.linear.bias}
        for i, layer in enumerate(self.layers):
            mapped.update({f"transformer_encoder.layers.{i}.{name}": p
                           for name, p in layer.torch_parameter_names().items()})
        return mapped

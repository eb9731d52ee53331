"""Transformer: the core of torch.nn.Transformer(batch_first=True), an encoder stack and a decoder stack on
already-embedded inputs (no embeddings, no positions, no output projection: minilm.models.Seq2Seq adds those).

forward:  encoder  x_l = Block_l(x_{l-1}; src_key_padding_mask)     l = 1 … L_e, x₀ = src, bidirectional
          m = LN_e(x_{L_e})                                          the memory, encoder.norm in torch
          decoder  y_l = DecBlock_l(y_{l-1}, m; tgt_key_padding_mask, memory_key_padding_mask, causal mask)
                                                                     l = 1 … L_d, y₀ = tgt
          out = LN_d(y_{L_d})                                        decoder.norm in torch
          Blocks are minilm.nn.TransformerBlock: post-LN (norm_first=False, Vaswani et al.) or pre-LN
          (norm_first=True); the decoder blocks add cross-attention to m (torch.nn.TransformerDecoderLayer).
          Both final LayerNorms are there whatever norm_first says, because torch.nn.Transformer always builds
          them: with post-LN blocks the stack then ends in two LayerNorms in a row (the block's LN₂, then LN_e),
          not a no-op since the second one has its own weight and bias.
backward: the list read bottom to top. m feeds every decoder block's cross-attention, so its gradient is the
          sum over the decoder blocks, dm = Σ_l dm_l (each DecBlock.backward returns (dy_{l-1}, dm_l)), and
          only then enters the encoder:  dx_{L_e} = LN_e.backward(dm), dx_{l-1} = Block_l.backward(dx_l).
          backward(dout) returns (dsrc, dtgt).
masks:    key padding masks are boolean, True = padding, as torch's: src_key_padding_mask (B, S) for the
          encoder's self-attention, tgt_key_padding_mask (B, T) for the decoder's, memory_key_padding_mask
          (B, S) for the cross-attention; tgt_is_causal=True blocks the decoder's future keys (torch's
          tgt_mask = Transformer.generate_square_subsequent_mask(T)). A query with every key masked gets a
          zero row here and NaN in torch (minilm.nn.masks).
activation: "relu" or "gelu", torch's strings; torch's "gelu" is the exact erf form, minilm's "gelu_exact".
dropout:  p on the attention weights, on each sublayer's output before its residual sum and in the feed-forward
          (minilm.nn.TransformerBlock); torch also drops the feed-forward's hidden layer, so only eval-mode
          (or p = 0) outputs are comparable: the twins differ in training by where the noise is, not by formula.
shapes:   src (B, S, C), tgt (B, T, C), m (B, S, C), out (B, T, C); C = d_model, H = nhead
kept:     nothing of its own: each block and LayerNorm keeps what its backward needs.
names:    encoder.N.{ln_1, attn, ln_2, mlp}, encoder_norm, decoder.N.{ln_1, attn, ln_cross_attn, crossattention,
          ln_2, mlp}, decoder_norm (minilm's block names); ``torch_parameter_names`` is the one map onto
          torch.nn.Transformer's state_dict (encoder.layers.N.self_attn.in_proj_weight, encoder.norm.weight, ...).
init:     the layers' own (Linear: U(±1/√fan_in), LayerNorm (1, 0)); torch's Transformer applies Xavier to its
          matrices, a difference of initial values only. Copy weights across with torch_parameter_names.
ref:      Vaswani et al. 2017, §3.1; torch.nn.Transformer
"""

import numbers
from dataclasses import dataclass

from minilm.backend import xp
from minilm.models.registry import config_from_fields
from minilm.nn.module import Module, host_rng
from minilm.nn.normalization import LayerNorm
from minilm.nn.transformer import TransformerBlock

ACTIVATIONS = {"relu": "relu", "gelu": "gelu_exact"}  # torch's activation string -> minilm's FeedForward's


@dataclass
class TransformerConfig:
    d_model: int = 512  # channels C of both stacks (embedded inputs come in with this width)
    nhead: int = 8  # attention heads per attention layer; d_model must divide by it
    num_encoder_layers: int = 6  # encoder blocks
    num_decoder_layers: int = 6  # decoder blocks (self-attention, cross-attention, feed-forward)
    dim_feedforward: int = 2048  # the feed-forward's hidden width
    dropout: float = 0.1  # drop probability on attention weights, residual branches and the feed-forward
    activation: str = "relu"  # "relu" or "gelu" (torch's "gelu": the exact erf form)
    norm_first: bool = False  # True: pre-LN blocks x + f(LN(x)); False: post-LN LN(x + f(x)), the paper's
    layer_norm_eps: float = 1e-5  # added to the variance in every LayerNorm, torch's default

    def __post_init__(self):
        for name in ("d_model", "nhead", "num_encoder_layers", "num_decoder_layers", "dim_feedforward"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.d_model % self.nhead:
            raise ValueError(f"d_model {self.d_model} is not divisible by nhead {self.nhead}")
        p = self.dropout
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
            raise ValueError(f"dropout must be in [0, 1), got {p!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {self.activation!r}")
        if not isinstance(self.norm_first, bool):
            raise ValueError(f"norm_first must be true or false, got {self.norm_first!r}")
        eps = self.layer_norm_eps
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:  # not > 0 also catches NaN
            raise ValueError(f"layer_norm_eps must be positive, got {eps!r}")

    @classmethod
    def from_checkpoint(cls, fields, folder):
        """The config a checkpoint's config.json holds as its "model" section; ValueError naming the file."""
        return config_from_fields(cls, fields, folder, "Transformer")


def block_settings(cfg):
    """The TransformerBlock both stacks are made of; the decoder's adds cross_attention=True. Not causal: the
    decoder's causal mask is a forward argument (tgt_is_causal), passed to its self-attention as attn_mask."""
    return dict(d_model=cfg.d_model, n_heads=cfg.nhead, d_ff=cfg.dim_feedforward,
                norm="pre" if cfg.norm_first else "post", causal=False, activation=ACTIVATIONS[cfg.activation],
                dropout=cfg.dropout, bias=True, layer_norm_eps=float(cfg.layer_norm_eps))


class Transformer(Module):
    def __init__(self, config, rng=None):
        rng = host_rng(rng)
        self.config = cfg = config
        eps = float(cfg.layer_norm_eps)
        self.encoder = [TransformerBlock(**block_settings(cfg), rng=rng) for _ in range(cfg.num_encoder_layers)]
        self.encoder_norm = LayerNorm(cfg.d_model, eps=eps)
        self.decoder = [TransformerBlock(**block_settings(cfg), cross_attention=True, rng=rng)
                        for _ in range(cfg.num_decoder_layers)]
        self.decoder_norm = LayerNorm(cfg.d_model, eps=eps)

    def forward(self, src, tgt, src_key_padding_mask=None, tgt_key_padding_mask=None, memory_key_padding_mask=None,
                tgt_is_causal=True):
        """out (B, T, C): the decoder's output for tgt (B, T, C), attending to the encoded src (B, S, C)."""
        src, tgt = xp.asarray(src), xp.asarray(tgt)
        self._check(src, "src")
        self._check(tgt, "tgt")
        if src.shape[0] != tgt.shape[0]:
            raise ValueError(f"src and tgt must have the same batch size, got {src.shape[0]} and {tgt.shape[0]}")
        memory = self.encode(src, src_key_padding_mask)  # (B, S, C)
        return self.decode(tgt, memory, tgt_key_padding_mask, memory_key_padding_mask, tgt_is_causal)  # (B, T, C)

    def encode(self, src, src_key_padding_mask=None):
        """m (B, S, C): the encoder stack and its final LayerNorm."""
        B, S, _ = src.shape
        _check_mask(src_key_padding_mask, "src_key_padding_mask", (B, S))
        x = src
        for block in self.encoder:
            x = block(x, key_padding_mask=src_key_padding_mask)  # (B, S, C)
        return self.encoder_norm(x)  # (B, S, C)

    def decode(self, tgt, memory, tgt_key_padding_mask=None, memory_key_padding_mask=None, tgt_is_causal=True):
        """out (B, T, C): the decoder stack over tgt, every block attending to memory m, then its LayerNorm."""
        B, T, _ = tgt.shape
        _check_mask(tgt_key_padding_mask, "tgt_key_padding_mask", (B, T))
        _check_mask(memory_key_padding_mask, "memory_key_padding_mask", tuple(memory.shape[:2]))
        # True above the diagonal: query i may not see key j > i (torch's generate_square_subsequent_mask, as bool)
        future = xp.triu(xp.ones((T, T), dtype=bool), k=1) if tgt_is_causal else None  # (T, T)
        y = tgt
        for block in self.decoder:
            y = block(y, memory, key_padding_mask=tgt_key_padding_mask,
                      memory_key_padding_mask=memory_key_padding_mask, attn_mask=future)  # (B, T, C)
        return self.decoder_norm(y)  # (B, T, C)

    def backward(self, dout):
        # forward: out = LN_d(y_L)
        dy = self.decoder_norm.backward(dout)  # (B, T, C)
        dmemory = None
        for block in reversed(self.decoder):
            # forward: y_l = DecBlock_l(y_{l-1}, m); m is read by every block, so its gradients add up
            dy, dm = block.backward(dy)  # (B, T, C), (B, S, C)
            dmemory = dm if dmemory is None else dmemory + dm
        # forward: m = LN_e(x_L)
        dx = self.encoder_norm.backward(dmemory)  # (B, S, C)
        for block in reversed(self.encoder):
            # forward: x_l = Block_l(x_{l-1})
            dx = block.backward(dx)
        return dx, dy

    def torch_parameter_names(self):
        """{name in torch.nn.Transformer's state_dict: this model's Parameter}, the one map between the layouts:
        encoder.N.<block> -> encoder.layers.N.<torch layer name>, encoder_norm -> encoder.norm, and the same for
        the decoder (TransformerBlock.torch_parameter_names maps inside each block)."""
        mapped = {}
        for stack in ("encoder", "decoder"):
            for i, block in enumerate(getattr(self, stack)):
                mapped.update({f"{stack}.layers.{i}.{name}": p for name, p in block.torch_parameter_names().items()})
            norm = getattr(self, f"{stack}_norm")
            mapped.update({f"{stack}.norm.weight": norm.weight, f"{stack}.norm.bias": norm.bias})
        return mapped

    def _check(self, x, name):
        C = self.config.d_model
        if x.ndim != 3 or x.shape[-1] != C:
            raise ValueError(f"{name} must have shape (B, {'S' if name == 'src' else 'T'}, d_model={C}), "
                             f"got {tuple(x.shape)}")


def _check_mask(mask, name, shape):
    """A key padding mask is boolean (True = padding) and (B, keys): anything else is named here, by argument."""
    if mask is None:
        return
    if getattr(mask, "dtype", None) != bool:
        raise TypeError(f"{name} must be boolean (True = padding), got dtype {getattr(mask, 'dtype', type(mask))}")
    if tuple(mask.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(mask.shape)}")

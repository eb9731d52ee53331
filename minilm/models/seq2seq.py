"""Seq2Seq: the translation model of Vaswani et al., token ids in and next-token logits out, around the Transformer.

forward:  e_src = s·E_src[src] + P[:S]          (B, S, C)   s = √d_model (Vaswani et al. §3.4), or 1
          e_tgt = s·E_tgt[tgt] + P[:T]          (B, T, C)   tgt = [BOS] y_1 … y_{n-1}: the target shifted right
          h = Transformer(e_src, e_tgt; padding masks, causal decoder)                    (B, T, C)
          logits = h Wᵀ + b                     (B, T, V)   W = E_tgt (tied, §3.4) or its own (V, C) matrix
          P: the sinusoids (§3.5) or a learned table; dropout after each embedding sum, as torch's tutorial
backward: dh = dlogits W;  (de_src, de_tgt) = Transformer.backward(dh);  the embeddings' scatter-adds, s·de.
          With shared embeddings (one table for both languages, E_src = E_tgt = E, §3.4 "we share the same
          weight matrix between the two embedding layers and the pre-softmax linear transformation") E is
          used three times and its gradient is the sum of the three: the two scatter-adds and dlogitsᵀ h.
decoding: ``encode`` the source once into the memory m; then ``decode_step`` feeds one target token at a
          time, every decoder block's self-attention appending to a key/value cache and its cross-attention
          reading m's keys and values, projected at the first step (Seq2SeqCache). Equals ``forward`` on the
          whole target, position for position (the tests check it); minilm.training.decoding searches with it.
masks:    ids equal to pad_token_id are padding: the encoder's keys, the cross-attention's keys, and the
          decoder's keys (so a padded target row computes garbage only at its own padding, whose targets the
          loss ignores). Given masks (bool, True = padding, torch's) replace the ones derived from the ids.
shapes:   src (B, S), tgt (B, T) integer ids < vocab_size, S and T ≤ block_size; logits (B, T, V)
names:    src_embed.{wte, wpe}, tgt_embed.{wte, wpe} (one Parameter under both names when shared),
          transformer.{encoder, encoder_norm, decoder, decoder_norm}, lm_head (its weight tgt_embed.wte's when
          tied); the torch twin (minilm.verify.reference.seq2seq) maps them.
init:     Xavier-uniform on every matrix and the embedding tables (torch's tutorial, torch.nn.Transformer's
          _reset_parameters), zero biases, LayerNorm (1, 0).
ref:      Vaswani et al. 2017, §3.4, §3.5, §5.1; torch's "Language Translation with nn.Transformer" tutorial
"""

import math
import numbers
from dataclasses import dataclass

from minilm.backend import xp
from minilm.models.inputs import token_ids
from minilm.models.registry import config_from_fields
from minilm.models.transformer import Transformer, TransformerConfig
from minilm.nn.embeddings import Embeddings
from minilm.nn.kv_cache import KVCache
from minilm.nn.linear import Linear
from minilm.nn.module import Module, host_rng, init_uniform

POSITIONS = ("sinusoidal", "learned")


@dataclass
class Seq2SeqConfig:
    vocab_size: int = None  # tokens of both languages (one shared vocabulary); set from the tokenizer
    block_size: int = 128  # the longest source or target, in tokens ([BOS]/[EOS] included)
    d_model: int = 128  # channels C
    nhead: int = 4  # attention heads per attention layer
    num_encoder_layers: int = 2  # encoder blocks
    num_decoder_layers: int = 2  # decoder blocks
    dim_feedforward: int = 512  # the feed-forward's hidden width
    dropout: float = 0.1  # on the embeddings, attention weights, residual branches and the feed-forward
    activation: str = "relu"  # "relu" (the paper's) or "gelu" (exact)
    norm_first: bool = False  # True: pre-LN blocks; False: post-LN, the paper's
    layer_norm_eps: float = 1e-5  # added to the variance in every LayerNorm
    pos: str = "sinusoidal"  # "sinusoidal" (§3.5) or "learned" position embeddings
    share_embeddings: bool = True  # one token table for source and target (§3.4; needs one vocabulary)
    tie_weights: bool = True  # the output projection is the target's token table (§3.4), plus its own bias
    scale_embeddings: bool = True  # multiply the token embeddings by √d_model (§3.4)
    pad_token_id: int = 0  # [PAD]: ids equal to it are masked as keys; set from the tokenizer

    def __post_init__(self):
        for name in ("vocab_size", "block_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)
                                      or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.pos not in POSITIONS:
            raise ValueError(f"pos must be one of {POSITIONS}, got {self.pos!r}")
        for name in ("share_embeddings", "tie_weights", "scale_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        self.transformer_config()  # d_model, nhead, layers, dropout, activation, eps: checked there

    def transformer_config(self):
        return TransformerConfig(d_model=self.d_model, nhead=self.nhead, num_encoder_layers=self.num_encoder_layers,
                                 num_decoder_layers=self.num_decoder_layers, dim_feedforward=self.dim_feedforward,
                                 dropout=self.dropout, activation=self.activation, norm_first=self.norm_first,
                                 layer_norm_eps=self.layer_norm_eps)

    @classmethod
    def from_checkpoint(cls, fields, folder):
        """The config a checkpoint's config.json holds as its "model" section; ValueError naming the file."""
        return config_from_fields(cls, fields, folder, "Seq2Seq")


class Seq2SeqCache:
    """What decoding keeps between steps: the memory and its padding, each decoder block's self-attention keys and
    values (``self_attention``) and the memory's keys and values of its cross-attention (``cross_attention``)."""

    def __init__(self, memory, memory_key_padding_mask, n_layer, capacity):
        self.memory, self.memory_key_padding_mask = memory, memory_key_padding_mask  # (B, S, C), (B, S) or None
        self.self_attention = KVCache(n_layer, capacity)
        self.cross_attention = KVCache(n_layer, memory.shape[1])

    @property
    def length(self):
        """Target positions decoded so far."""
        return self.self_attention.length

    def reorder(self, rows):
        """Keep batch rows ``rows`` (B',), in that order, a row may repeat: a beam search's surviving hypotheses."""
        rows = xp.asarray(rows)
        self.memory = self.memory[rows]
        if self.memory_key_padding_mask is not None:
            self.memory_key_padding_mask = self.memory_key_padding_mask[rows]
        for cache in (self.self_attention, self.cross_attention):
            for layer in cache.layers:
                if layer.k is not None:
                    layer.k, layer.v = layer.k[rows], layer.v[rows]


class Seq2Seq(Module):
    def __init__(self, config, rng=None):
        rng = host_rng(rng)
        self.config = cfg = config
        if cfg.vocab_size is None:
            raise ValueError("Seq2SeqConfig.vocab_size is not set (it comes from the tokenizer)")
        C, V = cfg.d_model, cfg.vocab_size
        settings = dict(pos=cfg.pos, dropout=cfg.dropout, scale=math.sqrt(C) if cfg.scale_embeddings else 1.0)
        self.src_embed = Embeddings(V, C, cfg.block_size, rng=rng, **settings)
        self.tgt_embed = Embeddings(V, C, cfg.block_size, rng=rng, **settings)
        if cfg.share_embeddings:
            self.tgt_embed.wte.weight = self.src_embed.wte.weight
        self.transformer = Transformer(cfg.transformer_config(), rng=rng)
        self.lm_head = Linear(C, V, bias=True, rng=rng)
        if cfg.tie_weights:
            self.lm_head.weight = self.tgt_embed.wte.weight
        for name, param in self.named_parameters():  # Xavier-uniform, as torch's tutorial; zero biases
            if param.data.ndim == 2:
                fan_out, fan_in = param.shape
                param.data = init_uniform(rng, param.shape, math.sqrt(6.0 / (fan_in + fan_out)))
            elif name.endswith("bias"):  # LayerNorms' biases are zero already
                param.data = xp.zeros_like(param.data)

    def padding(self, ids, given):
        """The key padding mask (B, L) of ids: ``given`` if there is one, else ids == pad_token_id."""
        return given if given is not None else ids == self.config.pad_token_id

    def forward(self, src, tgt, src_key_padding_mask=None, tgt_key_padding_mask=None):
        """logits (B, T, V) of the token after each target position, given the whole source."""
        src, tgt = self._ids(src, "src"), self._ids(tgt, "tgt")
        if src.shape[0] != tgt.shape[0]:
            raise ValueError(f"src and tgt must have the same batch size, got {src.shape[0]} and {tgt.shape[0]}")
        src_pad = self.padding(src, src_key_padding_mask)  # (B, S)
        memory = self.transformer.encode(self.src_embed(src), src_pad)  # (B, S, C)
        h = self.transformer.decode(self.tgt_embed(tgt), memory, self.padding(tgt, tgt_key_padding_mask),
                                    src_pad)  # (B, T, C)
        return self.lm_head(h)  # (B, T, V)

    def backward(self, dlogits):
        dh = self.lm_head.backward(dlogits)  # (B, T, C)
        # forward: h = Transformer(e_src, e_tgt)
        de_src, de_tgt = self.transformer.backward(dh)  # (B, S, C), (B, T, C)
        self.tgt_embed.backward(de_tgt)
        self.src_embed.backward(de_src)
        return None  # token ids have no gradient

    def encode(self, src, src_key_padding_mask=None, capacity=None):
        """A Seq2SeqCache for decoding ``src`` (B, S): the memory, computed once, and empty key/value caches for
        ``capacity`` target positions (default block_size)."""
        src = self._ids(src, "src")
        src_pad = self.padding(src, src_key_padding_mask)  # (B, S)
        memory = self.transformer.encode(self.src_embed(src), src_pad)  # (B, S, C)
        return Seq2SeqCache(memory, src_pad, self.config.num_decoder_layers, capacity or self.config.block_size)

    def decode_step(self, tgt, cache):
        """logits (B, 1, V) after the target token tgt (B, 1), which follows the cache.length tokens already fed.
        Forward only, in eval mode (no dropout), for decoding."""
        tgt = self._ids(tgt, "tgt")
        if self.training and self.config.dropout > 0:
            raise RuntimeError("decode_step is for inference and applies no dropout; call model.eval() first")
        if tgt.shape[1] != 1 or tgt.shape[0] != cache.memory.shape[0]:
            raise ValueError(f"decode_step takes one token per source, (B, 1) = ({cache.memory.shape[0]}, 1), "
                             f"got {tuple(tgt.shape)}")
        t = cache.length
        if t + 1 > cache.self_attention.capacity:
            raise ValueError(f"target length {t + 1} exceeds the cache's capacity {cache.self_attention.capacity}")
        y = self.tgt_embed(tgt, start=t)  # (B, 1, C) at absolute position t
        transformer = self.transformer
        for block, kv, memory_kv in zip(transformer.decoder, cache.self_attention.layers,
                                        cache.cross_attention.layers):
            # one new query sees every earlier target position: no causal mask needed
            y = block(y, cache.memory, memory_key_padding_mask=cache.memory_key_padding_mask, cache=kv,
                      memory_cache=memory_kv)  # (B, 1, C)
        return self.lm_head(transformer.decoder_norm(y))  # (B, 1, V)

    def _ids(self, ids, name):
        return token_ids(ids, "Seq2Seq", self.config.block_size, name)  # (B, L)

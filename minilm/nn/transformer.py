"""The transformer block: attention and feed-forward (and, in a decoder layer, cross-attention), each wrapped in
a residual connection and a LayerNorm.

forward, pre-LN (GPT-2):               forward, post-LN (Vaswani et al.):
    u = x + Drop(Attn(LN₁(x)))              u = LN₁(x + Drop(Attn(x)))
    y = u + FFN(LN₂(u))                     y = LN₂(u + FFN(u))
backward: a residual u = x + f(x) copies the gradient to both branches and sums them where they meet,
    du/dx = I + ∂f/∂x, so  dx = du + f.backward(du)
    pre-LN:  du = dy + LN₂.backward(FFN.backward(dy))
             dx = du + LN₁.backward(Attn.backward(Drop.backward(du)))
    post-LN: ds = LN₂.backward(dy);  du = ds + FFN.backward(ds)        (s = u + FFN(u))
             dr = LN₁.backward(du);  dx = dr + Attn.backward(Drop.backward(dr))   (r = x + Drop(Attn(x)))
    Pre-LN keeps an identity path from the loss to every block's input, which is why deep pre-LN stacks
    train without warm-up tricks; post-LN puts a LayerNorm Jacobian on that path in every block.

forward, decoder layer, post-LN (Vaswani et al.):   forward, decoder layer, pre-LN:
    u = LN₁(x + Drop(Attn(x)))                           u = x + Drop(Attn(LN₁(x)))
    w = LN_c(u + Drop(Cross(u, m)))                      w = u + Drop(Cross(LN_c(u), m))
    y = LN₂(w + FFN(w))                                  y = w + FFN(LN₂(w))
backward: as above, with one more residual in the middle; the memory m enters only through Cross, whose
    backward returns (du_cross, dm): pre-LN  dw = dy + LN₂.backward(FFN.backward(dy)),
    (dh, dm) = Cross.backward(Drop.backward(dw)),  du = dw + LN_c.backward(dh);  post-LN  dr₂ = LN_c.backward(dw),
    (du_cross, dm) = Cross.backward(Drop.backward(dr₂)),  du = dr₂ + du_cross. Backward returns (dx, dm).
    Attn is causal self-attention over the target, Cross attends from it to the memory m (the encoder's
    output, B, Tk, C), as torch.nn.TransformerDecoderLayer; the masks pass through by keyword.
names:    GPT-2's (ln_1, attn, ln_2, mlp.c_fc, mlp.c_proj), and for the decoder layer Hugging Face GPT-2's
          cross-attention names (ln_cross_attn = LN_c, crossattention = Cross). ``torch_parameter_names``
          maps them onto torch.nn.TransformerEncoderLayer's / TransformerDecoderLayer's (norm1, self_attn, ...).
shapes:   x, u, w, y (B, T, C); m (B, Tk, C)
kept:     nothing of its own: each sublayer keeps what its backward needs.
ref:      Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture"; nanoGPT's Block;
          Vaswani et al. 2017, §3.1 (the decoder's three sublayers); torch.nn.TransformerDecoderLayer
"""

from minilm.nn.attention import MultiHeadAttention
from minilm.nn.dropout import Dropout
from minilm.nn.feedforward import FeedForward
from minilm.nn.module import Module, host_rng
from minilm.nn.normalization import LayerNorm

NORMS = ("pre", "post")
# minilm's sublayer names -> torch.nn.TransformerEncoderLayer's (no cross-attention) / TransformerDecoderLayer's
TORCH_ENCODER_NAMES = {"ln_1": "norm1", "attn": "self_attn", "ln_2": "norm2", "mlp.c_fc": "linear1",
                       "mlp.c_proj": "linear2"}
TORCH_DECODER_NAMES = {"ln_1": "norm1", "attn": "self_attn", "ln_cross_attn": "norm2",
                       "crossattention": "multihead_attn", "ln_2": "norm3", "mlp.c_fc": "linear1",
                       "mlp.c_proj": "linear2"}


class TransformerBlock(Module):
    """norm: "pre" or "post"; causal: the self-attention's mask; cross_attention: a decoder layer (a memory
    argument and a third sublayer); activation: FeedForward's ("gelu" tanh, "gelu_exact", "relu")."""

    def __init__(self, d_model, n_heads, d_ff, norm="pre", causal=True, cross_attention=False, activation="gelu",
                 dropout=0.0, bias=True, layer_norm_eps=1e-5, rng=None):
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose 'pre' (GPT-2) or 'post' (the original transformer)")
        rng = host_rng(rng)
        self.norm = norm
        self.ln_1 = LayerNorm(d_model, eps=layer_norm_eps)
        self.attn = MultiHeadAttention(d_model, n_heads, bias=bias, causal=causal, dropout=dropout, rng=rng)
        self.resid_dropout = Dropout(dropout, rng=rng.integers(2**63))
        # None without cross-attention: no parameters, and no draws from rng, so a GPT's initialisation is unchanged
        self.ln_cross_attn = self.crossattention = self.cross_dropout = None
        if cross_attention:
            self.ln_cross_attn = LayerNorm(d_model, eps=layer_norm_eps)
            self.crossattention = MultiHeadAttention(d_model, n_heads, bias=bias, dropout=dropout, rng=rng)
            self.cross_dropout = Dropout(dropout, rng=rng.integers(2**63))
        self.ln_2 = LayerNorm(d_model, eps=layer_norm_eps)
        self.mlp = FeedForward(d_model, d_ff, activation=activation, bias=bias, dropout=dropout, rng=rng)

    def forward(self, x, memory=None, *, key_padding_mask=None, memory_key_padding_mask=None, attn_mask=None,
                cache=None, memory_cache=None):
        """y (B, T, C). memory (B, Tk, C): a decoder layer's encoder output. key_padding_mask (B, T) and attn_mask
        go to the self-attention, memory_key_padding_mask (B, Tk) to the cross-attention; cache: the
        self-attention's LayerKV, memory_cache the cross-attention's (the memory's keys and values, once)."""
        if (memory is None) != (self.crossattention is None):
            raise ValueError("a decoder layer (cross_attention=True) needs memory, and only it takes one"
                             if memory is None else "memory given to a block built without cross_attention")
        masks = dict(key_padding_mask=key_padding_mask, attn_mask=attn_mask, cache=cache)
        pre = self.norm == "pre"
        if pre:
            u = x + self.resid_dropout(self.attn(self.ln_1(x), **masks))  # (B, T, C)
        else:
            u = self.ln_1(x + self.resid_dropout(self.attn(x, **masks)))  # (B, T, C)
        if memory is not None:
            cross = dict(key_padding_mask=memory_key_padding_mask, cache=memory_cache)
            if pre:
                u = u + self.cross_dropout(self.crossattention(self.ln_cross_attn(u), memory, **cross))  # (B, T, C)
            else:
                u = self.ln_cross_attn(u + self.cross_dropout(self.crossattention(u, memory, **cross)))  # (B, T, C)
        if pre:
            return u + self.mlp(self.ln_2(u))  # (B, T, C)
        return self.ln_2(u + self.mlp(u))  # (B, T, C)

    def backward(self, dy):
        if self.norm == "pre":
            # forward: y = w + FFN(LN₂(w))   (w = u without cross-attention)
            du = dy + self.ln_2.backward(self.mlp.backward(dy))
            if self.crossattention is not None:
                # forward: w = u + Drop(Cross(LN_c(u), m))
                dh, dmemory = self.crossattention.backward(self.cross_dropout.backward(du))
                du = du + self.ln_cross_attn.backward(dh)
            # forward: u = x + Drop(Attn(LN₁(x)))
            dx = du + self.ln_1.backward(self.attn.backward(self.resid_dropout.backward(du)))
        else:
            # forward: y = LN₂(s), s = w + FFN(w)
            ds = self.ln_2.backward(dy)
            du = ds + self.mlp.backward(ds)
            if self.crossattention is not None:
                # forward: w = LN_c(r₂), r₂ = u + Drop(Cross(u, m))
                dr2 = self.ln_cross_attn.backward(du)
                du_cross, dmemory = self.crossattention.backward(self.cross_dropout.backward(dr2))
                du = dr2 + du_cross
            # forward: u = LN₁(r), r = x + Drop(Attn(x))
            dr = self.ln_1.backward(du)
            dx = dr + self.attn.backward(self.resid_dropout.backward(dr))
        return dx if self.crossattention is None else (dx, dmemory)

    def torch_parameter_names(self):
        """{name in torch.nn.TransformerEncoderLayer's state_dict (TransformerDecoderLayer's with cross-attention):
        this block's Parameter}, the one map between the two layouts."""
        names = TORCH_ENCODER_NAMES if self.crossattention is None else TORCH_DECODER_NAMES
        mapped = {}
        for name, param in self.named_parameters():
            prefix = next(ours for ours in names if name.startswith(ours + "."))
            mapped[names[prefix] + name[len(prefix):]] = param
        return mapped

"""The transformer block: attention and feed-forward, each wrapped in a residual connection and a LayerNorm.

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
shapes:   x, u, y (B, T, C)
kept:     nothing of its own: each sublayer keeps what its backward needs.
ref:      Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture"; nanoGPT's Block
"""

from minilm.nn.attention import MultiHeadAttention
from minilm.nn.dropout import Dropout
from minilm.nn.feedforward import FeedForward
from minilm.nn.module import Module, host_rng
from minilm.nn.normalization import LayerNorm

NORMS = ("pre", "post")


class TransformerBlock(Module):
    def __init__(self, d_model, n_heads, d_ff, norm="pre", causal=True, dropout=0.0, bias=True,
                 activation="gelu", rng=None):
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose 'pre' (GPT-2) or 'post' (the original transformer)")
        rng = host_rng(rng)
        self.norm = norm
        self.ln_1 = LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads, bias=bias, causal=causal, dropout=dropout, rng=rng)
        self.resid_dropout = Dropout(dropout, rng=rng.integers(2**63))
        self.ln_2 = LayerNorm(d_model)
        self.mlp = FeedForward(d_model, d_ff, activation=activation, bias=bias, dropout=dropout, rng=rng)

    def forward(self, x):
        if self.norm == "pre":
            u = x + self.resid_dropout(self.attn(self.ln_1(x)))  # (B, T, C)
            return u + self.mlp(self.ln_2(u))  # (B, T, C)
        u = self.ln_1(x + self.resid_dropout(self.attn(x)))  # (B, T, C)
        return self.ln_2(u + self.mlp(u))  # (B, T, C)

    def backward(self, dy):
        if self.norm == "pre":
            # forward: y = u + FFN(LN₂(u))
            du = dy + self.ln_2.backward(self.mlp.backward(dy))
            # forward: u = x + Drop(Attn(LN₁(x)))
            return du + self.ln_1.backward(self.attn.backward(self.resid_dropout.backward(du)))
        # forward: y = LN₂(s), s = u + FFN(u)
        ds = self.ln_2.backward(dy)
        du = ds + self.mlp.backward(ds)
        # forward: u = LN₁(r), r = x + Drop(Attn(x))
        dr = self.ln_1.backward(du)
        return dr + self.attn.backward(self.resid_dropout.backward(dr))

"""The position-wise feed-forward block: Linear → GELU → Linear (→ dropout).

forward:  h = x W_fcᵀ + b_fc,  a = GELU(h),  y = Dropout(a W_projᵀ + b_proj)
backward: each piece's own backward, in reverse order: dropout, c_proj, the activation, c_fc
shapes:   x, y (B, T, C); h, a (B, T, 4C) for GPT-2's d_ff = 4C
kept:     nothing of its own; each sublayer keeps its input.
names:    c_fc and c_proj, as GPT-2 and nanoGPT call them, so Hugging Face weights map by a table.
ref:      Vaswani et al. 2017 §3.3; Radford et al. 2019 (GPT-2)
"""

from minilm.nn.activation import GELU, ReLU
from minilm.nn.dropout import Dropout
from minilm.nn.linear import Linear
from minilm.nn.module import Module, host_rng

ACTIVATIONS = {"gelu": lambda: GELU("tanh"), "gelu_exact": lambda: GELU("none"), "relu": ReLU}


class FeedForward(Module):
    def __init__(self, d_model, d_ff, activation="gelu", bias=True, dropout=0.0, rng=None):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        rng = host_rng(rng)
        self.activation = activation
        self.c_fc = Linear(d_model, d_ff, bias=bias, rng=rng)
        self.act = ACTIVATIONS[activation]()
        self.c_proj = Linear(d_ff, d_model, bias=bias, rng=rng)
        self.dropout = Dropout(dropout, rng=rng.integers(2**63))

    def forward(self, x):
        h = self.c_fc(x)  # (B, T, 4C)
        return self.dropout(self.c_proj(self.act(h)))  # (B, T, C)

    def backward(self, dy):
        # forward: y = Dropout(c_proj(act(c_fc(x))))
        da = self.c_proj.backward(self.dropout.backward(dy))  # (B, T, 4C)
        return self.c_fc.backward(self.act.backward(da))  # (B, T, C)

"""Sinusoidal positional encoding: add a fixed, position-dependent pattern to every token's vector.

table:    PE(pos, 2i)   = sin(pos · ω_i),   PE(pos, 2i+1) = cos(pos · ω_i),   ω_i = 1 / 10000^(2i/C)
          Each (2i, 2i+1) pair of columns is a clock hand turning at its own speed ω_i, from one radian per
          position (i = 0) down to 1/10000 of that, so nearby and far-apart positions are both told apart.
          With an odd C the last pair has only its sin column (the cos column is dropped), as in the twin.
forward:  y = x + PE[:T]                 (PE cast to the dtype of x)
backward: dx = dy                        (PE is a constant: no parameters, nothing to learn)
shapes:   x, y (..., T, C), e.g. (B, T, C); PE (max_len, C), the attribute ``pe``
kept:     nothing for backward. The table is built once at construction, in float64 on the active backend.
why sin/cos pairs: sin((pos+k)ω) = sin(pos·ω) cos(kω) + cos(pos·ω) sin(kω), and the same for cos, so
          [PE(pos+k, 2i), PE(pos+k, 2i+1)] = R(kω_i) [PE(pos, 2i), PE(pos, 2i+1)],
          R(θ) = [[cos θ, sin θ], [-sin θ, cos θ]]:
          moving k positions ahead is a fixed rotation in each plane, the same for every pos. An offset is
          therefore a linear function of the encoding, which a layer can learn once and apply anywhere
          (Vaswani et al.'s stated reason); the test suite checks this property numerically.
ref:      Vaswani et al. 2017, "Attention Is All You Need", §3.5
"""

import math

from minilm.backend import is_floating, xp
from minilm.nn.module import Module


def sinusoidal_table(max_len, d_model):
    """PE (max_len, d_model) in float64 on the active backend."""
    pos = xp.arange(max_len, dtype=xp.float64)[:, None]  # (max_len, 1)
    omega = xp.exp(-math.log(10000.0) * xp.arange(0, d_model, 2, dtype=xp.float64) / d_model)  # (ceil(C/2),)
    angle = pos * omega  # (max_len, ceil(C/2))
    pe = xp.zeros((max_len, d_model), dtype=xp.float64)  # (max_len, C)
    pe[:, 0::2] = xp.sin(angle)  # the even columns: ceil(C/2) of them
    pe[:, 1::2] = xp.cos(angle)[:, : d_model // 2]  # the odd columns: floor(C/2), so an odd C drops one cos
    return pe


class SinusoidalPositionalEncoding(Module):
    def __init__(self, max_len, d_model):
        self.max_len = max_len
        self.d_model = d_model
        self.pe = sinusoidal_table(max_len, d_model)  # (max_len, C) a constant, so not a Parameter

    def forward(self, x):
        if not is_floating(x):
            raise TypeError(f"SinusoidalPositionalEncoding expects a floating-point input, got dtype {x.dtype}")
        if x.ndim < 2:
            raise ValueError(f"SinusoidalPositionalEncoding expects an input of shape (..., T, C), got shape {x.shape}")
        T = x.shape[-2]
        if T > self.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len {self.max_len}")
        if x.shape[-1] != self.d_model:
            raise ValueError(f"SinusoidalPositionalEncoding expected last dim {self.d_model}, got {x.shape[-1]}")
        return x + self.pe[:T].astype(x.dtype)  # (..., T, C), PE broadcast over the leading axes

    def backward(self, dy):
        # forward: y = x + PE[:T]  (the same array comes back: adding a constant passes the gradient through)
        return dy

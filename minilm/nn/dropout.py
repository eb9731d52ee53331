"""Dropout, the inverted form: scale at training time so evaluation is the identity.

forward:  training: keep ~ Bernoulli(1 - p) per element,  y = x ⊙ keep / (1 - p)     (E[y] = x)
          evaluation (or p = 0): y = x
backward: dx = dy ⊙ keep / (1 - p)   (the same mask, the same scale)
shapes:   x, y any shape
kept:     the scaled mask keep / (1 - p), in the dtype of x: backward is one multiply.
p:        the probability of *dropping* an element, as in torch (CS231n's p is the keep probability).
          p = 1 drops everything (y = 0).
rng:      each Dropout owns a NumPy Generator on the host, seeded by ``rng`` (a seed or a Generator), so runs
          are reproducible without touching any global random state; minilm.backend.uniform turns it into
          draws on the active backend. Its state is plain JSON, which a checkpoint stores for exact resumes.
ref:      Srivastava et al. 2014; torch.nn.Dropout
"""

from minilm.backend import uniform, xp
from minilm.nn.module import Module, host_rng


class Dropout(Module):
    kept = ("scaled_mask",)  # what backward reads; dropped under inference()

    def __init__(self, p=0.5, rng=None):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p
        self.rng = host_rng(rng)

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self.scaled_mask = None
            return x
        if self.p == 1.0:
            self.scaled_mask = x * 0
            return self.scaled_mask.copy()
        draws = uniform(self.rng, x.shape, x.dtype)  # (same shape as x) uniform in [0, 1)
        keep = draws >= self.p  # (same shape as x) True where kept
        # keep / (1 - p), written over the draws, which are not needed again: one array of x's size, not two
        self.scaled_mask = xp.divide(keep, x.dtype.type(1.0 - self.p), out=draws)
        return x * self.scaled_mask

    def backward(self, dy):
        return dy if self.scaled_mask is None else dy * self.scaled_mask

"""Softmax and log-softmax over one axis.

forward:  p_i = exp(x_i - m) / Σ_j exp(x_j - m),   m = max_j x_j
          log p_i = (x_i - m) - log Σ_j exp(x_j - m)
          Subtracting the row max m changes nothing mathematically; it only keeps exp from overflowing
          (float32 exp overflows above 88), so logits of ±1e4 are handled exactly.
backward: softmax:     dx = p ⊙ (dp - Σ_j dp_j p_j)     (the Jacobian diag(p) - p pᵀ applied to dp, never formed)
          log-softmax: dx = dlogp - p Σ_j dlogp_j
shapes:   x, p any shape; the sums run over ``axis`` (the last one by default: (B, T, V) or (B, H, T, T))
kept:     p (the output): both backwards need only p, so the input is not kept.
masks:    a row whose every entry is -inf (a query whose every key is masked) has no distribution. We
          define softmax as all zeros there (so attention gives a zero output and zero gradients, never
          NaN); log-softmax of such a row is NaN, as in torch.
ref:      torch.nn.Softmax, torch.nn.LogSoftmax; Goodfellow et al., Deep Learning §4.1 (overflow)
"""

from minilm.backend import xp
from minilm.nn.module import Module


def softmax(x, axis=-1):
    """p = softmax(x) along ``axis``, in the dtype of x; all-(-inf) rows give zeros."""
    m = x.max(axis=axis, keepdims=True)  # (..., 1, ...)
    m[xp.isneginf(m)] = 0  # a fully masked row: exp(-inf - 0) = 0 everywhere instead of exp(nan)
    e = xp.exp(x - m)
    total = e.sum(axis=axis, keepdims=True)
    total[total == 0] = 1  # ... and 0 / 1 = 0 instead of 0 / 0
    return e / total


def softmax_backward(dp, p, axis=-1):
    """dx = p ⊙ (dp - Σ dp ⊙ p), the softmax Jacobian-vector product."""
    return p * (dp - (dp * p).sum(axis=axis, keepdims=True))


def log_softmax(x, axis=-1):
    """log p = x - m - log Σ exp(x - m) along ``axis``: exact where log(softmax(x)) would underflow to -inf."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def log_softmax_backward(dlogp, logp, axis=-1):
    """dx = dlogp - p Σ dlogp, with p = exp(log p)."""
    return dlogp - xp.exp(logp) * dlogp.sum(axis=axis, keepdims=True)


class Softmax(Module):
    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        self.p = softmax(x, self.axis)
        return self.p

    def backward(self, dp):
        return softmax_backward(dp, self.p, self.axis)


class LogSoftmax(Module):
    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        self.logp = log_softmax(x, self.axis)
        return self.logp

    def backward(self, dlogp):
        return log_softmax_backward(dlogp, self.logp, self.axis)

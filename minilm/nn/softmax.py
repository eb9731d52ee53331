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

from minilm.backend import is_floating, sum_last_axis, xp
from minilm.nn.module import Module


def softmax(x, axis=-1):
    """p = softmax(x) along ``axis``, in the dtype of x; all-(-inf) rows give zeros."""
    return _exp_normalise(x - _row_max(x, axis), axis)  # x - m: a fresh array, which becomes p in place


def softmax_in_place(s, axis=-1, shift=None):
    """softmax(s) computed in s's own memory, for a floating s nobody needs afterwards (attention's scores).

    shift: None (subtract each row's max), or one number to subtract from every entry instead, which the
    caller has checked keeps exp in range (see minilm.backend.softmax_shift); a constant per row
    changes nothing else.
    """
    s -= _row_max(s, axis) if shift is None else shift
    return _exp_normalise(s, axis)


def _sum_keepdims(a, axis):
    """a.sum(axis=axis, keepdims=True); along the last axis through BLAS (minilm.backend.sum_last_axis)."""
    if a.ndim > 0 and axis in (-1, a.ndim - 1):
        return sum_last_axis(a)
    return a.sum(axis=axis, keepdims=True)


def _row_max(x, axis):
    m = x.max(axis=axis, keepdims=True)  # (..., 1, ...)
    # a fully masked row: exp(-inf - 0) = 0 everywhere instead of exp(nan). copyto with where= rather than
    # m[mask] = 0, which on a GPU must first count the mask's True entries on the host
    xp.copyto(m, 0, where=xp.isneginf(m))
    return m


def _exp_normalise(e, axis):
    """exp(e) / Σ exp(e) along ``axis``, in e's memory when it is floating (one buffer, not three)."""
    e = xp.exp(e, out=e) if is_floating(e) else xp.exp(e)  # an integer e cannot hold its exp
    total = _sum_keepdims(e, axis)
    xp.copyto(total, 1, where=total == 0)  # ... and 0 / 1 = 0 instead of 0 / 0
    e /= total
    return e


def softmax_backward(dp, p, axis=-1):
    """dx = p ⊙ (dp - Σ dp ⊙ p), the softmax Jacobian-vector product."""
    dx = dp * p  # one buffer: first dp ⊙ p for the row sums, then dx in place
    row = _sum_keepdims(dx, axis)  # Σ dp ⊙ p
    xp.subtract(dp, row, out=dx)
    dx *= p
    return dx


def log_softmax(x, axis=-1):
    """log p = x - m - log Σ exp(x - m) along ``axis``: exact where log(softmax(x)) would underflow to -inf."""
    shifted = x - x.max(axis=axis, keepdims=True)
    log_total = xp.log(_sum_keepdims(xp.exp(shifted), axis))
    if not is_floating(shifted):  # an integer x: the result is floating, so it needs its own array
        return shifted - log_total
    shifted -= log_total  # in place: shifted becomes log p
    return shifted


def log_softmax_backward(dlogp, logp, axis=-1):
    """dx = dlogp - p Σ dlogp, with p = exp(log p)."""
    dx = xp.exp(logp)  # p, a fresh buffer that becomes dx in place
    dx *= -_sum_keepdims(dlogp, axis)
    dx += dlogp
    return dx


class Softmax(Module):
    kept = ("p",)  # what backward reads; dropped under inference()

    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        self.p = softmax(x, self.axis)
        return self.p

    def backward(self, dp):
        return softmax_backward(dp, self.p, self.axis)


class LogSoftmax(Module):
    kept = ("logp",)  # what backward reads; dropped under inference()

    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        self.logp = log_softmax(x, self.axis)
        return self.logp

    def backward(self, dlogp):
        return log_softmax_backward(dlogp, self.logp, self.axis)

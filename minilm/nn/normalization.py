"""LayerNorm over the last axis.

forward:  mu = mean(x),  var = mean((x - mu)²)   (biased: divide by C, as torch does)
          xhat = (x - mu) / √(var + eps),   y = w ⊙ xhat + b
backward: dxhat = dy ⊙ w
          dx = (dxhat - mean(dxhat) - xhat ⊙ mean(dxhat ⊙ xhat)) · rstd,   rstd = 1/√(var + eps)
          dw = Σ_(B,T) dy ⊙ xhat,   db = Σ_(B,T) dy
          (the means run over C; ``layer_norm_backward_staged`` reaches the same dx one node at a time.)
shapes:   x, y (B, T, C), or any leading dims (..., C); w, b (C,); mu, var, rstd (B, T, 1)
kept:     xhat (B, T, C) and rstd (B, T, 1). Backward needs both; recomputing them would repeat the whole
          forward (two reductions, a subtraction, a square root), and rstd is C times smaller than x.
variance: two passes: subtract the mean, then average the squares. The one-pass E[x²] - mu² subtracts two
          nearly equal numbers when |mu| ≫ std: at 1e4 + N(0, 1) in float32, E[x²] ≈ 1e8 has a spacing of
          8 between representable values, so a variance of 1 is lost entirely (it can even come out
          negative). Centred values are O(std), so their squares lose nothing. The extra pass is one
          subtraction we need for xhat anyway.
numerics: everything runs in the dtype of x. eps > 0 sits inside the square root, where torch puts it, so
          a constant row (var = 0) gives rstd = 1/√eps, xhat = 0, y = b and finite gradients.
init:     w = 1, b = 0 (float32), torch's default: the layer starts as a pure normalisation.
ref:      Ba, Kiros & Hinton 2016, "Layer Normalization", §3; torch.nn.LayerNorm
"""

import operator

from minilm.backend import is_floating, sum_last_axis, xp
from minilm.nn.module import Module, Parameter


def _as_int_shape(normalized_shape):
    """C from an int or a 1-tuple (torch's spelling); LayerNorm here normalises the last axis only."""
    if isinstance(normalized_shape, (tuple, list)):
        if len(normalized_shape) != 1:
            raise ValueError(f"LayerNorm normalizes the last axis only: normalized_shape must be an int "
                             f"or a 1-tuple, got {tuple(normalized_shape)}")
        (normalized_shape,) = normalized_shape
    if isinstance(normalized_shape, bool):
        raise TypeError(f"normalized_shape must be an int, got {normalized_shape!r}")
    try:
        size = operator.index(normalized_shape)
    except TypeError:
        raise TypeError(f"normalized_shape must be an int, got {normalized_shape!r}") from None
    if size < 1:
        raise ValueError(f"normalized_shape must be at least 1, got {size}")
    return size


def _mean_last(a):
    """The mean over the last axis, kept as size 1: (..., C) -> (..., 1). The sum, then / C as NumPy's mean,
    so a constant row's mean is exactly its value (and its variance exactly 0)."""
    return sum_last_axis(a) / a.shape[-1]  # (..., 1)


def _sum_leading(a):
    """Σ over every leading position, (..., C) -> (C,): a vector-matrix product with ones, as ``sum_last_axis``."""
    rows = a.reshape(-1, a.shape[-1])  # (N, C)
    return xp.ones(rows.shape[0], dtype=a.dtype) @ rows  # (C,)


class LayerNorm(Module):
    kept = ("xhat", "rstd",)  # what backward reads; dropped under inference()

    def __init__(self, normalized_shape, eps=1e-5):
        self.normalized_shape = _as_int_shape(normalized_shape)
        if not eps > 0:
            raise ValueError(f"LayerNorm eps must be positive (it keeps a constant row finite), got {eps}")
        self.eps = float(eps)
        C = self.normalized_shape
        self.weight = Parameter(xp.ones(C, dtype=xp.float32))  # (C,)
        self.bias = Parameter(xp.zeros(C, dtype=xp.float32))  # (C,)

    def forward(self, x):
        C = self.normalized_shape
        if not is_floating(x):
            raise TypeError(f"LayerNorm expects a floating-point input, got dtype {getattr(x, 'dtype', type(x))}")
        if x.ndim == 0 or x.shape[-1] != C:
            got = "a 0-d array" if x.ndim == 0 else x.shape[-1]
            raise ValueError(f"LayerNorm expected last dim {C}, got {got} (input shape {tuple(x.shape)})")
        mu = _mean_last(x)  # (B, T, 1)
        xc = x - mu  # (B, T, C) centred first: the two-pass variance (see the module docstring)
        y = xp.multiply(xc, xc)  # (B, T, C) the squares, in the buffer that becomes y
        var = _mean_last(y)  # (B, T, 1)
        self.rstd = 1.0 / xp.sqrt(var + self.eps)  # (B, T, 1)
        self.xhat = xc  # (B, T, C) xc's buffer, normalised in place:
        self.xhat *= self.rstd
        xp.multiply(self.xhat, self.weight.data, out=y)  # y = w ⊙ xhat + b, in place
        y += self.bias.data
        return y  # (B, T, C)

    def backward(self, dy):
        xhat, rstd, w = self.xhat, self.rstd, self.weight.data
        C = self.normalized_shape
        # forward: y = w ⊙ xhat + b
        scratch = dy * xhat  # (B, T, C) one buffer for the products below, instead of a temporary each
        self.weight.accumulate(_sum_leading(scratch))  # (C,)
        self.bias.accumulate(_sum_leading(dy))  # (C,)
        # forward: xhat = (x - mu) · rstd, with mu and rstd themselves functions of x (collapsed):
        # the normalisation undoes a shift of the whole row (hence - mean(dxhat)) and, up to eps, a
        # stretch of it along xhat (hence - xhat ⊙ mean(dxhat ⊙ xhat)): those parts of dxhat never reach x.
        # With dxhat = dy ⊙ w both means are row-vector products with w, (..., C) @ (C,), through BLAS:
        # mean(dxhat) = (dy · w) / C and mean(dxhat ⊙ xhat) = ((dy ⊙ xhat) · w) / C, so neither needs
        # dxhat itself, nor a pass of its own over (B, T, C).
        dxhat_mean = (dy @ w)[..., None] / C  # (B, T, 1)
        dxhat_xhat_mean = (scratch @ w)[..., None] / C  # (B, T, 1)
        # dx = (dxhat - mean(dxhat) - xhat ⊙ mean(dxhat ⊙ xhat)) · rstd, in place in dxhat's buffer
        dx = dy * w  # (B, T, C) dxhat
        dx -= dxhat_mean
        dx -= xp.multiply(xhat, dxhat_xhat_mean, out=scratch)
        dx *= rstd
        return dx  # (B, T, C)


def layer_norm_backward_staged(dy, x, w, eps=1e-5):
    """(dx, dw, db) of LayerNorm, backpropagated one forward node at a time: the derivation, not the layer.

    The course notebook shows this version; ``LayerNorm.backward`` is what it collapses to, and a test pins
    the two together. It recomputes the forward's intermediate nodes from x, so it needs no cache.
    shapes: dy, x, dx (..., C); w, dw, db (C,). The bias is not needed: y is linear in it.
    """
    C = x.shape[-1]
    # the forward, node by node
    mu = x.mean(axis=-1, keepdims=True)  # (B, T, 1)
    xc = x - mu  # (B, T, C)
    sq = xc * xc  # (B, T, C)
    var = sq.mean(axis=-1, keepdims=True)  # (B, T, 1)
    rstd = 1.0 / xp.sqrt(var + eps)  # (B, T, 1)
    xhat = xc * rstd  # (B, T, C)
    # and back, in reverse order
    # forward: y = w ⊙ xhat + b
    dw = (dy * xhat).reshape(-1, C).sum(axis=0)  # (C,)
    db = dy.reshape(-1, C).sum(axis=0)  # (C,)
    dxhat = dy * w  # (B, T, C)
    # forward: xhat = xc ⊙ rstd          (rstd is broadcast over C, so its gradient sums over C)
    dxc = dxhat * rstd  # (B, T, C)
    drstd = (dxhat * xc).sum(axis=-1, keepdims=True)  # (B, T, 1)
    # forward: rstd = (var + eps)^(-1/2)
    dvar = -0.5 * rstd ** 3 * drstd  # (B, T, 1)
    # forward: var = mean(sq)            (each of the C squares gets 1/C of dvar)
    dsq = xp.broadcast_to(dvar / C, sq.shape)  # (B, T, C)
    # forward: sq = xc²                  (xc's second path into the loss, besides xhat)
    dxc = dxc + 2.0 * xc * dsq  # (B, T, C)
    # forward: xc = x - mu
    dmu = -dxc.sum(axis=-1, keepdims=True)  # (B, T, 1)
    # forward: mu = mean(x)              (each x gets 1/C of dmu, besides its direct path through xc)
    dx = dxc + dmu / C  # (B, T, C)
    return dx, dw, db

"""Linear: an affine map of the last axis.

forward:  y = x Wᵀ + b
backward: dx = dy W,   dW = Σ_(B,T) dyᵀ x   (as one (out, N) @ (N, in) matmul),   db = Σ_(B,T) dy
shapes:   x (..., in) e.g. (B, T, C); y (..., out); W (out, in) as in torch; b (out,)
kept:     x, the only thing dW needs (W is a parameter anyway).
init:     W, b ~ U(-1/√in, 1/√in), torch.nn.Linear's default.
ref:      torch.nn.Linear
"""

import math

from minilm.nn.module import Module, Parameter, host_rng, init_uniform


class Linear(Module):
    kept = ("x",)  # what backward reads; dropped under inference()

    def __init__(self, in_features, out_features, bias=True, rng=None):
        self.in_features = in_features
        self.out_features = out_features
        rng = host_rng(rng)
        bound = 1.0 / math.sqrt(in_features)
        self.weight = Parameter(init_uniform(rng, (out_features, in_features), bound))  # (out, in)
        self.bias = Parameter(init_uniform(rng, (out_features,), bound)) if bias else None  # (out,)

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear expected last dim {self.in_features}, got {x.shape[-1]} (input shape {x.shape})")
        self.x = x
        # one (N, in) @ (in, out) product over every leading position N: a stack of (T, in) matrices would
        # be multiplied one matrix at a time, each call too small to keep BLAS busy
        y = x.reshape(-1, self.in_features) @ self.weight.data.T  # (N, out)
        if self.bias is not None:
            y += self.bias.data
        return y.reshape(*x.shape[:-1], self.out_features)  # (..., out)

    def backward(self, dy):
        x = self.x
        dy_rows = dy.reshape(-1, self.out_features)  # (N, out), N = every leading position
        # forward: y = x Wᵀ + b
        self.weight.accumulate(dy_rows.T @ x.reshape(-1, self.in_features))  # (out, in)
        if self.bias is not None:
            self.bias.accumulate(dy_rows.sum(axis=0))  # (out,)
        return (dy_rows @ self.weight.data).reshape(x.shape)  # (..., in)

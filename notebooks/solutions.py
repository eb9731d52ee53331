"""The exercises of the course: the switch that marks a blank, and one reference solution per exercise.

An exercise in a notebook is a function (or a method) whose body the reader writes. It starts blank,

    @exercise("merge_heads_backward")
    def backward(self, dout):
        raise NotImplementedError("your code here: merge_heads_backward, ...")

and the cell after it checks it with minilm's checker, printing the error next to the tolerance it is held to.
Called, an exercise runs the reader's code. While it is still blank it stops with that NotImplementedError, so
a reader running the course meets the blank, never an answer. With MINILM_SOLUTIONS=1 in the environment a
blank runs the function of the same name below instead, and says so; the test suite sets it
(tests/test_notebooks.py), so every notebook executes top to bottom and every check is exercised. A filled-in
exercise always runs the reader's code, switch or not. MINILM_SOLUTIONS may also name a .py file: its
functions stand in for the blanks (the suite plants wrong answers that way, to show the checks catch them).

Read a solution after trying the exercise: each one below is in the order of the notebooks.
"""

import functools
import importlib.util
import math
import os

from minilm.backend import xp
from minilm.nn import softmax
from minilm.nn.softmax import softmax_backward

SWITCH = "MINILM_SOLUTIONS"  # "1": a blank runs the solution below; a path to a .py file: that file's function
BLANK = "your code here: "  # how every blank's NotImplementedError begins: the exercise's name follows
_announced = set()  # the exercises whose blank has been replaced once already, so the note prints once


def exercise(name):
    """Mark a function as the exercise ``name``: a blank (it raises NotImplementedError(BLANK + name ...))
    runs the solution ``name`` when the switch is on, and stops the notebook when it is off."""

    def mark(blank):
        @functools.wraps(blank)
        def run(*args, **kwargs):
            try:
                return blank(*args, **kwargs)
            except NotImplementedError as err:
                if not str(err).startswith(BLANK + name) or not os.environ.get(SWITCH):
                    raise  # off: the reader meets the blank (or their own NotImplementedError)
            if name not in _announced:
                _announced.add(name)
                print(f"(exercise {name} is blank: {SWITCH} is set, so {_source()} runs in its place)")
            return _solution(name)(*args, **kwargs)

        run.exercise = name
        return run

    return mark


def _source():
    value = os.environ[SWITCH]
    return "notebooks/solutions.py" if value == "1" else value


def _solution(name):
    """The function ``name`` of this file, or of the .py file the switch names."""
    value = os.environ[SWITCH]
    if value == "1":
        return globals()[name]
    spec = importlib.util.spec_from_file_location("planted_solutions", value)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


# notebook 1: BigramWithBias.backward
def bigram_bias_backward(self, dlogits):
    V = dlogits.shape[-1]
    # forward: logits = W[ids] + b, b added at every one of the B·T positions, so its gradient sums over them
    self.bias.accumulate(dlogits.reshape(-1, V).sum(axis=0))  # (V,)
    return self.wte.backward(dlogits)  # None: token ids have no gradient


# notebook 2: ScaledSoftmax.backward
def scaled_softmax_backward(self, dp):
    # forward: p = softmax(u)
    du = softmax_backward(dp, self.p)  # (B, T, V)
    # forward: u = beta · z
    return self.beta * du  # (B, T, V)


# notebook 3: TiedLogits.backward
def tied_logits_backward(self, dz):
    V, C = self.wte.weight.shape
    # forward: z = e Wᵀ  (the output use of W)
    self.wte.weight.accumulate(dz.reshape(-1, V).T @ self.e.reshape(-1, C))  # (V, C)
    de = dz @ self.wte.weight.data  # (B, T, C)
    # forward: e = W[ids]  (the input use: scatter-adds de into the same gradient; None for the ids)
    return self.wte.backward(de)


# notebook 4: OneCausalHead.backward
def causal_head_backward(self, dy):
    # forward: y = A v
    dA = dy @ self.v.swapaxes(-1, -2)  # (B, T, T)
    dv = self.A.swapaxes(-1, -2) @ dy  # (B, T, hs)
    # forward: A = softmax(S)
    dS = softmax_backward(dA, self.A)  # (B, T, T)
    # forward: S = q kᵀ · scale + M; S_ij pairs query i with key j, so key j collects dS_ij over i: a transpose
    dq = dS @ self.k * self.scale  # (B, T, hs)
    dk = dS.swapaxes(-1, -2) @ self.q * self.scale  # (B, T, hs)
    # forward: q, k, v = projections of the same x, so their input gradients add
    return self.query.backward(dq) + self.key.backward(dk) + self.value.backward(dv)  # (B, T, C)


# notebook 5: MergeHeads.backward
def merge_heads_backward(self, dout):
    # forward: out = y.transpose(0, 2, 1, 3).reshape(B, T, C): undo the reshape, then the transpose (its own inverse)
    return dout.reshape(self.B, self.T, self.H, self.hs).transpose(0, 2, 1, 3)  # (B, H, T, hs)


# notebook 6: RMSNorm.backward
def rms_norm_backward(self, dy):
    # forward: y = w ⊙ xhat
    self.weight.accumulate((dy * self.xhat).reshape(-1, dy.shape[-1]).sum(axis=0))  # (C,)
    dxhat = dy * self.weight.data  # (B, T, C)
    # forward: xhat = x · rstd, rstd = (mean(x²) + eps)^(-1/2): LayerNorm's form without the mean term
    return (dxhat - self.xhat * (dxhat * self.xhat).mean(axis=-1, keepdims=True)) * self.rstd  # (B, T, C)


# notebook 7: SiLU.backward
def silu_backward(self, dy):
    # forward: y = x σ(x);  σ' = σ (1 - σ)
    return dy * self.sig * (1.0 + self.x * (1.0 - self.sig))  # (..., C)


# notebook 8: Rosenbrock.backward
def rosenbrock_backward(self, dout):
    x, y = self.theta.data[0], self.theta.data[1]
    # forward: f = (1 - x)² + 100 (y - x²)²
    dx = -2 * (1 - x) - 400 * x * (y - x * x)
    dy = 200 * (y - x * x)
    self.theta.accumulate(dout * xp.stack([dx, dy]))  # (2,)
    return None  # the module has no inputs


# notebook 9: the learning rate of the warmup-cosine schedule at step it
def warmup_cosine_lr(it, lr, min_lr, warmup_iters, lr_decay_iters):
    if it < warmup_iters:  # linear warmup, one step short of lr at its end
        return lr * (it + 1) / (warmup_iters + 1)
    if it >= lr_decay_iters:  # the floor
        return min_lr
    ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)  # in [0, 1)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


# notebook 10: top-k filtering at a temperature
def top_k_probs(logits, k, temperature):
    z = logits.astype(xp.float64) / temperature  # (B, V)
    kth = xp.sort(z, axis=-1)[:, -k][:, None]  # (B, 1) the k-th largest logit of each row
    z = xp.where(z < kth, -xp.inf, z)  # (B, V) everything below it can no longer be drawn
    return softmax(z, axis=-1)  # (B, V) renormalised over the k kept tokens

"""WarmupCosine: nanoGPT's learning-rate schedule — linear warmup, then a cosine down to a floor.

    it < warmup_iters:                 lr(it) = lr · (it + 1) / (warmup_iters + 1)
    warmup_iters <= it < lr_decay_iters:
                                       r = (it - warmup_iters) / (lr_decay_iters - warmup_iters)     in [0, 1)
                                       lr(it) = min_lr + ½ (1 + cos(π r)) (lr - min_lr)
    it >= lr_decay_iters:              lr(it) = min_lr
``it`` counts optimizer steps from 0; the value is meant for the step about to be taken. The warmup ends one
step short of lr and the cosine starts at lr; at it = lr_decay_iters the cosine would give exactly min_lr,
so the last branch starts there (it also makes warmup_iters = lr_decay_iters well defined: no decay).
ref:      nanoGPT train.py, get_lr; Loshchilov & Hutter 2017 (SGDR) for the cosine.
"""

import math
import numbers
from dataclasses import dataclass


@dataclass
class WarmupCosine:
    lr: float  # peak learning rate (units of the update), reached at the end of warmup; nanoGPT's learning_rate
    min_lr: float  # the floor the cosine decays to; ~lr/10 per Chinchilla, as nanoGPT
    warmup_iters: int  # steps of linear warmup: early Adam steps use a poor estimate of v, so start small
    lr_decay_iters: int  # step at which min_lr is reached; ~ the total number of steps, per Chinchilla

    def __post_init__(self):
        for name in ("lr", "min_lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
                raise ValueError(f"invalid {name} {value!r}: must be a number >= 0")
        for name in ("warmup_iters", "lr_decay_iters"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"invalid {name} {value!r}: must be an integer >= 0")
        if self.lr_decay_iters < self.warmup_iters:
            raise ValueError(f"lr_decay_iters {self.lr_decay_iters} is before the end of warmup_iters "
                             f"{self.warmup_iters}")

    def __call__(self, it):
        """The learning rate for step ``it`` (0-based), a Python float."""
        if isinstance(it, bool) or not isinstance(it, numbers.Integral) or it < 0:
            raise ValueError(f"invalid step {it!r}: must be an integer >= 0")
        if it < self.warmup_iters:
            return self.lr * (it + 1) / (self.warmup_iters + 1)
        if it >= self.lr_decay_iters:
            return float(self.min_lr)
        ratio = (it - self.warmup_iters) / (self.lr_decay_iters - self.warmup_iters)
        return self.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (self.lr - self.min_lr)

    def apply(self, optimizer, it):
        """Set every parameter group's lr to the value for step ``it`` (as nanoGPT does); return it."""
        lr = self(it)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

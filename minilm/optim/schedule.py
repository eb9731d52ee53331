"""Learning-rate schedules: a linear warmup, then a decay to a floor, the cosine (nanoGPT's) or a line (BERT's).

WarmupCosine, nanoGPT's:

    it < warmup_iters:                 lr(it) = lr · (it + 1) / (warmup_iters + 1)
    warmup_iters <= it < lr_decay_iters:
                                       r = (it - warmup_iters) / (lr_decay_iters - warmup_iters)     in [0, 1)
                                       lr(it) = min_lr + ½ (1 + cos(π r)) (lr - min_lr)
    it >= lr_decay_iters:              lr(it) = min_lr
``it`` counts optimizer steps from 0; the value is meant for the step about to be taken. The warmup ends one
step short of lr and the cosine starts at lr; at it = lr_decay_iters the cosine would give exactly min_lr,
so the last branch starts there (it also makes warmup_iters = lr_decay_iters well defined: no decay).
ref:      nanoGPT train.py, get_lr; Loshchilov & Hutter 2017 (SGDR) for the cosine.

WarmupLinear, BERT's and transformers' Trainer's (get_linear_schedule_with_warmup), step for step:
    it < warmup_iters:                 lr(it) = lr · it / warmup_iters                   (the first step's is 0)
    warmup_iters <= it < lr_decay_iters:
                                       r = (lr_decay_iters - it) / (lr_decay_iters - warmup_iters)    in (0, 1]
                                       lr(it) = min_lr + r (lr - min_lr)
    it >= lr_decay_iters:              lr(it) = min_lr
ref:      Devlin et al. 2019, appendix A.2 ("linear decay of the learning rate"); google-research/bert
          optimization.py; transformers.get_linear_schedule_with_warmup (min_lr = 0).
"""

import math
import numbers
from dataclasses import dataclass


@dataclass
class WarmupCosine:
    decay = "cosine"  # the name a run's --decay and a checkpoint's recorded schedule give it
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
        self._check_step(it)
        if it < self.warmup_iters:
            return self.lr * (it + 1) / (self.warmup_iters + 1)
        if it >= self.lr_decay_iters:
            return float(self.min_lr)
        ratio = (it - self.warmup_iters) / (self.lr_decay_iters - self.warmup_iters)
        return self.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (self.lr - self.min_lr)

    def _check_step(self, it):
        if isinstance(it, bool) or not isinstance(it, numbers.Integral) or it < 0:
            raise ValueError(f"invalid step {it!r}: must be an integer >= 0")

    def apply(self, optimizer, it):
        """Set every parameter group's lr to the value for step ``it`` (as nanoGPT does); return it."""
        lr = self(it)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr


@dataclass
class WarmupLinear(WarmupCosine):
    """The linear warmup and decay of BERT and transformers' Trainer (the module docstring gives lr(it)); its
    fields are WarmupCosine's."""

    decay = "linear"

    def __call__(self, it):
        """The learning rate for step ``it`` (0-based), a Python float."""
        self._check_step(it)
        if it < self.warmup_iters:
            return self.lr * it / self.warmup_iters
        if it >= self.lr_decay_iters:
            return float(self.min_lr)
        left = (self.lr_decay_iters - it) / (self.lr_decay_iters - self.warmup_iters)
        return self.min_lr + (self.lr - self.min_lr) * left


SCHEDULES = {kind.decay: kind for kind in (WarmupCosine, WarmupLinear)}  # a run's --decay

"""Optimizers, gradient clipping and the learning-rate schedule, each update rule written out in its module.

    from minilm import optim
    opt = optim.AdamW(optim.decay_groups(model, weight_decay=0.1), lr=6e-4, betas=(0.9, 0.95))
    schedule = optim.WarmupCosine(lr=6e-4, min_lr=6e-5, warmup_iters=100, lr_decay_iters=5000)
    for it in range(max_iters):
        schedule.apply(opt, it)
        ... forward, backward ...
        optim.clip_grad_norm(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()

May import: minilm.backend, minilm.nn (Parameter, and the model for decay_groups).
"""

from minilm.optim.adam import Adam, AdamW
from minilm.optim.clip import clip_grad_norm
from minilm.optim.optimizer import Optimizer, decay_groups
from minilm.optim.schedule import SCHEDULES, WarmupCosine, WarmupLinear
from minilm.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm", "decay_groups", "WarmupCosine", "WarmupLinear",
           "SCHEDULES"]

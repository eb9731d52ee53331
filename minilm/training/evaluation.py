"""Evaluation: a model's loss (and its objective's metric) on a split, in evaluation mode (dropout off).

estimate:     the mean of the per-batch losses over eval_iters random batches (objective.batch), as nanoGPT's
              estimate_loss: cheap, noisy, and what decides OUT/best
split_scores: the loss over every counted target of the whole split (objective.every_batch), each batch's
              mean weighted by its number of counted targets, so the figure is the mean over targets:
              exact, and for a masked LM over masks fixed by a seed, so it is the same every time
metric:       an objective may name one (a masked LM: masked accuracy); it is summed as (correct, counted)
              over the batches, correct being how many counted targets the logits rank first (argmax)
"""

import numpy as np

from minilm.nn import inference
from minilm.nn.loss import CrossEntropyLoss
from minilm.training.objectives import CausalLM


def _scored(model, batches, objective):
    """[(loss, targets counted, correct or None)] per batch, in evaluation mode (dropout off); correct: how many
    counted targets the logits rank first, for an objective with a metric (masked accuracy)."""
    model.eval()
    criterion, rows = CrossEntropyLoss(), []
    with inference():  # no backward follows: each layer drops its cache once it has run
        for inputs, targets in batches:
            logits = model(*inputs)
            rows.append((float(criterion(logits, targets)), int((targets != criterion.ignore_index).sum()),
                         objective.correct(logits, targets) if objective.metric else None))
    model.train()
    return rows


def _metric(rows):
    """The objective's metric over ``rows`` (correct / counted), or None for an objective without one."""
    return None if rows[0][2] is None else sum(r[2] for r in rows) / max(sum(r[1] for r in rows), 1)


def estimate(model, data, cfg, rng, objective=CausalLM()):
    """(mean cross-entropy over ``eval_iters`` random batches, the objective's metric over them or None)."""
    rows = _scored(model, (objective.batch(data, cfg.batch_size, cfg.block_size, rng)
                           for _ in range(cfg.eval_iters)), objective)
    return float(np.mean([loss for loss, _, _ in rows])), _metric(rows)


def estimate_loss(model, data, cfg, rng, objective=CausalLM()):
    """Mean cross-entropy over ``eval_iters`` random batches, in evaluation mode (dropout off)."""
    return estimate(model, data, cfg, rng, objective)[0]


def split_scores(model, data, cfg, objective=CausalLM()):
    """(mean cross-entropy over a whole split's counted targets, the objective's metric or None), every window
    in order (objective.every_batch, evaluation mode): exact where ``estimate`` samples, at the cost of one
    pass over the split (the val split: ~1 s at the CPU preset)."""
    rows = _scored(model, objective.every_batch(data, cfg.batch_size, cfg.block_size), objective)
    total, count = 0.0, 0
    for loss, counted, _ in rows:
        total += loss * counted
        count += counted
    return total / count, _metric(rows)


def split_loss(model, data, cfg, objective=CausalLM()):
    """Mean cross-entropy over a whole split (see split_scores)."""
    return split_scores(model, data, cfg, objective)[0]

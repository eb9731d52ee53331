"""Cross-entropy loss: log-softmax and negative log-likelihood fused over the last axis.

forward:  log p = log_softmax(logits),   valid_n = [target_n != ignore_index]
          loss = -(1 / N_valid) Σ_n valid_n · log p[n, target_n]        (the mean over counted positions)
backward: dlogits[n] = (p[n] - onehot(target_n)) · valid_n · dloss / N_valid      (llm.c's "p - onehot")
          The softmax Jacobian and the NLL's -1/p[target] cancel into this one line; fusing the two is
          both cheaper and exact where p[target] underflows (log p is computed directly, never log(p)).
shapes:   logits (..., V) e.g. (B, T, V); targets (...) integers, e.g. (B, T); loss a 0-d array in the
          dtype of logits; dlogits (..., V)
kept:     log p (..., V): the forward needs it anyway, and p = exp(log p) is the whole gradient, so
          backward costs one exp and the logits need not be kept (log p rather than p because the loss
          reads log p[target], exact even where p underflows to 0); the targets, to place the onehot; the
          valid mask, so ignored rows get exactly zero gradient; N_valid, the mean's divisor.
dtype:    everything runs in the dtype of the logits, the loss and dlogits included.
ignored:  targets equal to ``ignore_index`` (-100, as in torch) add nothing to the loss or the count, and
          need not be valid class ids. When every target is ignored torch returns NaN (0 / 0); we define
          the loss as 0 and the gradient as 0 — no targets, no loss — so a batch of pure padding cannot
          poison a training run.
ref:      torch.nn.CrossEntropyLoss (reduction="mean"); llm.c train_gpt2.c crossentropy_softmax_backward
"""

from minilm.backend import asarray, is_floating, to_numpy, xp
from minilm.nn.module import Module
from minilm.nn.softmax import log_softmax


class CrossEntropyLoss(Module):
    kept = ("targets", "valid", "n_valid", "logp",)  # what backward reads; dropped under inference()

    def __init__(self, ignore_index=-100):
        self.ignore_index = ignore_index

    def _check(self, logits, targets):
        if not is_floating(logits):
            raise TypeError(f"CrossEntropyLoss logits must be floating-point, got dtype {logits.dtype}")
        if not xp.issubdtype(targets.dtype, xp.integer):
            raise TypeError(f"CrossEntropyLoss targets must be integer class ids, got dtype {targets.dtype}")
        if logits.ndim == 0:
            raise ValueError("CrossEntropyLoss logits need a class axis, got a 0-d array")
        if targets.shape != logits.shape[:-1]:
            raise ValueError(f"CrossEntropyLoss targets shape {tuple(targets.shape)} does not match "
                             f"logits shape {tuple(logits.shape)} without its last (class) axis")
        V = logits.shape[-1]
        bad = (targets != self.ignore_index) & ((targets < 0) | (targets >= V))  # (...) bool
        if bad.any():
            first = int(to_numpy(targets[bad])[0])
            raise ValueError(f"target {first} out of range for {V} classes")

    def forward(self, logits, targets):
        targets = asarray(targets)  # ids from the host (a tokenizer, a batch) join the logits' backend
        self._check(logits, targets)
        self.targets = targets
        self.valid = targets != self.ignore_index  # (...) bool
        self.n_valid = int(self.valid.sum())
        self.logp = log_softmax(logits, axis=-1)  # (..., V)
        if self.n_valid == 0:
            return xp.zeros((), dtype=logits.dtype)  # no targets, no loss (torch: NaN)
        safe = xp.where(self.valid, targets, 0)  # (...) ignored positions read class 0, then are dropped
        picked = xp.take_along_axis(self.logp, safe[..., None], axis=-1)[..., 0]  # (...) log p[target]
        # where, not a multiply: an ignored row may hold NaN (a row of -inf logits), and NaN · 0 is NaN
        total = xp.where(self.valid, picked, 0).sum()
        return xp.asarray(-total / self.n_valid, dtype=logits.dtype)  # 0-d

    def backward(self, dloss=1.0):
        if getattr(dloss, "shape", ()) != ():
            raise ValueError(f"CrossEntropyLoss.backward expects a scalar dloss, got shape {dloss.shape}")
        logp = self.logp
        if self.n_valid == 0:
            return xp.zeros_like(logp)  # (..., V) the loss was the constant 0
        V = logp.shape[-1]
        # forward: loss = -(1/N_valid) Σ valid · log p[target],  log p = log_softmax(logits)
        # p - onehot, built in place in one (..., V) array: p, then 1 off each row's target entry
        dlogits = xp.exp(logp)  # (..., V) p
        rows = dlogits.reshape(-1, V)  # (N, V) a view: every position's row
        valid = self.valid.reshape(-1)  # (N,)
        targets = xp.where(valid, self.targets.reshape(-1), 0)  # (N,) ignored rows read class 0 ...
        rows[xp.arange(rows.shape[0]), targets] -= 1
        if self.n_valid < valid.size:
            # ... and are zeroed: assigned, not multiplied, as a NaN row times 0 stays NaN (copyto with where=,
            # not rows[~valid] = 0, which on a GPU must first count the mask's True entries on the host)
            xp.copyto(rows, 0, where=~valid[:, None])
        # a 0-d dloss array of another dtype would otherwise promote float32 gradients to float64
        dlogits *= xp.asarray(dloss, dtype=logp.dtype) / self.n_valid
        return dlogits

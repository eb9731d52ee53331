"""clip_grad_norm: scale every gradient together so that their joint L2 norm is at most max_norm.

    norm = √(Σ_p Σ_i g_pi²)                          one norm over all the parameters, as if one long vector
    if max_norm / (norm + 1e-6) < 1:   g ← g · max_norm / (norm + 1e-6)      for every gradient g
The direction of the whole gradient is kept and only its length capped, so one bad batch cannot throw the
weights far. The 1e-6 is torch's: the clipped norm lands just under max_norm.
returns:  the norm before clipping, as a Python float (what a training loop logs). A non-finite norm (an
          inf or nan gradient) is returned as it is and nothing is scaled, so the caller can skip the step.
numerics: each gradient's norm in its own dtype, then the norm of those norms, in torch's order.
          Gradients are scaled in place; parameters whose grad is None are left out, as in torch.
ref:      Pascanu et al. 2013, §3.2; torch.nn.utils.clip_grad_norm_
"""

import math
import numbers

from minilm.backend import xp
from minilm.nn.module import Parameter


def clip_grad_norm(params, max_norm):
    """Clip the gradients of ``params`` (Parameters, or a Module) in place; return their norm before clipping."""
    if isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real) or not 0 < max_norm < math.inf:
        raise ValueError(f"invalid max_norm {max_norm!r}: must be a finite number > 0")
    if hasattr(params, "parameters"):
        params = params.parameters()
    grads = []
    for param in params:
        if not isinstance(param, Parameter):
            raise TypeError(f"clip_grad_norm expects minilm.nn.Parameter, got {type(param).__name__}")
        if param.grad is not None:
            grads.append(param.grad)
    if not grads:
        return 0.0
    norms = xp.stack([xp.linalg.norm(g.reshape(-1)) for g in grads])  # (P,) one norm per gradient
    norm = float(xp.linalg.norm(norms))
    scale = clip_scale(norm, max_norm)
    if scale < 1:
        for g in grads:
            g *= scale
    return norm


def clip_scale(norm, max_norm):
    """The factor the gradients are multiplied by: max_norm / (‖g‖ + 1e-6) when that is below 1, else 1 (also
    for a non-finite norm, where torch would scale by 0 and turn inf into nan). ZeRO-1 applies it to a norm
    summed over the ranks (minilm.training.zero)."""
    scale = max_norm / (norm + 1e-6)
    return scale if scale < 1 and math.isfinite(norm) else 1.0

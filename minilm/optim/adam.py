"""Adam and AdamW: each coordinate steps by its gradient's running mean over its running RMS.

update, per parameter θ with gradient g; t counts this parameter's steps and is 1 on the first:
    Adam (L2):  g ← g + λ θ                           decay enters the gradient, so the moments rescale it
    AdamW:      θ ← θ - lr λ θ                        decoupled: decay bypasses the moments entirely
    m ← β1 m + (1 - β1) g                             first moment (running mean), zero before step 1
    v ← β2 v + (1 - β2) g²                            second moment (running mean square), zero before step 1
    m̂ = m / (1 - β1^t),   v̂ = v / (1 - β2^t)          bias correction: undoes the pull towards the zero start
    θ ← θ - lr m̂ / (√v̂ + ε)
first step: m̂ = g and v̂ = g², so every coordinate moves by lr g / (|g| + ε) ≈ lr sign(g), whatever |g| is.
why AdamW:  with L2 the decay λθ is divided by √v̂ like any gradient, so weights with large gradients are
            barely decayed; decoupled decay shrinks every weight by the same factor (1 - lr λ).
shapes:     m, v have θ's shape and dtype (float32 stays float32); the step count t is a Python int.
numerics:   in torch's order, so float64 results agree with torch.optim to rounding:
            denom = √v / √(1 - β2^t) + ε  (ε outside the correction of v, as torch),
            θ ← θ - (lr / (1 - β1^t)) · (m / denom).
ref:        Kingma & Ba 2015, Algorithm 1; Loshchilov & Hutter 2019, Algorithm 2 (AdamW, with torch's
            lr·λ for the schedule-scaled decay); torch.optim.Adam, torch.optim.AdamW
"""

import math
import numbers

from minilm.backend import xp
from minilm.optim.optimizer import Optimizer, check_at_least


class Adam(Optimizer):
    """Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0): L2 decay added to the gradient."""

    decoupled = False  # how weight decay enters: False adds λθ to g (L2); True shrinks θ directly (AdamW)
    state_arrays = ("exp_avg", "exp_avg_sq")  # m, v
    state_numbers = ("step",)  # t: this parameter's own count, as torch (a skipped step does not advance it)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self._work = {}  # (array type, shape, dtype) -> a scratch array, shared by parameters of that shape

    def check(self, group, where):
        check_at_least("learning rate", group["lr"], 0.0, where)
        check_at_least("eps", group["eps"], 0.0, where)
        check_at_least("weight_decay", group["weight_decay"], 0.0, where)
        betas = group["betas"]
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"{where}invalid betas {betas!r}: must be a pair (beta1, beta2)")
        for i, beta in enumerate(betas, start=1):
            if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not 0.0 <= beta < 1.0:
                raise ValueError(f"{where}invalid beta{i} {beta!r} in betas {tuple(betas)}: must be in [0, 1)")

    def update(self, param, grad, state, group):
        lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        theta = param.data
        if not state:
            state.update(step=0, exp_avg=xp.zeros_like(theta), exp_avg_sq=xp.zeros_like(theta))  # like θ
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        if decay != 0:
            if self.decoupled:
                theta *= 1 - lr * decay
            else:
                grad = grad + decay * theta  # like θ; a new array, so param.grad stays as backward left it
        # the same operations in the same order as the one-line forms in the docstring, but every
        # intermediate goes through one scratch array instead of a fresh array each (five per parameter)
        work = self._scratch_like(theta)
        m *= beta1
        m += xp.multiply(grad, 1 - beta1, out=work)  # (1 - β1) g
        v *= beta2
        work = xp.multiply(grad, grad, out=work)
        work *= 1 - beta2
        v += work  # (1 - β2) g²
        denom = xp.sqrt(v, out=work)  # like θ
        denom /= math.sqrt(1 - beta2**t)
        denom += eps
        step = xp.divide(m, denom, out=work)  # m / denom
        step *= lr / (1 - beta1**t)
        theta -= step

    def _scratch_like(self, theta):
        key = (type(theta), theta.shape, theta.dtype)
        if key not in self._work:
            self._work[key] = xp.empty_like(theta)
        return self._work[key]


class AdamW(Adam):
    """AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01): decoupled decay, torch's default."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

"""SGD with momentum (heavy ball or Nesterov), as torch.optim.SGD writes it.

update, per parameter θ with gradient g:
    g ← g + λ θ                                   weight decay (L2), when λ > 0
    b ← g                      on the first step  the buffer starts at g, not 0, so there is no bias to correct
    b ← μ b + (1 - τ) g        afterwards         μ momentum, τ dampening
    d = g + μ b  (nesterov)    or   d = b         Nesterov looks one momentum step ahead
    θ ← θ - lr d
With μ = 0 there is no buffer and the rule is plain gradient descent, θ ← θ - lr g.
shapes:   the buffer b ("momentum_buffer") has θ's shape and dtype.
note:     torch's momentum puts lr outside the buffer (b sums raw gradients); Sutskever et al. put it inside.
          The two agree for a fixed lr and differ when a schedule changes lr; we follow torch.
ref:      Sutskever et al. 2013, §2; torch.optim.SGD
"""

from minilm.optim.optimizer import Optimizer, check_at_least


class SGD(Optimizer):
    """SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False)."""

    state_arrays = ("momentum_buffer",)  # b; absent while momentum is 0

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, defaults)

    def check(self, group, where):
        check_at_least("learning rate", group["lr"], 0.0, where)
        check_at_least("momentum", group["momentum"], 0.0, where)
        check_at_least("dampening", group["dampening"], 0.0, where)
        check_at_least("weight_decay", group["weight_decay"], 0.0, where)
        if not isinstance(group["nesterov"], bool):
            raise ValueError(f"{where}invalid nesterov {group['nesterov']!r}: must be True or False")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"{where}nesterov needs momentum > 0 and dampening 0, got momentum "
                             f"{group['momentum']} and dampening {group['dampening']}")

    def update(self, param, grad, state, group):
        lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
        theta = param.data
        if decay != 0:
            grad = grad + decay * theta  # like θ; a new array, so param.grad stays as backward left it
        if momentum != 0:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = grad.astype(theta.dtype, copy=True)  # like θ
            else:
                state["momentum_buffer"] *= momentum
                state["momentum_buffer"] += (1 - group["dampening"]) * grad
            buf = state["momentum_buffer"]
            grad = grad + momentum * buf if group["nesterov"] else buf  # like θ
        theta -= lr * grad

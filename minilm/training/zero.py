"""ZeRO-1 (--zero1): each rank keeps AdamW's moments for 1/N of the parameters instead of all of them.

    θ, g flat: every parameter raveled and joined in the optimiser's order, P numbers, padded to N·S, S = ⌈P/N⌉
    rank r owns the slice [r·S, (r+1)·S)
    g_r = (Σ_ranks g)[r·S:(r+1)·S]           reduce-scatter: each rank receives the sum of its own slice only
    ‖g‖² = Σ_ranks ‖g_r‖²                    one number all-reduced: clip_grad_norm's global norm, its rule
                                             (optim.clip.clip_scale: max_norm / (‖g‖ + 1e-6) when below 1)
    θ_r ← AdamW(θ_r, g_r; m_r, v_r)         optim.AdamW itself, on the slice: m_r, v_r hold S numbers each
    θ = all-gather(θ_r)                      every rank receives every updated slice: equal weights again
Each coordinate takes AdamW's step from the same summed gradient, so the weights equal the unsharded run's to
rounding (the norm sums its squares in another order). The optimiser state per rank is 2·S numbers instead
of 2·P, ≈ 1/N. Reduce-scatter and all-gather move the bytes of one all-reduce (a ring all-reduce is exactly
these two halves), so the sharding costs no extra communication.

The slice cuts across parameters: the piece of a parameter inside it is a Parameter of its own (a 1-D view of
the slice) in that parameter's group (decayed or not), so AdamW runs unchanged, and a piece's step count t is
its parameter's (a parameter without a gradient skips the step on every rank, as unsharded).
Checkpoints: state_dict (a collective: every rank calls it) gathers the moments to rank 0 and returns what
the unsharded AdamW returns, so a checkpoint is the same whatever N and --zero1 were, and --resume loads it on
any number of ranks; load_state_dict reads that whole state on every rank and keeps its own slice.
Not built: the gradients stay whole on every rank until the reduce-scatter (ZeRO-2 shards them too), and the
reduce-scatter runs after the backward in one message, so --overlap does not apply under --zero1.
ref: Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models", §5.1 (P_os).
"""

import math

import numpy as np

from minilm.backend import xp
from minilm.nn.module import Parameter
from minilm.optim import AdamW
from minilm.optim.clip import clip_scale


class ZeroAdamW:
    """AdamW over ``params`` (Parameters or group dicts, as optim.AdamW takes) with its state sharded over the
    ranks of ``world``; ``step()`` also sums the gradients over the ranks and clips them to ``max_norm`` by their
    global norm (0: no clipping)."""

    def __init__(self, world, params, max_norm=0.0, **hyper):
        if world.size == 1:
            raise ValueError("--zero1 shards the optimiser's state over the ranks of an mpiexec job, and this run "
                             "has 1 process: launch it as mpiexec -n N (N > 1), or leave out --zero1")
        self.world, self.max_norm = world, max_norm
        self.whole = AdamW(params, **hyper)  # the groups and the checkpoint format; its own state stays empty
        self.params = [p for group in self.whole.param_groups for p in group["params"]]
        sizes = [int(p.data.size) for p in self.params]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])  # parameter i is flat[offsets[i]:offsets[i + 1]]
        self.shard = -(-int(self.offsets[-1]) // world.size)  # S = ⌈P / N⌉
        low, high = world.rank * self.shard, (world.rank + 1) * self.shard
        self.pieces = []  # (parameter index, start, stop within the flat vector), the parts inside [low, high)
        groups, index = [], {id(p): i for i, p in enumerate(self.params)}
        for group in self.whole.param_groups:
            pieces = []
            for param in group["params"]:
                i = index[id(param)]
                start, stop = max(low, self.offsets[i]), min(high, self.offsets[i + 1])
                if start < stop:
                    self.pieces.append((i, int(start), int(stop)))
                    pieces.append(Parameter(None))  # its data and grad are set to views of the slice each step
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": pieces})
        self.local = AdamW(groups, **hyper)  # positions follow self.pieces, group by group as they were made
        self.local_params = [p for group in self.local.param_groups for p in group["params"]]

    @property
    def param_groups(self):  # what a schedule sets each step's lr on
        return self.local.param_groups

    def step(self):
        """Reduce-scatter the gradients, clip them by the global norm, step AdamW on this rank's slice, all-gather
        the weights (module docstring)."""
        dtype = self.params[0].data.dtype
        flat = xp.zeros(self.shard * self.world.size, dtype=dtype)  # (N·S,) padded, where the gradients live
        for i, p in enumerate(self.params):
            if p.grad is not None:
                flat[self.offsets[i]:self.offsets[i + 1]] = p.grad.ravel()
        grad = self.world.reduce_scatter(flat)  # (S,) this rank's slice of Σ_ranks g
        if self.max_norm > 0:  # clip_grad_norm's rule, on the global norm
            scale = clip_scale(math.sqrt(self.world.sum(float((grad * grad).sum()))), self.max_norm)
            if scale < 1:
                grad *= scale
        low = self.world.rank * self.shard
        theta = xp.zeros(self.shard, dtype=dtype)  # (S,) this rank's slice of the weights, padded
        for i, start, stop in self.pieces:
            theta[start - low:stop - low] = self.params[i].data.ravel()[start - self.offsets[i]:stop - self.offsets[i]]
        for piece, (i, start, stop) in zip(self.local_params, self.pieces):
            piece.data = theta[start - low:stop - low]  # a view: AdamW's in-place update lands in theta
            piece.grad = grad[start - low:stop - low] if self.params[i].grad is not None else None
        self.local.step()
        weights = self.world.all_gather(theta)  # (N·S,) every rank's updated slice
        for i, p in enumerate(self.params):
            p.data[...] = weights[self.offsets[i]:self.offsets[i + 1]].reshape(p.shape)

    def state_dict(self):
        """On rank 0, what optim.AdamW.state_dict returns for the whole model (every rank's slice of the moments
        gathered); None on the others. A collective: every rank must call it."""
        dtype = self.params[0].data.dtype
        moments, steps, low = {}, {}, self.world.rank * self.shard
        for name in self.local.state_arrays:
            mine = xp.zeros(self.shard, dtype=dtype)
            for k, (i, start, stop) in enumerate(self.pieces):
                if k in self.local.state:
                    mine[start - low:stop - low] = self.local.state[k][name]
                    steps[i] = self.local.state[k]["step"]
            moments[name] = self.world.gather(mine)  # (N·S,) on rank 0
        steps = self.world.gather_objects(steps)
        if self.world.rank != 0:
            return None
        known = {i: step for part in steps for i, step in part.items()}
        self.whole.state = {i: {"step": known[i], **{name: moments[name][self.offsets[i]:self.offsets[i + 1]]
                                                     .reshape(self.params[i].shape)
                                                     for name in self.local.state_arrays}}
                            for i in sorted(known)}
        for whole, local in zip(self.whole.param_groups, self.local.param_groups):
            whole.update({k: v for k, v in local.items() if k != "params"})  # the lr of this step, as unsharded
        try:
            return self.whole.state_dict()
        finally:
            self.whole.state = {}  # the whole state lived on rank 0 only while it was copied out

    def load_state_dict(self, arrays, meta):
        """Take the whole-model state an AdamW (or a ZeroAdamW's state_dict) saved, checked by AdamW itself, and
        keep this rank's slice."""
        self.whole.load_state_dict(arrays, meta)
        for whole, local in zip(self.whole.param_groups, self.local.param_groups):
            local.update({k: v for k, v in whole.items() if k != "params"})
        self.local.state = {}
        for k, (i, start, stop) in enumerate(self.pieces):
            state = self.whole.state.get(i)
            if state is not None:
                cut = slice(start - self.offsets[i], stop - self.offsets[i])
                self.local.state[k] = {"step": state["step"], **{name: state[name].ravel()[cut].copy()
                                                                 for name in self.local.state_arrays}}
        self.whole.state = {}


def state_bytes(optimizer):
    """Bytes of optimiser state (the moments' arrays) this rank holds: an AdamW's, or a ZeroAdamW's slice of it,
    ≈ 1/N of the former."""
    optimizer = getattr(optimizer, "local", optimizer)
    return sum(value.nbytes for state in optimizer.state.values() for value in state.values()
               if hasattr(value, "nbytes"))

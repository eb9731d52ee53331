"""Overlap: each block's gradients are summed over the ranks while the blocks below it still run backward.

    the backward walks the blocks in reverse (a GPT: lm_head, ln_f, h.L-1, ..., h.0, the embeddings)
    block l's backward returns    ->  its gradients are final for this step: start Σ_ranks over bucket l
                                      (non-blocking: MPI's Iallreduce, or NCCL on a stream of its own) and go on
                                      to block l-1's backward
    the model's backward returns  ->  start the rest (embeddings, heads, final norms), then wait for every bucket
    g = Σ_ranks g_r bucket by bucket: per coordinate the same terms as one flat all-reduce. With two ranks
    that is the same sum to the bit (one addition), so overlap on and off give the same weights; with more,
    MPI may add them in another order for a bucket than for the flat message, which changes the last bits.

The hook is put on from outside: for the backward of a step's last micro-batch (the earlier ones only
accumulate locally, so each gradient is sent once a step) every block's bound ``backward`` is wrapped by an
instance attribute and unwrapped after, so neither layers nor models know that ranks exist. A block is an
item of a model's list of layers, which its backward walks in reverse: the GPT's and BERT's h.N, the tutorial
model's layers.N, Seq2Seq's transformer.encoder.N and transformer.decoder.N. A parameter that something
outside its block also holds (a tie) is final only at the end, so it joins the rest; the LSTM and RNN
language models (one recurrent module, no list of blocks) have the rest alone, a flat all-reduce after the
backward. A block whose backward runs twice in one step would have sent half a gradient: a RuntimeError.

What can hide: a bucket's sum runs while the blocks below compute only where something progresses it (a
GPU's communication stream, an MPI progress thread); MPICH on the CPU advances a non-blocking collective only
inside MPI calls, so there the sums mostly run at the wait. --no-overlap (TrainConfig.overlap = False) sends
one flat all-reduce after the backward instead.
ref: Li et al. 2020, "PyTorch Distributed", §3.2.3 (gradient bucketing, overlap with backward).
"""

import contextlib


def blocks(model):
    """(dotted name, module) of each item of a list of layers in ``model``, outermost only (h.0, not a list
    inside h.0), in registration order."""
    found = []
    for name, module in model.named_modules():
        if name.rpartition(".")[2].isdigit() and not any(name.startswith(outer + ".") for outer, _ in found):
            found.append((name, module))
    return found


class GradientSum:
    """How a step's gradients become their sum over ranks: "overlap" (a bucket per block, module docstring),
    "flat" (one all-reduce after the backward) or None (not here: one process, or ZeRO-1's reduce-scatter)."""

    def __init__(self, model, world, how):
        if how not in ("overlap", "flat", None):
            raise ValueError(f"how must be 'overlap', 'flat' or None, got {how!r}")
        self.model, self.world, self.how = model, world, how if world.size > 1 else None
        found = blocks(model)
        holders = {}  # id(parameter) -> the blocks whose modules hold it (None: a module outside every block)
        for name, module in model.named_modules():
            block = next((b for b, _ in found if name == b or name.startswith(b + ".")), None)
            for param_name, param in module.named_parameters():
                if "." not in param_name:  # held by this module itself, not by one of its children
                    holders.setdefault(id(param), set()).add(block)
        self.blocks = found  # (name, block), in registration order
        self.buckets = {name: [p for p in block.parameters() if holders[id(p)] == {name}] for name, block in found}
        bucketed = {id(p) for bucket in self.buckets.values() for p in bucket}
        self.rest = [p for p in model.parameters() if id(p) not in bucketed]

    def around(self, last):
        """A context for one micro-batch's backward: for the step's last, it leaves every .grad summed over the
        ranks (overlapped or flat); for the others (and for one process) it does nothing."""
        if not last or self.how is None:
            return contextlib.nullcontext()
        return self._overlapped() if self.how == "overlap" else self._flat()

    @contextlib.contextmanager
    def _flat(self):
        yield
        self.world.sum_gradients(self.model.parameters())

    @contextlib.contextmanager
    def _overlapped(self):
        started, sent = [], set()

        def hooked(name, backward):
            def backward_then_send(*args, **kwargs):
                dx = backward(*args, **kwargs)
                if name in sent:
                    raise RuntimeError(f"block {name}'s backward ran twice in one step, after its gradients were "
                                       f"sent: train with --no-overlap")
                sent.add(name)
                started.append(self.world.start_sum(self.buckets[name]))
                return dx
            return backward_then_send

        for name, block in self.blocks:
            block.backward = hooked(name, block.backward)  # an instance attribute over the class's method
        try:
            yield
        finally:  # on an error the sums already started are left unfinished: the command then aborts every
            # rank (World.abort), where waiting for them could hang on a rank that never sends its part
            for _, block in self.blocks:
                vars(block).pop("backward", None)  # the class's method again
        # a block whose backward did not run (none does today) is sent now, in the same order on every rank
        started += [self.world.start_sum(self.buckets[name]) for name, _ in self.blocks if name not in sent]
        started.append(self.world.start_sum(self.rest))
        self.world.finish_sums(started)

"""Threads: one step's micro-batches run at once, one per CPU core, each on a replica of the model.

    the rank's rows, cut into threads x grad_accum micro-batches; replica k takes [k·grad_accum, (k+1)·grad_accum)
    replica k:   forward, backward of (n_m / n_total) · loss_m for each of its pieces     (every k at once)
    g = Σ_k g_k                                                        then Σ_ranks, clip, AdamW, as distributed.py

The same sum as running the pieces one after another (distributed.py), grouped differently: the same update
to rounding. Why it pays on the CPU: NumPy runs each element-wise call on one core, and a BLAS product on
many; torch splits both over the cores. Splitting the *batch* instead keeps every core busy through the
whole forward and backward, element-wise work included, with BLAS held to one thread per replica (threads
x BLAS threads above the cores would fight for them; threadpoolctl sets it for the whole process, as NumPy's
pthreads OpenBLAS reads it, where an OpenMP build would need it per thread). NumPy releases the GIL inside
its ufuncs and BLAS calls, so the threads overlap everywhere but in the Python between calls.

A replica shares the model's weights (the very arrays: AdamW's in-place update reaches every replica, and
each step re-links them, so a load_state_dict or a cast is followed too) and has its own gradients, its own
caches (what a forward keeps for its backward) and its own dropout generators. Replica 0 is the model. The
generators of replica k ≥ 1 are derived afresh at each step from the model's own (their present state and
k): rows in different replicas never share a mask, and since the model's generators are in every
checkpoint, a resume with the same --threads continues exactly. Memory: the activations are split between
the replicas, not repeated, but each replica beyond the first holds a gradient the model's size. On the GPU
there is nothing to gain: one stream already runs each kernel over the whole device, so threads > 1 is
refused there. Measured in benchmarks/RESULTS.md (issue 29).
ref: the data parallelism of distributed.py, inside one process; torch's intra-op thread pool (at::parallel_for)
     is the other way to spread a step over cores, one operation at a time.
"""

import copy
from concurrent.futures import ThreadPoolExecutor, wait

from threadpoolctl import ThreadpoolController

from minilm.backend import CPU, backend_name
from minilm.nn.dropout import Dropout
from minilm.nn.loss import CrossEntropyLoss
from minilm.training.distributed import derived_generator


def run_pieces(model, pieces, counts, total):
    """Forward and backward of each (inputs, targets) piece on ``model``, adding into its .grad, each backward
    weighted by its share n_m / n_total of the batch's targets; returns Σ_m n_m · loss_m."""
    summed = 0.0
    for (inputs, targets), count in zip(pieces, counts):
        criterion = CrossEntropyLoss()
        summed += float(criterion(model(*inputs), targets)) * count
        model.backward(criterion.backward(count / max(total, 1)))
    return summed


def replica_of(model):
    """A copy of ``model``'s modules holding the same weight arrays, with no gradients and no caches."""
    memo = {id(param.data): param.data for param in model.parameters()}  # deepcopy's memo: shared, not copied
    memo.update({id(param.grad): None for param in model.parameters() if param.grad is not None})  # nor these
    for _, module in model.named_modules():  # nor what a forward kept for its backward
        memo.update({id(value): None for name in module.kept if (value := vars(module).get(name)) is not None})
    replica = copy.deepcopy(model, memo=memo)
    drop_caches(module for _, module in replica.named_modules())  # absent, as before any forward: not None
    return replica


def drop_caches(modules):
    for module in modules:
        for name in module.kept:
            module.__dict__.pop(name, None)


class Replicas:
    """``threads`` replicas of ``model`` (the model itself first) and the threads that run them (module doc).
    A replica follows the model's weights (the arrays, and the Parameters should a module be replaced), its
    train/eval mode and its dropout rates; other settings (keep_attention_weights) are copied when it is made."""

    def __init__(self, model, threads):
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        if threads > 1 and backend_name() != CPU:
            raise ValueError(f"--threads {threads} splits a step over CPU cores; the {backend_name()} backend runs "
                             f"each kernel over the whole device already: use --threads 1")
        self.model, self.threads = model, threads
        self.pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="minilm-replica") if threads > 1 else None
        self.blas = ThreadpoolController() if threads > 1 else None
        self.running = []  # the replicas' tasks of the last run: done, unless an interrupt cut its wait short
        self._make()

    def _make(self):
        self.copies = [replica_of(self.model) for _ in range(self.threads - 1)]
        everyone = [self.model, *self.copies]
        # listed once here: a step walks only the model's tree (twice, in _link, to see that nothing was replaced),
        # not every replica's (the walks are Python, which holds the GIL the other threads want)
        self.params = [replica.parameters() for replica in everyone]  # [replica][i]: the i-th Parameter
        self.modules = [[module for _, module in replica.named_modules()] for replica in everyone]
        self.dropouts = [[module for module in modules if isinstance(module, Dropout)] for modules in self.modules]

    def run(self, pieces, counts, total):
        """Σ_m n_m · loss_m over ``pieces`` (threads x grad_accum of them, in order), leaving the model's .grad
        the sum of every replica's: the gradient of Σ_m (n_m / n_total) loss_m."""
        if len(pieces) % self.threads:
            raise ValueError(f"{len(pieces)} micro-batches do not split over {self.threads} threads")
        if self.threads == 1:
            self.model.zero_grad()
            return run_pieces(self.model, pieces, counts, total)
        wait(self.running)  # a Ctrl-C in the last run's wait left a replica adding into .grad: let it end first
        self._link()
        per = len(pieces) // self.threads
        share = lambda k: (pieces[k * per:(k + 1) * per], counts[k * per:(k + 1) * per])  # noqa: E731
        with self.blas.limit(limits=1, user_api="blas"):
            self.running = [self.pool.submit(run_pieces, replica, *share(k), total)
                            for k, replica in enumerate(self.copies, start=1)]
            try:
                summed = run_pieces(self.model, *share(0), total)
            finally:
                wait(self.running)  # an error here still lets the replicas end before it is raised
            summed += sum(future.result() for future in self.running)  # re-raises a replica's error
        for param, *others in zip(*self.params):
            for other in others:
                if other.grad is not None:  # None: no piece reached it (a BERT's pooler under the masked LM)
                    param.accumulate(other.grad)
        for modules in self.modules[1:]:  # the replicas' caches, no longer needed: held no longer than the step
            drop_caches(modules)
        return summed

    def _link(self):
        """Point each replica at the model's present weights, train/eval mode and dropout (module doc), and
        start every gradient afresh."""
        modules = [module for _, module in self.model.named_modules()]
        if modules != self.modules[0] or self.model.parameters() != self.params[0]:  # a module or weight replaced
            self._make()
        for replica_params in self.params:
            for param in replica_params:
                param.grad = None
        for k, replica in enumerate(self.copies, start=1):
            for mine, their in zip(self.params[0], self.params[k]):
                their.data = mine.data
            if replica.training != self.model.training:
                replica.train(self.model.training)
            for mine, their in zip(self.dropouts[0], self.dropouts[k]):
                their.p = mine.p
                if mine.p > 0:  # a key of two numbers, where a rank's streams have one: never the same stream
                    their.rng = derived_generator(mine.rng, spawn_key=(0, k))

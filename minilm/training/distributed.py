"""Data parallelism: N processes, one model each, the same update as one process at the whole batch.

    every rank draws the same global batch of B rows from the one seeded stream (the Trainer's rng)
    rank r keeps rows [r·B/N, (r+1)·B/N), cut into grad_accum micro-batches of b = B/(N·grad_accum) rows
    n_total = Σ_ranks Σ_micro n_m                                  the global count of targets (all-reduced)
    each micro-batch m:  loss_m = CE(model(x_m), y_m)  (its mean),  backward of (n_m / n_total) · loss_m
    g = Σ_ranks Σ_m (n_m / n_total) ∇loss_m = ∇ [ (1/n_total) Σ_all targets −log p ]   (the all-reduce)

So the gradient is the whole batch's mean-loss gradient whatever N and grad_accum: a masked LM's or a
padded batch's uneven counts are weighted by their share, not averaged per rank. Every rank then clips and
steps AdamW on the same g from the same weights, so the weights stay equal without being sent; with --zero1
each rank steps only its slice of the weights and they are all-gathered after (zero.py).

The ranks talk through minilm.communicator: MPI through mpi4py (`pip install "minilm[distributed]"`, then
`mpiexec -n 2 minilm train ...`), found from the launcher's environment (a process not started by mpiexec never
imports mpi4py), and on the GPU backend NCCL for the gradients and weights. Gradients are summed in flat
buckets: by default one per block, each started as that block's backward ends and all waited for before
clipping (overlap.py); with --no-overlap one all-reduce after the backward. Under --grad-accum only
the last micro-batch's backward sends: the earlier ones accumulate locally. Rank 0 alone logs and writes
checkpoints; every rank evaluates (the same batches, the same weights, the same figures).

Resuming on another number of ranks: nothing a checkpoint holds depends on N. The global batches come from one
stream drawn whole on every rank and cut into rows afterwards, the update is the whole batch's, and the
optimiser state is saved whole (under --zero1 gathered to rank 0 first) in AdamW's own format. So a run saved
on N ranks continues on M, sharded or not, as the uninterrupted run would, to rounding (the sums over ranks
group the same numbers differently); B must split into M x grad_accum micro-batches, else the start names the
sizes. How the work is spread (--overlap, --zero1) belongs to the launch and is never read from the
checkpoint. Dropout is the exception: rank r > 0 draws its rows' masks from streams of its own, derived from
rank 0's generators and r (``own_dropout_streams``: rows on different ranks never share a mask, as nanoGPT's
seed offset per rank), and a checkpoint keeps every rank's, so a resume on the same N is exact with dropout
too, and one on another N continues the run in distribution (a new rank derives its streams afresh).
ref: Li et al. 2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel Training" (DDP);
     llm.c's train_gpt2.cu (MPI + NCCL); nanoGPT's gradient_accumulation_steps.
"""

import hashlib
import json

import numpy as np

from minilm.backend import asarray
from minilm.nn.dropout import Dropout
from minilm.nn.loss import CrossEntropyLoss
from minilm.training.run_state import restore_dropout_states


def micro_batch_rows(batch_size, world, grad_accum, threads=1):
    """b = B / (N · threads · grad_accum), the rows of one micro-batch; a ValueError names the sizes when B does
    not split evenly (uneven pieces would weight the same rows differently on different ranks)."""
    pieces = world.size * threads * grad_accum
    if batch_size % pieces:
        threaded = f" x threads {threads}" if threads > 1 else ""
        raise ValueError(f"batch_size {batch_size} does not split into {world.size} rank(s){threaded} x grad_accum "
                         f"{grad_accum} = {pieces} equal micro-batches: choose a multiple of {pieces}")
    return batch_size // pieces


def micro_batches(inputs, targets, world, grad_accum, threads=1):
    """[(inputs, targets)] of this rank: its B/N rows of the global batch, in threads x grad_accum pieces."""
    b = micro_batch_rows(len(targets), world, grad_accum, threads)
    first = world.rank * threads * grad_accum * b
    take = lambda a, i: None if a is None else a[first + i * b:first + (i + 1) * b]  # noqa: E731
    return [(tuple(take(x, i) for x in inputs), take(targets, i)) for i in range(threads * grad_accum)]


def step_loss(model, pieces, world, gradients, replicas=None):
    """The whole batch's mean loss, having run forward and backward over this rank's micro-batches ``pieces``
    [(inputs, targets)], each backward weighted by n_m / n_total (module doc); ``gradients`` (a GradientSum)
    wraps each backward, and leaves every .grad summed over the ranks after the last. ``replicas`` (threads.py),
    when it has more than one, runs the pieces on its threads instead, and the ranks' sum follows it, flat."""
    counts = [int((asarray(y) != CrossEntropyLoss().ignore_index).sum()) for _, y in pieces]
    total = world.sum(sum(counts))  # the global count of targets: the mean's divisor
    if replicas is not None and replicas.threads > 1:
        loss = replicas.run(pieces, counts, total)
        if gradients.how is not None:  # the replicas' sum is whole only now: one all-reduce, not one per block
            world.sum_gradients(model.parameters())
        return world.sum(loss) / max(total, 1)
    model.zero_grad()
    loss = 0.0
    for i, ((x, y), count) in enumerate(zip(pieces, counts)):
        criterion = CrossEntropyLoss()
        piece_loss = float(criterion(model(*x), y))
        if len(pieces) == 1 and world.size == 1:
            loss = piece_loss  # the whole batch: its mean as CE gives it, not re-weighted
        else:
            loss += piece_loss * count
        with gradients.around(last=i == len(pieces) - 1):
            model.backward(criterion.backward(count / max(total, 1)))  # its share of the whole batch's mean
    if len(pieces) > 1 or world.size > 1:
        loss = world.sum(loss) / max(total, 1)
    return loss


def own_dropout_streams(model, rank, saved_by_rank=None):
    """Rank r's Dropout generators: its own saved states if a checkpoint holds them (``saved_by_rank[r]``), else,
    for r > 0, streams derived from the generators' present states (rank 0's, which every rank holds alike) and
    r; rank 0 keeps its own, so one process is unchanged. Without this every rank would draw the same masks for
    its own rows: row i of each rank's shard dropped alike."""
    if saved_by_rank and rank < len(saved_by_rank):
        restore_dropout_states(model, saved_by_rank[rank])
        return
    if rank == 0:
        return
    for name, module in model.named_modules():
        if isinstance(module, Dropout) and getattr(module, "rng", None) is not None:
            module.rng = derived_generator(module.rng, spawn_key=(rank,))


def derived_generator(generator, spawn_key):
    """A Generator of the same kind as ``generator``, seeded by its present state and ``spawn_key``: the stream
    it leaves, as entropy (any bit generator's state is a JSON-able dict, hashed), spawned for the key."""
    bits = generator.bit_generator
    digest = hashlib.sha256(json.dumps(bits.state, sort_keys=True, default=str).encode()).digest()
    return np.random.Generator(type(bits)(np.random.SeedSequence(int.from_bytes(digest, "little"),
                                                                 spawn_key=spawn_key)))

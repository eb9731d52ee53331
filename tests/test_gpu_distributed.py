"""NCCL on the GPU (minilm.communicator.DeviceArrays): MPI's collectives, with the arrays never leaving the GPU.

A world of one over MPI.COMM_SELF makes the real NCCL calls (one rank sums with itself), so a single GPU shows
they are wired right: every gradient, slice and weight comes back as it went, through the overlapped and the
flat sums and ZeRO-1's reduce-scatter and all-gather, and a run through them ends with one process's weights.
With two GPUs, two ranks under mpiexec train to the weights of one process at the whole batch (float64).
Skipped, with the reason, without CuPy and a GPU: CI has neither.
"""

import shutil

import numpy as np
import pytest

from minilm import backend
from minilm.backend import GPU, asarray, to_numpy
from minilm.communicator import DeviceArrays, World
from minilm.nn.module import Parameter
from minilm.training.trainer import Trainer
from test_distributed import relative_gap, run
from test_gpu import TOLERANCES, assert_same, gpu_or_skip, tiny_run, weights  # noqa: F401 (an autouse fixture)


def world_of_one():
    from mpi4py import MPI

    world = World(MPI.COMM_SELF)
    world.connect_devices()
    assert isinstance(world.arrays, DeviceArrays)
    return world


def test_a_world_of_one_sums_slices_and_gathers_through_nccl():
    world = world_of_one()
    rng = np.random.default_rng(0)
    params = [Parameter(asarray(rng.standard_normal(shape).astype(np.float32))) for shape in ((3, 4), (5,), (2,))]
    for p in params[:2]:  # the last has no gradient: left out of the message, left None
        p.grad = asarray(rng.standard_normal(p.shape).astype(np.float32))
    sent = [to_numpy(p.grad) for p in params[:2]]
    world.finish_sums([world.start_sum(params[:1]), world.start_sum(params[1:])])  # two buckets, as overlap sends
    for p, before in zip(params, sent):
        np.testing.assert_array_equal(to_numpy(p.grad), before)
    assert params[2].grad is None
    flat = asarray(rng.standard_normal(12))  # float64
    for collective in (world.reduce_scatter, world.all_gather, world.gather):
        np.testing.assert_array_equal(to_numpy(collective(flat)), to_numpy(flat))
    with pytest.raises(TypeError, match="not int64"):
        world.reduce_scatter(asarray(np.arange(4)))


@pytest.mark.parametrize("how", ["overlap", "flat"])
def test_a_run_through_nccl_on_one_rank_ends_with_one_process_weights(tmp_path, how):
    alone = Trainer(*tiny_run(tmp_path, "alone", backend=GPU, max_iters=4), log=lambda *_: None)
    alone.train()
    ranked = Trainer(*tiny_run(tmp_path, "nccl", backend=GPU, max_iters=4), log=lambda *_: None,
                     world=world_of_one())
    ranked.gradients.how = how  # a world of one sends nothing by default; here every bucket goes through NCCL
    ranked.train()
    # a sum over one rank is its input; the embedding's atomic scatter-add may still differ in the last bits
    assert_same(weights(alone.model), weights(ranked.model), *TOLERANCES["float32"], what=f"NCCL, {how}")


def test_two_ranks_on_two_gpus_give_the_update_of_one_process(tmp_path):
    if backend.xp.cuda.runtime.getDeviceCount() < 2 or shutil.which("mpiexec") is None:
        pytest.skip("needs the GPU backend on 2 GPUs, and mpiexec")
    one, _ = run(tmp_path, "gpt", "one", backend=GPU)
    two, said = run(tmp_path, "gpt", "two", ranks=2, backend=GPU)
    zero, _ = run(tmp_path, "gpt", "zero", ranks=2, backend=GPU, zero1=True)
    assert "world 2 rank 1" in said
    # float64; the GPU's atomic scatter-add (the embedding) may order a sum differently from run to run
    assert relative_gap(one, two) < 1e-9
    assert relative_gap(one, zero) < 1e-9

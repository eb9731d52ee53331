"""minilm.communicator.DeviceArrays without a GPU: its calls, against a recording stand-in for CuPy's NCCL.

tests/test_gpu_distributed.py runs the real NCCL where a GPU is lent; CI has none, so here a stand-in with the
signatures of cupy.cuda.nccl, CuPy's streams and MPI's communicator records what DeviceArrays asks for and
moves the bytes itself, as rank ``rank`` of ``size`` whose fellow ranks all send zeros. It holds the wiring:
the GPU of the rank's place in its node, NCCL's id made by rank 0 alone and sent over MPI, each collective's
count (the slice S, not N·S), type and stream, the gather through the host to rank 0 alone, and an early sum
queued on its own stream after an event on the compute stream, which waits for each sum's end.
"""

import ctypes
import sys
import types

import numpy as np
import pytest

import minilm.communicator as communicator
from minilm.communicator import DeviceArrays, World
from minilm.nn.module import Parameter

NCCL_TYPES = dict(NCCL_FLOAT16=6, NCCL_FLOAT32=7, NCCL_FLOAT64=8)
BYTES = {6: 2, 7: 4, 8: 8}


class DeviceArray(np.ndarray):
    """A host array that answers .data.ptr as a CuPy array does."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)


class Stream:
    def __init__(self, recorder, name):
        self.recorder, self.name, self.ptr = recorder, name, id(self)
        recorder.streams[self.ptr] = name

    def record(self):
        self.recorder.events += 1
        event = f"{self.name}{self.recorder.events}"
        self.recorder.calls.append(("record", self.name, event))
        return event

    def wait_event(self, event):
        self.recorder.calls.append(("wait", self.name, event))


class Recorder:
    """Rank ``rank`` of ``size`` (``local_rank`` within its node, which shows it ``gpus`` GPUs): cupy.cuda's
    streams and NCCL, and MPI's communicator, each call written to ``calls``."""

    def __init__(self, rank=0, size=1, local_rank=0, gpus=1, available=True):
        self.rank, self.size, self.local_rank, self.gpus = rank, size, local_rank, gpus
        self.calls, self.streams, self.events = [], {}, 0
        self.compute = Stream(self, "compute")
        self.nccl = types.SimpleNamespace(available=available, NCCL_SUM=0, get_unique_id=self.unique_id,
                                          NcclCommunicator=self.communicator, **NCCL_TYPES)

    def unique_id(self):
        self.calls.append(("get_unique_id",))
        return (1,) * 128

    def communicator(self, size, unique_id, rank):
        recorder, offset = self, lambda count, kind: rank * count * BYTES[kind]

        class Communicator:
            def allReduce(self, send, receive, count, kind, op, stream):  # the others' zeros: in place, unchanged
                recorder.calls.append(("allReduce", count, kind, recorder.streams[stream]))

            def reduceScatter(self, send, receive, count, kind, op, stream):  # this rank's slice of the sum
                recorder.calls.append(("reduceScatter", count, kind, recorder.streams[stream]))
                ctypes.memmove(receive, send + offset(count, kind), count * BYTES[kind])

            def allGather(self, send, receive, count, kind, stream):  # this rank's part in its place, zeros around
                recorder.calls.append(("allGather", count, kind, recorder.streams[stream]))
                ctypes.memset(receive, 0, size * count * BYTES[kind])
                ctypes.memmove(receive + offset(count, kind), send, count * BYTES[kind])

        self.calls.append(("NcclCommunicator", size, rank))
        return Communicator()

    # MPI's communicator
    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size

    def Split_type(self, kind):
        return types.SimpleNamespace(Get_rank=lambda: self.local_rank, Free=lambda: self.calls.append(("Free",)))

    def bcast(self, value, root):
        self.calls.append(("bcast", root, value is not None))
        return (1,) * 128  # what rank 0 sent

    def Gather(self, send, receive, root):
        self.calls.append(("Gather", root, receive is None))
        if receive is not None:
            receive[...] = 0
            receive[self.rank * send.size:(self.rank + 1) * send.size] = send


@pytest.fixture
def recorder(monkeypatch):
    def make(**kwargs):
        rec = Recorder(**kwargs)
        cuda = types.SimpleNamespace(
            runtime=types.SimpleNamespace(getDeviceCount=lambda: rec.gpus), get_current_stream=lambda: rec.compute,
            Stream=lambda non_blocking: Stream(rec, "side"),
            Device=lambda index: types.SimpleNamespace(use=lambda: rec.calls.append(("device", index))))
        monkeypatch.setattr(communicator, "xp", types.SimpleNamespace(
            cuda=cuda, empty=lambda n, dtype: np.empty(n, dtype).view(DeviceArray),
            concatenate=lambda arrays: np.concatenate(arrays).view(DeviceArray)))
        monkeypatch.setattr(communicator, "_mpi", lambda: types.SimpleNamespace(COMM_TYPE_SHARED=1))
        monkeypatch.setitem(sys.modules, "cupy", types.ModuleType("cupy"))
        binding = types.ModuleType("cupy.cuda")  # without .nccl when CuPy has no binding at all
        if rec.nccl.available is not None:
            binding.nccl = rec.nccl
        monkeypatch.setitem(sys.modules, "cupy.cuda", binding)
        return rec
    return make


def connected(rec):
    world = World(rec)
    world.arrays = DeviceArrays(rec)
    rec.calls.clear()
    return world


@pytest.mark.parametrize("place, device, setup", [
    (dict(rank=0, size=1), 0, [("get_unique_id",), ("bcast", 0, True)]),
    (dict(rank=1, size=2, local_rank=1, gpus=2), 1, [("bcast", 0, False)]),  # the id comes from rank 0
    (dict(rank=3, size=4, local_rank=1, gpus=1), 0, [("bcast", 0, False)]),  # a launcher showing each rank one GPU
    (dict(rank=2, size=4, local_rank=0, gpus=4), 0, [("bcast", 0, False)]),  # the first rank of the second node
], ids=["alone", "second-rank-second-gpu", "one-gpu-shown-per-rank", "second-node"])
def test_a_rank_takes_its_gpu_in_its_node_and_the_id_rank_0_made(recorder, place, device, setup):
    rec = recorder(**place)
    DeviceArrays(rec)
    # the GPU first: before NCCL, and before the rank makes any array
    assert rec.calls == [("device", device), ("Free",), *setup, ("NcclCommunicator", place["size"], place["rank"])]


def test_an_early_sum_waits_for_its_gradients_and_the_compute_stream_waits_for_each_sum(recorder):
    world = connected(recorder(rank=1, size=2, local_rank=1, gpus=2))
    params = [Parameter(np.zeros(shape, np.float32)) for shape in ((2, 3), (4,))]
    for p in params:
        p.grad = np.arange(p.data.size, dtype=np.float32).reshape(p.shape)
    world.finish_sums([world.start_sum(params[:1]), world.start_sum(params[1:])])
    assert world.comm.calls == [
        ("record", "compute", "compute1"), ("wait", "side", "compute1"), ("allReduce", 6, 7, "side"),
        ("record", "side", "side2"),
        ("record", "compute", "compute3"), ("wait", "side", "compute3"), ("allReduce", 4, 7, "side"),
        ("record", "side", "side4"),
        ("wait", "compute", "side2"), ("wait", "compute", "side4")]  # every bucket's end, not only the last
    np.testing.assert_array_equal(params[0].grad, np.arange(6, dtype=np.float32).reshape(2, 3))


@pytest.mark.parametrize("rank", [0, 1])
def test_zero1s_collectives_send_the_slice_count_on_the_compute_stream_and_gather_through_the_host(recorder, rank):
    world = connected(recorder(rank=rank, size=2, local_rank=rank, gpus=2))
    flat = np.arange(6.0).view(DeviceArray)  # N·S = 2·3 numbers
    np.testing.assert_array_equal(world.reduce_scatter(flat), flat[3 * rank:3 * rank + 3])  # Σ with the zeros
    part = np.array([7.0, 8.0, 9.0]).view(DeviceArray)
    np.testing.assert_array_equal(world.all_gather(part), [7, 8, 9, 0, 0, 0] if rank == 0 else [0, 0, 0, 7, 8, 9])
    gathered = world.gather(part)
    assert (gathered is None) == (rank == 1)  # rank 0 alone receives; no rank holds N·S on its GPU for it
    assert world.comm.calls == [("reduceScatter", 3, 8, "compute"), ("allGather", 3, 8, "compute"),
                                ("Gather", 0, rank == 1)]
    with pytest.raises(ValueError, match="splits 5 numbers into 2 equal slices"):
        world.reduce_scatter(np.arange(5.0).view(DeviceArray))
    with pytest.raises(TypeError, match="float16, float32 or float64 arrays here, not int64"):
        world.all_gather(np.arange(4).view(DeviceArray))


@pytest.mark.parametrize("available", [False, None], ids=["libnccl-not-loaded", "no-binding"])
def test_a_gpu_run_without_nccl_stops_at_the_start_naming_why(recorder, available):
    with pytest.raises(RuntimeError, match="sums gradients with NCCL, which CuPy cannot load: install NCCL"):
        DeviceArrays(recorder(available=available))

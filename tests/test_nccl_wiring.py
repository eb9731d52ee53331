"""minilm.communicator.DeviceArrays without a GPU: its calls, against a recording stand-in for CuPy's NCCL.

tests/test_gpu_distributed.py runs the real NCCL where a GPU is lent; CI has none, so here a stand-in with the
signatures of cupy.cuda.nccl and CuPy's streams records what DeviceArrays asks for and moves the bytes itself.
It holds the wiring: one GPU per rank of a node, NCCL's id from rank 0 over MPI, each collective's pointers,
count and NCCL type, and an early sum queued on its own stream after an event on the compute stream, which
waits for the sum's end before the gradients are read.
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


class Recorder:
    """cupy.cuda's streams and NCCL, and MPI's communicator of one node, writing each call to ``calls``."""

    def __init__(self, ranks_on_node=1, gpus=1, available=True):
        self.calls, self.ranks_on_node, self.gpus = [], ranks_on_node, gpus
        self.compute = self.Stream(self, "compute")
        self.nccl = types.SimpleNamespace(available=available, NCCL_SUM=0, get_unique_id=lambda: (1,) * 128,
                                          NcclCommunicator=self.communicator, **NCCL_TYPES)

    class Stream:
        def __init__(self, recorder, name="side", non_blocking=True):
            self.recorder, self.name, self.ptr = recorder, name, id(self)

        def record(self):
            self.recorder.calls.append(("record", self.name))
            return self.name

        def wait_event(self, event):
            self.recorder.calls.append(("wait", self.name, event))

    def communicator(self, size, unique_id, rank):
        recorder = self

        class Communicator:
            def rank_id(self):
                return rank

            def allReduce(self, send, receive, count, kind, op, stream):  # a world of one: the sum is the input
                recorder.calls.append(("allReduce", count, kind, "side" if stream != recorder.compute.ptr else ""))

            def reduceScatter(self, send, receive, count, kind, op, stream):
                recorder.calls.append(("reduceScatter", count, kind))
                ctypes.memmove(receive, send, count * BYTES[kind])

            def allGather(self, send, receive, count, kind, stream):
                recorder.calls.append(("allGather", count, kind))
                ctypes.memmove(receive, send, count * BYTES[kind])

        self.calls.append(("NcclCommunicator", size, unique_id[0], rank))
        return Communicator()

    # MPI's communicator: one rank, on a node of ranks_on_node
    def Get_rank(self):
        return 0

    def Get_size(self):
        return 1

    def Split_type(self, kind):
        return types.SimpleNamespace(Get_rank=lambda: 0, Get_size=lambda: self.ranks_on_node)

    def bcast(self, value, root):
        self.calls.append(("bcast", root))
        return value


@pytest.fixture
def recorder(monkeypatch):
    def make(**kwargs):
        rec = Recorder(**kwargs)
        cuda = types.SimpleNamespace(
            runtime=types.SimpleNamespace(getDeviceCount=lambda: rec.gpus), get_current_stream=lambda: rec.compute,
            Stream=lambda non_blocking: Recorder.Stream(rec, non_blocking=non_blocking),
            Device=lambda index: types.SimpleNamespace(use=lambda: rec.calls.append(("device", index))))
        monkeypatch.setattr(communicator, "xp", types.SimpleNamespace(
            cuda=cuda, empty=lambda n, dtype: np.empty(n, dtype).view(DeviceArray),
            concatenate=lambda arrays: np.concatenate(arrays).view(DeviceArray)))
        monkeypatch.setattr(communicator, "_mpi", lambda: types.SimpleNamespace(COMM_TYPE_SHARED=1))
        monkeypatch.setitem(sys.modules, "cupy", types.ModuleType("cupy"))
        monkeypatch.setitem(sys.modules, "cupy.cuda", types.SimpleNamespace(nccl=rec.nccl))
        return rec
    return make


def test_the_rank_takes_its_gpu_and_nccl_its_id_from_rank_0_over_mpi(recorder):
    rec = recorder()
    DeviceArrays(rec)
    assert rec.calls == [("device", 0), ("bcast", 0), ("NcclCommunicator", 1, 1, 0)]  # the GPU before any array


def test_an_early_sum_waits_for_its_gradients_and_the_compute_stream_waits_for_the_sum(recorder):
    rec = recorder()
    world = World(rec)
    world.arrays = DeviceArrays(rec)
    rec.calls.clear()
    params = [Parameter(np.zeros(shape, np.float32)) for shape in ((2, 3), (4,))]
    for p in params:
        p.grad = np.arange(p.data.size, dtype=np.float32).reshape(p.shape)
    world.finish_sums([world.start_sum(params[:1]), world.start_sum(params[1:])])
    assert rec.calls == [("record", "compute"), ("wait", "side", "compute"), ("allReduce", 6, 7, "side"),
                         ("record", "side"),
                         ("record", "compute"), ("wait", "side", "compute"), ("allReduce", 4, 7, "side"),
                         ("record", "side"),
                         ("wait", "compute", "side"), ("wait", "compute", "side")]
    np.testing.assert_array_equal(params[0].grad, np.arange(6, dtype=np.float32).reshape(2, 3))


def test_zero1s_collectives_send_the_slice_count_and_type_of_their_arrays(recorder):
    rec = recorder()
    world = World(rec)
    world.arrays = DeviceArrays(rec)
    flat = np.arange(6.0).view(DeviceArray)
    for collective in (world.reduce_scatter, world.all_gather, world.gather):
        np.testing.assert_array_equal(collective(flat), flat)
    assert [call for call in rec.calls if call[0] in ("reduceScatter", "allGather")] == \
        [("reduceScatter", 6, 8), ("allGather", 6, 8), ("allGather", 6, 8)]
    with pytest.raises(TypeError, match="float16, float32 or float64 arrays here, not int64"):
        world.reduce_scatter(np.arange(4).view(DeviceArray))


@pytest.mark.parametrize("case, message", [
    (dict(ranks_on_node=3, gpus=2), "3 ranks on this node share 2 GPU\\(s\\).*at most 2 rank\\(s\\) per node"),
    (dict(available=False), "CuPy cannot load it"),
])
def test_a_gpu_run_that_nccl_cannot_serve_stops_at_the_start_naming_why(recorder, case, message):
    with pytest.raises(RuntimeError, match=message):
        DeviceArrays(recorder(**case))

"""The communicator: what the ranks of a data-parallel run (training/distributed.py) say to each other.

    sum(value)                   Σ_ranks of a number (a count of targets, a loss, a squared norm)
    start_sum(params), finish_sums(started)
                                 Σ_ranks of gradients: begun now, waited for later (overlap.py)
    reduce_scatter(flat)         (Σ_ranks flat)[r·S:(r+1)·S], flat of N·S numbers   ZeRO-1's gradients (zero.py)
    all_gather(part), gather(part)   every rank's S numbers joined in rank order      ZeRO-1's weights and state
    agree(facts), gather_objects(value), barrier(), abort(code)

Two engines move the arrays, and the backend decides which: the gradients and weights travel where they live.
- NumPy: MPI through mpi4py, on the host arrays themselves (MPICH or Open MPI, started by mpiexec).
- the GPU: NCCL (minilm.backend.nccl), GPU to GPU, its communicator set up over MPI as llm.c does (rank 0
  makes NCCL's unique id, MPI broadcasts it). Each rank uses the GPU of its rank within its node (modulo the
  GPUs it sees). A sum started early (overlap) runs on a CUDA stream of its own, after an event that marks
  its gradients written, and the wait makes the compute stream wait for it: the host never stops. A gather to
  rank 0 (a checkpoint's sharded optimiser state) goes through the host: NCCL has none.
Everything else (the numbers above, the options each rank runs, objects to rank 0) goes over MPI either way.
A rank that dies ends the job through the launcher; one that hangs would hold the others in their waits for
ever, so every wait here runs under a watchdog (watchdog.py): MINILM_RANK_TIMEOUT seconds, default 600.
The GPU engine is written against ``xp.cuda`` (streams, events, devices) and the binding the backend hands
it, so the backend stays the one module that names the GPU library (DESIGN.md).
ref: the MPI standard, 4.0, ch. 6 (collectives); NCCL's user guide, "Using NCCL with MPI"; llm.c's
     train_gpt2.cu (multi_gpu_config_init).
"""

import json
import os

import numpy as np

from minilm.backend import GPU, asarray, backend_name, to_numpy, xp
from minilm.backend import nccl as gpu_collectives
from minilm.watchdog import Watchdog, rank_timeout

LAUNCHERS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")  # set by MPICH's hydra, Open MPI, PMIx launchers


def launched_by_mpi():
    return any(name in os.environ for name in LAUNCHERS)


def _mpi():
    from mpi4py import MPI

    return MPI


class HostArrays:
    """MPI on host memory: the NumPy backend's arrays as they are (a GPU array would be copied through here)."""

    def __init__(self, comm):
        self.comm = comm

    def start_sum(self, flat):
        """Begin Σ_ranks ``flat`` in place (MPI Iallreduce); returns what ``wait`` takes."""
        flat = to_numpy(flat)  # kept alive until the wait
        return flat, self.comm.Iallreduce(_mpi().IN_PLACE, flat, op=_mpi().SUM)

    def wait(self, started):
        """Each started sum, done: its flat array, on the backend."""
        _mpi().Request.Waitall([request for _, request in started])
        return [asarray(flat) for flat, _ in started]

    def reduce_scatter(self, flat):
        part = np.empty(flat.size // self.comm.Get_size(), dtype=flat.dtype)
        self.comm.Reduce_scatter_block(to_numpy(flat), part, op=_mpi().SUM)
        return asarray(part)

    def all_gather(self, part):
        whole = np.empty(part.size * self.comm.Get_size(), dtype=part.dtype)
        self.comm.Allgather(to_numpy(part), whole)
        return asarray(whole)

    def gather(self, part):
        whole = np.empty(part.size * self.comm.Get_size(), dtype=part.dtype) if self.comm.Get_rank() == 0 else None
        self.comm.Gather(to_numpy(part), whole, root=0)
        return None if whole is None else asarray(whole)


class DeviceArrays:
    """NCCL on GPU memory (module docstring): the arrays never leave the device."""

    def __init__(self, comm):
        nccl = gpu_collectives()  # or a RuntimeError naming what to install
        self.nccl, self.mpi_comm = nccl, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        local = comm.Split_type(_mpi().COMM_TYPE_SHARED)  # the ranks on this rank's node
        # modulo: a launcher that shows each rank only its own GPU (CUDA_VISIBLE_DEVICES per rank) gives device 0;
        # two ranks left on one GPU are refused by NCCL itself, naming the duplicate
        xp.cuda.Device(local.Get_rank() % xp.cuda.runtime.getDeviceCount()).use()  # before this rank makes arrays
        local.Free()
        unique_id = comm.bcast(nccl.get_unique_id() if self.rank == 0 else None, root=0)
        self.nccl_comm = nccl.NcclCommunicator(self.size, unique_id, self.rank)
        self.stream = xp.cuda.Stream(non_blocking=True)  # the early sums' own stream
        self.types = {np.dtype(np.float16): nccl.NCCL_FLOAT16, np.dtype(np.float32): nccl.NCCL_FLOAT32,
                      np.dtype(np.float64): nccl.NCCL_FLOAT64}

    def _type(self, a):
        if a.dtype not in self.types:
            raise TypeError(f"NCCL sums float16, float32 or float64 arrays here, not {a.dtype}")
        return self.types[a.dtype]

    def start_sum(self, flat):
        written = xp.cuda.get_current_stream().record()  # after the kernels that wrote flat
        self.stream.wait_event(written)
        self.nccl_comm.allReduce(flat.data.ptr, flat.data.ptr, flat.size, self._type(flat), self.nccl.NCCL_SUM,
                                 self.stream.ptr)
        return flat, self.stream.record()

    def wait(self, started):
        compute = xp.cuda.get_current_stream()
        for _, done in started:
            compute.wait_event(done)  # the GPU waits; the host goes on queueing work
        return [flat for flat, _ in started]

    def reduce_scatter(self, flat):
        if flat.size % self.size:
            raise ValueError(f"reduce_scatter splits {flat.size} numbers into {self.size} equal slices: pad them")
        part = xp.empty(flat.size // self.size, dtype=flat.dtype)
        self.nccl_comm.reduceScatter(flat.data.ptr, part.data.ptr, part.size, self._type(flat), self.nccl.NCCL_SUM,
                                     xp.cuda.get_current_stream().ptr)
        return part

    def all_gather(self, part):
        whole = xp.empty(part.size * self.size, dtype=part.dtype)
        self.nccl_comm.allGather(part.data.ptr, whole.data.ptr, part.size, self._type(part),
                                 xp.cuda.get_current_stream().ptr)
        return whole

    def gather(self, part):
        """Through the host and MPI: NCCL has no gather, and an all-gather would put the whole of what ZeRO-1
        shards on every GPU at each checkpoint (the one place this is called, off the training step)."""
        return HostArrays(self.mpi_comm).gather(part)


class World:
    """The processes training together: rank 0..size-1 of an MPI communicator, or rank 0 of 1 alone. Arrays move
    through ``arrays``: HostArrays until ``connect_devices`` finds the GPU backend."""

    def __init__(self, comm=None, timeout=0.0):
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1
        self.arrays = HostArrays(comm) if comm is not None else None
        self.watchdog = Watchdog(comm, timeout)  # how long a wait in a collective may take (0: for ever)

    @classmethod
    def current(cls):
        """MPI's COMM_WORLD when launched by mpiexec with more than one process, else a world of one. Its ranks
        wait MINILM_RANK_TIMEOUT seconds at most in a collective (Watchdog)."""
        if not launched_by_mpi():
            return cls()
        try:
            from mpi4py import MPI
        except ImportError:
            raise RuntimeError('launched by mpiexec, but mpi4py is not installed: pip install "minilm[distributed]" '
                               '(mpi4py and an MPI library, mpich)') from None
        return cls(MPI.COMM_WORLD, rank_timeout()) if MPI.COMM_WORLD.Get_size() > 1 else cls()

    def connect_devices(self):
        """On the GPU backend, give this rank its GPU and open NCCL (DeviceArrays); on NumPy, or alone, nothing.
        Call it once the backend is chosen and before any array is made: the Trainer does."""
        if self.comm is not None and backend_name() == GPU and not isinstance(self.arrays, DeviceArrays):
            self.arrays = DeviceArrays(self.comm)

    def sum(self, value):
        """The sum over ranks of a number (a Python float or int)."""
        if self.comm is None:
            return value
        with self.watchdog.wait("a sum of numbers (a count of targets, a loss or a norm)"):
            return self.comm.allreduce(value)

    def sum_gradients(self, params):
        """Each parameter's .grad replaced by its sum over ranks (in place); a None grad, None on every rank
        (the same model runs the same code), is left alone."""
        self.finish_sums([self.start_sum(params)])  # one flat message, waited for at once

    def start_sum(self, params):
        """Start the sum over ranks of these parameters' gradients (one flat copy of them) without waiting for
        it; finish_sums waits and writes the sums back. A None grad is left out, as above."""
        grads = [p.grad for p in params if p.grad is not None]
        if self.comm is None or not grads:
            return grads, None
        return grads, self.arrays.start_sum(xp.concatenate([g.ravel() for g in grads]))

    def finish_sums(self, started):
        """Wait for every sum start_sum began (all of them, in the order started) and put each into its .grads."""
        sent = [(grads, handle) for grads, handle in started if handle is not None]
        if not sent:  # alone, or no parameter had a gradient: nothing was sent
            return
        with self.watchdog.wait("the sum of the gradients"):
            summed = self.arrays.wait([handle for _, handle in sent])
        for (grads, _), flat in zip(sent, summed):
            start = 0
            for g in grads:
                g[...] = flat[start:start + g.size].reshape(g.shape)
                start += g.size

    def reduce_scatter(self, flat):
        """This rank's slice r of Σ_ranks ``flat`` (N·S numbers on the backend): (S,)."""
        with self.watchdog.wait("ZeRO-1's reduce-scatter of the gradients"):
            return self.arrays.reduce_scatter(flat)

    def all_gather(self, part):
        """Every rank's ``part`` (S numbers on the backend), joined in rank order: (N·S,) on every rank."""
        with self.watchdog.wait("ZeRO-1's all-gather of the weights"):
            return self.arrays.all_gather(part)

    def gather(self, part):
        """all_gather's result on rank 0 alone (None on the others): what only the checkpoint writer needs."""
        with self.watchdog.wait("a gather to rank 0 (a checkpoint)"):
            return self.arrays.gather(part)

    def gather_objects(self, value):
        """[every rank's ``value``] (small, JSON-able) on rank 0; None on the others."""
        if self.comm is None:
            return [value]
        with self.watchdog.wait("a gather to rank 0 (a checkpoint)"):
            return self.comm.gather(value, root=0)

    def agree(self, facts, what):
        """ValueError on every rank unless every rank holds the same ``facts`` (a JSON-able dict): the ranks
        were launched with different options or data. The message names each key that differs."""
        if self.comm is None:
            return
        with self.watchdog.wait(f"the check that every rank runs the same {what}"):
            everyone = self.comm.allgather(json.dumps(facts, sort_keys=True, default=str))
        if len(set(everyone)) == 1:
            return
        first = json.loads(everyone[0])
        for rank, text in enumerate(everyone[1:], start=1):
            other = json.loads(text)
            differ = sorted(key for key in first.keys() | other.keys() if first.get(key) != other.get(key))
            if differ:
                shown = "; ".join(f"{key}: rank 0 has {first.get(key)!r}, rank {rank} {other.get(key)!r}"
                                  for key in differ[:5])
                raise ValueError(f"the {self.size} ranks must run the same {what}, and they differ: {shown}")

    def barrier(self):
        if self.comm is not None:
            with self.watchdog.wait("a barrier"):
                self.comm.Barrier()

    def abort(self, code):
        """End every rank now (a rank that raised would leave the others waiting in a collective)."""
        if self.comm is not None:
            self.comm.Abort(code)

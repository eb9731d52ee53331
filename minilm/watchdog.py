"""The watchdog: a rank that has waited too long for the others ends the whole job instead of hanging with it.

    MINILM_RANK_TIMEOUT=seconds   how long one wait inside a collective may take (default 600; 0: for ever)

The launcher notices a rank that dies (mpiexec ends the job, naming the signal), but not one that hangs: a
deadlock, a stopped process, a lost node. Every other rank then waits for it inside a collective, for ever.
So each wait the communicator makes runs inside ``Watchdog.wait(what)``, and a daemon thread looks, a few
times a second, at how long the current one has lasted. Past the limit it says which rank waited, in what
and for how long, and calls MPI's Abort, which ends every rank; the last checkpoint is whole, as after a kill
(checkpoints are swapped in atomically). The thread can act while the main thread is blocked because mpi4py
releases the GIL inside MPI calls and asks for MPI_THREAD_MULTIPLE. Ten minutes is torch.distributed's default
for NCCL's collectives (its CPU backend waits thirty): far above any step, evaluation or checkpoint save here,
so only a hang reaches it.
ref: torch.distributed.init_process_group(timeout=...); the MPI standard, 4.0, §12.4 (MPI_THREAD_MULTIPLE).
"""

import contextlib
import os
import sys
import threading
import time

RANK_TIMEOUT = "MINILM_RANK_TIMEOUT"
DEFAULT_RANK_TIMEOUT = 600.0  # seconds


def rank_timeout():
    """The seconds MINILM_RANK_TIMEOUT gives (DEFAULT_RANK_TIMEOUT when unset); a ValueError names a bad value."""
    text = os.environ.get(RANK_TIMEOUT, str(DEFAULT_RANK_TIMEOUT))
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also refuses nan
        raise ValueError(f"{RANK_TIMEOUT}={text!r}: give the seconds a rank may wait for the others, a number >= 0 "
                         f"(0: for ever)")
    return seconds


class Watchdog:
    """Ends the job (``comm.Abort``) once this rank has waited ``seconds`` inside one ``wait`` (0: never)."""

    def __init__(self, comm, seconds):
        self.comm, self.seconds = comm, seconds
        self.waiting, self.thread = None, None  # waiting: (what, since when), while inside a collective

    @contextlib.contextmanager
    def wait(self, what):
        """Around one wait for the other ranks; ``what`` names it in the message."""
        if self.seconds > 0 and self.thread is None:  # started at the first wait, so an unused world has none
            self.thread = threading.Thread(target=self._watch, name="minilm rank watchdog", daemon=True)
            self.thread.start()
        self.waiting = (what, time.monotonic())
        try:
            yield
        finally:
            self.waiting = None

    def _watch(self):
        while True:
            time.sleep(min(1.0, self.seconds / 10))
            waiting = self.waiting  # read once: the main thread may clear it meanwhile
            if waiting is not None and time.monotonic() - waiting[1] > self.seconds:
                print(f"minilm: rank {self.comm.Get_rank()} of {self.comm.Get_size()} waited {self.seconds:g} s in "
                      f"{waiting[0]} for the other ranks, so one of them has hung: ending the job ({RANK_TIMEOUT} "
                      f"sets the seconds; 0 waits for ever)", file=sys.stderr, flush=True)
                # mpiexec forwards a rank's output on its own time, and an abort drops what is still on its way
                # (seen with MPICH's hydra): a second for the message to reach the terminal first
                time.sleep(1.0)
                self.comm.Abort(1)
                return

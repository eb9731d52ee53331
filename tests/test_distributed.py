"""Data parallelism (minilm.training.distributed): N ranks at B/N rows, or grad_accum micro-batches, give the
update of one process at the whole batch B. In float64 with dropout off the weights after 20 AdamW steps agree
to 1e-10 relative, for a GPT (every target counted) and a masked LM (each piece counts its own masked tokens,
so uneven shares are weighted by their count), with the all-reduce overlapped with the backward or not, and
under ZeRO-1 (each rank holding half the optimiser state). A run saved on 2 ranks resumes on 1 and the other
way round; a rank killed mid-run ends the job instead of hanging, and so does one that hangs, once another has
waited MINILM_RANK_TIMEOUT seconds for it. The two-rank runs go through `mpiexec -n 2`
on CI's two cores."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from minilm.training.config import preset_for, with_changes
from minilm.files.checkpoint import load_checkpoint
from minilm.communicator import World
from minilm.training.distributed import micro_batch_rows
from minilm.training.overlap import GradientSum
from minilm.training.trainer import Trainer
from minilm.training.translator import Seq2SeqTrainer

TINY = dict(max_iters=20, eval_interval=20, eval_iters=1, batch_size=8, block_size=16, n_layer=2, n_head=2,
            n_embd=16, sample_tokens=0, warmup_iters=2, lr=3e-3, overwrite=True, seed=5)
RUN = textwrap.dedent("""
    import json, sys
    import numpy as np
    from minilm.backend import to_numpy
    from minilm.training.config import preset_for, with_changes
    from minilm.files.checkpoint import load_checkpoint
    from minilm.training.trainer import Trainer
    from minilm.training.zero import state_bytes

    model_type, out, changes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    cfg, shape = with_changes(preset_for(model_type), out=out, **{{**{TINY}, **changes}})
    trainer = Trainer(cfg, shape, log=lambda *_: None)
    trainer.model.to("float64")  # weights and gradients; the optimiser's moments follow them
    if cfg.resume:  # the checkpoint's float64 weights and moments again, now that the model holds float64
        trainer._restore(load_checkpoint(trainer.out / "latest"))
    trainer.train()
    if trainer.world.rank == 0:
        np.savez(out + ".npz", **{{k: to_numpy(v) for k, v in trainer.model.state_dict().items()}})
    print("world", trainer.world.size, "rank", trainer.world.rank, "loss", trainer.history[-1]["train"],
          "state_bytes", state_bytes(trainer.optimizer))
""")


def run(tmp_path, model_type, name, ranks=1, **changes):
    script = tmp_path / "run.py"
    script.write_text(RUN.format(TINY=TINY))
    out = str(tmp_path / name)
    command = [sys.executable, str(script), model_type, out, json.dumps(changes)]
    if ranks > 1:
        command = [shutil.which("mpiexec"), "-n", str(ranks), *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(np.load(out + ".npz")), done.stdout


def relative_gap(a, b):
    return max(np.abs(a[k] - b[k]).max() / np.abs(a[k]).max() for k in a)


@pytest.mark.parametrize("model_type", ["gpt", "bert"])
def test_two_ranks_overlapped_or_not_and_micro_batches_give_the_update_of_one_process(tmp_path, model_type):
    one, _ = run(tmp_path, model_type, "one")
    accumulated, _ = run(tmp_path, model_type, "accum", grad_accum=4)
    two, said = run(tmp_path, model_type, "two", ranks=2)  # overlap on: the default
    flat, _ = run(tmp_path, model_type, "flat", ranks=2, overlap=False)
    two_accumulated, _ = run(tmp_path, model_type, "two-accum", ranks=2, grad_accum=2)  # sent on the last only
    two_threaded, _ = run(tmp_path, model_type, "two-threads", ranks=2, threads=2)  # each rank's replicas first
    assert "world 2 rank 0" in said and "world 2 rank 1" in said  # two processes really trained
    assert relative_gap(one, accumulated) < 1e-10
    assert relative_gap(two, flat) < 1e-10
    assert relative_gap(one, two) < 1e-10
    assert relative_gap(one, two_accumulated) < 1e-10
    assert relative_gap(one, two_threaded) < 1e-10
    assert one["wte.weight" if model_type == "gpt" else "embeddings.wte.weight"].dtype == np.float64  # float64 really


def state_bytes_by_rank(said):
    """{rank: optimiser state bytes} from the lines the script prints."""
    return {int(words[3]): int(words[-1]) for words in (line.split() for line in said.splitlines())
            if words and words[0] == "world"}


def test_zero1_gives_the_unsharded_weights_with_half_the_optimiser_state_on_each_rank(tmp_path):
    one, said_one = run(tmp_path, "gpt", "one")
    zero, said = run(tmp_path, "gpt", "zero", ranks=2, zero1=True)
    zero_accumulated, _ = run(tmp_path, "gpt", "zero-accum", ranks=2, zero1=True, grad_accum=2)
    zero_threaded, _ = run(tmp_path, "gpt", "zero-threads", ranks=2, zero1=True, threads=2)
    assert relative_gap(one, zero) < 1e-10
    assert relative_gap(one, zero_accumulated) < 1e-10
    assert relative_gap(one, zero_threaded) < 1e-10  # the replicas' sum is what ZeRO-1 reduce-scatters
    whole, shards = state_bytes_by_rank(said_one)[0], state_bytes_by_rank(said)
    assert sorted(shards) == [0, 1] and sum(shards.values()) == whole  # the slices cut the state, all of it
    assert all(abs(part / whole - 1 / 2) < 0.01 for part in shards.values())  # 1/N, to the padding of one slice


@pytest.mark.parametrize("first, then", [(2, 1), (1, 2)])
def test_a_run_saved_on_some_ranks_resumes_on_another_number_as_if_never_stopped(tmp_path, first, then):
    """The checkpoint holds the whole optimiser state whatever wrote it (2 ranks under --zero1 gather it to rank
    0) and the global batches come from one stream whatever N is, so 2 -> 1 and 1 -> 2 ranks (the 2 sharded)
    end where one uninterrupted process does."""
    steps = dict(eval_interval=10, lr_decay_iters=20)  # one schedule for all: not max_iters of the first run
    straight, _ = run(tmp_path, "gpt", "straight", **steps)
    run(tmp_path, "gpt", "stopped", ranks=first, zero1=first > 1, max_iters=10, **steps)
    arrays, meta = load_checkpoint(tmp_path / "stopped" / "latest").optimizer_state
    shapes = {tuple(a.shape) for a in arrays.values()}
    assert len(arrays) == 2 * (len(straight) - 1) and (16, 16) in shapes  # m and v of every parameter but the tie
    assert {entry["step"] for entry in meta["state"].values()} == {10}
    resumed, _ = run(tmp_path, "gpt", "stopped", ranks=then, zero1=then > 1, resume=True, **steps)
    assert relative_gap(straight, resumed) < 1e-10


def test_zero1_without_ranks_to_shard_over_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"--zero1 shards the optimiser's state over the ranks .* has 1 process"):
        Trainer(*with_changes(preset_for("gpt"), out=str(tmp_path), zero1=True, **TINY), log=lambda *_: None)
    assert not (tmp_path / "latest").exists()


def test_a_batch_that_does_not_split_evenly_is_refused_naming_the_sizes(tmp_path):
    with pytest.raises(ValueError, match=r"batch_size 8 does not split into 1 rank\(s\) x grad_accum 3 = 3"):
        Trainer(*with_changes(preset_for("gpt"), out=str(tmp_path), grad_accum=3, **TINY), log=lambda *_: None)
    assert micro_batch_rows(12, World(), 3) == 4


MISMATCH = textwrap.dedent("""
    import os, sys
    from minilm.cli import main
    rank = int(os.environ["PMI_RANK"])
    lr = "0.001" if rank == 0 else "0.002"
    args = ["train", "--out", sys.argv[1], "--max-iters", "2", "--n-layer", "1", "--n-embd", "16",
            "--n-head", "2", "--block-size", "16", "--sample-tokens", "0", "--lr", lr]
    if sys.argv[2] == "dies" and rank == 1:
        args += ["--data", sys.argv[1] + "/no-such-file.txt"]  # rank 1 alone fails, before the ranks meet
    sys.exit(main(args))
""")


@pytest.mark.parametrize("case", ["differ", "dies"])
def test_ranks_that_disagree_or_die_end_the_job_with_a_named_error_not_a_hang(tmp_path, case):
    script = tmp_path / "mismatch.py"
    script.write_text(MISMATCH)
    done = subprocess.run([shutil.which("mpiexec"), "-n", "2", sys.executable, str(script), str(tmp_path / "out"),
                           case], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    if case == "differ":
        assert "the 2 ranks must run the same options and data, and they differ: --lr: rank 0 has 0.001, rank 1 0.002" \
            in done.stderr
    else:
        assert "no-such-file.txt" in done.stderr
    assert not (tmp_path / "out" / "latest").exists()  # nothing written by a job that never agreed


class Recording:
    """A world of two that sends nothing: it keeps a copy of each bucket's gradients when its sum starts, and at
    the wait notes every parameter whose gradient changed after it was sent (it would have been sent unfinished)."""

    rank, size = 0, 2

    def __init__(self):
        self.started, self.changed_after_sending = [], []

    def start_sum(self, params):
        self.started.append([(p, p.grad.copy()) for p in params if p.grad is not None])
        return self.started[-1]

    def finish_sums(self, started):
        assert started == self.started  # every bucket started is waited for
        self.changed_after_sending += [p for bucket in started for p, sent in bucket
                                       if not np.array_equal(p.grad, sent)]


FAMILIES = {  # model type -> (trainer, a small shape with two blocks per stack, the run's context)
    "gpt": (Trainer, dict(n_layer=2, n_head=2, n_embd=16), 16),
    "bert": (Trainer, dict(n_layer=2, n_head=2, n_embd=16), 16),
    "tutorial": (Trainer, dict(n_layer=2, n_head=2, n_embd=16, d_ff=24), 16),
    "lstm": (Trainer, dict(n_layer=2, n_embd=12, hidden_size=16), 16),
    "seq2seq": (Seq2SeqTrainer, dict(d_model=16, nhead=2, dim_feedforward=24, num_encoder_layers=2,
                                     num_decoder_layers=2), 80),
}


@pytest.mark.parametrize("grad_accum", [1, 2])
@pytest.mark.parametrize("model_type", list(FAMILIES))
def test_each_bucket_is_sent_once_a_step_after_its_last_gradient_is_written(tmp_path, model_type, grad_accum):
    """The overlap's hooks on every family the Trainer trains: one bucket per block (a GPT's h.1, h.0; Seq2Seq's
    decoder and encoder blocks) and the rest, each started on the step's last micro-batch only, none written
    to after its start, and every parameter in exactly one."""
    trainer_class, shape, block_size = FAMILIES[model_type]
    cfg, model = with_changes(preset_for(model_type), out=str(tmp_path), batch_size=4, block_size=block_size,
                              grad_accum=grad_accum, max_iters=1, eval_iters=1, sample_tokens=0, dropout=0.0,
                              **shape)
    trainer = trainer_class(cfg, model, log=lambda *_: None)
    world = Recording()
    trainer.gradients = GradientSum(trainer.model, world, "overlap")
    trainer.train_step()
    stacks = 2 if model_type == "seq2seq" else 0 if model_type == "lstm" else 1
    assert len(world.started) == 2 * stacks + 1  # two blocks per stack, and the rest, once each
    sent = [id(p) for bucket in world.started for p, _ in bucket]
    assert sorted(sent) == sorted(id(p) for p in trainer.model.parameters())
    assert world.changed_after_sending == []
    assert all(vars(block).get("backward") is None for _, block in trainer.gradients.blocks)  # unhooked after


KEEPS_TRAINING = textwrap.dedent("""
    import os, pathlib, sys
    from minilm.cli import main
    folder = pathlib.Path(sys.argv[1])
    (folder / f"pid-{os.environ['PMI_RANK']}").write_text(str(os.getpid()))
    sys.exit(main(["train", "--out", str(folder / "out"), "--max-iters", "100000", "--eval-interval", "5",
                   "--eval-iters", "1", "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--block-size", "16",
                   "--batch-size", "4", "--sample-tokens", "0"]))
""")


def two_ranks_past_their_first_checkpoint(tmp_path, **env):
    """(the mpiexec job, its two ranks' pids, its out folder) once rank 0 has written OUT/latest."""
    (tmp_path / "keeps_training.py").write_text(KEEPS_TRAINING)
    job = subprocess.Popen([shutil.which("mpiexec"), "-n", "2", sys.executable, str(tmp_path / "keeps_training.py"),
                            str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env={**os.environ, **env})
    out = tmp_path / "out"
    deadline = time.time() + 120
    while not (out / "latest").is_dir() and job.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert job.poll() is None, job.communicate()[0][-2000:]
    return job, [int((tmp_path / f"pid-{rank}").read_text()) for rank in (0, 1)], out


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_rank_killed_mid_run_ends_the_job_naming_the_signal_and_its_last_checkpoint_resumes(tmp_path):
    """kill -9 of rank 1 while both train: the launcher ends the job (rank 0, waiting in a collective for it, is
    stopped too, not left hanging) and says which process died and how; the checkpoint rank 0 wrote last
    still loads, and a resume on one process continues it."""
    job, ranks, out = two_ranks_past_their_first_checkpoint(tmp_path)
    time.sleep(0.5)  # into the steps after the first checkpoint
    killed = time.time()
    os.kill(ranks[1], signal.SIGKILL)
    try:
        said, _ = job.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        job.kill()
        pytest.fail(f"the job still ran 60 s after rank 1 was killed: {job.communicate()[0][-2000:]}")
    assert job.returncode != 0 and time.time() - killed < 60
    assert "signal 9" in said, said[-2000:]  # MPICH: "Killed (signal 9)"; Open MPI: "exited on signal 9"
    deadline = time.time() + 10
    while alive(ranks[0]) and time.time() < deadline:
        time.sleep(0.1)
    assert not alive(ranks[0])  # no rank left behind
    folder = out / "latest" if (out / "latest").is_dir() else out / "latest.previous"  # killed mid-save: the old
    step = load_checkpoint(folder).train_state["step"]
    resumed = subprocess.run([sys.executable, "-m", "minilm.cli", "train", "--out", str(out), "--resume",
                              "--max-iters", str(step + 2)], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert load_checkpoint(out / "latest").train_state["step"] == step + 2


def test_a_step_without_gradients_sends_nothing_and_does_not_fail():
    """A model whose every parameter is frozen (no .grad) has nothing to sum: no message, and no error from
    concatenating an empty list of gradients."""
    from minilm.nn.module import Parameter

    class TwoRanks:  # a communicator whose collectives must not be reached
        def Get_rank(self):
            return 0

        def Get_size(self):
            return 2

        def Allreduce(self, *args, **kwargs):
            raise AssertionError("an all-reduce was sent with no gradient to sum")

    World(TwoRanks()).sum_gradients([Parameter(np.zeros(3)), Parameter(np.ones((2, 2)))])


def test_each_rank_draws_dropout_masks_of_its_own_and_a_saved_rank_gets_its_own_back():
    """Rank 0 keeps the generators one process has; rank r > 0 gets streams derived from them and r, the same
    every time, so rows on different ranks are not dropped alike; a checkpoint's per-rank states win."""
    from minilm.models import GPT, GPTConfig
    from minilm.training.distributed import own_dropout_streams
    from minilm.training.run_state import dropout_states

    def first_mask(rank, saved=None):
        model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=0.5), rng=3)
        own_dropout_streams(model, rank, saved)
        return model, model.drop.rng.random(64)

    one_process = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=0.5), rng=3)
    np.testing.assert_array_equal(first_mask(0)[1], one_process.drop.rng.random(64))
    rank1, draws = first_mask(1)
    np.testing.assert_array_equal(draws, first_mask(1)[1])  # derived, not random: a restart derives the same
    assert not np.array_equal(draws, first_mask(0)[1]) and not np.array_equal(draws, first_mask(2)[1])
    saved = [dropout_states(one_process), dropout_states(rank1)]
    np.testing.assert_array_equal(first_mask(1, saved)[1], rank1.drop.rng.random(64))


def test_with_dropout_two_ranks_resume_exactly_and_keep_a_stream_each(tmp_path):
    """Dropout on: a 2-rank run stopped at step 10 and resumed on 2 ranks ends where the uninterrupted 2-rank run
    does, because the checkpoint holds each rank's dropout streams, and those streams differ."""
    steps = dict(eval_interval=10, lr_decay_iters=20, dropout=0.1)
    straight, _ = run(tmp_path, "gpt", "straight", ranks=2, **steps)
    run(tmp_path, "gpt", "stopped", ranks=2, max_iters=10, **steps)
    streams = load_checkpoint(tmp_path / "stopped" / "latest").train_state["dropout_rngs_by_rank"]
    assert len(streams) == 2 and streams[0] != streams[1] and streams[0].keys() == streams[1].keys()
    resumed, _ = run(tmp_path, "gpt", "stopped", ranks=2, resume=True, **steps)
    assert relative_gap(straight, resumed) < 1e-10


def test_a_rank_that_hangs_ends_the_job_after_the_timeout_naming_where_the_other_waited(tmp_path):
    """SIGSTOP of rank 1 (a hang: alive, silent): the launcher sees nothing wrong, so rank 0's watchdog ends the
    job once it has waited MINILM_RANK_TIMEOUT seconds in one collective, saying so; no rank is left behind and
    the last checkpoint still loads."""
    job, ranks, out = two_ranks_past_their_first_checkpoint(tmp_path, MINILM_RANK_TIMEOUT="3")
    stopped = time.time()
    os.kill(ranks[1], signal.SIGSTOP)
    try:
        said, _ = job.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.kill(ranks[1], signal.SIGKILL)
        job.kill()
        pytest.fail(f"the job still ran 60 s after rank 1 stopped: {job.communicate()[0][-2000:]}")
    assert job.returncode != 0 and 3 <= time.time() - stopped < 60
    assert "rank 0 of 2 waited 3 s in" in said and "one of them has hung" in said, said[-2000:]
    for pid in ranks:
        deadline = time.time() + 10
        while alive(pid) and time.time() < deadline:
            time.sleep(0.1)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"process {pid} was left behind")
    folder = out / "latest" if (out / "latest").is_dir() else out / "latest.previous"
    assert load_checkpoint(folder).train_state["step"] % 5 == 0


class Aborts:
    """A communicator of rank 0 of 2 whose Abort only records its code."""

    def __init__(self):
        self.codes = []

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 2

    def Abort(self, code):
        self.codes.append(code)


def test_the_watchdog_ends_the_job_past_its_limit_and_not_before(capfd):
    from minilm.watchdog import Watchdog

    patient, impatient = Aborts(), Aborts()
    with Watchdog(patient, 1.0).wait("a quick sum"):
        time.sleep(0.3)
    with Watchdog(impatient, 0.2).wait("a sum that never ends"):
        deadline = time.time() + 5
        while not impatient.codes and time.time() < deadline:  # the message, a second for it to travel, Abort
            time.sleep(0.05)
    time.sleep(0.3)  # past a wait: nothing more happens
    assert patient.codes == [] and impatient.codes == [1]
    assert "rank 0 of 2 waited 0.2 s in a sum that never ends for the other ranks" in capfd.readouterr().err
    forever = Watchdog(Aborts(), 0)
    with forever.wait("a sum"):
        pass
    assert forever.thread is None  # 0: no watchdog at all


@pytest.mark.parametrize("value, seconds", [(None, 600.0), ("30", 30.0), ("0", 0.0), ("-1", None), ("soon", None),
                                            ("nan", None)])
def test_minilm_rank_timeout_is_seconds_or_a_named_error(monkeypatch, value, seconds):
    from minilm.watchdog import rank_timeout

    if value is None:
        monkeypatch.delenv("MINILM_RANK_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("MINILM_RANK_TIMEOUT", value)
    if seconds is None:
        with pytest.raises(ValueError, match=f"MINILM_RANK_TIMEOUT='{value}': give the seconds"):
            rank_timeout()
    else:
        assert rank_timeout() == seconds

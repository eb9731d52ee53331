"""Data parallelism (minilm.training.distributed): N ranks at B/N rows, or grad_accum micro-batches, give the
update of one process at the whole batch B. In float64 with dropout off the weights after 20 AdamW steps agree
to 1e-10 relative, for a GPT (every target counted) and a masked LM (each piece counts its own masked tokens,
so uneven shares are weighted by their count). The two-rank runs go through `mpiexec -n 2` on CI's two cores."""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from minilm.training.config import preset_for, with_changes
from minilm.training.distributed import World, micro_batch_rows
from minilm.training.trainer import Trainer

TINY = dict(max_iters=20, eval_interval=20, eval_iters=1, batch_size=8, block_size=16, n_layer=1, n_head=2,
            n_embd=16, sample_tokens=0, warmup_iters=2, lr=3e-3, overwrite=True, seed=5)
RUN = textwrap.dedent("""
    import sys
    import numpy as np
    from minilm.backend import to_numpy
    from minilm.training.config import preset_for, with_changes
    from minilm.training.trainer import Trainer

    model_type, out, grad_accum = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cfg, shape = with_changes(preset_for(model_type), out=out, grad_accum=grad_accum, **{TINY})
    trainer = Trainer(cfg, shape, log=lambda *_: None)
    trainer.model.to("float64")  # weights and gradients; the optimiser's moments follow them
    trainer.train()
    if trainer.world.rank == 0:
        np.savez(out + ".npz", **{{k: to_numpy(v) for k, v in trainer.model.state_dict().items()}})
    print("world", trainer.world.size, "rank", trainer.world.rank, "loss", trainer.history[-1]["train"])
""")


def run(tmp_path, model_type, name, grad_accum=1, ranks=1):
    script = tmp_path / "run.py"
    script.write_text(RUN.format(TINY=TINY))
    out = str(tmp_path / name)
    command = [sys.executable, str(script), model_type, out, str(grad_accum)]
    if ranks > 1:
        command = [shutil.which("mpiexec"), "-n", str(ranks), *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(np.load(out + ".npz")), done.stdout


def relative_gap(a, b):
    return max(np.abs(a[k] - b[k]).max() / np.abs(a[k]).max() for k in a)


@pytest.mark.parametrize("model_type", ["gpt", "bert"])
def test_two_ranks_and_four_micro_batches_give_the_update_of_one_process(tmp_path, model_type):
    one, _ = run(tmp_path, model_type, "one")
    accumulated, _ = run(tmp_path, model_type, "accum", grad_accum=4)
    two, said = run(tmp_path, model_type, "two", ranks=2)
    assert "world 2 rank 0" in said and "world 2 rank 1" in said  # two processes really trained
    assert relative_gap(one, accumulated) < 1e-10
    assert relative_gap(one, two) < 1e-10
    assert one["wte.weight" if model_type == "gpt" else "embeddings.wte.weight"].dtype == np.float64  # float64 really


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

"""Bad input through the real `minilm` command (a subprocess): exit code 2, one line naming the problem, never a
traceback, and nothing saved lost (issue 25)."""

import errno
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from minilm.files.checkpoint import load_checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ["--block-size", "8", "--n-layer", "1", "--n-head", "2", "--n-embd", "8", "--batch-size", "2",
        "--eval-iters", "1", "--sample-tokens", "0"]


def minilm(*args, env=None, cwd=ROOT, driver=None):
    """Run `minilm ARGS` (or ``driver``, a script ending in cli.main) in a fresh interpreter."""
    command = [sys.executable, "-c", driver, *args] if driver else [sys.executable, "-m", "minilm.cli", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def assert_usage_error(run, *words):
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("minilm"), run.stderr
    for word in words:
        assert word in last, (word, last)


@pytest.mark.parametrize("option, value, named", [
    ("--max-iters", "-5", "argument --max-iters: must be >= 0, got -5"),
    ("--eval-interval", "0", "argument --eval-interval: must be >= 1, got 0"),
    ("--seed", "-1", "argument --seed: must be >= 0, got -1"),
    ("--dropout", "1.5", "argument --dropout: must be >= 0.0 and < 1.0"),
    ("--lr", "0", "argument --lr: must be > 0"),
    ("--n-head", "four", "argument --n-head: expected an integer, got 'four'"),
    ("--beta2", "nan", "argument --beta2: must be"),
])
def test_a_number_out_of_range_is_named_at_parse_time(option, value, named):
    assert_usage_error(minilm("train", f"{option}={value}"), named)


def test_sample_and_export_of_a_file_name_it(tmp_path):
    assert_usage_error(minilm("sample", "--ckpt", "README.md"), "README.md", "not a checkpoint folder")
    assert_usage_error(minilm("export", "--ckpt", "README.md", "--hf", str(tmp_path / "hf")), "README.md")


def test_a_bad_backend_variable_is_an_error_not_a_traceback(tmp_path):
    helped = minilm("--help", env={"MINILM_BACKEND": "bogus"})
    assert helped.returncode == 0 and "Traceback" not in helped.stderr
    assert_usage_error(minilm("train", *TINY, "--out", str(tmp_path), env={"MINILM_BACKEND": "bogus"}),
                       "MINILM_BACKEND=bogus", "unknown backend")


def test_cupy_asked_for_by_the_environment_but_absent_is_one_line(tmp_path):
    (tmp_path / "cupy.py").write_text("raise ImportError('no CuPy here')\n")  # CuPy absent, wherever this runs
    run = minilm("train", *TINY, "--out", str(tmp_path / "out"),
                 env={"MINILM_BACKEND": "cupy", "PYTHONPATH": str(tmp_path)})
    assert_usage_error(run, "MINILM_BACKEND=cupy", "CuPy requested but not installed")


def test_out_that_cannot_be_a_folder_fails_before_any_work(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for out in (afile, afile / "sub"):
        run = minilm("train", *TINY, "--max-iters", "1", "--out", str(out))
        assert_usage_error(run, str(afile))
        assert "step 0" not in run.stdout + run.stderr  # refused before the first evaluation
    assert afile.read_text() == "mine"


@pytest.mark.parametrize("sizes", [["--n-embd", "1000000", "--n-head", "1"], ["--block-size", "100000"],
                                   ["--batch-size", "100000000"]])
def test_a_run_too_large_for_memory_is_refused_with_the_figures(tmp_path, sizes):
    """Before: a 21.8 TiB allocation's MemoryError, the kernel's OOM killer, a traceback from get_batch."""
    run = minilm("train", *sizes, "--max-iters", "1", "--out", str(tmp_path))
    assert_usage_error(run, "training would need more than", "TiB", "--n-embd", "--block-size")


@pytest.mark.parametrize("text, split", [("a", "train split (the first 90% of the data) has 0 tokens"),
                                         ("to be or not to be, that is it", "val split (the last 10% of the data)")])
def test_a_corpus_too_short_names_the_split(tmp_path, text, split):
    data = tmp_path / "short.txt"
    data.write_text(text)
    assert_usage_error(minilm("train", *TINY, "--data", str(data), "--out", str(tmp_path / "out")),
                       split, "block_size + 1 = 9")


def test_a_corpus_without_a_newline_trains_and_samples(tmp_path):
    data = tmp_path / "one_line.txt"
    data.write_text("the quick brown fox jumps over the lazy dog " * 40)
    run = minilm("train", *TINY[:-2], "--sample-tokens", "20", "--max-iters", "2", "--eval-interval", "2",
                 "--data", str(data), "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    assert "a sample of 20 tokens" in run.stdout


def test_a_checkpoint_config_of_the_wrong_type_names_the_file_and_field(tmp_path):
    out = tmp_path / "out"
    assert minilm("train", *TINY, "--max-iters", "0", "--out", str(out)).returncode == 0
    config = out / "latest" / "config.json"
    fields = json.loads(config.read_text())
    fields["model"]["n_head"] = "four"
    config.write_text(json.dumps(fields))
    (out / "latest" / "manifest.json").unlink()  # as after editing config.json by hand (checkpoint.py)
    assert_usage_error(minilm("sample", "--ckpt", str(out / "latest")), "config.json", "n_head", "'four'")


ENOSPC_DRIVER = textwrap.dedent("""
    import errno, os, sys
    import minilm.files.checkpoint as checkpoint
    from minilm.cli import main

    def full(file, data):  # every write finds the disk full, as a real ENOSPC from write(2) would
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))

    checkpoint.write_file = full
    sys.exit(main(sys.argv[1:]))
""")


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(tmp_path):
    out = tmp_path / "out"
    args = ["train", *TINY, "--eval-interval", "2", "--out", str(out)]
    assert minilm(*args, "--max-iters", "2").returncode == 0
    before = {p.name: p.read_bytes() for p in (out / "latest").iterdir()}
    run = minilm(*args, "--max-iters", "4", "--resume", driver=ENOSPC_DRIVER)
    assert_usage_error(run, os.strerror(errno.ENOSPC), str(out), "nothing was replaced")
    assert {p.name: p.read_bytes() for p in (out / "latest").iterdir()} == before
    assert load_checkpoint(out / "latest").train_state["step"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["best", "latest"]  # no temp folder left behind

"""What a resume keeps and what a new run may replace: nothing saved is lost or silently changed (issue 25)."""

import shutil

import numpy as np
import pytest

from minilm.files.checkpoint import load_checkpoint, save_checkpoint
from minilm.optim import WarmupCosine
from minilm.training.config import with_changes
from minilm.training.trainer import PRESETS, TrainConfig, Trainer

TINY = dict(block_size=16, n_layer=1, n_head=2, n_embd=12, batch_size=4, eval_iters=2, warmup_iters=2,
            sample_tokens=0, seed=7)
COMMAND_LINE = {"out", "resume", "max_iters"}  # what `minilm train --out OUT --resume --max-iters N` gives


def tiny(out, **changes):
    """(TrainConfig, GPTConfig) of a tiny run: TINY with ``changes``, each to the dataclass that holds it."""
    return with_changes(PRESETS["cpu"], out=str(out), **{**TINY, **changes})


def quiet(*_):
    pass


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_new_run_refuses_an_out_that_holds_only_best_and_overwrite_replaces_it(tmp_path):
    Trainer(*tiny(tmp_path, max_iters=2, eval_interval=2), log=quiet).train()
    shutil.rmtree(tmp_path / "latest")
    before = files(tmp_path / "best")
    with pytest.raises(FileExistsError, match=r"best already holds a checkpoint: pass --resume .* --overwrite"):
        Trainer(*tiny(tmp_path, max_iters=2, eval_interval=2, seed=8), log=quiet)
    assert files(tmp_path / "best") == before
    Trainer(*tiny(tmp_path, max_iters=2, eval_interval=2, seed=8, overwrite=True), log=quiet).train()
    assert files(tmp_path / "best") != before and (tmp_path / "latest").is_dir()


def test_resume_takes_the_model_and_the_data_from_the_checkpoint(tmp_path, monkeypatch):
    """The README's `minilm train --out out/mine --resume` after a run with --n-layer 2 --data my.txt."""
    data = tmp_path / "my.txt"
    data.write_text("to be or not to be, that is the question\n" * 100)
    Trainer(*tiny(tmp_path / "out", data=str(data), n_layer=2, max_iters=2, eval_interval=2), log=quiet).train()
    monkeypatch.chdir(tmp_path / "out")  # the data file is found by its recorded absolute path
    resumed = Trainer(TrainConfig(out=str(tmp_path / "out"), resume=True, max_iters=4), log=quiet,
                      given=COMMAND_LINE)
    assert resumed.model.config.n_layer == 2 and resumed.cfg.data == str(data) and resumed.step == 2
    assert resumed.tokenizer.vocab_size == len(set(data.read_text()))
    assert resumed.train()[-1]["step"] == 4


@pytest.mark.parametrize("option, value, named", [
    ("n_layer", 3, "--n-layer"), ("lr", 5e-3, "--lr"), ("batch_size", 8, "--batch-size"), ("seed", 9, "--seed"),
    ("data", "other.txt", "--data"),
])
def test_resume_refuses_a_changed_setting_by_name(tmp_path, option, value, named):
    (tmp_path / "other.txt").write_text("something else entirely\n" * 100)
    Trainer(*tiny(tmp_path / "out", max_iters=2, eval_interval=2), log=quiet).train()
    if option == "data":
        value = str(tmp_path / value)
    cfg, model = tiny(tmp_path / "out", max_iters=4, resume=True, **{option: value})
    with pytest.raises(ValueError, match=f"{named} \\(the checkpoint has"):
        Trainer(cfg, model, log=quiet, given=COMMAND_LINE | {option})


def test_resume_refuses_data_whose_text_changed(tmp_path):
    data = tmp_path / "my.txt"
    data.write_text("abcdefgh\n" * 300)
    Trainer(*tiny(tmp_path / "out", data=str(data), max_iters=2, eval_interval=2), log=quiet).train()
    data.write_text("abcdefgh\n" * 299 + "hgfedcba\n")
    with pytest.raises(ValueError, match="has changed since"):
        Trainer(*tiny(tmp_path / "out", max_iters=4, resume=True), log=quiet, given=COMMAND_LINE)


def lrs(trainer):
    return [trainer.schedule(step) for step in range(trainer.cfg.max_iters)]


def test_raising_max_iters_on_resume_keeps_the_recorded_schedule(tmp_path):
    """Extending an 8-step run to 16 steps must not move the learning rate back up the cosine."""
    Trainer(*tiny(tmp_path, max_iters=8, eval_interval=4), log=quiet).train()
    said = []
    resumed = Trainer(*tiny(tmp_path, max_iters=16, resume=True), log=said.append, given=COMMAND_LINE)
    assert resumed.schedule.lr_decay_iters == 8
    assert lrs(resumed)[8:] == [TrainConfig().min_lr] * 8  # before: the cosine restarted at 5.7 times min_lr
    assert any("keeping the learning-rate schedule" in line for line in said)
    stretched = Trainer(*tiny(tmp_path, max_iters=16, lr_decay_iters=16, resume=True), log=said.append,
                        given=COMMAND_LINE | {"lr_decay_iters"})
    assert stretched.schedule.lr_decay_iters == 16 and "changes as asked" in said[-2]


def test_the_linear_decay_is_recorded_and_a_resume_keeps_it(tmp_path):
    first = Trainer(*tiny(tmp_path, max_iters=8, eval_interval=4, decay="linear"), log=quiet)
    first.train()
    assert load_checkpoint(tmp_path / "latest").train_state["schedule"]["decay"] == "linear"
    resumed = Trainer(*tiny(tmp_path, max_iters=12, resume=True), log=quiet, given=COMMAND_LINE)
    assert type(resumed.schedule) is type(first.schedule) and lrs(resumed)[:8] == lrs(first)
    with pytest.raises(ValueError, match="--decay \\(the checkpoint has 'linear', this run asks for 'cosine'\\)"):
        Trainer(*tiny(tmp_path, max_iters=12, resume=True, decay="cosine"), log=quiet,
                given=COMMAND_LINE | {"decay"})


def test_a_checkpoint_saved_before_decay_existed_resumes_on_its_cosine(tmp_path):
    Trainer(*tiny(tmp_path, max_iters=4, eval_interval=4), log=quiet).train()
    for name in ("latest", "best"):  # as an older minilm wrote them: no "decay" anywhere
        ckpt = load_checkpoint(tmp_path / name)
        del ckpt.config["train"]["decay"], ckpt.train_state["schedule"]["decay"]
        save_checkpoint(tmp_path / name, ckpt.model_state, ckpt.config, ckpt.tokenizer, ckpt.optimizer_state,
                        ckpt.train_state)
    resumed = Trainer(*tiny(tmp_path, max_iters=6, resume=True), log=quiet, given=COMMAND_LINE)
    assert type(resumed.schedule) is WarmupCosine and resumed.cfg.decay == "cosine"


class Stop(Exception):
    """Stands for a kill: raised from inside the k-th checkpoint save."""


def run(out, monkeypatch, stop_at=None, **changes):
    """Train 6 steps (evaluations at 0, 2, 4, 6); with stop_at = k, stop just before save k // 2 writes (k even)
    or just after it (k odd). Returns the names of the checkpoints saved, in order."""
    import minilm.training.trainer as train

    save, calls = train.save_checkpoint, []

    def stopping(path, *args, **kwargs):
        calls.append(path.name)
        if stop_at == 2 * (len(calls) - 1):
            raise Stop
        save(path, *args, **kwargs)
        if stop_at == 2 * (len(calls) - 1) + 1:
            raise Stop

    monkeypatch.setattr(train, "save_checkpoint", stopping)
    try:
        Trainer(*tiny(out, max_iters=6, eval_interval=2, lr=1e-2, **changes), log=quiet).train()
    except Stop:
        pass
    finally:
        monkeypatch.setattr(train, "save_checkpoint", save)
    return calls


def test_a_stop_at_any_point_of_the_save_sequence_loses_nothing(tmp_path, monkeypatch):
    """Before and after every save of a run, stop it, resume it, and compare with the run never stopped:
    OUT/best ends with the same weights and loss, and OUT/latest with the same step and weights."""
    saves = run(tmp_path / "straight", monkeypatch)
    assert saves[:2] == ["best", "latest"] and len(saves) > 4  # best first, and val improves more than once
    expected = {name: load_checkpoint(tmp_path / "straight" / name) for name in ("best", "latest")}
    for k in range(2 * len(saves)):
        out = tmp_path / f"stop{k}"
        assert len(run(out, monkeypatch, stop_at=k)) == k // 2 + 1
        if (out / "latest").exists():
            run(out, monkeypatch, resume=True)
        else:  # stopped before the first latest: nothing to resume, so the run starts again
            run(out, monkeypatch, overwrite=True)
        for name, want in expected.items():
            got = load_checkpoint(out / name)
            assert got.train_state["step"] == want.train_state["step"], (k, name)
            assert got.train_state["best_val_loss"] == pytest.approx(want.train_state["best_val_loss"], rel=1e-6)
            for key, array in want.model_state.items():
                np.testing.assert_allclose(got.model_state[key], array, rtol=1e-6, atol=1e-7,
                                           err_msg=f"stop {k}: {name} {key}")


@pytest.mark.parametrize("remove", ["train_state.json", "optimizer.safetensors"])
def test_a_checkpoint_missing_what_a_resume_needs_is_named(tmp_path, remove):
    Trainer(*tiny(tmp_path, max_iters=2, eval_interval=2), log=quiet).train()
    for name in (remove, "manifest.json"):  # as after editing the folder by hand
        (tmp_path / "latest" / name).unlink()
    with pytest.raises(ValueError, match=f"cannot resume a run: it has no {remove}"):
        Trainer(*tiny(tmp_path, max_iters=4, resume=True), log=quiet)

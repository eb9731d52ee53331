import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
import transformers

from minilm import to_numpy
from minilm.files.checkpoint import load_checkpoint
from minilm.training.config import with_changes
from minilm.training.trainer import PRESETS, Trainer

ROOT = pathlib.Path(__file__).resolve().parents[1]
# a model small enough that a test run takes a second; every size different
TINY = dict(block_size=16, n_layer=1, n_head=2, n_embd=12, batch_size=4, eval_iters=2, warmup_iters=2,
            sample_tokens=0, seed=7)


def tiny(tmp_path, **changes):
    """(TrainConfig, GPTConfig) of a tiny run: TINY with ``changes``, each to the dataclass that holds it."""
    return with_changes(PRESETS["cpu"], out=str(tmp_path / "out"), **{**TINY, **changes})


def quiet(*_):
    pass


def weights(model):
    return {name: to_numpy(p.data).copy() for name, p in model.named_parameters()}


def test_presets_follow_nanogpt():
    (cpu, cpu_model), (gpu, gpu_model) = ((p.train, p.model) for p in (PRESETS["cpu"], PRESETS["gpu"]))
    assert (cpu.block_size, cpu.batch_size, cpu_model.n_layer, cpu_model.n_head, cpu_model.n_embd,
            cpu_model.dropout) == (64, 12, 4, 4, 128, 0.0)
    assert (cpu.lr, cpu.beta2, cpu.weight_decay, cpu.grad_clip, cpu.warmup_iters, cpu.min_lr, cpu.max_iters) == \
        (1e-3, 0.99, 0.1, 1.0, 100, 1e-4, 2000)
    assert (gpu.block_size, gpu.batch_size, gpu_model.n_layer, gpu_model.n_head, gpu_model.n_embd,
            gpu_model.dropout, gpu.max_iters) == (256, 64, 6, 6, 384, 0.2, 5000)


def test_a_short_run_learns_and_saves_latest_and_best(tmp_path):
    trainer = Trainer(*tiny(tmp_path, max_iters=30, eval_interval=15, lr=1e-2), log=quiet)
    history = trainer.train()
    assert [h["step"] for h in history] == [0, 15, 30]
    assert history[-1]["train"] < history[0]["train"] - 0.5  # 4.2 (uniform over 65) falls quickly
    latest = load_checkpoint(tmp_path / "out" / "latest")
    assert latest.train_state["step"] == 30 and len(latest.train_state["history"]) == 3
    assert latest.tokenizer["type"] == "char" and latest.config["model"]["vocab_size"] == 65
    best = load_checkpoint(tmp_path / "out" / "best")
    assert best.train_state["best_val_loss"] == min(h["val"] for h in history)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(tmp_path, dropout):
    # the interrupted run stops at 4 of the same 8-step schedule (lr_decay_iters pins it)
    same = dict(eval_interval=4, dropout=dropout, lr_decay_iters=8)
    straight = Trainer(*tiny(tmp_path / "a", max_iters=8, **same), log=quiet)
    straight.train()
    Trainer(*tiny(tmp_path / "b", max_iters=4, **same), log=quiet).train()
    resumed = Trainer(*tiny(tmp_path / "b", max_iters=8, resume=True, **same), log=quiet)
    assert resumed.step == 4
    resumed.train()
    assert [h["step"] for h in resumed.history] == [0, 4, 8]
    for name, expected in weights(straight.model).items():
        np.testing.assert_allclose(weights(resumed.model)[name], expected, rtol=1e-6, atol=1e-7, err_msg=name)


def test_recomputing_attention_weights_changes_memory_not_training(tmp_path):
    from minilm.nn.attention import MultiHeadAttention

    runs = [Trainer(*tiny(tmp_path / str(recompute), max_iters=4, eval_interval=4, dropout=0.1,
                         recompute_attention=recompute), log=quiet) for recompute in (False, True)]
    for run in runs:
        run.train()
    layers = [m for _, m in runs[1].model.named_modules() if isinstance(m, MultiHeadAttention)]
    assert layers and not any(layer.keep_weights for layer in layers)
    for name, expected in weights(runs[0].model).items():
        np.testing.assert_allclose(weights(runs[1].model)[name], expected, rtol=1e-6, atol=1e-7, err_msg=name)
    # a memory setting, not the model: a run may resume with it switched
    resumed = Trainer(*tiny(tmp_path / "False", max_iters=6, eval_interval=4, dropout=0.1, recompute_attention=True,
                           resume=True), log=quiet)
    assert resumed.step == 4 and resumed.train()[-1]["step"] == 6


def test_split_loss_is_the_mean_over_every_window(tmp_path):
    from minilm.nn.loss import CrossEntropyLoss
    from minilm.training.trainer import split_loss

    trainer = Trainer(*tiny(tmp_path, max_iters=2, eval_interval=2), log=quiet)
    cfg, val = trainer.cfg, trainer.val_data
    n = (len(val) - 1) // cfg.block_size * cfg.block_size  # targets: every token after the first, whole windows
    x = np.asarray(val[:n]).reshape(-1, cfg.block_size)  # (W, T) all the windows in one batch
    y = np.asarray(val[1:n + 1]).reshape(-1, cfg.block_size)
    trainer.model.eval()
    expected = float(CrossEntropyLoss()(trainer.model(x), y))
    assert split_loss(trainer.model, val, cfg) == pytest.approx(expected, rel=1e-5)  # float32 sums, other order
    assert trainer.model.training  # back in training mode afterwards, as estimate_loss leaves it


def test_the_command_ends_with_the_whole_split_val_loss(tmp_path, capsys):
    from minilm.cli import main

    assert main(["train", "--out", str(tmp_path / "out"), "--max-iters", "2", "--eval-interval", "2",
                 "--block-size", "16", "--n-layer", "1", "--n-head", "2", "--n-embd", "12", "--batch-size", "4",
                 "--eval-iters", "2", "--sample-tokens", "0"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("val loss of the final weights on the whole val split") and 0 < float(last.split()[-1]) < 5


def test_resume_refuses_a_different_model(tmp_path):
    Trainer(*tiny(tmp_path, max_iters=2, eval_interval=2), log=quiet).train()
    with pytest.raises(ValueError, match=r"--n-embd \(the checkpoint has 12, this run asks for 16\)"):
        Trainer(*tiny(tmp_path, max_iters=4, n_embd=16, resume=True), log=quiet)


def test_resume_without_a_checkpoint_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="latest"):
        Trainer(*tiny(tmp_path, resume=True), log=quiet)


def test_a_fresh_run_never_overwrites_an_existing_checkpoint(tmp_path):
    Trainer(*tiny(tmp_path, max_iters=2, eval_interval=2), log=quiet).train()
    before = (tmp_path / "out" / "latest" / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="pass --resume"):
        Trainer(*tiny(tmp_path, max_iters=2), log=quiet)
    assert (tmp_path / "out" / "latest" / "model.safetensors").read_bytes() == before


def test_a_nan_loss_stops_with_the_step_and_the_last_good_checkpoint(tmp_path, monkeypatch):
    trainer = Trainer(*tiny(tmp_path, max_iters=6, eval_interval=2), log=quiet)
    original = trainer.model.forward

    def poisoned(idx):
        logits = original(idx)
        return logits * np.nan if trainer.step == 3 and trainer.model.training else logits

    monkeypatch.setattr(trainer.model, "forward", poisoned)
    with pytest.raises(RuntimeError, match=r"loss is nan at step 3.*latest \(step 2\)"):
        trainer.train()
    assert load_checkpoint(tmp_path / "out" / "latest").train_state["step"] == 2


@pytest.mark.parametrize("content, message", [(None, "not found"), (b"", "empty"),
                                              (b"\x89PNG\r\n\x1a\n\x00\x00", "binary")])
def test_bad_data_is_named_and_nothing_is_saved(tmp_path, content, message):
    data = tmp_path / "corpus.txt"
    if content is not None:
        data.write_bytes(content)
    with pytest.raises((FileNotFoundError, ValueError), match=message):
        Trainer(*tiny(tmp_path, data=str(data)), log=quiet)
    assert not (tmp_path / "out").exists()


def test_any_text_file_can_replace_the_corpus(tmp_path):
    data = tmp_path / "abc.txt"
    data.write_text("abcabcabd\n" * 200)
    trainer = Trainer(*tiny(tmp_path, data=str(data), max_iters=2, eval_interval=2), log=quiet)
    trainer.train()
    assert trainer.tokenizer.vocab_size == 5


def test_a_bpe_tokenizer_is_trained_saved_and_used_on_resume(tmp_path):
    cfg, model = tiny(tmp_path, tokenizer="bpe", vocab_size=300, max_iters=2, eval_interval=2)
    trainer = Trainer(cfg, model, log=quiet)
    trainer.train()
    assert trainer.tokenizer.vocab_size == 300 and trainer.model.config.vocab_size == 300
    saved = load_checkpoint(tmp_path / "out" / "latest").tokenizer
    assert saved["type"] == "bpe"
    resumed = Trainer(dataclasses.replace(cfg, max_iters=4, resume=True), model, log=quiet)
    assert resumed.tokenizer == trainer.tokenizer


KILL_DRIVER = textwrap.dedent("""
    import sys, time, pathlib
    import minilm.files.checkpoint as checkpoint
    from minilm.cli import main
    write, saves = checkpoint.write_file, []

    def slow_write(file, data):  # the third save (step 2's latest) announces itself and stalls mid-write
        if pathlib.Path(file).name == "model.safetensors":
            saves.append(file)
            if len(saves) == 3:
                pathlib.Path(sys.argv[1]).write_text("writing")
                time.sleep(60)
        return write(file, data)

    checkpoint.write_file = slow_write
    sys.exit(main(sys.argv[2:]))
""")


def test_sigkill_while_writing_a_checkpoint_leaves_the_previous_one_and_resume_continues(tmp_path):
    """Kill -9 the trainer in the middle of writing a checkpoint: the last one must load and resume."""
    args = ["train", "--out", str(tmp_path / "out"), "--max-iters", "4", "--eval-interval", "2",
            "--block-size", "16", "--n-layer", "1", "--n-head", "2", "--n-embd", "12", "--batch-size", "4",
            "--eval-iters", "2", "--sample-tokens", "0"]
    marker = tmp_path / "writing"
    proc = subprocess.Popen([sys.executable, "-c", KILL_DRIVER, str(marker), *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no checkpoint write seen"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    survivor = load_checkpoint(tmp_path / "out" / "latest")  # the step-0 checkpoint, whole
    assert survivor.train_state["step"] == 0
    resumed = subprocess.run([sys.executable, "-m", "minilm.cli", *args, "--resume"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(tmp_path / "out" / "latest").train_state["step"] == 4


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path):
    run = subprocess.run([sys.executable, "-m", "minilm.cli", "train", "--data", str(tmp_path / "missing.txt"),
                          "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip().startswith("minilm train: error:") and "missing.txt" in run.stderr
    bad = subprocess.run([sys.executable, "-m", "minilm.cli", "train", "--n-layers", "3"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unrecognized arguments: --n-layers" in bad.stderr


def test_init_from_fine_tunes_a_hugging_face_gpt2_with_its_tokenizer(tmp_path):
    from minilm.data import BPETokenizer, load_text

    folder = tmp_path / "gpt2"
    tokenizer = BPETokenizer.train(load_text()[:50_000], 300)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=300, n_positions=32, n_embd=24, n_layer=1,
                                                              n_head=2, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0))
    hf.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_gpt2_files(folder / "vocab.json", folder / "merges.txt")

    cfg, _ = tiny(tmp_path, init_from=str(folder), max_iters=20, eval_interval=20, lr=3e-3)
    trainer = Trainer(cfg, log=quiet)
    assert trainer.tokenizer == tokenizer and trainer.model.config.n_embd == 24
    ids = trainer.tokenizer.encode("ROMEO: my lord")[None, :]
    expected = hf.eval()(torch.from_numpy(ids)).logits.detach().numpy()
    np.testing.assert_allclose(to_numpy(trainer.model.eval()(ids)), expected, rtol=1e-4, atol=1e-5)
    history = trainer.train()
    assert history[-1]["train"] < history[0]["train"]
    resumed = Trainer(dataclasses.replace(cfg, max_iters=22, resume=True), log=quiet)
    assert resumed.model.config == trainer.model.config


def test_init_from_needs_the_tokenizer_files(tmp_path):
    folder = tmp_path / "gpt2"
    transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=300, n_positions=32, n_embd=24, n_layer=1,
                                                         n_head=2)).save_pretrained(folder, safe_serialization=True)
    with pytest.raises(FileNotFoundError, match="no vocab.json"):
        Trainer(*tiny(tmp_path, init_from=str(folder)), log=quiet)

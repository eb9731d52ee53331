"""`minilm import-hf` and `minilm export` end to end, through minilm.cli.main: what reaches the user."""

import dataclasses
import os

import numpy as np
import pytest
import transformers

from layer_checks import assert_close
from minilm import to_numpy
from minilm.backend import asarray
from minilm.files.checkpoint import load_checkpoint, save_checkpoint
from minilm.cli import main
from minilm.models import GPT, GPTConfig
from minilm.nn.normalization import LayerNorm
from test_hf import hf_logits, hf_model, ids, save_hf



@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_hf(hf_model(), tmp_path_factory.mktemp("hf") / "gpt2")


def files(path):
    """name -> bytes of every file in the folder ``path``."""
    return {name: (path / name).read_bytes() for name in sorted(os.listdir(path))}


def test_a_fine_tuned_layer_norm_eps_survives_import_checkpoint_and_export(tmp_path):
    reference = hf_model(layer_norm_epsilon=1e-3)
    source = save_hf(reference, tmp_path / "eps")
    assert main(["import-hf", str(source), "--out", str(tmp_path / "ckpt")]) == 0
    ckpt = load_checkpoint(tmp_path / "ckpt")
    assert ckpt.config["model"]["layer_norm_eps"] == 1e-3
    model = GPT(GPTConfig(**ckpt.config["model"]))
    model.load_state_dict(ckpt.model_state)
    logits = to_numpy(model.eval()(asarray(ids())))
    assert_close(logits, hf_logits(reference, ids()), "float32", "logits of the reloaded checkpoint, eps 1e-3")
    # the test can see a lost eps: the same weights under 1e-5 are far outside the tolerance
    model.config.layer_norm_eps = 1e-5
    for _, module in model.named_modules():
        if isinstance(module, LayerNorm):
            module.eps = 1e-5
    assert not np.allclose(to_numpy(model(asarray(ids()))), logits, rtol=1e-3)

    assert main(["export", "--ckpt", str(tmp_path / "ckpt"), "--hf", str(tmp_path / "out")]) == 0
    loaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    assert loaded.config.layer_norm_epsilon == 1e-3
    np.testing.assert_array_equal(hf_logits(loaded, ids()), hf_logits(reference, ids()))


def training_checkpoint(path):
    """A checkpoint as `minilm train` leaves it: weights, optimizer and train state."""
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=12), rng=0)
    optimizer = ({"m.wte.weight": np.ones((11, 12), np.float32)}, {"type": "AdamW", "step": 5})
    save_checkpoint(path, model.state_dict(), {"model": dataclasses.asdict(model.config), "train": {"max_iters": 5}},
                    optimizer_state=optimizer, train_state={"step": 5, "best_val_loss": 2.5})
    return files(path)


def test_import_refuses_to_replace_a_checkpoint_without_overwrite(folder, tmp_path, capsys):
    before = training_checkpoint(tmp_path / "latest")
    command = ["import-hf", str(folder), "--out", str(tmp_path / "latest")]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'latest'} already exists; pass --overwrite" in err
    assert files(tmp_path / "latest") == before  # optimizer and train state untouched, byte for byte
    # refused before any work: a DIR that does not exist is not even looked at
    assert main(["import-hf", str(tmp_path / "nowhere"), "--out", str(tmp_path / "latest")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["latest"]  # no temp folder either

    assert main(command + ["--overwrite"]) == 0
    assert sorted(os.listdir(tmp_path / "latest")) == ["config.json", "manifest.json", "model.safetensors"]
    ckpt = load_checkpoint(tmp_path / "latest")
    assert ckpt.optimizer_state is None and ckpt.train_state is None and ckpt.config["model"]["n_embd"] == 64
    assert sorted(os.listdir(tmp_path)) == ["latest"]  # no .previous left behind


def test_export_refuses_to_replace_without_overwrite_and_replaces_whole_with_it(folder, tmp_path, capsys):
    assert main(["import-hf", str(folder), "--out", str(tmp_path / "ckpt")]) == 0
    out = tmp_path / "out"
    assert main(["export", "--ckpt", str(tmp_path / "ckpt"), "--hf", str(out)]) == 0
    (out / "vocab.json").write_text("{}")  # an older export's tokenizer: must not outlive the replacement
    before = files(out)
    command = ["export", "--ckpt", str(tmp_path / "ckpt"), "--hf", str(out)]
    assert main(command) == 2
    assert f"{out} already exists; pass --overwrite" in capsys.readouterr().err
    assert files(out) == before

    assert main(command + ["--overwrite"]) == 0
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]
    assert sorted(os.listdir(tmp_path)) == ["ckpt", "out"]  # no temp or .previous folder left behind
    loaded = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    np.testing.assert_array_equal(hf_logits(loaded, ids()), hf_logits(hf_model(), ids()))


def test_export_overwrite_never_replaces_what_is_not_a_hugging_face_folder(folder, tmp_path, capsys):
    assert main(["import-hf", str(folder), "--out", str(tmp_path / "ckpt")]) == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    (tmp_path / "file.txt").write_text("mine")
    for target, why in ((tmp_path / "mine", "not a Hugging Face model folder"),
                        (tmp_path / "file.txt", "not a folder")):
        assert main(["export", "--ckpt", str(tmp_path / "ckpt"), "--hf", str(target), "--overwrite"]) == 2
        assert why in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine" and (tmp_path / "file.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["ckpt", "file.txt", "mine"]


def test_a_file_where_a_folder_is_expected_is_a_clear_error(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# not a model\n")
    assert main(["export", "--ckpt", str(readme), "--hf", str(tmp_path / "out")]) == 2
    assert f"{readme} is a file, not a checkpoint folder" in capsys.readouterr().err
    assert main(["import-hf", str(readme), "--out", str(tmp_path / "ckpt")]) == 2
    assert f"{readme} is a file, not a Hugging Face model folder" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["README.md"]


def test_overwrite_is_in_the_help(capsys):
    for command in ("import-hf", "export"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "replace an existing" in capsys.readouterr().out


def test_a_command_never_writes_over_the_folder_it_reads(tmp_path, capsys):
    """export --ckpt X --hf X --overwrite would replace the checkpoint by its own export (it has config.json
    and model.safetensors, as an export does); import-hf D --out D the Hugging Face folder."""
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8), rng=0)
    save_checkpoint(tmp_path / "ckpt", model.state_dict(), {"model": dataclasses.asdict(model.config), "train": {}})
    before = {p.name: p.read_bytes() for p in (tmp_path / "ckpt").iterdir()}
    for argv in (["export", "--ckpt", str(tmp_path / "ckpt"), "--hf", str(tmp_path / "ckpt"), "--overwrite"],
                 ["import-hf", str(tmp_path / "ckpt"), "--out", str(tmp_path / "ckpt"), "--overwrite"]):
        assert main(argv) == 2
        assert "is the folder being read" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "ckpt").iterdir()} == before

"""The model registry, model_type in config.json, minilm.load, and commands refusing a type they cannot use."""

import dataclasses
import json

import numpy as np
import pytest

import minilm
from minilm.files.checkpoint import load_checkpoint, save_checkpoint
from minilm.cli import main
from minilm.data import CharTokenizer
from minilm.models import GPT, GPTConfig, MODELS, model_type_of
from minilm.training.objectives import CausalLM
from minilm.training.trainer import TrainConfig, Trainer

SMALL = GPTConfig(vocab_size=12, block_size=8, n_layer=1, n_head=2, n_embd=8)


@dataclasses.dataclass
class ToyConfig:
    """A second model family, as the encoder will be: only its type matters here."""

    vocab_size: int = 12

    @classmethod
    def from_checkpoint(cls, fields, folder):
        return cls(**fields)


class Toy(GPT):
    def __init__(self, config, rng=None):
        super().__init__(SMALL, rng=rng)


def save(folder, model_type=None, model=None):
    model = model or GPT(SMALL, rng=0)
    config = {"model": dataclasses.asdict(model.config), "train": {}}
    if model_type is not None:
        config["model_type"] = model_type
    tokenizer = CharTokenizer.from_text("abcdefghijkl")
    return save_checkpoint(folder, model.state_dict(), config, tokenizer=tokenizer.to_dict())


def test_training_writes_the_model_type(tmp_path):
    cfg = dataclasses.replace(TrainConfig(), out=str(tmp_path), block_size=8, batch_size=2, eval_iters=1,
                              max_iters=0, sample_tokens=0)
    Trainer(cfg, GPTConfig(n_layer=1, n_head=2, n_embd=8), log=lambda *_: None).train()
    assert json.loads((tmp_path / "latest" / "config.json").read_text())["model_type"] == "gpt"


def test_a_checkpoint_without_a_type_is_a_gpt_and_minilm_load_gives_it_in_eval_mode(tmp_path):
    save(tmp_path / "old")  # as every checkpoint written before the registry
    assert model_type_of(load_checkpoint(tmp_path / "old").config) == "gpt"
    model, tokenizer = minilm.load(tmp_path / "old")
    assert isinstance(model, GPT) and not model.training and tokenizer.vocab_size == 12
    ids = np.arange(6)[None, :]
    np.testing.assert_array_equal(model(ids), GPT(SMALL, rng=0).eval()(ids))


def test_an_unknown_type_is_named(tmp_path):
    save(tmp_path / "ckpt", model_type="diffusion")
    with pytest.raises(ValueError, match="model_type 'diffusion', which minilm does not know"):
        minilm.load(tmp_path / "ckpt")


@pytest.mark.parametrize("argv", [["sample", "--ckpt", "{ckpt}", "--max-new-tokens", "2"],
                                  ["export", "--ckpt", "{ckpt}", "--hf", "{out}"],
                                  ["attention", "--ckpt", "{ckpt}", "--text", "abc", "--out", "{out}.png"],
                                  ["train", "--out", "{run}", "--resume"]])
def test_every_command_refuses_a_type_it_cannot_use_naming_both(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.setitem(MODELS, "toy", (ToyConfig, Toy))
    save(tmp_path / "run" / "latest", model_type="toy")
    paths = dict(ckpt=tmp_path / "run" / "latest", out=tmp_path / "out", run=tmp_path / "run")
    assert main([arg.format(**paths) for arg in argv]) == 2
    error = capsys.readouterr().err
    assert "needs a model of type gpt" in error and "holds a toy model" in error, error
    assert not (tmp_path / "out").exists()


def test_the_causal_objective_shifts_targets_by_one():
    data = np.arange(100)
    (x,), y = CausalLM().batch(data, 4, 7, np.random.default_rng(0))
    assert x.shape == y.shape == (4, 7)
    np.testing.assert_array_equal(y, x + 1)  # data[i] = i: the next token is one more
    seen = [targets for _, targets in CausalLM().every_batch(data, 4, 7)]
    np.testing.assert_array_equal(np.concatenate(seen).ravel(), np.arange(1, 99))  # each target once, in order


def test_the_command_line_names_its_model_family_and_objective(tmp_path, capsys):
    argv = ["train", "--model", "gpt", "--objective", "clm", "--out", str(tmp_path), "--max-iters", "0",
            "--block-size", "8", "--n-layer", "1", "--n-head", "2", "--n-embd", "8", "--sample-tokens", "0",
            "--eval-iters", "1"]
    assert main(argv) == 0
    with pytest.raises(SystemExit):
        main(["train", "--model", "toy"])  # not a registered family: argparse names the choices
    assert "invalid choice: 'toy'" in capsys.readouterr().err

"""The history's language models: LSTMLM and RNNLM against PyTorch's word_language_model RNNModel, the tutorial's
TransformerModel against minilm's TutorialTransformer (weights copied through its name map), finite differences,
a planted wrong backward, and each trained, resumed and sampled by the command line."""

import json

import numpy as np
import pytest
import torch

from layer_checks import assert_matches_torch
from minilm.backend import asarray, to_numpy
from minilm.cli import main
from minilm.models import (MODELS, LSTMLM, RNNLM, LSTMConfig, RNNConfig, TutorialConfig, TutorialTransformer,
                           type_of_model)
from minilm.nn.embeddings import Embeddings
from minilm.training.memory import parameter_count
from minilm.verify.check_cases import vary_constants
from minilm.verify.gradcheck import check_module
from minilm.verify.reference.language_models import TransformerModel
from minilm.verify.tolerances import GRADCHECK

V, BLOCK = 11, 9
RECURRENT = dict(vocab_size=V, block_size=BLOCK, n_embd=6, hidden_size=5, n_layer=2)
TUTORIAL = dict(vocab_size=V, block_size=BLOCK, n_embd=12, n_head=3, n_layer=2, d_ff=20)
MODELS_UNDER_TEST = {
    "lstm": lambda rng, **c: LSTMLM(LSTMConfig(**{**RECURRENT, **c}), rng=rng),
    "rnn": lambda rng, **c: RNNLM(RNNConfig(**{**RECURRENT, **c}), rng=rng),
    "tutorial": lambda rng, **c: TutorialTransformer(TutorialConfig(**{**TUTORIAL, **c}), rng=rng),
}
CLI_TINY = ["--max-iters", "40", "--eval-interval", "20", "--eval-iters", "4", "--warmup-iters", "4", "--batch-size",
            "8", "--block-size", "16", "--n-embd", "12", "--n-layer", "1", "--sample-tokens", "20"]


def ids(rng, b=2, t=7):
    return asarray(rng.integers(0, V, (b, t)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", list(MODELS_UNDER_TEST))
def test_matches_its_pytorch_example(kind, dtype):
    rng = np.random.default_rng(0)
    model = vary_constants(MODELS_UNDER_TEST[kind](rng), rng)
    pairs = assert_matches_torch(model, ids(rng), dtype=dtype)
    assert len(pairs) == 1 + len(model.parameters())


def test_the_tutorials_own_model_gives_the_same_logits_and_gradients_through_the_name_map():
    """The tutorial's TransformerModel as it is written (its own names), weights copied from minilm's through
    torch_parameter_names, in eval mode with the tutorial's dropout 0.2 configured."""
    rng = np.random.default_rng(1)
    model = vary_constants(MODELS_UNDER_TEST["tutorial"](rng, dropout=0.2), rng).to("float64").eval()
    cfg = model.config
    reference = TransformerModel(V, cfg.n_embd, cfg.n_head, cfg.d_ff, cfg.n_layer, cfg.dropout, BLOCK).double().eval()
    names = model.torch_parameter_names()
    assert set(names) == set(reference.state_dict()) - {"pos_encoder.pe"}
    reference.load_state_dict({**{n: torch.tensor(to_numpy(p.data)) for n, p in names.items()},
                               "pos_encoder.pe": reference.pos_encoder.pe})
    x = ids(rng, 3, BLOCK)
    g = rng.standard_normal((3, BLOCK, V))
    logits = model(x)
    model.zero_grad()
    model.backward(asarray(g))
    theirs = reference(torch.tensor(to_numpy(x)))
    (theirs * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(to_numpy(logits), theirs.detach().numpy(), rtol=0, atol=1e-13)
    their_params = dict(reference.named_parameters())
    for name, param in names.items():
        np.testing.assert_allclose(to_numpy(param.grad), their_params[name].grad.numpy(), rtol=0, atol=1e-12,
                                   err_msg=name)


def test_a_carried_state_continues_the_sequence():
    """LSTMLM.forward(idx, state) from the final state of the first half gives the second half of a whole run."""
    rng = np.random.default_rng(2)
    model = MODELS_UNDER_TEST["lstm"](rng).to("float64")
    x = ids(rng, 2, 8)
    whole = to_numpy(model(x))
    model(x[:, :4])
    second = to_numpy(model(x[:, 4:], model.final_state))
    np.testing.assert_allclose(second, whole[:, 4:], rtol=0, atol=1e-14)


@pytest.mark.parametrize("kind", list(MODELS_UNDER_TEST))
def test_finite_differences(kind):
    rng = np.random.default_rng(3)
    model = vary_constants(MODELS_UNDER_TEST[kind](rng), rng)
    report = check_module(model, ids(rng), max_coords=12)
    assert len(report.errors) == len(model.parameters())
    assert report.passed(GRADCHECK["model"]), report


def test_a_planted_backward_without_the_embedding_scale_is_caught(monkeypatch):
    def unscaled(self, dx):
        dx = self.wpe.backward(self.drop.backward(dx))
        self.wte.backward(dx)  # forgets the √C the forward multiplied the tokens by

    monkeypatch.setattr(Embeddings, "backward", unscaled)
    rng = np.random.default_rng(4)
    model = vary_constants(MODELS_UNDER_TEST["tutorial"](rng), rng)
    report = check_module(model, ids(rng), max_coords=12)
    assert [name for name, err in report.errors.items() if err > GRADCHECK["model"]] == ["embedding.wte.weight"]


def test_registered_and_the_parameter_count_is_the_models():
    for kind, build in MODELS_UNDER_TEST.items():
        model = build(0)
        assert type_of_model(model) == kind and MODELS[kind][1] is type(model)
        assert parameter_count(model.config) == model.num_params()


@pytest.mark.parametrize("kind", list(MODELS_UNDER_TEST))
def test_minilm_train_learns_resumes_and_samples(kind, tmp_path, capsys):
    out = tmp_path / kind
    assert main(["train", "--model", kind, "--out", str(out), "--lr", "1e-2", *CLI_TINY]) == 0
    history = json.loads((out / "latest" / "train_state.json").read_text())["history"]
    assert history[-1]["val"] < history[0]["val"] - 0.3  # from ~ln 65 towards the character frequencies
    config = json.loads((out / "latest" / "config.json").read_text())
    assert config["model_type"] == kind and config["train"]["objective"] == "clm"
    assert main(["train", "--out", str(out), "--resume", "--max-iters", "42", "--eval-interval", "2"]) == 0
    assert json.loads((out / "latest" / "train_state.json").read_text())["step"] == 42
    capsys.readouterr()
    assert main(["sample", "--ckpt", str(out), "--max-new-tokens", "15", "--seed", "1"]) == 0
    assert len(capsys.readouterr().out) >= 15


@pytest.mark.parametrize("changes, message", [
    (dict(hidden_size=0), "hidden_size must be a positive integer, got 0"),
    (dict(dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
])
def test_bad_configs_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        LSTMConfig(**{**RECURRENT, **changes})
    with pytest.raises(ValueError, match="n_embd 10 is not divisible by n_head 3"):
        TutorialConfig(**{**TUTORIAL, "n_embd": 10})
    with pytest.raises(ValueError, match="is not a LSTM config"):
        LSTMConfig.from_checkpoint({**RECURRENT, **changes}, "ckpt")

import argparse
import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import safetensors.numpy
import torch
import transformers
from hypothesis import given
from hypothesis import strategies as st

from layer_checks import assert_close
from minilm import to_numpy
from minilm.backend import asarray
from minilm.files.checkpoint import load_checkpoint
from minilm.data.bpe import BPETokenizer
from minilm.files.hf import BLOCK, config_from_hf, load_gpt2, name_map, save_gpt2
from minilm.cli.hf import add_export_arguments, add_import_arguments, run_export, run_import
from minilm.models import GPT, GPTConfig
from minilm.nn.dropout import Dropout
from minilm.nn.loss import CrossEntropyLoss
from minilm.nn.normalization import LayerNorm


# every size different, and C square matrices (attn.c_proj) so a missing transpose passes the shape checks
SIZES = dict(vocab_size=101, n_positions=32, n_embd=64, n_layer=2, n_head=2)
B, T = 3, 19


def hf_model(seed=0, **overrides):
    """A transformers GPT-2 with every tensor random at realistic scales: biases and LayerNorm affine too,
    so a swapped ln_1/ln_2 or a dropped bias changes the logits (the stock init leaves them 1 and 0)."""
    cfg = transformers.GPT2Config(**{**SIZES, "bos_token_id": None, "eos_token_id": None, **overrides})
    model = transformers.GPT2LMHeadModel(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen, dtype=param.dtype)
            param.copy_(1 + 0.1 * noise if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight"))
                        else 0.1 * noise if param.ndim == 1 else 0.15 * noise)
    return model


def save_hf(model, folder, **kwargs):
    model.save_pretrained(folder, safe_serialization=True, **kwargs)
    return folder


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """(folder, transformers model) of the GPT-2 the tests read."""
    model = hf_model()
    return save_hf(model, tmp_path_factory.mktemp("hf") / "gpt2"), model


def ids(seed=1):
    return np.random.default_rng(seed).integers(0, SIZES["vocab_size"], (B, T))


def hf_logits(model, idx):
    with torch.no_grad():
        return model(torch.from_numpy(idx)).logits.numpy()


def test_name_map_covers_every_weight_of_both_libraries_once():
    rows = name_map(2)
    theirs, ours, transposed = zip(*rows)
    hf_names = set(hf_model().state_dict()) - {"lm_head.weight"}  # tied: the same tensor as wte
    our_names = set(GPT(GPTConfig(vocab_size=101, block_size=32, n_layer=2, n_head=2, n_embd=64)).state_dict())
    assert len(set(theirs)) == len(theirs) == len(hf_names) and set(theirs) == hf_names
    assert len(set(ours)) == len(ours) and set(ours) == our_names - {"lm_head.weight"}
    # exactly the four Conv1D matrices of each block are transposed
    conv1d = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    expected = sorted(f"transformer.h.{i}.{m}.weight" for i in range(2) for m in conv1d)
    assert sorted(name for name, _, t in rows if t) == expected
    assert ("transformer.h.1.attn.c_attn.weight", "h.1.attn.in_proj_weight", True) in rows
    assert ("transformer.h.0.attn.c_proj.bias", "h.0.attn.out_proj.bias", False) in rows


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_logits_loss_and_every_gradient_equal_transformers(hf, dtype):
    folder, _ = hf
    reference = hf_model().to(getattr(torch, dtype))  # the same seed: the same weights, a fresh graph
    model = load_gpt2(folder, dtype=dtype)
    idx, targets = ids(1), ids(2)

    logits = model(asarray(idx))
    criterion = CrossEntropyLoss()
    loss = criterion(logits, asarray(targets))
    model.backward(criterion.backward())

    torch_logits = reference(torch.from_numpy(idx)).logits
    torch_loss = torch.nn.functional.cross_entropy(torch_logits.reshape(-1, SIZES["vocab_size"]),
                                                   torch.from_numpy(targets).reshape(-1))
    torch_loss.backward()
    assert_close(to_numpy(logits), torch_logits.detach().numpy(), dtype, "logits")
    assert_close(to_numpy(loss), torch_loss.detach().numpy(), dtype, "loss")
    params = dict(model.named_parameters())
    torch_params = dict(reference.named_parameters())
    for theirs, ours, t in name_map(2):
        grad = torch_params[theirs].grad.numpy()
        assert_close(to_numpy(params[ours].grad), grad.T if t else grad, dtype, f"d{ours} vs d{theirs}")
    assert len(torch_params) == len(params) == len(name_map(2))  # wte/lm_head counted once on both sides


def test_export_opens_in_transformers_with_nothing_missing_and_identical_logits(hf, tmp_path):
    folder, reference = hf
    out = save_gpt2(load_gpt2(folder), tmp_path / "export")
    loaded, info = transformers.GPT2LMHeadModel.from_pretrained(out, output_loading_info=True)
    # transformers re-initialises a missing weight with only a log line: the report must be empty
    assert {key: list(value) for key, value in info.items()} == dict.fromkeys(info, [])
    np.testing.assert_array_equal(hf_logits(loaded.eval(), ids()), hf_logits(reference, ids()))
    umask = os.umask(0)
    os.umask(umask)
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]
    for name in os.listdir(out):
        assert os.stat(out / name).st_mode & 0o777 == 0o644 & ~umask
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["architectures"] == ["GPT2LMHeadModel"]
    assert (config["n_positions"], config["n_embd"], config["vocab_size"]) == (32, 64, 101)


def test_a_forgotten_transpose_of_the_square_c_proj_is_caught_only_by_the_logits(hf, tmp_path, monkeypatch):
    folder, reference = hf
    model = load_gpt2(folder)
    wrong = tuple((theirs, ours, False if theirs == "attn.c_proj.weight" else t) for theirs, ours, t in BLOCK)
    monkeypatch.setattr("minilm.files.hf.BLOCK", wrong)
    out = save_gpt2(model, tmp_path / "wrong")
    loaded, info = transformers.GPT2LMHeadModel.from_pretrained(out, output_loading_info=True)
    assert not any(info.values())  # every name and shape checks out...
    assert not np.allclose(hf_logits(loaded.eval(), ids()), hf_logits(reference, ids()), rtol=1e-3)  # ...logits do not


def test_import_then_export_writes_identical_tensors(hf, tmp_path):
    folder, _ = hf
    original = safetensors.numpy.load_file(folder / "model.safetensors")
    exported = safetensors.numpy.load_file(save_gpt2(load_gpt2(folder), tmp_path / "again") / "model.safetensors")
    assert sorted(exported) == sorted(original)
    for name, array in original.items():
        assert exported[name].dtype == array.dtype and exported[name].shape == array.shape, name
        np.testing.assert_array_equal(exported[name], array, err_msg=name)


@given(n_layer=st.integers(1, 2), n_head=st.integers(1, 3), hs=st.integers(1, 5), vocab=st.integers(1, 9),
       block=st.integers(1, 7), seed=st.integers(0, 2**32 - 1))
def test_save_then_load_gives_the_same_tensors_at_any_size(tmp_path_factory, n_layer, n_head, hs, vocab, block, seed):
    cfg = GPTConfig(vocab_size=vocab, block_size=block, n_layer=n_layer, n_head=n_head, n_embd=n_head * hs)
    model = GPT(cfg, rng=seed)
    rng = np.random.default_rng(seed)
    for param in model.parameters():  # biases and LayerNorms off their 0 / 1 init, so a swap would show
        param.data = asarray(rng.standard_normal(param.shape).astype(np.float32))
    back = load_gpt2(save_gpt2(model, tmp_path_factory.mktemp("any") / "out"))
    assert back.config == dataclasses.replace(cfg, dropout=0.0)
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(to_numpy(back.state_dict()[name]), to_numpy(array), err_msg=name)


def test_legacy_names_mask_buffers_and_a_stored_head_are_read(hf, tmp_path):
    folder, _ = hf
    arrays = safetensors.numpy.load_file(folder / "model.safetensors")
    legacy = {name.removeprefix("transformer."): array for name, array in arrays.items()}
    mask = np.tril(np.ones((32, 32), np.float32))[None, None]  # (1, 1, T_max, T_max), as old files hold it
    legacy |= {f"h.{i}.attn.{b}": mask for i in range(2) for b in ("bias", "masked_bias")}
    legacy["lm_head.weight"] = arrays["transformer.wte.weight"]
    (tmp_path / "legacy").mkdir()
    shutil.copy(folder / "config.json", tmp_path / "legacy")
    safetensors.numpy.save_file(legacy, tmp_path / "legacy" / "model.safetensors")
    ours, theirs = load_gpt2(tmp_path / "legacy").state_dict(), load_gpt2(folder).state_dict()
    for name in theirs:
        np.testing.assert_array_equal(to_numpy(ours[name]), to_numpy(theirs[name]), err_msg=name)


def test_a_sharded_folder_is_read(hf, tmp_path):
    folder, model = hf
    sharded = save_hf(model, tmp_path / "sharded", max_shard_size="100KB")
    assert (sharded / "model.safetensors.index.json").exists()
    logits = to_numpy(load_gpt2(sharded)(asarray(ids())))
    assert_close(logits, hf_logits(model, ids()), "float32", "sharded logits")


def test_layer_norm_epsilon_comes_from_the_config(tmp_path):
    reference = hf_model(layer_norm_epsilon=0.5)  # large enough to move the logits far beyond rounding
    folder = save_hf(reference, tmp_path / "eps")
    model = load_gpt2(folder)
    assert model.config.layer_norm_eps == 0.5
    assert {m.eps for _, m in model.named_modules() if isinstance(m, LayerNorm)} == {0.5}
    assert_close(to_numpy(model(asarray(ids()))), hf_logits(reference, ids()), "float32", "logits, eps 0.5")
    assert json.loads((save_gpt2(model, tmp_path / "out") / "config.json").read_text())["layer_norm_epsilon"] == 0.5


def test_gpt_config_layer_norm_eps_builds_every_layer_norm_and_old_configs_keep_1e_5():
    for norm in ("pre", "post"):
        model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=12, norm=norm,
                              layer_norm_eps=1e-3))
        norms = [m for _, m in model.named_modules() if isinstance(m, LayerNorm)]
        assert len(norms) == 2 * 2 + (norm == "pre") and {m.eps for m in norms} == {1e-3}
    old = {"vocab_size": 11, "block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 12, "dropout": 0.0, "bias": True,
           "pos": "learned", "norm": "pre", "tie_weights": True}  # a config.json written before the field existed
    assert GPTConfig(**old).layer_norm_eps == 1e-5
    for eps in (0, -1e-5, float("nan")):
        with pytest.raises(ValueError, match="layer_norm_eps must be positive"):
            GPTConfig(**old, layer_norm_eps=eps)


def test_same_rng_same_dropout_masks_and_dropout_overrides_the_config(hf):
    folder, _ = hf
    idx = asarray(ids())
    first, second = (to_numpy(load_gpt2(folder, rng=7).train()(idx)) for _ in range(2))
    np.testing.assert_array_equal(first, second)  # the same masks, drawn from the same seeds
    other = to_numpy(load_gpt2(folder, rng=8).train()(idx))
    assert not np.allclose(first, other, rtol=1e-3)  # ...and the seed is what chooses them
    assert load_gpt2(folder).config.dropout == 0.1  # None keeps GPT-2's own (GPT2Config's default 0.1)
    for p in (0.0, 0.3):
        model = load_gpt2(folder, rng=7, dropout=p)
        assert model.config.dropout == p
        assert {m.p for _, m in model.named_modules() if isinstance(m, Dropout)} == {p}
    model = load_gpt2(folder, rng=7, dropout=0.0)
    np.testing.assert_array_equal(to_numpy(model.train()(idx)), to_numpy(model.eval()(idx)))
    with pytest.raises(ValueError, match="dropout must be in"):
        load_gpt2(folder, dropout=1.0)


def test_a_bias_free_model_exports_with_zero_biases(tmp_path):
    cfg = GPTConfig(vocab_size=101, block_size=32, n_layer=2, n_head=2, n_embd=64, bias=False)
    model = GPT(cfg, rng=0)
    rng = np.random.default_rng(0)
    for name, param in model.named_parameters():  # LayerNorms keep their affine: shifted so a swap would show
        noise = rng.standard_normal(param.shape).astype(np.float32)
        param.data = asarray(1 + 0.1 * noise if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight"))
                             else 0.1 * noise if param.data.ndim == 1 else 0.15 * noise)
    out = save_gpt2(model, tmp_path / "export")
    loaded, info = transformers.GPT2LMHeadModel.from_pretrained(out, output_loading_info=True)
    assert {key: list(value) for key, value in info.items()} == dict.fromkeys(info, [])
    theirs = hf_logits(loaded.eval(), ids())
    ours = to_numpy(model(asarray(ids())))
    assert_close(ours, theirs, "float32", "logits of a bias=False model exported")
    conv1d_biases = [f"transformer.h.{i}.{m}.bias" for i in range(2) for m in ("attn.c_attn", "attn.c_proj",
                                                                                   "mlp.c_fc", "mlp.c_proj")]
    assert not any(loaded.state_dict()[name].any() for name in conv1d_biases)
    back = load_gpt2(out)  # GPT-2's layout always has biases: a bias=True model whose Linear biases are 0
    assert back.config == dataclasses.replace(cfg, bias=True)
    np.testing.assert_array_equal(to_numpy(back(asarray(ids()))), ours)


GOOD = {**SIZES, "model_type": "gpt2", "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5}


@pytest.mark.parametrize("field, value", [
    ("activation_function", "relu"), ("activation_function", "gelu"), ("n_inner", 100),
    ("scale_attn_by_inverse_layer_idx", True), ("scale_attn_weights", False), ("add_cross_attention", True),
    ("tie_word_embeddings", False), ("model_type", "bert"), ("n_embd", "64"), ("n_layer", None),
    ("layer_norm_epsilon", 0), ("scale_attn_weights", 1),
])
def test_configs_minilm_cannot_build_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"config.json {field}"):
        config_from_hf({**GOOD, field: value})


def test_configs_minilm_can_build_are_read():
    old = {key: value for key, value in GOOD.items() if key != "n_positions"} | {"n_ctx": 32}  # pre-2019 spelling
    cfg = config_from_hf({**old, "n_inner": 256, "activation_function": "gelu_pytorch_tanh",
                          "reorder_and_upcast_attn": True, "resid_pdrop": 0.2, "layer_norm_epsilon": 1e-6})
    assert (cfg.vocab_size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.n_embd) == (101, 32, 2, 2, 64)
    assert (cfg.dropout, cfg.pos, cfg.norm, cfg.tie_weights, cfg.bias) == (0.2, "learned", "pre", True, True)
    assert cfg.layer_norm_eps == 1e-6


@pytest.mark.parametrize("field, value", [("norm", "post"), ("pos", "sinusoidal"), ("tie_weights", False)])
def test_models_the_gpt2_layout_cannot_hold_are_refused(tmp_path, field, value):
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=12, **{field: value}))
    with pytest.raises(ValueError, match=f"cannot hold a model with {field}={value!r}"):
        save_gpt2(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_mixed_layer_norm_eps_is_refused(tmp_path):
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=12))
    model.h[0].ln_2.eps = 1e-6
    with pytest.raises(ValueError, match="one layer_norm_epsilon"):
        save_gpt2(model, tmp_path / "out")


def copy_with(hf, tmp_path, edit):
    """A copy of the test folder with ``edit(arrays)`` applied to its tensors."""
    folder, _ = hf
    arrays = safetensors.numpy.load_file(folder / "model.safetensors")
    edit(arrays)
    (tmp_path / "bad").mkdir()
    shutil.copy(folder / "config.json", tmp_path / "bad")
    safetensors.numpy.save_file(arrays, tmp_path / "bad" / "model.safetensors")
    return tmp_path / "bad"


@pytest.mark.parametrize("edit, message", [
    (lambda a: a.pop("transformer.h.1.mlp.c_fc.bias"), "missing tensor transformer.h.1.mlp.c_fc.bias"),
    (lambda a: a.update({"transformer.h.0.attn.c_proj.weight": np.zeros((64, 32), np.float32)}),
     r"tensor transformer.h.0.attn.c_proj.weight has shape \(64, 32\), expected \(64, 64\)"),
    (lambda a: a.update({"transformer.h.0.mlp.c_fc.weight": np.zeros((256, 64), np.float32)}),
     r"c_fc.weight has shape \(256, 64\), expected \(64, 256\)"),
    (lambda a: a.update({"transformer.h.2.ln_1.weight": np.ones(64, np.float32)}),
     "unexpected tensor transformer.h.2.ln_1.weight"),
    (lambda a: a.update({"lm_head.weight": np.zeros((101, 64), np.float32)}), "lm_head.weight differs"),
])
def test_a_file_with_missing_or_mis_shaped_tensors_is_refused(hf, tmp_path, edit, message):
    with pytest.raises(ValueError, match=message):
        load_gpt2(copy_with(hf, tmp_path, edit))


def test_bad_folders_raise_clear_errors(hf, tmp_path):
    folder, _ = hf
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_gpt2(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_gpt2(tmp_path / "empty")
    shutil.copy(folder / "config.json", tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="has no model.safetensors"):
        load_gpt2(tmp_path / "empty")
    data = (folder / "model.safetensors").read_bytes()
    (tmp_path / "empty" / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_gpt2(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        load_gpt2(tmp_path / "empty")


def test_export_never_replaces_files(hf, tmp_path):
    folder, _ = hf
    model = load_gpt2(folder)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists"):
        save_gpt2(model, tmp_path / "taken")
    assert os.listdir(tmp_path / "taken") == ["notes.txt"]
    assert os.listdir(tmp_path) == ["taken"]  # no temp folder left behind
    (tmp_path / "empty").mkdir()
    assert sorted(os.listdir(save_gpt2(model, tmp_path / "empty"))) == ["config.json", "model.safetensors"]


def test_import_hf_then_export_commands(hf, tmp_path, capsys):
    folder, reference = hf
    (tmp_path / "src").mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(folder / name, tmp_path / "src")
    tokenizer = BPETokenizer.train("to be or not to be, that is the question " * 30, 300)
    tokenizer.save_gpt2_files(tmp_path / "src" / "vocab.json", tmp_path / "src" / "merges.txt")
    parser = argparse.ArgumentParser()
    add_import_arguments(parser)
    with pytest.raises(SystemExit):  # --out is required
        parser.parse_args([str(tmp_path / "src")])
    assert run_import(parser.parse_args([str(tmp_path / "src"), "--out", str(tmp_path / "ckpt")])) == 0
    ckpt = load_checkpoint(tmp_path / "ckpt")
    assert ckpt.config == {"model_type": "gpt", "model": dataclasses.asdict(load_gpt2(folder).config), "train": {}}
    assert BPETokenizer.from_dict(ckpt.tokenizer) == tokenizer  # GPT-2's vocab.json + merges.txt came along
    np.testing.assert_array_equal(ckpt.model_state["h.0.attn.out_proj.weight"],
                                  reference.state_dict()["transformer.h.0.attn.c_proj.weight"].numpy().T)

    parser = argparse.ArgumentParser()
    add_export_arguments(parser)
    assert run_export(parser.parse_args(["--ckpt", str(tmp_path / "ckpt"), "--hf", str(tmp_path / "out")])) == 0
    loaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    np.testing.assert_array_equal(hf_logits(loaded, ids()), hf_logits(reference, ids()))
    assert BPETokenizer.from_gpt2_files(tmp_path / "out" / "vocab.json", tmp_path / "out" / "merges.txt") == tokenizer


def test_export_command_refuses_a_checkpoint_gpt2_cannot_hold(tmp_path):
    from minilm.files.checkpoint import save_checkpoint
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=12, pos="sinusoidal"))
    save_checkpoint(tmp_path / "ckpt", model.state_dict(), {"model": dataclasses.asdict(model.config), "train": {}})
    parser = argparse.ArgumentParser()
    add_export_arguments(parser)
    with pytest.raises(ValueError, match="pos='sinusoidal'"):
        run_export(parser.parse_args(["--ckpt", str(tmp_path / "ckpt"), "--hf", str(tmp_path / "out")]))
    assert not (tmp_path / "out").exists()

"""BERT in the Hugging Face layout (minilm.files.hf_bert and the import-hf / export commands), checked against
transformers' BertForMaskedLM, BertForSequenceClassification and BertModel on the same weights."""

import json
import os
import pathlib
import pickle
import shutil

import numpy as np
import pytest
import safetensors.numpy
import torch
import transformers

import minilm
from layer_checks import assert_close
from minilm import to_numpy
from minilm.backend import asarray
from minilm.cli import main
from minilm.data.wordpiece import WordPieceTokenizer
from minilm.files.checkpoint import load_checkpoint
from minilm.files.hf_bert import BLOCK, config_from_hf, load_bert, name_map, save_bert
from minilm.models import BERT, BERTConfig
from minilm.verify.tolerances import largest_magnitude

CLASSES = {"mlm": transformers.BertForMaskedLM, "cls": transformers.BertForSequenceClassification,
           "none": transformers.BertModel}
# two sizes, every size within each different (B = 3 and T = 11 below), so a transposed or mis-cut matrix shows;
# "other" has a [PAD] id that is not 0, d_ff = 4C (stored as minilm's 0) and an eps far from BERT's 1e-12
SIZES = {
    "small": dict(vocab_size=53, hidden_size=24, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40,
                  max_position_embeddings=17, type_vocab_size=3, num_labels=5),
    "other": dict(vocab_size=41, hidden_size=20, num_hidden_layers=1, num_attention_heads=5, intermediate_size=80,
                  max_position_embeddings=13, type_vocab_size=2, pad_token_id=7, layer_norm_eps=1e-3, num_labels=2),
}
B, T = 3, 11
ALL = [(size, head) for size in SIZES for head in CLASSES]


def hf_model(size="small", head="mlm", seed=0, **overrides):
    """A transformers BERT with every tensor random at realistic scales (LayerNorm weights near 1, biases off 0),
    so a swapped LayerNorm, a dropped bias or q and k exchanged changes the outputs; the [PAD] row too."""
    cfg = transformers.BertConfig(**{**SIZES[size], **overrides})
    model = CLASSES[head](cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen, dtype=param.dtype)
            param.copy_(1 + 0.1 * noise if name.endswith("LayerNorm.weight")
                        else 0.1 * noise if param.ndim == 1 else 0.15 * noise)
    return model


def save_hf(model, folder, **kwargs):
    model.save_pretrained(folder, safe_serialization=True, **kwargs)
    return pathlib.Path(folder)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """(size, head) -> the folder of hf_model(size, head), saved by transformers."""
    root = tmp_path_factory.mktemp("bert")
    return {(size, head): save_hf(hf_model(size, head), root / f"{size}-{head}") for size, head in ALL}


def batch(size="small", seed=1):
    """(ids, token_type_ids, attention_mask) (B, T) each: rows 1 and 2 padded with [PAD] ids, two segments."""
    rng = np.random.default_rng(seed)
    pad, lengths = SIZES[size].get("pad_token_id", 0), (T, 7, 4)
    ids = rng.integers(0, SIZES[size]["vocab_size"], (B, T))
    mask = (np.arange(T) < np.array(lengths)[:, None]).astype(np.int64)
    types = (np.arange(T) >= np.array([5, 3, 2])[:, None]).astype(np.int64) * rng.integers(1, 3, (B, 1))
    types = np.minimum(types, SIZES[size]["type_vocab_size"] - 1) * mask
    return np.where(mask == 1, ids, pad), types, mask


def hf_output(model, ids, types, mask):
    out = model(input_ids=torch.from_numpy(ids), token_type_ids=torch.from_numpy(types),
                attention_mask=torch.from_numpy(mask))
    return out.last_hidden_state if isinstance(model, transformers.BertModel) else out.logits


def ours_output(model, ids, types, mask):
    return to_numpy(model(asarray(ids), token_type_ids=asarray(types), attention_mask=asarray(mask)))


def test_name_map_covers_every_weight_of_both_libraries_once():
    for head, cls in CLASSES.items():
        rows = name_map(2, head)
        theirs = [t for names, _ in rows for t in names]
        ours = [o for _, o in rows]
        tied = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}  # the same tensors as others
        hf_names = set(hf_model("small", head).state_dict()) - tied
        our_names = set(BERT(BERTConfig(vocab_size=53, block_size=17, n_layer=2, n_head=4, n_embd=24, d_ff=40,
                                        type_vocab_size=3, head=head)).state_dict()) - {"mlm.decoder.weight"}
        assert len(set(theirs)) == len(theirs) and set(theirs) == hf_names, head
        assert len(set(ours)) == len(ours) and set(ours) == our_names, head
    prefix = "bert.encoder.layer.1.attention.self."
    assert ((f"{prefix}query.weight", f"{prefix}key.weight", f"{prefix}value.weight"), "h.1.attn.in_proj_weight") \
        in name_map(2, "cls")  # q, k, v in that order: the row blocks of in_proj_weight
    assert (("encoder.layer.0.output.LayerNorm.bias",), "h.0.ln_2.bias") in name_map(2, "none")  # no "bert."


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("size, head", ALL)
def test_outputs_and_every_gradient_equal_transformers(folders, size, head, dtype):
    reference = hf_model(size, head).to(getattr(torch, dtype))  # the same seed: the same weights, a fresh graph
    model = load_bert(folders[size, head], dtype=dtype)
    ids, types, mask = batch(size)
    theirs = hf_output(reference, ids, types, mask)
    ours = ours_output(model, ids, types, mask)
    dout = np.random.default_rng(2).standard_normal(theirs.shape).astype(dtype)  # a random cotangent ("fake loss")
    (theirs * torch.from_numpy(dout)).sum().backward()
    model.backward(asarray(dout))

    torch_params, params = dict(reference.named_parameters()), dict(model.named_parameters())
    grads = {ours_name: np.concatenate([torch_params[t].grad.numpy() for t in names])
             for names, ours_name in name_map(SIZES[size]["num_hidden_layers"], head)
             if torch_params[names[0]].grad is not None}  # BertModel's pooler: not on the hidden states' path
    largest = largest_magnitude([theirs.detach().numpy(), *grads.values(), *(p.detach().numpy()
                                                                          for p in torch_params.values())])
    assert_close(ours, theirs.detach().numpy(), dtype, f"{head} output", largest)
    kind = "float64" if dtype == "float64" else "float32_model"  # a whole model's gradients (tolerances.py)
    for name, grad in grads.items():
        assert_close(to_numpy(params[name].grad), grad, kind, f"d{name}", largest)
    missing = {name for name, p in params.items() if p.grad is None}
    assert missing == ({"pooler.weight", "pooler.bias"} if head == "none" else set()) and len(grads) + len(missing) \
        == len(params) == len(name_map(SIZES[size]["num_hidden_layers"], head))  # every parameter, tied ones once
    pad = SIZES[size].get("pad_token_id", 0)
    # padding_idx: the [PAD] row gets no gradient from the embedding lookup (it does from the tied MLM decoder,
    # its logit, in both libraries alike, which the comparison above covers)
    assert (ids == pad).any() and (head == "mlm" or not to_numpy(params["embeddings.wte.weight"].grad)[pad].any())


@pytest.mark.parametrize("size, head", ALL)
def test_export_opens_in_transformers_with_nothing_missing_and_identical_outputs(folders, tmp_path, size, head):
    out = save_bert(load_bert(folders[size, head]), tmp_path / "export")
    loaded, info = CLASSES[head].from_pretrained(out, output_loading_info=True)
    # transformers re-initialises a missing weight with only a log line: the report must be empty
    assert {key: list(value) for key, value in info.items()} == dict.fromkeys(info, [])
    with torch.no_grad():
        np.testing.assert_array_equal(hf_output(loaded.eval(), *batch(size)).numpy(),
                                      hf_output(hf_model(size, head), *batch(size)).numpy())
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [CLASSES[head].__name__] and config["model_type"] == "bert"
    assert loaded.config.num_labels == SIZES[size]["num_labels"] or head != "cls"

    # ...and the tensors are the very ones transformers wrote: import then export changes no bit
    original = safetensors.numpy.load_file(folders[size, head] / "model.safetensors")
    exported = safetensors.numpy.load_file(out / "model.safetensors")
    assert sorted(exported) == sorted(original)
    for name, array in original.items():
        assert exported[name].dtype == array.dtype and exported[name].shape == array.shape, name
        np.testing.assert_array_equal(exported[name], array, err_msg=name)


def test_query_and_key_exchanged_are_caught_only_by_the_outputs(folders, tmp_path, monkeypatch):
    """q and k are both (C, C): cutting in_proj_weight in the order k, q, v passes every name and shape check."""
    model = load_bert(folders["small", "cls"])
    wrong = tuple((tuple(sorted(theirs, key=lambda t: ".key." not in t)) if "attention.self" in theirs[0] else theirs,
                   ours) for theirs, ours in BLOCK)
    monkeypatch.setattr("minilm.files.hf_bert.BLOCK", wrong)
    loaded, info = transformers.BertForSequenceClassification.from_pretrained(
        save_bert(model, tmp_path / "wrong"), output_loading_info=True)
    assert not any(info.values())  # every name and shape checks out...
    with torch.no_grad():  # ...the outputs do not
        assert not np.allclose(hf_output(loaded.eval(), *batch()).numpy(),
                               hf_output(hf_model("small", "cls"), *batch()).numpy(), rtol=1e-3)


@pytest.mark.parametrize("fields", [
    dict(vocab_size=9, block_size=1, n_layer=1, n_head=1, n_embd=3, head="mlm"),  # T = 1, one head
    dict(vocab_size=30, block_size=12, n_layer=2, n_head=2, n_embd=10, d_ff=7, type_vocab_size=1, pad_token_id=4,
         dropout=0.25, layer_norm_eps=1e-5, head="cls", num_labels=3),
    dict(vocab_size=17, block_size=6, n_layer=1, n_head=3, n_embd=9, type_vocab_size=4, head="none"),
])
def test_a_minilm_bert_exports_and_reads_back_whole(tmp_path, fields):
    """minilm -> Hugging Face -> minilm gives the same config and tensors, and transformers computes the same."""
    cfg = BERTConfig(**fields)
    model = BERT(cfg, rng=3).to("float64").eval()
    rng = np.random.default_rng(0)
    for param in model.parameters():  # off BERT's init (zero biases, unit LayerNorms), so a swap would show
        param.data = asarray(rng.standard_normal(param.shape) * 0.3)
    out = save_bert(model, tmp_path / "out")
    back = load_bert(out, dtype="float64")
    assert back.config == cfg
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(to_numpy(back.state_dict()[name]), to_numpy(array), err_msg=name)
    loaded, info = CLASSES[cfg.head].from_pretrained(out, output_loading_info=True)
    assert not any(info.values()) and loaded.dtype == torch.float64
    ids = rng.integers(0, cfg.vocab_size, (2, cfg.block_size))
    types, mask = rng.integers(0, cfg.type_vocab_size, ids.shape), np.ones_like(ids)
    with torch.no_grad():
        theirs = hf_output(loaded.eval(), ids, types, mask).numpy()
    assert_close(ours_output(model, ids, types, mask), theirs, "float64", f"{cfg.head} output of an exported minilm BERT")


def wordpiece_folder(folders, tmp_path):
    """The small MLM folder with a BERT tokenizer beside it: vocab.txt and a cased tokenizer_config.json."""
    folder = tmp_path / "src"
    shutil.copytree(folders["small", "mlm"], folder)
    tokenizer = WordPieceTokenizer.train("The cat sat on the mat, the Dog ran at a rat. " * 20, 53, do_lower_case=False)
    tokenizer.save_vocab(folder / "vocab.txt")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "model_max_length": 17}))
    return folder, tokenizer


def test_import_hf_and_export_commands_carry_weights_and_tokenizer(folders, tmp_path, capsys):
    folder, tokenizer = wordpiece_folder(folders, tmp_path)
    assert main(["import-hf", str(folder), "--out", str(tmp_path / "ckpt")]) == 0
    ckpt = load_checkpoint(tmp_path / "ckpt")
    assert ckpt.config["model_type"] == "bert" and ckpt.config["model"]["head"] == "mlm"
    model, ours = minilm.load(tmp_path / "ckpt")  # built through the registry, in eval mode
    assert isinstance(model, BERT) and ours == tokenizer and not ours.do_lower_case  # tokenizer_config.json's
    ids, types, mask = batch()
    with torch.no_grad():
        reference = hf_output(hf_model(), ids, types, mask).numpy()
    assert_close(ours_output(model, ids, types, mask), reference, "float32", "logits of the checkpoint")

    assert main(["export", "--ckpt", str(tmp_path / "ckpt"), "--hf", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors", "tokenizer_config.json", "vocab.txt"]
    loaded, info = transformers.BertForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert not any(info.values())
    with torch.no_grad():
        np.testing.assert_array_equal(hf_output(loaded.eval(), ids, types, mask).numpy(), reference)
    assert (out / "vocab.txt").read_bytes() == (folder / "vocab.txt").read_bytes()
    text = "The rat sat on the Dog, the cat ran at a mat; the dog did not."  # "dog", ";", "i": not learnt
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert hf_tokenizer(text)["input_ids"] == tokenizer.encode(text, add_special_tokens=True).tolist()
    assert "exported" in capsys.readouterr().out


def test_a_pickle_only_folder_is_refused_and_never_unpickled(folders, tmp_path, capsys):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(folders["small", "mlm"] / "config.json", folder)
    opened = tmp_path / "unpickled"  # unpickling this file would create it: pickles run code
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Touch(opened), protocol=4))
    with pytest.raises(ValueError, match=r"only pytorch_model.bin, a pickle.*save_pretrained\(DIR, "
                                         r"safe_serialization=True\)"):
        load_bert(folder)
    assert main(["import-hf", str(folder), "--out", str(tmp_path / "ckpt")]) == 2
    assert "minilm never unpickles weights" in capsys.readouterr().err
    assert not opened.exists() and not (tmp_path / "ckpt").exists()


class _Touch:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return pathlib.Path.touch, (self.path,)


GOOD = {**SIZES["small"], "model_type": "bert", "architectures": ["BertForMaskedLM"], "pad_token_id": 0,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}


@pytest.mark.parametrize("field, value", [
    ("hidden_act", "relu"), ("hidden_act", "gelu_new"), ("position_embedding_type", "relative_key"),
    ("is_decoder", True), ("add_cross_attention", True), ("tie_word_embeddings", False),
    ("attention_probs_dropout_prob", 0.2), ("problem_type", "regression"), ("model_type", "gpt2"),
    ("architectures", ["BertForTokenClassification"]), ("architectures", None), ("hidden_size", 25),
    ("pad_token_id", None), ("pad_token_id", 53), ("num_hidden_layers", "2"), ("vocab_size", True),
    ("layer_norm_eps", 0), ("is_decoder", 0), ("hidden_dropout_prob", 1.0),
])
def test_configs_minilm_cannot_build_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"config.json {field}"):
        config_from_hf({**GOOD, field: value})


def test_configs_minilm_can_build_are_read():
    cfg = config_from_hf({**GOOD, "architectures": ["BertForSequenceClassification"],
                          "id2label": {"0": "neg", "1": "neutral", "2": "pos"}, "classifier_dropout": None})
    assert (cfg.head, cfg.num_labels, cfg.d_ff, cfg.dropout, cfg.layer_norm_eps) == ("cls", 3, 40, 0.1, 1e-12)
    assert config_from_hf({**GOOD, "intermediate_size": 96}).d_ff == 0  # 4C: minilm's default spelling
    assert config_from_hf({**GOOD, "architectures": ["BertForPreTraining"]}).head == "mlm"
    assert config_from_hf({**GOOD, "classifier_dropout": 0.3}).dropout == 0.1  # no classifier under "mlm"
    with pytest.raises(ValueError, match="config.json classifier_dropout=0.3"):
        config_from_hf({**GOOD, "classifier_dropout": 0.3}, head="cls")
    assert config_from_hf({**GOOD, "attention_probs_dropout_prob": 0.2}, dropout=0.0).dropout == 0.0
    assert config_from_hf({**GOOD, "architectures": None}, head="none").head == "none"


def copy_with(folder, tmp_path, edit):
    """A copy of ``folder`` with ``edit(arrays)`` applied to its tensors."""
    arrays = safetensors.numpy.load_file(folder / "model.safetensors")
    edit(arrays)
    (tmp_path / "edited").mkdir()
    shutil.copy(folder / "config.json", tmp_path / "edited")
    safetensors.numpy.save_file(arrays, tmp_path / "edited" / "model.safetensors")
    return tmp_path / "edited"


@pytest.mark.parametrize("edit, message", [
    (lambda a: a.pop("bert.encoder.layer.1.attention.self.key.bias"),
     "missing tensor bert.encoder.layer.1.attention.self.key.bias"),
    (lambda a: a.update({"bert.encoder.layer.0.attention.self.value.weight": np.zeros((24, 12), np.float32)}),
     r"tensor bert.encoder.layer.0.attention.self.value.weight has shape \(24, 12\), expected \(24, 24\)"),
    (lambda a: a.update({"bert.encoder.layer.2.output.dense.bias": np.zeros(24, np.float32)}),
     "unexpected tensor bert.encoder.layer.2.output.dense.bias"),
    (lambda a: a.update({"cls.predictions.decoder.weight": np.zeros((53, 24), np.float32)}),
     "cls.predictions.decoder.weight differs"),
])
def test_a_file_with_missing_or_mis_shaped_tensors_is_refused(folders, tmp_path, edit, message):
    with pytest.raises(ValueError, match=message):
        load_bert(copy_with(folders["small", "mlm"], tmp_path, edit))


def test_old_names_and_tensors_of_absent_heads_are_read_as_from_pretrained_reads_them(folders, tmp_path):
    """Google's uploads: LayerNorm gamma/beta, the position_ids buffer, the NSP head and the pooler beside the
    MLM head, the tied decoder stored; read as the same model."""
    pooled = safetensors.numpy.load_file(folders["small", "cls"] / "model.safetensors")

    def old(arrays):
        renamed = {n.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): a
                   for n, a in arrays.items()}
        renamed |= {"bert.embeddings.position_ids": np.arange(17)[None],
                    "cls.seq_relationship.weight": np.ones((2, 24), np.float32),
                    "cls.seq_relationship.bias": np.ones(2, np.float32),
                    "bert.pooler.dense.weight": pooled["bert.pooler.dense.weight"],
                    "cls.predictions.decoder.weight": arrays["bert.embeddings.word_embeddings.weight"]}
        arrays.clear()
        arrays.update(renamed)

    ours = load_bert(copy_with(folders["small", "mlm"], tmp_path, old)).state_dict()
    for name, array in load_bert(folders["small", "mlm"]).state_dict().items():
        np.testing.assert_array_equal(to_numpy(ours[name]), to_numpy(array), err_msg=name)


def test_another_head_reuses_the_encoder_and_initialises_only_the_head(folders, tmp_path):
    ids, types, mask = batch()
    bare = load_bert(folders["small", "mlm"], head="none", dtype="float64")  # "bert." names read into a BertModel
    with torch.no_grad():
        encoder = hf_output(hf_model("small", "mlm").double().bert, ids, types, mask).numpy()  # its BertModel
    assert_close(ours_output(bare, ids, types, mask), encoder, "float64", "hidden states of BertForMaskedLM's encoder")
    first, second = (load_bert(folders["small", "none"], head="cls", num_labels=3, rng=5) for _ in range(2))
    encoder = load_bert(folders["small", "none"]).state_dict()
    for name, array in first.state_dict().items():  # unprefixed BertModel names read into a classifier
        expected = encoder[name] if name in encoder else second.state_dict()[name]  # the classifier: rng's init
        np.testing.assert_array_equal(to_numpy(array), to_numpy(expected), err_msg=name)
    assert first.classifier.weight.shape == (3, 24) and first.config.num_labels == 3
    relabelled = tmp_path / "relabelled"  # an MLM folder whose config says BertModel: the pooler is missing
    shutil.copytree(folders["small", "mlm"], relabelled)
    config = json.loads((relabelled / "config.json").read_text())
    (relabelled / "config.json").write_text(json.dumps({**config, "architectures": ["BertModel"]}))
    with pytest.raises(ValueError, match="missing tensor pooler.dense.weight"):
        load_bert(relabelled)  # the folder's own head must be complete; only head= allows a fresh one


def test_a_sharded_folder_is_read(tmp_path):
    reference = hf_model("small", "cls")
    sharded = save_hf(reference, tmp_path / "sharded", max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").exists()
    with torch.no_grad():
        theirs = hf_output(reference, *batch()).numpy()
    assert_close(ours_output(load_bert(sharded), *batch()), theirs, "float32", "sharded logits")


def test_export_never_replaces_files_without_overwrite(folders, tmp_path, capsys):
    model = load_bert(folders["small", "cls"])
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    for overwrite in (False, True):  # not an export: even --overwrite leaves it alone
        with pytest.raises(FileExistsError):
            save_bert(model, tmp_path / "taken", overwrite=overwrite)
    assert os.listdir(tmp_path / "taken") == ["notes.txt"]

    assert main(["import-hf", str(folders["small", "cls"]), "--out", str(tmp_path / "ckpt")]) == 0
    command = ["export", "--ckpt", str(tmp_path / "ckpt"), "--hf", str(tmp_path / "out")]
    assert main(command) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert main(command) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    assert main(command + ["--overwrite"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["ckpt", "out", "taken"]  # no temp or .previous folder left behind


def test_a_bert_checkpoint_is_refused_by_a_gpt_command_naming_both_types(folders, tmp_path, capsys):
    assert main(["import-hf", str(folders["other", "none"]), "--out", str(tmp_path / "ckpt")]) == 0
    assert main(["sample", "--ckpt", str(tmp_path / "ckpt"), "--prompt", "hi"]) == 2
    err = capsys.readouterr().err
    assert "minilm sample needs a model of type gpt" in err and "holds a bert model" in err


def test_import_hf_names_a_family_it_cannot_import(tmp_path, capsys):
    (tmp_path / "t5").mkdir()
    (tmp_path / "t5" / "config.json").write_text(json.dumps({"model_type": "t5"}))
    assert main(["import-hf", str(tmp_path / "t5"), "--out", str(tmp_path / "ckpt")]) == 2
    assert "model_type 't5'; minilm imports gpt2 and bert folders" in capsys.readouterr().err

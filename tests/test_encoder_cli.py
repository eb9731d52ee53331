"""`minilm classify`, `minilm fill-mask` and `minilm embed` (minilm.cli.encoder): their figures are the model's
own forward, and each refuses a checkpoint of the wrong type or head, naming both."""

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
import safetensors.numpy

import minilm
from bert_tiny import ay_task, finetune_config, pretrain, quiet
from minilm import to_numpy
from minilm.cli import main
from minilm.data import CharTokenizer
from minilm.files.checkpoint import save_checkpoint
from minilm.models import GPT, GPTConfig
from minilm.nn import softmax
from minilm.training.finetune import FineTuner

PROBABILITY = re.compile(r"^\s+(.+?)\s+([01]\.\d{4})$")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("encoder")
    mlm = pretrain(root, max_iters=10)
    FineTuner(finetune_config(mlm, ay_task(root / "ay.csv"), root / "cls", max_iters=20, eval_interval=20),
              log=quiet).train()
    gpt = root / "gpt"
    model = GPT(GPTConfig(vocab_size=12, block_size=8, n_layer=1, n_head=2, n_embd=8), rng=0)
    save_checkpoint(gpt, model.state_dict(), {"model_type": "gpt", "model": model.config.__dict__, "train": {}},
                    tokenizer=CharTokenizer.from_text("abcdefghijkl").to_dict())
    return SimpleNamespace(mlm=mlm, cls=root / "cls", gpt=gpt)


def rows(text):
    """(name, probability) of each indented line of a command's output."""
    return [(m.group(1), float(m.group(2))) for m in map(PROBABILITY.match, text.splitlines()) if m]


def test_classify_prints_each_label_and_the_softmax_of_the_models_logits(ckpts, capsys):
    texts = ["to be ay not", "that is the question"]
    assert main(["classify", "--ckpt", str(ckpts.cls), *texts]) == 0
    out = capsys.readouterr().out
    model, tokenizer = minilm.load(ckpts.cls)
    for text, block in zip(texts, out.split("\n'")):
        ids, types = tokenizer.encode_pair(text)
        expected = to_numpy(softmax(model(ids[None, :], token_type_ids=types[None, :])))[0]  # (K,)
        shown = rows(block)
        assert [name for name, _ in shown] == ["no", "yes"]
        np.testing.assert_allclose([p for _, p in shown], expected, atol=5e-5)  # printed to 4 places
        assert abs(sum(p for _, p in shown) - 1) < 2e-4
        assert f"-> {['no', 'yes'][int(np.argmax(expected))]}" in block.splitlines()[0]
    assert main(["classify", "--ckpt", str(ckpts.cls), "a", "b", "c", "--pair", "x", "--pair", "y"]) == 2
    assert "--pair is given 2 times for 3 texts" in capsys.readouterr().err


def test_fill_mask_lists_the_top_k_tokens_of_each_mask_most_probable_first(ckpts, capsys):
    text = "to be or [MASK]ot to [MASK]e"
    assert main(["fill-mask", "--ckpt", str(ckpts.mlm), text, "--top-k", "4"]) == 0
    out = capsys.readouterr().out
    model, tokenizer = minilm.load(ckpts.mlm)
    ids = tokenizer.encode(text)  # a char tokenizer: [MASK] is one token, the text as pre-trained (no [CLS])
    where = np.flatnonzero(ids == tokenizer.mask_id)
    probs = to_numpy(softmax(model(ids[None, :])))[0, where]  # (2, V)
    blocks = out.split("[MASK] ")[1:]
    assert len(blocks) == 2 and out.startswith(repr(text))
    for block, p in zip(blocks, probs):
        shown = rows(block)
        assert len(shown) == 4 and [q for _, q in shown] == sorted((q for _, q in shown), reverse=True)
        top = np.argsort(-p, kind="stable")[:4]
        assert [name for name, _ in shown] == [repr(tokenizer.decode([int(i)])) for i in top]
        np.testing.assert_allclose([q for _, q in shown], p[top], atol=5e-5)
    assert main(["fill-mask", "--ckpt", str(ckpts.mlm), "no mask here"]) == 2
    assert "no [MASK] in 'no mask here'" in capsys.readouterr().err


def test_embed_writes_the_hidden_states_the_head_reads_as_safetensors(ckpts, tmp_path, capsys):
    out = tmp_path / "vectors.safetensors"
    texts = ["to be", "that is the question"]
    for ckpt in (ckpts.mlm, ckpts.cls):
        assert main(["embed", "--ckpt", str(ckpt), *texts, "--out", str(out), "--overwrite"]) == 0
        saved = safetensors.numpy.load_file(out)
        hidden, mask = saved["last_hidden_state"], saved["attention_mask"]
        T = len("that is the question") + 2  # [CLS] ... [SEP], the shorter text padded
        assert hidden.shape == (2, T, 24) and saved["cls"].shape == (2, 24) and mask.shape == (2, T)
        np.testing.assert_array_equal(saved["cls"], hidden[:, 0])
        assert mask.sum(axis=1).tolist() == [len("to be") + 2, T]
        real = mask[..., None].astype(bool)  # the sentence vector: the mean over the real tokens, unit length
        mean = np.where(real, hidden, 0).sum(axis=1) / real.sum(axis=1)
        np.testing.assert_allclose(saved["sentence"], mean / np.linalg.norm(mean, axis=1, keepdims=True), rtol=1e-6,
                                   atol=1e-7)
        model, _ = minilm.load(ckpt)
        ids = saved["input_ids"]
        if model.config.head == "mlm":  # what the file holds is what the head reads: head(hidden) = forward
            expected, ours = model(ids, attention_mask=mask), model.mlm(hidden)
        else:
            expected = model(ids, attention_mask=mask)
            ours = model.classifier(model.pooler_act(model.pooler(hidden[:, 0])))
        np.testing.assert_allclose(to_numpy(ours), to_numpy(expected), rtol=1e-5, atol=1e-5)
    with open(out, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    assert json.loads(header["__metadata__"]["texts"]) == texts
    before = out.read_bytes()
    assert main(["embed", "--ckpt", str(ckpts.mlm), "x", "--out", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["embed", "--ckpt", str(ckpts.mlm), "x", "--out", str(tmp_path / "v.pkl")]) == 2
    assert "name a .safetensors file" in capsys.readouterr().err


@pytest.mark.parametrize("command, ckpt, message", [
    ("classify", "gpt", "minilm classify needs a model of type bert, but"),
    ("fill-mask", "gpt", "minilm fill-mask needs a model of type bert, but"),
    ("embed", "gpt", "minilm embed needs a model of type bert, but"),
    ("classify", "mlm", "minilm classify needs a BERT with a classification head"),
    ("fill-mask", "cls", "minilm fill-mask needs a BERT with a masked-LM head"),
])
def test_a_checkpoint_of_the_wrong_type_or_head_is_refused_naming_both(ckpts, tmp_path, capsys, command, ckpt,
                                                                        message):
    extra = ["--out", str(tmp_path / "v.safetensors")] if command == "embed" else []
    assert main([command, "--ckpt", str(getattr(ckpts, ckpt)), "to [MASK] be", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert ("holds a gpt model" in err) if ckpt == "gpt" else (f"with head {'mlm' if ckpt == 'mlm' else 'cls'!r}"
                                                               in err)
    assert not (tmp_path / "v.safetensors").exists()


def test_the_commands_show_their_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["fill-mask", "--help"])
    assert "tokens shown per [MASK] (default: 5)" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--lr FLOAT" in text and "(default: 0.0001)" in text and "--batch-size INT" in text
    assert "(default: 32)" in text and "(default: 0.1; on --resume the checkpoint's)" in text

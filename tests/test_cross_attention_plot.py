"""Cross-attention maps of a Seq2Seq (minilm.viz.cross_attention, `minilm attention` on a seq2seq checkpoint): the
weights are the decoder's own, rows are distributions over the real source positions, the PNG is written, a GPT
checkpoint draws as before, and a wrong layer, head or text is named."""

import argparse
import dataclasses

import numpy as np
import pytest

import matplotlib

matplotlib.use("Agg")
from matplotlib.image import imread  # noqa: E402

from minilm.backend import asarray, to_numpy  # noqa: E402
from minilm.data import CharTokenizer  # noqa: E402
from minilm.data.pairs import Pairs, make_batch, pairs_tokenizer  # noqa: E402
from minilm.files.checkpoint import save_checkpoint  # noqa: E402
from minilm.models import GPT, GPTConfig, Seq2Seq, Seq2SeqConfig  # noqa: E402
from minilm.nn import inference  # noqa: E402
from minilm.training.translation import translate  # noqa: E402
from minilm.verify.tolerances import TORCH  # noqa: E402
from minilm.viz import figures, plots  # noqa: E402
from minilm.viz.cross_attention import TARGET_SOURCE, cross_attention_weights  # noqa: E402

PAIRS = Pairs("tiny", ["one", "two", "three", "forty-two"], ["1", "2", "3", "42"])
# every size different: L = 3 decoder layers, H = 2 heads, hs = 5, C = 10, block 14, 2 encoder layers, V = 17
TINY = dict(block_size=14, d_model=10, nhead=2, num_encoder_layers=2, num_decoder_layers=3, dim_feedforward=24,
            dropout=0.2)  # dropout: the weights must come from eval mode
TOL = TORCH["float32_model"]  # a whole float32 model: padding changes the order of its sums, not their terms


def tiny_model():
    tokenizer = pairs_tokenizer(PAIRS)
    config = Seq2SeqConfig(vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_id, **TINY)
    return Seq2Seq(config, rng=3), tokenizer


def save_seq2seq(path):
    model, tokenizer = tiny_model()
    save_checkpoint(path, model.state_dict(), {"model_type": "seq2seq", "model": dataclasses.asdict(model.config),
                                               "train": {}}, tokenizer=tokenizer.to_dict())
    return path


def direct(model, src, tgt):
    """Every decoder layer's cross-attention (L, B, H, T, S) on a forward of the ids, read straight off the layers."""
    model.eval()
    for block in model.transformer.decoder:
        block.crossattention.need_weights = True
    with inference():
        model(asarray(src), asarray(tgt))
    return np.stack([to_numpy(block.crossattention.attention_weights) for block in model.transformer.decoder])


def run_attention(argv):
    parser = argparse.ArgumentParser()
    figures.add_attention_arguments(parser)
    return figures.run_attention(parser.parse_args(argv))


def pixels(fig):
    width, height = fig.get_size_inches() * plots.DPI
    return round(height), round(width)


@pytest.mark.parametrize("target", ["42", "", None])
def test_the_weights_are_those_of_the_decoders_forward_and_the_settings_come_back(target):
    model, tokenizer = tiny_model()
    model.train()
    weights, source, tokens = cross_attention_weights(model, tokenizer, "forty-two", target)
    assert model.training and not any(block.crossattention.need_weights for block in model.transformer.decoder)
    if target is None:  # the greedy translation, at most block_size - 1 tokens so [BOS] and it fit
        target = translate(model, tokenizer, ["forty-two"], max_len=TINY["block_size"] - 1)[0]
    assert source == list("forty-two") and tokens == ["[BOS]", *target]
    L, H, T, S = TINY["num_decoder_layers"], TINY["nhead"], 1 + len(target), len("forty-two")
    assert weights.shape == (L, H, T, S) and isinstance(weights, np.ndarray)
    src = tokenizer.encode("forty-two")[None, :]  # (1, S)
    tgt = np.concatenate([[tokenizer.special_id("[BOS]")], tokenizer.encode(target)]).astype(np.int64)[None, :]
    np.testing.assert_array_equal(weights, direct(model, src, tgt)[:, 0])  # the same forward, the same numbers


def test_rows_sum_to_one_over_the_real_source_positions_and_padding_gets_none():
    model, tokenizer = tiny_model()
    batch = make_batch(tokenizer, ["two", "forty-two"], ["2", "42"])  # "two" padded to 9 source positions
    padded = direct(model, batch.src, batch.tgt_in)  # (L, 2, H, T, 9)
    assert np.all(padded[:, 0, :, :, 3:] == 0)  # -inf before the softmax: exactly no weight on [PAD]
    np.testing.assert_allclose(padded.sum(axis=-1), 1.0, rtol=TORCH["float32"]["rtol"])
    weights, source, tokens = cross_attention_weights(model, tokenizer, "two", "2")  # (L, H, 2, 3), no padding
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, rtol=TORCH["float32"]["rtol"])
    np.testing.assert_allclose(weights, padded[:, 0, :, :2, :3], rtol=TOL["rtol"], atol=TOL["atol"])
    assert (source, tokens) == (["t", "w", "o"], ["[BOS]", "2"])


def test_a_source_or_target_the_model_cannot_read_is_named():
    model, tokenizer = tiny_model()
    with pytest.raises(ValueError, match=r"source 0 'one!': character '!' \(U\+0021\) at position 3"):
        cross_attention_weights(model, tokenizer, "one!")
    with pytest.raises(ValueError, match=r"the source is 15 tokens long, longer than the model's block_size 14"):
        cross_attention_weights(model, tokenizer, "forty-twoonetwo")
    with pytest.raises(ValueError, match=r"the target is 15 tokens long with its \[BOS\], longer than the model's "
                                         r"block_size 14"):
        cross_attention_weights(model, tokenizer, "two", "12341234123412")


def test_minilm_attention_draws_the_last_decoder_layers_heads_target_down_source_across(tmp_path, capsys):
    ckpt = save_seq2seq(tmp_path / "ckpt")
    out = tmp_path / "cross.png"
    assert run_attention(["--ckpt", str(ckpt), "--text", "forty-two", "--out", str(out)]) == 0
    model, tokenizer = tiny_model()
    translation = translate(model, tokenizer, ["forty-two"], max_len=TINY["block_size"] - 1)[0]
    assert capsys.readouterr().out.splitlines() == [f"forty-two -> {translation}", str(out)]
    T, S = 1 + len(translation), len("forty-two")
    drawn = imread(out)
    expected = plots.attention_heatmaps(np.zeros((2, T, S)), ["x"] * T, keys=["y"] * S, axis_labels=TARGET_SOURCE)
    assert drawn.shape[:2] == pixels(expected)
    assert run_attention(["--ckpt", str(ckpt), "--text", "forty-two", "--out", str(out), "--layer", "0",
                          "--head", "1"]) == 0
    one = imread(out)
    assert one.shape[:2] == pixels(plots.attention_heatmaps(np.zeros((T, S)), ["x"] * T, keys=["y"] * S))
    assert one.shape[1] < drawn.shape[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "cross.png"]


def test_cross_attention_heatmaps_label_the_target_down_and_the_source_across():
    w = np.random.default_rng(0).dirichlet(np.ones(4), size=(2, 3))  # (H, T, S) = (2, 3, 4)
    fig = plots.attention_heatmaps(w, ["[BOS]", "4", "2"], keys=list("a b\n"), axis_labels=TARGET_SOURCE)
    panels = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    assert len(panels) == 2 and panels[0].images[0].get_array().shape == (3, 4)
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["[BOS]", "4", "2"]
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["a", "␣", "b", "⏎"]
    assert panels[0].get_ylabel() == "target (query)" and panels[0].get_xlabel() == "source (key)"
    with pytest.raises(ValueError, match="3 key tokens given for attention over 4 key positions"):
        plots.attention_heatmaps(w, ["[BOS]", "4", "2"], keys=list("abc"))
    with pytest.raises(ValueError, match=r"shape \(H, T, S\) or \(T, S\), got \(1, 2, 3, 4\)"):
        plots.attention_heatmaps(np.zeros((1, 2, 3, 4)), list("abc"), keys=list("abcd"))


def test_a_gpt_checkpoint_still_draws_its_self_attention(tmp_path, capsys):
    config = GPTConfig(vocab_size=9, block_size=12, n_layer=3, n_head=2, n_embd=10)
    save_checkpoint(tmp_path / "gpt", GPT(config, rng=0).state_dict(), {"model": dataclasses.asdict(config),
                    "train": {}}, tokenizer=CharTokenizer.from_text("to be, or not\nto be").to_dict())
    out = tmp_path / "gpt.png"
    assert run_attention(["--ckpt", str(tmp_path / "gpt"), "--text", "to be\nor", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)  # no translation line
    assert imread(out).shape[:2] == pixels(plots.attention_heatmaps(np.zeros((2, 8, 8)), ["x"] * 8))


@pytest.mark.parametrize("extra, message", [
    (["--layer", "3"], r"decoder layer 3 out of range: the model has 3 decoder layers, numbered 0 to 2"),
    (["--layer", "-1"], r"decoder layer -1 out of range: the model has 3 decoder layers, numbered 0 to 2"),
    (["--head", "2"], r"head 2 out of range: the model has 2 heads, numbered 0 to 1"),
    (["--head", "-1"], r"head -1 out of range: the model has 2 heads, numbered 0 to 1"),
    (["--text", "two!"], r"character '!' \(U\+0021\) at position 3 is not in the vocabulary"),
    (["--text", "forty-twoonetwo"], r"the source is 15 tokens long, longer than the model's block_size 14"),
    (["--text", ""], r"--text is empty"),
])
def test_minilm_attention_on_a_seq2seq_names_what_is_wrong(tmp_path, capsys, extra, message):
    ckpt = save_seq2seq(tmp_path / "ckpt")
    out = tmp_path / "a.png"
    with pytest.raises(ValueError, match=message):
        run_attention(["--ckpt", str(ckpt), "--text", "two", "--out", str(out)] + extra)
    assert not out.exists() and capsys.readouterr().out == ""  # refused before anything is translated

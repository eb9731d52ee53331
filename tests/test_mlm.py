"""Masked language modelling for BERT: the masking (minilm.data.masking), the char tokenizer's special tokens,
the MaskedLM objective, and `minilm train --model bert --objective mlm` through the one Trainer."""

import json
import math

import numpy as np
import pytest

import minilm
from minilm import to_numpy
from minilm.cli import main
from minilm.data import load_text
from minilm.data.char_tokenizer import BERT_SPECIALS, CharTokenizer
from minilm.data.masking import IGNORE_INDEX, mask_tokens
from minilm.files.checkpoint import load_checkpoint
from minilm.models import BERT, BERTConfig
from minilm.training.config import preset_for, with_changes
from minilm.training.memory import check_memory, parameter_count
from minilm.training.objectives import MaskedLM
from minilm.training.trainer import TrainConfig, Trainer, split_scores

V, SPECIAL = 40, (35, 36, 37, 38, 39)  # a vocabulary whose last five ids are [PAD] [UNK] [CLS] [SEP] [MASK]
MASK = 39
# a BERT small enough that a test run takes a second or two; every size different
TINY = dict(block_size=16, n_layer=1, n_head=2, n_embd=12, batch_size=4, eval_iters=2, warmup_iters=2,
            sample_tokens=0, seed=7)


def quiet(*_):
    pass


def tiny(out, **changes):
    """(TrainConfig, BERTConfig) of a tiny BERT run: TINY with ``changes``."""
    return with_changes(preset_for("bert"), out=str(out), **{**TINY, **changes})


def weights(model):
    return {name: to_numpy(p.data).copy() for name, p in model.named_parameters()}


def sample_ids(rng, shape=(400, 500)):
    """Ordinary ids with ~10% special ones ([PAD] runs at row ends, [CLS]/[SEP]/[UNK] here and there)."""
    ids = rng.integers(0, 35, size=shape)  # (B, T)
    ids[:, 0], ids[:, -1] = 37, 38  # [CLS] ... [SEP]
    ids[::3, -40:] = 35  # padding at the end of every third row
    ids[rng.random(shape) < 0.02] = 36  # [UNK]
    return ids


def test_masking_chooses_15_percent_and_splits_them_80_10_10():
    rng = np.random.default_rng(0)
    ids = sample_ids(rng)
    masked, labels = mask_tokens(ids, rng, MASK, SPECIAL, V)
    ordinary = ~np.isin(ids, SPECIAL)
    chosen = labels != IGNORE_INDEX
    n, k = ordinary.sum(), chosen.sum()

    def within(count, total, p):  # 5 binomial standard deviations: a false alarm once in ~3.5 million runs
        assert abs(count - total * p) < 5 * math.sqrt(total * p * (1 - p)), (count, total, p)

    within(k, n, 0.15)
    assert not (chosen & ~ordinary).any()  # specials and padding never chosen ...
    np.testing.assert_array_equal(masked[~ordinary], ids[~ordinary])  # ... nor changed
    np.testing.assert_array_equal(labels[chosen], ids[chosen])  # labels: the original id where chosen
    np.testing.assert_array_equal(masked[~chosen], ids[~chosen])  # only chosen positions change
    as_mask, changed = masked[chosen] == MASK, (masked != ids)[chosen] & (masked[chosen] != MASK)
    within(as_mask.sum(), k, 0.8)
    within(changed.sum(), k, 0.1 * (1 - 1 / 35))  # a random token equals the original once in 35
    within((~as_mask & ~changed).sum(), k, 0.1 + 0.1 / 35)


def test_random_replacements_are_ordinary_tokens_drawn_uniformly():
    rng = np.random.default_rng(1)
    ids = sample_ids(rng)
    masked, labels = mask_tokens(ids, rng, MASK, SPECIAL, V)
    replaced = (labels != IGNORE_INDEX) & (masked != MASK)
    assert not np.isin(masked[replaced], SPECIAL).any()
    assert set(np.unique(masked[replaced & (masked != ids)])) == set(range(35))  # every ordinary id, no other
    # a special id that is not at the end of the vocabulary is skipped as well (a WordPiece vocabulary's 0..4)
    masked, labels = mask_tokens(rng.integers(5, 30, size=(200, 100)), rng, 4, (0, 1, 2, 3, 4), 30)
    assert masked[(labels != IGNORE_INDEX) & (masked != 4)].min() >= 5


def test_masking_is_reproducible_from_the_generator_and_leaves_the_ids_alone():
    ids = sample_ids(np.random.default_rng(2), (8, 50))
    before = ids.copy()
    a, b, c = (np.random.default_rng(seed) for seed in (3, 3, 4))
    first, second, other = (mask_tokens(ids, g, MASK, SPECIAL, V) for g in (a, b, c))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[1], other[1])
    np.testing.assert_array_equal(ids, before)
    # the draws taken depend on the shape alone, so the generator's state after a batch does not depend on it
    d, e = np.random.default_rng(5), np.random.default_rng(5)
    mask_tokens(ids, d, MASK, SPECIAL, V)
    mask_tokens(np.full_like(ids, 35), e, MASK, SPECIAL, V)
    assert d.bit_generator.state == e.bit_generator.state
    with pytest.raises(TypeError, match="NumPy Generator"):
        mask_tokens(ids, 5, MASK, SPECIAL, V)


def test_special_tokens_follow_the_characters_and_round_trip(tmp_path):
    text = "to be or not to be\n"
    plain, bert = CharTokenizer.from_text(text), CharTokenizer.from_text(text, BERT_SPECIALS)
    np.testing.assert_array_equal(bert.encode(text), plain.encode(text))  # each character keeps its id
    assert plain.to_dict() == {"type": "char", "vocab_size": 8, "vocab": sorted(set(text))}  # a GPT's, unchanged
    assert bert.vocab_size == 13 and bert.special_ids == (8, 9, 10, 11, 12)
    assert (bert.pad_id, bert.unk_id, bert.cls_id, bert.sep_id, bert.mask_id) == (8, 9, 10, 11, 12)
    ids = bert.encode("to [MASK] or\tnot")
    assert ids.tolist()[3] == bert.mask_id and ids.tolist()[7] == bert.unk_id  # the tab is unknown
    assert bert.decode(ids) == "to [MASK] or[UNK]not"
    bert.save(tmp_path / "tokenizer.json")
    assert CharTokenizer.load(tmp_path / "tokenizer.json") == bert
    assert CharTokenizer.load(tmp_path / "tokenizer.json") != plain
    old = {"type": "char", "vocab_size": 8, "vocab": sorted(set(text))}  # written before special tokens existed
    assert CharTokenizer.from_dict(old) == plain
    with pytest.raises(ValueError, match=r"no \[MASK\] token"):
        plain.mask_id
    with pytest.raises(ValueError, match="'\\[PAD\\]' more than once"):
        CharTokenizer("ab", ["[PAD]", "[PAD]"])


def test_the_whole_split_masks_are_fixed_whatever_the_batch_size():
    tokenizer = CharTokenizer.from_text("abcdefgh", BERT_SPECIALS)
    objective = MaskedLM().for_tokenizer(tokenizer)
    data = np.random.default_rng(0).integers(0, 8, size=1000)

    def joined(batch_size):
        batches = list(objective.every_batch(data, batch_size, 16))
        return np.concatenate([to_numpy(x) for (x,), _ in batches]), np.concatenate([to_numpy(y) for _, y in batches])

    (x3, y3), (x7, y7), (x3b, y3b) = joined(3), joined(7), joined(3)
    assert x3.shape == (62, 16)  # every whole window of 16 tokens, none overlapping
    for a, b in ((x3, x7), (y3, y7), (x3, x3b), (y3, y3b)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"needs a tokenizer with the special tokens"):
        MaskedLM().for_tokenizer(CharTokenizer.from_text("abc"))


def test_the_parameter_count_and_the_memory_check_know_bert():
    for head in ("mlm", "cls", "none"):
        config = BERTConfig(vocab_size=37, block_size=11, n_layer=2, n_head=3, n_embd=12, d_ff=20, head=head,
                            type_vocab_size=3, num_labels=5)
        assert parameter_count(config) == BERT(config, rng=0).num_params()
    check_memory(preset_for("bert").model, batch_size=12, block_size=64)
    with pytest.raises(ValueError, match="TiB for the float32 weights"):
        check_memory(BERTConfig(n_embd=1_000_000, n_head=1))


@pytest.fixture(scope="module")
def slice_of_shakespeare(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "shakespeare_60k.txt"
    path.write_text(load_text()[:60_000])
    return path


def test_a_short_run_learns_to_fill_in_masked_characters(tmp_path, slice_of_shakespeare):
    cfg, model = tiny(tmp_path / "out", data=str(slice_of_shakespeare), block_size=32, n_embd=48, batch_size=16,
                      warmup_iters=10, lr=4e-3, max_iters=300, eval_interval=150)
    trainer = Trainer(cfg, model, log=quiet)
    assert isinstance(trainer.model, BERT) and trainer.model.config.head == "mlm"
    n_chars = len(set(slice_of_shakespeare.read_text()))
    assert trainer.model.config.pad_token_id == trainer.tokenizer.pad_id == n_chars  # the specials follow
    assert trainer.tokenizer.vocab_size == trainer.model.config.vocab_size == n_chars + 5
    start_loss, start_accuracy = split_scores(trainer.model, trainer.val_data, trainer.cfg, trainer.objective)
    history = trainer.train()
    loss, accuracy = split_scores(trainer.model, trainer.val_data, trainer.cfg, trainer.objective)
    # the unigram baseline: always guess the train split's most frequent character, on the same masked positions
    labels = np.concatenate([to_numpy(y).ravel() for _, y in trainer.objective.every_batch(trainer.val_data, 64, 32)])
    labels = labels[labels != IGNORE_INDEX]
    unigram = np.mean(labels == np.bincount(trainer.train_data).argmax())
    assert labels.size > 800
    assert loss < start_loss - 0.8 and loss < math.log(trainer.tokenizer.vocab_size) - 0.8
    assert accuracy > unigram + 0.04 > start_accuracy + 0.04  # 0.23 against 0.16 (always a space) after 300 steps
    assert "val_masked_accuracy" in history[-1] and history[-1]["val"] < history[0]["val"]


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_an_interrupted_and_resumed_run_ends_bit_identical(tmp_path, dropout):
    same = dict(eval_interval=4, dropout=dropout, lr_decay_iters=8)
    straight = Trainer(*tiny(tmp_path / "a", max_iters=8, **same), log=quiet)
    straight.train()
    Trainer(*tiny(tmp_path / "b", max_iters=4, **same), log=quiet).train()
    if dropout:  # as `minilm train --out OUT --resume --max-iters 8`: the model and objective from the checkpoint
        resumed = Trainer(TrainConfig(out=str(tmp_path / "b"), resume=True, max_iters=8), log=quiet,
                          given={"out", "resume", "max_iters"})
    else:
        resumed = Trainer(*tiny(tmp_path / "b", max_iters=8, resume=True, **same), log=quiet)
    assert resumed.step == 4 and isinstance(resumed.objective, MaskedLM)
    resumed.train()
    assert [h["step"] for h in resumed.history] == [0, 4, 8]
    assert resumed.history == straight.history
    for name, expected in weights(straight.model).items():
        np.testing.assert_array_equal(weights(resumed.model)[name], expected, err_msg=name)


CLI_TINY = ["--block-size", "16", "--n-layer", "1", "--n-head", "2", "--n-embd", "12", "--batch-size", "4",
            "--eval-iters", "2", "--eval-interval", "2"]


def test_the_command_trains_saves_and_resumes_a_bert(tmp_path, capsys, slice_of_shakespeare):
    out = tmp_path / "out"
    assert main(["train", "--model", "bert", "--objective", "mlm", "--out", str(out), "--max-iters", "2",
                 "--sample-tokens", "1", "--data", str(slice_of_shakespeare), *CLI_TINY]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-3].startswith("val loss of the final weights on the whole val split") and "masked accuracy" in lines[-3]
    assert lines[-2].startswith("fill-mask on the first val window") and "[" in lines[-1]
    saved = load_checkpoint(out / "latest")
    assert saved.config["model_type"] == "bert" and saved.config["model"]["pad_token_id"] == 59  # 59 characters
    assert saved.tokenizer["special_tokens"] == list(BERT_SPECIALS)
    model, tokenizer = minilm.load(out)
    ids = tokenizer.encode("to be or [MASK] to be")[None, :]  # (1, T)
    assert model(ids).shape == (1, ids.shape[1], 64)
    # a bare --resume continues the checkpoint's model and objective
    assert main(["train", "--out", str(out), "--resume", "--max-iters", "4", "--sample-tokens", "0"]) == 0
    assert load_checkpoint(out / "latest").train_state["step"] == 4


def test_the_help_shows_the_bert_options_and_their_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "the model of --model bert (BERTConfig)" in text and "--model {bert,gpt,lstm,ngram,rnn,seq2seq,tutorial}" in text
    assert "--d-ff INT the feed-forward's width (intermediate_size); 0: 4 n_embd [--model tutorial: 512] (default: 0)" in text
    assert "[--model bert: 1e-12] (default: 1e-05)" in text


@pytest.mark.parametrize("args, message", [
    (["--model", "gpt", "--objective", "mlm"], "--objective mlm trains a model of type bert, not --model gpt"),
    (["--model", "bert", "--objective", "clm"], "--objective clm trains a model of type gpt or lstm or rnn or tutorial, not --model bert"),
    (["--model", "bert", "--bias"], "--bias: not an option of --model bert (BERTConfig)"),
    (["--model", "bert", "--preset", "gpu"], "--model bert has no gpu preset"),
    (["--objective", "mlm", "--tokenizer", "bpe"], "which --tokenizer char adds and wordpiece has (not --tokenizer bpe)"),
    (["--model", "gpt", "--tokenizer", "wordpiece"], "a GPT trained on it could not write text back"),
])
def test_a_model_and_objective_that_do_not_go_together_are_refused(tmp_path, capsys, args, message):
    assert main(["train", *args, "--out", str(tmp_path / "out"), *CLI_TINY]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_gpt_checkpoint_resumed_as_a_bert_is_refused_naming_both(tmp_path, capsys, slice_of_shakespeare):
    out = tmp_path / "out"
    assert main(["train", "--out", str(out), "--max-iters", "0", "--sample-tokens", "0", "--data",
                 str(slice_of_shakespeare), *CLI_TINY]) == 0
    before = (out / "latest" / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["train", "--model", "bert", "--out", str(out), "--resume", "--max-iters", "2"]) == 2
    err = capsys.readouterr().err
    assert "needs a model of type bert" in err and "holds a gpt model" in err
    assert (out / "latest" / "model.safetensors").read_bytes() == before
    config = json.loads((out / "latest" / "config.json").read_text())
    assert config["model_type"] == "gpt"


def test_a_bert_trains_on_a_wordpiece_vocabulary_learnt_from_the_data(tmp_path, slice_of_shakespeare):
    out = tmp_path / "out"
    assert main(["train", "--model", "bert", "--tokenizer", "wordpiece", "--vocab-size", "300", "--out", str(out),
                 "--max-iters", "2", "--sample-tokens", "0", "--data", str(slice_of_shakespeare), *CLI_TINY]) == 0
    saved = load_checkpoint(out / "latest")
    assert saved.tokenizer["type"] == "wordpiece" and saved.config["model"]["vocab_size"] <= 300
    model, tokenizer = minilm.load(out)
    assert saved.config["model"]["pad_token_id"] == tokenizer.pad_id == 0  # WordPiece puts [PAD] first
    ids = tokenizer.encode("to be or [MASK] to be")[None, :]  # (1, T)
    assert tokenizer.mask_id in ids and model(ids).shape == (1, ids.shape[1], tokenizer.vocab_size)

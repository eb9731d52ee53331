"""Training a Seq2Seq on pairs: the seq2seq objective's batches, `minilm train --model seq2seq` on a pairs file and
its report, a resume that equals the uninterrupted run, the scores' arithmetic, and the errors."""

import dataclasses
import json

import numpy as np
import pytest

from minilm.backend import to_numpy
from minilm.cli import main
from minilm.data import tokenizer_from_dict
from minilm.data.pairs import english_words, numbers_task, pairs_tokenizer
from minilm.files.checkpoint import load_checkpoint
from minilm.models import Seq2Seq, Seq2SeqConfig
from minilm.training import translation
from minilm.training.config import TrainConfig
from minilm.training.memory import parameter_count
from minilm.training.translator import Seq2SeqTrainer

TINY = ["--d-model", "16", "--nhead", "2", "--dim-feedforward", "32", "--num-encoder-layers", "1",
        "--num-decoder-layers", "1", "--block-size", "40", "--batch-size", "8", "--eval-iters", "1"]
SHAPE = Seq2SeqConfig(d_model=16, nhead=2, dim_feedforward=32, num_encoder_layers=1, num_decoder_layers=1)


def write_pairs(path, n=100):
    """The numbers 0 … n - 1 as English words -> digits, one pair per line."""
    path.write_text("".join(f"{english_words(i)}\t{i}\n" for i in range(n)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("pairs") / "numbers.tsv")


def objective_for(pairs):
    return translation.Translation().for_tokenizer(pairs_tokenizer(pairs))


def test_a_batch_is_the_source_and_the_target_shifted_around_bos_and_eos():
    pairs = numbers_task(n_pairs=50, max_digits=2)
    objective = objective_for(pairs)
    tok = objective.tokenizer
    data = objective.encode(pairs)
    (src, tgt_in), tgt_out = objective.batch(data, 6, 80, np.random.default_rng(0))
    rows = np.random.default_rng(0).integers(0, len(data), size=6)  # the same draws
    bos, eos, pad = (tok.special_id(t) for t in ("[BOS]", "[EOS]", "[PAD]"))
    src, tgt_in, tgt_out = to_numpy(src), to_numpy(tgt_in), to_numpy(tgt_out)
    for b, i in enumerate(rows):
        x, y = data.sources[i], data.targets[i]
        np.testing.assert_array_equal(src[b, :len(x)], x)
        assert (src[b, len(x):] == pad).all()
        np.testing.assert_array_equal(tgt_in[b, :len(y) + 1], [bos, *y])  # teacher forcing: [BOS] then y
        np.testing.assert_array_equal(tgt_out[b, :len(y) + 1], [*y, eos])  # the next token at each position
        assert (tgt_in[b, len(y) + 1:] == pad).all() and (tgt_out[b, len(y) + 1:] == -100).all()
    batches = list(objective.every_batch(data, 16, 80))
    assert [len(to_numpy(t)) for _, t in batches] == [16, 16, 16, 2]  # every pair once, in order
    np.testing.assert_array_equal(to_numpy(batches[0][0][0])[0, :len(data.sources[0])], data.sources[0])


def test_token_accuracy_counts_only_target_tokens():
    logits = np.zeros((1, 3, 4))
    logits[0, 0, 2] = logits[0, 1, 1] = logits[0, 2, 3] = 1.0
    targets = np.array([[2, 0, -100]])  # right, wrong, padding (its argmax never counts)
    assert translation.Translation.correct(logits, targets) == 1


def test_scores_are_exact_match_and_sacrebleu(monkeypatch):
    import sacrebleu

    data = translation.PairIds([], [], ["a", "b", "c"], ["un deux trois quatre cinq", "six sept huit neuf dix",
                                                         "onze"])
    guesses = ["un deux trois quatre cinq", "six sept huit neuf dix onze", "onze"]
    monkeypatch.setattr(translation, "translate", lambda *args, **kwargs: guesses)
    result = translation.scores(None, None, data)
    assert result["exact match"] == pytest.approx(2 / 3)
    assert result["BLEU"] == pytest.approx(sacrebleu.corpus_bleu(guesses, [data.target_texts]).score)
    assert 0 < result["BLEU"] < 100


def test_the_parameter_count_is_the_models():
    for changes in ({}, dict(share_embeddings=False, tie_weights=False, pos="learned")):
        config = dataclasses.replace(SHAPE, vocab_size=37, block_size=21, **changes)
        assert parameter_count(config) == Seq2Seq(config).num_params()


def test_minilm_train_seq2seq_on_a_pairs_file_learns_and_reports(pairs_file, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--model", "seq2seq", "--data", str(pairs_file), "--out", str(out), "--max-iters", "60",
            "--eval-interval", "30", "--lr", "3e-3", *TINY]
    assert main(args) == 0
    printed = capsys.readouterr().out
    history = json.loads((out / "latest" / "train_state.json").read_text())["history"]
    assert [h["step"] for h in history] == [0, 30, 60]
    assert history[-1]["val"] < history[0]["val"] - 1.0  # from ~ln V down
    assert history[-1]["val_token_accuracy"] > history[0]["val_token_accuracy"] + 0.2
    assert "the test split (10 pairs of numbers) translated from the final weights:" in printed
    assert "greedy" in printed and "beam 4 (length penalty 0.6)" in printed and "BLEU" in printed
    ckpt = load_checkpoint(out / "latest")
    assert ckpt.config["model_type"] == "seq2seq" and ckpt.config["train"]["objective"] == "seq2seq"
    assert ckpt.config["model"]["pad_token_id"] == tokenizer_from_dict(ckpt.tokenizer).special_id("[PAD]")


def test_a_resumed_run_ends_where_the_uninterrupted_one_does(pairs_file, tmp_path):
    def run(out, steps, **changes):
        cfg = TrainConfig(data=str(pairs_file), out=str(out), max_iters=steps, eval_interval=2, eval_iters=1,
                          block_size=40, batch_size=8, lr_decay_iters=4, **changes)  # one schedule for both
        trainer = Seq2SeqTrainer(cfg, dataclasses.replace(SHAPE, dropout=0.1), log=lambda line: None)
        trainer.train()
        return trainer.model.state_dict()

    straight = run(tmp_path / "straight", 4)
    run(tmp_path / "stopped", 2)
    resumed = run(tmp_path / "stopped", 4, resume=True)
    for name, array in straight.items():
        np.testing.assert_array_equal(to_numpy(resumed[name]), to_numpy(array), err_msg=name)


@pytest.mark.parametrize("extra, message", [
    (["--block-size", "10"], "is 13 characters, longer than --block-size 10: give a larger --block-size"),
    (["--tokenizer", "bpe"], "--model seq2seq reads characters (one vocabulary over both languages), not --tokenizer bpe"),
    (["--init-from", "somewhere"], "--init-from fine-tunes a Hugging Face GPT-2 folder, not --model seq2seq"),
    (["--model", "gpt", "--objective", "seq2seq"], "--objective seq2seq trains a model of type seq2seq, not --model gpt"),
])
def test_what_cannot_train_is_named(pairs_file, tmp_path, capsys, extra, message):
    args = ["train", "--model", "seq2seq", "--data", str(pairs_file), "--out", str(tmp_path / "o"), "--max-iters",
            "1", *TINY, *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_too_few_pairs_and_changed_pairs_are_named(tmp_path, capsys):
    few = write_pairs(tmp_path / "few.tsv", n=8)
    assert main(["train", "--model", "seq2seq", "--data", str(few), "--out", str(tmp_path / "a"), *TINY]) == 2
    assert "have 8 distinct sources too few for a val split" in capsys.readouterr().err
    pairs = write_pairs(tmp_path / "p.tsv", n=30)
    base = ["train", "--model", "seq2seq", "--data", str(pairs), "--out", str(tmp_path / "b"), "--eval-interval", "1"]
    assert main([*base, "--max-iters", "1", *TINY]) == 0
    write_pairs(pairs, n=31)
    capsys.readouterr()
    assert main([*base, "--max-iters", "2", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "have changed since" in err and "(30 pairs then, 31 now)" in err

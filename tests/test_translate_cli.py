"""`minilm translate` (minilm.cli.translate): its lines are translate()'s on the loaded model, its greedy search is
beam search of width 1, and bad input is one line naming the problem (exit code 2)."""

import dataclasses
import os
import pathlib
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import minilm.cli.translate as translate_cli
from minilm.cli import main
from minilm.data import CharTokenizer
from minilm.data.pairs import decode_target, english_words, make_batch
from minilm.files.checkpoint import save_checkpoint
from minilm.files.loader import load_model
from minilm.models import GPT, GPTConfig
from minilm.nn.module import in_inference
from minilm.training.decoding import beam_search, greedy
from minilm.training.translation import translate

ROOT = pathlib.Path(__file__).resolve().parents[1]
BLOCK = 16  # tokens; the longest source, "twenty-seven", is 12
TEXTS = ["three", "twenty-one", "eleven", "nine", "twenty-six"]  # sources it trained on, and held-out ones


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """A seq2seq trained a few dozen steps on English words -> digits (under a second), and a GPT checkpoint."""
    root = tmp_path_factory.mktemp("translate")
    pairs = root / "numbers.tsv"
    pairs.write_text("".join(f"{english_words(n)}\t{n}\n" for n in range(30)))
    assert main(["train", "--model", "seq2seq", "--data", str(pairs), "--out", str(root / "out"), "--max-iters", "60",
                 "--eval-interval", "60", "--eval-iters", "1", "--d-model", "16", "--nhead", "2",
                 "--dim-feedforward", "32", "--block-size", str(BLOCK), "--batch-size", "8", "--warmup-iters", "0",
                 "--lr", "0.01"]) == 0
    gpt = GPT(GPTConfig(vocab_size=12, block_size=8, n_layer=1, n_head=2, n_embd=8), rng=0)
    save_checkpoint(root / "gpt", gpt.state_dict(), {"model_type": "gpt", "model": dataclasses.asdict(gpt.config),
                                                     "train": {}}, tokenizer=CharTokenizer.from_text("abc").to_dict())
    return SimpleNamespace(out=root / "out", best=root / "out" / "best", gpt=root / "gpt")


def run(capsys, *argv):
    """(exit code, stdout lines, stderr) of `minilm translate ARGV` in this process."""
    code = main(["translate", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def loaded(path):
    model, tokenizer, _ = load_model(path, expect=("seq2seq",))
    return model.eval(), tokenizer


@pytest.mark.parametrize("options, kwargs", [
    ([], {}), (["--beam", "3"], dict(beam=3)),
    (["--beam", "3", "--length-penalty", "0"], dict(beam=3, length_penalty=0.0)),
    (["--max-len", "1"], dict(max_len=1))])
def test_each_line_is_the_text_and_translate_of_the_loaded_model(ckpts, capsys, options, kwargs):
    code, lines, err = run(capsys, "--ckpt", ckpts.out, *options, *TEXTS)
    assert code == 0 and err == ""
    model, tokenizer = loaded(ckpts.best)  # OUT resolves to OUT/best, as for the other commands
    expected = translate(model, tokenizer, TEXTS, **kwargs)
    assert lines == [f"{text} -> {translation}" for text, translation in zip(TEXTS, expected)]
    if kwargs.get("max_len") == 1:  # one token, [EOS] included: a single character, or nothing
        assert all(len(translation) <= 1 for translation in expected)


def test_the_default_is_greedy_search_which_is_beam_search_of_width_1(ckpts, capsys):
    code, lines, _ = run(capsys, "--ckpt", ckpts.best, *TEXTS)
    assert code == 0 and run(capsys, "--ckpt", ckpts.best, "--beam", "1", *TEXTS)[1] == lines
    model, tokenizer = loaded(ckpts.best)
    src = make_batch(tokenizer, TEXTS).src  # (B, S)
    bos, eos = tokenizer.special_id("[BOS]"), tokenizer.special_id("[EOS]")
    width_1, _ = beam_search(model, src, bos, eos, beam=1)
    assert width_1 == greedy(model, src, bos, eos)
    shown = [decode_target(tokenizer, np.array(ids, dtype=np.int64)) for ids in width_1]
    assert lines == [f"{text} -> {translation}" for text, translation in zip(TEXTS, shown)]
    assert len(set(shown)) > 1  # the model has learnt something: a check that compared constants would prove little


def test_the_options_reach_translate_which_runs_in_eval_mode_under_inference(ckpts, capsys, monkeypatch):
    seen = {}

    def spy(model, tokenizer, texts, **kwargs):
        seen.update(kwargs, texts=texts, training=model.training, inference=in_inference())
        return ["x"] * len(texts)

    monkeypatch.setattr(translate_cli, "translate", spy)
    code, lines, _ = run(capsys, "--ckpt", ckpts.best, "--beam", "4", "--length-penalty", "1.5", "--max-len", "7",
                         "nine", "ten")
    assert code == 0 and lines == ["nine -> x", "ten -> x"]
    assert seen == dict(texts=["nine", "ten"], beam=4, length_penalty=1.5, max_len=7, training=False, inference=True)


@pytest.mark.parametrize("texts, message", [
    (["three", "tw!o"], "TEXT 1 'tw!o': character '!' (U+0021) at position 2 is not in the vocabulary"),
    (["three", ""], "TEXT 1 must be a non-empty string, got ''"),
    (["twenty-onetwenty-two"], f"TEXT 0 'twenty-onetwenty-two' is 20 tokens long, longer than the model's "
                               f"block_size {BLOCK}"),
])
def test_a_bad_text_is_one_line_naming_it_and_nothing_is_translated(ckpts, capsys, texts, message):
    code, lines, err = run(capsys, "--ckpt", ckpts.best, *texts)
    assert code == 2 and lines == []  # every text is checked before the first is translated
    assert err.startswith(f"minilm translate: error: {message}") and err.count("\n") == 1, err


def test_a_checkpoint_of_another_type_or_none_at_all_is_named(ckpts, capsys, tmp_path):
    code, _, err = run(capsys, "--ckpt", ckpts.gpt, "abc")
    assert code == 2 and err == (f"minilm translate: error: minilm translate needs a model of type seq2seq, but "
                                 f"{ckpts.gpt} holds a gpt model (its config.json's model_type)\n")
    code, _, err = run(capsys, "--ckpt", tmp_path / "missing", "three")
    assert code == 2 and err.startswith("minilm translate: error: ") and "missing does not exist" in err
    code, _, err = run(capsys, "--ckpt", ckpts.best, "--max-len", BLOCK + 1, "three")
    assert code == 2 and err == (f"minilm translate: error: --max-len {BLOCK + 1} is more than the model's block_size "
                                 f"{BLOCK}\n")


@pytest.mark.parametrize("option, value, named", [("--beam", "0", "argument --beam: must be >= 1, got 0"),
                                                  ("--beam", "two", "argument --beam: expected an integer, got 'two'"),
                                                  ("--length-penalty", "-1", "argument --length-penalty: must be >= 0"),
                                                  ("--max-len", "0", "argument --max-len: must be >= 1, got 0")])
def test_an_option_out_of_range_is_a_usage_error(ckpts, capsys, option, value, named):
    with pytest.raises(SystemExit) as exit_:
        main(["translate", "--ckpt", str(ckpts.best), option, value, "three"])
    assert exit_.value.code == 2 and named in capsys.readouterr().err.splitlines()[-1]


def test_the_real_command_prints_the_lines_and_its_help_shows_the_defaults(ckpts):
    def minilm(*args):
        return subprocess.run([sys.executable, "-m", "minilm.cli", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=300, env=os.environ)

    done = minilm("translate", "--ckpt", str(ckpts.out), "nine", "twenty-one")
    assert done.returncode == 0 and done.stderr == ""
    model, tokenizer = loaded(ckpts.best)
    assert done.stdout == "".join(f"{text} -> {translation}\n" for text, translation in
                                  zip(["nine", "twenty-one"], translate(model, tokenizer, ["nine", "twenty-one"])))
    bad = minilm("translate", "--ckpt", str(ckpts.out), "nine!")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.splitlines() == ["minilm translate: error: TEXT 0 'nine!': character '!' (U+0021) at position 4 "
                                       "is not in the vocabulary of " + bad.stderr.split("vocabulary of ")[-1].strip()]
    helped = minilm("translate", "--help")
    assert helped.returncode == 0
    flat = " ".join(helped.stdout.split())
    for shown in ("--beam N", "(default: 1)", "--length-penalty A", "(default: 0.6)", "--max-len N", "block_size"):
        assert shown in flat, shown

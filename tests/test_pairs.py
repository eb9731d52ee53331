"""Translation pairs (minilm.data.pairs): number words in English and French, the numbers task and its
split, pairs files, the shared tokenizer and padded batches."""

import numpy as np
import pytest

from minilm.data.char_tokenizer import CharTokenizer
from minilm.data.pairs import (PAIR_SPECIALS, Pairs, decode_target, english_words, french_words, load_pairs,
                               make_batch, numbers_task, pairs_tokenizer, read_pairs_file)

# (n, British English, French in the traditional spelling): each checked by hand against the Académie's rules
NUMBERS = [
    (0, "zero", "zéro"),
    (1, "one", "un"),
    (16, "sixteen", "seize"),
    (17, "seventeen", "dix-sept"),
    (21, "twenty-one", "vingt et un"),
    (31, "thirty-one", "trente et un"),
    (61, "sixty-one", "soixante et un"),
    (70, "seventy", "soixante-dix"),
    (71, "seventy-one", "soixante et onze"),
    (72, "seventy-two", "soixante-douze"),
    (79, "seventy-nine", "soixante-dix-neuf"),
    (80, "eighty", "quatre-vingts"),
    (81, "eighty-one", "quatre-vingt-un"),
    (90, "ninety", "quatre-vingt-dix"),
    (91, "ninety-one", "quatre-vingt-onze"),
    (99, "ninety-nine", "quatre-vingt-dix-neuf"),
    (100, "one hundred", "cent"),
    (101, "one hundred and one", "cent un"),
    (200, "two hundred", "deux cents"),
    (201, "two hundred and one", "deux cent un"),
    (280, "two hundred and eighty", "deux cent quatre-vingts"),
    (342, "three hundred and forty-two", "trois cent quarante-deux"),
    (1000, "one thousand", "mille"),
    (1001, "one thousand and one", "mille un"),
    (1100, "one thousand one hundred", "mille cent"),
    (2000, "two thousand", "deux mille"),
    (21000, "twenty-one thousand", "vingt et un mille"),
    (80000, "eighty thousand", "quatre-vingt mille"),
    (81000, "eighty-one thousand", "quatre-vingt-un mille"),
    (100001, "one hundred thousand and one", "cent mille un"),
    (101000, "one hundred and one thousand", "cent un mille"),
    (200000, "two hundred thousand", "deux cent mille"),
    (280000, "two hundred and eighty thousand", "deux cent quatre-vingt mille"),
    (342071, "three hundred and forty-two thousand and seventy-one", "trois cent quarante-deux mille soixante et onze"),
    (999999, "nine hundred and ninety-nine thousand nine hundred and ninety-nine",
     "neuf cent quatre-vingt-dix-neuf mille neuf cent quatre-vingt-dix-neuf"),
    (1000000, "one million", "un million"),
    (1000001, "one million and one", "un million un"),
    (1200000, "one million two hundred thousand", "un million deux cent mille"),
    (2000000, "two million", "deux millions"),
    (21000000, "twenty-one million", "vingt et un millions"),
    (80000000, "eighty million", "quatre-vingts millions"),
    (200000000, "two hundred million", "deux cents millions"),
]


@pytest.mark.parametrize("n, english, french", NUMBERS)
def test_number_words_follow_british_english_and_traditional_french(n, english, french):
    assert english_words(n) == english
    assert french_words(n) == french


def test_number_words_name_every_integer_below_a_million_differently():
    for words in (english_words, french_words):
        written = [words(n) for n in range(0, 1_000_000, 7)]  # every 7th: all digit patterns, 0.3 s
        assert len(set(written)) == len(written)
    wrong = ("cents mille", "vingts mille", "-et-", "cent-", "-cent", "-mille", "  ")  # s before mille; 1990 hyphens
    french = [french_words(n) for n in range(0, 1_000_000, 7)]
    assert [text for text in french if text.startswith("un mille") or any(w in text for w in wrong)] == []


@pytest.mark.parametrize("bad", [-1, 10 ** 9, 1.5, True, "7"])
def test_number_words_refuse_what_is_not_an_integer_in_range(bad):
    with pytest.raises(ValueError, match="integers 0..999999999"):
        french_words(bad)


def test_the_numbers_task_is_deterministic_and_covers_every_length():
    task = numbers_task()
    assert task.name == "numbers" and len(task) == 20_000
    assert numbers_task().sources == task.sources and numbers_task().targets == task.targets
    assert numbers_task(seed=1).sources != task.sources
    digits = numbers_task(target="digits")
    assert digits.name == "numbers-digits" and digits.sources == task.sources  # the same numbers, same order
    numbers = [int(d) for d in digits.targets]
    assert len(set(numbers)) == len(numbers) and max(numbers) <= 999_999
    assert task.targets == [french_words(n) for n in numbers] and task.sources == [english_words(n) for n in numbers]
    by_length = np.bincount([len(d) for d in digits.targets], minlength=7)[1:]
    assert by_length.tolist() == [10, 90, 900, 6333, 6333, 6334]  # 0..999 whole, the rest shared equally


def test_a_small_numbers_task_takes_every_number_and_refuses_too_many():
    task = numbers_task(n_pairs=100, max_digits=2, target="digits")
    assert sorted(map(int, task.targets)) == list(range(100))
    with pytest.raises(ValueError, match="n_pairs <= 10\\*\\*max_digits"):
        numbers_task(n_pairs=101, max_digits=2)
    with pytest.raises(ValueError, match="'french' or 'digits', got 'german'"):
        numbers_task(target="german")


def test_splits_share_no_number_and_hold_out_two_in_ten():
    task = numbers_task()
    train, validation, test = task.split()
    assert (len(train), len(validation), len(test)) == (16_000, 2_000, 2_000)
    assert validation.sources == task.sources[8::10] and test.sources == task.sources[9::10]
    parts = [set(part.sources) for part in (train, validation, test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == set(task.sources)


def test_a_source_repeated_in_a_file_stays_in_one_split():
    sources = [f"s{i}" for i in range(10)] + ["s9", "s8", "s0"]  # s9 is test, s8 validation, s0 train
    train, validation, test = Pairs("rep", sources, [f"t{i}" for i in range(13)]).split()
    assert test.sources == ["s9", "s9"] and test.targets == ["t9", "t10"]
    assert validation.sources == ["s8", "s8"] and train.sources == [f"s{i}" for i in range(8)] + ["s0"]


def write(path, data):
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def test_a_pairs_file_reads_with_blank_lines_crlf_a_bom_and_spaces(tmp_path):
    path = write(tmp_path / "words.tsv", "\ufeffcat\tchat\r\n\n  \ndog \t chien\nthe red house\tla maison rouge")
    pairs = load_pairs(path)
    assert pairs.name == "words"
    assert pairs.sources == ["cat", "dog", "the red house"] and pairs.targets == ["chat", "chien", "la maison rouge"]


@pytest.mark.parametrize("text, message", [
    ("cat\tchat\ndog chien\n", "line 2 has no tab: expected source<TAB>target, got 'dog chien'"),
    ("cat\tchat\tcats\n", "line 1 has 2 tabs"),
    ("cat\tchat\n\n\t chien\n", "line 3 has an empty source"),
    ("cat\t \n", "line 1 has an empty target"),
    ("cat\tchat [EOS]\n", "line 1: the target holds '\\[EOS\\]', the name of a special token"),
    ("", "holds no pairs"),
    ("\n \n\n", "holds no pairs"),
])
def test_pairs_file_errors_name_the_file_the_line_and_the_problem(tmp_path, text, message):
    path = write(tmp_path / "bad.tsv", text)
    with pytest.raises(ValueError, match=f"bad.tsv {message}" if message.startswith("line") else message):
        read_pairs_file(path)


def test_pairs_file_errors_for_bytes_that_are_not_utf8_and_a_missing_file(tmp_path):
    path = write(tmp_path / "latin1.tsv", "cat\tchat\n".encode() + "café\tcoffee\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.tsv line 2 is not UTF-8 text \\(byte 0xe9 at byte 3"):
        read_pairs_file(path)
    with pytest.raises(FileNotFoundError, match="no pairs file at"):
        load_pairs(tmp_path / "absent.tsv")


def test_the_tokenizer_covers_both_sides_and_round_trips_every_pair():
    task = numbers_task(n_pairs=2000)
    tok = pairs_tokenizer(task)
    assert tok.specials == list(PAIR_SPECIALS) and "é" in tok.vocab and "y" in tok.vocab
    assert tok.vocab == sorted(set("".join(task.sources + task.targets)))
    assert CharTokenizer.from_dict(tok.to_dict()) == tok  # saves into a checkpoint as any char tokenizer
    for text in task.sources + task.targets:
        assert tok.decode(tok.encode(text)) == text


def test_a_batch_pads_sources_and_shifts_targets_between_bos_and_eos():
    pairs = Pairs("toy", ["ab", "abba", "b"], ["xy", "y", "yxyx"])
    tok = pairs_tokenizer(pairs)  # vocab a b x y, then [PAD] 4, [BOS] 5, [EOS] 6
    a, b, x, y, pad, bos, eos = range(7)
    batch = make_batch(tok, pairs.sources, pairs.targets)
    assert batch.src.shape == batch.src_pad.shape == (3, 4)  # (B, S): the longest source
    assert batch.tgt_in.shape == batch.tgt_out.shape == batch.tgt_pad.shape == (3, 5)  # (B, T): longest target + 1
    assert batch.src.tolist() == [[a, b, pad, pad], [a, b, b, a], [b, pad, pad, pad]]
    assert batch.src_pad.tolist() == [[False, False, True, True], [False] * 4, [False, True, True, True]]
    assert batch.tgt_in.tolist() == [[bos, x, y, pad, pad], [bos, y, pad, pad, pad], [bos, y, x, y, x]]
    assert batch.tgt_out.tolist() == [[x, y, eos, -100, -100], [y, eos, -100, -100, -100], [y, x, y, x, eos]]
    assert (batch.tgt_pad == (batch.tgt_out == -100)).all() and batch.src.dtype == batch.tgt_in.dtype == np.int64
    assert [decode_target(tok, row) for row in batch.tgt_in] == pairs.targets
    assert [decode_target(tok, row[~pad]) for row, pad in zip(batch.tgt_out, batch.tgt_pad)] == pairs.targets


def test_a_batch_pads_to_given_lengths_and_refuses_longer_texts():
    pairs = Pairs("toy", ["ab", "abba"], ["xy", "y"])
    tok = pairs_tokenizer(pairs)
    batch = make_batch(tok, pairs.sources, pairs.targets, src_len=6, tgt_len=4)
    assert batch.src.shape == (2, 6) and batch.tgt_in.shape == (2, 4) and batch.src_pad[:, 4:].all()
    with pytest.raises(ValueError, match="a source of 4 tokens does not fit the length 3"):
        make_batch(tok, pairs.sources, src_len=3)
    with pytest.raises(ValueError, match="a target with \\[BOS\\] of 3 tokens does not fit the length 2"):
        make_batch(tok, pairs.sources, pairs.targets, tgt_len=2)


def test_inference_batches_name_an_unknown_character_and_its_position():
    tok = pairs_tokenizer(numbers_task(n_pairs=2000))
    batch = make_batch(tok, ["forty-two", "six"])
    assert batch.tgt_in is None and batch.src.shape == (2, 9) and batch.src_pad[1].tolist() == [False] * 3 + [True] * 6
    with pytest.raises(ValueError, match=r"source 1 'forty-2': character '2' \(U\+0032\) at position 6 is not in"):
        make_batch(tok, ["six", "forty-2"])
    with pytest.raises(ValueError, match="source 0 'six \\[PAD\\]' holds '\\[PAD\\]', the name of a special token"):
        make_batch(tok, ["six [PAD]"])
    with pytest.raises(ValueError, match="target 1 must be a non-empty string, got ''"):
        make_batch(tok, ["six", "ten"], ["six", ""])


def test_decode_target_stops_at_the_first_eos():
    tok = pairs_tokenizer(Pairs("toy", ["ab"], ["xy"]))
    bos, eos, pad = (tok.special_id(t) for t in ("[BOS]", "[EOS]", "[PAD]"))
    assert decode_target(tok, [bos, 2, 3, eos, 2, 2]) == "xy"
    assert decode_target(tok, [2, pad, 3]) == "xy" and decode_target(tok, [bos]) == ""

import functools
import json
import os
import time

import numpy as np
import pytest
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

from minilm import to_numpy
from minilm.backend import asarray
import minilm.data.bpe as bpe
from minilm.data.bpe import _SPLIT, BPETokenizer, _merge
from minilm.data.corpus import load_text
from minilm.data.gpt2_tokenizer import BYTE_TO_CHAR, bytes_to_unicode, token_to_str

EOT = "<|endoftext|>"


@functools.lru_cache(maxsize=None)
def small():
    """(text, a 512-token BPE trained on its first 200 k characters); cached, hypothesis forbids fixtures."""
    text = load_text()
    return text, BPETokenizer.train(text[:200_000], 512)


@functools.lru_cache(maxsize=None)
def full():
    """(text, the 1,000-token BPE trained on the whole corpus, training seconds)."""
    text = load_text()
    start = time.perf_counter()
    tok = BPETokenizer.train(text, 1000)
    return text, tok, time.perf_counter() - start


def write_gpt2_style(folder, tok, seed=0):
    """``tok`` as GPT-2's vocab.json + merges.txt, ids shuffled (GPT-2's bytes are not 0..255) and EOT last."""
    perm = np.random.default_rng(seed).permutation(tok.vocab_size)
    names = [token_to_str(t) for t in tok.tokens]
    vocab = {names[i]: int(perm[i]) for i in range(tok.vocab_size)}
    vocab[EOT] = tok.vocab_size
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges = "".join(f"{names[a]} {names[b]}\n" for a, b, _ in tok.merges)
    (folder / "merges.txt").write_text("#version: 0.2\n" + merges, encoding="utf-8")
    return folder / "vocab.json", folder / "merges.txt"


@pytest.fixture(scope="module")
def gpt2_files(tmp_path_factory):
    return write_gpt2_style(tmp_path_factory.mktemp("gpt2"), small()[1])


@pytest.fixture(scope="module")
def ours(gpt2_files):
    return BPETokenizer.from_gpt2_files(*gpt2_files)


@pytest.fixture(scope="module")
def hf(gpt2_files):
    """transformers.GPT2TokenizerFast read from the same files as ``ours``."""
    return transformers.GPT2TokenizerFast.from_pretrained(str(gpt2_files[0].parent))


VARIED = [
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.",
    "ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun.",
    "don't, I'll, we've, you're, he's, she'd, I'm, it's; DON'T, 'S, 's'S, o'clock",
    "   leading spaces, trailing spaces   \n\n\n\ttabs\t\t and  double  spaces \r\n",
    "digits 0 12 345 6789 3.14159 1,000,000 2nd 10th and arabic-indic ٣٤٥ and ½ ² Ⅻ",
    "unicode: héllo wörld, naïve café, Ελληνικά, русский, 日本語のテキスト, 한국어, emoji 🙂👍🏽 ok",
    "combining a\u0301 and zero\u200bwidth, nul \x00 and bell \x07 and del \x7f",
    f"one{EOT}two {EOT} three{EOT}{EOT}",
    "", " ", "\n", "a", "'", "''s",
]


# ---- training ---------------------------------------------------------------------------------------------


def test_merge_loop_on_the_textbook_example():
    # "aaabdaaabac": (a,a) occurs 4 times (overlaps counted) -> 256 "aa"; then (256,a) and (a,b) tie at 2,
    # and the tie goes to the smaller ids (97, 98) -> 257 "ab"; then (256, 257) -> 258 "aaab".
    tok = BPETokenizer.train("aaabdaaabac", 259)
    assert tok.merges == [(97, 97, 256), (97, 98, 257), (256, 257, 258)]
    assert tok.tokens[256:] == [b"aa", b"ab", b"aaab"]
    assert tok.encode("aaabdaaabac").tolist() == [258, 100, 258, 97, 99]


def test_merges_never_cross_a_word_boundary_and_training_stops_when_nothing_is_left():
    # without the pre-split, "b " (3 times) would be a merge; with it the chunks are "ab" and " ab" x 3
    tok = BPETokenizer.train("ab ab ab ab", 300)
    assert tok.tokens[256:] == [b"ab", b" ab"]
    assert tok.vocab_size == 258  # every chunk is one token: training stops short of 300
    assert not any(b"b " in t for t in tok.tokens)


def naive_train(text, vocab_size):
    """The merge loop with every pair recounted from scratch after each merge: the reference for the fast one."""
    words = [list(chunk.encode("utf-8")) for chunk in _SPLIT.findall(text)]
    merges = []
    for new in range(256, vocab_size):
        counts = {}
        for ids in words:
            for pair in zip(ids, ids[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        pair = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))
        merges.append((pair[0], pair[1], new))
        words = [_merge(ids, pair, new) for ids in words]
    return merges


def test_incremental_pair_counts_match_recounting_from_scratch_and_training_is_deterministic():
    text = load_text()[:10_000] + " ¿Qué tal? 日本語 🙂🙂🙂 aaaaaaa bbbbbb"
    tok = BPETokenizer.train(text, 360)
    assert tok.merges == naive_train(text, 360)
    assert BPETokenizer.train(text, 360) == tok


def test_small_training_compresses_held_out_text():
    text, tok = small()
    held_out = text[-100_000:]
    tokens_per_byte = len(tok.encode(held_out)) / len(held_out.encode("utf-8"))
    assert tokens_per_byte < 0.6


def test_full_1000_token_training_on_the_corpus():
    text, tok, seconds = full()
    ids = tok.encode(text)
    bytes_per_token = len(text.encode("utf-8")) / len(ids)
    print(f"\n1,000-token BPE on the corpus: trained in {seconds:.2f} s, {bytes_per_token:.3f} bytes per token")
    assert tok.vocab_size == 1000 and len(set(tok.tokens)) == 1000
    assert seconds < 30  # "well under a minute"; 1.2-5 s measured, 2 shared cores
    assert bytes_per_token > 2.3  # measured 2.41
    assert tok.decode(ids) == text


def test_train_rejects_a_vocab_size_below_the_bytes():
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 256.*got 100"):
        BPETokenizer.train("hello", 100)


# ---- round trips ------------------------------------------------------------------------------------------


@given(st.text())
def test_any_text_round_trips_through_a_trained_tokenizer(s):
    tok = small()[1]
    ids = tok.encode(s)
    assert ids.dtype == np.int64 and ids.ndim == 1
    assert tok.decode(ids) == s


@given(st.binary())
def test_any_byte_string_round_trips(data):
    tok = small()[1]
    assert tok.decode_bytes(tok.encode(data)) == data


@given(st.text())
def test_any_text_round_trips_through_the_gpt2_file_tokenizer(ours, s):
    assert ours.decode(ours.encode(s)) == s
    assert ours.decode(ours.encode(s + EOT + s)) == s + EOT + s


def test_ids_that_split_a_character_decode_to_the_replacement_character():
    tok = BPETokenizer.train("x", 256)  # bytes only: "é" is the two tokens 0xc3, 0xa9
    ids = tok.encode("é")
    assert ids.tolist() == [0xC3, 0xA9]
    assert tok.decode(ids[:1]) == "\ufffd" and tok.decode_bytes(ids[:1]) == b"\xc3"
    assert tok.decode(asarray(ids)) == "é"  # backend arrays decode too


def test_bad_input_is_named():
    tok = small()[1]
    with pytest.raises(ValueError, match="token id 512 out of range for vocab_size 512"):
        tok.decode([1, 512])
    with pytest.raises(TypeError, match="integers, got dtype float64"):
        tok.decode(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"1-D.*\(2, 2\)"):
        tok.decode(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="lone surrogate U\\+D800 at position 2"):
        tok.encode("ab\ud800")
    with pytest.raises(TypeError, match="str or bytes, got int"):
        tok.encode(5)


def distinct_words(n):
    """n different four-letter words, each a chunk of its own: " aaaa", " baaa", ..."""
    return "".join(" " + "".join(chr(97 + i // 26**k % 26) for k in range(4)) for i in range(n))


def test_chunk_cache_stays_bounded_and_forgetting_changes_no_ids(monkeypatch):
    tok = small()[1]
    fresh = BPETokenizer(tok.tokens, tok.merges)
    fresh.encode(distinct_words(bpe.CACHE_SIZE + 1000))  # more distinct chunks than the bound
    assert 0 < len(fresh._cache) <= bpe.CACHE_SIZE
    text = load_text()[:20_000]
    expected = BPETokenizer(tok.tokens, tok.merges).encode(text)  # every chunk of it fits the default bound
    monkeypatch.setattr(bpe, "CACHE_SIZE", 50)
    bounded = BPETokenizer(tok.tokens, tok.merges)
    assert len(set(_SPLIT.findall(text))) > 4 * 50  # the small cache fills and is cleared several times
    for _ in range(2):  # the second pass reads chunks cached after a clear
        np.testing.assert_array_equal(bounded.encode(text), expected)
        assert len(bounded._cache) <= 50


# ---- GPT-2's files and transformers -----------------------------------------------------------------------


def test_bytes_to_unicode_is_gpt2s_printable_bijection():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256)) and len(set(table.values())) == 256
    assert all(ch.isprintable() and not ch.isspace() for ch in table.values())
    assert all(table[b] == chr(b) for b in range(ord("!"), ord("~") + 1))
    assert (table[ord(" ")], table[ord("\n")], table[0], table[173]) == ("Ġ", "Ċ", "Ā", "Ń")
    assert token_to_str(b" the") == "Ġthe" and BYTE_TO_CHAR == table


@pytest.mark.parametrize("text", VARIED)
def test_encodings_equal_transformers_gpt2_tokenizer_from_the_same_files(ours, hf, text):
    assert ours.encode(text).tolist() == hf(text)["input_ids"]


@settings(max_examples=max(200, settings.default.max_examples))  # cheap: more than the default
@given(st.text())
def test_encodings_equal_transformers_on_arbitrary_text(ours, hf, s):
    assert ours.encode(s).tolist() == hf(s)["input_ids"]


def test_whole_corpus_encodes_as_transformers_does(ours, hf):
    text = small()[0][:300_000]
    np.testing.assert_array_equal(ours.encode(text), hf(text)["input_ids"])


def test_special_token_encodes_to_its_id(ours):
    assert ours.special_tokens == {EOT: 512}
    assert ours.encode(EOT).tolist() == [512] and ours.decode([512]) == EOT


def test_save_gpt2_files_round_trips(tmp_path):
    tok = small()[1]
    tok.save_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert BPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt") == tok


def mismatched_files(tmp_path, edit_vocab=None, merges_extra=""):
    """GPT-2-style files of a tiny tokenizer, one of them then broken."""
    vocab_json, merges_txt = write_gpt2_style(tmp_path, BPETokenizer.train("aaabdaaabac", 259))
    vocab = json.loads(vocab_json.read_text(encoding="utf-8"))
    if edit_vocab:
        edit_vocab(vocab)
    vocab_json.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    with open(merges_txt, "a", encoding="utf-8") as f:
        f.write(merges_extra)
    return vocab_json, merges_txt


@pytest.mark.parametrize("edit_vocab, merges_extra, message", [
    (None, "b c\n", r"line 5: merge \('b', 'c'\) produces 'bc', which is not in vocab.json"),
    (lambda v: v.__setitem__("zz", len(v)), "", r"entry 'zz' \(id 260\) is produced by no merge"),
    (None, "a yz\n", r"line 5: token 'yz' of merge \('a', 'yz'\) is not in vocab.json"),
    (lambda v: v.__setitem__("ĊĊ", v.pop("Ċ")), "", r"no entry for byte 0x0a \(its character 'Ċ'\)"),
    (lambda v: v.__setitem__("x☃", 999), "", r"id 999, outside 0..260"),
    (lambda v: v.__setitem__("a☃", len(v)), "", r"'a☃' has the character '☃' \(U\+2603\)"),
    (lambda v: v.__setitem__("aa", v["ab"]), "", r"gives id \d+ to both"),
    (None, "a b c\n", r"line 5: expected two tokens separated by one space, got 'a b c'"),
    (None, "a b\n", r"line 5: merge \('a', 'b'\) is listed twice"),
])
def test_vocab_and_merges_mismatch_is_a_clear_error(tmp_path, edit_vocab, merges_extra, message):
    with pytest.raises(ValueError, match=message):
        BPETokenizer.from_gpt2_files(*mismatched_files(tmp_path, edit_vocab, merges_extra))


def test_a_missing_gpt2_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="vocab file not found"):
        BPETokenizer.from_gpt2_files(tmp_path / "missing.json", tmp_path / "merges.txt")


# ---- save / load ------------------------------------------------------------------------------------------


def test_save_load_round_trip_is_atomic(tmp_path):
    tok = small()[1]
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    tok.save(path)  # over an existing file
    assert os.listdir(tmp_path) == ["tokenizer.json"]  # no temp file left behind
    d = json.loads(path.read_text(encoding="utf-8"))
    assert d["type"] == "bpe" and d["vocab_size"] == 512 and d["tokens"][256:258] == ["Ġt", "he"]
    loaded = BPETokenizer.load(path)
    assert loaded == tok
    text = small()[0][:2000]
    np.testing.assert_array_equal(to_numpy(loaded.encode(text)), tok.encode(text))


def test_gpt2_file_tokenizer_survives_to_dict(ours):
    again = BPETokenizer.from_dict(json.loads(json.dumps(ours.to_dict())))
    assert again == ours and again.encode(VARIED[7]).tolist() == ours.encode(VARIED[7]).tolist()


def test_inconsistent_descriptions_are_rejected(tmp_path):
    d = small()[1].to_dict()
    with pytest.raises(ValueError, match="tokenizer type 'char' is not 'bpe'"):
        BPETokenizer.from_dict({**d, "type": "char"})
    with pytest.raises(ValueError, match="vocab_size 600 does not match the 512 tokens"):
        BPETokenizer.from_dict({**d, "vocab_size": 600})
    bad = json.loads(json.dumps(d))
    bad["merges"][3][2] = 300
    with pytest.raises(ValueError, match="merge 3 .* token 300 is not the bytes of tokens"):
        BPETokenizer.from_dict(bad)
    with pytest.raises(ValueError, match="token 511 .* is produced by no merge"):
        BPETokenizer.from_dict({**d, "merges": d["merges"][:-1]})
    (tmp_path / "t.json").write_text('{"type": "bpe", "tok', encoding="utf-8")
    with pytest.raises(ValueError, match="is corrupt"):
        BPETokenizer.load(tmp_path / "t.json")
    with pytest.raises(FileNotFoundError, match="tokenizer file not found"):
        BPETokenizer.load(tmp_path / "missing.json")


def test_training_on_bytes_that_are_not_utf8_learns_them_and_encodes_them_back():
    """Invalid UTF-8 bytes are tokens like any other: training on them works, as encoding them always did."""
    data = b"\xff\xfe abc \xff\xfe abc \xc3 abc"
    tok = BPETokenizer.train(data, 260)
    assert tok.vocab_size == 260
    assert tok.decode_bytes(tok.encode(data)) == data
    assert any(token.startswith(b"\xff") for token in tok.tokens[256:])  # the repeated invalid pair was merged

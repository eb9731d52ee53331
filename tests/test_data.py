import functools
import json
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minilm import to_numpy
from minilm.data.batching import every_window, get_batch, rng_from_state
from minilm.data.char_tokenizer import CharTokenizer
from minilm.data.corpus import load_text, split

SHAKESPEARE_CHARS = 1_115_394
SHAKESPEARE_VOCAB = 65
NANOGPT_TRAIN, NANOGPT_VAL = 1_003_854, 111_540  # nanoGPT data/shakespeare_char/prepare.py prints these


@functools.lru_cache(maxsize=None)
def corpus():
    """(text, tokenizer) of the embedded corpus, read once per session (hypothesis forbids function fixtures)."""
    text = load_text()
    return text, CharTokenizer.from_text(text)


# ---- the embedded corpus --------------------------------------------------------------------------------


def test_embedded_corpus_is_tiny_shakespeare():
    text, tok = corpus()
    assert len(text) == SHAKESPEARE_CHARS
    assert tok.vocab_size == SHAKESPEARE_VOCAB
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")


def test_split_sizes_match_nanogpt():
    text, tok = corpus()
    train, val = split(tok.encode(text))
    assert (len(train), len(val)) == (NANOGPT_TRAIN, NANOGPT_VAL)
    np.testing.assert_array_equal(np.concatenate([train, val]), tok.encode(text))  # first 90%, then the rest


def test_split_rejects_a_fraction_outside_zero_one():
    with pytest.raises(ValueError, match="train_fraction .* got 1.5"):
        split(np.arange(10), train_fraction=1.5)


def test_whole_corpus_round_trips():
    text, tok = corpus()
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (SHAKESPEARE_CHARS,)
    assert ids.min() == 0 and ids.max() == SHAKESPEARE_VOCAB - 1
    assert tok.decode(ids) == text


def test_ids_match_nanogpt_stoi():
    text, tok = corpus()
    chars = sorted(set(text))  # nanoGPT: chars = sorted(list(set(data))); stoi = {ch: i for i, ch in ...}
    stoi = {ch: i for i, ch in enumerate(chars)}
    sample = text[:5000]
    np.testing.assert_array_equal(tok.encode(sample), [stoi[ch] for ch in sample])


# ---- the tokenizer ---------------------------------------------------------------------------------------


@given(st.data())
def test_random_strings_over_the_vocabulary_round_trip(data):
    _, tok = corpus()
    s = data.draw(st.text(alphabet=st.sampled_from(tok.vocab), max_size=200))
    ids = tok.encode(s)
    assert ids.shape == (len(s),)
    assert tok.decode(ids) == s


@given(st.text(min_size=1, max_size=50))
def test_any_text_round_trips_through_its_own_vocabulary(s):
    tok = CharTokenizer.from_text(s)
    assert tok.vocab == sorted(set(s))
    assert tok.decode(tok.encode(s)) == s


def test_out_of_vocabulary_character_is_named():
    _, tok = corpus()
    with pytest.raises(ValueError, match=r"character 'é' \(U\+00E9\) at position 3 is not in the vocabulary of 65"):
        tok.encode("Romé")


def test_character_above_the_largest_in_vocab_is_named():
    tok = CharTokenizer("abc")
    with pytest.raises(ValueError, match=r"'z' \(U\+007A\) at position 1"):
        tok.encode("az")


def test_decode_names_an_id_out_of_range():
    _, tok = corpus()
    with pytest.raises(ValueError, match="token id 70 out of range for vocab_size 65"):
        tok.decode([1, 2, 70])
    with pytest.raises(ValueError, match="token id -1 out of range"):
        tok.decode(np.array([-1]))


def test_decode_rejects_float_ids_and_2d_input():
    tok = CharTokenizer("abc")
    with pytest.raises(TypeError, match="integers, got dtype float64"):
        tok.decode(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"1-D .* shape \(2, 2\)"):
        tok.decode(np.zeros((2, 2), dtype=np.int64))


def test_decode_accepts_backend_arrays_and_empty_input():
    tok = CharTokenizer("abc")
    x, _ = get_batch(np.array([0, 1, 2, 0]), 1, 3, np.random.default_rng(0))  # (1, 3) on the active backend
    assert tok.decode(x[0]) == "abc"
    assert tok.decode([]) == "" and tok.encode("").shape == (0,)


@pytest.mark.parametrize("vocab, message", [
    ("", "at least one character"),
    (["a", "bc"], "entry 1 must be a single character, got 'bc'"),
    ("abca", "'a' more than once"),
])
def test_bad_vocabulary_is_named(vocab, message):
    with pytest.raises(ValueError, match=message):
        CharTokenizer(vocab)


def test_from_text_rejects_empty_text():
    with pytest.raises(ValueError, match="empty text"):
        CharTokenizer.from_text("")


def test_dict_round_trip_through_json():
    _, tok = corpus()
    d = json.loads(json.dumps(tok.to_dict()))
    assert d["type"] == "char" and d["vocab_size"] == SHAKESPEARE_VOCAB
    assert CharTokenizer.from_dict(d) == tok


@pytest.mark.parametrize("d, message", [
    ({"type": "bpe", "merges": []}, "tokenizer type 'bpe' is not 'char'"),
    ({"type": "char"}, "no 'vocab' list"),
    ({"type": "char", "vocab": ["a", "b"], "vocab_size": 3}, "vocab_size 3 does not match the 2"),
    ([1, 2], "JSON object, got list"),
])
def test_from_dict_names_what_is_wrong(d, message):
    with pytest.raises(ValueError, match=message):
        CharTokenizer.from_dict(d)


def test_save_and_load_round_trip(tmp_path):
    _, tok = corpus()
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    assert CharTokenizer.load(path) == tok
    assert json.loads(path.read_text(encoding="utf-8"))["type"] == "char"
    CharTokenizer("xyz").save(path)  # overwrites in place
    assert CharTokenizer.load(path).vocab == ["x", "y", "z"]
    assert os.listdir(tmp_path) == ["tokenizer.json"]  # no temp file left behind


def test_failed_save_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "tokenizer.json"
    CharTokenizer("abc").save(path)
    before = path.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        CharTokenizer("xyz").save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["tokenizer.json"]


def test_load_names_a_missing_or_corrupt_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CharTokenizer.load(tmp_path / "nope.json")
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"type": "char", "vocab": [', encoding="utf-8")
    with pytest.raises(ValueError, match="tokenizer.json is corrupt"):
        CharTokenizer.load(bad)


# ---- loading other text ----------------------------------------------------------------------------------


def test_loads_a_utf8_file(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_bytes("Ça va?\r\nOui.\n".encode("utf-8"))
    assert load_text(path) == "Ça va?\nOui.\n"  # newlines normalised as Python's text mode does
    path.write_bytes(b"\xef\xbb\xbfhello")
    assert load_text(str(path)) == "hello"  # byte-order mark dropped


def test_folder_concatenates_txt_files_recursively_in_sorted_order(tmp_path):
    (tmp_path / "b.txt").write_text("B", encoding="utf-8")
    (tmp_path / "a.txt").write_text("A", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_text("C", encoding="utf-8")
    (tmp_path / "notes.md").write_text("ignored", encoding="utf-8")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "a.txt").write_text("stale", encoding="utf-8")
    (tmp_path / "binary.bin").write_bytes(b"\x00\x01")  # not .txt, so never read
    assert load_text(tmp_path) == "ABC"


def test_missing_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load_text(tmp_path / "missing.txt")


def test_empty_file_is_named(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="data file .*empty.txt is empty"):
        load_text(path)


def test_folder_without_txt_files_is_named(tmp_path):
    (tmp_path / "data.csv").write_text("a,b", encoding="utf-8")
    with pytest.raises(ValueError, match=f"{tmp_path.name} contains no .txt files"):
        load_text(tmp_path)


def test_folder_of_empty_txt_files_is_named(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"")
    with pytest.raises(ValueError, match="contains only empty .txt files"):
        load_text(tmp_path)


def test_nul_byte_is_named_with_its_offset(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"abc\x00def")
    with pytest.raises(ValueError, match=r"model.bin looks like a binary file.*NUL byte at byte offset 3"):
        load_text(path)


def test_invalid_utf8_is_named_with_its_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("héllo".encode("latin-1"))  # é is the lone byte 0xe9 at offset 1
    with pytest.raises(ValueError, match=r"latin1.txt is not UTF-8 text: invalid byte 0xe9 at byte offset 1"):
        load_text(path)
    path.write_bytes(b"\xef\xbb\xbfok\xff")  # the offset counts the byte-order mark too
    with pytest.raises(ValueError, match="invalid byte 0xff at byte offset 5"):
        load_text(path)


def test_binary_file_inside_a_folder_is_named(tmp_path):
    (tmp_path / "a.txt").write_text("fine", encoding="utf-8")
    (tmp_path / "b.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match=r"b.txt looks like a binary file.*offset 2"):
        load_text(tmp_path)


# ---- batching --------------------------------------------------------------------------------------------


def test_batch_shapes_dtype_and_shift():
    _, tok = corpus()
    data = tok.encode(corpus()[0][:10_000])
    x, y = get_batch(data, 4, 16, np.random.default_rng(0))
    x, y = to_numpy(x), to_numpy(y)
    assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # y is x shifted left by one


def test_windows_are_the_data_at_their_start():
    data = np.random.default_rng(3).integers(0, 65, size=500)
    x, y = (to_numpy(a) for a in get_batch(data, 8, 10, np.random.default_rng(4)))
    for b in range(8):  # find each window's start by its content, then check the next tokens
        starts = [i for i in range(len(data) - 10) if np.array_equal(data[i:i + 10], x[b])]
        assert any(np.array_equal(data[i + 1:i + 11], y[b]) for i in starts)


def test_same_seed_gives_the_same_batches():
    data = np.arange(1000)
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(3):
        xa, ya = get_batch(data, 5, 12, a)
        xb, yb = get_batch(data, 5, 12, b)
        np.testing.assert_array_equal(to_numpy(xa), to_numpy(xb))
        np.testing.assert_array_equal(to_numpy(ya), to_numpy(yb))
    xc, _ = get_batch(data, 5, 12, np.random.default_rng(8))
    assert not np.array_equal(to_numpy(xc), to_numpy(get_batch(data, 5, 12, np.random.default_rng(7))[0]))


@pytest.mark.parametrize("n", [41, 49, 50])  # windows fit with room over, exactly (N = W T + 1), one short
def test_every_window_makes_each_token_after_the_first_a_target_once(n):
    data, T = np.arange(100, 100 + n), 8
    batches = [tuple(to_numpy(a) for a in pair) for pair in every_window(data, 3, T)]
    assert all(x.dtype == y.dtype == np.int64 and x.shape == y.shape and x.shape[1] == T for x, y in batches)
    assert [len(x) for x, _ in batches][:-1] == [3] * (len(batches) - 1)  # only the last may be short
    x, y = (np.concatenate(parts) for parts in zip(*batches))
    np.testing.assert_array_equal(y, x + 1)  # each target is the next token (the data counts up by one)
    windows = (n - 1) // T  # whole windows of T + 1 that fit, stepping by T
    np.testing.assert_array_equal(y.ravel(), data[1:1 + windows * T])


def test_restored_rng_state_resumes_the_same_sequence():
    data = np.arange(1000)
    rng = np.random.default_rng(1337)
    for _ in range(3):
        get_batch(data, 4, 8, rng)
    saved = json.loads(json.dumps(rng.bit_generator.state))  # as train_state.json would hold it
    expected = [to_numpy(get_batch(data, 4, 8, rng)[0]) for _ in range(3)]
    resumed = rng_from_state(saved)
    for want in expected:
        np.testing.assert_array_equal(to_numpy(get_batch(data, 4, 8, resumed)[0]), want)


def test_rng_from_state_rejects_garbage():
    with pytest.raises(ValueError, match="unknown bit generator 'Nope'"):
        rng_from_state({"bit_generator": "Nope", "state": {}})
    with pytest.raises(ValueError, match="rng.bit_generator.state"):
        rng_from_state([1, 2])


@given(n=st.integers(2, 60), block_size=st.integers(1, 60), batch_size=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_windows_never_run_off_the_end(n, block_size, batch_size, seed):
    data = np.arange(n)
    if n < block_size + 1:
        with pytest.raises(ValueError, match=f"data has {n} tokens, too short for block_size {block_size}"):
            get_batch(data, batch_size, block_size, np.random.default_rng(seed))
        return
    x, y = (to_numpy(a) for a in get_batch(data, batch_size, block_size, np.random.default_rng(seed)))
    assert x.shape == y.shape == (batch_size, block_size)
    np.testing.assert_array_equal(x, x[:, :1] + np.arange(block_size))  # contiguous windows of data = arange
    np.testing.assert_array_equal(y, x + 1)
    assert x.min() >= 0 and y.max() <= n - 1


def test_every_start_position_is_reachable():
    n, block_size = 12, 4  # starts 0 .. n - block_size - 1 = 7
    x, _ = get_batch(np.arange(n), 4000, block_size, np.random.default_rng(0))
    starts = to_numpy(x)[:, 0]
    assert set(starts.tolist()) == set(range(n - block_size))
    counts = np.bincount(starts, minlength=n - block_size)
    assert counts.min() > 4000 / 8 * 0.8  # roughly uniform: each of 8 starts near 500


def test_data_exactly_one_window_long_has_one_start():
    x, y = get_batch(np.arange(5), 3, 4, np.random.default_rng(0))
    np.testing.assert_array_equal(to_numpy(x), np.tile(np.arange(4), (3, 1)))
    np.testing.assert_array_equal(to_numpy(y), np.tile(np.arange(1, 5), (3, 1)))


@pytest.mark.parametrize("kwargs, error, message", [
    ({"rng": "seed"}, TypeError, "NumPy Generator on the host"),
    ({"batch_size": 0}, ValueError, "batch_size must be a positive integer, got 0"),
    ({"block_size": 2.5}, ValueError, "block_size must be a positive integer, got 2.5"),
    ({"data": np.zeros((2, 50), dtype=np.int64)}, ValueError, r"1-D .* shape \(2, 50\)"),
    ({"data": np.zeros(50)}, ValueError, "integer token ids.*float64"),
])
def test_bad_batch_arguments_are_named(kwargs, error, message):
    args = {"data": np.arange(50), "batch_size": 2, "block_size": 4, "rng": np.random.default_rng(0), **kwargs}
    with pytest.raises(error, match=message):
        get_batch(**args)


def test_tokenizer_files_are_shared_readable_0644(tmp_path):
    old = os.umask(0o022)
    try:
        CharTokenizer.from_text("abc").save(tmp_path / "tokenizer.json")
    finally:
        os.umask(old)
    assert (tmp_path / "tokenizer.json").stat().st_mode & 0o777 == 0o644

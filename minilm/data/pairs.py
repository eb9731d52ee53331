"""Source/target pairs for a translation model: a generated task, or any file of tab-separated pairs.

numbers:  an integer written in English words -> the same integer in French words, e.g.
          "three hundred and forty-two thousand and seventy-one" -> "trois cent quarante-deux mille soixante et onze".
          English is British: "and" after "hundred" when tens or units follow, and before a last group under
          100 ("one thousand and one"); 21..99 hyphenated ("forty-two"). French is the traditional spelling
          (Académie, before the 1990 reform): hyphens only inside 17..99 ("dix-sept", "quatre-vingt-dix"),
          never around "cent" and "mille"; "et un" in 21, 31, 41, 51, 61 and "soixante et onze", but
          "quatre-vingt-un", "quatre-vingt-onze"; "quatre-vingts" and "deux cents" take their s only when
          nothing follows them or a noun does ("deux cents millions"), never before "mille" ("deux cent mille",
          "quatre-vingt mille"); "mille" is invariable and takes no "un" ("mille", "mille un"); "un million",
          "deux millions". The words go up to 999 999 999; the task samples 0..999 999.
numbers-digits: the same English words -> the integer in digits ("342071"), an easier first run.
sample:   n_pairs distinct integers, the same number from each length in digits (1 to 6; all of them where a
          length has fewer: 0..9 and 10..99 whole), drawn without replacement from a NumPy Generator
          seeded with ``seed``, then shuffled by it: small and large numbers both appear, deterministically.
          The default 20 000 pairs: sources 3..72 characters (mean 47), French targets 2..71 (mean 40),
          digits 1..6 (16 000 train, 2 000 validation, 2 000 test); max_digits=4: 10 000 pairs, 3..46 and 2..46.
split:    group g is the g-th distinct source in order of first appearance; groups 8, 18, 28 ... are
          validation and 9, 19, 29 ... test (two in every ten), the rest train; so a source (a number) never
          sits in two splits, and a file with the same source twice keeps both copies together.
files:    UTF-8, one pair per line "source<TAB>target"; blank lines skipped; each side stripped of surrounding
          whitespace. Errors name the file, the line and the problem: no tab, more than one tab (the
          target may not hold one), an empty source or target, a special token's name written out, bytes
          that are not UTF-8, no pairs at all.
tokenizer: one CharTokenizer over both sides with the specials [PAD] [BOS] [EOS] (ids after the characters').
          No [UNK]: a character the model never saw is an error naming it and its position, not a guess.
batch:    src (B, S) the source ids, padded with [PAD]; tgt_in (B, T) = [BOS] y_1 .. y_n, padded with [PAD];
          tgt_out (B, T) = y_1 .. y_n [EOS], padded with -100 (CrossEntropyLoss's ignore_index); src_pad
          (B, S) and tgt_pad (B, T) bool, True at padding (a key_padding_mask, as torch's). S and T are the
          longest in the batch (T = longest target + 1) unless given. Host NumPy int64.
ref:      Vaswani et al. 2017, §5.1 (shared source-target vocabulary); torch's "Language Translation with
          nn.Transformer" tutorial (BOS/EOS, PAD_IDX, key padding masks)
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minilm.data.char_tokenizer import CharTokenizer
from minilm.data.masking import IGNORE_INDEX

PAIR_SPECIALS = ("[PAD]", "[BOS]", "[EOS]")  # padding, start of the target, end of the target
VALIDATION_GROUP, TEST_GROUP, GROUP_CYCLE = 8, 9, 10  # group g % 10 == 8: validation, == 9: test
MAX_WORDS = 10 ** 9  # the number words go up to 999 999 999

ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen").split()
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
UNITES = ("zéro un deux trois quatre cinq six sept huit neuf dix onze douze treize quatorze quinze seize "
          "dix-sept dix-huit dix-neuf").split()
DIZAINES = ("", "", "vingt", "trente", "quarante", "cinquante", "soixante")


def _checked(n):
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 0 <= n < MAX_WORDS:
        raise ValueError(f"number words are defined for integers 0..{MAX_WORDS - 1}, got {n!r}")
    return int(n)


def _english_below_100(n):
    return ONES[n] if n < 20 else TENS[n // 10] + (f"-{ONES[n % 10]}" if n % 10 else "")


def _english_below_1000(n):
    hundreds, rest = divmod(n, 100)
    head = f"{ONES[hundreds]} hundred" if hundreds else ""
    return " and ".join(part for part in (head, _english_below_100(rest) if rest else "") if part)


def english_words(n):
    """``n`` in British English words: 342 -> "three hundred and forty-two", 1001 -> "one thousand and one"."""
    n = _checked(n)
    if n == 0:
        return "zero"
    words = [f"{_english_below_1000(group)} {name}" for group, name in
             ((n // 10 ** 6, "million"), (n // 1000 % 1000, "thousand")) if group]
    last = n % 1000
    if last:
        words.append(f"and {_english_below_100(last)}" if words and last < 100 else _english_below_1000(last))
    return " ".join(words)


def _french_below_100(n, final):
    """final: nothing (or a noun, "millions") follows, so "quatre-vingts" keeps its s."""
    tens, units = divmod(n, 10)
    if n < 20:
        return UNITES[n]
    if tens in (7, 9):  # 70..79 and 90..99 count on from 60 and 80 with 10..19
        base = "soixante" if tens == 7 else "quatre-vingt"
        return "soixante et onze" if n == 71 else f"{base}-{UNITES[10 + units]}"
    if tens == 8:
        return ("quatre-vingts" if final else "quatre-vingt") if units == 0 else f"quatre-vingt-{UNITES[units]}"
    return DIZAINES[tens] + {0: "", 1: " et un"}.get(units, f"-{UNITES[units]}")


def _french_below_1000(n, final):
    hundreds, rest = divmod(n, 100)
    if hundreds == 0:
        return _french_below_100(rest, final)
    head = "cent" if hundreds == 1 else f"{UNITES[hundreds]} cent"
    if rest == 0:
        return head + ("s" if hundreds > 1 and final else "")
    return f"{head} {_french_below_100(rest, final)}"


def french_words(n):
    """``n`` in French words, traditional spelling: 342 -> "trois cent quarante-deux", 80 000 -> "quatre-vingt
    mille", 200 000 000 -> "deux cents millions"."""
    n = _checked(n)
    if n == 0:
        return "zéro"
    millions, thousands, last = n // 10 ** 6, n // 1000 % 1000, n % 1000
    words = []
    if millions:  # "million" is a noun: it takes an s, and a "deux cents" before it keeps its own
        words.append("un million" if millions == 1 else f"{_french_below_1000(millions, True)} millions")
    if thousands:  # "mille" is an adjective: invariable, no "un" before it, and no s on what precedes it
        words.append("mille" if thousands == 1 else f"{_french_below_1000(thousands, False)} mille")
    if last:
        words.append(_french_below_1000(last, True))
    return " ".join(words)


@dataclass
class Pairs:
    """Translation pairs: sources[i] -> targets[i]."""

    name: str
    sources: list = field(default_factory=list)
    targets: list = field(default_factory=list)

    def __post_init__(self):
        if len(self.sources) != len(self.targets):
            raise ValueError(f"pairs {self.name!r} have {len(self.sources)} sources but {len(self.targets)} targets")

    def __len__(self):
        return len(self.sources)

    def subset(self, keep):
        """The pairs whose indices are in ``keep``, in order."""
        return Pairs(self.name, [self.sources[i] for i in keep], [self.targets[i] for i in keep])

    @property
    def groups(self):
        """groups[i]: the number of pair i's source among the distinct sources, in order of first appearance."""
        first = {}
        return [first.setdefault(source, len(first)) for source in self.sources]

    def split(self):
        """(train, validation, test): groups 8, 18, 28 ... validation, 9, 19, 29 ... test, the rest train."""
        where = {VALIDATION_GROUP: 1, TEST_GROUP: 2}  # group g % GROUP_CYCLE -> its part; the rest: 0, train
        parts = ([], [], [])
        for i, g in enumerate(self.groups):
            parts[where.get(g % GROUP_CYCLE, 0)].append(i)
        return tuple(self.subset(keep) for keep in parts)


def numbers_task(n_pairs=20_000, seed=0, target="french", max_digits=6):
    """The numbers task: English words -> French words (target="french") or digits (target="digits")."""
    to_target = {"french": french_words, "digits": str}.get(target)
    if to_target is None:
        raise ValueError(f"the numbers task's target is 'french' or 'digits', got {target!r}")
    if not 1 <= max_digits <= 9 or not 1 <= n_pairs <= 10 ** max_digits:
        raise ValueError(f"the numbers task needs 1 <= max_digits <= 9 and 1 <= n_pairs <= 10**max_digits, got "
                         f"max_digits={max_digits}, n_pairs={n_pairs}")
    rng = np.random.default_rng(seed)
    chosen = []
    for d in range(1, max_digits + 1):  # lengths from the shortest: what a short one cannot fill, the rest share
        low, high = (0 if d == 1 else 10 ** (d - 1)), 10 ** d
        take = min(high - low, (n_pairs - len(chosen)) // (max_digits + 1 - d))
        chosen.extend((low + rng.choice(high - low, size=take, replace=False)).tolist())
    numbers = rng.permutation(np.array(chosen, dtype=np.int64)).tolist()
    name = "numbers" if target == "french" else "numbers-digits"
    return Pairs(name, [english_words(n) for n in numbers], [to_target(n) for n in numbers])


PAIR_TASKS = {"numbers": lambda: numbers_task(), "numbers-digits": lambda: numbers_task(target="digits")}


def read_pairs_file(path):
    """The Pairs a UTF-8 file of "source<TAB>target" lines holds (see the module doc for the rules)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no pairs file at {path}")
    sources, targets = [], []
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{path} line {number} is not UTF-8 text (byte 0x{raw[err.start]:02x} at byte "
                             f"{err.start} of the line)") from None
        line = (line.removeprefix("\ufeff") if number == 1 else line).removesuffix("\r")
        if not line.strip():
            continue
        if line.count("\t") != 1:
            problem = "no tab" if "\t" not in line else f"{line.count(chr(9))} tabs"
            raise ValueError(f"{path} line {number} has {problem}: expected source<TAB>target, got {line[:60]!r}")
        source, target = (side.strip() for side in line.split("\t"))
        for side, text in (("source", source), ("target", target)):
            if not text:
                raise ValueError(f"{path} line {number} has an empty {side}")
            for token in PAIR_SPECIALS:
                if token in text:
                    raise ValueError(f"{path} line {number}: the {side} holds {token!r}, the name of a special token")
        sources.append(source)
        targets.append(target)
    if not sources:
        raise ValueError(f"{path} holds no pairs (expected lines of source<TAB>target)")
    return Pairs(path.stem, sources, targets)


def load_pairs(name_or_path):
    """A named task (PAIR_TASKS) or a pairs file."""
    return PAIR_TASKS[name_or_path]() if name_or_path in PAIR_TASKS else read_pairs_file(name_or_path)


def pairs_tokenizer(pairs):
    """One CharTokenizer over the characters of both sides of ``pairs`` (build it on all splits), then
    [PAD] [BOS] [EOS]."""
    return CharTokenizer.from_text("".join(pairs.sources) + "".join(pairs.targets), PAIR_SPECIALS)


def encode_texts(tok, texts, side="source"):
    """ids (n,) int64 for each text; a ValueError naming the text's side and index, and the character and
    its position, for a character outside the vocabulary (or an empty text, or a special token's name)."""
    out = []
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text:
            raise ValueError(f"{side} {i} must be a non-empty string, got {text!r}")
        written = [token for token in tok.specials if token in text]
        if written:
            raise ValueError(f"{side} {i} {text!r} holds {written[0]!r}, the name of a special token")
        try:
            out.append(tok.encode(text))  # (n,)
        except ValueError as err:
            raise ValueError(f"{side} {i} {text!r}: {err}") from None
    return out


def _padded(rows, length, fill, what):
    """rows (list of (n_b,)) -> (B, length) int64 and its padding mask (B, length), True at padding."""
    longest = max(len(row) for row in rows)
    length = longest if length is None else length
    if longest > length:
        raise ValueError(f"a {what} of {longest} tokens does not fit the length {length}")
    out = np.full((len(rows), length), fill, dtype=np.int64)  # (B, length)
    for b, row in enumerate(rows):
        out[b, :len(row)] = row
    return out, np.arange(length)[None, :] >= np.array([len(row) for row in rows])[:, None]  # (B, length) bool


@dataclass
class PairBatch:
    src: np.ndarray  # (B, S) int64, [PAD] after each source
    src_pad: np.ndarray  # (B, S) bool, True at padding
    tgt_in: np.ndarray = None  # (B, T) int64, [BOS] y_1 .. y_n [PAD] ...; None at inference
    tgt_out: np.ndarray = None  # (B, T) int64, y_1 .. y_n [EOS] -100 ...
    tgt_pad: np.ndarray = None  # (B, T) bool, True at padding (where tgt_out is -100)


def make_batch(tok, sources, targets=None, src_len=None, tgt_len=None):
    """The PairBatch of ``sources`` (and ``targets``, None at inference); S = src_len and T = tgt_len when
    given (a longer text is an error), else the longest of the batch."""
    if not sources:
        raise ValueError("a batch needs at least one source")
    if targets is not None and len(targets) != len(sources):
        raise ValueError(f"{len(sources)} sources but {len(targets)} targets")
    return batch_of_ids(tok, encode_texts(tok, sources, "source"),
                        None if targets is None else encode_texts(tok, targets, "target"), src_len, tgt_len)


def batch_of_ids(tok, xs, ys=None, src_len=None, tgt_len=None):
    """The PairBatch of sources already tokenized, xs (list of (n_b,) ids), and targets ys (None at inference):
    what make_batch builds after encoding, for a caller that keeps its splits tokenized."""
    src, src_pad = _padded(xs, src_len, tok.pad_id, "source")  # (B, S) each
    if ys is None:
        return PairBatch(src, src_pad)
    bos, eos = np.array([tok.special_id("[BOS]")]), np.array([tok.special_id("[EOS]")])
    tgt_in, tgt_pad = _padded([np.concatenate([bos, y]) for y in ys], tgt_len, tok.pad_id, "target with [BOS]")
    tgt_out, _ = _padded([np.concatenate([y, eos]) for y in ys], tgt_len, IGNORE_INDEX, "target with [EOS]")
    return PairBatch(src, src_pad, tgt_in, tgt_out, tgt_pad)  # tgt_in, tgt_out, tgt_pad (B, T)


def decode_target(tok, ids):
    """The text of generated ids (T,): a leading [BOS] dropped, everything from the first [EOS] on cut, and
    [PAD] dropped."""
    ids = tok.checked_ids(ids)  # (T,)
    bos, eos, pad = (tok.special_id(token) for token in ("[BOS]", "[EOS]", "[PAD]"))
    ids = ids[1:] if ids.size and ids[0] == bos else ids
    ends = np.flatnonzero(ids == eos)
    ids = ids[:ends[0]] if ends.size else ids
    return tok.decode(ids[ids != pad])

"""WordPieceTokenizer: BERT's tokenizer, basic tokenization then greedy longest-match-first word pieces.

tokens:  V strings by id, as BERT's vocab.txt lists them (line n holds token n). A piece that continues a
         word starts with "##" ("##able"); [PAD] [UNK] [CLS] [SEP] [MASK] must all be there.
encode:  text -> ids (T,) int64, step by step as transformers' slow BertTokenizer (v5: BertTokenizerLegacy).
         (1) Special tokens written in the text ("a [MASK] b") are cut out first and kept whole.
         (2) Basic tokenization: drop NUL, U+FFFD and control characters (category C*, though \\t \\n \\r
         are whitespace), turn whitespace (Zs) into " "; put spaces around CJK ideographs; NFC; split on
         whitespace. Then per word: lower-case and strip accents (NFD, drop the Mn marks) as configured,
         strip_accents=None following do_lower_case; split off every punctuation character (Unicode P*,
         and all ASCII that is neither letter nor digit, so "$" and "`" too) as a word of its own.
         (3) WordPiece per word: the longest prefix that is a token, then the longest "##" + prefix of
         the rest, and so on: "unaffable" -> "un", "##aff", "##able". A word where some position matches
         nothing, or longer than MAX_WORD characters, is the single token [UNK].
decode:  ids (T,) -> the tokens joined by spaces, " ##" removed (transformers' convert_tokens_to_string);
         lossy: case, accents and spacing are gone.
pairs:   encode_pair(a, b) -> [CLS] a [SEP] b [SEP], token_type_ids 0 up to the first [SEP] and 1 after.
train:   HF tokenizers' WordPieceTrainer recipe, BPE on "##"-marked words: a word starts as its first
         character then "##c" for each later one; merge the most frequent adjacent pair (ties: the smallest
         (left id, right id)) into a new token, left + right without its "##"; repeat up to vocab_size.
         Pair counts, not Google's likelihood score count(ab) / (count(a) count(b)). Every character seen
         and its "##" form are tokens, so the training text never encodes to [UNK] (bar words > MAX_WORD).
shapes:  ids and token_type_ids (T,), ids taking V = vocab_size values
saved:   tokenizer.json {"type": "wordpiece", "tokens": [...], "do_lower_case": ..., ...}, or BERT's vocab.txt

Why it is fast: each distinct character is classified once, each distinct word tokenized once (cached);
training recounts only the words that held the merged pair, the best pair kept in a heap: 2,000 tokens in ~1 s.

BertTokenizerFast (Rust) parts from the slow tokenizer, which this module follows, on: text that NFC
changes (it has no NFC step); a final "Σ" (it lower-cases per character: "σ", not "ς"); code points
unassigned in Python's unicodedata, or newer than its own tables; U+2B820..U+2B91F (its CJK range starts
at U+2B920); "[MA\\x00SK]" (a special token once cleaned); and pair truncation. tests/test_wordpiece.py shows each.

ref: Devlin et al. 2019 (BERT), §3; google-research/bert tokenization.py; Wu et al. 2016 (GNMT), §4.1;
     transformers models/bert/tokenization_bert.py; tokenizers' WordPieceTrainer
"""

import functools
import heapq
import itertools
import re
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np

from minilm.atomic import replace_file
from minilm.data.bpe import _merge, count_pairs
from minilm.data.tokenizer_file import TokenizerFile

TOKENIZER_TYPE = "wordpiece"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # a trained vocabulary's ids 0..4
MAX_WORD = 100  # characters; a longer word is [UNK] (transformers' max_input_chars_per_word)
CACHE_SIZE = 2**16  # distinct words remembered by encode before the cache is cleared (as bpe.CACHE_SIZE)
_SPECIAL_SPLIT = re.compile("(" + "|".join(map(re.escape, SPECIAL_TOKENS)) + ")")
_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
        (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))  # BERT's "Chinese character" blocks


@functools.lru_cache(maxsize=2**16)  # a text has few distinct characters; bounded all the same
def _cleaned(ch, chinese):
    """What basic tokenization's first two steps make of one character: itself, "", " " or " ch "."""
    cp, cat = ord(ch), unicodedata.category(ch)
    if ch in " \t\n\r" or cat == "Zs":
        return " "
    if ch == "\ufffd" or cat.startswith("C"):  # C*: NUL and the other controls, format, private, unassigned
        return ""
    return f" {ch} " if chinese and any(lo <= cp <= hi for lo, hi in _CJK) else ch


def _is_punctuation(ch):  # all ASCII but letters, digits, space and controls; and Unicode's P*
    return 33 <= ord(ch) <= 47 or 58 <= ord(ch) <= 64 or 91 <= ord(ch) <= 96 or 123 <= ord(ch) <= 126 \
        or unicodedata.category(ch).startswith("P")


def _split_on_punctuation(word):
    """"don't!" -> ["don", "'", "t", "!"]; letters and digits are never punctuation, hence the fast path."""
    if word.isalnum():
        return [word]
    out = []
    for is_punctuation, run in itertools.groupby(word, _is_punctuation):
        out += list(run) if is_punctuation else ["".join(run)]  # each punctuation character on its own
    return out


def _strip_accents(word):
    return "".join(ch for ch in unicodedata.normalize("NFD", word) if unicodedata.category(ch) != "Mn")


class WordPieceTokenizer(TokenizerFile):
    def __init__(self, tokens, do_lower_case=True, strip_accents=None, tokenize_chinese_chars=True):
        """``tokens``: the vocabulary by id (str each); the options as transformers' BertTokenizer's."""
        self.tokens, self.ids = list(tokens), {}
        for i, t in enumerate(self.tokens):
            if not isinstance(t, str) or not t or "\n" in t or "\r" in t:
                raise ValueError(f"token {i} (line {i + 1} of vocab.txt) must be a non-empty string without "
                                 f"line breaks, got {t!r}")
            if t in self.ids:
                raise ValueError(f"token {t!r} is listed twice, as ids {self.ids[t]} and {i} "
                                 f"(lines {self.ids[t] + 1} and {i + 1} of vocab.txt)")
            self.ids[t] = i
        missing = [s for s in SPECIAL_TOKENS if s not in self.ids]
        if missing:
            raise ValueError(f"vocabulary has no {', '.join(missing)}; BERT needs all of {', '.join(SPECIAL_TOKENS)}")
        for name, value in (("do_lower_case", do_lower_case), ("tokenize_chinese_chars", tokenize_chinese_chars),
                            ("strip_accents", strip_accents)):
            if not isinstance(value, bool) and not (value is None and name == "strip_accents"):
                raise TypeError(f"{name} must be True or False{' or None' * (name == 'strip_accents')}, got {value!r}")
        self.do_lower_case, self.strip_accents = do_lower_case, strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self._longest = max(map(len, self.tokens))  # no match is longer: WordPiece tries no longer prefix
        self._cache = {}  # whitespace-separated word -> its ids, at most CACHE_SIZE entries

    pad_id = property(lambda self: self.ids["[PAD]"])
    unk_id = property(lambda self: self.ids["[UNK]"])
    cls_id = property(lambda self: self.ids["[CLS]"])
    sep_id = property(lambda self: self.ids["[SEP]"])
    mask_id = property(lambda self: self.ids["[MASK]"])
    vocab_size = property(lambda self: len(self.tokens))

    @classmethod
    def from_vocab_file(cls, path, do_lower_case=True, strip_accents=None, tokenize_chinese_chars=True):
        """BERT's vocab.txt, read as transformers reads it (UTF-8, universal newlines, one token a line)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocab file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"vocab file {path} is not UTF-8 text: {err}") from None
        if not text:
            raise ValueError(f"vocab file {path} is empty")
        try:
            return cls(text.removesuffix("\n").split("\n"), do_lower_case, strip_accents, tokenize_chinese_chars)
        except ValueError as err:
            raise ValueError(f"vocab file {path}: {err}") from None

    def save_vocab(self, path):
        """Write BERT's vocab.txt (token n on line n, UTF-8) atomically; from_vocab_file reads it back."""
        replace_file(path, ("\n".join(self.tokens) + "\n").encode("utf-8"))

    def _words(self, text):
        """Basic tokenization's whole-text steps: cut out special tokens; clean, space out CJK, NFC, split."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        words = []
        for k, part in enumerate(_SPECIAL_SPLIT.split(text)):
            if k % 2:  # re.split puts the captured special tokens at odd positions
                words.append(part)  # a word that _pieces keeps whole and the vocabulary holds
                continue
            table = {ord(ch): new for ch in set(part) if (new := _cleaned(ch, self.tokenize_chinese_chars)) != ch}
            words += unicodedata.normalize("NFC", part.translate(table)).split()
        return words

    def _pieces(self, word):
        """Basic tokenization's per-word steps: case, accents, punctuation -> the words WordPiece sees."""
        if word in SPECIAL_TOKENS:
            return [word]  # transformers' never_split
        word = word.lower() if self.do_lower_case else word
        if (self.do_lower_case and self.strip_accents is not False) or self.strip_accents:
            word = _strip_accents(word)
        return [w for piece in _split_on_punctuation(word) for w in piece.split()]

    def _wordpiece(self, word):
        """Greedy longest-match-first: the ids of ``word``'s pieces, or [UNK] if some position matches nothing."""
        if len(word) > MAX_WORD:
            return [self.unk_id]
        out, start = [], 0
        while start < len(word):
            for end in range(min(len(word), start + self._longest), start, -1):
                i = self.ids.get(word[start:end] if start == 0 else "##" + word[start:end])
                if i is not None:
                    break
            else:
                return [self.unk_id]  # nothing in the vocabulary starts here: the whole word is unknown
            out.append(i)
            start = end
        return out

    def encode(self, text, add_special_tokens=False):
        """``text`` -> ids (T,) int64; with ``add_special_tokens``, [CLS] ids [SEP] as BertTokenizer(text)."""
        out = [self.cls_id] if add_special_tokens else []
        for word in self._words(text):
            ids = self._cache.get(word)
            if ids is None:
                ids = [i for piece in self._pieces(word) for i in self._wordpiece(piece)]
                if len(self._cache) >= CACHE_SIZE:
                    self._cache.clear()  # bounded memory: common words come straight back
                self._cache[word] = ids
            out.extend(ids)
        out += [self.sep_id] if add_special_tokens else []
        return np.array(out, dtype=np.int64)  # (T,)

    def tokenize(self, text):
        """``text`` -> its tokens as strings: ["[UNK]", "un", "##aff", ...]."""
        return [self.tokens[i] for i in self.encode(text).tolist()]

    def encode_pair(self, text, text_pair=None, max_length=None):
        """(ids (T,), token_type_ids (T,)) int64 for [CLS] a [SEP] (b [SEP]), as BertTokenizer(text, text_pair);
        ``max_length`` truncates as its truncation="longest_first": the longer text loses tokens off its end."""
        a = self.encode(text).tolist()
        b = None if text_pair is None else self.encode(text_pair).tolist()
        if max_length is not None:
            extra = 2 if b is None else 3  # [CLS] a [SEP] (b [SEP])
            if not isinstance(max_length, (int, np.integer)) or isinstance(max_length, bool) or max_length < extra:
                raise ValueError(f"max_length must be an integer >= {extra} (the special tokens), got {max_length!r}")
            budget = max_length - extra
            if b is None:
                a = a[:budget]
            elif len(a) + len(b) > budget:  # the longer text is cut first; once both are cut, a keeps the odd one
                keep = min(len(b), max(budget - len(a), budget // 2))  # of b's tokens
                a, b = a[:budget - keep], b[:keep]
        ids = [self.cls_id] + a + [self.sep_id] + ([] if b is None else b + [self.sep_id])
        types = [0] * (len(a) + 2) + ([] if b is None else [1] * (len(b) + 1))
        return np.array(ids, dtype=np.int64), np.array(types, dtype=np.int64)  # (T,), (T,)

    def decode(self, ids):
        """ids (T,) (a list, a NumPy or a backend array) -> text, "##" pieces joined to the piece before."""
        ids = self.checked_ids(ids)  # (T,)
        return " ".join(self.tokens[i] for i in ids.tolist()).replace(" ##", "").strip()

    @classmethod
    def train(cls, text, vocab_size, do_lower_case=True, strip_accents=None, tokenize_chinese_chars=True):
        """At most ``vocab_size`` tokens learnt from ``text`` (docstring: train); fewer once every word is one."""
        probe = cls(SPECIAL_TOKENS, do_lower_case, strip_accents, tokenize_chinese_chars)  # for basic tokenization
        words = Counter()
        for word, n in Counter(probe._words(text)).items():
            if word not in SPECIAL_TOKENS:  # special tokens in the text are not words to learn from
                for piece in probe._pieces(word):
                    words[piece] += n
        alphabet = sorted({ch for w in words for ch in w})
        tokens = [*SPECIAL_TOKENS, *alphabet, *("##" + ch for ch in alphabet)]
        if not isinstance(vocab_size, (int, np.integer)) or isinstance(vocab_size, bool) or vocab_size < len(tokens):
            raise ValueError(f"vocab_size must be an integer >= {len(tokens)} (5 special tokens and the "
                             f"{len(alphabet)} characters of the text, each also as ##c), got {vocab_size!r}")
        ids = {t: i for i, t in enumerate(tokens)}
        seqs = [[ids[w[0]]] + [ids["##" + ch] for ch in w[1:]] for w in words]  # each word as token ids
        freqs = list(words.values())
        counts, where = count_pairs(seqs, freqs)
        heap = [(-c, pair) for pair, c in counts.items()]  # most frequent first, then smallest ids
        heapq.heapify(heap)
        while len(tokens) < vocab_size and heap:
            c, pair = heapq.heappop(heap)
            if counts[pair] != -c:
                continue  # a stale entry: the pair's count changed after it was pushed
            merged = tokens[pair[0]] + tokens[pair[1]][2:]  # "un" + "##aff" -> "unaff"
            if merged not in ids:  # "##a" + "##bc" and "##ab" + "##c" make the same token
                ids[merged] = len(tokens)
                tokens.append(merged)
            new, touched = ids[merged], set()
            for w in where.pop(pair):  # recount only the words that held the pair: remove old pairs, add new
                seq, f = seqs[w], freqs[w]
                for p in zip(seq, seq[1:]):
                    counts[p] -= f
                    touched.add(p)
                seqs[w] = out = _merge(seq, pair, new)
                for p in zip(out, out[1:]):
                    counts[p] += f
                    where[p].add(w)
                    touched.add(p)
            for p in touched:  # the old entries of these pairs go stale; zero counts are not pushed
                if counts[p] > 0:
                    heapq.heappush(heap, (-counts[p], p))
        return cls(tokens, do_lower_case, strip_accents, tokenize_chinese_chars)

    def to_dict(self):
        """A JSON-able dict; ``from_dict`` rebuilds the same tokenizer from it."""
        return {"type": TOKENIZER_TYPE, "vocab_size": self.vocab_size, "tokens": list(self.tokens),
                "do_lower_case": self.do_lower_case, "strip_accents": self.strip_accents,
                "tokenize_chinese_chars": self.tokenize_chinese_chars}

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise ValueError(f"a tokenizer description must be a JSON object, got {type(d).__name__}")
        if d.get("type") != TOKENIZER_TYPE:
            raise ValueError(f"tokenizer type {d.get('type')!r} is not {TOKENIZER_TYPE!r}")
        if not isinstance(d.get("tokens"), list):
            raise ValueError("wordpiece tokenizer description has no 'tokens' list")
        try:
            tok = cls(d["tokens"], d.get("do_lower_case", True), d.get("strip_accents"),
                      d.get("tokenize_chinese_chars", True))
        except TypeError as err:
            raise ValueError(f"wordpiece tokenizer description: {err}") from None
        if "vocab_size" in d and d["vocab_size"] != tok.vocab_size:
            raise ValueError(f"vocab_size {d['vocab_size']} does not match the {tok.vocab_size} tokens listed")
        return tok

    def __eq__(self, other):
        return isinstance(other, WordPieceTokenizer) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return f"WordPieceTokenizer(vocab_size={self.vocab_size}, do_lower_case={self.do_lower_case})"

"""BPETokenizer: byte-level byte-pair encoding, trained from scratch or loaded from GPT-2's files.

tokens:  V byte strings; every one of the 256 bytes is a token, so any text can be encoded
merges:  (left, right, result) ids in rank order: rank 0 is applied first; tokens[result] = tokens[left] + tokens[right]
encode:  text -> ids (T,) int64, T tokens. (1) Pre-split the text with GPT-2's regex into chunks, so a token
         never spans a word boundary: "don't stop" -> "don", "'t", " stop". (2) Each chunk starts as its
         UTF-8 bytes; repeatedly find the adjacent pair with the lowest merge rank and merge every occurrence
         of it, left to right, until no adjacent pair is a merge. Chunks repeat, so each one is cached
         (up to CACHE_SIZE of them: see there).
decode:  ids (T,) -> the tokens' bytes joined, decoded as UTF-8. decode(encode(text)) == text for every
         text, and decode_bytes(encode(data)) == data for every byte string (encode takes bytes too).
         An arbitrary id sequence can cut a character's UTF-8 bytes in two: decode then puts U+FFFD for
         each broken piece (Python's errors="replace"), decode_bytes returns the raw bytes.
train:   start from the 256 byte tokens; count every adjacent pair of tokens inside the chunks; merge the
         most frequent (ties: the smallest (left, right) ids) into a new token; repeat until vocab_size
         tokens, or until every chunk is a single token.
shapes:  ids are 1-D with V = vocab_size possible values
saved:   tokenizer.json, {"type": "bpe", "tokens": [...], "merges": [[left, right, result], ...],
         "special_tokens": {...}}, tokens written in GPT-2's printable byte alphabet ("Ġthe" is b" the").

Why training is fast: the corpus's 1.1 M characters pre-split into 300 k chunks but only 15 k distinct
ones. Pairs are counted once per distinct chunk, weighted by how often the chunk occurs, and after a merge
only the chunks that hold the merged pair are recounted (``where`` maps each pair to those chunks), never
the whole text: the 1,000-token vocabulary trains in 1-3 s on one core.

ref: Sennrich et al. 2016, "Neural Machine Translation of Rare Words with Subword Units", §3.2;
     Radford et al. 2019 (GPT-2), §2.2; openai/gpt-2 src/encoder.py
"""

import re
from collections import Counter, defaultdict

import numpy as np
import regex

from minilm.data.tokenizer_file import TokenizerFile
from minilm.data.gpt2_tokenizer import read_gpt2_files, str_to_token, token_to_str, write_gpt2_files

TOKENIZER_TYPE = "bpe"

# GPT-2's pre-tokenisation: English contractions, then an optional space + letters, + digits, + other
# symbols, then whitespace runs; "\s+(?!\S)" leaves the last space of a run to start the next word.
# \p{L} / \p{N} (any letter / number) need the `regex` module; every character falls in one alternative,
# so the chunks always concatenate back to the text.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_SPLIT = regex.compile(GPT2_PATTERN)

# How many distinct chunks encode remembers before it forgets them all and starts again: a corpus keeps making new
# words (names, numbers, typos), and an unbounded cache would grow with it for ever. 2^16 is four times the
# 15 k distinct chunks of the embedded Shakespeare and holds about 11 MB (measured, ~170 bytes a chunk).
# Clearing, not least-recently-used: the common words come back within a few lines and cost one merge
# loop each, cheaper than LRU bookkeeping on every lookup.
CACHE_SIZE = 2**16


def _utf8_text(text):
    """``text`` (str or bytes) as a str whose chunks encode back with surrogateescape to the exact bytes."""
    if isinstance(text, (bytes, bytearray)):
        return bytes(text).decode("utf-8", "surrogateescape")  # invalid bytes become U+DC80..U+DCFF
    if not isinstance(text, str):
        raise TypeError(f"text must be str or bytes, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        ch = text[err.start]
        raise ValueError(f"text has a lone surrogate U+{ord(ch):04X} at position {err.start}, "
                         "which UTF-8 cannot encode") from None
    return text


def count_pairs(words, freqs):
    """(counts, where) over distinct words (id lists) occurring freqs[w] times each: counts[(left, right)] is the
    pair's occurrences in the whole text, where[(left, right)] the words that hold it (shared by WordPiece)."""
    counts = defaultdict(int)  # (left, right) -> occurrences in the whole text
    where = defaultdict(set)  # (left, right) -> the words that hold it (maybe no longer after a merge: harmless)
    for w, ids in enumerate(words):
        for pair in zip(ids, ids[1:]):
            counts[pair] += freqs[w]
            where[pair].add(w)
    return counts, where


def _merge(ids, pair, new):
    """``ids`` with every occurrence of ``pair``, scanned left to right, replaced by ``new``."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class BPETokenizer(TokenizerFile):
    def __init__(self, tokens, merges, special_tokens=None):
        """``tokens``: bytes by id; ``merges``: (left, right, result) ids by rank; ``special_tokens``: {text: id}."""
        self.tokens = [bytes(t) for t in tokens]
        self.merges = [tuple(int(i) for i in m) for m in merges]
        self.special_tokens = dict(special_tokens or {})
        V = len(self.tokens)
        for text, i in self.special_tokens.items():
            if not 0 <= i < V or self.tokens[i] != text.encode("utf-8"):
                raise ValueError(f"special token {text!r} has id {i}, which does not hold its text")
        special_ids = set(self.special_tokens.values())
        self._byte_ids = np.full(256, -1, dtype=np.int64)  # (256,) the id of each single-byte token
        for i, t in enumerate(self.tokens):
            if len(t) == 1 and i not in special_ids:
                if self._byte_ids[t[0]] >= 0:
                    raise ValueError(f"byte 0x{t[0]:02x} is token {self._byte_ids[t[0]]} and token {i}")
                self._byte_ids[t[0]] = i
        missing = np.flatnonzero(self._byte_ids < 0)
        if missing.size:
            raise ValueError(f"byte 0x{missing[0]:02x} has no token; a byte-level BPE needs all 256 bytes")
        self._ranks = {}  # (left, right) -> (rank, result): the table encode looks merges up in
        for rank, m in enumerate(self.merges):
            if len(m) != 3 or not all(0 <= i < V and i not in special_ids for i in m):
                raise ValueError(f"merge {rank} {m} must be three ids of ordinary tokens in 0..{V - 1}")
            left, right, result = m
            if self.tokens[result] != self.tokens[left] + self.tokens[right]:
                raise ValueError(f"merge {rank} ({left}, {right}) -> {result}: token {result} is not the bytes "
                                 f"of tokens {left} and {right} joined")
            if (left, right) in self._ranks:
                raise ValueError(f"merge {rank} ({left}, {right}) is listed twice")
            self._ranks[(left, right)] = (rank, result)
        made = {m[2] for m in self.merges} | set(self._byte_ids.tolist()) | special_ids
        for i in range(V):
            if i not in made:
                raise ValueError(f"token {i} ({token_to_str(self.tokens[i])!r}) is produced by no merge "
                                 "and is neither a single byte nor a special token")
        names = sorted(self.special_tokens, key=len, reverse=True)  # longest first, if one contains another
        self._special_split = re.compile("(" + "|".join(map(re.escape, names)) + ")") if names else None
        self._cache = {}  # chunk bytes -> its ids: words repeat, so most chunks are looked up, not merged;
        # at most CACHE_SIZE entries

    @classmethod
    def train(cls, text, vocab_size):
        """The tokenizer of ``vocab_size`` tokens learnt from ``text``: 256 bytes + (vocab_size - 256) merges.

        Ties between equally frequent pairs go to the smallest (left id, right id), so training is
        deterministic. Training stops early, with fewer tokens, once every chunk is a single token.
        """
        if not isinstance(vocab_size, (int, np.integer)) or isinstance(vocab_size, bool) or vocab_size < 256:
            raise ValueError(f"vocab_size must be an integer >= 256 (the byte tokens), got {vocab_size!r}")
        chunks = Counter(_SPLIT.findall(_utf8_text(text)))  # distinct chunk -> how often it occurs
        # each chunk as token ids, bytes at first; surrogateescape turns invalid input bytes back into themselves
        words = [list(chunk.encode("utf-8", "surrogateescape")) for chunk in chunks]
        freqs = list(chunks.values())
        counts, where = count_pairs(words, freqs)
        tokens = [bytes([b]) for b in range(256)]
        merges = []
        while len(tokens) < vocab_size and counts:
            pair = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))  # most frequent, then smallest ids
            new = len(tokens)
            tokens.append(tokens[pair[0]] + tokens[pair[1]])
            merges.append((pair[0], pair[1], new))
            for w in where.pop(pair):  # recount only the words that held the pair: remove old pairs, add new
                f = freqs[w]
                for p in zip(words[w], words[w][1:]):
                    counts[p] -= f
                    if counts[p] == 0:
                        del counts[p]
                words[w] = _merge(words[w], pair, new)
                for p in zip(words[w], words[w][1:]):
                    counts[p] += f
                    where[p].add(w)
        return cls(tokens, merges)

    @classmethod
    def from_gpt2_files(cls, vocab_json, merges_txt, special_tokens=("<|endoftext|>",)):
        """GPT-2's tokenizer from a local vocab.json + merges.txt (see minilm.data.gpt2_tokenizer)."""
        return cls(*read_gpt2_files(vocab_json, merges_txt, special_tokens))

    def save_gpt2_files(self, vocab_json, merges_txt):
        """Write this tokenizer as GPT-2's vocab.json + merges.txt, readable by transformers' GPT2TokenizerFast."""
        write_gpt2_files(self.tokens, self.merges, vocab_json, merges_txt)

    @property
    def vocab_size(self):
        return len(self.tokens)

    def _encode_chunk(self, chunk):
        """The ids of one pre-split chunk (bytes): apply the lowest-ranked merge present until none is."""
        ids = self._cache.get(chunk)
        if ids is None:
            ids = self._byte_ids[np.frombuffer(chunk, dtype=np.uint8)].tolist()
            while len(ids) > 1:
                pair = min(zip(ids, ids[1:]), key=lambda p: self._ranks.get(p, (np.inf,))[0])
                if pair not in self._ranks:
                    break  # no adjacent pair is a merge: the chunk is done
                ids = _merge(ids, pair, self._ranks[pair][1])
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()  # bounded memory (CACHE_SIZE's comment)
            self._cache[chunk] = ids
        return ids

    def encode(self, text):
        """``text`` (str, or bytes of any kind) -> ids (T,) int64 on the host."""
        text = _utf8_text(text)
        pieces = self._special_split.split(text) if self._special_split else [text]
        out = []
        for k, piece in enumerate(pieces):
            if k % 2:  # re.split puts the captured special tokens at odd positions
                out.append(self.special_tokens[piece])
                continue
            for chunk in _SPLIT.findall(piece):
                out.extend(self._encode_chunk(chunk.encode("utf-8", "surrogateescape")))
        return np.array(out, dtype=np.int64)  # (T,)

    def decode_bytes(self, ids):
        """ids (T,) (a list, a NumPy or a backend array) -> the tokens' bytes joined; bad ids are named."""
        ids = self.checked_ids(ids)  # (T,)
        return b"".join(map(self.tokens.__getitem__, ids.tolist()))

    def decode(self, ids):
        """ids (T,) -> text; a UTF-8 character cut by the ids becomes U+FFFD per broken piece."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def to_dict(self):
        """A JSON-able dict; ``from_dict`` rebuilds the same tokenizer from it."""
        return {
            "type": TOKENIZER_TYPE,
            "vocab_size": self.vocab_size,
            "tokens": [token_to_str(t) for t in self.tokens],
            "merges": [list(m) for m in self.merges],
            "special_tokens": dict(self.special_tokens),
        }

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise ValueError(f"a tokenizer description must be a JSON object, got {type(d).__name__}")
        if d.get("type") != TOKENIZER_TYPE:
            raise ValueError(f"tokenizer type {d.get('type')!r} is not {TOKENIZER_TYPE!r}")
        for key, kind in (("tokens", list), ("merges", list), ("special_tokens", dict)):
            if not isinstance(d.get(key), kind):
                raise ValueError(f"bpe tokenizer description has no {key!r} {kind.__name__}")
        for s in d["special_tokens"].values():
            if not isinstance(s, int) or isinstance(s, bool):
                raise ValueError(f"special token id {s!r} is not an integer")
        if not all(isinstance(t, str) for t in d["tokens"]):
            raise ValueError("bpe tokenizer 'tokens' must all be strings")
        tokens = [t.encode("utf-8") if t in d["special_tokens"] else str_to_token(t, "token") for t in d["tokens"]]
        merges = d["merges"]
        for m in merges:
            if not isinstance(m, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in m):
                raise ValueError(f"merge {m!r} must be a list of integer ids [left, right, result]")
        tok = cls(tokens, merges, d["special_tokens"])
        if "vocab_size" in d and d["vocab_size"] != tok.vocab_size:
            raise ValueError(f"vocab_size {d['vocab_size']} does not match the {tok.vocab_size} tokens listed")
        return tok

    def __eq__(self, other):
        return (isinstance(other, BPETokenizer) and self.tokens == other.tokens and self.merges == other.merges
                and self.special_tokens == other.special_tokens)

    def __repr__(self):
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)})"

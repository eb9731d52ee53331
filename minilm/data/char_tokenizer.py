"""CharTokenizer: one token per character, the vocabulary being the sorted distinct characters of the text.

encode:  text (a str of T characters) -> ids (T,) int64, ids[t] = position of text[t] in the vocabulary
decode:  ids (T,) -> text, the inverse
shapes:  ids are 1-D with V = vocab_size possible values (65 for tiny Shakespeare)
specials: optional special tokens (BERT_SPECIALS: [PAD] [UNK] [CLS] [SEP] [MASK], for a masked LM) take the
         ids after the characters', n_chars ... V - 1, so each character keeps its id with or without them: a
         GPT's vocabulary and checkpoints are untouched, and a BERT's pad_token_id is pad_id (65 for tiny
         Shakespeare), not 0. With specials, encode keeps a special token written in the text ("to [MASK]")
         whole and turns a character outside the vocabulary into [UNK], as BertTokenizer; decode writes
         each one by name. encode_pair gives BERT's [CLS] a [SEP] (b [SEP]) with its token types: the one
         pairing, WordPieceTokenizer's own function, which needs only encode, cls_id and sep_id.
saved:   tokenizer.json, {"type": "char", "vocab": [...]}, and "special_tokens": [...] when there are any (a
         file without the key has none, so older files load as before); the "type" field lets a BPE tokenizer
         sit beside it in the same checkpoint format. Written to a temp file in the same folder, fsynced, then
         renamed over the old one, so a crash mid-save leaves the old file whole.

Both directions are vectorised over code points, not a Python loop per character: encode views the text
as UTF-32 code points and finds each in the sorted vocabulary with one searchsorted; decode gathers code
points by id and turns them back into a string in one call. The whole corpus encodes in milliseconds.

ref: nanoGPT data/shakespeare_char/prepare.py (chars = sorted(list(set(data))), stoi, itos)
"""


import re

import numpy as np

from minilm.data.tokenizer_file import TokenizerFile
from minilm.data.wordpiece import WordPieceTokenizer

TOKENIZER_TYPE = "char"
BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # what a masked LM needs, BERT's names


def _code_points(text):
    """``text`` as an array of its Unicode code points, one per character."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")  # (T,)


class CharTokenizer(TokenizerFile):
    def __init__(self, vocab, specials=()):
        """``vocab``: the characters, in id order (a str or a sequence of one-character strings); ``specials``:
        special tokens (strings such as "[MASK]") whose ids follow the characters'."""
        vocab, specials = list(vocab), list(specials)
        if not vocab:
            raise ValueError("a CharTokenizer needs at least one character in its vocabulary")
        for i, ch in enumerate(vocab):
            if not isinstance(ch, str) or len(ch) != 1:
                raise ValueError(f"vocabulary entry {i} must be a single character, got {ch!r}")
        for i, token in enumerate(specials):
            if not isinstance(token, str) or len(token) < 2:
                raise ValueError(f"special token {i} must be a string of two or more characters, got {token!r}")
        seen = set()
        for token in vocab + specials:
            if token in seen:
                raise ValueError(f"vocabulary lists {token!r} more than once")
            seen.add(token)
        self.vocab, self.specials = vocab, specials
        self._codes = _code_points("".join(vocab))  # (n_chars,) code point of each character's id
        self._order = np.argsort(self._codes, kind="stable")  # (n_chars,) ids sorted by code point, for searchsorted
        self._sorted_codes = self._codes[self._order]  # (n_chars,)
        # longest first, so that no special token is cut short by another that is its prefix
        self._split = re.compile("(" + "|".join(map(re.escape, sorted(specials, key=len, reverse=True))) + ")") \
            if specials else None

    @classmethod
    def from_text(cls, text, specials=()):
        """The tokenizer whose vocabulary is the sorted distinct characters of ``text`` (65 for tiny Shakespeare),
        then ``specials``."""
        if not text:
            raise ValueError("cannot build a vocabulary from empty text")
        return cls(sorted(set(text)), specials)

    @property
    def vocab_size(self):
        return len(self.vocab) + len(self.specials)

    @property
    def special_ids(self):
        """The ids of the special tokens, in order (empty without specials)."""
        return tuple(range(len(self.vocab), self.vocab_size))

    def special_id(self, token):
        """The id of special token ``token`` ("[MASK]"); a ValueError when this tokenizer has none."""
        if token not in self.specials:
            raise ValueError(f"this character tokenizer has no {token} token (its special tokens: "
                             f"{' '.join(self.specials) or 'none'}); CharTokenizer.from_text(text, BERT_SPECIALS) "
                             f"adds BERT's")
        return len(self.vocab) + self.specials.index(token)

    pad_id = property(lambda self: self.special_id("[PAD]"))
    unk_id = property(lambda self: self.special_id("[UNK]"))
    cls_id = property(lambda self: self.special_id("[CLS]"))
    sep_id = property(lambda self: self.special_id("[SEP]"))
    mask_id = property(lambda self: self.special_id("[MASK]"))

    def encode(self, text):
        """``text`` -> ids (T,) int64 on the host; a character outside the vocabulary is named (or, with an [UNK]
        token, becomes it)."""
        if self._split is None:
            return self._encode_characters(text)
        parts = self._split.split(text)  # special tokens at the odd positions, as re.split puts its captures
        return np.concatenate([np.array([self.special_id(part)], dtype=np.int64) if k % 2 else
                               self._encode_characters(part) for k, part in enumerate(parts)])  # (T,)

    def _encode_characters(self, text):
        codes = _code_points(text)  # (T,)
        slot = np.searchsorted(self._sorted_codes, codes)  # (T,) where each code would sit in the sorted vocab
        slot = np.minimum(slot, len(self.vocab) - 1)  # codes above the largest land past the end
        unknown = self._sorted_codes[slot] != codes  # (T,)
        ids = self._order[slot].astype(np.int64)  # (T,)
        if unknown.any():
            if "[UNK]" in self.specials:
                ids[unknown] = self.unk_id
                return ids
            pos = int(np.argmax(unknown))
            ch = text[pos]
            raise ValueError(
                f"character {ch!r} (U+{ord(ch):04X}) at position {pos} is not in the vocabulary "
                f"of {self.vocab_size} characters"
            )
        return ids

    # (ids (T,), token_type_ids (T,)) for [CLS] a [SEP] (b [SEP]), truncated longest-first to max_length: not a
    # second copy of BERT's pairing but the same function, as it reads nothing of WordPiece's own
    encode_pair = WordPieceTokenizer.encode_pair

    def decode(self, ids):
        """ids (T,) (a list, a NumPy or a backend array) -> text; an id outside [0, vocab_size) is named."""
        ids = self.checked_ids(ids)  # (T,)
        special = ids >= len(self.vocab)  # (T,)
        if not special.any():
            return self._codes[ids].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")
        cuts = np.flatnonzero(special)  # each special token is a piece of its own, between runs of characters
        pieces = np.split(ids, np.stack([cuts, cuts + 1], axis=1).reshape(-1))
        return "".join(self.specials[int(piece[0]) - len(self.vocab)] if piece.size == 1 and piece[0] >= len(
            self.vocab) else self.decode(piece) for piece in pieces)

    def to_dict(self):
        """A JSON-able dict; ``from_dict`` rebuilds the same tokenizer from it."""
        d = {"type": TOKENIZER_TYPE, "vocab_size": self.vocab_size, "vocab": list(self.vocab)}
        if self.specials:  # written only when there are any: a GPT's tokenizer.json is as it always was
            d["special_tokens"] = list(self.specials)
        return d

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise ValueError(f"a tokenizer description must be a JSON object, got {type(d).__name__}")
        kind = d.get("type")
        if kind != TOKENIZER_TYPE:
            raise ValueError(f"tokenizer type {kind!r} is not {TOKENIZER_TYPE!r}")
        if not isinstance(d.get("vocab"), list):
            raise ValueError("char tokenizer description has no 'vocab' list")
        specials = d.get("special_tokens", [])
        if not isinstance(specials, list):
            raise ValueError("char tokenizer description's 'special_tokens' must be a list")
        tok = cls(d["vocab"], specials)
        if "vocab_size" in d and d["vocab_size"] != tok.vocab_size:
            raise ValueError(f"vocab_size {d['vocab_size']} does not match the {len(tok.vocab)} characters "
                             f"and {len(tok.specials)} special tokens listed")
        return tok

    def __eq__(self, other):
        return isinstance(other, CharTokenizer) and (self.vocab, self.specials) == (other.vocab, other.specials)

    def __repr__(self):
        extra = f", specials={self.specials}" if self.specials else ""
        return f"CharTokenizer(vocab_size={self.vocab_size}{extra})"

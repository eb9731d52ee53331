"""CharTokenizer: one token per character, the vocabulary being the sorted distinct characters of the text.

encode:  text (a str of T characters) -> ids (T,) int64, ids[t] = position of text[t] in the vocabulary
decode:  ids (T,) -> text, the inverse
shapes:  ids are 1-D with V = vocab_size possible values (65 for tiny Shakespeare)
saved:   tokenizer.json, {"type": "char", "vocab": [...]}; the "type" field lets a BPE tokenizer sit beside it
         in the same checkpoint format. Written to a temp file in the same folder, fsynced, then renamed
         over the old one, so a crash mid-save leaves the old file whole.

Both directions are vectorised over code points, not a Python loop per character: encode views the text
as UTF-32 code points and finds each in the sorted vocabulary with one searchsorted; decode gathers code
points by id and turns them back into a string in one call. The whole corpus encodes in milliseconds.

ref: nanoGPT data/shakespeare_char/prepare.py (chars = sorted(list(set(data))), stoi, itos)
"""


import numpy as np

from minilm.data.tokenizer_file import TokenizerFile

TOKENIZER_TYPE = "char"


def _code_points(text):
    """``text`` as an array of its Unicode code points, one per character."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")  # (T,)


class CharTokenizer(TokenizerFile):
    def __init__(self, vocab):
        """``vocab``: the characters, in id order (a str or a sequence of one-character strings)."""
        vocab = list(vocab)
        if not vocab:
            raise ValueError("a CharTokenizer needs at least one character in its vocabulary")
        for i, ch in enumerate(vocab):
            if not isinstance(ch, str) or len(ch) != 1:
                raise ValueError(f"vocabulary entry {i} must be a single character, got {ch!r}")
        seen = set()
        for ch in vocab:
            if ch in seen:
                raise ValueError(f"vocabulary lists the character {ch!r} more than once")
            seen.add(ch)
        self.vocab = vocab
        self._codes = _code_points("".join(vocab))  # (V,) code point of each id
        self._order = np.argsort(self._codes, kind="stable")  # (V,) ids sorted by code point, for searchsorted
        self._sorted_codes = self._codes[self._order]  # (V,)

    @classmethod
    def from_text(cls, text):
        """The tokenizer whose vocabulary is the sorted distinct characters of ``text`` (65 for tiny Shakespeare)."""
        if not text:
            raise ValueError("cannot build a vocabulary from empty text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self):
        return len(self.vocab)

    def encode(self, text):
        """``text`` -> ids (T,) int64 on the host; a character outside the vocabulary is named."""
        codes = _code_points(text)  # (T,)
        slot = np.searchsorted(self._sorted_codes, codes)  # (T,) where each code would sit in the sorted vocab
        slot = np.minimum(slot, self.vocab_size - 1)  # codes above the largest land past the end
        unknown = self._sorted_codes[slot] != codes  # (T,)
        if unknown.any():
            pos = int(np.argmax(unknown))
            ch = text[pos]
            raise ValueError(
                f"character {ch!r} (U+{ord(ch):04X}) at position {pos} is not in the vocabulary "
                f"of {self.vocab_size} characters"
            )
        return self._order[slot].astype(np.int64)  # (T,)

    def decode(self, ids):
        """ids (T,) (a list, a NumPy or a backend array) -> text; an id outside [0, vocab_size) is named."""
        ids = self.checked_ids(ids)  # (T,)
        return self._codes[ids].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")

    def to_dict(self):
        """A JSON-able dict; ``from_dict`` rebuilds the same tokenizer from it."""
        return {"type": TOKENIZER_TYPE, "vocab_size": self.vocab_size, "vocab": list(self.vocab)}

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise ValueError(f"a tokenizer description must be a JSON object, got {type(d).__name__}")
        kind = d.get("type")
        if kind != TOKENIZER_TYPE:
            raise ValueError(f"tokenizer type {kind!r} is not {TOKENIZER_TYPE!r}")
        if not isinstance(d.get("vocab"), list):
            raise ValueError("char tokenizer description has no 'vocab' list")
        tok = cls(d["vocab"])
        if "vocab_size" in d and d["vocab_size"] != tok.vocab_size:
            raise ValueError(f"vocab_size {d['vocab_size']} does not match the {tok.vocab_size} characters listed")
        return tok

    def __eq__(self, other):
        return isinstance(other, CharTokenizer) and self.vocab == other.vocab

    def __repr__(self):
        return f"CharTokenizer(vocab_size={self.vocab_size})"

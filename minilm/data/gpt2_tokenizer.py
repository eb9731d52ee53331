"""GPT-2's tokenizer files: the byte <-> character table, and vocab.json + merges.txt read and written.

A byte-level BPE token is a byte string, but GPT-2 stores its vocabulary as JSON text and its merges as
lines of two tokens separated by one space. Raw bytes fit neither: a space or a newline inside a token
would break the merges.txt line, and control bytes print as nothing. So GPT-2 gives every byte a visible,
non-space character (``bytes_to_unicode``):

    the 188 bytes that are already printable Latin-1 ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves;
    the other 68 (0..32 control and space, 127..160 DEL and C1 controls, 173 soft hyphen) are given the
    characters 256, 257, ... in byte order: space 0x20 becomes 'Ġ' (U+0120), newline 0x0A becomes 'Ċ'.

A token is then the string of its bytes' characters: b" the" is "Ġthe". The table is a bijection, so every
string over these 256 characters is exactly one byte string.

vocab.json    {"token string": id, ...}, ids 0..V-1 each used once
merges.txt    an optional "#version: ..." first line, then one merge per line, "left right", highest
              priority (rank 0) first; each merge joins two tokens into the token left + right

``read_gpt2_files`` checks the two files against each other and returns the plain tables a BPETokenizer is
built from: the bytes of each token by id, the merges as (left id, right id, result id) in rank order, and
the special tokens {text: id}. A mismatch is a ValueError naming the offending entry.

ref: openai/gpt-2 src/encoder.py (bytes_to_unicode, get_pairs, Encoder.bpe)
"""

import json
from pathlib import Path

from minilm.atomic import replace_file


def bytes_to_unicode():
    """GPT-2's table: byte value (0..255) -> the single printable character that stands for it."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:  # the 68 unprintable bytes, in byte order, take the characters from 256 up
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {ch: b for b, ch in BYTE_TO_CHAR.items()}


def token_to_str(token):
    """A token's bytes as GPT-2's printable string: b' the' -> 'Ġthe'."""
    return "".join(BYTE_TO_CHAR[b] for b in token)


def str_to_token(text, where):
    """The inverse of ``token_to_str``; a character outside the 256-character alphabet is named, with ``where``."""
    try:
        return bytes(CHAR_TO_BYTE[ch] for ch in text)
    except KeyError as err:
        ch = err.args[0]
        raise ValueError(
            f"{where} {text!r} has the character {ch!r} (U+{ord(ch):04X}), which is not in GPT-2's byte alphabet"
        ) from None


def _read_vocab(path):
    """vocab.json -> {token string: id}, ids checked to be 0..V-1, each once."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vocab file not found: {path}")
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"vocab file {path} is not valid JSON: {err}") from None
    if not isinstance(vocab, dict) or not vocab:
        raise ValueError(f"vocab file {path} must hold a non-empty JSON object {{token: id}}")
    owner = {}
    for token, i in vocab.items():
        if not isinstance(i, int) or isinstance(i, bool):
            raise ValueError(f"vocab.json entry {token!r} has id {i!r}, not an integer")
        if not 0 <= i < len(vocab):
            raise ValueError(f"vocab.json entry {token!r} has id {i}, outside 0..{len(vocab) - 1}")
        if i in owner:
            raise ValueError(f"vocab.json gives id {i} to both {owner[i]!r} and {token!r}")
        owner[i] = token
    return vocab


def _read_merges(path):
    """merges.txt -> [(line number, left, right)] in rank order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"merges file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as err:
        raise ValueError(f"merges file {path} is not UTF-8 text: {err}") from None
    merges = []
    for n, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if not line or (n == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"merges.txt line {n}: expected two tokens separated by one space, got {line!r}")
        merges.append((n, parts[0], parts[1]))
    return merges


def read_gpt2_files(vocab_json, merges_txt, special_tokens=("<|endoftext|>",)):
    """(token bytes by id, merges [(left, right, result)] by rank, specials {text: id}) from GPT-2's two files.

    A name in ``special_tokens`` that vocab.json lists is a special token: it is produced by no merge, and
    encode maps its exact text to its id (as GPT2TokenizerFast does). Names that vocab.json lacks are ignored.
    """
    vocab = _read_vocab(vocab_json)
    specials = {s: vocab[s] for s in special_tokens if s in vocab}
    tokens = [b""] * len(vocab)
    for text, i in vocab.items():
        tokens[i] = text.encode("utf-8") if text in specials else str_to_token(text, "vocab.json entry")
    for b, ch in BYTE_TO_CHAR.items():
        if ch not in vocab:
            raise ValueError(f"vocab.json has no entry for byte 0x{b:02x} (its character {ch!r})")
    merges, seen, produced = [], set(), set()
    for n, left, right in _read_merges(merges_txt):
        for part in (left, right):
            if part not in vocab or part in specials:
                raise ValueError(f"merges.txt line {n}: token {part!r} of merge ({left!r}, {right!r}) "
                                 "is not in vocab.json")
        if left + right not in vocab:
            raise ValueError(f"merges.txt line {n}: merge ({left!r}, {right!r}) produces {left + right!r}, "
                             "which is not in vocab.json")
        if (left, right) in seen:
            raise ValueError(f"merges.txt line {n}: merge ({left!r}, {right!r}) is listed twice")
        seen.add((left, right))
        produced.add(left + right)
        merges.append((vocab[left], vocab[right], vocab[left + right]))
    for text, i in vocab.items():
        if len(text) > 1 and text not in produced and text not in specials:
            raise ValueError(f"vocab.json entry {text!r} (id {i}) is produced by no merge in merges.txt "
                             "and is neither a single byte nor a special token")
    return tokens, merges, specials


def write_gpt2_files(tokens, merges, vocab_json, merges_txt):
    """Write ``tokens`` (bytes by id) and ``merges`` [(left, right, result)] as GPT-2's vocab.json + merges.txt."""
    names = [token_to_str(t) for t in tokens]
    vocab = {}
    for i, name in enumerate(names):
        if name in vocab:
            raise ValueError(f"tokens {vocab[name]} and {i} are the same bytes {name!r}; "
                             "GPT-2's vocab.json can list a token only once")
        vocab[name] = i
    lines = ["#version: 0.2"] + [f"{names[left]} {names[right]}" for left, right, _ in merges]
    replace_file(vocab_json, (json.dumps(vocab, ensure_ascii=False, indent=1) + "\n").encode())
    replace_file(merges_txt, ("\n".join(lines) + "\n").encode())

"""The text a model trains on: the embedded tiny Shakespeare, or any UTF-8 file or folder of .txt files.

load_text(None)    the embedded corpus (tiny Shakespeare, 1,115,394 characters), read through
                   importlib.resources so it works from an installed wheel, not only from a checkout
load_text(file)    the file, decoded as UTF-8
load_text(folder)  every *.txt file below the folder, recursively, concatenated verbatim in sorted order of
                   their paths relative to the folder (so the order is the same on every OS); folders and
                   files whose name starts with "." are skipped (.ipynb_checkpoints holds stale copies)
split(ids)         (train, val): the first 90% and the last 10%, exactly as nanoGPT's prepare.py

Decoding: a leading UTF-8 byte-order mark is dropped and "\\r\\n" / "\\r" become "\\n", as Python's open()
does in text mode, so a file saved on Windows gives the same vocabulary as the same file saved on Linux.
A NUL byte or bytes that are not UTF-8 mean the file is not text: a ValueError names the file and the
byte offset, rather than a vocabulary full of garbage characters.

ref: nanoGPT data/shakespeare_char/prepare.py (the 90/10 split and the 65-character vocabulary)
"""

import codecs
import os
from importlib import resources
from pathlib import Path

EMBEDDED_CORPUS = "shakespeare.txt"  # package data of minilm.data, declared in pyproject.toml


def _decode(raw, name):
    """``raw`` bytes as text, or a ValueError naming ``name`` and the first offending byte offset."""
    nul = raw.find(b"\x00")
    if nul != -1:
        raise ValueError(f"{name} looks like a binary file, not text: NUL byte at byte offset {nul}")
    skip = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        text = raw[skip:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = skip + err.start
        raise ValueError(
            f"{name} is not UTF-8 text: invalid byte 0x{raw[offset]:02x} at byte offset {offset} "
            "(is it a binary file?)"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _txt_files(folder):
    """Every non-hidden *.txt file below ``folder``, sorted by its path relative to ``folder``."""
    found = []
    for root, dirs, files in os.walk(folder):  # does not follow symlinked folders, so no cycles
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.endswith(".txt") and not name.startswith("."):
                path = Path(root, name)
                found.append((path.relative_to(folder).as_posix(), path))
    return [path for _, path in sorted(found)]


def load_text(path=None):
    """The training text: the embedded corpus when ``path`` is None, else a UTF-8 file or a folder of .txt files."""
    if path is None:
        raw = resources.files("minilm.data").joinpath(EMBEDDED_CORPUS).read_bytes()
        return _decode(raw, f"embedded corpus {EMBEDDED_CORPUS}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data path not found: {path}")
    if path.is_dir():
        files = _txt_files(path)
        if not files:
            raise ValueError(f"data folder {path} contains no .txt files")
        text = "".join(_decode(file.read_bytes(), str(file)) for file in files)
        if not text:
            raise ValueError(f"data folder {path} contains only empty .txt files ({len(files)} of them)")
        return text
    if not path.is_file():
        raise ValueError(f"data path {path} is neither a file nor a folder")
    text = _decode(path.read_bytes(), str(path))
    if not text:
        raise ValueError(f"data file {path} is empty")
    return text


def split(ids, train_fraction=0.9):
    """(train, val): ``ids[:int(n * train_fraction)]`` and the rest, n = len(ids), as nanoGPT's prepare.py."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be strictly between 0 and 1, got {train_fraction}")
    n = len(ids)
    cut = int(n * train_fraction)
    return ids[:cut], ids[cut:]

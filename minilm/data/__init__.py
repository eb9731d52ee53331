"""The data pipeline: text -> ids -> (train, val) -> random batches.

    from minilm.data import load_text, split, CharTokenizer, get_batch
    text = load_text()                              # embedded tiny Shakespeare, or load_text("my_corpus/")
    tok = CharTokenizer.from_text(text)             # 65 characters; tok.save(folder / "tokenizer.json")
    train, val = split(tok.encode(text))            # first 90% / last 10%, as nanoGPT
    x, y = get_batch(train, 64, 256, np.random.default_rng(1337))   # (B, T) each, y = x shifted by one

The corpus file shakespeare.txt lives in this folder as package data.

May import: minilm.backend and minilm.atomic (tokenizer files are written atomically).
"""

from minilm.data.batching import (every_window, get_batch, next_token_pairs, random_windows, rng_from_state,
                                   sequential_windows)
from minilm.data.bpe import BPETokenizer
from minilm.data.char_tokenizer import CharTokenizer
from minilm.data.corpus import load_text, split
from minilm.data.wordpiece import WordPieceTokenizer

TOKENIZERS = {"char": CharTokenizer, "bpe": BPETokenizer, "wordpiece": WordPieceTokenizer}


def tokenizer_from_dict(d):
    """The tokenizer a checkpoint's tokenizer.json describes, whichever kind its "type" names."""
    kind = d.get("type") if isinstance(d, dict) else None
    if kind not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer type {kind!r}; known: {', '.join(TOKENIZERS)}")
    return TOKENIZERS[kind].from_dict(d)


__all__ = ["load_text", "split", "CharTokenizer", "BPETokenizer", "WordPieceTokenizer", "tokenizer_from_dict",
           "get_batch", "every_window", "rng_from_state", "random_windows", "sequential_windows", "next_token_pairs"]

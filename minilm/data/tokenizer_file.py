"""What every tokenizer shares: tokenizer.json written atomically and read back, and checked ids to decode."""

import json
from pathlib import Path

import numpy as np

from minilm.atomic import replace_file
from minilm.backend import to_numpy


class TokenizerFile:
    """A mixin for a class with ``vocab_size``, ``to_dict()`` and ``from_dict(d)``: adds ``save``, ``load``
    and ``checked_ids``, the validation every ``decode`` starts with."""

    def save(self, path):
        """Write tokenizer.json at ``path`` atomically (temp file beside it, fsync, rename), mode 0644."""
        replace_file(path, (json.dumps(self.to_dict(), ensure_ascii=False) + "\n").encode())

    @classmethod
    def load(cls, path):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {path}")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"tokenizer file {path} is corrupt: {err}") from None
        return cls.from_dict(d)

    def checked_ids(self, ids):
        """ids (T,) (a list, a NumPy or a backend array, or one id) as host int64; a bad id is named."""
        ids = np.asarray(to_numpy(ids))
        if ids.ndim > 1:
            raise ValueError(f"decode takes a 1-D sequence of ids, got shape {ids.shape}")
        ids = ids.reshape(-1)  # (T,) a single id decodes too
        if ids.size == 0:  # an empty list has dtype float64: nothing to check
            return ids.astype(np.int64)
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"token ids must be integers, got dtype {ids.dtype}")
        bad = (ids < 0) | (ids >= self.vocab_size)  # (T,)
        if bad.any():
            pos = int(np.argmax(bad))
            raise ValueError(f"token id {ids[pos]} out of range for vocab_size {self.vocab_size} (at position {pos})")
        return ids

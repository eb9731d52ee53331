"""What every tokenizer shares: its dict written as tokenizer.json atomically, and read back with clear errors."""

import json
from pathlib import Path

from minilm.atomic import replace_file


class TokenizerFile:
    """A mixin for a class with ``to_dict()`` and ``from_dict(d)``: adds ``save(path)`` and ``load(path)``."""

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

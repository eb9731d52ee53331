"""Reading a model back: a checkpoint folder (or a training output folder) to (model, tokenizer).

    model, tokenizer = minilm.load("out/quickstart")      # OUT/best, else OUT/latest; eval mode

The model is built by the registry from config.json's model_type (minilm.models.registry), so one loader
serves every family; a command that can use only some types passes ``expect`` and a checkpoint of another
type is refused with both types named.
"""

from pathlib import Path

from minilm.files.checkpoint import MODEL, load_checkpoint
from minilm.data import tokenizer_from_dict
from minilm.models import build, expect_type


def resolve_checkpoint(path):
    """``path`` itself, or for a training output folder (OUT/best, OUT/latest) its best, else its latest."""
    path = Path(path)
    if path.is_dir() and not (path / MODEL).exists():
        for name in ("best", "latest"):
            if (path / name).is_dir() or (path / f"{name}.previous").is_dir():
                return path / name
    return path


def load_model(path, expect=None, user="this command"):
    """(model, tokenizer, checkpoint) from a checkpoint folder or a training output folder (resolve_checkpoint).

    expect: the model types ``user`` can use (None: any registered type); another type is a ValueError.
    The model is in training mode, as built; ``load`` is the eval-mode face of this.
    """
    ckpt = load_checkpoint(resolve_checkpoint(path))
    if expect is not None:
        expect_type(ckpt.config, expect, ckpt.path, user)
    model, config = build(ckpt.config, ckpt.path)
    model.load_state_dict(ckpt.model_state)
    if ckpt.tokenizer is None:
        raise ValueError(f"checkpoint {ckpt.path} has no tokenizer.json: cannot turn text into token ids")
    tokenizer = tokenizer_from_dict(ckpt.tokenizer)
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"the tokenizer's vocab_size {tokenizer.vocab_size} exceeds the model's {config.vocab_size}")
    return model, tokenizer, ckpt


def load(path):
    """(model, tokenizer) from a minilm checkpoint folder, the model in eval mode (DESIGN.md's minilm.load)."""
    model, tokenizer, _ = load_model(path)
    return model.eval(), tokenizer

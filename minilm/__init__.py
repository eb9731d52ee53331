"""minilm: transformer language models from scratch, every backward written by hand.

    import minilm
    minilm.use_backend("numpy")         # or the GPU one: see minilm.backend (also MINILM_BACKEND)
    from minilm import nn, optim
    model, tokenizer = minilm.load("out/quickstart")   # any minilm checkpoint, in eval mode
"""

from minilm import nn, optim
from minilm.backend import backend_name, to_numpy, use_backend

__version__ = "0.1.0"
__all__ = ["nn", "optim", "load", "use_backend", "backend_name", "to_numpy", "__version__"]


def load(path):
    """(model, tokenizer) from a minilm checkpoint folder, the model in eval mode (minilm.files.loader.load)."""
    from minilm.files.loader import load as load_checkpoint_model  # checkpoints, tokenizers: only when asked for

    return load_checkpoint_model(path)

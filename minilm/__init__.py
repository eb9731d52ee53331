"""minilm: transformer language models from scratch, every backward written by hand.

    import minilm
    minilm.use_backend("numpy")         # or the GPU one: see minilm.backend (also MINILM_BACKEND)
    from minilm import nn, optim
"""

from minilm import nn, optim
from minilm.backend import backend_name, to_numpy, use_backend

__version__ = "0.1.0"
__all__ = ["nn", "optim", "use_backend", "backend_name", "to_numpy", "__version__"]

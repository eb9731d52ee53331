"""The one check of a model's token ids, so that every family names a bad input the same way.

    ids = token_ids(ids, "GPT", block_size)              (B, T) integers on the active backend, or a ValueError
    src = token_ids(src, "Seq2Seq", block_size, "src")   a model with several id inputs names which one
"""

import numpy as np

from minilm.backend import xp


def token_ids(ids, model, block_size=None, name=None):
    """``ids`` as a (B, L) integer array of the active backend; a ValueError naming ``model`` (and the input
    ``name``) when it is not one, or when L exceeds ``block_size``."""
    ids = xp.asarray(ids)
    what, length = (f"{name} token ids", "L") if name else ("token ids", "T")
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{model} expects {what} of shape (B, {length}) and integer dtype, got {tuple(ids.shape)} "
                         f"{ids.dtype}")
    if block_size is not None and ids.shape[1] > block_size:
        raise ValueError(f"{name or 'sequence'} length {ids.shape[1]} exceeds block_size {block_size}")
    return ids

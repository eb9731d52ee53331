"""Training batches: B random windows of T + 1 consecutive tokens, each giving an input and its next tokens.

draw:    i_b ~ U{0, ..., N - T - 1} for b = 1..B, independently (N = len(data), T = block_size)
         x[b] = data[i_b : i_b + T],  y[b] = data[i_b + 1 : i_b + T + 1]   (y is x shifted left by one)
shapes:  data (N,) token ids on the host; x, y (B, T) int64 on the active backend
random:  ``rng`` is a NumPy Generator on the host (np.random.default_rng(seed)), even when training runs
         on the GPU: the draws are B integers, and a host Generator's state is a plain dict
         (``rng.bit_generator.state``) that json.dumps writes into train_state.json and
         ``rng_from_state`` turns back into a Generator, so a resumed run draws the very batches the
         uninterrupted run would have drawn.
cost:    one fancy-index gather of (B, T + 1) on the host, no Python loop over the batch; only the
         batch itself crosses to the device, never the whole corpus.

ref: nanoGPT train.py get_batch (ix = torch.randint(len(data) - block_size, (batch_size,)))
"""

import numpy as np

from minilm.backend import asarray


def random_windows(data, batch_size, length, rng):
    """(B, length) int64 on the host: B windows of ``length`` consecutive tokens at random starts of ``data``."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a NumPy Generator on the host (np.random.default_rng(seed)), got {type(rng).__name__}"
        )
    for name, value in (("batch_size", batch_size), ("block_size", length - 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    data = np.asarray(data)
    if data.ndim != 1 or not np.issubdtype(data.dtype, np.integer):
        raise ValueError(f"data must be a 1-D array of integer token ids, got shape {data.shape} dtype {data.dtype}")
    n = data.shape[0]
    if n < length:
        raise ValueError(
            f"data has {n} tokens, too short for block_size {length - 1}: a window needs block_size + 1 = "
            f"{length} tokens"
        )
    starts = rng.integers(0, n - length + 1, size=batch_size)  # (B,) high is exclusive: the last start is N - length
    return data[starts[:, None] + np.arange(length)]  # (B, length)


def sequential_windows(data, batch_size, length):
    """Batches (at most B, length) on the host of every window of ``length`` tokens starting at 0, L - 1,
    2(L - 1), ...: consecutive windows share one token, so every token but the first is a target once."""
    data = np.asarray(data)
    starts = np.arange(0, len(data) - length + 1, length - 1)  # (W,) s + length <= N
    for first in range(0, len(starts), batch_size):
        yield data[starts[first:first + batch_size, None] + np.arange(length)]  # (≤ B, length)


def next_token_pairs(windows):
    """(x, y) on the active backend from windows (B, T + 1) on the host: x the first T tokens, y the last T,
    so y[b, t] is the token after x[b, t] (causal language modelling's targets)."""
    x = np.ascontiguousarray(windows[:, :-1], dtype=np.int64)  # (B, T)
    y = np.ascontiguousarray(windows[:, 1:], dtype=np.int64)  # (B, T) the next token at every position of x
    return asarray(x), asarray(y)


def get_batch(data, batch_size, block_size, rng):
    """(x, y), each (B, T) int64 on the active backend, from B random windows of ``data``; see the module doc."""
    return next_token_pairs(random_windows(data, batch_size, block_size + 1, rng))


def every_window(data, batch_size, block_size):
    """(x, y) batches, as ``get_batch``'s, of every non-overlapping window of ``data`` in order: starts 0, T,
    2T, ... while a whole window of T + 1 fits. Every token but the first (and a last partial window's) is a
    target exactly once, so a mean over them is a split's loss without get_batch's sampling noise.
    The last batch may hold fewer than ``batch_size`` windows."""
    for windows in sequential_windows(data, batch_size, block_size + 1):
        yield next_token_pairs(windows)


def rng_from_state(state):
    """A NumPy Generator continuing from ``state`` (a ``rng.bit_generator.state`` dict, e.g. read from JSON)."""
    if not isinstance(state, dict) or "bit_generator" not in state:
        raise ValueError("an RNG state must be the dict rng.bit_generator.state, with a 'bit_generator' name")
    name = state["bit_generator"]
    bit_generator_class = getattr(np.random, str(name), None)
    if not (isinstance(bit_generator_class, type) and issubclass(bit_generator_class, np.random.BitGenerator)):
        raise ValueError(f"unknown bit generator {name!r} in RNG state")
    bit_generator = bit_generator_class()
    bit_generator.state = state
    return np.random.Generator(bit_generator)

"""Generate text from a checkpoint: temperature, top-k and top-p sampling over a key/value cache.

    for each new token:
        logits = model(context[-block_size:])[:, -1]       the next-token logits, (B, V)
        logits = logits / temperature                      < 1 sharpens, > 1 flattens; 0 means argmax (greedy)
        keep the top_k largest logits, then the smallest set of tokens whose probability reaches top_p
        p = softmax(logits);  next ~ p                     drawn by a NumPy Generator on the host
        context = context + [next]

cache:    with ``use_cache`` the model runs only the new token, reading the keys and values of the ones
          before it from a KVCache (minilm.nn.kv_cache): O(T) per token instead of O(T²). Past block_size,
          nanoGPT crops the context to its last block_size tokens. Every token then moves one position
          left, and with absolute positions (wpe rows, sinusoids) every cached key and value changes: the
          cache is rebuilt from the cropped window (a prefill) at each such step, which costs what a full
          recomputation costs, and gives exactly nanoGPT's result. The tests check cached and uncached
          generation agree token for token, past block_size too.
numerics: the last position's logits are filtered in float64 (B·V numbers; comparing and summing
          probabilities in float64 makes the kept set the same on both backends), then the probabilities
          move to the host, where a NumPy Generator makes the draw: one seed gives the same random numbers
          on either backend, so the same text unless the backends' float32 logits differ enough to move
          a probability across a draw (rounding at 1e-7: rare).
shapes:   idx, ids (B, T) integers < V; logits (B, V) at the last position
ref:      Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration" (top-p); nanoGPT sample.py
"""

import math

import numpy as np

from minilm.backend import asarray, to_numpy, xp
from minilm.nn.module import host_rng, inference
from minilm.nn.softmax import softmax


def check_sampling(temperature=1.0, top_k=None, top_p=None):
    """ValueError naming the first bad sampling setting."""
    if not isinstance(temperature, (int, float)) or math.isnan(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a number >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer, got {top_k}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def next_token_probs(logits, temperature=1.0, top_k=None, top_p=None):
    """Probabilities (B, V) float64 of the next token, from its logits (B, V), after temperature, top-k, top-p.

    top_k keeps the k largest logits (ties with the k-th are kept too); top_p then keeps, in each row, the
    smallest set of most probable tokens whose total probability reaches p, so at least the first one.
    temperature must be > 0 here (0 is greedy: see ``sample_next``).
    """
    check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        raise ValueError("temperature 0 is greedy decoding: take the argmax of the logits, there is nothing to sample")
    logits = logits.astype(xp.float64) / temperature  # (B, V)
    V = logits.shape[-1]
    if top_k is not None and top_k < V:
        kth = xp.sort(logits, axis=-1)[:, V - top_k][:, None]  # (B, 1) the k-th largest logit of each row
        logits = xp.where(logits < kth, -xp.inf, logits)  # (B, V)
    probs = softmax(logits, axis=-1)  # (B, V)
    if top_p is not None and top_p < 1:
        desc = -xp.sort(-probs, axis=-1)  # (B, V) most probable first
        cumulative = xp.cumsum(desc, axis=-1)  # (B, V)
        before = xp.concatenate([xp.zeros_like(cumulative[:, :1]), cumulative[:, :-1]], axis=-1)  # (B, V)
        # before[i]: the probability of the tokens ahead of token i. It is kept while that is still below p,
        # so the first always is (0 < p)
        n_keep = (before < top_p).sum(axis=-1, keepdims=True)  # (B, 1)
        smallest_kept = xp.take_along_axis(desc, n_keep - 1, axis=-1)  # (B, 1)
        logits = xp.where(probs < smallest_kept, -xp.inf, logits)  # (B, V)
        probs = softmax(logits, axis=-1)  # (B, V) renormalised over the kept tokens
    return probs


def sample_next(logits, temperature=1.0, top_k=None, top_p=None, rng=None):
    """The next token of each row, (B,) int64 on the host, from the last position's logits (B, V).

    temperature 0 is greedy (argmax, no draw); otherwise one draw per row from ``rng``, a NumPy Generator
    (or a seed), over ``next_token_probs``.
    """
    check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return to_numpy(logits.argmax(axis=-1)).astype(np.int64)  # (B,)
    probs = to_numpy(next_token_probs(logits, temperature, top_k, top_p))  # (B, V) on the host
    rng = host_rng(rng)
    return np.array([rng.choice(probs.shape[-1], p=row) for row in probs], dtype=np.int64)  # (B,)


def next_logits(model, ids, cache=None):
    """Logits (B, V) of the token after ``ids`` (B, N) (host integers), from the last block_size tokens.

    cache: None (recompute the window) or the KVCache of this same growing context: it holds the first
    cache.length tokens of ``ids``, and only the ones after them are run. Once N > block_size the window
    slides, every position shifts, and the cache is rebuilt from the window.
    """
    block_size = model.config.block_size
    window = ids[:, -block_size:]  # (B, min(N, block_size)) nanoGPT's crop
    if cache is None:
        return model(asarray(window))[:, -1]  # (B, V)
    N = ids.shape[1]
    if N > block_size or not 0 < cache.length < N:  # the window slid, or a fresh (or foreign) cache: prefill
        cache.reset()
        new = window  # (B, min(N, block_size))
    else:
        new = ids[:, cache.length:]  # (B, N - cache.length) the tokens the cache has not seen yet
    return model.forward_cached(asarray(new), cache)[:, -1]  # (B, V)


def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, rng=None, use_cache=True):
    """ids (B, T + max_new_tokens) int64 on the host: ``idx`` (B, T) followed by the sampled tokens.

    The model runs in eval mode (no dropout) and gets its previous mode back afterwards. rng: a NumPy
    Generator or a seed for the draws. use_cache=False recomputes the whole window every step (the reference).
    """
    check_sampling(temperature, top_k, top_p)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens}")
    idx = np.asarray(to_numpy(idx))
    if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"generate expects token ids of shape (B, T) and integer dtype, got {idx.shape} {idx.dtype}")
    B, T = idx.shape
    if T == 0:
        raise ValueError("generate needs at least one token of context (got an empty prompt)")
    rng = host_rng(rng)
    ids = np.zeros((B, T + max_new_tokens), dtype=np.int64)  # (B, T + max_new_tokens)
    ids[:, :T] = idx
    # a model with no key/value cache (a recurrent one, the tutorial's) recomputes its window every step
    cache = model.new_cache() if use_cache and hasattr(model, "new_cache") else None
    was_training = model.training
    model.eval()
    try:
        with inference():  # no backward follows: each layer drops its cache once it has run
            for n in range(T, T + max_new_tokens):
                logits = next_logits(model, ids[:, :n], cache)  # (B, V)
                ids[:, n] = sample_next(logits, temperature, top_k, top_p, rng)  # (B,)
    finally:
        model.train(was_training)
    return ids

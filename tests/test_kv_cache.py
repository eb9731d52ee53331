"""KVCache reuse across batches: a reset cache takes any batch size or dtype and still equals the full forward.

The cache's step-by-step equality with the full forward, and its refusals, are tested in test_sample.py.
"""

import numpy as np
import pytest

from layer_checks import assert_close
from minilm.backend import asarray
from minilm.models import GPT, GPTConfig

# every size different: V, block, L, H, C, hs = C / H
TINY = GPTConfig(vocab_size=11, block_size=9, n_layer=2, n_head=2, n_embd=12)
HS = TINY.n_embd // TINY.n_head


def tokens(seed, b, t):
    return np.random.default_rng(seed).integers(0, TINY.vocab_size, (b, t))


def test_a_reset_cache_serves_another_batch_size_and_dtype():
    model = GPT(TINY, rng=0).to("float64").eval()
    cache = model.new_cache()
    for B in (1, 3, 2):  # a first batch, a larger one, a smaller one
        cache.reset()
        ids = tokens(B, B, 5)
        got = model.forward_cached(asarray(ids), cache)  # (B, 5, V)
        assert_close(got, model(asarray(ids)), "float64", f"batch size {B} after a reset")
        assert cache.num_elements() == 2 * TINY.n_layer * B * TINY.n_head * TINY.block_size * HS
    buffers = [(layer.k, layer.v) for layer in cache.layers]
    cache.reset()
    model.forward_cached(asarray(tokens(7, 2, 4)), cache)  # the same batch again: its buffers are reused
    assert all(layer.k is k and layer.v is v for layer, (k, v) in zip(cache.layers, buffers))
    model.to("float32")
    cache.reset()
    ids = tokens(8, 2, 6)
    got = model.forward_cached(asarray(ids), cache)
    assert got.dtype == np.float32 and all(layer.k.dtype == np.float32 for layer in cache.layers)
    assert_close(got, model(asarray(ids)), "float32", "float32 keys in a cache first filled in float64")


def test_another_batch_size_mid_sequence_names_both_sizes():
    model = GPT(TINY, rng=0).to("float64").eval()
    cache = model.new_cache()
    model.forward_cached(asarray(tokens(1, 1, 7)), cache)
    with pytest.raises(ValueError, match=r"\(B, H, hs\) = \(1, 2, 6\) for 7 positions of batch size 1, got keys "
                                         r"of shape \(2, 2, 1, 6\) \(batch size 2\); reset the cache"):
        model.forward_cached(asarray(tokens(2, 2, 1)), cache)
    assert cache.length == 7  # the refused batch left the cache as it was
    assert all(layer.keys.shape == (1, TINY.n_head, 7, HS) for layer in cache.layers)


def test_another_dtype_mid_sequence_is_refused_not_cast():
    from minilm.nn.kv_cache import LayerKV

    layer = LayerKV(6)
    layer.append(np.zeros((1, 2, 2, 3), np.float32), np.zeros((1, 2, 2, 3), np.float32))
    with pytest.raises(ValueError, match="holds float32 keys for 2 positions, got float64"):
        layer.append(np.zeros((1, 2, 1, 3)), np.zeros((1, 2, 1, 3)))

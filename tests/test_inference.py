"""The inference switch: forwards under minilm.nn.inference() keep nothing for backward, compute the same."""

import numpy as np
import pytest

from minilm import to_numpy
from minilm.models import GPT, GPTConfig
from minilm.nn import Linear, inference
from minilm.training.sampling import generate

CONFIG = GPTConfig(vocab_size=13, block_size=9, n_layer=2, n_head=2, n_embd=8, dropout=0.1)


def kept_arrays(model):
    """(module name, attribute) of every cache a module still holds."""
    return [(name, attr) for name, module in model.named_modules() for attr in type(module).kept
            if attr in vars(module)]


def test_a_forward_under_it_gives_the_same_logits_and_keeps_nothing():
    model = GPT(CONFIG, rng=0).eval()
    ids = np.random.default_rng(1).integers(0, 13, (3, 7))
    expected = to_numpy(model(ids))
    assert len(kept_arrays(model)) > 10  # a normal forward keeps every layer's cache
    with inference():
        got = to_numpy(model(ids))
    np.testing.assert_array_equal(got, expected)
    assert kept_arrays(model) == []


def test_backward_after_it_is_a_clear_error_and_a_normal_forward_restores_training():
    model = GPT(CONFIG, rng=0)
    ids = np.random.default_rng(1).integers(0, 13, (2, 5))
    with inference():
        logits = model.eval()(ids)
    with pytest.raises(RuntimeError, match=r"Linear.backward needs 'x'.*inference\(\)"):
        model.backward(np.ones_like(logits))
    model.train()
    logits = model(ids)  # outside the switch: everything kept again
    assert model.backward(np.ones_like(logits)) is None and model.wte.weight.grad is not None


def test_it_nests_and_restores_and_other_attributes_still_raise_attribute_error():
    layer = Linear(3, 2, rng=0)
    with inference():
        with inference():
            layer(np.ones((1, 3), np.float32))
        layer(np.ones((1, 3), np.float32))
        assert "x" not in vars(layer)
    layer(np.ones((1, 3), np.float32))
    assert "x" in vars(layer)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        layer.nothing


def test_sampling_runs_under_it():
    model = GPT(CONFIG, rng=0)
    ids = generate(model, np.zeros((1, 1), np.int64), 5, rng=0)
    assert ids.shape == (1, 6) and kept_arrays(model) == [] and model.training


def test_attention_weights_are_kept_under_it_only_when_asked_for():
    model = GPT(CONFIG, rng=0).eval()
    ids = np.zeros((1, 5), np.int64)
    with inference():
        model(ids)
    assert all(block.attn.attention_weights is None for block in model.h)  # L (B, H, T, T) arrays let go
    model.h[0].attn.need_weights = True
    with inference():
        model(ids)
    assert model.h[0].attn.attention_weights.shape == (1, 2, 5, 5) and model.h[1].attn.attention_weights is None


def test_hasattr_is_false_for_a_cache_that_was_not_kept():
    layer = Linear(3, 2, rng=0)
    assert not hasattr(layer, "x") and getattr(layer, "x", None) is None

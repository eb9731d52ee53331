"""minilm.training.memory: the parameter count from a config alone, and the refusal of runs that cannot fit."""

import itertools

import pytest

from minilm.training import memory
from minilm.training.memory import batch_bytes, check_memory, parameter_count, readable_bytes
from minilm.models import GPT, GPTConfig


@pytest.mark.parametrize("bias, pos, norm, tie", itertools.product([True, False], ["learned", "sinusoidal"],
                                                                    ["pre", "post"], [True, False]))
def test_parameter_count_equals_the_built_model(bias, pos, norm, tie):
    config = GPTConfig(vocab_size=37, block_size=11, n_layer=2, n_head=3, n_embd=12, bias=bias, pos=pos, norm=norm,
                       tie_weights=tie)
    assert parameter_count(config) == GPT(config, rng=0).num_params()


def test_attention_weights_dominate_at_long_context_unless_recomputed():
    config = GPTConfig(vocab_size=65, block_size=1024, n_layer=4, n_head=4, n_embd=128)
    kept, recomputed = batch_bytes(config, 12, 1024), batch_bytes(config, 12, 1024, keep_attention=False)
    assert kept - recomputed == 4 * 3 * 12 * 4 * 1024 * 1024  # three more layers' (B, H, T, T) float32


def test_a_run_that_cannot_fit_is_refused_with_its_figures():
    check_memory(GPTConfig(), batch_size=12, block_size=64)  # the CPU preset fits anywhere
    with pytest.raises(ValueError, match=r"698\.5 TiB for the float32 weights.* 48,000,183,000,000 parameters"):
        check_memory(GPTConfig(n_embd=1_000_000, n_head=1))
    with pytest.raises(ValueError, match=r"TiB for one batch's logits and attention weights"):
        check_memory(GPTConfig(block_size=100_000), batch_size=12, block_size=100_000)


def test_readable_bytes():
    assert [readable_bytes(n) for n in (10, 1536, 3 * 2**30, 2**41)] == ["10.0 B", "1.5 KiB", "3.0 GiB", "2.0 TiB"]


def test_each_thread_beyond_the_first_adds_a_gradient(monkeypatch):
    config = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)
    n, batch = parameter_count(config), batch_bytes(config, 12, 64)
    monkeypatch.setattr(memory, "device_memory_bytes", lambda: 16 * n + batch + 4 * n)  # room for one more gradient
    check_memory(config, 12, 64, threads=2)
    with pytest.raises(ValueError, match=r"float32 weights, gradients \(3: one per --threads replica\) and AdamW"):
        check_memory(config, 12, 64, threads=3)

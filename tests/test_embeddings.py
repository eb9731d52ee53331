"""Embeddings (token + position [+ segment] [+ LayerNorm] + dropout): finite differences, torch, the GPT's names."""

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from layer_checks import assert_gradcheck, assert_matches_torch, randn
from minilm import to_numpy
from minilm.models import GPT, GPTConfig
from minilm.nn import Embeddings

B, T, C, V, MAX_LEN, TYPES = 2, 5, 6, 11, 9, 3  # every size different
FORMS = [dict(pos="learned"), dict(pos="sinusoidal"), dict(pos="learned", type_vocab_size=TYPES, layer_norm=True)]


def ids(rng, high=V, b=B, t=T):
    return rng.integers(0, high, (b, t))


def varied(layer, rng):
    """Random LayerNorm weights (ones and zeros would hide a missing term) on top of the N(0, 1) tables."""
    if layer.ln is not None:
        layer.ln.weight.data = randn(rng, C, scale=0.5) + 1.0
        layer.ln.bias.data = randn(rng, C, scale=0.5)
    return layer


def gradcheck_tables(rng, **kwargs):
    """Embeddings take integer ids, so finite differences check the tables (through a float64 fake loss)."""
    return assert_gradcheck(varied(Embeddings(V, C, MAX_LEN, rng=rng, **kwargs), rng), ids(rng), **
                            ({"token_type_ids": ids(rng, TYPES)} if kwargs.get("type_vocab_size") else {}))


@pytest.mark.parametrize("form", FORMS, ids=["learned", "sinusoidal", "segments+layernorm"])
def test_gradcheck(form):
    rng = np.random.default_rng(0)
    report = gradcheck_tables(rng, **form)
    assert set(report.errors) >= {"wte.weight"}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("form", FORMS, ids=["learned", "sinusoidal", "segments+layernorm"])
def test_matches_torch(form, dtype):
    rng = np.random.default_rng(1)
    layer = varied(Embeddings(V, C, MAX_LEN, rng=rng, **form), rng)
    kwargs = {"token_type_ids": ids(rng, TYPES)} if form.get("type_vocab_size") else {}
    assert_matches_torch(layer, ids(rng), dtype=dtype, **kwargs)


@given(b=st.integers(1, 3), t=st.integers(1, MAX_LEN), start=st.integers(0, MAX_LEN - 1),
       pos=st.sampled_from(["learned", "sinusoidal"]), seed=st.integers(0, 2**16))
@example(b=1, t=1, start=MAX_LEN - 1, pos="sinusoidal", seed=0)
def test_a_start_offset_is_the_matching_slice_of_the_full_sequence(b, t, start, pos, seed):
    """What a key/value cache relies on: tokens at positions start ... start + t - 1 embed as they would in a
    sequence that had the tokens before them."""
    if start + t > MAX_LEN:
        start = MAX_LEN - t
    rng = np.random.default_rng(seed)
    layer = Embeddings(V, C, MAX_LEN, pos=pos, rng=rng).to("float64")
    full = ids(rng, b=b, t=start + t)
    np.testing.assert_array_equal(to_numpy(layer(full[:, start:], start=start)), to_numpy(layer(full))[:, start:])


def test_too_long_and_segments_without_a_table_are_named():
    layer = Embeddings(V, C, MAX_LEN, rng=0)
    with pytest.raises(ValueError, match="sequence length 10 exceeds block_size 9"):
        layer(np.zeros((1, 4), np.int64), start=6)
    with pytest.raises(ValueError, match="no segment table"):
        layer(np.zeros((1, 4), np.int64), token_type_ids=np.zeros((1, 4), np.int64))


def test_the_gpt_uses_it_under_gpt2_names():
    model = GPT(GPTConfig(vocab_size=V, block_size=MAX_LEN, n_layer=1, n_head=2, n_embd=C), rng=0)
    names = [name for name, _ in model.named_parameters()]
    assert names[:2] == ["wte.weight", "wpe.weight"] and not any("embeddings" in name for name in names)
    assert model.wte is model._embeddings.wte and model.drop is model._embeddings.drop


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_padding_idx_matches_torch_through_the_layer_norm(dtype):
    """BERT's form with padding_idx: the [PAD] row is 0 at init, and its gradient stays 0 though LayerNorm mixes
    every channel of every position, as in torch.nn.Embedding(padding_idx=...)."""
    rng = np.random.default_rng(2)
    pad = 3
    layer = varied(Embeddings(V, C, MAX_LEN, type_vocab_size=TYPES, layer_norm=True, padding_idx=pad, rng=rng), rng)
    assert not to_numpy(layer.wte.weight.data)[pad].any() and layer.wte.padding_idx == pad
    tokens = ids(rng)
    tokens[:, -2:] = pad  # trailing padding in both sequences
    pairs = assert_matches_torch(layer, tokens, dtype=dtype, token_type_ids=ids(rng, TYPES))
    ours, theirs = pairs["dwte.weight"]
    assert not ours[pad].any() and not theirs[pad].any() and ours.any()


def test_padding_idx_changes_only_the_pad_row_of_the_gradient():
    rng = np.random.default_rng(3)
    plain = Embeddings(V, C, MAX_LEN, layer_norm=True, rng=0).to("float64")
    padded = Embeddings(V, C, MAX_LEN, layer_norm=True, padding_idx=0, rng=0).to("float64")
    plain.wte.weight.data[0] = 0  # the same table, so the forwards are equal
    tokens, dx = ids(rng), randn(rng, B, T, C)
    tokens[0, 0] = 0
    for layer in (plain, padded):
        layer(tokens)
        layer.backward(dx)
    ours, expected = to_numpy(padded.wte.weight.grad), to_numpy(plain.wte.weight.grad)
    assert not ours[0].any() and expected[0].any()
    np.testing.assert_array_equal(ours[1:], expected[1:])
    np.testing.assert_array_equal(to_numpy(padded.wpe.weight.grad), to_numpy(plain.wpe.weight.grad))

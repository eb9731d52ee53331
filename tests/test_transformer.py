import numpy as np
import pytest
import torch
from hypothesis import assume, example, given
from hypothesis import strategies as st

from layer_checks import assert_close, assert_gradcheck, assert_matches_torch, randn
from minilm import nn, to_numpy
from minilm.backend import asarray
from minilm.verify.tolerances import GRADCHECK

B, T, C, H, D_FF = 2, 5, 12, 3, 20  # hs = 4: B, T, C, H, hs, d_ff all different
TK = 7  # the memory's length for a decoder layer: B, T, TK, C, H, hs, d_ff all different


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("causal", [True, False])
def test_gradcheck(norm, causal):
    rng = np.random.default_rng(0)
    block = nn.TransformerBlock(C, H, D_FF, norm=norm, causal=causal, rng=rng)
    # a block is already a small model: see tolerances.GRADCHECK["model"]
    assert_gradcheck(block, randn(rng, B, T, C), tol=GRADCHECK["model"])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_torch(dtype, norm, bias):
    rng = np.random.default_rng(1)
    block = nn.TransformerBlock(C, H, D_FF, norm=norm, bias=bias, rng=rng)
    assert_matches_torch(block, randn(rng, B, T, C), dtype=dtype)


@given(b=st.integers(1, 3), t=st.integers(1, 6), h=st.integers(1, 3), hs=st.integers(1, 4),
       norm=st.sampled_from(["pre", "post"]), seed=st.integers(0, 2**16))
def test_matches_torch_any_shape(b, t, h, hs, norm, seed):
    # LayerNorm over C <= 2 channels is degenerate (xhat = 0 or ±1, so gradients through it are pure
    # cancellation residue); test_normalization pins those cases exactly
    assume(h * hs >= 3)
    rng = np.random.default_rng(seed)
    block = nn.TransformerBlock(h * hs, h, 2 * h * hs + 1, norm=norm, rng=rng)
    assert_matches_torch(block, randn(rng, b, t, h * hs), dtype="float64")


def test_causal_block_output_ignores_the_future():
    rng = np.random.default_rng(3)
    block = nn.TransformerBlock(C, H, D_FF, rng=rng).to("float64")
    x = randn(rng, B, T, C)
    changed = to_numpy(x).copy()
    changed[:, -1] += 1.0
    np.testing.assert_array_equal(to_numpy(block(x))[:, :-1], to_numpy(block(changed))[:, :-1])


def test_pre_ln_keeps_an_identity_path():
    """With every sublayer's output projection zeroed, a pre-LN block is the identity; post-LN is not."""
    rng = np.random.default_rng(4)
    x = randn(rng, B, T, C)
    for norm, identity in (("pre", True), ("post", False)):
        block = nn.TransformerBlock(C, H, D_FF, norm=norm, rng=rng).to("float64")
        for p in (block.attn.out_proj.weight, block.attn.out_proj.bias, block.mlp.c_proj.weight, block.mlp.c_proj.bias):
            p.data[...] = 0
        assert np.allclose(to_numpy(block(x)), to_numpy(x)) == identity


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown norm 'mid'"):
        nn.TransformerBlock(C, H, D_FF, norm="mid")
    with pytest.raises(ValueError, match="12.*5|5.*12"):
        nn.TransformerBlock(C, 5, D_FF)


# --- masks through the block ------------------------------------------------------------------------------

def padding(b, t):
    """bool (b, t), True = padded: the last sequence's second half. Key 0 stays visible to every query."""
    padded = np.zeros((b, t), dtype=bool)
    padded[-1, t // 2 + 1:] = True
    return asarray(padded)


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_key_padding_mask_reaches_the_attention(norm):
    rng = np.random.default_rng(5)
    block = nn.TransformerBlock(C, H, D_FF, norm=norm, causal=False, rng=rng)
    x = randn(rng, B, T, C)
    assert_gradcheck(block, x, key_padding_mask=padding(B, T), tol=GRADCHECK["model"])
    assert_matches_torch(block, x, key_padding_mask=padding(B, T))
    changed = to_numpy(x).copy()
    changed[-1, T // 2 + 1:] += 1.0  # the padded positions of the last sequence
    unpadded = to_numpy(block(asarray(changed), key_padding_mask=padding(B, T)))[-1, : T // 2 + 1]
    # equal up to rounding: softmax subtracts one shift for the whole score array (minilm.backend.softmax_shift)
    assert_close(unpadded, to_numpy(block(x, key_padding_mask=padding(B, T)))[-1, : T // 2 + 1], "float64", "unpadded")


# --- the decoder layer: causal self-attention, cross-attention to the memory, feed-forward -----------------

def decoder(rng, norm, activation="gelu", bias=True, d_model=C, n_heads=H, d_ff=D_FF):
    """A decoder layer whose LayerNorms and biases are off their init (ones and zeros would hide a missing term).
    GELU unless asked: finite differences across ReLU's kink measure the kink (torch's default relu is compared)."""
    block = nn.TransformerBlock(d_model, n_heads, d_ff, norm=norm, cross_attention=True, activation=activation,
                                bias=bias, rng=rng)
    for name, param in block.named_parameters():
        if param.data.ndim == 1:
            param.data = param.data + asarray(0.1 * rng.standard_normal(param.shape), dtype=param.data.dtype)
    return block


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("masked", [False, True])
def test_decoder_layer_gradcheck(norm, masked):
    rng = np.random.default_rng(6)
    masks = dict(key_padding_mask=padding(B, T), memory_key_padding_mask=padding(B, TK)) if masked else {}
    report = assert_gradcheck(decoder(rng, norm), randn(rng, B, T, C), randn(rng, B, TK, C), tol=GRADCHECK["model"],
                              **masks)
    assert {"x", "memory", "crossattention.in_proj_weight", "ln_cross_attn.weight"} <= set(report.errors)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("activation,bias", [("relu", True), ("gelu_exact", True), ("gelu", False)])
def test_decoder_layer_matches_torch_decoder_layer(dtype, norm, activation, bias):
    """Against torch.nn.TransformerDecoderLayer(batch_first=True, norm_first=norm == "pre") with the weights
    copied across by TransformerBlock.torch_parameter_names's map: output, dx, dmemory and every parameter."""
    rng = np.random.default_rng(7)
    pairs = assert_matches_torch(decoder(rng, norm, activation, bias), randn(rng, B, T, C), randn(rng, B, TK, C),
                                 dtype=dtype, key_padding_mask=padding(B, T), memory_key_padding_mask=padding(B, TK))
    assert pairs["dinput1"][0].shape == (B, TK, C)  # the memory's gradient was compared


@given(b=st.integers(1, 3), t=st.integers(1, 5), tk=st.integers(1, 5), h=st.integers(1, 3), hs=st.integers(1, 3),
       norm=st.sampled_from(["pre", "post"]), seed=st.integers(0, 2**16))
@example(b=1, t=1, tk=1, h=1, hs=3, norm="post", seed=0)  # the edges; C = 3 (see test_matches_torch_any_shape)
def test_decoder_layer_any_shape(b, t, tk, h, hs, norm, seed):
    assume(h * hs >= 3)  # LayerNorm over C <= 2 channels is degenerate (test_matches_torch_any_shape)
    rng = np.random.default_rng(seed)
    block = decoder(rng, norm, d_model=h * hs, n_heads=h, d_ff=2 * h * hs + 1)
    assert_matches_torch(block, randn(rng, b, t, h * hs), randn(rng, b, tk, h * hs), dtype="float64")


def test_decoder_output_ignores_the_future_but_not_the_memory():
    rng = np.random.default_rng(8)
    block = decoder(rng, "post").to("float64")
    x, memory = randn(rng, B, T, C), randn(rng, B, TK, C)
    later, moved = to_numpy(x).copy(), to_numpy(memory).copy()
    later[:, -1] += 1.0
    moved[:, -1] += 1.0
    before = to_numpy(block(x, memory))
    assert_close(to_numpy(block(asarray(later), memory))[:, :-1], before[:, :-1], "float64", "the past")
    assert not np.allclose(to_numpy(block(x, asarray(moved)))[:, 0], before[:, 0])  # every query reads the memory


@pytest.mark.parametrize("cross_attention", [False, True])
def test_torch_parameter_names_are_torchs_layers(cross_attention):
    block = nn.TransformerBlock(C, H, D_FF, cross_attention=cross_attention)
    cls = torch.nn.TransformerDecoderLayer if cross_attention else torch.nn.TransformerEncoderLayer
    theirs = {name: tuple(p.shape) for name, p in cls(C, H, D_FF, batch_first=True).named_parameters()}
    assert {name: tuple(p.shape) for name, p in block.torch_parameter_names().items()} == theirs


def test_names_eps_and_initialisation_of_a_block_without_cross_attention_are_unchanged():
    """No cross-attention: GPT-2's names only, and the same random draws as a block that never had the option."""
    names = [name for name, _ in nn.TransformerBlock(C, H, D_FF, rng=0).named_parameters()]
    assert names[:2] == ["ln_1.weight", "ln_1.bias"] and not any("cross" in name for name in names)
    block = nn.TransformerBlock(C, H, D_FF, layer_norm_eps=1e-6, rng=0)
    assert block.ln_1.eps == block.ln_2.eps == 1e-6
    with_cross = nn.TransformerBlock(C, H, D_FF, cross_attention=True, layer_norm_eps=1e-6, rng=0)
    assert with_cross.ln_cross_attn.eps == 1e-6
    np.testing.assert_array_equal(to_numpy(block.attn.in_proj_weight.data),
                                  to_numpy(with_cross.attn.in_proj_weight.data))


def test_memory_where_the_block_has_no_place_for_it_is_named():
    rng = np.random.default_rng(9)
    x, memory = randn(rng, B, T, C), randn(rng, B, TK, C)
    with pytest.raises(ValueError, match="memory given to a block built without cross_attention"):
        nn.TransformerBlock(C, H, D_FF, rng=rng)(x, memory)
    with pytest.raises(ValueError, match="a decoder layer .* needs memory"):
        nn.TransformerBlock(C, H, D_FF, cross_attention=True, rng=rng)(x)

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from layer_checks import assert_gradcheck, assert_matches_torch, randn
from minilm import nn, to_numpy
from minilm.tolerances import GRADCHECK

B, T, C, H, D_FF = 2, 5, 12, 3, 20  # hs = 4: B, T, C, H, hs, d_ff all different


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

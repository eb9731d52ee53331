import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from layer_checks import assert_gradcheck, assert_matches_torch, randn
from minilm import nn

B, T, C, D_FF = 2, 3, 5, 7  # all different: a transposed weight gradient cannot hide


@pytest.mark.parametrize("activation", ["gelu", "gelu_exact", "relu"])
def test_gradcheck(activation):
    rng = np.random.default_rng(0)
    # ReLU is exact away from its kink; with random weights no pre-activation lands within h of 0
    assert_gradcheck(nn.FeedForward(C, D_FF, activation=activation, rng=rng), randn(rng, B, T, C))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", ["gelu", "gelu_exact", "relu"])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_torch(dtype, activation, bias):
    rng = np.random.default_rng(1)
    ffn = nn.FeedForward(C, D_FF, activation=activation, bias=bias, rng=rng)
    assert_matches_torch(ffn, randn(rng, B, T, C), dtype=dtype)


@given(lead=st.lists(st.integers(1, 3), min_size=1, max_size=3), c=st.integers(1, 8),
       d_ff=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_matches_torch_any_shape(lead, c, d_ff, seed):
    rng = np.random.default_rng(seed)
    assert_matches_torch(nn.FeedForward(c, d_ff, rng=rng), randn(rng, *lead, c), dtype="float64")


def test_dropout_acts_only_in_training():
    rng = np.random.default_rng(2)
    ffn = nn.FeedForward(C, D_FF, dropout=0.5, rng=rng).to("float64")
    x = randn(rng, B, T, C)
    eval_out = ffn.eval()(x)
    assert np.array_equal(np.asarray(ffn(x)), np.asarray(eval_out))
    assert not np.allclose(np.asarray(ffn.train()(x)), np.asarray(eval_out))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        nn.FeedForward(C, D_FF, activation="tanh")
    with pytest.raises(ValueError, match=f"expected last dim {C}, got 4"):
        nn.FeedForward(C, D_FF)(randn(np.random.default_rng(0), B, T, 4))

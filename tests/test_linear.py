import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from layer_checks import assert_gradcheck, assert_matches_torch, randn
from minilm import nn, to_numpy

B, T, C_IN, C_OUT = 2, 3, 5, 4  # all different, so a transposed gradient cannot hide behind a square shape


@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck(bias):
    rng = np.random.default_rng(0)
    layer = nn.Linear(C_IN, C_OUT, bias=bias, rng=rng)
    assert_gradcheck(layer, randn(rng, B, T, C_IN))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_torch(dtype, bias):
    rng = np.random.default_rng(1)
    layer = nn.Linear(C_IN, C_OUT, bias=bias, rng=rng)
    assert_matches_torch(layer, randn(rng, B, T, C_IN), dtype=dtype)


@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=3),
       c_in=st.integers(1, 9), c_out=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_matches_torch_any_shape(lead, c_in, c_out, seed):
    rng = np.random.default_rng(seed)
    layer = nn.Linear(c_in, c_out, rng=rng)
    assert_matches_torch(layer, randn(rng, *lead, c_in), dtype="float64")


def test_gradients_accumulate_across_backward_calls():
    rng = np.random.default_rng(2)
    layer = nn.Linear(C_IN, C_OUT, rng=rng).to("float64")
    x, dy = randn(rng, B, T, C_IN), randn(rng, B, T, C_OUT)
    layer(x)
    layer.backward(dy)
    once = layer.weight.grad.copy()
    layer(x)
    layer.backward(dy)
    np.testing.assert_allclose(to_numpy(layer.weight.grad), 2 * to_numpy(once), rtol=1e-12)


def test_wrong_last_dim_is_named():
    layer = nn.Linear(C_IN, C_OUT)
    with pytest.raises(ValueError, match=f"expected last dim {C_IN}, got 7"):
        layer(randn(np.random.default_rng(0), B, T, 7))


def test_computes_in_float32_by_default():
    layer = nn.Linear(C_IN, C_OUT)
    y = layer(randn(np.random.default_rng(0), B, T, C_IN, dtype=np.float32))
    assert layer.weight.data.dtype == np.float32 and y.dtype == np.float32

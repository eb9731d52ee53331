import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from layer_checks import assert_gradcheck, assert_matches_torch, randn
from minilm import to_numpy
from minilm.verify.gradcheck import check_module
from minilm.nn.positional import SinusoidalPositionalEncoding
from minilm.verify.tolerances import GRADCHECK, TORCH

B, T, C, MAX_LEN = 2, 5, 6, 9  # all different; T < MAX_LEN so the slice PE[:T] matters

EXACT64 = dict(rtol=TORCH["float64"]["rtol"], atol=TORCH["float64"]["atol"])  # table entries are O(1)


@pytest.mark.parametrize("d_model", [C, 7])  # even, and odd (the last cos column dropped)
def test_gradcheck(d_model):
    rng = np.random.default_rng(0)
    layer = SinusoidalPositionalEncoding(MAX_LEN, d_model)
    report = assert_gradcheck(layer, randn(rng, B, T, d_model))
    assert set(report.errors) == {"x"}  # no parameters: the table is a constant


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("d_model", [C, 7])
def test_matches_torch(dtype, d_model):
    rng = np.random.default_rng(1)
    layer = SinusoidalPositionalEncoding(MAX_LEN, d_model)
    assert_matches_torch(layer, randn(rng, B, T, d_model), dtype=dtype)


@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=3), t=st.integers(1, 12),
       d_model=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_matches_torch_any_shape(lead, t, d_model, seed):
    # lead = [] is a single (T, C) sequence; T = 1; T = max_len; odd d_model including 1 (a lone sin column)
    rng = np.random.default_rng(seed)
    layer = SinusoidalPositionalEncoding(12, d_model)
    pairs = assert_matches_torch(layer, randn(rng, *lead, t, d_model), dtype="float64")
    assert pairs["out"][0].shape == (*lead, t, d_model)


def test_table_matches_the_formula():
    d = 7
    pe = to_numpy(SinusoidalPositionalEncoding(MAX_LEN, d).pe)
    assert pe.shape == (MAX_LEN, d) and pe.dtype == np.float64
    expected = np.zeros((MAX_LEN, d))
    for pos in range(MAX_LEN):
        for j in range(d):
            i = j // 2
            angle = pos / 10000 ** (2 * i / d)
            expected[pos, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    np.testing.assert_allclose(pe, expected, **EXACT64)
    np.testing.assert_array_equal(pe[0], [0, 1, 0, 1, 0, 1, 0])  # position 0: sin 0 = 0, cos 0 = 1


@pytest.mark.parametrize("d_model", [8, 9])
@pytest.mark.parametrize("k", [1, 3, 17])
def test_an_offset_is_a_fixed_rotation_in_each_plane(d_model, k):
    """PE(pos + k) = R_k PE(pos) for every pos, with R_k block-diagonal: one 2x2 rotation per (sin, cos) pair.

    R_k is not built from the formula: it is fitted by least squares from the table alone, so the test checks
    that *some* single linear map moves every position k ahead, and that the map is a rotation by k·ω_i.
    """
    pe = to_numpy(SinusoidalPositionalEncoding(64, d_model).pe)
    here, ahead = pe[:-k], pe[k:]  # (64 - k, C) each
    for i in range(d_model // 2):
        plane = slice(2 * i, 2 * i + 2)
        R, *_ = np.linalg.lstsq(here[:, plane], ahead[:, plane], rcond=None)  # ahead ≈ here @ R
        np.testing.assert_allclose(here[:, plane] @ R, ahead[:, plane], **EXACT64)  # one map for every pos
        np.testing.assert_allclose(R.T @ R, np.eye(2), **EXACT64)  # orthogonal ...
        np.testing.assert_allclose(np.linalg.det(R), 1.0, **EXACT64)  # ... with det 1: a rotation
        theta = k / 10000 ** (2 * i / d_model)
        # row vectors: [s', c'] = [s, c] @ R with R = [[cos θ, -sin θ], [sin θ, cos θ]]
        np.testing.assert_allclose(R, [[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]],
                                   **EXACT64)


def test_backward_is_the_identity():
    rng = np.random.default_rng(2)
    layer = SinusoidalPositionalEncoding(MAX_LEN, C)
    layer(randn(rng, B, T, C))
    dy = randn(rng, B, T, C)
    np.testing.assert_array_equal(to_numpy(layer.backward(dy)), to_numpy(dy))


class ScaledBackward(SinusoidalPositionalEncoding):
    """A planted bug: a backward that scales the gradient (as if PE multiplied x)."""

    def backward(self, dy):
        return dy * self.pe[: dy.shape[-2]]


def test_planted_wrong_backward_is_caught():
    layer = ScaledBackward(MAX_LEN, C)
    report = check_module(layer, randn(np.random.default_rng(3), B, T, C))
    assert not report.passed(GRADCHECK["smooth"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_keeps_input_dtype(dtype):
    layer = SinusoidalPositionalEncoding(MAX_LEN, C)
    x = randn(np.random.default_rng(4), B, T, C, dtype=dtype)
    y = layer(x)
    assert y.dtype == dtype and layer.backward(x).dtype == dtype
    assert layer.pe.dtype == np.float64  # the table itself stays float64
    expected = to_numpy(x) + to_numpy(layer.pe)[:T].astype(dtype)
    np.testing.assert_array_equal(to_numpy(y), expected)


def test_sequence_longer_than_max_len_is_named():
    layer = SinusoidalPositionalEncoding(256, 4)
    with pytest.raises(ValueError, match="sequence length 300 exceeds max_len 256"):
        layer(randn(np.random.default_rng(5), 1, 300, 4))


def test_wrong_last_dim_is_named():
    layer = SinusoidalPositionalEncoding(MAX_LEN, 8)
    with pytest.raises(ValueError, match="expected last dim 8, got 6"):
        layer(randn(np.random.default_rng(6), B, T, 6))


def test_missing_time_axis_is_named():
    layer = SinusoidalPositionalEncoding(MAX_LEN, C)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., T, C\), got shape \(6,\)"):
        layer(randn(np.random.default_rng(7), C))


def test_integer_input_is_a_type_error():
    layer = SinusoidalPositionalEncoding(MAX_LEN, C)
    with pytest.raises(TypeError, match="floating-point input, got dtype int64"):
        layer(randn(np.random.default_rng(8), B, T, C).astype(np.int64))

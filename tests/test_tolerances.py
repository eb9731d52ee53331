"""The torch comparison's rounding floor: it passes rounding noise on a zero gradient, and nothing more."""

import numpy as np
import pytest

from layer_checks import assert_close, assert_matches_torch, randn
from minilm import nn
from minilm.verify.tolerances import TORCH, ULPS, rounding_floor, torch_atol


def test_noise_on_a_zero_gradient_passes_where_a_tensor_scaled_atol_did_not():
    """The CI failure of issue 24: at T = 1 attention's dq is exactly 0 in minilm and ~1e-17 in torch."""
    ours, theirs = np.zeros(3), np.array([-1.013899e-17, -4.993890e-18, 3.311180e-19])
    largest = 1.0  # the output and dv of that comparison were of order 1
    assert TORCH["float64"]["atol"] * 1e-6 * largest < 1.1e-17  # the old floor: under one ulp of 1.0
    assert_close(ours, theirs, "float64", "dq at T = 1", largest)


def test_the_floor_is_a_few_ulps_of_the_largest_magnitude_in_its_dtype():
    assert rounding_floor("float64", 2.0) == ULPS * np.finfo(np.float64).eps * 2.0
    assert rounding_floor("float32_model", 1.0) == ULPS * np.finfo(np.float32).eps
    assert torch_atol("float64", scale=3.0, largest=5.0) == TORCH["float64"]["atol"] * 3.0  # above the floor
    assert torch_atol("float64", scale=0.0, largest=5.0) == rounding_floor("float64", 5.0)


@pytest.mark.parametrize("factor", [1.5, -1.0, 1 + 1e-4])
def test_a_wrong_gradient_that_is_legitimately_tiny_still_fails(monkeypatch, factor):
    """A Linear at weight scale 1e-9: dx = dy W is ~1e-9 of the largest tensor (dW = dyᵀ x), eight orders of
    magnitude above the floor. A backward that scales that tiny dx wrongly, even by one part in ten thousand,
    is caught; the correct backward passes."""
    rng = np.random.default_rng(0)
    layer = nn.Linear(7, 5, rng=rng)
    layer.weight.data = randn(rng, 5, 7, scale=1e-9)
    x = randn(rng, 2, 3, 7)
    pairs = assert_matches_torch(layer, x)
    dx, largest = np.abs(pairs["dinput0"][1]).max(), max(np.abs(b).max() for _, b in pairs.values())
    assert 1e-11 < dx / largest < 1e-7

    correct = nn.Linear.backward
    monkeypatch.setattr(nn.Linear, "backward", lambda self, dy: factor * correct(self, dy))
    with pytest.raises(AssertionError, match="dinput0 differs from torch"):
        assert_matches_torch(layer, x)

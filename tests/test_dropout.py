import math

import numpy as np
import pytest

from layer_checks import assert_gradcheck, assert_matches_torch, randn
from minilm import to_numpy
from minilm.backend import asarray
from minilm.verify.gradcheck import check_module
from minilm.nn.dropout import Dropout
from minilm.nn.module import Module
from minilm.verify.tolerances import GRADCHECK, TORCH

B, T, C = 2, 3, 5
N_BIG = 200_000  # elements for the statistical tests


def binomial_bound(p, n, sigmas=6):
    """|fraction dropped - p| stays under sigmas · sqrt(p(1-p)/n): the binomial std of a fraction of n draws.

    6 standard deviations: a correct Dropout fails with probability ~2e-9 per seed, and the seeds are fixed,
    so the test is deterministic; a mask drawn with the keep probability (1 - p) for p = 0.3 is off by 0.4,
    hundreds of bounds away.
    """
    return sigmas * math.sqrt(p * (1 - p) / n)


class ReseededDropout(Module):
    """Dropout whose Generator is re-seeded before every forward, so every call draws the same mask.

    check_module runs forward again for each perturbed coordinate; with a fresh mask each time the
    "function" would change under it. Fixing the mask makes dropout the linear map x -> x ⊙ mask / (1 - p).
    """

    def __init__(self, p, seed):
        self.drop = Dropout(p)
        self.seed = seed

    def forward(self, x):
        self.drop.rng = np.random.default_rng(self.seed)
        return self.drop(x)

    def backward(self, dy):
        return self.drop.backward(dy)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_gradcheck_with_a_fixed_mask(p):
    rng = np.random.default_rng(0)
    layer = ReseededDropout(p, seed=1)
    report = assert_gradcheck(layer, randn(rng, B, T, C), tol=GRADCHECK["piecewise"])
    assert set(report.errors) == {"x"}


class FreshMaskBackward(ReseededDropout):
    """A planted bug: backward draws a new mask instead of reusing the forward's."""

    def backward(self, dy):
        self.drop.forward(dy)  # draws again from the Generator, which has moved on since forward
        return self.drop.backward(dy)


def test_planted_fresh_mask_in_backward_is_caught():
    report = check_module(FreshMaskBackward(0.5, seed=1), randn(np.random.default_rng(0), B, T, C))
    assert not report.passed(GRADCHECK["piecewise"])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("p, training", [(0.5, False), (0.0, True)])
def test_matches_torch_where_deterministic(dtype, p, training):
    # with p > 0 in training the two libraries draw different masks; only the identity cases compare
    layer = Dropout(p, rng=0).train(training)
    assert_matches_torch(layer, randn(np.random.default_rng(2), B, T, C), dtype=dtype)


@pytest.mark.parametrize("p, training", [(0.5, False), (0.0, True)])
def test_eval_and_p_zero_are_the_identity(p, training):
    rng = np.random.default_rng(3)
    layer = Dropout(p, rng=0).train(training)
    x, dy = randn(rng, B, T, C), randn(rng, B, T, C)
    np.testing.assert_array_equal(to_numpy(layer(x)), to_numpy(x))
    np.testing.assert_array_equal(to_numpy(layer.backward(dy)), to_numpy(dy))


def test_same_seed_same_mask_different_seed_different_mask():
    x = randn(np.random.default_rng(4), 4, 16, 32)
    first, again, other = (to_numpy(Dropout(0.5, rng=seed)(x)) for seed in (7, 7, 8))
    np.testing.assert_array_equal(first, again)
    assert (first != other).any()


def test_random_state_is_a_host_generator_that_round_trips_through_json():
    """What a checkpoint stores: the Generator's state as JSON; restored, the next mask is the same."""
    import json

    layer, x = Dropout(0.5, rng=3), asarray(np.ones((4, 32)))
    layer(x)  # move the Generator on from its seed
    assert isinstance(layer.rng, np.random.Generator)  # on the host whatever the backend
    saved = json.loads(json.dumps(layer.rng.bit_generator.state))
    expected = to_numpy(layer(x))
    restored = Dropout(0.5, rng=99)
    restored.rng.bit_generator.state = saved
    np.testing.assert_array_equal(to_numpy(restored(x)), expected)


def test_consecutive_calls_draw_new_masks():
    layer = Dropout(0.5, rng=0)
    x = asarray(np.ones((8, 64)))
    assert (to_numpy(layer(x)) != to_numpy(layer(x))).any()


@pytest.mark.parametrize("p", [0.1, 0.3, 0.7])
def test_fraction_dropped_is_near_p(p):
    y = to_numpy(Dropout(p, rng=5)(asarray(np.ones(N_BIG))))
    dropped = float((y == 0).mean())
    bound = binomial_bound(p, N_BIG)
    assert abs(dropped - p) < bound, f"dropped {dropped:.4f}, expected {p} ± {bound:.4f}"


@pytest.mark.parametrize("p", [0.2, 0.6])
def test_kept_values_are_scaled_so_the_mean_is_preserved(p):
    x = randn(np.random.default_rng(6), N_BIG, scale=1.0) + 3.0  # nonzero almost surely: y = 0 only if dropped
    y = to_numpy(Dropout(p, rng=7)(x))
    x = to_numpy(x)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=TORCH["float64"]["rtol"])
    # E[y] = x: on ones the mean of y is (fraction kept) / (1 - p), within the binomial bound scaled by 1/(1-p)
    ones = to_numpy(Dropout(p, rng=8)(asarray(np.ones(N_BIG))))
    assert abs(ones.mean() - 1.0) < binomial_bound(p, N_BIG) / (1 - p)


def test_backward_reuses_the_forward_mask():
    rng = np.random.default_rng(9)
    layer = Dropout(0.4, rng=10)
    x = randn(rng, B, T, C) + 5.0  # away from 0, so y / x recovers the scaled mask exactly where kept
    dy = randn(rng, B, T, C)
    y = to_numpy(layer(x))
    dx = to_numpy(layer.backward(dy))
    dx_again = to_numpy(layer.backward(dy))  # backward draws nothing: calling it twice gives the same answer
    scaled_mask = y / to_numpy(x)
    assert set(np.unique(np.round(scaled_mask, 12))) <= {0.0, round(1 / 0.6, 12)}
    np.testing.assert_allclose(dx, to_numpy(dy) * scaled_mask, rtol=TORCH["float64"]["rtol"])
    np.testing.assert_array_equal(dx, dx_again)
    np.testing.assert_array_equal(dx == 0, y == 0)  # the same positions are dropped in both directions


def test_p_one_drops_everything():
    rng = np.random.default_rng(11)
    layer = Dropout(1.0, rng=0)
    y = layer(randn(rng, B, T, C))
    dx = layer.backward(randn(rng, B, T, C))
    assert not to_numpy(y).any() and not to_numpy(dx).any()
    assert y.shape == dx.shape == (B, T, C)


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_p_outside_unit_interval_is_named(p):
    with pytest.raises(ValueError, match=f"must be in \\[0, 1\\], got {p}"):
        Dropout(p)


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_float32_in_float32_out(p):
    rng = np.random.default_rng(12)
    layer = Dropout(p, rng=0)
    y = layer(randn(rng, B, T, C, dtype=np.float32))
    dx = layer.backward(randn(rng, B, T, C, dtype=np.float32))
    assert y.dtype == np.float32 and dx.dtype == np.float32

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from layer_checks import assert_close, assert_gradcheck, assert_matches_torch, randn
from minilm import to_numpy
from minilm.backend import asarray
from minilm.verify.gradcheck import check_module
from minilm.nn.softmax import LogSoftmax, Softmax, log_softmax, log_softmax_backward, softmax, softmax_backward
from minilm.verify.tolerances import GRADCHECK, TORCH

B, T, V = 2, 3, 5  # all different: a sum over the wrong axis cannot hide
LAYERS = [Softmax, LogSoftmax]
SCALE = 3.0  # logits of a few units, as a trained model's are; softmax is then far from uniform


def reference_float64(layer_cls, x, axis=-1):
    """The forward on the host in float64, the same formula written out with NumPy (a second opinion)."""
    x = np.asarray(to_numpy(x), dtype=np.float64)
    shifted = x - x.max(axis=axis, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return np.exp(logp) if layer_cls is Softmax else logp


@pytest.mark.parametrize("axis", [-1, 1, 0])
@pytest.mark.parametrize("layer_cls", LAYERS)
def test_gradcheck(layer_cls, axis):
    rng = np.random.default_rng(0)
    assert_gradcheck(layer_cls(axis), randn(rng, B, T, V, scale=SCALE))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("layer_cls", LAYERS)
def test_matches_torch(layer_cls, axis, dtype):
    rng = np.random.default_rng(1)
    assert_matches_torch(layer_cls(axis), randn(rng, B, T, V, scale=SCALE), dtype=dtype)


def one_percent_off(layer):
    """The same layer with its backward scaled by 1.01: an example on which this passes checks nothing."""
    backward = layer.backward
    layer.backward = lambda dy: 1.01 * backward(dy)
    return layer


# The softmax axis has v ≥ 2 entries, whichever axis it is: along an axis of one entry softmax is the
# constant 1 (log-softmax 0), the gradient is exactly 0 and any multiple of it passes. The other axes keep
# sizes of 1 (a batch of 1 is an edge worth checking); the last assert shows no example is vacuous.
@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=3), v=st.integers(2, 9),
       layer_cls=st.sampled_from(LAYERS), axis_pick=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_any_shape(lead, v, layer_cls, axis_pick, seed):
    rng = np.random.default_rng(seed)
    axis = -1 - axis_pick % (len(lead) + 1)  # the last axis, or any other one
    shape = list(lead)
    shape.insert(len(shape) + 1 + axis, v)  # v entries along the softmax axis
    # unit scale here: at SCALE a two-entry row is often saturated (p ≈ 1 - 1e-5), its true gradient
    # p₀p₁(dp₀ - dp₁) ~ 1e-5, and the central differences' rounding (~1e-16 / 2h = 5e-11) is then above
    # 1e-6 of it: the element-wise check would measure rounding, not the backward
    x = randn(rng, *shape)
    assert_gradcheck(layer_cls(axis), x)
    assert_matches_torch(layer_cls(axis), x, dtype="float64")
    assert not check_module(one_percent_off(layer_cls(axis)), x).passed(GRADCHECK["smooth"])


@pytest.mark.parametrize("layer_cls", LAYERS)
def test_an_axis_of_one_entry_is_a_vacuous_check(layer_cls):
    # why test_any_shape puts v ≥ 2 entries on the softmax axis: along an axis of one, a backward 1% off passes
    x = randn(np.random.default_rng(9), B, 1, V)
    assert check_module(one_percent_off(layer_cls(axis=1)), x).max_error == 0.0


@pytest.mark.parametrize("layer_cls", LAYERS)
def test_axis_out_of_range_is_named(layer_cls):
    # NumPy says "axis 3 is out of bounds for array of dimension 2", the GPU backend "'axis' entry 3 is ..."
    with pytest.raises(ValueError, match=r"axis'? (entry )?3 is out of bounds"):
        layer_cls(axis=3)(randn(np.random.default_rng(0), T, V))


def test_softmax_rows_are_distributions_along_their_axis():
    x = randn(np.random.default_rng(2), B, T, V, scale=SCALE)
    for axis in (0, 1, 2):
        p = to_numpy(softmax(x, axis=axis))
        np.testing.assert_allclose(p.sum(axis=axis), 1.0, rtol=TORCH["float64"]["rtol"])
        assert (p > 0).all()


@pytest.mark.parametrize("layer_cls", LAYERS)
def test_float32_logits_of_1e4_stay_finite_and_correct(layer_cls):
    # exp(1e4) overflows any float; the row max subtraction is what keeps this exact
    x = randn(np.random.default_rng(3), B, T, V, dtype=np.float32, scale=1e4)
    out = to_numpy(layer_cls()(x))
    assert out.dtype == np.float32 and np.isfinite(out).all()
    ref = reference_float64(layer_cls, x)
    assert_close(out, ref, "float32", "softmax of float32 logits of 1e4")
    assert_matches_torch(layer_cls(), x, dtype="float32")  # backward too


def test_fully_masked_row_gives_zeros_and_no_nan_in_backward():
    x = np.random.default_rng(4).standard_normal((B, T, V))
    x[0, 1, :] = -np.inf  # a query with every key masked: the documented rule gives zeros
    x[1, 2, ::2] = -np.inf  # a partly masked row: a distribution over the unmasked entries
    layer = Softmax()
    p = to_numpy(layer(asarray(x)))
    dx = to_numpy(layer.backward(randn(np.random.default_rng(5), B, T, V)))
    np.testing.assert_array_equal(p[0, 1], 0.0)
    np.testing.assert_array_equal(dx[0, 1], 0.0)
    assert np.isfinite(p).all() and np.isfinite(dx).all()
    np.testing.assert_array_equal(p[1, 2, ::2], 0.0)
    np.testing.assert_allclose(p[1, 2].sum(), 1.0, rtol=1e-12)
    # and the gradient is right everywhere else, masked entries included (their true gradient is 0)
    assert_gradcheck(Softmax(), asarray(x))


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # -inf - (-inf), the NaN we document
def test_fully_masked_row_in_log_softmax_is_nan_as_in_torch():
    x = np.zeros((2, V))
    x[1] = -np.inf
    logp = to_numpy(log_softmax(asarray(x)))
    assert np.isnan(logp[1]).all()
    np.testing.assert_allclose(logp[0], -np.log(V), rtol=1e-15)


def test_softmax_backward_is_the_explicit_jacobian():
    rng = np.random.default_rng(6)
    x, dp = rng.standard_normal(4) * SCALE, rng.standard_normal(4)
    p = to_numpy(softmax(asarray(x)))
    jacobian = np.diag(p) - np.outer(p, p)  # ∂p_i/∂x_j, symmetric
    closed_form = to_numpy(softmax_backward(asarray(dp), asarray(p)))
    np.testing.assert_allclose(closed_form, jacobian @ dp, rtol=1e-12, atol=1e-15)


def test_log_softmax_backward_is_the_explicit_jacobian():
    rng = np.random.default_rng(7)
    x, dlogp = rng.standard_normal(4) * SCALE, rng.standard_normal(4)
    logp = to_numpy(log_softmax(asarray(x)))
    jacobian = np.eye(4) - np.exp(logp)[None, :]  # ∂logp_i/∂x_j = δ_ij - p_j
    closed_form = to_numpy(log_softmax_backward(asarray(dlogp), asarray(logp)))
    np.testing.assert_allclose(closed_form, jacobian.T @ dlogp, rtol=1e-12, atol=1e-15)


class SoftmaxMissingSumTerm(Softmax):
    """A planted bug: dx = p ⊙ dp, forgetting the -p Σ dp ⊙ p term of the Jacobian."""

    def backward(self, dp):
        return self.p * dp


def test_planted_wrong_softmax_backward_is_caught():
    rng = np.random.default_rng(8)
    x = randn(rng, B, T, V, scale=SCALE)
    report = check_module(SoftmaxMissingSumTerm(), x)
    # not a near miss: the missing term is as large as the one kept, so the error is of order 1
    assert report.max_error > 0.1, str(report)
    assert not report.passed(GRADCHECK["smooth"])
    assert check_module(Softmax(), x).passed(GRADCHECK["smooth"])  # the same check passes the real one


def test_a_common_shift_gives_the_same_softmax_as_the_row_max():
    from minilm.backend import GPU, backend_name, softmax_shift
    from minilm.nn.softmax import softmax_in_place

    s = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32) * 4
    shift = softmax_shift(asarray(s))
    if backend_name() == GPU:
        assert shift is None  # a max per row is cheap there, and reading the max back would stall the GPU
    else:
        assert shift == pytest.approx(float(s.max()))
    expected = to_numpy(softmax(asarray(s)))
    np.testing.assert_allclose(to_numpy(softmax_in_place(asarray(s.copy()), shift=shift)), expected, rtol=1e-6, atol=1e-7)
    spread = s.copy()
    spread[0, 0, 0, 0] = -100.0  # more than float32's safe 44 below the top: back to the row max
    assert softmax_shift(asarray(spread)) is None
    masked = s.copy()
    masked[..., -1] = -np.inf
    assert softmax_shift(asarray(masked)) is None

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from layer_checks import assert_close, assert_gradcheck, assert_matches_torch, randn
from minilm import blocks, to_numpy
from minilm.backend import CPU, asarray, backend_name
from minilm.nn import inference
from minilm.nn.activation import (GELU, ReLU, Tanh, gelu_exact, gelu_exact_grad, gelu_exact_grad_from_cdf, gelu_tanh,
                                  gelu_tanh_grad, normal_cdf)
from minilm.verify.gradcheck import check_module
from minilm.verify.tolerances import GRADCHECK

B, T, C = 2, 3, 7  # all different, as everywhere in the suite
FORMS = ["tanh", "none"]
# max |GELU_tanh(x) - GELU_exact(x)| over the real line, attained near |x| ≈ 2.7 (measured on a 1e-5 grid)
TANH_VS_EXACT_MAX = 4.74e-4


def away_from_zero(rng, *shape, margin=0.1, scale=1.0):
    """Normal data pushed at least ``margin`` away from ReLU's kink, so h = 1e-6 never straddles it."""
    z = rng.standard_normal(shape) * scale
    return asarray(z + margin * np.sign(z))


GELU_MINIMUM = -0.752  # GELU'(x) = 0 here: -0.7518 exact, -0.7525 tanh


def gelu_inputs(rng, *shape, margin=0.05):
    """Realistic pre-activations for the gradient check: N(0, 1.5²) clipped to ±3.5, kept off GELU's minimum.

    Where GELU' is tiny the element-wise relative check measures rounding, not the backward: the
    forward's absolute rounding (~1e-16 · |x|, worst in the left tail where 1 + erf(x/√2) and 1 + tanh(u)
    cancel) divided by 2h = 2e-6 is ~1e-9 absolute, which exceeds 1e-6 of a derivative below ~1e-3 —
    that is, within ~2e-3 of the minimum or below x ≈ -4. Inside these bounds |GELU'| ≥ 2e-3, so a
    correct backward passes with a wide margin; the torch comparisons use unclipped inputs.
    """
    z = np.clip(rng.standard_normal(shape) * 1.5, -3.5, 3.5)
    off = z - GELU_MINIMUM
    return asarray(np.where(np.abs(off) < margin, GELU_MINIMUM + np.copysign(margin, off), z))


def lead_shapes():
    return st.lists(st.integers(1, 3), min_size=0, max_size=3)  # () to (3, 3, 3): batch 1, T = 1, extra dims


# --- GELU --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("form", FORMS)
def test_gelu_gradcheck(form):
    rng = np.random.default_rng(0)
    report = assert_gradcheck(GELU(form), gelu_inputs(rng, B, T, C))
    assert report.shapes["x"] == (B, T, C)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("form", FORMS)
def test_gelu_matches_torch(form, dtype):
    rng = np.random.default_rng(1)
    assert_matches_torch(GELU(form), randn(rng, B, T, C, scale=2.0), dtype=dtype)


@given(lead=lead_shapes(), c=st.integers(1, 9), form=st.sampled_from(FORMS), seed=st.integers(0, 2**16))
@example(lead=[], c=1, form="tanh", seed=3)  # the audit's: dx ~1e-7 at x ~ -4, made by cancelling terms of order 1
def test_gelu_any_shape(lead, c, form, seed):
    rng = np.random.default_rng(seed)
    assert_gradcheck(GELU(form), gelu_inputs(rng, *lead, c))
    assert_matches_torch(GELU(form), randn(rng, *lead, c, scale=2.0), dtype="float64")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("where", ["bend", "tails"])
def test_gelu_exact_matches_torch_across_the_real_line(where, dtype):
    """The exact form (SciPy's erf on NumPy) against torch's, forward and backward: on a 1e-2 grid through the
    bend and both signs of 0, and apart from it in the tails, where erf is ±1 and GELU is ReLU (apart: one
    comparison's tolerance scales with its largest value, which 1e4 would loosen for the bend)."""
    if where == "bend":
        x = np.concatenate([np.linspace(-8.0, 8.0, 1601), [0.0, -0.0, 1e-300, -1e-300]])
    else:
        x = np.array([-1e4, -1e3, -40.0, -27.0, -10.0, -6.0, 6.0, 10.0, 27.0, 40.0, 1e3, 1e4])
    assert_matches_torch(GELU("none"), asarray(x), dtype=dtype)  # ±1e-300 become ±0 in float32


@pytest.mark.parametrize("bad", ["erf", "exact", None, "Tanh"])
def test_gelu_unknown_approximation_is_named(bad):
    with pytest.raises(ValueError, match=f"got {bad!r}"):
        GELU(bad)


@pytest.mark.parametrize("form", FORMS)
def test_gelu_refuses_integer_input(form):
    with pytest.raises(TypeError, match="got dtype int64"):
        GELU(form)(asarray(np.arange(6, dtype=np.int64)))


@pytest.mark.parametrize("form", FORMS)
def test_gelu_computes_in_input_dtype(form):
    layer = GELU(form)
    x = randn(np.random.default_rng(2), B, T, C, dtype=np.float32)
    y = layer(x)
    dx = layer.backward(asarray(np.ones((B, T, C), dtype=np.float32)))
    assert y.dtype == np.float32 and dx.dtype == np.float32


def test_gelu_tanh_and_exact_differ_by_a_small_bounded_amount():
    x = asarray(np.linspace(-8.0, 8.0, 160_001))  # step 1e-4
    diff = np.abs(to_numpy(GELU("tanh")(x)) - to_numpy(GELU("none")(x)))
    # bounded: never more than the stated maximum ...
    assert diff.max() <= TANH_VS_EXACT_MAX
    # ... which is attained (the two really are different functions), near |x| ≈ 2.7 ...
    assert diff.max() > 0.99 * TANH_VS_EXACT_MAX
    assert 2.6 < abs(to_numpy(x)[diff.argmax()]) < 2.8
    # ... and both tend to ReLU in the tails, so the gap closes there
    assert diff[np.abs(to_numpy(x)) > 6].max() < 1e-6


@pytest.mark.parametrize("form", FORMS)
def test_gelu_stays_finite_at_large_float32_inputs(form):
    x = asarray(np.array([-1e4, -30.0, 30.0, 1e4], dtype=np.float32))
    layer = GELU(form)
    y = to_numpy(layer(x))
    dx = to_numpy(layer.backward(asarray(np.ones(4, dtype=np.float32))))
    np.testing.assert_array_equal(y, [0.0, 0.0, 30.0, 1e4])  # exactly ReLU this far out, in both forms
    np.testing.assert_array_equal(dx, [0.0, 0.0, 1.0, 1.0])


# --- ReLU --------------------------------------------------------------------------------------------------

def test_relu_gradcheck():
    rng = np.random.default_rng(3)
    assert_gradcheck(ReLU(), away_from_zero(rng, B, T, C), tol=GRADCHECK["piecewise"])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_relu_matches_torch(dtype):
    rng = np.random.default_rng(4)
    assert_matches_torch(ReLU(), randn(rng, B, T, C), dtype=dtype)


def test_relu_gradient_at_exactly_zero_matches_torch():
    # the kink: torch takes the derivative at 0 to be 0, and so do we
    x = asarray(np.array([[-1.0, 0.0, 2.0], [0.0, 0.5, -0.0]]))
    pairs = assert_matches_torch(ReLU(), x, dtype="float64")
    ours = pairs["dinput0"][0]
    assert ours[0, 1] == 0 and ours[1, 0] == 0 and ours[1, 2] == 0


@given(lead=lead_shapes(), c=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_relu_any_shape(lead, c, seed):
    rng = np.random.default_rng(seed)
    x = away_from_zero(rng, *lead, c)
    assert_gradcheck(ReLU(), x, tol=GRADCHECK["piecewise"])
    assert_matches_torch(ReLU(), x, dtype="float64")


def test_relu_refuses_integer_input():
    with pytest.raises(TypeError, match="ReLU expects a floating-point input, got dtype int32"):
        ReLU()(asarray(np.arange(6, dtype=np.int32)))


def test_relu_computes_in_input_dtype():
    layer = ReLU()
    x = randn(np.random.default_rng(5), B, T, C, dtype=np.float32)
    y = layer(x)
    dx = layer.backward(asarray(np.ones((B, T, C), dtype=np.float32)))
    assert y.dtype == np.float32 and dx.dtype == np.float32


# --- Tanh --------------------------------------------------------------------------------------------------

def test_tanh_gradcheck():
    rng = np.random.default_rng(14)
    report = assert_gradcheck(Tanh(), randn(rng, B, T, C, scale=1.5))  # into the bend, where tanh' = 1 - y² < 1
    assert report.shapes["x"] == (B, T, C)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tanh_matches_torch(dtype):
    rng = np.random.default_rng(15)
    assert_matches_torch(Tanh(), randn(rng, B, T, C, scale=3.0), dtype=dtype)


@given(lead=lead_shapes(), c=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_tanh_any_shape(lead, c, seed):
    rng = np.random.default_rng(seed)
    x = randn(rng, *lead, c, scale=2.0)
    assert_gradcheck(Tanh(), x)
    assert_matches_torch(Tanh(), x, dtype="float64")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tanh_saturates_without_overflow(dtype):
    """tanh(±1e4) = ±1 exactly and tanh' = 1 - y² = 0 there, as torch's; no exp overflows on the way."""
    x = asarray(np.array([-1e4, -30.0, 0.0, 30.0, 1e4], dtype=dtype))
    pairs = assert_matches_torch(Tanh(), x, dtype=dtype)
    np.testing.assert_array_equal(pairs["out"][0], [-1.0, -1.0, 0.0, 1.0, 1.0])
    assert pairs["dinput0"][0][[0, 1, 3, 4]].tolist() == [0.0] * 4


def test_tanh_planted_wrong_backward_is_caught():
    """The pooler's classic slip: passing dy through as if tanh' were 1 (it is, only near 0)."""
    class Forgetful(Tanh):
        def backward(self, dy):
            return dy

    report = check_module(Forgetful(), randn(np.random.default_rng(16), B, T, C))
    assert report.errors["x"] > 0.1


def test_tanh_refuses_integer_input_and_keeps_the_dtype():
    with pytest.raises(TypeError, match="Tanh expects a floating-point input, got dtype int64"):
        Tanh()(asarray(np.arange(6, dtype=np.int64)))
    layer = Tanh()
    y = layer(randn(np.random.default_rng(17), B, T, C, dtype=np.float32))
    dx = layer.backward(asarray(np.ones((B, T, C), dtype=np.float32)))
    assert y.dtype == np.float32 and dx.dtype == np.float32


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kernel, arity", [(gelu_tanh, 1), (gelu_tanh_grad, 2), (gelu_exact, 1), (gelu_exact_grad, 2),
                                           (normal_cdf, 1), (gelu_exact_grad_from_cdf, 3)],
                         ids=["gelu_tanh", "gelu_tanh_grad", "gelu_exact", "gelu_exact_grad", "normal_cdf",
                              "gelu_exact_grad_from_cdf"])
@pytest.mark.parametrize("in_blocks", [False, True], ids=["whole", "by_blocks"])
def test_each_kernel_equals_its_formula_as_written(kernel, arity, dtype, in_blocks, monkeypatch):
    """NumPy: the in-place rewrite against the one-line formula. GPU: the fused kernel against the formula
    run operator by operator. Either way the same maths, so only rounding may differ; and the dtype holds.
    by_blocks: 1 KB blocks, so NumPy runs the kernel block by block here (minilm.blocks)."""
    if kernel.numpy is None and backend_name() == CPU and not in_blocks:
        pytest.skip("on NumPy this kernel is its formula itself: nothing to compare (the GPU compiles it)")
    if in_blocks:
        monkeypatch.setattr(blocks, "BLOCK_BYTES", 1024)
    rng = np.random.default_rng(13)
    arrays = [randn(rng, 4, 8, 64, dtype=dtype, scale=3.0) for _ in range(arity)]  # (B, T, 4C)-like, wide range
    got, expected = kernel(*arrays), kernel.expression(*arrays)
    assert got.dtype == np.dtype(dtype) and got.shape == expected.shape
    expected = to_numpy(expected)
    assert_close(got, expected, dtype, "the fast form against its formula")



@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_exact_form_keeps_phi_and_its_backward_equals_the_formula_that_recomputes_it(dtype):
    """The kept Φ(x) changes where erf is computed, not the answer: forward and backward against the
    one-line formulas (which call erf themselves), and Φ is dropped under inference like x."""
    rng = np.random.default_rng(5)
    x, dy = randn(rng, 3, 5, 16, dtype=dtype, scale=3.0), randn(rng, 3, 5, 16, dtype=dtype)
    layer = GELU("none")
    y = layer(x)
    assert_close(y, to_numpy(gelu_exact.expression(x)), dtype, "x Φ(x) with Φ kept")
    assert_close(layer.backward(dy), to_numpy(gelu_exact_grad.expression(x, dy)), dtype, "backward from the kept Φ")
    with inference():
        layer(x)
    assert "cdf" not in vars(layer) and "x" not in vars(layer)

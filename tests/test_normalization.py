import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from layer_checks import assert_close, assert_gradcheck, assert_matches_torch, randn
from minilm import to_numpy
from minilm.verify import reference
from minilm.backend import asarray
from minilm.verify.gradcheck import check_module
from minilm.nn.normalization import LayerNorm, layer_norm_backward_staged
from minilm.verify.tolerances import GRADCHECK, TORCH

B, T, C = 2, 3, 7  # all different, so a gradient summed over the wrong axis cannot hide behind a square shape


def make_layer(c, rng, eps=1e-5):
    """A LayerNorm with random weight and bias: ones and zeros would hide a backward that forgets w or b."""
    layer = LayerNorm(c, eps=eps)
    layer.weight.data = 1.0 + randn(rng, c, scale=0.5)  # (C,)
    layer.bias.data = randn(rng, c, scale=0.5)  # (C,)
    return layer


def make_input(rng, *shape):
    """Activations at a realistic scale, off centre, so mu and var both matter."""
    return randn(rng, *shape, scale=2.0) + 0.5


# --- finite differences and the PyTorch twin ---------------------------------------------------------------


@pytest.mark.parametrize("eps", [1e-5, 0.1])  # 0.1 is comparable to var: a misplaced eps would show
def test_gradcheck(eps):
    rng = np.random.default_rng(0)
    report = assert_gradcheck(make_layer(C, rng, eps=eps), make_input(rng, B, T, C))
    assert set(report.errors) == {"x", "weight", "bias"}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("eps", [1e-5, 0.1])
def test_matches_torch(dtype, eps):
    rng = np.random.default_rng(1)
    assert_matches_torch(make_layer(C, rng, eps=eps), make_input(rng, B, T, C), dtype=dtype)


@pytest.mark.parametrize("shape, eps", [
    ((1, 1, 5), 1e-5),  # batch 1, T = 1
    ((3, 1, 4), 1e-5),  # T = 1
    ((2, 3, 1), 1e-5),  # C = 1: y = b whatever x is, so dx = 0 exactly
    ((3, 2, 2), 0.1),  # C = 2 (why eps = 0.1: see test_any_shape)
    ((2, 4, 3, 5), 1e-5),  # an extra leading dim, (B, H, T, C)-like
    ((6,), 1e-5),  # one row
])
def test_gradcheck_edge_shapes(shape, eps):
    rng = np.random.default_rng(10)
    assert_gradcheck(make_layer(shape[-1], rng, eps=eps), make_input(rng, *shape))


@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=3), c=st.integers(1, 9), seed=st.integers(0, 2**16))
@example(lead=[1, 1], c=5, seed=0)  # batch 1, T = 1
@example(lead=[2, 1], c=1, seed=1)  # C = 1
@example(lead=[1, 3], c=2, seed=2)  # C = 2, the smallest row with a spread
@example(lead=[2, 3, 2], c=9, seed=3)  # an extra leading dim, (B, H, T, C)-like
@example(lead=[], c=3, seed=4)  # a single row of shape (C,)
def test_any_shape(lead, c, seed):
    # eps = 0.1, not 1e-5: a C = 2 row has xhat = ±√(var/(var + eps)) whatever x is, so its dx is O(eps/var),
    # what is left after O(1) terms cancel; at eps = 1e-5 that is down among their rounding errors, which
    # no tolerance relative to dx can separate from a wrong answer. eps = 1e-5 is checked at fixed shapes.
    # (Against torch, not central differences: random shapes would sooner or later put some dx element
    # near 0, where the checker's element-wise relative error measures only its own rounding.)
    rng = np.random.default_rng(seed)
    layer, x = make_layer(c, rng, eps=0.1), make_input(rng, *lead, c)
    if c > 1:
        assert_matches_torch(layer, x, dtype="float64")
        return
    # one value is its own mean: xhat = 0 exactly, so y = b and dx = dw = 0 exactly (torch's float64 dx is
    # rounding noise of ~1e-15 here, which no tolerance relative to it can compare with 0)
    y, dx = layer(x), layer.backward(randn(rng, *lead, c))
    np.testing.assert_array_equal(to_numpy(y), np.broadcast_to(to_numpy(layer.bias.data), y.shape))
    np.testing.assert_array_equal(to_numpy(dx), 0.0)
    np.testing.assert_array_equal(to_numpy(layer.weight.grad), 0.0)


def test_gradients_accumulate_across_backward_calls():
    rng = np.random.default_rng(2)
    layer = make_layer(C, rng)
    x, dy = make_input(rng, B, T, C), randn(rng, B, T, C)
    layer(x)
    layer.backward(dy)
    once = to_numpy(layer.weight.grad).copy(), to_numpy(layer.bias.grad).copy()
    layer(x)
    layer.backward(dy)
    np.testing.assert_array_equal(to_numpy(layer.weight.grad), 2 * once[0])  # a + a is exactly 2a
    np.testing.assert_array_equal(to_numpy(layer.bias.grad), 2 * once[1])


# --- the staged derivation is the closed form ----------------------------------------------------------------


@pytest.mark.parametrize("shape", [(B, T, C), (1, 1, 3), (3, 2, T, 5)])
@pytest.mark.parametrize("eps", [1e-5, 0.1])
def test_staged_backward_equals_closed_form(shape, eps):
    rng = np.random.default_rng(3)
    layer = make_layer(shape[-1], rng, eps=eps).to("float64")
    x, dy = make_input(rng, *shape), randn(rng, *shape)
    layer(x)
    dx = layer.backward(dy)
    dx_staged, dw_staged, db_staged = layer_norm_backward_staged(dy, x, layer.weight.data, eps)
    # same maths in float64, only the order of operations differs: the float64 entry's few-ulp tolerance
    assert_close(dx_staged, dx, "float64", "dx")
    assert_close(dw_staged, layer.weight.grad, "float64", "dw")
    assert_close(db_staged, layer.bias.grad, "float64", "db")


# --- numerics ------------------------------------------------------------------------------------------------


def assert_matches_float64_twin(layer, x_host, dtype):
    """``layer`` run in ``dtype`` against its torch twin run in float64 on the same values: the exact answer.

    For inputs where torch's own float32 kernel is the less accurate of the two (a large offset, where its
    mean is often one float32 spacing off; a constant row at -1e4, where its float32 dx is off by ~1%), the
    float64 twin is the reference. Tolerance: tolerances.TORCH[dtype]. Returns the minilm output.
    """
    layer.to(dtype)
    x_host = np.asarray(x_host, dtype=dtype)  # (B, T, C)
    dy_host = np.random.default_rng(0).standard_normal(x_host.shape).astype(dtype)  # (B, T, C)
    truth = reference.twin(layer, dtype=torch.float64)
    layer.zero_grad()
    y = layer(asarray(x_host))
    dx = layer.backward(asarray(dy_host))
    x_t = torch.tensor(x_host.astype(np.float64), requires_grad=True)  # (B, T, C)
    y_t = truth(x_t)
    (y_t * torch.from_numpy(dy_host.astype(np.float64))).sum().backward()
    for name, ours, theirs in [("out", y, y_t), ("dx", dx, x_t.grad), ("dweight", layer.weight.grad, truth.weight.grad),
                               ("dbias", layer.bias.grad, truth.bias.grad)]:
        assert ours.dtype == np.dtype(dtype), f"{name} computed in {ours.dtype}, not {dtype}"
        assert np.all(np.isfinite(to_numpy(ours))), f"{name} is not finite"
        assert_close(ours, theirs.detach().numpy(), dtype, name)
    return y


def test_large_offset_float32_matches_float64_twin():
    """1e4 + N(0, 1) in float32: the two-pass variance keeps full float32 accuracy.

    float32 cannot hold the mean of such a row better than its spacing near 1e4 (2^-10 ≈ 1e-3), an error
    of 1e-3 in xhat that no float32 LayerNorm avoids, torch's included (its mean is often one spacing
    off). To test the variance and not that rounding, the noise is put on a 2^-7 grid: every partial sum
    of 8 such values is then exact in float32 in any order, so mu is exact, and what remains is ordinary
    float32 rounding. The naive one-pass E[x²] - mu² on the same rows is shown to be wrong by order 1.
    """
    rng = np.random.default_rng(4)
    c = 8  # a power of two, so the mean (sum / 8) is exact too
    x_host = (1e4 + np.round(rng.standard_normal((B, T, c)) * 128) / 128).astype(np.float32)  # (B, T, C)
    assert_matches_float64_twin(make_layer(c, rng), x_host, "float32")

    x = asarray(x_host)  # (B, T, C)
    mu = x.mean(axis=-1)  # (B, T)
    var_one_pass = to_numpy((x * x).mean(axis=-1) - mu * mu)  # (B, T)
    var_true = x_host.astype(np.float64).var(axis=-1)  # (B, T)
    assert np.max(np.abs(var_one_pass - var_true) / var_true) > 0.1, "the input is too easy to test two passes"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_constant_row_gives_finite_output_and_gradients(dtype):
    rng = np.random.default_rng(5)
    x_host = rng.standard_normal((B, T, C)) * 2.0 + 0.5  # (B, T, C)
    x_host[0, 1] = 2.5  # var = 0 exactly: xhat = 0, y = b, rstd = 1/√eps
    x_host[1, 2] = -1e4
    layer = make_layer(C, rng)
    y = to_numpy(assert_matches_float64_twin(layer, x_host, dtype))
    np.testing.assert_array_equal(y[0, 1], to_numpy(layer.bias.data))
    np.testing.assert_array_equal(y[1, 2], to_numpy(layer.bias.data))


def test_constant_row_gradcheck():
    rng = np.random.default_rng(6)
    x = make_input(rng, B, T, C)
    x[1, 0] = 0.75
    assert_gradcheck(make_layer(C, rng), x)


# --- the checker catches a wrong backward --------------------------------------------------------------------


class LayerNormMissingTerm(LayerNorm):
    """A planted bug: the backward forgets that rstd depends on x (drops xhat ⊙ mean(dxhat ⊙ xhat))."""

    def backward(self, dy):
        c = self.normalized_shape
        self.weight.accumulate((dy * self.xhat).reshape(-1, c).sum(axis=0))  # (C,)
        self.bias.accumulate(dy.reshape(-1, c).sum(axis=0))  # (C,)
        dxhat = dy * self.weight.data  # (B, T, C)
        return (dxhat - dxhat.mean(axis=-1, keepdims=True)) * self.rstd  # (B, T, C)


def test_planted_wrong_backward_is_caught():
    rng = np.random.default_rng(7)
    x = make_input(rng, B, T, C)
    wrong = LayerNormMissingTerm(C)
    right = LayerNorm(C)
    for layer in (wrong, right):
        layer.weight.data, layer.bias.data = 1.0 + randn(rng, C, scale=0.5), randn(rng, C, scale=0.5)
    bad = check_module(wrong, x)
    good = check_module(right, x)
    assert not bad.passed(GRADCHECK["smooth"])
    assert bad.errors["x"] > 1e-1, f"the missing term should be an order-1 error:\n{bad}"
    assert bad.errors["weight"] < GRADCHECK["smooth"] and bad.errors["bias"] < GRADCHECK["smooth"]
    assert good.passed(GRADCHECK["smooth"]), f"the real backward should pass:\n{good}"


# --- construction, dtypes and bad input ----------------------------------------------------------------------


def test_init_matches_torch_defaults():
    layer = LayerNorm((C,))
    assert layer.normalized_shape == C and isinstance(layer.normalized_shape, int)
    assert layer.eps == 1e-5
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    np.testing.assert_array_equal(to_numpy(layer.weight.data), np.ones(C, np.float32))
    np.testing.assert_array_equal(to_numpy(layer.bias.data), np.zeros(C, np.float32))
    assert layer.weight.data.dtype == np.float32 and layer.bias.data.dtype == np.float32


def test_computes_in_float32_by_default():
    rng = np.random.default_rng(8)
    layer = LayerNorm(C)
    x = make_input(rng, B, T, C).astype(np.float32)  # (B, T, C)
    y = layer(x)
    dx = layer.backward(randn(rng, B, T, C, dtype=np.float32))
    assert y.dtype == np.float32 and dx.dtype == np.float32 and layer.weight.grad.dtype == np.float32
    # with w = 1, b = 0 every row comes out with mean 0 and variance var / (var + eps), just under 1
    var = to_numpy(x).astype(np.float64).var(axis=-1)  # (B, T)
    y64 = to_numpy(y).astype(np.float64)  # (B, T, C)
    np.testing.assert_allclose(y64.mean(axis=-1), 0.0, atol=TORCH["float32"]["atol"])
    np.testing.assert_allclose(y64.var(axis=-1), var / (var + layer.eps), rtol=TORCH["float32"]["rtol"])


def test_wrong_last_dim_is_named():
    layer = LayerNorm(128)
    with pytest.raises(ValueError, match="LayerNorm expected last dim 128, got 64"):
        layer(randn(np.random.default_rng(0), B, T, 64))


def test_scalar_input_is_named():
    with pytest.raises(ValueError, match="LayerNorm expected last dim 3, got a 0-d array"):
        LayerNorm(3)(asarray(np.float64(1.0)))


def test_integer_input_is_rejected():
    with pytest.raises(TypeError, match="floating-point input, got dtype int64"):
        LayerNorm(3)(asarray(np.arange(6, dtype=np.int64).reshape(2, 3)))


@pytest.mark.parametrize("shape, error, message", [
    (0, ValueError, "normalized_shape must be at least 1, got 0"),
    ((3, 4), ValueError, r"the last axis only: normalized_shape must be an int or a 1-tuple, got \(3, 4\)"),
    (2.5, TypeError, "normalized_shape must be an int, got 2.5"),
    (True, TypeError, "normalized_shape must be an int, got True"),
])
def test_bad_normalized_shape_is_named(shape, error, message):
    with pytest.raises(error, match=message):
        LayerNorm(shape)


@pytest.mark.parametrize("eps", [0.0, -1e-5])
def test_non_positive_eps_is_rejected(eps):
    with pytest.raises(ValueError, match=f"eps must be positive .*got {eps}"):
        LayerNorm(C, eps=eps)


def test_output_does_not_alias_cache():
    """Editing the output in place (as a residual add might) must not corrupt what backward kept."""
    rng = np.random.default_rng(9)
    layer = make_layer(C, rng)
    x, dy = make_input(rng, B, T, C), randn(rng, B, T, C)
    y = layer(x)
    expected = layer_norm_backward_staged(dy, x, layer.weight.data, layer.eps)[0]
    y += 1.0
    assert_close(layer.backward(dy), expected, "float64", "dx")

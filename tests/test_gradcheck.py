import numpy as np
import pytest

from layer_checks import randn
from minilm import nn, to_numpy
from minilm.verify.gradcheck import check_module, numerical_gradient, rel_error, stratified_coords
from minilm.backend import asarray
from minilm.verify.tolerances import GRADCHECK


def test_rel_error_is_elementwise_max_and_handles_zeros():
    assert rel_error(np.array([1.0, 0.0]), np.array([1.0, 0.0])) == 0.0
    assert rel_error(np.array([2.0, 100.0]), np.array([1.0, 100.0])) == pytest.approx(0.5)
    assert rel_error(np.array([1e-3]), np.array([0.0])) == pytest.approx(1.0)
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0


def test_rel_error_judges_near_zero_coordinates_against_the_array_scale():
    # a coordinate at 1e-6 of the largest, off by rounding noise (1e-10): noise, not a bug
    a, n = np.array([1.0, 1e-6 + 1e-10]), np.array([1.0, 1e-6])
    assert rel_error(a, n) < 1e-6
    assert rel_error(a, n, tiny=1e-12) > 1e-5  # the plain element-wise error would fail it
    # ... but the same coordinate off by 1e-4 of the scale is still caught
    assert rel_error(np.array([1.0, 1e-4]), np.array([1.0, 0.0])) > 0.09


def test_rel_error_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape mismatch"):
        rel_error(np.zeros(3), np.zeros(4))


def test_numerical_gradient_of_a_known_function():
    x = np.array([0.5, -1.5, 2.0])
    dout = np.array([1.0, 2.0, -1.0])
    grad = numerical_gradient(lambda: x**3, x, dout)
    np.testing.assert_allclose(grad, 3 * np.array([0.5, -1.5, 2.0]) ** 2 * dout, rtol=1e-8)
    np.testing.assert_array_equal(x, [0.5, -1.5, 2.0])  # restored after perturbing


class Mul(nn.Module):
    """y = a ⊙ b: two floating inputs, so the report must name both."""

    def __init__(self, swap=False):
        self.swap = swap

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, dy):
        da, db = dy * self.b, dy * self.a
        return (db, da) if self.swap else (da, db)


def test_reports_every_floating_input_by_argument_name():
    rng = np.random.default_rng(0)
    report = check_module(Mul(), randn(rng, 3, 4), randn(rng, 3, 4))
    assert set(report.errors) == {"a", "b"} and report.passed(GRADCHECK["smooth"])


def test_catches_swapped_input_gradients():
    rng = np.random.default_rng(0)
    report = check_module(Mul(swap=True), randn(rng, 3, 4), randn(rng, 3, 4))
    assert report.errors["a"] > 0.1 and report.errors["b"] > 0.1


class LinearWithMeanBias(nn.Linear):
    """A planted bug: the bias gradient averages over positions instead of summing."""

    def backward(self, dy):
        dx = super().backward(dy)
        self.bias.grad = dy.reshape(-1, self.out_features).mean(axis=0)
        return dx


def test_catches_a_planted_wrong_parameter_gradient_and_only_that_one():
    rng = np.random.default_rng(0)
    report = check_module(LinearWithMeanBias(5, 4, rng=rng), randn(rng, 2, 3, 5))
    assert report.errors["bias"] > 0.5
    assert report.errors["weight"] < GRADCHECK["smooth"] and report.errors["x"] < GRADCHECK["smooth"]
    assert not report.passed(GRADCHECK["smooth"])


def test_casts_to_float64_and_samples_coordinates():
    rng = np.random.default_rng(0)
    layer = nn.Linear(40, 30, rng=rng)
    report = check_module(layer, randn(rng, 2, 40, dtype=np.float32), max_coords=25)
    assert layer.weight.data.dtype == np.float64
    assert report.shapes["weight"] == (30, 40) and report.passed(GRADCHECK["smooth"])


def test_stratified_coords_put_one_in_every_block_of_rows_and_of_columns_whatever_the_seed():
    for seed in range(200):
        rng = np.random.default_rng(seed)
        rows, cols = np.unravel_index(stratified_coords((36, 12), 12, rng), (36, 12))  # in_proj_weight at C = 12
        assert len(rows) == 12  # distinct
        np.testing.assert_array_equal(np.bincount(rows // 3, minlength=12), 1)  # 12 blocks of 3 rows
        np.testing.assert_array_equal(np.bincount(cols, minlength=12), 1)  # 12 blocks of 1 column
        np.testing.assert_array_equal(np.bincount(stratified_coords((48,), 12, rng) // 4, minlength=12), 1)
        # fewer rows than coordinates (an embedding of 11 tokens): every row gets one, none is skipped
        rows, cols = np.unravel_index(stratified_coords((11, 12), 12, rng), (11, 12))
        assert set(rows) == set(range(11)) and set(cols) == set(range(12))
        rows, cols = np.unravel_index(stratified_coords((3, 5), 12, rng), (3, 5))  # both short: pairs may repeat
        assert set(rows) == set(range(3)) and set(cols) == set(range(5))


class LinearWrongInBlock(nn.Linear):
    """A planted bug: the weight gradient 1% off in one block of rows or columns, right elsewhere."""

    def __init__(self, block, rng):
        super().__init__(6, 18, rng=rng)  # weight (18, 6): thirds of 6 rows, thirds of 2 columns
        self.block = block

    def backward(self, dy):
        dx = super().backward(dy)
        dW = to_numpy(self.weight.grad).copy()  # (18, 6)
        dW[self.block] *= 1.01
        self.weight.grad = asarray(dW)
        return dx


@pytest.mark.parametrize("block", [np.s_[:6], np.s_[6:12], np.s_[12:], np.s_[:, :2], np.s_[:, 2:4], np.s_[:, 4:]],
                         ids=["rows 0", "rows 1", "rows 2", "columns 0", "columns 1", "columns 2"])
def test_a_bug_in_one_third_of_a_weight_is_caught_at_every_seed(block):
    # 6 independent draws from 108 coordinates would all miss a given third about 8% of the time
    for seed in range(20):
        rng = np.random.default_rng(seed)
        layer, x = LinearWrongInBlock(block, rng), randn(rng, 2, 3, 6)
        report = check_module(layer, x, seed=seed, max_coords=6, only=["weight"])
        assert report.errors["weight"] > 1e-3, f"seed {seed}: {report}"  # 1% off: 1e-2, far above rounding
        assert check_module(nn.Linear(6, 18, rng=seed), x, seed=seed, max_coords=6).passed(GRADCHECK["smooth"])


def test_only_checks_the_named_arrays_at_the_coordinates_of_a_full_check():
    rng = np.random.default_rng(0)
    layer, x = LinearWithMeanBias(40, 30, rng=rng), randn(rng, 2, 40)
    full = check_module(layer, x, seed=3, max_coords=25)
    part = check_module(layer, x, seed=3, max_coords=25, only=["bias"])
    assert part.errors == {"bias": full.errors["bias"]} and part.errors["bias"] > 0.5
    with pytest.raises(ValueError, match=r"only names \['bais'\], which LinearWithMeanBias does not have"):
        check_module(layer, x, only=["bais"])


def test_rejects_a_backward_returning_the_wrong_number_of_gradients():
    class Bad(Mul):
        def backward(self, dy):
            return dy * self.b

    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="returned 1 gradient"):
        check_module(Bad(), randn(rng, 2), randn(rng, 2))


def test_report_prints_one_row_per_item():
    rng = np.random.default_rng(0)
    text = str(check_module(nn.Linear(3, 2, rng=rng), asarray(rng.standard_normal((4, 3)))))
    assert [line.split()[0] for line in text.splitlines()] == ["x", "weight", "bias"]

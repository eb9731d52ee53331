"""minilm.blocks: an element-wise kernel run block by block gives the whole call's bits, and runs whole where
blocks would not help (small arrays) or not fit (a broadcast, a strided view)."""

import numpy as np
import pytest

from minilm import blocks
from minilm.blocks import by_blocks


def _counting(kernel):
    """``kernel`` that also counts its calls, as a list of the sizes it was called on."""
    sizes = []

    def counted(*arrays):
        sizes.append(arrays[0].size)
        return kernel(*arrays)
    return counted, sizes


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_kernel_over_a_large_array_runs_block_by_block_to_the_same_bits(dtype, monkeypatch):
    """4 KB blocks over (3, 5, 301) arrays: 5 calls (float32) or 9 (float64), the last one short, every bit the same."""
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 4096)
    rng = np.random.default_rng(3)
    x, dy = (rng.standard_normal((3, 5, 301)).astype(dtype) for _ in range(2))
    kernel, sizes = _counting(lambda x, dy: np.tanh(x) * dy + 0.5 * x)  # a float result from two arrays
    got = by_blocks(kernel, (x, dy))
    per_block = 4096 // x.itemsize
    assert sizes == [per_block] * (x.size // per_block) + [x.size % per_block]
    assert got.shape == x.shape and got.dtype == x.dtype
    np.testing.assert_array_equal(got, np.tanh(x) * dy + 0.5 * x)


@pytest.mark.parametrize("case", ["small", "shapes_differ", "strided"])
def test_a_kernel_runs_whole_where_blocks_would_not_help_or_not_fit(case, monkeypatch):
    """Up to 4 blocks, operands of different shapes (a broadcast) or a strided view: one call, the same answer."""
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 4096)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 64) if case == "small" else (64, 301)).astype(np.float32)
    other = {"small": x, "shapes_differ": x[0], "strided": x.T.copy().T}[case]
    assert case != "strided" or not other.flags.c_contiguous
    kernel, sizes = _counting(lambda a, b: a * b + 1.0)
    got = by_blocks(kernel, (x, other))
    assert len(sizes) == 1
    np.testing.assert_array_equal(got, x * other + 1.0)

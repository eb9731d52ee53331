"""The checks every layer test runs: finite differences, the PyTorch twin, and a random-shape helper."""

import numpy as np
import pytest

from minilm.backend import asarray
from minilm.gradcheck import check_module
from minilm.tolerances import GRADCHECK, TORCH


def randn(rng, *shape, dtype=np.float64, scale=1.0):
    """Standard-normal test data (times ``scale``) on the active backend."""
    return asarray((rng.standard_normal(shape) * scale).astype(dtype))


def assert_gradcheck(module, *inputs, tol=GRADCHECK["smooth"], **kwargs):
    """Every floating input's and every parameter's analytic gradient agrees with central differences."""
    report = check_module(module, *inputs, **kwargs)
    assert report.errors, "nothing was checked"
    assert report.passed(tol), f"gradient check failed (tolerance {tol:.0e}):\n{report}"
    return report


def assert_matches_torch(module, *inputs, dtype="float64", **kwargs):
    """Output, input gradients and parameter gradients equal the PyTorch twin's (tolerances.TORCH)."""
    reference = pytest.importorskip("minilm.reference")
    module.to(dtype)
    inputs = [asarray(x, dtype=dtype) if np.issubdtype(x.dtype, np.floating) else x for x in inputs]
    pairs = reference.compare(module, *inputs, **kwargs)
    tol = TORCH[dtype]
    # A gradient that is mathematically zero (attention's query/key gradients at T = 1) holds only rounding
    # noise in both libraries, so its own scale means nothing: no tensor's scale is taken below 1e-6 of
    # the largest tensor in the comparison.
    largest = max(float(np.max(np.abs(theirs), initial=0.0)) for _, theirs in pairs.values())
    for name, (ours, theirs) in pairs.items():
        assert ours.dtype == theirs.dtype, f"{name}: dtype {ours.dtype}, torch's is {theirs.dtype}"
        scale = max(float(np.max(np.abs(theirs), initial=0.0)), 1e-6 * largest)
        np.testing.assert_allclose(ours, theirs, rtol=tol["rtol"], atol=tol["atol"] * max(scale, 1e-30),
                                   err_msg=f"{type(module).__name__} {name} differs from torch ({dtype})")
    return pairs

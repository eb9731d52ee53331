"""The checks every layer test runs: finite differences, the PyTorch twin, and a random-shape helper."""

import numpy as np

from minilm.verify import reference  # torch is a hard test requirement: a missing torch fails, never skips
from minilm.backend import asarray, is_floating, to_numpy
from minilm.verify.gradcheck import check_module
from minilm.verify.tolerances import GRADCHECK, TORCH, largest_magnitude, torch_atol


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
    module.to(dtype)
    inputs = [asarray(x, dtype=dtype) if np.issubdtype(x.dtype, np.floating) else x for x in inputs]
    pairs = reference.compare(module, *inputs, **kwargs)
    # the rounding floor's scale: the largest magnitude entering (inputs, weights) or leaving the computation,
    # since a gradient that cancels to ~0 carries rounding of the size of what cancelled (tolerances.py)
    largest = largest_magnitude([theirs for _, theirs in pairs.values()] + [to_numpy(x) for x in inputs
                                if is_floating(x)] + [to_numpy(p.data) for p in module.parameters()])
    for name, (ours, theirs) in pairs.items():
        assert ours.dtype == theirs.dtype, f"{name}: dtype {ours.dtype}, torch's is {theirs.dtype}"
        assert_close(ours, theirs, dtype, f"{type(module).__name__} {name} differs from torch ({dtype})", largest)
    return pairs


def assert_close(ours, theirs, kind, what, largest=None):
    """np.testing.assert_allclose with the tolerances.TORCH[kind] rule: rtol from the table, atol scaled by the
    reference's largest magnitude and floored at a few ulps of ``largest``, the comparison's largest magnitude
    (tolerances.torch_atol says why)."""
    ours, theirs = to_numpy(ours), to_numpy(theirs)
    scale = float(np.max(np.abs(theirs), initial=0.0))
    np.testing.assert_allclose(ours, theirs, rtol=TORCH[kind]["rtol"], atol=torch_atol(kind, scale, largest),
                               err_msg=what)

"""Every tolerance minilm holds itself to, with the reason for it: one table for the tests and `minilm check`.

TORCH[kind]: minilm against its PyTorch twin on the same inputs and weights, for
    np.testing.assert_allclose(ours, torch's, rtol=rtol, atol=torch_atol(kind, max|torch's|, largest))
where torch_atol = max(atol * max|torch's|, ULPS ulps of ``largest``), ``largest`` being the largest
magnitude anywhere in the comparison: its inputs and weights, and the output and every gradient of the
reference. atol is relative to the tensor's own scale, so one table serves every scale; the ulp floor is for
tensors that cancel to (nearly) zero: attention's query gradient at T = 1 and the key bias's gradient are
zero in exact arithmetic, and GELU's derivative 0.5(1 + tanh u) + ... at x = -4 is 1e-7 made from terms of
order 1. Both libraries then hold rounding noise of a few ulps of the magnitudes that cancelled, and no
tolerance scaled by the tensor itself can judge noise. Measured: torch's dq at T = 1 was 1.9e-17 against
ours 0 (inputs of order 1), while an atol scaled by the tensor gave 1e-18, below what float64 resolves, so
a correct backward failed; GELU's dx at x = -4 differed by 2.5e-16 on a value of 9.4e-8.
A wrong backward is still caught: it is off by order 1 of its tensor, and a tensor only meets the floor
if it is itself within a few ulps of the comparison's largest scale (tests/test_tolerances.py plants one).

Exploring beyond the examples CI runs: the property tests are derandomized (tests/conftest.py) and the
test extra pins Hypothesis, because its derandomized examples change between versions. To draw new ones,
    HYPOTHESIS_PROFILE=explore python -m pytest tests --hypothesis-seed=N
runs 1000 random examples per property test under seed N (the audit that set ULPS ran three seeds).
GRADCHECK[name]: max element-wise relative error of the analytic gradient against float64 central
differences (minilm.verify.gradcheck).
"""

import numpy as np

ULPS = 8  # the rounding floor of every torch comparison, in ulps of the largest reference magnitude (see above)

TORCH = {
    # Same formula, same double arithmetic; only the order of additions differs (BLAS blocking,
    # pairwise vs sequential sums): a few ulps (1e-16) per operation, compounded a few hundred deep.
    "float64": dict(rtol=1e-10, atol=1e-12, dtype="float64"),
    # float32 ulp is 6e-8; sums over a few hundred terms in different orders lose ~sqrt(N) ulps, and
    # gradients that cancel to near zero (LayerNorm dx, softmax dx) are covered by the scaled atol.
    "float32": dict(rtol=1e-5, atol=1e-6, dtype="float32"),
    # A whole model in float32 (logits, loss and every gradient of a GPT): each layer's roundings feed
    # the next, through a few blocks and the tied head, so one order of magnitude more than a layer.
    "float32_model": dict(rtol=1e-4, atol=1e-5, dtype="float32"),
}

GRADCHECK = {
    # Smooth layers: central differences with gradcheck's step h = 1e-5 in float64 are accurate to
    # ~1e-10 relative (truncation h²|f'''|/6 ~1e-11, rounding ε|f|/h ~1e-11 on values of order 1); a
    # correct backward lands far below 1e-6 and a wrong one (a missing term, a transpose) near 1.
    "smooth": 1e-6,
    # ReLU and dropout are piecewise linear: exact wherever no input sits within h of the kink,
    # which the tests ensure by keeping inputs away from 0; the differences are then exact up to rounding.
    "piecewise": 1e-6,
    # A whole model (blocks, GPT): still exact maths, but one array can hold gradients of very different
    # sizes. At GPT-2's 0.02 init the query and key thirds of in_proj_weight get ~1e-3 of the value
    # third's gradient, while rounding through L layers is ~1e-9 of the array's scale (measured: it
    # shrinks as 1/h, so it is rounding, not a bug); read against the 1e-3 floor that is ~1e-6. A real
    # bug is still off by order 1, and the torch comparison pins the same gradients to 1e-10.
    "model": 1e-5,
}


def rounding_floor(kind, largest):
    """ULPS ulps of ``largest`` in the dtype of TORCH[kind]: the absolute error rounding alone can leave."""
    return ULPS * float(np.finfo(TORCH[kind]["dtype"]).eps) * float(largest)


def largest_magnitude(arrays):
    """max |a| over ``arrays`` (NumPy): the scale of a comparison's rounding floor, taken over its inputs and
    weights as well as every reference tensor, since what cancels to ~0 was made from them."""
    return max((float(np.max(np.abs(a), initial=0.0)) for a in arrays), default=0.0)


def torch_atol(kind, scale, largest=None):
    """The absolute tolerance for one tensor of reference magnitude ``scale`` (max|torch's|) in a comparison
    whose largest reference magnitude is ``largest`` (default: the tensor's own)."""
    return max(TORCH[kind]["atol"] * float(scale), rounding_floor(kind, scale if largest is None else largest))

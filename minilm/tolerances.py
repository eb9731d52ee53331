"""Every tolerance minilm holds itself to, with the reason for it: one table for the tests and `minilm check`.

TORCH[dtype]: minilm against its PyTorch twin on the same inputs and weights, for
    np.testing.assert_allclose(ours, torch's, rtol=rtol, atol=atol * max|torch's|)
(atol is relative to the largest magnitude in the reference tensor, so one table serves every scale).
GRADCHECK[name]: max element-wise relative error of the analytic gradient against float64 central
differences (minilm.gradcheck).
"""

TORCH = {
    # Same formula, same double arithmetic; only the order of additions differs (BLAS blocking,
    # pairwise vs sequential sums): a few ulps (1e-16) per operation, compounded a few hundred deep.
    "float64": dict(rtol=1e-10, atol=1e-12),
    # float32 ulp is 6e-8; sums over a few hundred terms in different orders lose ~sqrt(N) ulps, and
    # gradients that cancel to near zero (LayerNorm dx, softmax dx) are covered by the scaled atol.
    "float32": dict(rtol=1e-5, atol=1e-6),
    # A whole model in float32 (logits, loss and every gradient of a GPT): each layer's roundings feed
    # the next, through a few blocks and the tied head, so one order of magnitude more than a layer.
    "float32_model": dict(rtol=1e-4, atol=1e-5),
}

GRADCHECK = {
    # Smooth layers: central differences with h = 1e-6 in float64 are accurate to ~1e-9 relative
    # (O(h²) truncation ~1e-12, rounding ~1e-16/h ~1e-10 on values of order 1); a correct backward
    # lands far below 1e-6 and a wrong one (a missing term, a transpose) near 1.
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

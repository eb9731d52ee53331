"""Element-wise activations: GELU (tanh and exact forms), ReLU and Tanh.

GELU, exact ("none"):   y = x Φ(x) = ½ x (1 + erf(x / √2))
          backward:     dx = dy ⊙ (Φ(x) + x φ(x)),   φ(x) = exp(-x²/2) / √(2π)   (product rule; Φ' = φ)
GELU, tanh ("tanh"):    y = ½ x (1 + tanh(u)),   u = √(2/π) (x + 0.044715 x³)
          backward:     dx = dy ⊙ (½ (1 + t) + ½ x (1 - t²) √(2/π) (1 + 3·0.044715 x²)),   t = tanh(u)
          The tanh form is GPT-2's (and nanoGPT's, llm.c's). It differs from the exact form by at most
          4.74e-4 (at |x| ≈ 2.7) and its derivative by at most 8.7e-4 (at |x| ≈ 2.0): far below what
          training notices, and cheaper where erf is slow: on NumPy, whose erf (SciPy's) is a scalar loop,
          the exact form takes ~6x the tanh form's time forward and ~3.5x backward (benchmarks/RESULTS.md).
ReLU:                   y = max(x, 0)
          backward:     dx = dy ⊙ [x > 0]   (the derivative at exactly 0 is taken as 0, as in torch)
Tanh:                   y = tanh(x)
          backward:     dx = dy ⊙ (1 - y²)   (BERT's pooler squashes the [CLS] vector with it)
shapes:   x, y (..., C), any shape, e.g. (B, T, 4C) inside the feed-forward block
dtype:    everything runs in the dtype of x (the constants are Python floats, which every array backend treats
          as weak scalars); integer inputs are refused, since they have no gradient.
kept:     GELU keeps x and recomputes tanh / erf in backward, as llm.c does: storing t as well would add a
          second (B, T, 4C) array, the largest activation in the model, to save one tanh per element.
          The exact form also keeps Φ(x): on NumPy erf is a scalar loop, ~90% of the form's time, and
          reusing Φ saves the backward's erf for one more (B, T, 4C) array (the tanh form's t is cheap).
          ReLU keeps only the boolean mask x > 0 (one byte per element, all backward needs); Tanh keeps y.
kernels:  each formula is written once as it reads above (``_gelu_tanh`` ...) and run through
          minilm.backend.fused: one kernel on the GPU; on NumPy the tanh form runs an in-place rewrite of
          the same maths, held to the formula by a parity test. The exact form runs as written on NumPy:
          erf is ~90% of its time, and an in-place rewrite measured only 4-9% faster.
ref:      Hendrycks & Gimpel 2016, "Gaussian Error Linear Units", §2; torch.nn.GELU, torch.nn.ReLU, torch.nn.Tanh
"""

import math

from minilm.backend import erf, fused, is_floating, xp
from minilm.nn.module import Module

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)  # the slope of the tanh approximation's argument
GELU_CUBIC = 0.044715  # Hendrycks & Gimpel's fitted coefficient of x³
INV_SQRT_2 = 1.0 / math.sqrt(2.0)  # Φ(x) = ½ (1 + erf(x / √2))
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)  # the normal density's constant


def _gelu_tanh(x):
    """y = ½ x (1 + tanh(u)), u = √(2/π)(x + 0.044715 x³): the formula as written (one kernel on the GPU)."""
    return 0.5 * x * (1.0 + xp.tanh(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x)))


def _gelu_tanh_grad(x, dy):
    """dx = dy ⊙ (½ (1 + t) + ½ x (1 - t²) √(2/π)(1 + 3·0.044715 x²)), t = tanh(u): as written."""
    t = xp.tanh(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x))
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * x * x))


def _gelu_exact(x):
    """y = ½ x (1 + erf(x / √2)) = x Φ(x)."""
    return 0.5 * x * (1.0 + erf(x * INV_SQRT_2))


def _normal_cdf(x):
    """Φ(x) = ½ (1 + erf(x / √2)), which the exact form's forward keeps for its backward."""
    return 0.5 * (1.0 + erf(x * INV_SQRT_2))


def _gelu_exact_grad(x, dy):
    """dx = dy ⊙ (Φ(x) + x φ(x)); φ underflows harmlessly to 0 for large |x|."""
    return dy * (0.5 * (1.0 + erf(x * INV_SQRT_2)) + x * (INV_SQRT_2PI * xp.exp(-0.5 * x * x)))


def _gelu_exact_grad_from_cdf(x, cdf, dy):
    """dx = dy ⊙ (Φ(x) + x φ(x)) with Φ(x) given: no erf, only exp (vectorised on NumPy)."""
    return dy * (cdf + x * (INV_SQRT_2PI * xp.exp(-0.5 * x * x)))


# NumPy's versions of the tanh form: the same maths, in place in one or two buffers. At (B, T, 4C) each
# temporary of the one-line form costs a pass over memory and an allocation (at the CPU preset they were
# most of GELU's time, measured); on the GPU the one-line form is compiled into one kernel instead.

def _tanh_of_u(x):
    """t = tanh(√(2/π)(x + 0.044715 x³)), shared by the in-place forward and backward: a fresh array."""
    # x * x * x, not x**3: NumPy's float32 power takes a slow path for exponent 3 (250x slower, measured).
    t = x * x  # (..., C) like x
    t *= SQRT_2_OVER_PI * GELU_CUBIC
    t += SQRT_2_OVER_PI
    t *= x  # u = x (√(2/π) + √(2/π)·0.044715 x²), the same u in four passes over memory
    return xp.tanh(t, out=t)  # (..., C) t = tanh(u)


def _gelu_tanh_in_place(x):
    y = _tanh_of_u(x)  # (..., C) t, a fresh buffer that becomes y:
    y += 1.0
    y *= x
    y *= 0.5  # y = ½ x (1 + t), in place
    return y


def _gelu_tanh_grad_in_place(x, dy):
    t = _tanh_of_u(x)  # (..., C) recomputed rather than kept (see the module docstring)
    # forward: y = ½ x (1 + t),  t = tanh(u),  u = √(2/π)(x + 0.044715 x³);  tanh' = 1 - t²
    # dy/dx = ½ (1 + t) + ½ x (1 - t²) u' = ½ (1 + t) (1 + x (1 - t) u'), as 1 - t² = (1 - t)(1 + t);
    # the factored form is evaluated in place in two buffers (t and dx) instead of ten temporaries.
    dx = x * x  # (..., C)
    dx *= 3.0 * GELU_CUBIC * SQRT_2_OVER_PI
    dx += SQRT_2_OVER_PI  # u' = √(2/π)(1 + 3·0.044715 x²)
    dx *= x
    one_minus_t = xp.subtract(1.0, t, out=t)  # (..., C) t's buffer, reused
    dx *= one_minus_t
    dx += 1.0  # 1 + x (1 - t) u'
    one_plus_t = xp.subtract(2.0, one_minus_t, out=t)  # 1 + t = 2 - (1 - t)
    dx *= one_plus_t
    dx *= dy
    dx *= 0.5
    return dx  # (..., C)


gelu_tanh = fused(_gelu_tanh, numpy=_gelu_tanh_in_place)
gelu_tanh_grad = fused(_gelu_tanh_grad, numpy=_gelu_tanh_grad_in_place)
gelu_exact = fused(_gelu_exact)
gelu_exact_grad = fused(_gelu_exact_grad)
normal_cdf = fused(_normal_cdf)
gelu_exact_grad_from_cdf = fused(_gelu_exact_grad_from_cdf)


def _check_floating(name, x):
    if not is_floating(x):
        raise TypeError(f"{name} expects a floating-point input, got dtype {x.dtype}")


class GELU(Module):
    kept = ("x", "cdf")  # what backward reads (cdf: the exact form's Φ(x)); dropped under inference()

    APPROXIMATIONS = ("tanh", "none")

    def __init__(self, approximate="tanh"):
        if approximate not in self.APPROXIMATIONS:
            raise ValueError(f"GELU approximate must be 'tanh' or 'none', got {approximate!r}")
        self.approximate = approximate  # the torch twin reads this name

    def forward(self, x):
        _check_floating("GELU", x)
        self.x = x
        if self.approximate == "tanh":
            return gelu_tanh(x)  # (..., C)
        self.cdf = normal_cdf(x)  # (..., C) Φ(x), kept: erf is the slow part, so backward reuses it
        return x * self.cdf  # (..., C)

    def backward(self, dy):
        # forward: y = GELU(x), element-wise, so dx = dy ⊙ GELU'(x) (the module docstring's two forms)
        if self.approximate == "tanh":
            return gelu_tanh_grad(self.x, dy)  # (..., C)
        return gelu_exact_grad_from_cdf(self.x, self.cdf, dy)  # (..., C)


class ReLU(Module):
    kept = ("positive",)  # what backward reads; dropped under inference()

    def forward(self, x):
        _check_floating("ReLU", x)
        self.positive = x > 0  # (..., C) bool
        return xp.maximum(x, 0)  # (..., C)

    def backward(self, dy):
        # forward: y = max(x, 0)
        return xp.where(self.positive, dy, 0)  # (..., C)


class Tanh(Module):
    kept = ("y",)  # what backward reads; dropped under inference()

    def forward(self, x):
        _check_floating("Tanh", x)
        self.y = xp.tanh(x)  # (..., C)
        return self.y

    def backward(self, dy):
        # forward: y = tanh(x), and tanh' = 1 - tanh²
        return dy * (1 - self.y * self.y)  # (..., C)

"""Gradient checking: is a hand-written backward the derivative of its forward?

For a module y = f(x; θ) and a random upstream gradient g (same shape as y), the fake loss
    L = Σ y ⊙ g
has ∂L/∂x = backward(g): exactly what the module's backward claims to compute. Central differences
estimate each coordinate independently of that claim:
    ∂L/∂x_i ≈ Σ (f(x + h e_i) - f(x - h e_i)) ⊙ g / 2h        (error h²|f‴|/6 plus rounding ~ ε|y|/h)
Taking the difference of the two outputs before the sum with g keeps outputs that x_i does not touch out of
the rounding error. Everything runs in float64 (ε ≈ 1e-16). The step h = 1e-5 ≈ ε^(1/3) balances the two
errors (truncation ~1e-11, rounding ~1e-11 on values of order 1); at h = 1e-6 rounding is ten times larger,
which is measurable through a whole GPT. A correct backward agrees to well under 1e-6 and a wrong one (a
missing term, a transpose) is off by order 1.

Agreement is measured element-wise, as in CS231n:
    rel_error(a, n) = max_i |a_i - n_i| / max(|a_i|, |n_i|, tiny)
    tiny = max(1e-12, 1e-3 · max_j |n_j|)
The floor ``tiny`` is set by the array's own scale. A coordinate whose true gradient is ~0 (a masked key,
an ignored target, a LayerNorm dx that cancels) can only be estimated to the rounding noise, ~1e-10 in
absolute terms; dividing that noise by the coordinate itself would fail a correct backward at random.
Judged against a thousandth of the array's largest gradient, such a coordinate still has to agree to
1e-9 of that scale, far below the order-1 error a real bug (a missing term, a transpose) produces.
check_module raises the floor to the resolution of the differences themselves where that is coarser:
    noise = ε · Σ|y ⊙ g| / h,    tiny ≥ noise / RESOLUTION
The difference f(x + h e_i) - f(x - h e_i) is rounded to ~ε|y| per output, so no estimate is better than
noise in absolute terms; judged against noise / RESOLUTION, noise alone stays under RESOLUTION (1e-6, the
tightest GRADCHECK tolerance). This only binds for an array whose gradients are small next to the loss
(~1e-3 of Σ|y ⊙ g| and less): the audit of issue 24 drew attention keys of one channel whose whole
gradient was 1.2e-3 while Σ|y ⊙ g| was 1.2, and a masked key's exact 0 came back as 5e-12.

A model is too large to difference everywhere (two forwards per coordinate), so check_module(max_coords=n)
checks n coordinates of each larger array, and stratifies them. Independent draws miss a bug that touches
part of a weight: 4 uniform draws all miss the key third of in_proj_weight (3C, C) one time in five,
(2/3)⁴. Instead the rows (every axis but the last) are cut into n equal blocks, and so are the columns (the
last axis); one index is drawn in each block, and the n rows are paired with the n columns at random (a
Latin hypercube). Every row block and every column block then holds a coordinate, whatever the seed:
    a third of the rows, with 3 | n and 3 | rows   holds n/3 coordinates (the q, k or v rows of in_proj_weight)
    any ~2·rows/n consecutive rows                 hold one (one head's rows, when hs ≥ 2·3C/n)
    the same for columns                           (one head's slice of out_proj's input)
Weights are (out, in), so a row block is a set of outputs and a column block a set of inputs. Which
coordinates are drawn still changes with the seed; that each block gets some does not. A bug confined to a
block of rows *and* columns at once (one head's rows, restricted to some inputs) is still found by chance.
"""

import inspect
from dataclasses import dataclass, field

import numpy as np

from minilm.backend import asarray, is_floating, to_numpy

TINY = 1e-12  # the absolute floor: avoids 0/0 where the whole array is exactly zero
RESOLUTION = 1e-6  # the finest relative error a check resolves: the tightest tolerances.GRADCHECK entry
SCALE_FLOOR = 1e-3  # coordinates below this fraction of the array's largest gradient are judged against it


def rel_error(analytic, numeric, tiny=None):
    """max_i |a_i - n_i| / max(|a_i|, |n_i|, tiny), on the host in float64 (0.0 for empty arrays).

    tiny: the denominator's floor; by default max(TINY, SCALE_FLOOR · max|numeric|) (see the module docstring).
    """
    a = np.asarray(to_numpy(analytic), dtype=np.float64)
    n = np.asarray(to_numpy(numeric), dtype=np.float64)
    if a.shape != n.shape:
        raise ValueError(f"shape mismatch: analytic {a.shape} vs numeric {n.shape}")
    if a.size == 0:
        return 0.0
    if tiny is None:
        tiny = max(TINY, SCALE_FLOOR * float(np.max(np.abs(n))))
    return float(np.max(np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), tiny)))


def numerical_gradient(f, x, dout, h=1e-5, coords=None):
    """Central-difference estimate of ∂(Σ f() ⊙ dout)/∂x, perturbing ``x`` in place and restoring it.

    f: a function of no arguments that reads ``x`` (an array it closes over) and returns an array.
    coords: flat indices to estimate (the rest are returned as NaN); None means all of them.
    """
    grad = np.full(x.shape, np.nan)
    flat = x.reshape(-1)  # a view: writing to it perturbs x
    for i in range(x.size) if coords is None else coords:
        old = flat[i].copy()
        flat[i] = old + h
        plus = f()
        flat[i] = old - h
        minus = f()
        flat[i] = old
        grad.reshape(-1)[i] = float(((plus - minus) * dout).sum()) / (2 * h)
    return grad


@dataclass
class GradcheckReport:
    """Max relative error of the analytic gradient for each input (by argument name) and parameter."""

    errors: dict = field(default_factory=dict)  # name -> max relative error
    shapes: dict = field(default_factory=dict)  # name -> shape checked

    @property
    def max_error(self):
        return max(self.errors.values(), default=0.0)

    def passed(self, tol):
        return self.max_error < tol

    def __str__(self):
        rows = [f"{name:<32} {str(self.shapes[name]):<18} {err:.2e}" for name, err in self.errors.items()]
        return "\n".join(rows)


def _input_names(module, n):
    params = [p.name for p in inspect.signature(module.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return params[:n] if len(params) >= n else [f"input{i}" for i in range(n)]


def stratified_coords(shape, n, rng):
    """Up to ``n`` distinct flat indices into an array of ``shape``, stratified along its rows and its columns.

    Rows are everything but the last axis, columns the last axis. Each is cut into n equal blocks and one
    index drawn in each block; a random pairing of the n rows with the n columns makes the coordinates (a
    Latin hypercube). The module docstring says what this guarantees.
    """
    cols = shape[-1] if len(shape) else 1
    rows = int(np.prod(shape, dtype=np.int64)) // max(cols, 1)
    r = _one_per_block(rows, n, rng)  # (n,) one row from each block of rows
    c = rng.permutation(_one_per_block(cols, n, rng))  # (n,) one column from each block, in random order
    return np.unique(r * cols + c)  # (≤ n,) flat indices; pairs repeat only where rows and columns both < n


def _one_per_block(size, n, rng):
    """One index in each of n equal blocks of range(size); with size ≤ n, every index at least once."""
    edges = np.arange(n + 1) * size // n  # (n + 1,) block j is range(edges[j], edges[j + 1]), empty if size < n
    return edges[:-1] + rng.integers(np.maximum(edges[1:] - edges[:-1], 1))  # (n,) an empty block gives edges[j]


def check_module(module, *inputs, h=1e-5, seed=0, max_coords=None, only=None, **kwargs):
    """Compare ``module.backward`` with central differences for every floating input and every parameter.

    The module's parameters and the floating inputs are cast to float64 (in place for the module).
    Integer and boolean inputs (token ids, targets, masks) and ``kwargs`` are passed through unchanged.
    max_coords: check at most this many coordinates of each array (None: all of them), for models too
    large to difference everywhere. They are stratified (stratified_coords), not drawn independently: with
    n a multiple of 3, a bug in one third of a weight shows every time (module docstring).
    only: the names of the arrays to difference (None: all). The coordinates drawn and the report's entry
    for each of them are the same as in a full check; a test can examine one weight at a fraction of the cost.
    Returns a GradcheckReport: max relative error per input (named after forward's arguments) and per
    parameter (dotted name).
    """
    module.to(np.float64)
    inputs = [asarray(x, dtype=np.float64) if is_floating(x) else x for x in inputs]
    rng = np.random.default_rng(seed)

    def forward():
        return module.forward(*inputs, **kwargs)

    out = forward()
    dout = asarray(rng.standard_normal(np.shape(out)))
    noise = np.finfo(np.float64).eps * float(np.sum(np.abs(to_numpy(out) * to_numpy(dout)))) / h  # module docstring
    module.zero_grad()
    dinputs = module.backward(dout)
    if not isinstance(dinputs, tuple):
        dinputs = (dinputs,)

    floating = [(name, x) for name, x in zip(_input_names(module, len(inputs)), inputs) if is_floating(x)]
    if len(floating) != len([d for d in dinputs if d is not None]):
        raise ValueError(f"{type(module).__name__}.backward returned {len(dinputs)} gradient(s) "
                         f"for {len(floating)} floating input(s)")
    targets = [(name, x, dx) for (name, x), dx in zip(floating, dinputs)]
    for name, param in module.named_parameters():
        grad = param.grad if param.grad is not None else asarray(np.zeros(param.shape))
        targets.append((name, param.data, grad))
    missing = sorted(set(only or ()) - {name for name, _, _ in targets})
    if missing:
        raise ValueError(f"only names {missing}, which {type(module).__name__} does not have")

    report = GradcheckReport()
    for name, array, analytic in targets:
        coords = None
        if max_coords is not None and array.size > max_coords:
            coords = stratified_coords(array.shape, max_coords, rng)  # drawn even when skipped: see ``only``
        if only is not None and name not in only:
            continue
        numeric = numerical_gradient(forward, array, dout, h=h, coords=coords)
        analytic = np.asarray(to_numpy(analytic), dtype=np.float64)
        # the floor follows the scale of the whole array, not of the few coordinates sampled from it
        tiny = max(TINY, noise / RESOLUTION, SCALE_FLOOR * float(np.max(np.abs(analytic), initial=0.0)))
        if coords is not None:
            analytic, numeric = analytic.reshape(-1)[coords], numeric.reshape(-1)[coords]
        tiny = max(tiny, SCALE_FLOOR * float(np.max(np.abs(numeric), initial=0.0)))
        report.errors[name] = rel_error(analytic, numeric, tiny=tiny)
        report.shapes[name] = tuple(array.shape)
    return report

"""Verify every formula: each layer's backward against finite differences and against PyTorch.

    minilm check [LAYER ...] [--dtype float64|float32] [--backend NAME] [--seed S] [--json]

One row per item of minilm.verify.check_items.ITEMS (every layer in minilm.nn, attention with and without masks
and as cross-attention, the pre-LN and post-LN blocks and the decoder layer, two-layer LSTM and RNN from a given
state, a tiny GPT, BERT with its MLM and classifier heads on a padded batch, the Transformer and a Seq2Seq, several
steps of each optimiser), with the formula read from the layer's docstring, the shapes checked, two errors and the
tolerance each is held to:

FD:     the max element-wise relative error of the analytic gradients (every input and every parameter)
        against central differences (minilm.verify.gradcheck.check_module). Always in float64: in float32 the
        rounding of f(x ± h), ~1e-7 · |f|, divided by 2h swamps the difference itself, so the check would
        fail correct layers and prove nothing. Held to tolerances.GRADCHECK[smooth | piecewise | model].
torch:  the output, input gradients and parameter gradients against the PyTorch twin (minilm.verify.reference) in
        the requested dtype, as max|ours - torch| / max|torch| per tensor. Held to tolerances.TORCH[dtype]["rtol"],
        with the tests' rounding floor: no tensor's scale is taken below rounding_floor / rtol, so a tensor that
        is zero in exact arithmetic passes when both sides differ by less than tolerances.ULPS ulps of the
        largest tensor in the comparison. Optimisers: the parameters after each step against torch.optim.

Without torch only the finite differences run: those rows say "PASS (FD only)", the summary counts them apart
and says the PyTorch comparison did not run (so does stderr, and --json's torch_ran and warning).

Exit code 0 when every check that ran passes (so also without torch), 1 when any fails, 2 on bad usage (an
unknown LAYER lists the valid ones). The table fits the terminal, or 100 columns when stdout is not one.
"""

import argparse
import importlib
import inspect
import json
import math
import os
import shutil
import sys

import numpy as np
from tqdm import tqdm

from minilm.backend import BACKENDS, asarray, backend_name, is_floating, to_numpy, use_backend
from minilm.verify.check_items import ITEMS, LAYERS, OptimizerCase, formula_of
from minilm.verify.check_table import NOT_RUN, TORCH_MISSING, counts, format_table
from minilm.verify.gradcheck import check_module
from minilm.nn.module import Parameter
from minilm.verify.tolerances import GRADCHECK, TORCH, largest_magnitude, rounding_floor

DTYPES = ("float64", "float32")
PIPE_WIDTH = 100  # a table written to a file or a pipe fits a 100-column terminal or editor when read later


def _layer_name(text):
    """A LAYER argument, matched case-insensitively to a class name."""
    by_lower = {name.lower(): name for name in LAYERS}
    if text.lower() not in by_lower:
        raise argparse.ArgumentTypeError(f"unknown layer {text!r}; valid names: {', '.join(LAYERS)}")
    return by_lower[text.lower()]


def add_arguments(parser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 2)[2]
    parser.add_argument("layers", nargs="*", type=_layer_name, metavar="LAYER",
                        help=f"check only these (case-insensitive; all by default): {', '.join(LAYERS)}")
    parser.add_argument("--dtype", choices=DTYPES, default="float64",
                        help="dtype of the PyTorch comparison (default float64); finite differences always run in "
                             "float64, since in float32 their rounding error is larger than what they measure")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="array backend to check (default: the active one, MINILM_BACKEND or numpy)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the weights, inputs and upstream gradients")
    parser.add_argument("--json", action="store_true", help="write the rows as JSON to stdout instead of a table")


# --- one row ----------------------------------------------------------------------------------------------

def _shapes(module, inputs, kwargs):
    """'q, k, v (2, 3, 5, 4); key_padding_mask (2, 5) -> (2, 3, 5, 4)': forward's arguments and its output."""
    names = [p.name for p in inspect.signature(module.forward).parameters.values()]
    groups = []  # [names, shape], consecutive arguments of one shape together
    for name, a in list(zip(names, inputs)) + list(kwargs.items()):
        if groups and groups[-1][1] == tuple(a.shape):
            groups[-1][0].append(name)
        else:
            groups.append([[name], tuple(a.shape)])
    out = module.forward(*inputs, **kwargs)
    return "; ".join(f"{', '.join(group)} {shape}" for group, shape in groups) + f" -> {tuple(out.shape)}"


def _torch_error(pairs, dtype, operands=()):
    """The largest scale-relative error over {name: (ours, torch's)}, and each tensor's.

    A tensor that cancels to ~0 (the key bias's gradient is exactly 0) holds rounding noise on both sides, so no
    scale is taken below the one at which the tolerance equals the rounding floor of the comparison, whose
    scale covers its ``operands`` (inputs, weights) too, as tests/layer_checks.py does.
    """
    largest = largest_magnitude([theirs for _, theirs in pairs.values()] + list(operands))
    smallest_scale = rounding_floor(dtype, largest) / TORCH[dtype]["rtol"]
    errors = {}
    for name, (ours, theirs) in pairs.items():
        if ours.dtype != theirs.dtype:
            errors[name] = math.inf  # computing in another dtype than asked is itself a failure
            continue
        scale = max(float(np.max(np.abs(theirs), initial=0.0)), smallest_scale)
        diff = float(np.max(np.abs(ours.astype(np.float64) - theirs), initial=0.0))
        errors[name] = diff / scale if scale > 0 else diff
    return max(errors.values()), errors


def _optimizer_pairs(case, dtype, seed, reference):
    """``case.steps`` steps of ours and of torch.optim on the same parameters and gradients: parameters after each."""
    rng = np.random.default_rng(seed)
    start = [rng.standard_normal(shape).astype(dtype) for shape in case.shapes]
    grads = [[rng.standard_normal(shape).astype(dtype) for shape in case.shapes] for _ in range(case.steps)]
    ours = [Parameter(asarray(a.copy())) for a in start]
    optimizer, after = case.make(ours), []
    for step in grads:
        for param, g in zip(ours, step):
            param.grad = asarray(g.copy())
        optimizer.step()
        after.append([to_numpy(p.data).copy() for p in ours])
    if reference is None:
        return None
    torch = reference.torch  # torch is only ever imported by minilm.verify.reference
    theirs = [reference.to_torch(a, requires_grad=True) for a in start]
    twin = getattr(torch.optim, case.torch_name)(theirs, **case.hyper)
    pairs = {}
    for k, step in enumerate(grads, start=1):
        for param, g in zip(theirs, step):
            param.grad = reference.to_torch(g)
        twin.step()
        for i, (ours_after, q) in enumerate(zip(after[k - 1], theirs)):
            pairs[f"step {k} param {i}"] = (ours_after, q.detach().numpy().copy())
    return pairs


def check_item(item, dtype, seed, reference):
    """One row: the item checked by finite differences (float64) and against torch (``dtype``)."""
    fd_tol = GRADCHECK[item.fd] if item.fd else None
    row = dict(name=item.name, layer=item.layer, formula=formula_of(item), shapes="",
               fd_error=None, fd_tol=fd_tol, fd_tol_name=f"GRADCHECK[{item.fd!r}]" if item.fd else None,
               fd_step=item.h if item.fd else None, torch_error=None, torch_tol=TORCH[dtype]["rtol"],
               torch_tol_name=f"TORCH[{dtype!r}]['rtol']", torch_note=None, errors={}, note=None)
    checks = []
    try:
        case, operands = item.build(np.random.default_rng(seed)), ()
        if isinstance(case, OptimizerCase):
            row["shapes"] = f"{len(case.shapes)} params {', '.join(map(str, case.shapes))}, {case.steps} steps"
            pairs = _optimizer_pairs(case, dtype, seed, None if item.torch else reference)
        else:
            report = check_module(case.module, *case.inputs, h=item.h, seed=seed, max_coords=item.max_coords,
                                  **case.kwargs)
            row["fd_error"], row["errors"]["fd"] = report.max_error, dict(report.errors)
            checks.append(report.max_error < fd_tol)
            row["shapes"] = _shapes(case.module, case.inputs, case.kwargs) + (
                f"; FD at {item.max_coords} stratified coordinates per array" if item.max_coords else "")
            pairs = None
            if reference is not None and not item.torch:
                case = item.build(np.random.default_rng(seed))
                inputs = [asarray(x, dtype=dtype) if is_floating(x) else x for x in case.inputs]
                pairs = reference.compare(case.module.to(dtype), *inputs, seed=seed, **case.kwargs)
                operands = [to_numpy(x) for x in inputs if is_floating(x)] + [
                    to_numpy(p.data) for p in case.module.parameters()]
        if pairs is not None:
            row["torch_error"], row["errors"]["torch"] = _torch_error(pairs, dtype, operands)
            checks.append(row["torch_error"] <= row["torch_tol"])
    except Exception as err:  # a broken layer is a failed row, not a crashed check
        row["note"] = f"{type(err).__name__}: {err}"
        checks.append(False)
    row["torch_note"] = item.torch or (TORCH_MISSING if reference is None else None)
    row["torch_ran"] = row["torch_error"] is not None
    row["passed"] = all(checks) if checks else None
    row["result"] = {True: "PASS", False: "FAIL", None: "SKIP"}[row["passed"]]
    return row


# --- the command ------------------------------------------------------------------------------------------

def _load_reference():
    """minilm.verify.reference, or None when torch is not installed (any other import error is a bug to show)."""
    try:
        return importlib.import_module("minilm.verify.reference")
    except ImportError as err:
        if (err.name or "").split(".")[0] != "torch":
            raise
        return None


def run(args):
    items = [item for item in ITEMS if not args.layers or item.layer in args.layers]
    previous = backend_name()
    if args.backend:
        use_backend(args.backend)  # RuntimeError naming what is missing; the dispatcher prints it, exit 2
    try:
        reference = _load_reference()
        progress = tqdm(items, desc="minilm check", unit="item", file=sys.stderr, leave=False, delay=0.5,
                        disable=args.json or not sys.stderr.isatty())
        rows = [check_item(item, args.dtype, args.seed, reference) for item in progress]
    finally:
        use_backend(previous)
    passed = all(row["passed"] is not False for row in rows)  # every check that ran passed
    unrun = any(row["torch_note"] == TORCH_MISSING for row in rows)  # a torch half skipped for want of torch
    if args.json:
        summary = dict(passed=passed, dtype=args.dtype, backend=args.backend or previous, seed=args.seed,
                       torch=getattr(getattr(reference, "torch", None), "__version__", None),
                       torch_ran=reference is not None, warning=NOT_RUN if unrun else None, counts=counts(rows),
                       rows=rows)
        print(json.dumps(_finite(summary), indent=1))
    else:
        print(format_table(rows, args.dtype, colour=sys.stdout.isatty() and "NO_COLOR" not in os.environ,
                           width=shutil.get_terminal_size().columns if sys.stdout.isatty() else PIPE_WIDTH))
    if unrun:  # stderr too: stdout may be going to a file nobody reads to its last line
        print(f"minilm check: warning: {NOT_RUN}", file=sys.stderr)
    return 0 if passed else 1


def _finite(value):
    """JSON has no inf or nan: such an error becomes null, and its row says FAIL."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value

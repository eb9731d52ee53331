"""`minilm check`: it passes on the real layers, covers the package, and a planted wrong backward fails its rows."""

import argparse
import contextlib
import inspect
import io
import json
import sys

import numpy as np
import pytest

from minilm import check, nn
from minilm.backend import backend_name
from minilm.check_items import ITEMS, LAYERS, Case, formula_of, formula_pieces
from minilm.check_table import GREEN, RESET
from minilm.nn.activation import ReLU
from minilm.nn.normalization import LayerNorm
from minilm.tolerances import GRADCHECK, TORCH

try:
    import minilm.reference  # noqa: F401  (needs torch)
    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False


def parser():
    p = argparse.ArgumentParser(prog="minilm check")
    check.add_arguments(p)
    return p


def run(argv, capsys):
    """(exit code, stdout, stderr) of `minilm check ARGV`."""
    code = check.run(parser().parse_args(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(argv, capsys):
    code, out, _ = run([*argv, "--json"], capsys)
    return code, json.loads(out)


def uses(item, cls):
    """True when the item's module is, or contains, an instance of ``cls``."""
    case = item.build(np.random.default_rng(0))
    return isinstance(case, Case) and any(isinstance(m, cls) for _, m in case.module.named_modules())


@pytest.fixture(scope="module")
def full_report():
    """One run of every item (JSON), shared: the rows are the same whichever test reads them."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = check.run(parser().parse_args(["--json"]))
    return code, json.loads(out.getvalue())


# --- the real layers ---------------------------------------------------------------------------------------

def test_every_row_passes_and_exit_code_is_zero(full_report):
    code, report = full_report
    assert code == 0 and report["passed"] is True
    for row in report["rows"]:
        assert row["result"] == "PASS" or (not HAVE_TORCH and row["result"] == "SKIP"), row
        if row["fd_tol"] is not None:
            assert row["fd_error"] < row["fd_tol"] == GRADCHECK[row["fd_tol_name"].split("'")[1]]
        if HAVE_TORCH and row["torch_note"] is None:
            assert row["torch_error"] <= row["torch_tol"] == TORCH["float64"]["rtol"]


def test_json_has_a_row_for_every_layer_the_package_exports(full_report):
    _, report = full_report
    layers = {row["layer"] for row in report["rows"]}
    exported = {name for name in nn.__all__ if inspect.isclass(getattr(nn, name))
                and issubclass(getattr(nn, name), nn.Module) and name != "Module"}
    assert exported <= layers, f"not checked: {exported - layers}"
    assert {"GPT", "SGD", "Adam", "AdamW"} <= layers
    names = [row["name"] for row in report["rows"]]
    assert "TransformerBlock (pre-LN)" in names and "TransformerBlock (post-LN)" in names
    mha = [row for row in report["rows"] if row["layer"] == "MultiHeadAttention"]
    assert any("key_padding_mask" in row["shapes"] for row in mha)  # with a padding mask
    assert any("key_padding_mask" not in row["shapes"] for row in mha)  # and without
    assert any(row["layer"] == "SelfAttention" for row in report["rows"])
    for row in report["rows"]:
        assert set(row) >= {"name", "formula", "shapes", "fd_error", "torch_error", "fd_tol", "torch_tol", "result"}
        assert row["formula"] and ("->" in row["shapes"] or "steps" in row["shapes"])


def test_optimisers_are_compared_with_torch_not_differenced(full_report):
    _, report = full_report
    for row in (r for r in report["rows"] if r["layer"] in ("SGD", "Adam", "AdamW")):
        assert row["fd_error"] is None and row["fd_tol"] is None
        if HAVE_TORCH:
            assert row["torch_error"] <= TORCH["float64"]["rtol"]


def test_plain_table_without_a_tty_has_no_colour_and_no_progress_bar(capsys):
    code, out, err = run(["LayerNorm", "MultiHeadAttention", "AdamW"], capsys)
    assert code == 0
    assert "\033[" not in out and err == ""
    names = [item.name for item in ITEMS if item.layer in ("LayerNorm", "MultiHeadAttention", "AdamW")]
    for name in names:
        assert name in out
    ln_line = next(line for line in out.splitlines() if line.startswith("LayerNorm "))
    assert formula_of(next(i for i in ITEMS if i.layer == "LayerNorm")) in ln_line and ln_line.endswith("PASS")
    assert f"{len(names)} passed, 0 failed" in out


def test_colours_on_a_terminal_unless_no_color(capsys, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    _, out, _ = run(["Linear", "ReLU"], capsys)
    assert out.count(GREEN + "PASS" + RESET) == 2
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    _, out, _ = run(["Linear"], capsys)
    assert "\033[" not in out


def test_float32_compares_torch_in_float32(capsys):
    code, report = run_json(["--dtype", "float32", "LayerNorm", "gpt"], capsys)
    assert code == 0 and {row["layer"] for row in report["rows"]} == {"LayerNorm", "GPT"}
    for row in report["rows"]:
        assert row["torch_tol"] == TORCH["float32"]["rtol"]
        assert row["fd_error"] < row["fd_tol"]  # finite differences still in float64
        if HAVE_TORCH:
            assert row["torch_error"] > 1e-12  # float32 rounding is visible: the comparison really ran in float32


# --- a planted wrong backward ------------------------------------------------------------------------------

def layer_norm_without_the_stretch_term(self, dy):
    """LayerNorm.backward with the term - xhat ⊙ mean(dxhat ⊙ xhat) dropped: the classic wrong derivation."""
    C = self.normalized_shape
    self.weight.accumulate((dy * self.xhat).reshape(-1, C).sum(axis=0))
    self.bias.accumulate(dy.reshape(-1, C).sum(axis=0))
    dxhat = dy * self.weight.data
    return (dxhat - dxhat.mean(axis=-1, keepdims=True)) * self.rstd


def test_planted_layer_norm_bug_fails_its_rows_only(monkeypatch, capsys):
    monkeypatch.setattr(LayerNorm, "backward", layer_norm_without_the_stretch_term)
    code, report = run_json([], capsys)
    assert code == 1 and report["passed"] is False
    failed = {row["name"] for row in report["rows"] if row["result"] == "FAIL"}
    expected = {item.name for item in ITEMS if uses(item, LayerNorm)}
    assert "LayerNorm" in expected and "GPT (2 layers, tied head)" in expected and len(expected) == 4
    assert failed == expected  # the layer and what is built on it; every other row still passes
    row = next(row for row in report["rows"] if row["name"] == "LayerNorm")
    assert row["fd_error"] > 1e-2  # off by order one, not by rounding
    if HAVE_TORCH:
        assert row["torch_error"] > 1e-2


def test_planted_relu_bug_fails_that_row_only(monkeypatch, capsys):
    monkeypatch.setattr(ReLU, "backward", lambda self, dy: dy)  # forgets the mask [x > 0]
    neighbours = ["GELU", "FeedForward", "Linear", "Dropout", "LayerNorm"]  # activations and ReLU's neighbours
    code, out, _ = run(["ReLU", *neighbours], capsys)
    assert code == 1
    failed = [line.split()[0] for line in out.splitlines() if line.rstrip().endswith("FAIL")]
    assert failed == ["ReLU"]
    assert "1 failed: ReLU" in out and out.count("PASS") == len([i for i in ITEMS if i.layer in neighbours])


def test_a_backward_that_raises_is_a_failed_row(monkeypatch, capsys):
    def broken(self, dp):
        raise ValueError("shapes (2, 3, 7) and (7, 3) not aligned")

    monkeypatch.setattr(nn.Softmax, "backward", broken)
    code, report = run_json(["softmax", "logsoftmax"], capsys)
    assert code == 1
    rows = {row["name"]: row for row in report["rows"]}
    assert rows["Softmax"]["result"] == "FAIL" and "not aligned" in rows["Softmax"]["note"]
    assert rows["LogSoftmax"]["result"] == "PASS"


# --- usage ------------------------------------------------------------------------------------------------

def test_layer_names_are_case_insensitive(capsys):
    code, report = run_json(["layernorm", "ADAMW", "multiheadattention"], capsys)
    assert code == 0
    assert {row["layer"] for row in report["rows"]} == {"LayerNorm", "AdamW", "MultiHeadAttention"}
    assert len([row for row in report["rows"] if row["layer"] == "MultiHeadAttention"]) >= 2


def test_unknown_layer_lists_the_valid_names(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(["LayerNorm", "Transformer"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown layer 'Transformer'" in err
    for name in LAYERS:
        assert name in err


def test_missing_cupy_is_the_clear_backend_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    before = backend_name()
    args = parser().parse_args(["--backend", "cupy", "Linear"])
    with pytest.raises(RuntimeError, match=r"CuPy requested but not installed \(pip install 'minilm\[gpu\]'"):
        check.run(args)
    assert backend_name() == before  # the failed switch changed nothing


def test_backend_is_restored_after_the_run(capsys):
    before = backend_name()
    code, _, _ = run(["--backend", "numpy", "Linear"], capsys)
    assert code == 0 and backend_name() == before


def test_the_seed_draws_new_weights_and_inputs(capsys):
    errors = [run_json(["Linear", "--seed", str(seed)], capsys)[1]["rows"][0]["fd_error"] for seed in (0, 0, 1)]
    assert errors[0] == errors[1] != errors[2]


def test_without_torch_the_column_says_so(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "minilm.reference", raising=False)
    code, report = run_json(["Linear", "SGD"], capsys)
    assert code == 0
    rows = {row["layer"]: row for row in report["rows"]}
    assert rows["Linear"]["torch_note"] == "torch not installed" and rows["Linear"]["result"] == "PASS"
    assert rows["SGD"]["result"] == "SKIP"  # nothing to compare one step with
    _, out, _ = run(["Linear"], capsys)
    assert "torch not installed" in out


def test_help_says_finite_differences_run_in_float64():
    text = " ".join(parser().format_help().split())
    assert "finite differences always run in float64" in text
    assert "exit code 0" in text.lower() and "--json" in text


# --- the formula comes from the docstring ------------------------------------------------------------------

def test_every_formula_is_found_in_its_docstring():
    for item in ITEMS:
        doc = " ".join(sys.modules[item.owner.__module__].__doc__.split())
        formula = formula_of(item)
        assert not formula.startswith("(no "), f"{item.name}: {formula}"
        for piece in formula.split("; "):
            assert piece in doc, f"{item.name}: {piece!r} is not in the docstring"


def test_editing_the_docstring_changes_the_table(monkeypatch):
    module = sys.modules[nn.Linear.__module__]
    monkeypatch.setattr(module, "__doc__", "Linear.\n\nforward:  y = x Aᵀ + c        (renamed)\nbackward: ...\n")
    assert formula_of(next(i for i in ITEMS if i.layer == "Linear")) == "y = x Aᵀ + c"


def test_formula_parser_reads_columns_labels_and_comments():
    doc = ("Title.\n\n"
           "forward, a:                  forward, b:\n"
           "    u = f(x)                     u = g(x)\n"
           "    y = u + x                    y = u · x\n"
           "backward: ...\n"
           "update:\n"
           "    Rule A:     θ ← θ - g          remark\n"
           "    m = mean(x)   (over C, as torch)\n"
           "    prose without a formula\n"
           "    z = 1\n")
    assert formula_pieces(doc, "forward, a:") == ["u = f(x)", "y = u + x"]
    assert formula_pieces(doc, "forward, b:") == ["u = g(x)", "y = u · x"]
    assert formula_pieces(doc, "update:") == ["Rule A: θ ← θ - g", "m = mean(x)"]
    assert formula_pieces(doc, "missing:") == []

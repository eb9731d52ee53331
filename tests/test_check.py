"""`minilm check`: it passes on the real layers, covers the package, and a planted wrong backward fails its rows."""

import argparse
import contextlib
import inspect
import io
import json
import os
import shutil
import sys
import unicodedata

import numpy as np
import pytest

from minilm import cli, nn
from minilm.verify import check
from minilm.backend import backend_name
from minilm.verify.check_items import ITEMS, LAYERS, Case, formula_of, formula_pieces
from minilm.verify.check_table import FD_ONLY, GREEN, RESET, TORCH_MISSING, YELLOW, format_table
from minilm.nn.activation import ReLU
from minilm.nn.normalization import LayerNorm
from minilm.verify.tolerances import GRADCHECK, TORCH

try:
    import minilm.verify.reference  # noqa: F401  (needs torch)
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


def run_cli(argv, capsys):
    """(exit code, stdout, stderr) of `minilm check ARGV` through the real entry point, minilm.cli.main."""
    code = cli.main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def without_torch(monkeypatch):
    """Make `import torch` fail as it does where torch is not installed."""
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError(name="torch")
    monkeypatch.delitem(sys.modules, "minilm.verify.reference", raising=False)


def display(line):
    """The line as terminal cells: a combining mark (the hat of m̂) shares the cell of the letter before it."""
    cells = []
    for ch in line:
        if unicodedata.combining(ch) and cells:
            cells[-1] += ch
        else:
            cells.append(ch)
    return cells


def parse_table(text):
    """The table's rows read back as {column header: text}, wrapped cells joined again; either layout.

    The dashes under the header give the columns. Stacked (narrow) layout: the formula and the shapes sit on
    lines indented by 4 under their row, their continuation lines by 6; every other line belongs to a row.
    """
    lines = text.split("\n\n")[0].splitlines()
    rule = next(i for i, line in enumerate(lines) if line and set(line) <= {"-", " "})
    spans, start = [], 0
    for dashes in lines[rule].split("  "):
        spans.append((start, start + len(dashes)))
        start += len(dashes) + 2
    stacked = any(line.startswith("    formula") for line in lines[:rule])
    names = ["layer", "grad vs FD", "vs torch", "tolerance", "result"] if stacked else [
        "layer", "formula", "shapes", "grad vs FD", "vs torch", "tolerance", "result"]
    rows, under = [], None  # under: the list the formula or shapes line being read goes on
    for line in lines[rule + 1:]:
        indent = len(line) - len(line.lstrip())
        if stacked and indent in (4, 6):
            if indent == 4:
                under = rows[-1].setdefault("formula" if "formula" not in rows[-1] else "shapes", [])
            under.append(line.strip())
            continue
        cells = ["".join(display(line)[a:b if k < len(spans) - 1 else None]).strip() for k, (a, b) in enumerate(spans)]
        if not rows or (under is not None if stacked else cells[0]):
            rows.append({})
            under = None
        for name, cell in zip(names, cells):
            if cell:
                rows[-1].setdefault(name, []).append(cell)
    return [{name: " ".join(parts) for name, parts in row.items()} for row in rows]


def assert_table_holds(text, rows, width):
    """Every line fits ``width``, and every row's name, formula, shapes, errors, tolerance and result are there."""
    for line in text.splitlines():
        assert len(display(line)) <= width, f"{len(display(line))} > {width}: {line!r}"
    shown = parse_table(text)
    assert len(shown) == len(rows)
    for row, cells in zip(rows, shown):
        assert cells["layer"] == row["name"] and cells["formula"] == row["formula"]
        assert cells["shapes"] == row["shapes"]
        assert cells["grad vs FD"] == ("—" if row["fd_tol"] is None else f"{row['fd_error']:.1e}")
        if row["torch_error"] is not None:
            assert cells["vs torch"] == f"{row['torch_error']:.1e}"
        else:
            assert cells["vs torch"] == {TORCH_MISSING: "not installed"}.get(row["torch_note"], "n/a")
        assert cells["tolerance"].endswith(f" / {row['torch_tol']:.0e}")
        fd_only = row["result"] == "PASS" and row["torch_note"] == TORCH_MISSING
        assert cells["result"] == (FD_ONLY if fd_only else row["result"])


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
    assert {"GPT", "BERT", "MLMHead", "Transformer", "Tanh", "SGD", "Adam", "AdamW"} <= layers
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
    assert "\033[" not in out and (err == "" or not HAVE_TORCH)
    names = [item.name for item in ITEMS if item.layer in ("LayerNorm", "MultiHeadAttention", "AdamW")]
    for name in names:
        assert name in out
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("LayerNorm "))
    assert lines[at].endswith("PASS" if HAVE_TORCH else FD_ONLY)  # name, errors and result on one line
    assert lines[at + 1].strip() == formula_of(next(i for i in ITEMS if i.layer == "LayerNorm"))  # formula under it
    assert f"{len(names)} passed, 0 failed" in out or not HAVE_TORCH


def test_piped_table_fits_100_columns_and_keeps_every_row(full_report, capsys):
    """A pipe is no terminal to ask: the table fits 100 columns (it was 329 wide), losing nothing."""
    code, out, _ = run_cli([], capsys)
    assert code == 0
    assert_table_holds(out, full_report[1]["rows"], check.PIPE_WIDTH)
    assert check.PIPE_WIDTH == 100


def as_if_without_torch(row):
    """The row as a run without torch gives it: no torch error; an optimiser, with FD nothing to check, a SKIP."""
    if row["torch_note"] is not None:
        return row
    skip = dict(passed=None, result="SKIP") if row["fd_tol"] is None else {}
    return dict(row, torch_error=None, torch_note=TORCH_MISSING, torch_ran=False, **skip)


@pytest.mark.parametrize("torch_ran", [True, False])
@pytest.mark.parametrize("width", [70, 80, 100, 140, 250])
def test_table_fits_narrow_and_wide_terminals(full_report, width, torch_ran):
    """Narrow, the formula and shapes go under each row; wide, all seven columns stand side by side."""
    rows = [row if torch_ran else as_if_without_torch(row) for row in full_report[1]["rows"]]
    text = format_table(rows, "float64", width=width)
    assert_table_holds(text, rows, width)
    stacked = any(line.startswith("    formula (from its docstring)") for line in text.splitlines())
    assert stacked == (width <= 140)


def test_table_on_a_terminal_takes_its_width(monkeypatch, capsys):
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    _, report = run_json(["AdamW", "MultiHeadAttention", "ScaledDotProductAttention"], capsys)
    for columns in (72, 260):
        monkeypatch.setattr(shutil, "get_terminal_size", lambda *_, size=(columns, 24): os.terminal_size(size))
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
        code, out, _ = run_cli(["AdamW", "MultiHeadAttention", "ScaledDotProductAttention"], capsys)
        assert code == 0
        assert_table_holds(out, report["rows"], columns)
        stacked = any(line.startswith("    formula (from its docstring)") for line in out.splitlines())
        assert stacked == (columns < 100)  # wide enough, all seven columns side by side


def test_colours_on_a_terminal_unless_no_color(capsys, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    _, out, _ = run(["Linear", "ReLU"], capsys)
    assert out.count(GREEN + "PASS" + RESET) == 2
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    _, out, _ = run(["Linear"], capsys)
    assert "\033[" not in out


def test_a_pass_without_its_torch_half_is_yellow_not_green(full_report):
    rows = [as_if_without_torch(row) for row in full_report[1]["rows"]]
    text = format_table(rows, "float64", colour=True, width=120)
    assert text.count(YELLOW + FD_ONLY + RESET) == sum(row["torch_note"] == TORCH_MISSING and row["result"] == "PASS"
                                                         for row in rows) > 0
    assert GREEN + "PASS" + RESET in text  # Dropout: nothing in torch to compare with, by design


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
    assert {"LayerNorm", "GPT (2 layers, tied head)", "MLM head", "BERT (MLM head)",
            "BERT (classifier head)", "Transformer", "Seq2Seq"} <= expected
    assert len(expected) == 11  # + Embeddings and the three blocks
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


def test_bert_rows_check_every_head_on_a_padded_batch_with_segments(full_report):
    rows = {row["name"]: row for row in full_report[1]["rows"]}
    for name, out in (("BERT (MLM head)", "(3, 7, 11)"), ("BERT (classifier head)", "(3, 5)")):
        row = rows[name]
        assert row["layer"] == "BERT" and row["fd_tol_name"] == "GRADCHECK['model']"
        assert row["shapes"].startswith(f"ids, token_type_ids, attention_mask (3, 7) -> {out}")
        differenced = set(row["errors"]["fd"])
        assert {"embeddings.wte.weight", "embeddings.wtt.weight", "h.1.attn.in_proj_weight"} <= differenced
    assert "mlm.decoder.bias" in rows["BERT (MLM head)"]["errors"]["fd"]
    assert {"pooler.weight", "classifier.weight"} <= set(rows["BERT (classifier head)"]["errors"]["fd"])
    assert rows["MLM head"]["layer"] == "MLMHead" and "decoder.weight" in rows["MLM head"]["errors"]["fd"]
    assert rows["Tanh"]["formula"] == "y = tanh(x)"


def test_planted_tanh_bug_fails_tanh_and_the_classifier_row_only(monkeypatch, capsys):
    monkeypatch.setattr(nn.Tanh, "backward", lambda self, dy: dy)  # forgets tanh' = 1 - y²: the pooler's bug
    code, report = run_json(["Tanh", "BERT", "MLMHead", "GELU"], capsys)
    assert code == 1
    failed = {row["name"] for row in report["rows"] if row["result"] == "FAIL"}
    assert failed == {"Tanh", "BERT (classifier head)"}  # the MLM head has no pooler
    row = next(row for row in report["rows"] if row["name"] == "BERT (classifier head)")
    errors = row["errors"]["fd"]
    assert errors["pooler.weight"] > 1e-2 and errors["classifier.weight"] < GRADCHECK["model"]  # below tanh only


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
        parser().parse_args(["LayerNorm", "Conv1d"])  # not "Transformer": that is a row now
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown layer 'Conv1d'" in err
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


def test_without_torch_the_summary_says_the_comparison_did_not_run(monkeypatch, capsys):
    """Not "21 passed": the rows whose torch half could not run are counted apart, and the summary says why."""
    without_torch(monkeypatch)
    code, out, err = run_cli([], capsys)
    assert code == 0  # every check that ran passed
    fd_only = [item.name for item in ITEMS if not item.torch and item.fd]
    optimisers = [item.name for item in ITEMS if not item.fd]
    by_design = [item.name for item in ITEMS if item.torch]  # Dropout: no torch twin even with torch
    assert len(fd_only) + len(optimisers) + len(by_design) == len(ITEMS)
    assert by_design == ["Dropout (training, p = 0.3)"]
    summary, warning = " ".join(out.split("\n\n")[-1].split()).split(" PyTorch comparison")
    assert summary.endswith(f"{len(by_design)} passed, {len(fd_only)} passed finite differences only, 0 failed, "
                            f"{len(optimisers)} not checked (nothing to compare with)")
    assert warning == (" NOT RUN: torch is not installed (pip install torch, or pip install '.[test]'); "
                       "only finite differences were checked")
    assert out.rstrip().endswith("only finite differences were checked")  # the last thing printed
    assert "torch is not installed (pip install torch" in err  # seen even when stdout goes to a file
    assert cli.main(["check", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert_table_holds(out, rows, 100)  # every FD-only row says "PASS (FD only)" and "not installed"
    assert [row["result"] for row in parse_table(out)].count(FD_ONLY) == len(fd_only)


def test_without_torch_json_says_so_and_keeps_its_fields(monkeypatch, capsys):
    without_torch(monkeypatch)
    code = cli.main(["check", "--json", "Linear", "SGD", "Dropout"])
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert code == 0 and report["passed"] is True
    assert report["torch"] is None and report["torch_ran"] is False
    assert "torch is not installed" in report["warning"] and "pip install torch" in report["warning"]
    assert report["counts"] == {"passed": 1, "passed_fd_only": 1, "failed": 0, "not_checked": 1}
    assert "torch is not installed" in err
    rows = {row["layer"]: row for row in report["rows"]}
    linear = rows["Linear"]
    assert linear["torch_note"] == "torch not installed" and linear["torch_ran"] is False
    assert linear["result"] == "PASS" and linear["passed"] is True  # as before: the check that ran passed
    assert rows["SGD"]["result"] == "SKIP"  # nothing to compare one step with
    assert rows["Dropout"]["result"] == "PASS" and rows["Dropout"]["torch_note"] != "torch not installed"


def test_without_torch_a_wrong_backward_still_fails(monkeypatch, capsys):
    without_torch(monkeypatch)
    monkeypatch.setattr(ReLU, "backward", lambda self, dy: dy)
    code, out, _ = run_cli(["ReLU", "Linear"], capsys)
    assert code == 1
    assert "0 passed, 1 passed finite differences only, 1 failed: ReLU" in out
    assert [line.split()[0] for line in out.splitlines() if line.endswith("FAIL")] == ["ReLU"]


def test_with_torch_nothing_warns(full_report, capsys):
    if not HAVE_TORCH:
        pytest.skip("needs torch")
    _, report = full_report
    assert report["torch_ran"] is True and report["warning"] is None
    assert report["counts"] == {"passed": len(report["rows"]), "passed_fd_only": 0, "failed": 0, "not_checked": 0}
    assert all(row["torch_ran"] == (row["torch_note"] is None) for row in report["rows"])
    code, out, err = run(["Linear"], capsys)
    assert code == 0 and "NOT RUN" not in out and err == "" and out.rstrip().endswith("1 passed, 0 failed")


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

"""The table `minilm check` prints: one row per item, wrapped to fit a terminal (or 100 columns in a pipe).

Columns: the item, its formula (from the layer's docstring), the shapes checked, the finite-difference error,
the PyTorch error, the two tolerances and the result. Where all seven fit side by side (a wide terminal, or no
width given) each row is one line, the formula and shapes wrapped within their columns if need be; narrower,
the formula and the shapes go on indented lines under their row, whose first line keeps the name, both errors
and the result, so `grep FAIL` still finds the failed rows. PASS is green and FAIL red when the caller asks for
colour (stdout is a terminal and NO_COLOR is unset).

A row whose PyTorch half could not run because torch is missing shows "PASS (FD only)" and is counted apart
from the rows that passed everything they were built to check.
"""

import textwrap
import unicodedata

GREEN, RED, YELLOW, RESET = "\033[32m", "\033[31m", "\033[33m", "\033[0m"
TORCH_MISSING = "torch not installed"  # a row's torch_note when minilm.verify.reference could not import torch
NOT_RUN = ("PyTorch comparison NOT RUN: torch is not installed (pip install torch, or pip install '.[test]'); "
           "only finite differences were checked")
FD_ONLY = "PASS (FD only)"
FORMULA_MIN, SHAPES_MIN = 30, 26  # narrower than this, the formula and shapes go under their row
INDENT, HANG = 4, 6  # formula and shapes under their row; their continuation lines
FORMULA_SEPS, SHAPES_SEPS = ("; ", ", "), ("; ", " -> ", ", ")  # where a wrapped cell breaks, preferred first


def outcome(row):
    """The row's result as the table shows and counts it: a PASS without its torch half (torch missing) says so."""
    return FD_ONLY if row["result"] == "PASS" and row["torch_note"] == TORCH_MISSING else row["result"]


def counts(rows):
    """{passed, passed_fd_only, failed, not_checked}: every row lands in exactly one."""
    keys = {"PASS": "passed", FD_ONLY: "passed_fd_only", "FAIL": "failed", "SKIP": "not_checked"}
    found = {key: 0 for key in keys.values()}
    for row in rows:
        found[keys[outcome(row)]] += 1
    return found


def _cells(row):
    fd = "—" if row["fd_tol"] is None else "error" if row["fd_error"] is None else f"{row['fd_error']:.1e}"
    if row["torch_error"] is not None:
        torch = f"{row['torch_error']:.1e}"
    else:
        torch = {None: "error", TORCH_MISSING: "not installed"}.get(row["torch_note"], "n/a")
    fd_tol = "—" if row["fd_tol"] is None else f"{row['fd_tol']:.0e} {row['fd_tol_name'].split(chr(39))[1]}"
    return [row["name"], row["formula"], row["shapes"], fd, torch, f"{fd_tol} / {row['torch_tol']:.0e}", outcome(row)]


def _width(text):
    """Columns ``text`` takes on a terminal: combining marks (the hat of m̂) take none."""
    return sum(not unicodedata.combining(ch) for ch in text)


def _split_outside_brackets(text, sep):
    """``text`` cut after each ``sep`` that is not inside brackets; each part keeps the separator's mark."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch in "([{") - (ch in ")]}")
        if depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i + len(sep.rstrip())])
            start = i + len(sep)
    return parts + [text[start:]]


def _wrap(text, width, seps=FORMULA_SEPS):
    """Lines of at most ``width``: broken between "; " pieces first, then at top-level commas, then anywhere."""
    if _width(text) <= width:
        return [text]
    if not seps:
        return textwrap.wrap(text, width, break_on_hyphens=False) or [""]
    lines, current = [], ""
    for part in _split_outside_brackets(text, seps[0]):
        if current and _width(current) + 1 + _width(part) <= width:
            current += " " + part
            continue
        if current:
            lines.append(current)
        *done, current = _wrap(part, width, seps[1:])
        lines += done
    return lines + [current]


def _shrink(widths, floors, order, width):
    """The column widths narrowed, in ``order``, each down to its floor, until a line fits in ``width``."""
    widths = list(widths)
    for i in order:
        excess = sum(widths) + 2 * (len(widths) - 1) - width
        widths[i] -= max(0, min(excess, widths[i] - floors[i]))
    return widths


def _fold(text):
    """The narrowest width that holds ``text`` on two lines at most without breaking a word."""
    words = text.split()
    return min(max(_width(" ".join(words[:k])), _width(" ".join(words[k:]))) for k in range(len(words) + 1))


def _lines(cells, widths, seps, tint=None):
    """One row's lines: each cell wrapped to its column (at ``seps`` first), padded; the last one in ``tint``."""
    wrapped = [_wrap(cell, w, s) for cell, w, s in zip(cells, widths, seps)]
    lines = []
    for k in range(max(map(len, wrapped))):
        line = [column[k] if k < len(column) else "" for column in wrapped]
        text = "  ".join(c + " " * (w - _width(c)) for c, w in zip(line[:-1], widths[:-1]))
        last = f"{tint}{line[-1]}{RESET}" if tint and line[-1] else line[-1]
        lines.append(f"{text}  {last}".rstrip())
    return lines


def format_table(rows, dtype, colour=False, width=None):
    """The rows as a text table, every line at most ``width`` columns (down to about 50); None: no limit."""
    header = ["layer", "formula (from its docstring)", "shapes checked", "grad vs FD", f"vs torch {dtype}",
              "tolerance FD / torch", "result"]
    table = [header] + [_cells(row) for row in rows]
    natural = [max(_width(cells[i]) for cells in table) for i in range(len(header))]
    shade = {"PASS": GREEN, "FAIL": RED, FD_ONLY: YELLOW}
    colours = [None] + [shade.get(cells[-1]) if colour else None for cells in table[1:]]
    seps = [(), FORMULA_SEPS, SHAPES_SEPS, (), (), (), ()]  # (): between words, or inside one too long
    room = None if width is None else width - sum(natural) + natural[1] + natural[2] - 2 * (len(header) - 1)
    lines = []
    if room is None or room >= FORMULA_MIN + SHAPES_MIN:  # side by side: the formula and shapes in columns
        widths = list(natural)
        if room is not None and widths[1] + widths[2] > room:
            widths[2] = min(widths[2], max(SHAPES_MIN, room // 3))
            widths[1] = min(widths[1], max(FORMULA_MIN, room - widths[2]))
        for cells, tint in zip(table, colours):
            lines += _lines(cells, widths, seps, tint)
            if cells is header:
                lines.append("  ".join("-" * w for w in widths))
    else:  # stacked: name, errors, tolerances and result on the row's line, formula and shapes under it
        keep = [0, 3, 4, 5, 6]  # the row line's columns: name, FD, torch, tolerances, result
        order = [0, 4, 3, 1, 2]  # narrowed first to last: name, result, tolerances, FD, torch
        widths = [natural[i] for i in keep]
        two_lines = [max(_fold(cells[i]) for cells in table) for i in keep]
        words = [max(_width(word) for cells in table for word in cells[i].split()) for i in keep]
        for floors in (two_lines, words, [8, *words[1:]]):  # last, a name too long for the room breaks inside words
            widths = _shrink(widths, floors, order, width)
        for cells, tint in zip(table, colours):
            lines += _lines([cells[i] for i in keep], widths, [seps[i] for i in keep], tint)
            for i in (1, 2):
                first, *rest = _wrap(cells[i], width - HANG, seps[i])
                lines += [" " * INDENT + first] + [" " * HANG + line for line in rest]
            if cells is header:
                lines.append("  ".join("-" * w for w in widths))
    footer = _footer(rows, dtype)
    if width is not None:
        footer = [wrapped for line in footer for wrapped in textwrap.wrap(line, width - 1, subsequent_indent="    ")]
    lines += ["", *footer]
    return "\n".join(lines)


def _footer(rows, dtype):
    failed = [row["name"] for row in rows if row["passed"] is False]
    notes = sorted({f"{row['layer']}: {row['torch_note']}" for row in rows if row["torch_note"]
                    and row["torch_note"] != TORCH_MISSING})
    lines = ["grad vs FD: max element-wise relative error of every input and parameter gradient against float64 "
             "central differences; passes below tolerances.GRADCHECK[smooth | piecewise | model].",
             f"vs torch: max |ours - torch| / max |torch| over the output and every gradient in {dtype}, the "
             f"optimisers' parameters after each step; passes at or below tolerances.TORCH[{dtype!r}]['rtol'].",
             *notes]
    lines += [f"{row['name']}: {row['note']}" for row in rows if row["note"]]
    n = counts(rows)
    summary = [f"{n['passed']} passed"]
    if n["passed_fd_only"]:
        summary.append(f"{n['passed_fd_only']} passed finite differences only")
    summary.append(f"{n['failed']} failed")
    if n["not_checked"]:
        summary.append(f"{n['not_checked']} not checked (nothing to compare with)")
    lines.append(", ".join(summary) + (f": {', '.join(failed)}" if failed else ""))
    if any(row["torch_note"] == TORCH_MISSING for row in rows):
        lines.append(NOT_RUN)
    return lines

"""The table `minilm check` prints: one row per item, the formula and shapes wrapped to fit a terminal.

Columns: the item, its formula (from the layer's docstring), the shapes checked, the finite-difference error,
the PyTorch error, the two tolerances and the result. PASS is green and FAIL red when the caller asks for
colour (stdout is a terminal and NO_COLOR is unset); plain text otherwise, one line per row when no width is
given (a file, a pipe), so the output can be searched line by line.
"""

import textwrap
import unicodedata

GREEN, RED, RESET = "\033[32m", "\033[31m", "\033[0m"


def _cells(row):
    fd = "—" if row["fd_tol"] is None else "error" if row["fd_error"] is None else f"{row['fd_error']:.1e}"
    if row["torch_error"] is not None:
        torch = f"{row['torch_error']:.1e}"
    else:
        torch = {None: "error", "torch not installed": "torch not installed"}.get(row["torch_note"], "n/a")
    fd_tol = "—" if row["fd_tol"] is None else f"{row['fd_tol']:.0e} {row['fd_tol_name'].split(chr(39))[1]}"
    return [row["name"], row["formula"], row["shapes"], fd, torch, f"{fd_tol} / {row['torch_tol']:.0e}", row["result"]]


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


def _wrap(text, width, seps=("; ", ", ")):
    """Lines of at most ``width``: broken between "; " pieces first, then at top-level commas, then anywhere."""
    if len(text) <= width:
        return [text]
    if not seps:
        return textwrap.wrap(text, width, break_on_hyphens=False) or [""]
    lines, current = [], ""
    for part in _split_outside_brackets(text, seps[0]):
        if current and len(current) + 1 + len(part) <= width:
            current += " " + part
            continue
        if current:
            lines.append(current)
        *done, current = _wrap(part, width, seps[1:])
        lines += done
    return lines + [current]


def format_table(rows, dtype, colour=False, width=None):
    """The rows as a text table; ``width``: wrap the formula and shapes columns to fit a terminal that wide."""
    header = ["layer", "formula (from its docstring)", "shapes checked", "grad vs FD", f"vs torch {dtype}",
              "tolerance FD / torch", "result"]
    table = [header] + [_cells(row) for row in rows]
    widths = [max(_width(cells[i]) for cells in table) for i in range(len(header))]
    room = None if width is None else width - sum(widths) + widths[1] + widths[2] - 2 * (len(header) - 1)
    if room is not None and widths[1] + widths[2] > room:
        widths[2] = min(widths[2], max(26, room // 3))
        widths[1] = min(widths[1], max(30, room - widths[2]))
    lines = []
    for cells in table:
        formula, shapes = _wrap(cells[1], widths[1]), _wrap(cells[2], widths[2], ("; ", " -> ", ", "))
        for k in range(max(len(formula), len(shapes))):
            line = [cells[0] if k == 0 else "", formula[k] if k < len(formula) else "",
                    shapes[k] if k < len(shapes) else ""] + [c if k == 0 else "" for c in cells[3:]]
            text = "  ".join(c + " " * (w - _width(c)) for c, w in zip(line[:-1], widths[:-1]))
            result = line[-1]
            if colour and result in ("PASS", "FAIL"):
                result = f"{GREEN if result == 'PASS' else RED}{result}{RESET}"
            lines.append(f"{text}  {result}".rstrip())
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
                    and row["torch_note"] != "torch not installed"})
    lines = ["grad vs FD: max element-wise relative error of every input and parameter gradient against float64 "
             "central differences; passes below tolerances.GRADCHECK[smooth | piecewise | model].",
             f"vs torch: max |ours - torch| / max |torch| over the output and every gradient in {dtype}, the "
             f"optimisers' parameters after each step; passes at or below tolerances.TORCH[{dtype!r}]['rtol'].",
             *notes]
    lines += [f"{row['name']}: {row['note']}" for row in rows if row["note"]]
    counts = {result: sum(row["result"] == result for row in rows) for result in ("PASS", "FAIL", "SKIP")}
    summary = f"{counts['PASS']} passed, {counts['FAIL']} failed" + (
        f", {counts['SKIP']} not checked (nothing to compare with)" if counts["SKIP"] else "")
    return lines + [summary + (f": {', '.join(failed)}" if failed else "")]

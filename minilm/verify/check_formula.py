"""The formula of a `minilm check` row, read from its class's module docstring (never kept a second time).

The rule: find the first docstring line containing the item's anchor ("forward:" unless said otherwise);
the text after the anchor, then each following indented line, up to a line starting with "backward", a line
at column 0, or a line with no "=", "->" or "←", is one piece; a piece drops its comment (the text after a
gap of five spaces or more, or a final parenthesis after two) and pieces join with "; ". ``pick`` keeps
some pieces only (Softmax and LogSoftmax share one docstring). When nothing is found the fallback is the
first line of the class's own docstring, or a note saying which anchor is missing.
"""

import re
import sys


def _drop_final_parenthesis(text):
    """'mean((x - mu)²)   (biased: ...)' -> 'mean((x - mu)²)': a remark in parentheses ending the line."""
    if not text.endswith(")"):
        return text
    depth = 0
    for i in range(len(text) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(text[i], 0)
        if depth == 0:
            return text[:i].rstrip() if text[max(0, i - 2):i] == "  " else text
    return text


def _clean(text):
    chunks = re.split(r"\s{5,}", text.strip())  # the comment column starts after a gap of five spaces
    text = " ".join(chunks[:2]) if chunks[0].endswith(":") else chunks[0]  # "AdamW:      θ ← ..." is a label
    return " ".join(_drop_final_parenthesis(text.rstrip()).split()).rstrip(":")


def _is_formula(piece):
    return any(op in piece for op in ("=", "->", "←")) and not piece.startswith("backward")


def formula_pieces(doc, anchor):
    """The formula pieces after ``anchor`` in ``doc`` (see the module docstring); [] if the anchor is absent."""
    lines = (doc or "").splitlines()
    start = next((i for i, line in enumerate(lines) if anchor in line), None)
    if start is None:
        return []
    column = lines[start].index(anchor)
    first = _clean(lines[start][column + len(anchor):])
    pieces = [first] if _is_formula(first) else []
    for line in lines[start + 1:]:
        if not line.strip() or not line[:1].isspace():
            break
        piece = _clean(line[column:])
        if not _is_formula(piece):
            break
        pieces.append(piece)
    return pieces


def formula_of(item):
    """The item's formula in one line, from its owner's module docstring (or the documented fallback)."""
    doc = sys.modules[item.owner.__module__].__doc__
    pieces = formula_pieces(doc, item.anchor)
    if item.pick is not None:
        pieces = [pieces[i] for i in item.pick if i < len(pieces)]
    if pieces:
        return "; ".join(pieces)
    own = (item.owner.__doc__ or "").strip().splitlines()
    return own[0] if own else f"(no {item.anchor!r} line in the {item.owner.__module__} docstring)"

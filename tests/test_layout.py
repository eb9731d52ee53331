"""The house: each sub-package imports only the floors below it (no import circles), and no module is long."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "minilm"
# sub-package -> what it may import, lowest floor first: text -> ids -> model -> loss -> backward -> optimiser
# -> checkpoint reads top to bottom. Each sub-package's docstring says the same in words.
MAY_IMPORT = {
    "blocks": set(),  # NumPy only, under backend: its fused kernels run over cache-sized blocks on NumPy
    "backend": {"blocks"},
    "atomic": set(),
    "watchdog": set(),
    "communicator": {"backend", "watchdog"},
    "nn": {"backend"},
    "models": {"backend", "nn"},
    "optim": {"backend", "nn"},
    "data": {"backend", "atomic"},
    "files": {"backend", "atomic", "nn", "models", "data"},
    "verify": {"backend", "nn", "models", "optim"},
    "training": {"backend", "atomic", "communicator", "nn", "models", "optim", "data", "files"},
    "viz": {"backend", "atomic", "nn", "models", "data", "files", "training"},
    "cli": {"backend", "atomic", "communicator", "nn", "models", "optim", "data", "files", "verify", "training",
            "viz"},
}
LONGEST = 300  # lines; most modules stay under ~200 (STYLE.md)


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        yield path, parts[0] if len(parts) > 1 else parts[0]


def floor(dotted):
    """'minilm.nn.attention' -> 'nn'; 'minilm' -> None (the package face)."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else None


def imported(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minilm"):
            yield from ([f"minilm.{a.name}" for a in node.names] if node.module == "minilm" else [node.module])
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("minilm"))


@pytest.mark.parametrize("path, unit", [(p, u) for p, u in modules() if u in MAY_IMPORT],
                         ids=lambda v: str(v.relative_to(PACKAGE)) if isinstance(v, pathlib.Path) else v)
def test_each_floor_imports_only_the_floors_below(path, unit):
    for name in imported(path):
        target = floor(name)
        assert target in (None, unit) or target in MAY_IMPORT[unit], f"{unit} imports {name}"


def test_every_sub_package_is_placed_and_says_what_it_holds():
    for folder in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").exists()):
        assert folder.name in MAY_IMPORT, f"minilm/{folder.name} is on no floor of MAY_IMPORT"
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
        assert "May import" in doc, f"minilm/{folder.name}/__init__.py does not say what it may import"


def test_no_module_is_longer_than_300_lines():
    long = {str(p.relative_to(PACKAGE)): n for p, _ in modules() if (n := len(p.read_text().splitlines())) > LONGEST}
    assert not long, long

"""docs/reliability.md names its tests; every named test must exist, so the table stays true."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
# `tests/x/test_y.py::test_name` or `tests/x/test_y.py::test_name[param]`; `…::other` and
# `::other` refer to the file named last.
CELL = re.compile(r"`(?:(tests/[\w/]+\.py)|…)?::(test_\w+)")


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def test_every_test_named_in_the_reliability_table_exists() -> None:
    missing: list[str] = []
    named = 0
    current: str | None = None  # "…::name" means the file named last
    for line in DOC.read_text().splitlines():
        if not line.startswith("|"):
            continue
        for match in CELL.finditer(line):
            path, name = match.groups()
            current = path or current
            assert current is not None, f"'…::{name}' before any file in {DOC.name}"
            named += 1
            if name not in _functions(ROOT / current):
                missing.append(f"{current}::{name}")
    assert named >= 30, f"only {named} tests found in {DOC.name}: is the pattern still right?"
    assert not missing, f"{DOC.name} names tests that do not exist: {missing}"

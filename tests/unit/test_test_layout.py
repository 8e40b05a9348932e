"""Tests never import each other: what two test modules share lives in testkit/ or in a support
module beside them (issue 13: one test kit)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
TEST_MODULE = re.compile(r"^tests(\.\w+)*\.test_\w+$")


def test_no_test_module_imports_another() -> None:
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            offenders += [f"{path.relative_to(TESTS)}: {n}" for n in names if TEST_MODULE.match(n)]
    assert offenders == []

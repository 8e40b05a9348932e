"""Fails when a hand-written Python module is over MAX_LINES lines (`make lint`).

A module that long holds more than one idea; split it by idea (the house rule aims at ~600).
Generated code (shared/gen) and virtual environments are not counted.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

MAX_LINES = 800
ROOT = Path(__file__).resolve().parents[1]
SKIPPED = ("shared/gen/", "build/", "out/")  # Generated or produced, not written by hand.


def modules(root: Path = ROOT) -> Iterator[Path]:
    """Every hand-written .py file under root (hidden directories such as .venv left out)."""
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if relative.as_posix().startswith(SKIPPED):
            continue
        yield path


def oversized(root: Path = ROOT, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """(path, lines) of every module over `limit`, longest first."""
    found = []
    for path in modules(root):
        with path.open("rb") as handle:
            lines = sum(1 for _ in handle)
        if lines > limit:
            found.append((path.relative_to(root).as_posix(), lines))
    return sorted(found, key=lambda item: -item[1])


def main() -> int:
    found = oversized()
    for path, lines in found:
        print(f"{path}: {lines} lines (limit {MAX_LINES}): split it by idea")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

"""The README's configuration table, written from the settings' declarations.

`python -m shared.config.table` rewrites the table between the markers in README.md (`make
config-table`); `--check` exits 1 when it is stale (`make lint`), so the docs cannot drift from
the code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.config import ENV_VARS, EnvVar

START = "<!-- config-table:start (make config-table writes this table) -->"
END = "<!-- config-table:end -->"
README = Path(__file__).resolve().parents[2] / "README.md"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _row(var: EnvVar) -> str:
    values = var.kind.values or "text"
    return f"| `{var.name}` | {_cell(var.default_text)} | {_cell(values)} | {_cell(var.doc)} |"


def render() -> str:
    """The table, one section a group of settings, between the markers."""
    lines = [START]
    group = ""
    for var in ENV_VARS:
        if var.group != group:
            group = var.group
            lines += ["", f"**{group}**", "", "| variable | default | values | meaning |"]
            lines.append("| --- | --- | --- | --- |")
        lines.append(_row(var))
    lines += ["", END]
    return "\n".join(lines)


def updated(text: str) -> str:
    """`text` with the table between the markers replaced; ValueError when a marker is missing."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the README needs the markers {START!r} and {END!r}")
    return text[:start] + render() + text[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the table is stale")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    new = updated(text)
    if args.check:
        if new != text:
            print(f"{args.readme}: the configuration table is stale; run `make config-table`")
            return 1
        return 0
    if new != text:
        args.readme.write_text(new, encoding="utf-8")
        print(f"{args.readme}: configuration table written ({len(ENV_VARS)} variables)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fails when code imports a third-party package the project does not declare (`make lint`).

Runtime code (shared/, services/, doppel/) may import only the direct dependencies of
pyproject.toml, each also pinned in requirements.txt; benchmarks, the test kit, tests and
scripts may import anything pinned in requirements.txt or requirements-dev.txt. An import name
is mapped to its distribution through the installed metadata (`yaml` is PyYAML), so run it in
the project's virtualenv. Imports are read with `ast`, those inside functions and under
`TYPE_CHECKING` too.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ("shared", "services", "doppel")
DEVELOPMENT = ("bench", "testkit", "tests", "scripts")
FIRST_PARTY = {*RUNTIME, *DEVELOPMENT, "doppelganger"}
SKIPPED = ("shared/gen/",)


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(line: str) -> str | None:
    line = line.split("#", 1)[0].strip()
    if not line or line.startswith("-"):
        return None
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
    return normalize(match.group(0)) if match else None


def pinned(*files: str, root: Path = ROOT) -> set[str]:
    names = set()
    for name in files:
        for line in (root / name).read_text(encoding="utf-8").splitlines():
            if found := _requirement_name(line):
                names.add(found)
    return names


def direct_dependencies(root: Path = ROOT) -> set[str]:
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {name for line in project["dependencies"] if (name := _requirement_name(line))}


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level name) of every absolute import in the module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


def third_party(name: str) -> bool:
    return name not in FIRST_PARTY and name not in sys.stdlib_module_names and name != "__future__"


def problems(root: Path = ROOT) -> list[str]:
    distributions = metadata.packages_distributions()
    runtime_allowed = direct_dependencies(root) & pinned("requirements.txt", root=root)
    development_allowed = pinned("requirements.txt", "requirements-dev.txt", root=root)
    found = []
    for top in (*RUNTIME, *DEVELOPMENT):
        for path in sorted((root / top).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if relative.startswith(SKIPPED):
                continue
            allowed, where = (
                (runtime_allowed, "pyproject.toml dependencies and requirements.txt")
                if top in RUNTIME
                else (development_allowed, "requirements.txt or requirements-dev.txt")
            )
            for line, name in imports(path):
                if not third_party(name):
                    continue
                owners = {normalize(owner) for owner in distributions.get(name, ())}
                if not owners:
                    found.append(f"{relative}:{line}: imports {name}, which no installed "
                                 "distribution provides (install it, pinned)")  # fmt: skip
                elif not owners & allowed:
                    shown = ", ".join(sorted(owners))
                    found.append(f"{relative}:{line}: imports {name} ({shown}), not in {where}")
    return found


def main() -> int:
    found = problems()
    for problem in found:
        print(problem)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

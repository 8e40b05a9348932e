"""The import graph of services/, shared/, bench/ and doppel/: acyclic, private modules stay
private, and shared/ imports nothing above it.

Built from the source with `ast`, every import counted, those under `if TYPE_CHECKING:` too (a
cycle hidden from the interpreter is still a cycle for the reader). Importing `a.b.c` also runs
the `__init__` of `a.b`, so the importer depends on every package on the way that is not one of
its own ancestors.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("services", "shared", "bench", "doppel", "testkit")
SKIPPED = ("shared/gen",)  # generated protobuf stubs (import path `doppelganger`)


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every Python module of PACKAGES."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if any(relative.as_posix().startswith(skipped) for skipped in SKIPPED):
                continue
            parts = list(relative.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imported(tree: ast.Module, module: str, is_package: bool) -> Iterator[str]:
    """Every dotted name the module imports (and `from x import y`: x.y when y is a module)."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            source = ".".join([*base, *([node.module] if node.module else [])])
            yield source
            yield from (f"{source}.{alias.name}" for alias in node.names)


@cache
def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        own = {".".join(name.split(".")[:end]) for end in range(1, name.count(".") + 2)}
        for target in _imported(tree, name, path.name == "__init__.py"):
            parts = target.split(".")
            for end in range(1, len(parts) + 1):
                step = ".".join(parts[:end])
                if step in modules and step not in own:
                    graph[name].add(step)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for successor in sorted(graph[node]):
            if state.get(successor) == 1:
                return [*path[path.index(successor) :], successor]
            if successor not in state and (found := visit(successor)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_the_graph_sees_the_modules_and_their_imports() -> None:
    graph = _graph()
    assert "services.script.pipeline" in graph and "testkit.llm_server" in graph
    assert "services.script.procedural" in graph["services.script.comedy"]
    assert "services.script.catalog" in graph["services.script.requests"]


def test_cycle_detection_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_services_shared_and_bench_import_no_cycle() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_private_modules_are_imported_only_from_their_own_package() -> None:
    """`a.b._c` is imported only by modules inside `a.b`: others use the package's `__all__`."""
    leaks = []
    for name, targets in _graph().items():
        for target in targets:
            parts = target.split(".")
            private = [i for i, part in enumerate(parts) if part.startswith("_")]
            if not private:
                continue
            owner = ".".join(parts[: private[0]])
            if name != owner and not name.startswith(owner + "."):
                leaks.append(f"{name} imports {target}")
    assert not leaks, leaks


def test_shared_imports_nothing_above_it() -> None:
    """shared/ is the runtime every service stands on: it imports no service, bench or CLI."""
    above = ("services", "bench", "doppel", "testkit")
    leaks = [
        f"{name} imports {target}"
        for name, targets in _graph().items()
        if name.split(".")[0] == "shared"
        for target in targets
        if target.split(".")[0] in above
    ]
    assert not leaks, leaks

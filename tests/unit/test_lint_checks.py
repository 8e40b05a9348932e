"""The checks `make lint` runs beside ruff and mypy: module size and declared dependencies."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _script(name: str) -> ModuleType:
    """A module of scripts/ (not a package: CI runs them as files)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and typing look modules up by name.
    spec.loader.exec_module(module)
    return module


size = _script("check_module_size")
deps = _script("check_dependencies")


def test_a_module_over_the_limit_is_reported_and_generated_code_is_not(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "long.py").write_text("x = 1\n" * 801)
    (tmp_path / "pkg" / "fine.py").write_text("x = 1\n" * 800)
    (tmp_path / "shared" / "gen").mkdir(parents=True)
    (tmp_path / "shared" / "gen" / "stubs_pb2.py").write_text("x = 1\n" * 5000)
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "site.py").write_text("x = 1\n" * 5000)
    assert size.oversized(tmp_path) == [("pkg/long.py", 801)]


def test_no_hand_written_module_of_the_repo_is_over_the_limit() -> None:
    assert size.oversized() == []


def test_imports_are_read_from_anywhere_in_a_module(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import os.path\nfrom typing import TYPE_CHECKING\nfrom . import sibling\n"
        "if TYPE_CHECKING:\n    import yaml\n"
        "def f():\n    from pydantic import BaseModel\n"
    )
    names = {name for _, name in deps.imports(module)}
    assert names == {"os", "typing", "yaml", "pydantic"}
    assert [name for name in sorted(names) if deps.third_party(name)] == ["pydantic", "yaml"]


def test_requirement_lines_give_normalized_names() -> None:
    assert deps._requirement_name("PyYAML==6.0.3  # comment") == "pyyaml"
    assert deps._requirement_name("sqlalchemy[asyncio]") == "sqlalchemy"
    assert deps._requirement_name("ruamel.yaml==0.19.1") == "ruamel-yaml"
    assert deps._requirement_name("-r requirements.txt") is None
    assert deps._requirement_name("# a comment") is None


def test_every_imported_package_of_the_repo_is_declared() -> None:
    assert "pydantic" in deps.direct_dependencies()
    assert deps.problems() == []


def test_an_undeclared_import_is_reported_where_it_is(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = ["grpcio"]\n')
    (tmp_path / "requirements.txt").write_text("grpcio==1.0\npydantic==2.0\n")
    (tmp_path / "requirements-dev.txt").write_text("-r requirements.txt\npytest==9.0\n")
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "a.py").write_text("import grpc\nfrom pydantic import BaseModel\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text("import pydantic\nimport pytest\nimport no_such_pkg\n")
    found = deps.problems(tmp_path)
    assert len(found) == 2, found
    assert found[0].startswith("services/a.py:2: imports pydantic (pydantic), not in pyproject")
    assert found[1].startswith("tests/t.py:3: imports no_such_pkg, which no installed")

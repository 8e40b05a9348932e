"""The Dockerfile, checked without a Docker engine (none runs here): its instructions are parsed
and its build stage is replayed with pip in a temporary directory, so what the image would hold is
checked for real."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Instruction:
    stage: str
    keyword: str
    arguments: str


def instructions() -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped, tagged with their stage."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    parsed, stage = [], ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        if keyword.upper() == "FROM":
            stage = arguments.split(" AS ")[-1].strip() if " AS " in arguments else arguments
        parsed.append(Instruction(stage, keyword.upper(), arguments.strip()))
    return parsed


def in_stage(stage: str, keyword: str) -> list[str]:
    return [i.arguments for i in instructions() if i.stage == stage and i.keyword == keyword]


def test_multi_stage_from_a_pinned_python_image() -> None:
    stages = [i.arguments for i in instructions() if i.keyword == "FROM"]
    assert stages == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    (default,) = [i.arguments for i in instructions() if i.keyword == "ARG" and not i.stage]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm", default)


def test_runtime_runs_as_an_unprivileged_user_and_keeps_only_the_venv() -> None:
    (user,) = in_stage("runtime", "USER")
    uid, gid = (int(part) for part in user.split(":"))
    assert uid > 0 and gid > 0
    assert in_stage("runtime", "COPY") == ["--from=build /opt/venv /opt/venv"]
    assert not in_stage("runtime", "RUN")[0].count("pip install")


def test_dependencies_come_from_the_exact_pins() -> None:
    runs = " ".join(in_stage("build", "RUN"))
    assert "pip install --require-virtualenv -r requirements.txt" in runs
    pins = [
        line for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]  # fmt: skip
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", pin) for pin in pins), pins


def test_health_check_speaks_grpc_health() -> None:
    (healthcheck,) = [i.arguments for i in instructions() if i.keyword == "HEALTHCHECK"]
    assert healthcheck.endswith('CMD ["python", "-m", "shared.healthcheck"]')
    assert in_stage("runtime", "CMD") == ['["python", "-m", "services.monitor"]']


def test_build_stage_produces_every_module_and_data_file(tmp_path: Path) -> None:
    """Replays the build stage's COPY lines and builds the package the way `pip install .` does."""
    context = tmp_path / "context"
    context.mkdir()
    for arguments in in_stage("build", "COPY"):
        *sources, _destination = arguments.split()
        for source in sources:
            origin = ROOT / source
            target = context / source
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(origin, target)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "wheels"), str(context)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for service in ("script", "scene", "cache", "monitor"):
        assert f"services/{service}/__main__.py" in names
    assert {
        "shared/healthcheck.py",
        "services/script/catalog/shows.json",
        "doppelganger/v1/script_pb2.py",
        # The library's migrations: `python -m services.script.library migrate` in the image.
        "services/script/library/schema/env.py",
        "services/script/library/schema/script.py.mako",
        "services/script/library/schema/versions/0001_initial_schema.py",
    } <= names


def test_dockerignore_keeps_the_context_small_and_secret_free() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "tests", "out"} <= ignored
    copied = {a.split()[0] for a in in_stage("build", "COPY")}
    assert copied == {
        "requirements.txt", "pyproject.toml", "shared", "services", "bench", "testkit", "doppel",
    }  # fmt: skip
    assert not copied & ignored

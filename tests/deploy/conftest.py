"""Paths and helpers of the deployment checks (tests/deploy)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def require_command(name: str) -> str:
    """The path of a command the check drives; fails (never skips) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/system_deps.sh (make test does)")
    return path

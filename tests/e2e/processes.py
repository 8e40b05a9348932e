"""Helpers for end-to-end tests that run `doppel up` as a real process."""

from __future__ import annotations

import subprocess
import time


def read_until_ready(process: subprocess.Popen[str], timeout: float) -> list[str]:
    """`doppel up`'s output lines up to its `ready` line; fails if it exits or takes too long."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"doppel up exited early: {lines}")
        lines.append(line.rstrip())
        if line.startswith("ready"):
            return lines
    raise AssertionError(f"doppel up not ready in {timeout}s: {lines}")

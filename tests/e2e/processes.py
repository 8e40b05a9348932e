"""Helpers for end-to-end tests that run `doppel up` as a real process."""

from __future__ import annotations

import signal
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


def stop_up(process: subprocess.Popen[str]) -> None:
    """Stops a running `doppel up` as a user does (SIGTERM: it stops its services and Redis);
    SIGKILL only if that hangs. A SIGKILLed `doppel up` leaves its children running."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()

"""Real processes for the benchmarks: the stack, or some of its services, on free ports."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psutil

from doppel.stack import SERVICES, Stack
from shared.config import Settings


def free_port() -> int:
    """A TCP port that was free a moment ago (for child processes that cannot report theirs)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stack_env(telemetry: bool, extra: dict[str, str] | None = None) -> dict[str, str]:
    """An environment with every port free and telemetry on or off."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DOPPEL_")}
    for key in ("REDIS_URL", "OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        env.pop(key, None)
    for name in ("SCRIPT", "SCENE", "CACHE", "MONITOR", "MONITOR_HTTP"):
        env[f"DOPPEL_{name}_PORT"] = str(free_port())
    env["DOPPEL_LOG_LEVEL"] = "WARNING"
    env["OTEL_SDK_DISABLED"] = "false" if telemetry else "true"
    env.update(extra or {})
    return env


@contextmanager
def running(
    env: dict[str, str], services: Sequence[str] = SERVICES, log_dir: Path | None = None
) -> Iterator[Stack]:
    """The stack, its script service on an empty library in a temporary DOPPEL_DATA_DIR (unless
    `env` names one): a new episode is really written, run after run."""
    with tempfile.TemporaryDirectory(prefix="doppel-bench-data-") as data_dir:
        env = {"DOPPEL_DATA_DIR": data_dir, **env}
        stack = Stack(Settings.from_env(env), log_dir=log_dir, services=services, env=env)
        with stack:
            yield stack


def rss_bytes(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)

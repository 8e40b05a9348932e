"""Real processes for the benchmarks: the stack, or some of its services, on free ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from doppel.stack import SERVICES, Stack, wait_until_serving
from shared.config import Settings
from testkit import free_port


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


@dataclass
class Replica:
    """One `python -m services.script` child."""

    name: str
    address: str
    process: subprocess.Popen[bytes]


@contextmanager
def script_replicas(
    count: int,
    env: Mapping[str, str],
    each: Callable[[int], Mapping[str, str]] = lambda index: {},
    log_dir: Path | None = None,
    startup_timeout: float = 180.0,
) -> Iterator[list[Replica]]:
    """`count` script service processes, each on its own free port, with `env` and `each(i)`
    (pointed at a cache and scene service with DOPPEL_CACHE_TARGET / DOPPEL_SCENE_TARGET);
    started together, serving when yielded, stopped with SIGTERM (then SIGKILL) on exit."""
    replicas: list[Replica] = []
    with ExitStack() as logs:
        try:
            for index in range(count):
                port = free_port()
                child_env = {**env, **each(index), "DOPPEL_SCRIPT_PORT": str(port)}
                out = None
                if log_dir is not None:
                    log_dir.mkdir(parents=True, exist_ok=True)
                    out = logs.enter_context((log_dir / f"script-{index}.log").open("ab"))
                process = subprocess.Popen(
                    [sys.executable, "-m", "services.script"], env=child_env,
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT if out else None,
                )  # fmt: skip
                replicas.append(Replica(f"script-{index}", f"127.0.0.1:{port}", process))
            for replica in replicas:
                wait_until_serving(replica.address, startup_timeout, replica.process)
            yield replicas
        finally:
            for replica in replicas:
                if replica.process.poll() is None:
                    replica.process.send_signal(signal.SIGTERM)
            for replica in replicas:
                try:
                    replica.process.wait(15)
                except subprocess.TimeoutExpired:
                    replica.process.kill()
                    replica.process.wait()

"""`doppel up`: Redis (when REDIS_URL is unset) and the four services as child processes.

Services start in dependency order (monitor first, so telemetry has somewhere to go) and count
as up only when they answer grpc.health.v1.Health/Check with SERVING (asked over TLS, with the
client certificate, when `settings` configure it). They stop in reverse order
with SIGTERM, each given its grace period, the monitor last so it receives everyone's final spans.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared import security
from shared.config import Settings
from shared.redis_server import RedisServer

SERVICES = ("monitor", "cache", "scene", "script")


class StackError(RuntimeError):
    """A service did not come up."""


@dataclass
class ChildService:
    name: str
    address: str
    process: subprocess.Popen[bytes]
    log_file: IO[bytes] | None


def address_of(settings: Settings, name: str) -> str:
    addresses = {
        "monitor": settings.monitor_address,
        "cache": settings.cache_address,
        "scene": settings.scene_address,
        "script": settings.script_address,
    }
    return addresses[name]


def wait_until_serving(
    address: str,
    timeout: float,
    process: subprocess.Popen[bytes],
    settings: Settings | None = None,
) -> None:
    """Polls the standard health service until SERVING; fails fast if the process exits.

    With `settings`, over TLS (and mutual TLS) when they configure it; plaintext otherwise.
    """
    deadline = time.monotonic() + timeout
    with security.probe_channel(address, settings) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StackError(f"{address}: process exited with {process.returncode}")
            try:
                response = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise StackError(f"{address}: not SERVING within {timeout:.0f}s")


class Stack:
    """Starts and stops the whole studio on this machine."""

    def __init__(
        self,
        settings: Settings,
        log_dir: Path | None = None,
        startup_timeout: float = 30.0,
        *,
        services: Sequence[str] = SERVICES,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`env` is the children's environment (default: this process's); `settings` must
        describe the same addresses, e.g. `Settings.from_env(env)`."""
        self.settings = settings
        self.log_dir = log_dir
        self.startup_timeout = startup_timeout
        self.services = tuple(name for name in SERVICES if name in services)
        self._env = dict(os.environ if env is None else env)
        self.redis: RedisServer | None = None
        self.children: list[ChildService] = []

    def start(self) -> Stack:
        """Raises ConfigError (naming the variable) before starting anything on bad TLS files."""
        security.check_tls(self.settings)
        env = dict(self._env)
        try:
            if not self.settings.redis_url and "cache" in self.services:
                self.redis = RedisServer().start()
                env["REDIS_URL"] = self.redis.url
            for name in self.services:
                self._start_service(name, env)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_service(self, name: str, env: dict[str, str]) -> None:
        log_file = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_file = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT if log_file else None,
        )
        child = ChildService(name, address_of(self.settings, name), process, log_file)
        self.children.append(child)
        wait_until_serving(child.address, self.startup_timeout, process, self.settings)

    def pid(self, name: str) -> int:
        """Process id of a running service."""
        return next(child.process.pid for child in self.children if child.name == name)

    def exited(self) -> list[ChildService]:
        """Children that have stopped on their own."""
        return [child for child in self.children if child.process.poll() is not None]

    def stop(self) -> dict[str, int | None]:
        """SIGTERM in reverse order; returns each service's exit code."""
        codes: dict[str, int | None] = {}
        wait = self.settings.grace_seconds + 5.0
        for child in reversed(self.children):
            codes[child.name] = _terminate(child.process, wait)
            if child.log_file:
                child.log_file.close()
        self.children.clear()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        return codes

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def _terminate(process: subprocess.Popen[bytes], wait: float) -> int | None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode

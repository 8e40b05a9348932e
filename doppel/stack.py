"""`doppel up`: Redis (when REDIS_URL is unset) and the four services as child processes.

Services start in dependency order (monitor first, so telemetry has somewhere to go) and count
as up only when they answer grpc.health.v1.Health/Check with SERVING (asked over TLS, with the
client certificate, when `settings` configure it) *and* the child started now is the process
listening on each of its ports. A health answer alone could come from another stack already on
those ports (the child then fails to bind and exits): so each port is checked free before its
child starts, and the child's own listening sockets are checked after. A taken port stops the
start with `PortInUse` ("port 50052 is in use by another process", naming the service and the
variable that sets the port), and everything already started is stopped. They stop in reverse
order with SIGTERM, each given its grace period, the monitor last so it receives everyone's final
spans.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import grpc
import psutil
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared import security
from shared.config import ENV_VARS, Settings
from shared.redis_server import RedisServer

SERVICES = ("monitor", "cache", "scene", "script")
# The settings fields of the ports each service listens on.
SERVICE_PORTS: Mapping[str, tuple[str, ...]] = {
    "monitor": ("monitor_port", "monitor_http_port"),
    "cache": ("cache_port",),
    "scene": ("scene_port",),
    "script": ("script_port",),
}
_VARIABLE_OF_FIELD = {var.field: var.name for var in ENV_VARS}
POLL_SECONDS = 0.05


class StackError(RuntimeError):
    """A service did not come up."""


class PortInUse(StackError):
    """Another process listens on a port a service of this stack needs."""

    def __init__(self, port: ListenPort, holder: int | None) -> None:
        who = f" (pid {holder})" if holder else ""
        super().__init__(
            f"port {port.number} is in use by another process{who}: {port.service} cannot "
            f"listen on it; stop that process or set {port.variable} to a free port"
        )
        self.port = port
        self.holder = holder


@dataclass(frozen=True)
class ListenPort:
    """A port a service listens on, and the variable that sets it."""

    service: str
    number: int
    variable: str


def listen_ports(settings: Settings, name: str) -> list[ListenPort]:
    """The ports service `name` will listen on (0, "the OS picks", cannot collide)."""
    ports = [
        ListenPort(name, getattr(settings, field), _VARIABLE_OF_FIELD[field])
        for field in SERVICE_PORTS[name]
    ]
    return [port for port in ports if port.number]


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could bind `host:port` now: a probe socket binds it the way gRPC and
    asyncio do (SO_REUSEADDR, so a just-closed connection in TIME_WAIT does not count)."""
    try:
        addresses = socket.getaddrinfo(
            host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        return True  # An unresolvable host: the child reports it.
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return False
    return True


def listening_ports_of(pid: int) -> set[int]:
    """TCP ports process `pid` itself listens on (empty once it has exited)."""
    try:
        connections = psutil.Process(pid).net_connections(kind="inet")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return set()
    return {conn.laddr.port for conn in connections if conn.status == psutil.CONN_LISTEN}


def holder_of(port: int) -> int | None:
    """The pid listening on `port`, when this user may see it; None otherwise."""
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, OSError):
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return int(conn.pid)
    return None


def check_ports_free(settings: Settings, name: str) -> None:
    """Raises PortInUse for the first of `name`'s ports another process listens on."""
    for port in listen_ports(settings, name):
        if not port_is_free(settings.host, port.number):
            raise PortInUse(port, holder_of(port.number))


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
            time.sleep(POLL_SECONDS)
    raise StackError(f"{address}: not SERVING within {timeout:.0f}s")


def wait_until_listening(
    process: subprocess.Popen[bytes], ports: Sequence[ListenPort], host: str, timeout: float
) -> None:
    """Waits until `process` itself listens on every one of `ports`. When it exits first, or
    the time runs out, a port another process holds is named (PortInUse)."""
    deadline = time.monotonic() + timeout
    wanted = {port.number for port in ports}
    while time.monotonic() < deadline and process.poll() is None:
        if wanted <= listening_ports_of(process.pid):
            return
        time.sleep(POLL_SECONDS)
    taken = taken_port(process, ports, host)
    if taken is not None:
        raise taken
    service = ports[0].service if ports else "service"
    if process.poll() is not None:
        raise StackError(f"{service}: process exited with {process.returncode}")
    raise StackError(f"{service}: not listening on its ports within {timeout:.0f}s")


def taken_port(
    process: subprocess.Popen[bytes], ports: Sequence[ListenPort], host: str
) -> PortInUse | None:
    """A port of `ports` that another process than `process` listens on, if any."""
    held = listening_ports_of(process.pid) if process.poll() is None else set()
    for port in ports:
        if port.number not in held and not port_is_free(host, port.number):
            return PortInUse(port, holder_of(port.number))
    return None


def check_redis_is_ours(server: RedisServer) -> None:
    """The Redis answering on `server.url` is the redis-server this stack started. Its socket
    sits in a fresh private directory, so nothing else should answer there; this makes sure."""
    client = redis.Redis.from_url(server.url)
    try:
        serving_pid = int(client.info("server")["process_id"])
    finally:
        client.close()
    if serving_pid != server.pid:
        raise StackError(
            f"redis at {server.url} is served by pid {serving_pid}, not by the redis-server "
            f"this stack started (pid {server.pid})"
        )


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
        """Raises ConfigError (naming the variable) before starting anything on bad TLS files,
        and PortInUse on a taken port (stopping whatever it had started by then)."""
        security.check_tls(self.settings)
        for name in self.services:  # Before starting anything; again before each child.
            check_ports_free(self.settings, name)
        env = dict(self._env)
        try:
            if not self.settings.redis_url and "cache" in self.services:
                self.redis = RedisServer().start()
                check_redis_is_ours(self.redis)
                env["REDIS_URL"] = self.redis.url
            for name in self.services:
                self._start_service(name, env)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_service(self, name: str, env: dict[str, str]) -> None:
        """Starts `name` on free ports and waits until it, not another process, serves."""
        check_ports_free(self.settings, name)  # Taken since start() looked, or by a sibling.
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
        ports = listen_ports(self.settings, name)
        started = time.monotonic()
        try:
            wait_until_serving(child.address, self.startup_timeout, process, self.settings)
        except StackError as exc:  # It exited or never answered: a taken port says why.
            taken = taken_port(process, ports, self.settings.host)
            if taken is not None:
                raise taken from exc
            raise
        left = max(self.startup_timeout - (time.monotonic() - started), 1.0)
        wait_until_listening(process, ports, self.settings.host, left)

    def pid(self, name: str) -> int:
        """Process id of a running service."""
        return next(child.process.pid for child in self.children if child.name == name)

    def exited(self) -> list[ChildService]:
        """Children that have stopped on their own."""
        return [child for child in self.children if child.process.poll() is not None]

    def stop(self) -> dict[str, int | None]:
        """SIGTERM in reverse order (a Ctrl-C meanwhile kills the rest at once); returns each
        service's exit code."""
        codes: dict[str, int | None] = {}
        wait = self.settings.grace_seconds + 5.0
        try:
            for child in reversed(self.children):
                codes[child.name] = _terminate(child.process, wait)
        except KeyboardInterrupt:  # A second Ctrl-C: no more waiting, every child killed now.
            for child in self.children:
                if child.process.poll() is None:
                    child.process.kill()
                codes[child.name] = child.process.wait()
        for child in self.children:
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

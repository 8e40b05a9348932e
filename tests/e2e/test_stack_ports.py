"""`doppel up` on ports another process already holds: a clear failure, not a false "ready".

Another stack answering health checks on our ports used to make `doppel up` say ready while its
own children failed to bind. Now each port is checked free before its child starts, and a child
counts as up only once it is the process listening on its ports (doppel/stack.py).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from doppel.stack import (
    ListenPort,
    PortInUse,
    StackError,
    check_redis_is_ours,
    wait_until_listening,
)
from shared.redis_server import RedisServer
from testkit import free_port

pytestmark = pytest.mark.e2e

MARKER = "DOPPEL_E2E_PORTS_RUN"  # Not a setting: marks every process this test's stack starts.
PORTS = {
    "script": "DOPPEL_SCRIPT_PORT",
    "scene": "DOPPEL_SCENE_PORT",
    "cache": "DOPPEL_CACHE_PORT",
    "monitor": "DOPPEL_MONITOR_PORT",
    "http": "DOPPEL_MONITOR_HTTP_PORT",
}


def stack_env(ports: dict[str, int], run: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DOPPEL_")}
    env.update({variable: str(ports[name]) for name, variable in PORTS.items()})
    env.update({MARKER: run, "OTEL_SDK_DISABLED": "true", "PYTHONUNBUFFERED": "1"})
    env.pop("REDIS_URL", None)
    return env


def doppel_up(env: dict[str, str], log_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "doppel.cli", "up", "--log-dir", str(log_dir)],
        env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def processes_of_run(run: str) -> list[psutil.Process]:
    """Processes still alive whose environment carries this run's marker."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARKER) == run:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def other_stack_scene() -> Iterator[int]:
    """Another stack's scene service, as far as a health check can tell: a real gRPC server on
    a port, answering SERVING, in this (test) process."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(0)


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port held by a plain listening socket in this process."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def test_up_refuses_a_port_another_stack_serves_before_starting_anything(
    other_stack_scene: int, tmp_path: Path
) -> None:
    ports = {name: free_port() for name in PORTS} | {"scene": other_stack_scene}
    run = uuid.uuid4().hex
    result = doppel_up(stack_env(ports, run), tmp_path)
    output = one_line(result.stdout + result.stderr)
    assert result.returncode == 1, output
    assert "ready" not in output
    assert (
        f"port {other_stack_scene} is in use by another process (pid {os.getpid()}): scene "
        f"cannot listen on it; stop that process or set DOPPEL_SCENE_PORT to a free port"
    ) in output
    assert list(tmp_path.iterdir()) == []  # No service was started (each logs from its start).
    assert processes_of_run(run) == []


def test_up_refuses_a_taken_monitor_http_port(held_port: int, tmp_path: Path) -> None:
    ports = {name: free_port() for name in PORTS} | {"http": held_port}
    run = uuid.uuid4().hex
    result = doppel_up(stack_env(ports, run), tmp_path)
    output = one_line(result.stdout + result.stderr)
    assert result.returncode == 1, output
    assert f"port {held_port} is in use by another process (pid {os.getpid()})" in output
    assert "monitor cannot listen on it" in output and "DOPPEL_MONITOR_HTTP_PORT" in output
    assert list(tmp_path.iterdir()) == []
    assert processes_of_run(run) == []


def test_demo_refuses_to_write_through_another_stack(
    other_stack_scene: int, tmp_path: Path
) -> None:
    ports = {name: free_port() for name in PORTS} | {"scene": other_stack_scene}
    run = uuid.uuid4().hex
    result = subprocess.run(
        [sys.executable, "-m", "doppel.cli", "demo", "--out", str(tmp_path / "out")],
        env=stack_env(ports, run), capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    output = one_line(result.stdout + result.stderr)
    assert result.returncode == 1, output
    assert f"port {other_stack_scene} is in use by another process" in output
    assert "DOPPEL_SCENE_PORT" in output
    assert not list((tmp_path / "out").glob("*.fountain"))  # Nothing written anywhere.
    assert processes_of_run(run) == []


def test_a_port_taken_after_the_first_check_stops_everything_started(tmp_path: Path) -> None:
    """Scene and cache set to one port: free when `doppel up` starts, taken by the cache child
    by the time the scene is due. The monitor, the cache and Redis are up by then, and must go."""
    ports = {name: free_port() for name in PORTS}
    ports["scene"] = ports["cache"]
    run = uuid.uuid4().hex
    result = doppel_up(stack_env(ports, run), tmp_path)
    output = one_line(result.stdout + result.stderr)
    assert result.returncode == 1, output
    assert "ready" not in output
    assert f"port {ports['scene']} is in use by another process (pid " in output
    assert "scene cannot listen on it" in output and "DOPPEL_SCENE_PORT" in output
    assert {path.name for path in tmp_path.iterdir()} == {"monitor.log", "cache.log"}
    assert processes_of_run(run) == []  # Not the monitor, not the cache, not Redis.


def test_a_child_that_cannot_bind_is_not_taken_for_the_server_that_answers(
    other_stack_scene: int,
) -> None:
    """The port was free when checked and taken before the child bound it: the health check
    is answered (by the other server), but the child is not listening: it exits."""
    binder = (
        "import socket, sys; s = socket.socket(); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); sys.stdin.read()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", binder, str(other_stack_scene)], stdin=subprocess.PIPE
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{other_stack_scene}") as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING  # The other answers.
        port = ListenPort("scene", other_stack_scene, "DOPPEL_SCENE_PORT")
        with pytest.raises(PortInUse, match=f"port {other_stack_scene} is in use") as caught:
            wait_until_listening(child, [port], "127.0.0.1", timeout=30)
        assert caught.value.holder == os.getpid()
        assert child.poll() not in (None, 0)  # It failed to bind and exited.
    finally:
        child.kill()
        child.wait()


def test_a_child_listening_on_its_own_port_counts_as_up() -> None:
    port = free_port()
    listener = (
        "import socket, sys; s = socket.socket(); "
        "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); sys.stdin.read()"
    )
    child = subprocess.Popen([sys.executable, "-c", listener, str(port)], stdin=subprocess.PIPE)
    try:
        wait_until_listening(
            child, [ListenPort("scene", port, "DOPPEL_SCENE_PORT")], "127.0.0.1", timeout=30
        )
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_redis_answering_from_another_process_is_refused() -> None:
    with RedisServer() as ours, RedisServer() as other:
        check_redis_is_ours(ours)  # The Redis it started answers on its socket.
        ours.url = other.url  # As if another server answered where ours should.
        with pytest.raises(StackError, match=f"served by pid {other.pid}, not by"):
            check_redis_is_ours(ours)

"""`python -m shared.healthcheck`, the image's gRPC health probe, run as a process against a real
scene server (as Docker runs it), and its discovery of the container's service from /proc."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from services.scene.server import SERVICE_NAME, create_scene_server
from shared.config import Settings
from shared.healthcheck import ProbeUsageError, resolve_address, running_service
from shared.server import ServiceServer
from shared.telemetry import Telemetry
from testkit import free_port


@pytest.fixture
async def scene_server(settings: Settings) -> AsyncIterator[ServiceServer]:
    server = await create_scene_server(settings, Telemetry("scene", settings))
    yield server
    await server.stop(0)


async def probe(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Runs the probe as its own process (a blocking gRPC call must not stall this event loop)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.healthcheck", *args,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_serving_server_passes(scene_server: ServiceServer) -> None:
    address = f"127.0.0.1:{scene_server.port}"
    assert await probe(address) == (0, f"{address} SERVING\n")
    code, output = await probe(address, "--service", SERVICE_NAME)
    assert (code, output.split()[-1]) == (0, "SERVING")


async def test_a_service_name_resolves_to_its_configured_port(scene_server: ServiceServer) -> None:
    code, output = await probe("scene", env={"DOPPEL_SCENE_PORT": str(scene_server.port)})
    assert (code, output) == (0, f"127.0.0.1:{scene_server.port} SERVING\n")


async def test_not_serving_fails(scene_server: ServiceServer) -> None:
    """What a container reports while its service drains after SIGTERM."""
    await scene_server.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    code, output = await probe(f"127.0.0.1:{scene_server.port}")
    assert (code, output.split()[-1]) == (1, "NOT_SERVING")


async def test_unknown_service_and_closed_port_fail(scene_server: ServiceServer) -> None:
    code, output = await probe(f"127.0.0.1:{scene_server.port}", "--service", "no.Such")
    assert (code, output.split()[-1]) == (1, "NOT_FOUND")
    code, output = await probe(f"127.0.0.1:{free_port()}", "--timeout", "1")
    assert code == 1 and output.split()[-1] in {"UNAVAILABLE", "DEADLINE_EXCEEDED"}


async def test_bad_target_is_a_usage_error() -> None:
    code, output = await probe("nowhere")
    assert code == 2 and "host:port" in output


def fake_proc(root: Path, command_lines: list[list[str]]) -> Path:
    for pid, argv in enumerate(command_lines, start=1):
        (root / str(pid)).mkdir()
        (root / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (root / "self").mkdir()
    return root


def test_the_running_service_is_found_in_proc(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, [["/opt/venv/bin/python", "-m", "services.cache"], ["sleep", "3"]])
    assert running_service(proc) == "cache"


def test_discovery_refuses_to_guess(tmp_path: Path) -> None:
    (tmp_path / "none").mkdir()
    (tmp_path / "two").mkdir()
    with pytest.raises(ProbeUsageError, match="none"):
        running_service(fake_proc(tmp_path / "none", [["python", "-m", "services.unknown"]]))
    two = [["python", "-m", "services.scene"], ["python", "-m", "services.script"]]
    with pytest.raises(ProbeUsageError, match="scene"):
        running_service(fake_proc(tmp_path / "two", two))


def test_addresses_pass_through_and_names_use_settings() -> None:
    settings = Settings(monitor_port=14317)
    assert resolve_address("monitor", settings) == "127.0.0.1:14317"
    assert resolve_address("scene:50052", settings) == "scene:50052"

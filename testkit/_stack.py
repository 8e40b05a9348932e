"""The in-process stack: cache, scene and script servers on loopback ports the OS picks, against
a real Redis, with a channel and a stub for each.

Tests that talk to the services through gRPC (or run `doppel` against them) need the same three
servers wired the same way; building them here keeps that wiring in one place. Servers run in the
test's event loop (fast to start, easy to debug); the e2e tests start real processes instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import grpc

from doppelganger.v1 import cache_pb2_grpc, scene_pb2_grpc, script_pb2_grpc
from services.cache.server import create_cache_server
from services.scene.server import create_scene_server
from services.script.library import Library
from services.script.server import create_script_server
from shared.config import Settings
from shared.server import ServiceServer
from shared.telemetry import Telemetry


def loopback_settings(**changes: object) -> Settings:
    """Settings for in-process servers: every port 0 (the OS picks), telemetry off, a short
    grace period on stop."""
    base = Settings(
        script_port=0,
        scene_port=0,
        cache_port=0,
        monitor_port=0,
        monitor_http_port=0,
        telemetry_disabled=True,
        grace_seconds=2.0,
    )
    return base.with_changes(**changes) if changes else base


@dataclass
class InProcessStack:
    """Started servers, the settings that point at them, and a stub per service."""

    settings: Settings  # cache_target and scene_target name the servers below.
    cache: ServiceServer
    scene: ServiceServer
    _script: ServiceServer | None
    _channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)

    @property
    def script(self) -> ServiceServer:
        assert self._script is not None, "started with script=False"
        return self._script

    @property
    def script_target(self) -> str:
        return f"127.0.0.1:{self.script.port}"

    @property
    def scene_target(self) -> str:
        return f"127.0.0.1:{self.scene.port}"

    @property
    def cache_target(self) -> str:
        return f"127.0.0.1:{self.cache.port}"

    def env(self) -> dict[str, str]:
        """Variables that point `doppel` (in or out of process) at this stack, telemetry off."""
        found = {"DOPPEL_SCENE_TARGET": self.scene_target, "OTEL_SDK_DISABLED": "true"}
        if self._script is not None:
            found["DOPPEL_SCRIPT_TARGET"] = self.script_target
        return found

    def _channel(self, target: str) -> grpc.aio.Channel:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "InProcessStack's stubs belong to the test's event loop: take them in an async "
                "test or fixture"
            ) from None
        if target not in self._channels:
            self._channels[target] = grpc.aio.insecure_channel(target)
        return self._channels[target]

    @property
    def script_stub(self) -> script_pb2_grpc.ScriptServiceStub:
        return script_pb2_grpc.ScriptServiceStub(self._channel(self.script_target))

    @property
    def scene_stub(self) -> scene_pb2_grpc.SceneServiceStub:
        return scene_pb2_grpc.SceneServiceStub(self._channel(self.scene_target))

    @property
    def cache_stub(self) -> cache_pb2_grpc.CacheServiceStub:
        return cache_pb2_grpc.CacheServiceStub(self._channel(self.cache_target))


@asynccontextmanager
async def in_process_stack(
    settings: Settings,
    *,
    library: Library | None = None,
    script: bool = True,
    telemetry: Callable[[str, Settings], Telemetry] = Telemetry,
) -> AsyncIterator[InProcessStack]:
    """Cache, scene and (unless `script=False`) script servers with `settings` (which name the
    Redis), the script service on `library` (default: the one the settings and environment
    name, opened and closed by the server), each with `telemetry(name, settings)` (a test that
    reads spans or metrics passes its own). Everything is stopped on exit, in reverse order."""
    async with AsyncExitStack() as stack:
        cache = await create_cache_server(settings, telemetry("cache", settings))
        stack.push_async_callback(cache.stop, 0)
        scene = await create_scene_server(settings, telemetry("scene", settings))
        stack.push_async_callback(scene.stop, 0)
        wired = settings.with_changes(
            cache_target=f"127.0.0.1:{cache.port}", scene_target=f"127.0.0.1:{scene.port}"
        )
        started: ServiceServer | None = None
        if script:
            started = await create_script_server(wired, telemetry("script", wired), library)
            stack.push_async_callback(started.stop, 0)
        running = InProcessStack(wired, cache, scene, started)
        try:
            yield running
        finally:
            for channel in running._channels.values():
                await channel.close()

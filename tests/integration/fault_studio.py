"""The fault tests' in-process studio (cache, scene and script servers with fault injection on),
its requests, and the retry hint an overloaded server gives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from doppelganger.v1 import (
    faults_pb2,
    script_pb2,
    script_pb2_grpc,
)
from shared.config import Settings
from shared.faults import set_faults
from shared.redis_server import RedisServer
from shared.server import ServiceServer
from testkit import in_process_stack


@dataclass
class Studio:
    script: ServiceServer
    scene: ServiceServer
    cache: ServiceServer
    stub: script_pb2_grpc.ScriptServiceStub

    async def set_faults(self, server: ServiceServer, **values: float) -> faults_pb2.FaultsState:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            return await set_faults(channel, values)


@asynccontextmanager
async def studio(
    settings: Settings, redis: RedisServer, monitor_port: int | None = None
) -> AsyncIterator[Studio]:
    base = settings.with_changes(
        redis_url=redis.url, script_port=0, scene_port=0, cache_port=0, faults_enabled=True
    )
    if monitor_port is not None:
        base = base.with_changes(
            telemetry_disabled=False,
            otlp_endpoint=f"http://127.0.0.1:{monitor_port}",
            bsp_schedule_delay_ms=50,
            metric_export_interval_ms=200,
        )
    async with in_process_stack(base) as stack:
        yield Studio(stack.script, stack.scene, stack.cache, stack.script_stub)


def request(seed: int, **fields: Any) -> script_pb2.GenerateEpisodeRequest:
    values: dict[str, Any] = {
        "show": "I Love Lucy", "setting": "a Mars colony in 2157", "scene_count": 2, "seed": seed,
    }  # fmt: skip
    values.update(fields)
    return script_pb2.GenerateEpisodeRequest(**values)


def retry_after_ms(exc: grpc.aio.AioRpcError) -> int:
    hints = [int(v) for k, v in exc.trailing_metadata() or () if k == "retry-after-ms"]
    assert hints, "RESOURCE_EXHAUSTED without a retry-after-ms hint"
    return hints[0]

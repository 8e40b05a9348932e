"""Batch-mode test helpers: the backing stack, settings, submitting and waiting for a job."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc

from doppelganger.v1 import (
    library_pb2,
    script_pb2,
    script_pb2_grpc,
)
from services.cache.server import create_cache_server
from services.scene.server import create_scene_server
from services.script.library import batch_store, open_library
from services.script.server import create_script_server
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.server import ServiceServer
from shared.telemetry import Telemetry
from testkit.llm_server import LLMServer
from tests.fakes.llm_support import llm_settings
from tests.integration.llm_episode_support import request

Stage = script_pb2.Stage
DEADLINE_SECONDS = 60.0


@asynccontextmanager
async def backing(settings: Settings, redis: RedisServer) -> AsyncIterator[Settings]:
    """The cache and scene services; the settings a script server needs to reach them."""
    base = settings.with_changes(redis_url=redis.url, script_port=0, scene_port=0, cache_port=0)
    cache = await create_cache_server(base, Telemetry("cache", base))
    scene = await create_scene_server(base, Telemetry("scene", base))
    try:
        yield base.with_changes(
            cache_target=f"127.0.0.1:{cache.port}", scene_target=f"127.0.0.1:{scene.port}"
        )
    finally:
        for server in (scene, cache):
            await server.stop(0)


@asynccontextmanager
async def script(config: Settings) -> AsyncIterator[tuple[ServiceServer, Any]]:
    server = await create_script_server(config, Telemetry("script", config))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield server, script_pb2_grpc.ScriptServiceStub(channel)
    finally:
        await server.stop(0)


def batch_settings(provider: LLMServer, **changes: Any) -> Settings:
    return llm_settings(
        provider, batch_poll_seconds=0.05, batch_claim_seconds=1.0, grace_seconds=0.0,
        monitor_port=0, monitor_http_port=0, **changes,
    )  # fmt: skip


async def submit(stub: Any, **fields: Any) -> script_pb2.GenerateEpisodeEvent:
    events = [e async for e in stub.GenerateEpisode(request(batch=True, **fields), timeout=30)]
    assert len(events) == 1 and events[0].stage == Stage.STAGE_BATCH
    return events[0]


async def wait_for(stub: Any, job_id: str, statuses: set[str]) -> library_pb2.BatchJob:
    """GetBatch until the job's status is one of `statuses` (polled, with a deadline)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        job = await stub.GetBatch(script_pb2.GetBatchRequest(batch_id=job_id), timeout=10)
        if job.status in statuses:
            return job
        assert time.monotonic() < deadline, f"job still {job.status} ({job.stage}): {job.error}"
        await asyncio.sleep(0.05)


async def claim_as_crashed_replica(config: Settings, job_id: str) -> None:
    """The job left claimed (for 1 s) as a replica that crashed in the middle of a step would
    leave it: the next poller resumes it only once the claim runs out."""
    library = await open_library(config)
    try:
        assert await batch_store.claim(library, job_id, "crashed-replica", 1.0)
    finally:
        await library.close()

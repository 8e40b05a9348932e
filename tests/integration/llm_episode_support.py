"""LLM-episode test helpers: a script service on the loopback provider and requests to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from doppelganger.v1 import script_pb2, script_pb2_grpc
from shared.config import Settings
from shared.redis_server import RedisServer
from testkit import in_process_stack


@asynccontextmanager
async def script_service(
    settings: Settings, redis: RedisServer
) -> AsyncIterator[script_pb2_grpc.ScriptServiceStub]:
    base = settings.with_changes(redis_url=redis.url, script_port=0, scene_port=0, cache_port=0)
    async with in_process_stack(base) as stack:
        yield stack.script_stub


def request(**fields: Any) -> script_pb2.GenerateEpisodeRequest:
    values: dict[str, Any] = {
        "show": "I Love Lucy", "setting": "a Mars colony in 2157", "scene_count": 3,
        "seed": 7, "writer": "anthropic",
    }  # fmt: skip
    values.update(fields)
    return script_pb2.GenerateEpisodeRequest(**values)


async def generate(
    stub: script_pb2_grpc.ScriptServiceStub, message: script_pb2.GenerateEpisodeRequest
) -> list[script_pb2.GenerateEpisodeEvent]:
    return [event async for event in stub.GenerateEpisode(message, timeout=120)]

"""Cache service get/set per second against direct redis-py, same Redis, same run."""

from __future__ import annotations

import grpc
import redis.asyncio as aioredis

from bench.measure import Figure
from bench.stacks import running, stack_env
from bench.suites.common import Scale, rate
from doppelganger.v1 import cache_pb2, cache_pb2_grpc

CONCURRENCY = 16
VALUE = b"x" * 2048  # About a serialized scene.


async def run(scale: Scale) -> list[Figure]:
    env = stack_env(telemetry=False)
    figures = {
        name: Figure(name, unit)
        for name, unit in (
            ("cache.grpc_set_per_s", "ops/s"),
            ("cache.redis_set_per_s", "ops/s"),
            ("cache.grpc_get_per_s", "ops/s"),
            ("cache.redis_get_per_s", "ops/s"),
        )
    }
    set_ratio = Figure("cache.set_ratio_vs_redis", "ratio", is_ratio=True)
    get_ratio = Figure("cache.get_ratio_vs_redis", "ratio", is_ratio=True)
    with running(env, services=("cache",)) as stack:
        assert stack.redis is not None
        direct = aioredis.from_url(stack.redis.url)
        async with grpc.aio.insecure_channel(stack.settings.cache_address) as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)

            async def grpc_set(i: int) -> object:
                return await stub.Set(
                    cache_pb2.SetRequest(namespace="bench", key=f"k{i}", value=VALUE)
                )

            async def grpc_get(i: int) -> object:
                return await stub.Get(cache_pb2.GetRequest(namespace="bench", key=f"k{i}"))

            async def redis_set(i: int) -> object:
                return await direct.set(f"direct:k{i}", VALUE)

            async def redis_get(i: int) -> object:
                return await direct.get(f"direct:k{i}")

            for _ in range(scale.repetitions):
                pairs = (
                    (grpc_set, redis_set, "set", set_ratio),
                    (grpc_get, redis_get, "get", get_ratio),
                )
                for ours, theirs, verb, ratio in pairs:
                    mine = await rate(ours, scale.cache_ops, CONCURRENCY)
                    base = await rate(theirs, scale.cache_ops, CONCURRENCY)
                    figures[f"cache.grpc_{verb}_per_s"].values.append(mine)
                    figures[f"cache.redis_{verb}_per_s"].values.append(base)
                    ratio.values.append(mine / base)
        await direct.aclose()
    set_ratio.note = get_ratio.note = (
        "gRPC service (one Lua call or pipeline per op, plus stats) over direct redis-py"
    )
    return [*figures.values(), set_ratio, get_ratio]

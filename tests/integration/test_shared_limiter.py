"""The shared limiter, spending ledgers and leases through a real cache service on a real Redis.

Two `SharedLimiter`s with one name stand for two replicas on one provider key. Counts are taken
over windows of grant times; no test asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import grpc
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from doppelganger.v1 import cache_pb2, cache_pb2_grpc
from services.cache.server import create_cache_server
from services.script.coordination import (
    CoordinationClient,
    LeaseHeld,
    SpendLimit,
    held_lease,
    new_id,
)
from services.script.llm.budget import Budgets, CallerCaps, spending_caller
from services.script.llm.quota import FALLBACK, REJOINING, SHARED, SharedLimiter
from services.script.llm.ratelimit import Limits
from services.script.llm.spending import Spending
from services.script.writing import SpendingCapExceeded
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.telemetry import Telemetry
from testkit import eventually
from testkit.llm_server import max_in_window
from tests.integration.loop_thread import LoopThread


@asynccontextmanager
async def coordination(
    settings: Settings, redis_url: str
) -> AsyncIterator[tuple[CoordinationClient, cache_pb2_grpc.CacheServiceStub]]:
    config = settings.with_changes(redis_url=redis_url)
    cache = await create_cache_server(config, Telemetry("cache", config))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{cache.port}") as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            yield CoordinationClient(stub, 2.0), stub
    finally:
        await cache.stop(0)


def limiter_pair(client: CoordinationClient, limits: Limits, hint: int = 1) -> list[SharedLimiter]:
    name = f"anthropic:{new_id()[:16]}:claude-test"
    return [
        SharedLimiter(name, limits, client, replicas_hint=hint, probe_seconds=0.2) for _ in range(2)
    ]


async def use(limiter: SharedLimiter, grants: list[float], count: int) -> None:
    for _ in range(count):
        permit = await limiter.acquire(10, 10, max_wait=30)
        grants.append(time.monotonic())
        await asyncio.sleep(0.005)  # The provider answers.
        await permit.settle(10, 10)


async def test_two_replicas_never_pass_the_shared_limit(
    settings: Settings, redis_server: RedisServer
) -> None:
    async with coordination(settings, redis_server.url) as (client, _):
        limits = Limits(requests=3, tokens=10**6, window=0.5)
        first, second = limiter_pair(client, limits)
        grants: list[float] = []
        await asyncio.gather(use(first, grants, 6), use(second, grants, 6))
    assert len(grants) == 12 and first.mode == second.mode == SHARED
    assert max_in_window(grants, 0.5) <= 3
    # Paced: never two grants closer than a window over the limit (less the RPC's jitter).
    gaps = sorted(b - a for a, b in zip(sorted(grants), sorted(grants)[1:], strict=False))
    assert gaps[0] > 0.5 / 3 * 0.5


async def test_a_pause_from_one_replica_holds_the_other(
    settings: Settings, redis_server: RedisServer
) -> None:
    async with coordination(settings, redis_server.url) as (client, _):
        first, second = limiter_pair(client, Limits(requests=100, tokens=10**6, window=1.0))
        permit = await first.acquire(1, 1)
        paused_at = time.monotonic()
        await permit.settle(1, 1, pause_seconds=0.4)  # A 429 asked for 0.4 s.
        await second.acquire(1, 1, max_wait=10)
        assert time.monotonic() - paused_at >= 0.35  # Not before the pause (less clock skew).
        assert second.paused_for == 0


async def test_a_wait_longer_than_the_queue_allows_is_refused_at_once(
    settings: Settings, redis_server: RedisServer
) -> None:
    from services.script.llm.quota import QueueTimeout

    async with coordination(settings, redis_server.url) as (client, _):
        first, second = limiter_pair(client, Limits(requests=1, tokens=10**6, window=60.0))
        await first.acquire(1, 1)
        with pytest.raises(QueueTimeout) as refused:
            await second.acquire(1, 1, max_wait=5.0)
        assert refused.value.wait > 5.0  # It was told a minute, so it did not wait at all.


async def test_without_redis_each_replica_keeps_to_its_share_then_rejoins(
    settings: Settings,
) -> None:
    with RedisServer() as redis:
        async with coordination(settings, redis.url) as (client, _):
            limits = Limits(requests=4, tokens=10**6, window=0.5)
            first, second = limiter_pair(client, limits, hint=2)
            await (await first.acquire(1, 1)).settle(1, 1)
            assert first.mode == SHARED
            redis.halt()
            grants: list[float] = []
            await use(first, grants, 5)
            assert first.mode == FALLBACK
            assert max_in_window(grants, 0.5) <= 2  # Its share: 4 / 2.
            redis.start()
            rejoined: list[float] = []

            async def back_to_shared() -> bool:
                if first.mode == REJOINING:
                    return True
                await use(first, rejoined, 1)  # Each use may find Redis back.
                return False

            await eventually(
                back_to_shared, timeout=20, interval=0, what="back to the shared limiter"
            )
            await use(second, rejoined, 3)  # The other replica was shared all along.
            assert second.mode == SHARED


async def test_spending_is_shared_and_falls_back_to_the_replica_share(
    settings: Settings,
) -> None:
    with RedisServer() as redis:
        async with coordination(settings, redis.url) as (client, _):
            caps = CallerCaps(tokens_per_hour=1_000)
            replicas = [Budgets(Spending(client, replicas_hint=2), 0, 0, caps) for _ in range(2)]
            with spending_caller("token-shared"):
                held = await replicas[0].for_episode(("a",)).reserve(600, 0.0)
                await replicas[0].settle(held, tokens=600)
                with pytest.raises(SpendingCapExceeded) as refused:
                    await replicas[1].for_episode(("b",)).reserve(600, 0.0)  # 600 + 600 > 1000
                assert 0 < refused.value.retry_after_ms <= 3_600_000
                redis.halt()
                # Alone, a replica has half the cap, counting what it spent itself.
                await replicas[1].for_episode(("b",)).reserve(500, 0.0)
                with pytest.raises(SpendingCapExceeded, match="this replica's share"):
                    await replicas[1].for_episode(("b",)).reserve(1, 0.0)


async def test_an_episode_lease_has_one_holder_and_is_released(
    settings: Settings, redis_server: RedisServer
) -> None:
    async with coordination(settings, redis_server.url) as (client, _):
        name = f"episode:ep-{new_id()[:20]}"
        async with held_lease(client, name, 5.0) as guarded:
            assert guarded
            with pytest.raises(LeaseHeld) as held:
                async with held_lease(client, name, 5.0):
                    raise AssertionError("a second holder got the lease")
            assert 0 < held.value.ttl_seconds <= 5.0
        async with held_lease(client, name, 5.0) as guarded_again:  # Released: free again.
            assert guarded_again


async def test_coordination_fields_are_checked(
    settings: Settings, redis_server: RedisServer
) -> None:
    async with coordination(settings, redis_server.url) as (_, stub):
        limits = cache_pb2.RateLimits(window_ms=1000, requests=3)
        bad = [
            (stub.AcquireRate, cache_pb2.AcquireRateRequest(
                limiter="Has Spaces", permit_id="p", limits=limits, lease_ms=1000), "limiter"),
            (stub.AcquireRate, cache_pb2.AcquireRateRequest(
                limiter="a:b:c", permit_id="p", lease_ms=1000,
                limits=cache_pb2.RateLimits(window_ms=10**12, requests=3)), "limits.window_ms"),
            (stub.SettleRate, cache_pb2.SettleRateRequest(
                limiter="a:b:c", permit_id="p", limits=limits, pause_ms=-1), "pause_ms"),
            (stub.ReserveSpend, cache_pb2.ReserveSpendRequest(
                scope="s", reservation_id="r", lease_ms=1, idle_seconds=1), "limits"),
            (stub.ReserveSpend, cache_pb2.ReserveSpendRequest(
                scope="s", reservation_id="r", lease_ms=1, idle_seconds=1, cost_usd=float("nan"),
                limits=[cache_pb2.SpendLimit(max_tokens=1)]), "cost_usd"),
            (stub.AcquireLease, cache_pb2.LeaseRequest(name="n", holder="h"), "ttl_ms"),
        ]  # fmt: skip
        for method, request, field in bad:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await method(request, timeout=5)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert field in (refused.value.details() or ""), refused.value.details()
        _ = SpendLimit  # The client's view of a limit (used by Budgets above).


@given(
    window_ms=st.integers(1, 86_400_000),
    requests=st.integers(1, 100_000),
    limits=st.tuples(*(st.integers(0, 10**12) for _ in range(3))),
    estimate=st.tuples(st.integers(0, 10**9), st.integers(0, 10**9)),
    lease_ms=st.integers(1, 3_600_000),
    pause_ms=st.integers(0, 86_400_000),
    spend=st.tuples(st.integers(0, 10**12), st.floats(0, 10**6)),
    periods=st.lists(
        st.tuples(st.integers(0, 31 * 24 * 3600), st.integers(0, 10**15), st.floats(0, 10**9)),
        min_size=1, max_size=4, unique_by=lambda limit: limit[0],
    ),
)  # fmt: skip
@hypothesis_settings(max_examples=60, deadline=None, database=None,
                     suppress_health_check=list(HealthCheck))  # fmt: skip
def test_valid_extremes_never_break_the_scripts(
    coordination_stub: tuple[LoopThread, cache_pb2_grpc.CacheServiceStub],
    window_ms: int, requests: int, limits: tuple[int, int, int], estimate: tuple[int, int],
    lease_ms: int, pause_ms: int, spend: tuple[int, float],
    periods: list[tuple[int, int, float]],
) -> None:  # fmt: skip
    """Any request inside the documented limits is answered (never INTERNAL or UNKNOWN)."""
    loop, stub = coordination_stub
    rate = cache_pb2.RateLimits(window_ms=window_ms, requests=requests, tokens=limits[0],
                                input_tokens=limits[1], output_tokens=limits[2])  # fmt: skip
    permit, name = new_id(), f"fuzz:{new_id()[:8]}:m"
    spend_limits = [cache_pb2.SpendLimit(period_seconds=p, max_tokens=t, max_cost_usd=c)
                    for p, t, c in periods]  # fmt: skip

    async def calls() -> None:
        acquired = await stub.AcquireRate(cache_pb2.AcquireRateRequest(
            limiter=name, permit_id=permit, limits=rate, input_tokens=estimate[0],
            output_tokens=estimate[1], lease_ms=lease_ms), timeout=10)  # fmt: skip
        assert acquired.granted or acquired.wait_ms > 0
        await stub.SettleRate(cache_pb2.SettleRateRequest(
            limiter=name, permit_id=permit, limits=rate, input_tokens=estimate[0],
            output_tokens=estimate[1], pause_ms=pause_ms), timeout=10)  # fmt: skip
        reserved = await stub.ReserveSpend(cache_pb2.ReserveSpendRequest(
            scope=name, reservation_id=permit, limits=spend_limits, tokens=spend[0],
            cost_usd=spend[1], lease_ms=lease_ms, idle_seconds=60), timeout=10)  # fmt: skip
        assert len(reserved.totals) == len(periods)
        settled = await stub.SettleSpend(cache_pb2.SettleSpendRequest(
            scope=name, reservation_id=permit, limits=spend_limits, tokens=spend[0],
            cost_usd=spend[1], idle_seconds=60), timeout=10)  # fmt: skip
        assert all(total.reserved_tokens == 0 for total in settled.totals)
        assert all(total.spent_tokens >= spend[0] for total in settled.totals)

    loop.run(calls())


@pytest.fixture(scope="module")
def coordination_stub(
    redis_server: RedisServer,
) -> Iterator[tuple[LoopThread, cache_pb2_grpc.CacheServiceStub]]:
    """A cache service on a loop of its own thread (hypothesis drives a plain function)."""
    loop = LoopThread()
    config = Settings(cache_port=0, telemetry_disabled=True, redis_url=redis_server.url)
    cache = loop.run(create_cache_server(config, Telemetry("cache", config)))

    async def connect() -> tuple[grpc.aio.Channel, cache_pb2_grpc.CacheServiceStub]:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{cache.port}")
        return channel, cache_pb2_grpc.CacheServiceStub(channel)

    channel, stub = loop.run(connect())
    yield loop, stub
    loop.run(channel.close())
    loop.run(cache.stop(0))
    loop.close()

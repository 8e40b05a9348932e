"""Issue 18's acceptance with real processes: script replicas (`python -m services.script`),
the cache and scene services, a real redis-server, and the loopback provider, which allows L
requests per window on one key and answers 429 above it.

Replica i reaches the provider as client `replica-i` (testkit/llm_server.py), so the provider's
record says who sent what. Assertions are counts in windows of the provider's receive times; the
quota's use (at least 90% of L) is a benchmark figure (`doppel bench --suite quota`), not a test.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import redis

from bench.suites.quota import closed_loop, episode_request, shared_quota_stack
from doppelganger.v1 import script_pb2, script_pb2_grpc
from shared.redis_server import RedisServer
from testkit import eventually
from testkit.llm_server import LLMServer, Received, max_in_window
from tests.fakes.llm_support import generate_retrying

Stage = script_pb2.Stage


def accepted(received: list[Received], start: float = 0.0, end: float = float("inf")) -> int:
    return sum(1 for r in received if r.status == 200 and start <= r.at < end)


async def test_five_replicas_on_one_key_never_pass_the_providers_limit(
    redis_server: RedisServer,
) -> None:
    limit, window = 3, 1.0
    with (
        LLMServer(requests_per_window=limit, window=window, latency=0.02) as provider,
        shared_quota_stack(provider, redis_server.url, 5, limit, window) as (_, replicas),
    ):
        outcomes = await asyncio.gather(*(one_episode(replica.address) for replica in replicas))
        received = list(provider.received)
    assert outcomes == [Stage.STAGE_DONE] * 5
    assert [r.status for r in received if r.status != 200] == []  # The provider never said 429.
    assert max_in_window((r.at for r in received), window) <= limit
    assert {r.client for r in received} == {f"replica-{i}" for i in range(5)}


async def one_episode(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = script_pb2_grpc.ScriptServiceStub(channel)
        events, _ = await generate_retrying(stub, episode_request(scene_count=2), timeout=240)
    return events[-1].stage


async def test_redis_stopped_mid_run_each_replica_keeps_to_its_share_then_rejoins() -> None:
    limit, window, replicas_count = 6, 1.0, 3
    share = limit // replicas_count
    with (
        RedisServer() as store,
        LLMServer(requests_per_window=limit, window=window, latency=0.02) as provider,
        shared_quota_stack(
            provider, store.url, replicas_count, limit, window, replicas_hint=replicas_count
        ) as (_, replicas),  # fmt: skip
    ):
        done = False
        load = asyncio.create_task(
            closed_loop([replica.address for replica in replicas], 2, lambda: done)
        )
        try:
            await eventually(
                lambda: accepted(provider.received) >= 12, timeout=120, what="the shared run"
            )
            store.halt()
            stopped_at = time.monotonic()
            await eventually(
                lambda: accepted(provider.received, stopped_at) >= 20,
                timeout=120,
                what="the fallback run",
            )
            store.start()
            restarted_at = time.monotonic()
            keys = redis.Redis.from_url(store.url)
            await eventually(
                lambda: bool(keys.keys("doppel:v1:{rl:anthropic:*")),
                timeout=60,
                what="the shared limiter",
            )
            keys.close()
            rejoined_at = time.monotonic()
            await eventually(
                lambda: accepted(provider.received, rejoined_at) >= 10,
                timeout=120,
                what="the shared run again",
            )
        finally:
            done = True
            outcomes = await load
        received = list(provider.received)
    assert outcomes and set(outcomes) == {"OK"}
    assert [r for r in received if r.status == 429] == []  # No 429 storm: none at all.
    assert max_in_window((r.at for r in received), window) <= limit
    for index in range(replicas_count):
        alone = [
            r.at for r in received
            if r.client == f"replica-{index}" and stopped_at <= r.at < restarted_at
        ]  # fmt: skip
        assert max_in_window(alone, window) <= share, f"replica-{index} passed its share"
    assert accepted(received, stopped_at, restarted_at) >= 20  # The replicas kept working.


async def test_two_identical_requests_make_one_generation(redis_server: RedisServer) -> None:
    with (
        LLMServer(latency=0.2) as provider,
        shared_quota_stack(provider, redis_server.url, 2, 6000, 60.0) as (_, replicas),
    ):
        message = episode_request(scene_count=3)
        async with (
            grpc.aio.insecure_channel(replicas[0].address) as first_channel,
            grpc.aio.insecure_channel(replicas[1].address) as second_channel,
        ):
            first_call = script_pb2_grpc.ScriptServiceStub(first_channel).GenerateEpisode(
                message, timeout=240
            )
            accepted_event = await first_call.read()  # The first holds the episode's lease.
            assert accepted_event.stage == Stage.STAGE_ACCEPTED
            second = asyncio.create_task(
                generate_retrying(script_pb2_grpc.ScriptServiceStub(second_channel), message)
            )
            first_events = [accepted_event]
            while (event := await first_call.read()) is not grpc.aio.EOF:
                first_events.append(event)
            second_events, retries = await second
    first_episode, second_episode = first_events[-1].episode, second_events[-1].episode
    assert retries >= 1  # The second was told ABORTED with a retry hint while the first ran.
    assert first_episode.SerializeToString(deterministic=True) == second_episode.SerializeToString(
        deterministic=True
    )
    ok = [r for r in provider.received if r.status == 200]
    assert [r.task for r in ok].count("outline") == 1
    scene_calls = sorted(r.scene_index for r in ok if r.task == "scene")
    assert scene_calls == [0, 1, 2]  # One call per scene.

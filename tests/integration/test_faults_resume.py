"""Crash and resume, overload, cancellation and a Redis restart, against real processes.

The script service runs as a child process (`python -m services.script`) for the crash test, so
SIGKILL is real; the LLM is the loopback server, which records every request with the scene it
asks for and when it arrived.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from doppelganger.v1 import cache_pb2, cache_pb2_grpc, script_pb2, script_pb2_grpc
from services.cache.server import create_cache_server
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.telemetry import Telemetry
from testkit import free_port, in_process_stack
from testkit.llm_server import ANTHROPIC_PATH, LLMServer
from tests.fakes.llm_support import TEST_KEY, generate_retrying, llm_settings
from tests.integration.fault_studio import request, retry_after_ms, studio

Stage = script_pb2.Stage


@contextmanager
def script_process(provider: LLMServer, cache_port: int, scene_port: int) -> Iterator[int]:
    """`python -m services.script` on a free port; yields the port, SIGKILLs on exit."""
    port = free_port()
    env = {
        **os.environ,
        "DOPPEL_SCRIPT_PORT": str(port),
        "DOPPEL_CACHE_TARGET": f"127.0.0.1:{cache_port}",
        "DOPPEL_SCENE_TARGET": f"127.0.0.1:{scene_port}",
        "ANTHROPIC_BASE_URL": provider.anthropic_url,
        "ANTHROPIC_API_KEY": TEST_KEY,
        "ANTHROPIC_MODEL": "claude-loopback",
        "DOPPEL_MAX_PARALLEL_SCENES": "2",
        "DOPPEL_REFINEMENT_ROUNDS": "0",
        "DOPPEL_EPISODE_LEASE_SECONDS": "2",  # The killed replica's lease runs out sooner.
        "OTEL_SDK_DISABLED": "true",
        "DOPPEL_LOG_LEVEL": "WARNING",
    }
    child = subprocess.Popen([sys.executable, "-m", "services.script"], env=env)
    try:
        yield port
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
        child.wait(10)


async def wait_serving(port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), 20)


def calls_within(seconds: float, latency: float) -> int:
    """How many calls made one after another, each answered after `latency`, can start within
    `seconds`: a bound on counts instead of a tolerance on clocks."""
    return math.ceil(seconds / latency)


async def observe(latency: float) -> None:
    """An observation window for "nothing more is asked" (not a synchronisation): work that had
    not stopped would make its next calls within a latency or two; four pass."""
    await asyncio.sleep(latency * 4)


async def test_sigkill_mid_episode_then_resume_regenerates_no_finished_scene(
    settings: Settings, empty_redis: RedisServer
) -> None:
    base = settings.with_changes(redis_url=empty_redis.url)
    message = request(seed=2026, scene_count=6, writer="anthropic",
                      request_id="resume-6-scenes")  # fmt: skip
    async with in_process_stack(base, script=False) as stack:
        cache, scene = stack.cache, stack.scene
        with LLMServer(latency=0.15) as provider:
            finished: set[int] = set()
            with script_process(provider, cache.port, scene.port) as port:
                await wait_serving(port)
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    stub = script_pb2_grpc.ScriptServiceStub(channel)
                    async for event in stub.GenerateEpisode(message, timeout=60):
                        if event.HasField("scene"):
                            finished.add(event.scene.index)
                        if len(finished) >= 3:
                            break  # SIGKILL with scenes done and others in flight.
            killed_at = time.monotonic()  # The process is dead when the block exits.
            with script_process(provider, cache.port, scene.port) as port:
                await wait_serving(port)
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    stub = script_pb2_grpc.ScriptServiceStub(channel)
                    # The dead replica's episode lease runs out first: the retry waits for it.
                    events, _ = await generate_retrying(stub, message, timeout=60)
            calls = provider.calls(ANTHROPIC_PATH, status=200)
    assert events[-1].stage == Stage.STAGE_DONE
    assert [s.index for s in events[-1].episode.scenes] == list(range(6))
    assert len(finished) >= 3
    after = [c for c in calls if c.at > killed_at]
    # No scene that had finished before the kill was written again, nor the outline.
    assert not [c for c in after if c.task == "scene" and c.scene_index in finished]
    assert not [c for c in after if c.task == "outline"]
    # Only missing scenes were written after the restart (one may have finished unseen between
    # the client's last event and the kill, and come from the cache), and every scene was asked.
    rewritten = {c.scene_index for c in after if c.task == "scene"}
    assert rewritten <= set(range(6)) - finished
    assert {c.scene_index for c in calls if c.task == "scene"} == set(range(6))


async def test_overload_answers_resource_exhausted_with_a_retry_hint(
    settings: Settings, empty_redis: RedisServer
) -> None:
    with LLMServer(latency=0.2) as provider:
        config = llm_settings(provider, max_concurrent_episodes=1, refinement_rounds=0,
                              script_port=0, scene_port=0, cache_port=0)  # fmt: skip
        async with studio(config, empty_redis) as s:
            first = s.stub.GenerateEpisode(request(seed=2026, writer="anthropic"), timeout=60)
            await first.read()  # ACCEPTED: the one slot is taken.
            try:
                second = s.stub.GenerateEpisode(request(seed=7, writer="anthropic"), timeout=60)
                [event async for event in second]
            except grpc.aio.AioRpcError as exc:
                refused = exc
            else:
                raise AssertionError("a second episode beyond the cap was accepted")
            events = []
            while (event := await first.read()) is not grpc.aio.EOF:
                events.append(event)
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "DOPPEL_MAX_CONCURRENT_EPISODES" in (refused.details() or "")
    assert retry_after_ms(refused) >= 100
    assert events[-1].stage == Stage.STAGE_DONE


async def test_scene_revisions_take_an_episode_slot_too(
    settings: Settings, empty_redis: RedisServer
) -> None:
    with LLMServer(latency=0.2) as provider:
        config = llm_settings(provider, max_concurrent_episodes=1, refinement_rounds=0,
                              script_port=0, scene_port=0, cache_port=0)  # fmt: skip
        async with studio(config, empty_redis) as s:
            events = [e async for e in s.stub.GenerateEpisode(request(seed=11), timeout=60)]
            episode_id = events[-1].episode.id
            busy = s.stub.GenerateEpisode(request(seed=2026, writer="anthropic"), timeout=60)
            await busy.read()  # ACCEPTED: the one slot is taken.
            revision = script_pb2.RegenerateSceneRequest(
                episode_id=episode_id, scene_index=0, notes="more pratfalls"
            )
            try:
                await s.stub.RegenerateScene(revision, timeout=60)
            except grpc.aio.AioRpcError as exc:
                refused = exc
            else:
                raise AssertionError("a revision beyond the episode cap was accepted")
            while await busy.read() is not grpc.aio.EOF:
                pass
            revised = await s.stub.RegenerateScene(revision, timeout=60)  # The slot is free.
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert retry_after_ms(refused) >= 100
    assert revised.id != episode_id and len(revised.scenes) == len(events[-1].episode.scenes)


async def test_an_episode_ends_at_the_server_time_limit_without_a_client_deadline(
    settings: Settings, empty_redis: RedisServer
) -> None:
    with LLMServer(latency=0.3) as provider:
        config = llm_settings(provider, max_parallel_scenes=1, refinement_rounds=0,
                              episode_timeout_seconds=1.0, max_concurrent_episodes=1,
                              script_port=0, scene_port=0, cache_port=0)  # fmt: skip
        async with studio(config, empty_redis) as s:
            message = request(seed=2026, scene_count=8, writer="anthropic")
            try:
                [event async for event in s.stub.GenerateEpisode(message)]  # No deadline.
            except grpc.aio.AioRpcError as exc:
                stopped = exc
            else:
                raise AssertionError("an 8-scene episode at 0.3 s a call finished within 1 s")
            # The slot was given back: the next episode is accepted, not refused.
            accepted = await s.stub.GenerateEpisode(request(seed=5), timeout=60).read()
            await observe(0.3)
            arrived = list(provider.received)
    assert stopped.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "DOPPEL_EPISODE_TIMEOUT_SECONDS" in (stopped.details() or "")
    # None was started after the limit: one call at a time, each 0.3 s, so at most 4 started
    # within 1 s (the whole episode is 9: an outline and 8 scenes).
    assert 1 <= len(arrived) <= calls_within(1.0, 0.3), [(r.task, r.scene_index) for r in arrived]
    assert accepted.stage == Stage.STAGE_ACCEPTED


async def test_a_client_that_goes_away_stops_the_llm_calls(
    settings: Settings, empty_redis: RedisServer
) -> None:
    latency = 0.2
    with LLMServer(latency=latency) as provider:
        config = llm_settings(provider, max_parallel_scenes=2, refinement_rounds=0,
                              script_port=0, scene_port=0, cache_port=0)  # fmt: skip
        async with studio(config, empty_redis) as s:
            call = s.stub.GenerateEpisode(
                request(seed=2026, scene_count=8, writer="anthropic"), timeout=60
            )
            async for event in call:
                if event.HasField("scene"):
                    break
            call.cancel()
            asked_before = len(provider.received)
            await observe(latency)
            arrived = list(provider.received)
    # Nothing was started after the cancel: at most the two calls in flight (two scenes at a
    # time) had not reached the provider yet.
    assert asked_before <= len(arrived) <= asked_before + 2, [(r.task, r.at) for r in arrived]
    scenes_asked = len([r for r in arrived if r.task == "scene"])
    assert scenes_asked < 8  # The rest of the episode was never asked for.


async def test_a_client_deadline_bounds_the_llm_calls(
    settings: Settings, empty_redis: RedisServer
) -> None:
    with LLMServer(latency=0.3) as provider:
        config = llm_settings(provider, max_parallel_scenes=1, refinement_rounds=0,
                              script_port=0, scene_port=0, cache_port=0)  # fmt: skip
        async with studio(config, empty_redis) as s:
            try:
                message = request(seed=2026, scene_count=8, writer="anthropic")
                [event async for event in s.stub.GenerateEpisode(message, timeout=1.0)]
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
            else:
                raise AssertionError("an 8-scene episode at 0.3 s a call finished within 1 s")
            await observe(0.3)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    # One call at a time at 0.3 s each: within the 1 s deadline at most 4 started.
    assert 1 <= len(provider.received) <= calls_within(1.0, 0.3)


async def test_redis_restarted_mid_run_the_cache_reconnects(settings: Settings) -> None:
    with RedisServer() as redis:
        base = settings.with_changes(redis_url=redis.url)
        cache = await create_cache_server(base, Telemetry("cache", base))
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{cache.port}") as channel:
                stub = cache_pb2_grpc.CacheServiceStub(channel)
                await stub.Set(cache_pb2.SetRequest(namespace="t", key="k", value=b"v"))
                await asyncio.to_thread(redis.restart)
                got = await stub.Get(cache_pb2.GetRequest(namespace="t", key="k"))
                assert not got.found  # A fresh Redis is empty, and the call did not fail.
                await stub.Set(cache_pb2.SetRequest(namespace="t", key="k", value=b"w"))
                got = await stub.Get(cache_pb2.GetRequest(namespace="t", key="k"))
        finally:
            await cache.stop(0)
    assert got.found and got.value == b"w"

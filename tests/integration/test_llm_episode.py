"""Whole episodes through the real script service (with the real cache on Redis and the real
scene service) written by the `anthropic` writer against the loopback provider.

The acceptance line of issue 3: with a limit of 60 requests a minute and a provider that answers
429 above it, the pipeline finishes, the provider sees no more than the limit, and every retry
waited at least what retry-after said. The minute is scaled to a 2-second window (60 a minute =
2 per 2 s) on both sides, so the test takes seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from doppelganger.v1 import script_pb2
from shared.config import Settings
from shared.redis_server import RedisServer
from testkit.llm_server import ANTHROPIC_PATH, LLMServer, Received, max_in_window
from tests.fakes.llm_support import llm_settings
from tests.integration.llm_episode_support import generate, request, script_service

Stage = script_pb2.Stage
Studio = Callable[..., Any]


def assert_valid_episode(events: list[script_pb2.GenerateEpisodeEvent], scenes: int) -> None:
    assert events[0].stage == Stage.STAGE_ACCEPTED and events[-1].stage == Stage.STAGE_DONE
    episode = events[-1].episode
    assert episode.writer == "anthropic" and episode.model == "claude-loopback"
    assert [scene.index for scene in episode.scenes] == list(range(scenes))
    cast = {character.name for character in episode.cast}
    for scene in episode.scenes:
        speakers = {e.dialogue.character for e in scene.elements if e.HasField("dialogue")}
        assert speakers and speakers <= cast
        assert scene.jokes and all(0 < joke.score <= 1 for joke in scene.jokes)
    assert episode.validation.overall > 0 and episode.validation.threshold > 0
    assert not episode.render_error and episode.page_count >= 1
    assert episode.fountain.count("\nINT.") + episode.fountain.count("\nEXT.") >= scenes


async def test_an_episode_written_by_the_anthropic_writer(
    settings: Settings, redis_server: RedisServer
) -> None:
    with LLMServer() as provider:
        config = llm_settings(provider, **_ports(settings))
        async with script_service(config, redis_server) as stub:
            events = await generate(stub, request(seed=31))
    assert_valid_episode(events, 3)
    tasks = [r.task for r in provider.calls(ANTHROPIC_PATH)]
    assert tasks[0] == "outline" and tasks.count("scene") == 3
    assert all(r.status == 200 for r in provider.received)
    # The episode says who wrote what and what it cost: one call per part the server answered.
    episode = events[-1].episode
    assert episode.usage.calls == len(provider.received)
    assert episode.usage.input_tokens > 0 and episode.usage.output_tokens > 0
    assert episode.usage.cache_read_input_tokens > 0  # The show context was cached.
    assert episode.usage.cost_usd > 0
    written = [(a.stage, a.scene_index) for a in episode.attempts if a.outcome == "ok"]
    assert ("outline", -1) in written
    assert {("scene", index) for index in range(3)} <= set(written)
    assert {a.writer for a in episode.attempts} == {"anthropic"}


async def test_rate_limit_acceptance(settings: Settings, redis_server: RedisServer) -> None:
    window = 2.0
    with LLMServer(requests_per_window=2, window=window, retry_after_style="ms") as provider:
        config = llm_settings(
            provider, **_ports(settings), llm_requests_per_minute=60,
            llm_rate_window_seconds=window, llm_tokens_per_minute=10**9, max_parallel_scenes=3,
        )  # fmt: skip
        provider.consume(2)  # Another client has just used this window up: expect 429 first.
        async with script_service(config, redis_server) as stub:
            events = await generate(stub, request(seed=32, scene_count=2))
    assert_valid_episode(events, 2)
    ours = provider.received
    assert max_in_window((r.at for r in ours), window) <= 2
    refused = [r for r in ours if r.status == 429]
    assert refused, "the provider never said 429: nothing was tested"
    for gap, told in _retry_gaps(ours):
        assert gap >= told


def _retry_gaps(received: list[Received]) -> list[tuple[float, float]]:
    by_call = {(r.call_id, r.attempt): r for r in received}
    gaps = []
    for refused in (r for r in received if r.status == 429):
        retry = by_call[(refused.call_id, refused.attempt + 1)]
        assert refused.retry_after is not None
        gaps.append((retry.at - refused.at, refused.retry_after))
    return gaps


async def test_budget_exhaustion_ends_the_rpc_with_resource_exhausted(
    settings: Settings, redis_server: RedisServer
) -> None:
    with LLMServer() as provider:
        config = llm_settings(provider, **_ports(settings), llm_episode_max_tokens=20_000)
        async with script_service(config, redis_server) as stub:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await generate(stub, request(seed=33, scene_count=6))
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "DOPPEL_LLM_EPISODE_MAX_TOKENS" in (raised.value.details() or "")


def _ports(settings: Settings) -> dict[str, Any]:
    return {"grace_seconds": settings.grace_seconds, "monitor_port": 0, "monitor_http_port": 0}


async def test_fallbacks_are_recorded_on_the_episode(
    settings: Settings, redis_server: RedisServer
) -> None:
    """The chain through the real service: Anthropic fails the outline, OpenAI writes it."""
    with LLMServer() as provider:
        config = llm_settings(provider, llm_max_attempts=2, **_ports(settings))
        provider.inject("529", "529", path=ANTHROPIC_PATH)
        async with script_service(config, redis_server) as stub:
            events = await generate(stub, request(seed=41, writer="chain"))
    episode = events[-1].episode
    assert events[-1].stage == Stage.STAGE_DONE and len(episode.scenes) == 3
    outline = [(a.writer, a.outcome) for a in episode.attempts if a.stage == "outline"]
    assert outline == [("anthropic", "fallback"), ("openai", "ok")]
    (fallback,) = [a for a in episode.attempts if a.outcome == "fallback"]
    assert "529" in fallback.reason or "gave up" in fallback.reason

"""Rate limits and retry-after against the loopback server, through the real SDK clients.

Assertions are counts over the server's receive times (sliding windows) and lower bounds on the
gaps the server saw (a retry must not come before the server said it may): never upper bounds on
time.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from services.script.llm.caller import client_deadline
from services.script.llm.writer import LLMWriter
from services.script.writers import build_writers
from services.script.writing import DeadlineExceeded, RateLimitQueueFull
from testkit import eventually
from testkit.llm_server import ANTHROPIC_PATH, OPENAI_PATH, LLMServer, Received, max_in_window
from tests.fakes.llm_support import llm_settings, story


def retries_waited_as_told(received: list[Received]) -> list[tuple[float, float]]:
    """(gap the server saw, what it told) for every 429 that was retried."""
    by_call = {(r.call_id, r.attempt): r for r in received}
    gaps = []
    for refused in (r for r in received if r.status == 429):
        retry = by_call.get((refused.call_id, refused.attempt + 1))
        assert retry is not None, f"call {refused.call_id} was not retried"
        assert refused.retry_after is not None
        gaps.append((retry.at - refused.at, refused.retry_after))
    return gaps


@pytest.mark.parametrize(("name", "path"), [("anthropic", ANTHROPIC_PATH), ("openai", OPENAI_PATH)])
async def test_parallel_scenes_stay_under_the_request_limit(name: str, path: str) -> None:
    # 180 a minute over a 1 s window: 3 requests in any second; the server refuses a 4th.
    with LLMServer(requests_per_window=3, window=1.0, latency=0.05) as server:
        settings = llm_settings(
            server, llm_requests_per_minute=180, llm_rate_window_seconds=1.0,
            llm_tokens_per_minute=10**9,
        )  # fmt: skip
        writer = build_writers(settings, _telemetry(settings))[name]
        context = story(scene_count=8)
        outline = await writer.write_outline(context)
        scenes = await asyncio.gather(
            *(writer.write_scene(context, outline, index, []) for index in range(8))
        )
        assert [scene.index for scene in scenes] == list(range(8))
        received = server.calls(path)
        assert len(received) == 9
        assert all(r.status == 200 for r in received)  # The server never had to refuse.
        assert max_in_window((r.at for r in received), 1.0) <= 3


async def test_the_token_limit_holds_back_requests_too() -> None:
    # 15,000 tokens per 0.3 s window; every request reserves over 10,000 (max_tokens) and really
    # uses over 9,000 (what the server reports), so no two fit in one window.
    with LLMServer(reported_output_tokens=9_000) as server:
        settings = llm_settings(
            server, llm_tokens_per_minute=15_000 * 200, llm_rate_window_seconds=0.3,
            llm_max_output_tokens=10_000,
        )  # fmt: skip
        writer = build_writers(settings, _telemetry(settings))["anthropic"]
        context = story(scene_count=4)
        outline = await writer.write_outline(context)
        await asyncio.gather(*(writer.write_scene(context, outline, i, []) for i in range(4)))
        times = [r.at for r in server.calls(ANTHROPIC_PATH)]
        assert len(times) == 5 and max_in_window(times, 0.3) == 1


@pytest.mark.parametrize("style", ["ms", "seconds", "date"])
async def test_retries_wait_at_least_what_retry_after_said(style: str) -> None:
    told = {"ms": 0.35, "seconds": 1.0, "date": 1.0}[style]
    with LLMServer(retry_after_style=style, fault_retry_after=told) as server:
        settings = llm_settings(server)
        writer = build_writers(settings, _telemetry(settings))["anthropic"]
        server.inject("429", "429")
        assert (await writer.write_outline(story())).acts
        gaps = retries_waited_as_told(server.received)
        assert len(gaps) == 2
        assert all(gap >= asked for gap, asked in gaps), gaps


async def test_a_429_pauses_every_call_of_that_model() -> None:
    with LLMServer(fault_retry_after=0.5) as server:
        settings = llm_settings(server)
        writer = build_writers(settings, _telemetry(settings))["openai"]
        assert isinstance(writer, LLMWriter)
        context = story(scene_count=2)
        outline = await writer.write_outline(context)
        server.inject("429")
        first = asyncio.create_task(writer.write_scene(context, outline, 0, []))
        limiter = writer.limiter
        # The client has read the 429...
        await eventually(lambda: limiter.paused_for > 0, interval=0.005, what="the pause")
        second = await writer.write_scene(context, outline, 1, [])  # ...then this one starts.
        assert second.index == 1 and (await first).index == 0
        (refused,) = server.calls(status=429)
        (later,) = [
            r for r in server.received if r.task == "scene" and r.call_id != refused.call_id
        ]
        assert refused.retry_after == 0.5
        assert later.at - refused.at >= refused.retry_after


def _telemetry(settings):
    from shared.telemetry import Telemetry

    return Telemetry("script", settings)


async def test_a_rate_limit_queue_that_cannot_drain_in_time_refuses_instead_of_hanging() -> None:
    # One request a minute: after the outline, a scene would wait a minute for its slot.
    with LLMServer() as server:
        settings = llm_settings(
            server, llm_requests_per_minute=1, llm_max_queue_seconds=0.2
        )  # fmt: skip
        writer = build_writers(settings, _telemetry(settings))["anthropic"]
        context = story(scene_count=2)
        outline = await writer.write_outline(context)
        with pytest.raises(RateLimitQueueFull) as refused:
            await writer.write_scene(context, outline, 0, [])
        assert refused.value.grpc_code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "DOPPEL_LLM_MAX_QUEUE_SECONDS" in str(refused.value)
        with client_deadline(0.1), pytest.raises(DeadlineExceeded):  # The client's is shorter.
            await writer.write_scene(context, outline, 1, [])
        assert len(server.received) == 1  # Neither scene reached the provider.

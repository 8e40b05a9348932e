"""Streamed LLM calls through the real SDKs against the loopback provider's SSE: an idle timeout
("no bytes for N s") rather than a whole-response one, and progress events from GenerateEpisode
while scenes are being written."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from doppelganger.v1 import script_pb2
from services.script.llm.progress import reporting_output
from services.script.writers import build_writers
from shared.redis_server import RedisServer
from testkit.llm_server import ANTHROPIC_PATH, OPENAI_PATH, LLMServer
from tests.fakes.llm_support import captured_telemetry, llm_settings, story
from tests.integration.llm_episode_support import generate, request, script_service

PROVIDERS = [("anthropic", ANTHROPIC_PATH), ("openai", OPENAI_PATH)]
Stage = script_pb2.Stage


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as running:
        yield running


@pytest.mark.parametrize(("name", "path"), PROVIDERS)
async def test_a_steady_stream_longer_than_the_idle_timeout_succeeds(
    server: LLMServer, name: str, path: str
) -> None:
    """Eight pieces 0.15 s apart take about 1.2 s, more than the 0.5 s idle timeout: the call
    goes on while bytes keep coming, and the sink hears the reply grow."""
    settings = llm_settings(server, llm_idle_timeout_seconds=0.5, llm_max_attempts=1)
    writer = build_writers(settings, captured_telemetry(settings).telemetry)[name]
    context = story()
    outline = await writer.write_outline(context)
    server.stream_chunk_seconds = 0.15
    heard: list[int] = []
    with reporting_output(heard.append):
        scene = await writer.write_scene(context, outline, 0, [])
    assert scene.elements
    scene_calls = [r for r in server.calls(path) if r.task == "scene"]
    assert len(scene_calls) == 1 and scene_calls[0].status == 200
    assert len(heard) == server.stream_chunks and heard == sorted(heard) and heard[0] > 0


@pytest.mark.parametrize(("name", "path"), PROVIDERS)
async def test_a_stalled_stream_is_abandoned_after_the_idle_timeout_and_retried(
    server: LLMServer, name: str, path: str
) -> None:
    settings = llm_settings(server, llm_idle_timeout_seconds=0.4, llm_timeout_seconds=30.0)
    captured = captured_telemetry(settings)
    writer = build_writers(settings, captured.telemetry)[name]
    context = story()
    outline = await writer.write_outline(context)
    server.slow_seconds = 5.0  # stops half way for 5 s: far past the idle timeout
    server.inject("stall")
    scene = await writer.write_scene(context, outline, 0, [])
    assert scene.elements and scene.jokes
    scene_calls = [r for r in server.calls(path) if r.task == "scene"]
    assert [r.attempt for r in scene_calls] == [1, 2]
    assert scene_calls[0].fault == "stall" and scene_calls[1].fault == ""
    failed = [
        p for p in captured.metric_points("doppel.llm.calls")
        if p.attributes.get("doppel.outcome") == "error"
    ]  # fmt: skip
    assert [p.attributes["error.type"] for p in failed] == ["timeout"]


async def test_generate_episode_reports_progress_while_scenes_stream() -> None:
    """Each scene's reply streams over about 2.4 s (8 pieces 0.3 s apart), so at least one
    progress interval (1 s) passes with scenes in flight and nothing finished."""
    with LLMServer(stream_chunk_seconds=0.3) as provider, RedisServer() as redis:
        settings = llm_settings(provider, max_parallel_scenes=2)
        async with script_service(settings, redis) as stub:
            events = await generate(stub, request(scene_count=2))
    assert events[-1].stage == Stage.STAGE_DONE and len(events[-1].episode.scenes) == 2
    scenes = [e for e in events if e.stage == Stage.STAGE_SCENES]
    finished = [e for e in scenes if e.HasField("scene")]
    progress = [e for e in scenes if not e.HasField("scene")]
    assert sorted(e.scene.index for e in finished) == [0, 1]
    assert progress, [e.message for e in scenes]
    assert all("tokens so far" in e.message and "writing scene" in e.message for e in progress)
    # Progress comes before the last scene, between the outline's fraction and the next stage's.
    assert scenes.index(progress[0]) < scenes.index(finished[-1])
    fractions = [e.fraction_done for e in events]
    assert fractions == sorted(fractions)
    assert all(0.10 < e.fraction_done < 0.78 for e in progress)

"""The `anthropic` and `openai` writers: the real SDK clients against a loopback server that
speaks both wire protocols. Structured output, the one repair, retries, GenAI telemetry, secrets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from services.script.llm import BudgetExceeded, InvalidOutputError, ProviderError
from services.script.llm.provenance import collect_provenance
from services.script.writers import build_writers
from testkit.llm_server import ANTHROPIC_PATH, OPENAI_PATH, LLMServer
from tests.fakes.llm_support import TEST_KEY, captured_telemetry, llm_settings, story

PROVIDERS = [("anthropic", ANTHROPIC_PATH), ("openai", OPENAI_PATH)]


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as running:
        yield running


@pytest.mark.parametrize(("name", "path"), PROVIDERS)
async def test_outline_and_scenes_are_valid_and_scored(
    server: LLMServer, name: str, path: str
) -> None:
    settings = llm_settings(server)
    writer = build_writers(settings, captured_telemetry(settings).telemetry)[name]
    context = story(scene_count=3)
    outline = await writer.write_outline(context)
    assert outline.title and outline.scene_count == 3
    assert sorted(b.scene_index for a in outline.acts for b in a.beats) == [0, 1, 2]
    assert outline.target_runtime_seconds > 0
    scenes = await asyncio.gather(*(writer.write_scene(context, outline, i, []) for i in range(3)))
    cast = {c.name for c in context.cast}
    for index, scene in enumerate(scenes):
        assert scene.index == index and scene.number == index + 1
        assert scene.slugline.location and scene.duration_seconds > 0
        speakers = {e.dialogue.character for e in scene.elements if e.HasField("dialogue")}
        assert speakers and speakers <= cast
        assert scene.jokes and all(0 < j.score <= 1 and j.dimensions for j in scene.jokes)
    line = await writer.rewrite_line(context, scenes[0], scenes[0].jokes[0])
    original = scenes[0].elements[scenes[0].jokes[0].element_index].dialogue.text
    assert line and line != original
    revised = await writer.revise_scene(context, outline, scenes[1], ["more jokes"])
    assert revised.index == 1 and revised.elements
    tasks = [r.task for r in server.calls(path)]
    assert tasks == ["outline", "scene", "scene", "scene", "rewrite", "revise"]
    assert all(r.status == 200 for r in server.received)


@pytest.mark.parametrize("fault", ["malformed", "invalid", "truncated"])
async def test_bad_output_is_repaired_once(server: LLMServer, fault: str) -> None:
    settings = llm_settings(server)
    writer = build_writers(settings, captured_telemetry(settings).telemetry)["anthropic"]
    context = story()
    outline = await writer.write_outline(context)
    server.inject(fault)
    with collect_provenance() as provenance:
        scene = await writer.write_scene(context, outline, 0, [])
    assert scene.elements and scene.jokes
    scene_calls = [r for r in server.calls(ANTHROPIC_PATH) if r.task == "scene"]
    assert len(scene_calls) == 2  # the reply and the repair
    record = provenance.for_stage("scene", 0)
    assert record is not None and record.repaired and record.llm_calls == 2


async def test_output_still_invalid_after_the_repair_fails_clearly(server: LLMServer) -> None:
    settings = llm_settings(server)
    writer = build_writers(settings, captured_telemetry(settings).telemetry)["openai"]
    server.inject("malformed", "invalid")
    with pytest.raises(
        InvalidOutputError, match="outline reply was still invalid after one repair"
    ):
        await writer.write_outline(story())
    assert len(server.calls(OPENAI_PATH)) == 2


@pytest.mark.parametrize("fault", ["500", "529", "bad_body"])
async def test_server_errors_are_retried(server: LLMServer, fault: str) -> None:
    settings = llm_settings(server)
    writer = build_writers(settings, captured_telemetry(settings).telemetry)["anthropic"]
    server.inject(fault, fault)
    outline = await writer.write_outline(story())
    assert outline.acts
    calls = server.calls(ANTHROPIC_PATH)
    assert [r.attempt for r in calls] == [1, 2, 3]
    assert len({r.call_id for r in calls}) == 1


async def test_timeouts_are_retried(server: LLMServer) -> None:
    server.slow_seconds = 1.5
    settings = llm_settings(server, llm_timeout_seconds=0.5)
    writer = build_writers(settings, captured_telemetry(settings).telemetry)["openai"]
    server.inject("slow")
    assert (await writer.write_outline(story())).acts
    assert [r.attempt for r in server.calls(OPENAI_PATH, status=200)][-1] == 2


async def test_client_errors_are_not_retried(server: LLMServer) -> None:
    settings = llm_settings(server)
    writer = build_writers(settings, captured_telemetry(settings).telemetry)["anthropic"]
    server.inject("401")
    with pytest.raises(ProviderError, match="HTTP 401") as raised:
        await writer.write_outline(story())
    assert raised.value.error_type == "401" and len(server.received) == 1


async def test_retries_stop_at_max_attempts(server: LLMServer) -> None:
    settings = llm_settings(server, llm_max_attempts=3)
    writer = build_writers(settings, captured_telemetry(settings).telemetry)["anthropic"]
    server.inject("529", "529", "529", "529")
    with pytest.raises(ProviderError, match="gave up after 3 attempts"):
        await writer.write_outline(story())
    assert len(server.received) == 3


async def test_a_wait_longer_than_allowed_fails_at_once(server: LLMServer) -> None:
    server.fault_retry_after = 300.0
    settings = llm_settings(server, llm_max_wait_seconds=5.0)
    writer = build_writers(settings, captured_telemetry(settings).telemetry)["anthropic"]
    server.inject("429")
    with pytest.raises(ProviderError, match="asked to wait 300 s"):
        await writer.write_outline(story())
    assert len(server.received) == 1


async def test_token_budget_stops_the_episode_with_a_clear_error(server: LLMServer) -> None:
    settings = llm_settings(server, llm_episode_max_tokens=30_000, llm_max_output_tokens=4096)
    writer = build_writers(settings, captured_telemetry(settings).telemetry)["anthropic"]
    context = story(scene_count=6, request_id="budget-1")
    outline = await writer.write_outline(context)
    with pytest.raises(BudgetExceeded, match="DOPPEL_LLM_EPISODE_MAX_TOKENS") as raised:
        for index in range(6):
            await writer.write_scene(context, outline, index, [])
    assert raised.value.grpc_code.name == "RESOURCE_EXHAUSTED"
    sent = len(server.received)
    # Another episode has its own budget.
    assert (await writer.write_outline(story(scene_count=6, request_id="budget-2"))).acts
    assert len(server.received) == sent + 1


async def test_cost_budget(server: LLMServer) -> None:
    settings = llm_settings(server, llm_episode_max_cost_usd=0.2)
    writer = build_writers(settings, captured_telemetry(settings).telemetry)["anthropic"]
    context = story(scene_count=8)
    outline = await writer.write_outline(context)
    with pytest.raises(BudgetExceeded, match="cost budget exhausted"):
        for index in range(8):
            await writer.write_scene(context, outline, index, [])


def attrs(item: Any) -> dict[str, Any]:
    """A span's, event's or metric point's attributes as a plain dict (values of any type: the
    test knows which it set)."""
    return dict(item.attributes or {})


async def test_genai_spans_and_metrics(server: LLMServer) -> None:
    settings = llm_settings(server)
    captured = captured_telemetry(settings)
    writer = build_writers(settings, captured.telemetry)["anthropic"]
    server.inject("529")
    context = story()
    with captured.telemetry.tracer.start_as_current_span("outline"):
        outline = await writer.write_outline(context)
    await writer.write_scene(context, outline, 0, [])
    chats = [s for s in captured.spans() if s.name == "chat claude-loopback"]
    assert len(chats) == 3
    failed, first, second = chats
    assert all(s.kind == SpanKind.CLIENT for s in chats)
    assert failed.status.status_code == StatusCode.ERROR
    assert attrs(failed)["error.type"] == "529"
    attributes = attrs(first)
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "anthropic"
    assert attributes["gen_ai.request.model"] == "claude-loopback"
    assert attributes["gen_ai.response.model"] == "claude-loopback"
    assert attributes["gen_ai.request.max_tokens"] == settings.llm_max_output_tokens
    assert str(attributes["gen_ai.response.id"]).startswith("msg_")
    assert tuple(attributes["gen_ai.response.finish_reasons"]) == ("end_turn",)
    assert attributes["server.address"] == "127.0.0.1" and attributes["server.port"] == server.port
    assert attributes["doppel.llm.attempt"] == 2
    assert "gen_ai.request.temperature" not in attributes  # Anthropic API 2026-10-21: none
    # The first successful call writes the prompt cache; the next (a scene: other per-episode
    # constants) reads the universal and show blocks and writes only its episode block.
    assert attributes["gen_ai.usage.cache_creation.input_tokens"] > 0
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 0
    read = attrs(second)["gen_ai.usage.cache_read.input_tokens"]
    assert read > attrs(second)["gen_ai.usage.cache_creation.input_tokens"] > 0
    for span in (first, second):
        assert (
            attrs(span)["gen_ai.usage.input_tokens"]
            > attrs(span)["gen_ai.usage.cache_read.input_tokens"]
            + attrs(span)["gen_ai.usage.cache_creation.input_tokens"]
            - 1
        )
        assert attrs(span)["gen_ai.usage.output_tokens"] > 0
        assert not any(key.startswith(("gen_ai.input", "gen_ai.output.messages", "gen_ai.system_"))
                       for key in attrs(span))  # fmt: skip
    outline_span = next(s for s in captured.spans() if s.name == "outline")
    assert failed.parent is not None and outline_span.context is not None
    assert failed.parent.span_id == outline_span.context.span_id
    retry = [e for e in outline_span.events if e.name == "doppel.llm.retry"]
    assert len(retry) == 1 and attrs(retry[0])["error.type"] == "529"

    tokens = captured.metric_points("gen_ai.client.token.usage")
    kinds = {attrs(p)["gen_ai.token.type"]: p for p in tokens}
    assert set(kinds) == {"input", "output"} and kinds["input"].count == 2
    assert kinds["input"].sum == sum(attrs(s)["gen_ai.usage.input_tokens"] for s in chats[1:])
    durations = captured.metric_points("gen_ai.client.operation.duration")
    assert sum(p.count for p in durations) == 3
    assert max(durations[0].explicit_bounds) == 120.0
    assert any(attrs(p).get("error.type") == "529" for p in durations)
    calls = captured.metric_points("doppel.llm.calls")
    by_outcome = {attrs(p)["doppel.outcome"]: p.value for p in calls}
    assert by_outcome == {"ok": 2, "error": 1}
    (cost,) = captured.metric_points("doppel.llm.cost")
    assert cost.value == pytest.approx(
        sum(attrs(s)["doppel.llm.cost_usd"] for s in chats[1:]), rel=1e-3
    )


async def test_openai_spans_carry_temperature_and_cached_tokens(server: LLMServer) -> None:
    settings = llm_settings(server, llm_temperature=0.8)
    captured = captured_telemetry(settings)
    writer = build_writers(settings, captured.telemetry)["openai"]
    context = story()
    outline = await writer.write_outline(context)
    await writer.write_scene(context, outline, 0, [])
    first, second = [s for s in captured.spans() if s.name == "chat gpt-loopback"]
    assert attrs(first)["gen_ai.provider.name"] == "openai"
    assert attrs(first)["gen_ai.request.temperature"] == 0.8
    assert tuple(attrs(first)["gen_ai.response.finish_reasons"]) == ("stop",)
    assert attrs(second)["gen_ai.usage.cache_read.input_tokens"] > 0


async def test_content_goes_on_spans_only_when_capture_is_on(server: LLMServer) -> None:
    settings = llm_settings(server, llm_capture_content=True)
    captured = captured_telemetry(settings)
    writer = build_writers(settings, captured.telemetry)["anthropic"]
    outline = await writer.write_outline(story())
    (span,) = [s for s in captured.spans() if s.name.startswith("chat ")]
    assert "SHOW CONTEXT" in attrs(span)["gen_ai.system_instructions"]
    (message,) = json.loads(str(attrs(span)["gen_ai.input.messages"]))
    assert message["role"] == "user"
    assert '"task": "outline"' in message["parts"][0]["content"]
    assert outline.title in attrs(span)["gen_ai.output.messages"]


async def test_the_api_key_never_reaches_spans_metrics_or_logs(
    server: LLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = llm_settings(server, llm_capture_content=True, llm_max_attempts=2)
    captured = captured_telemetry(settings)
    writers = build_writers(settings, captured.telemetry)
    server.inject("429", "malformed", "500", "500", "401")
    for name in ("anthropic", "openai", "chain"):
        with contextlib.suppress(ProviderError):
            await writers[name].write_outline(story())
    assert {r.api_key for r in server.received} == {f"Bearer {TEST_KEY}"}  # It was sent...
    texts = [caplog.text, repr(settings), str(settings)]
    for span in captured.spans():
        texts += [span.to_json()]
    data = captured.metrics_reader.get_metrics_data()
    texts.append(data.to_json() if data else "")
    assert all(TEST_KEY not in text and "loopback-test-key" not in text for text in texts)
    assert "retrying" in caplog.text  # ...and the logs did talk about these calls.

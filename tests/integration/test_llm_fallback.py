"""The fallback chain with the real SDK clients: it engages when a provider fails, and records
who wrote each part and why (provenance records, span events)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from services.script import procedural
from services.script.llm import BudgetExceeded
from services.script.llm.provenance import collect_provenance
from services.script.writers import build_writers
from testkit.llm_server import ANTHROPIC_PATH, OPENAI_PATH, LLMServer
from tests.fakes.llm_support import captured_telemetry, llm_settings, story


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as running:
        yield running


async def test_a_failing_provider_falls_back_to_the_next(server: LLMServer) -> None:
    settings = llm_settings(server, llm_max_attempts=2)
    captured = captured_telemetry(settings)
    chain = build_writers(settings, captured.telemetry)["chain"]
    assert chain.name == "anthropic>openai>procedural"
    server.inject("529", "529", path=ANTHROPIC_PATH)
    context = story()
    with (
        collect_provenance() as provenance,
        captured.telemetry.tracer.start_as_current_span("outline"),
    ):
        outline = await chain.write_outline(context)
    assert outline.acts
    assert [r.status for r in server.calls(ANTHROPIC_PATH)] == [529, 529]
    assert [r.status for r in server.calls(OPENAI_PATH)] == [200]
    record = provenance.for_stage("outline")
    assert record is not None and (record.writer, record.model) == ("openai", "gpt-loopback")
    (fallback,) = record.fallbacks
    assert (fallback.writer, fallback.model, fallback.error_type) == (
        "anthropic", "claude-loopback", "529",
    )  # fmt: skip
    assert "gave up after 2 attempts" in fallback.reason
    assert [(a.writer, a.outcome) for a in provenance.attempts()] == [
        ("anthropic", "fallback"), ("openai", "ok"),
    ]  # fmt: skip
    usage = provenance.usage()
    assert usage.calls == 3 and usage.output_tokens > 0 and usage.cost_usd > 0
    (stage,) = [s for s in captured.spans() if s.name == "outline"]
    (event,) = [e for e in stage.events if e.name == "doppel.writer.fallback"]
    assert dict(event.attributes or {})["doppel.writer.from"] == "anthropic"
    assert dict(event.attributes or {})["doppel.writer.to"] == "openai"
    assert dict(event.attributes or {})["error.type"] == "529"
    assert dict(stage.attributes or {})["doppel.writer.used"] == "openai"


async def test_with_every_provider_down_the_procedural_writer_finishes(server: LLMServer) -> None:
    settings = llm_settings(server)
    chain = build_writers(settings, captured_telemetry(settings).telemetry)["chain"]
    server.inject("401", path=ANTHROPIC_PATH)
    server.inject("malformed", "malformed", path=OPENAI_PATH)
    context = story()
    with collect_provenance() as provenance:
        outline = await chain.write_outline(context)
    expected = procedural.write_outline(
        context.show, context.setting, list(context.cast), list(context.relationships), 3, 7
    )
    assert outline == expected
    record = provenance.for_stage("outline")
    assert record is not None and record.writer == "procedural" and record.model == ""
    assert [(f.writer, f.error_type) for f in record.fallbacks] == [
        ("anthropic", "401"), ("openai", "invalid_output"),
    ]  # fmt: skip


async def test_parallel_scenes_fall_back_one_by_one(server: LLMServer) -> None:
    settings = llm_settings(server, llm_max_attempts=1, writer_fallback=("anthropic", "openai"))
    chain = build_writers(settings, captured_telemetry(settings).telemetry)["chain"]
    context = story(scene_count=4)
    outline = await chain.write_outline(context)
    server.inject("500", path=ANTHROPIC_PATH)  # Exactly one scene request fails.
    with collect_provenance() as provenance:
        scenes = await asyncio.gather(
            *(chain.write_scene(context, outline, i, []) for i in range(4))
        )
    assert [s.index for s in scenes] == [0, 1, 2, 3]
    writers = sorted((r.scene_index, r.writer) for r in provenance.records)
    assert [w for _, w in writers].count("openai") == 1
    assert [w for _, w in writers].count("anthropic") == 3
    assert sorted(i for i, _ in writers) == [0, 1, 2, 3]


async def test_the_chain_does_not_fall_back_when_the_budget_is_spent(server: LLMServer) -> None:
    settings = llm_settings(server, llm_episode_max_tokens=5_000)
    chain = build_writers(settings, captured_telemetry(settings).telemetry)["chain"]
    with pytest.raises(BudgetExceeded):
        await chain.write_outline(story())
    assert server.received == []

"""Native structured output through the real `anthropic` and `openai` SDKs against the loopback
provider, which refuses (with the provider's 400) a request without the constraint, outside the
provider's subset, or with OpenAI's deprecated `max_tokens`, and answers in the constrained
shape."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from services.script.llm import schema, structured
from services.script.llm.providers import ChatRequest
from services.script.llm.writer import context_block
from services.script.writers import build_writers
from testkit import provider_schemas
from testkit.llm_server import ANTHROPIC_PATH, OPENAI_PATH, LLMServer
from tests.fakes.llm_support import TEST_KEY, captured_telemetry, llm_settings, story

PROVIDERS = [("anthropic", ANTHROPIC_PATH), ("openai", OPENAI_PATH)]


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as running:
        yield running


@pytest.mark.parametrize(("name", "path"), PROVIDERS)
async def test_every_part_is_constrained_and_answered_in_shape(
    server: LLMServer, name: str, path: str
) -> None:
    settings = llm_settings(server)
    writer = build_writers(settings, captured_telemetry(settings).telemetry)[name]
    context = story(scene_count=3)
    outline = await writer.write_outline(context)
    scenes = await asyncio.gather(*(writer.write_scene(context, outline, i, []) for i in range(3)))
    await writer.rewrite_line(context, scenes[0], scenes[0].jokes[0])
    await writer.revise_scene(context, outline, scenes[1], ["more jokes"])
    calls = server.calls(path)
    assert [r.task for r in calls] == ["outline", "scene", "scene", "scene", "rewrite", "revise"]
    assert all(r.status == 200 for r in calls)  # the loopback refuses an unconstrained request
    assert server.violations == []  # every answer matched the schema it was sent


def _request(reply_schema: dict[str, Any] | None) -> ChatRequest:
    return ChatRequest(
        model="m", instructions="i", context=context_block(story()),
        messages=(("user", "hello"),), max_tokens=64, temperature=None, reply_schema=reply_schema,
    )  # fmt: skip


async def test_anthropic_refuses_a_schema_outside_its_subset(server: LLMServer) -> None:
    client = anthropic.AsyncAnthropic(
        api_key=TEST_KEY, base_url=server.anthropic_url, max_retries=0
    )
    raw = schema.json_schema(schema.SceneOut)
    with pytest.raises(anthropic.BadRequestError) as refused:
        await client.messages.create(
            model="m", max_tokens=64, messages=[{"role": "user", "content": "x"}],
            output_config={"format": {"type": "json_schema", "schema": raw}},
        )  # fmt: skip
    assert refused.value.status_code == 400
    assert "unsupported keywords" in str(refused.value)
    with pytest.raises(anthropic.BadRequestError, match="json_schema format is required"):
        await client.messages.create(
            model="m", max_tokens=64, messages=[{"role": "user", "content": "x"}]
        )
    await client.close()


async def test_openai_refuses_loose_schemas_and_max_tokens(server: LLMServer) -> None:
    client = openai.AsyncOpenAI(api_key=TEST_KEY, base_url=server.openai_url, max_retries=0)
    messages: Any = [{"role": "user", "content": "x"}]
    loose: Any = {
        "type": "json_schema",
        "json_schema": {"name": "s", "strict": True, "schema": schema.json_schema(schema.SceneOut)},
    }
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(
            model="m", messages=messages, max_completion_tokens=64, response_format=loose
        )
    assert "required must list every property" in str(refused.value)
    strict: Any = structured.openai_response_format("s", schema.json_schema(schema.LineOut))
    with pytest.raises(openai.BadRequestError, match="max_completion_tokens"):
        await client.chat.completions.create(
            model="m", messages=messages, max_tokens=64, response_format=strict
        )
    with pytest.raises(openai.BadRequestError, match="type must be 'json_schema'"):
        await client.chat.completions.create(
            model="m", messages=messages, max_completion_tokens=64,
            response_format={"type": "json_object"},
        )  # fmt: skip
    await client.close()


@pytest.mark.parametrize(("name", "path"), PROVIDERS)
async def test_the_providers_send_the_body_they_prepare(
    server: LLMServer, name: str, path: str
) -> None:
    """`body()` is the request `chat` sends (the seam a batch submitter reuses)."""
    settings = llm_settings(server)
    writer: Any = build_writers(settings, captured_telemetry(settings).telemetry)[name]
    provider = writer._caller.provider
    body = provider.body(_request(schema.json_schema(schema.LineOut)))
    if name == "anthropic":
        assert provider_schemas.anthropic_problems(body["output_config"]) == []
        assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    else:
        assert body["max_completion_tokens"] == 64 and "max_tokens" not in body
        assert provider_schemas.openai_problems(body["response_format"]) == []


@pytest.mark.parametrize(("name", "path"), PROVIDERS)
async def test_speakers_in_capitals_are_the_cast_without_a_repair(
    server: LLMServer, name: str, path: str
) -> None:
    settings = llm_settings(server)
    captured = captured_telemetry(settings)
    writer = build_writers(settings, captured.telemetry)[name]
    context = story()
    outline = await writer.write_outline(context)
    server.inject("upper_speaker")
    scene = await writer.write_scene(context, outline, 0, [])
    assert [r.task for r in server.calls(path)] == ["outline", "scene"]  # no repair call
    cast = {c.name for c in context.cast}
    speakers = {e.dialogue.character for e in scene.elements if e.HasField("dialogue")}
    assert speakers and speakers <= cast
    assert not captured.metric_points("doppel.llm.repairs")


@pytest.mark.parametrize(("name", "path"), PROVIDERS)
async def test_repairs_parse_failures_and_truncations_are_counted(
    server: LLMServer, name: str, path: str
) -> None:
    settings = llm_settings(server)
    captured = captured_telemetry(settings)
    writer = build_writers(settings, captured.telemetry)[name]
    context = story()
    outline = await writer.write_outline(context)
    server.inject("truncated")
    await writer.write_scene(context, outline, 0, [])
    server.inject("invalid")
    await writer.write_scene(context, outline, 1, [])

    def total(metric: str) -> int:
        points = captured.metric_points(metric)
        for point in points:
            assert point.attributes["gen_ai.provider.name"] == name
            assert point.attributes["gen_ai.request.model"] == writer.model
            assert point.attributes["doppel.llm.task"] == "scene"
        return sum(int(point.value) for point in points)

    assert total("doppel.llm.truncations") == 1
    assert total("doppel.llm.parse_failures") == 1  # the cut-off JSON; "invalid" is content
    assert total("doppel.llm.repairs") == 2

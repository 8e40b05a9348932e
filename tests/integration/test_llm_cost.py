"""Cost levers through the real SDKs against the loopback provider (which tokenizes at 3.5
characters a token and keeps a prompt cache as each provider does): the universal-first layout
is served from the cache after the first scene, the count endpoint is asked once per prefix, and
reservations follow the provider's token counts rather than characters / 4."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from bench.suites.cost import episode_figures
from services.script import cards
from services.script.llm import prompts
from services.script.llm.providers import ChatRequest
from services.script.llm.writer import context_block, scene_schema
from services.script.writers import build_writers
from testkit.llm_server import ANTHROPIC_PATH, OPENAI_PATH, LLMServer
from testkit.llm_wire import tokens_of
from tests.fakes.llm_support import captured_telemetry, llm_settings, story

PROVIDERS = [("anthropic", ANTHROPIC_PATH), ("openai", OPENAI_PATH)]
SCENES = 11  # a 22-minute episode


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as running:
        yield running


@pytest.mark.parametrize(("name", "path"), PROVIDERS)
async def test_input_after_the_first_scene_is_mostly_read_from_the_prompt_cache(
    server: LLMServer, name: str, path: str
) -> None:
    # Eleven parallel calls reserve more than the default 100,000 tokens a minute.
    settings = llm_settings(server, llm_tokens_per_minute=10**8)
    writer = build_writers(settings, captured_telemetry(settings).telemetry)[name]
    context = story(scene_count=SCENES)
    outline = await writer.write_outline(context)
    views = [cards.scene_view(outline, i) for i in range(SCENES)]  # as the pipeline writes them

    async def scene(index: int) -> None:
        earlier = cards.feeding_summaries(views[index], index)
        await writer.write_scene(context, views[index], index, earlier)

    await scene(0)
    await asyncio.gather(*(scene(i) for i in range(1, SCENES)))
    calls = server.calls(path)
    assert [c.task for c in calls] == ["outline"] + ["scene"] * SCENES
    _, cached, _, _, share = episode_figures(calls)
    assert cached > 0 and share >= 0.8, share
    # Another episode of another show still reads the universal block (instructions and the
    # humour library) from the cache.
    other = story(show="Frasier", setting="Victorian London", scene_count=SCENES)
    before = len(server.calls(path))
    await writer.write_outline(other)
    first_of_other = server.calls(path)[before]
    universal = tokens_of(prompts.universal())
    assert first_of_other.cached_tokens >= universal - 128


async def test_the_count_endpoint_is_asked_once_per_prefix_and_reservations_follow_it(
    server: LLMServer,
) -> None:
    settings = llm_settings(server)
    writer: Any = build_writers(settings, captured_telemetry(settings).telemetry)["anthropic"]
    caller = writer._caller
    context = story(scene_count=4)
    outline = await writer.write_outline(context)
    await caller.tokens.settled()
    counts_after_outline = len(server.counts)
    # A bare message (the baseline), the universal block, + show, + the outline's constants.
    assert counts_after_outline == 4
    for index in range(4):
        await writer.write_scene(context, outline, index, [])
        await caller.tokens.settled()
    # The scenes share one new prefix (their episode block): one more count, not four.
    assert len(server.counts) == counts_after_outline + 1
    # The counted prefixes are the provider's figures exactly (3.5 characters a token here,
    # where characters / 4 would be 12 % short).
    names = [c.name for c in context.cast]
    prompt = prompts.scene_request(names, outline, 2, [], context.seed, context.notes)
    request = caller.prepare(
        ChatRequest(
            model="", instructions=prompts.universal(), context=context_block(context),
            episode=prompt.episode, messages=(("user", prompt.task),), max_tokens=100,
            temperature=None, reply_schema=scene_schema(names),
        )
    )  # fmt: skip
    universal, show, episode = caller.tokens.prefixes(request)
    assert universal == tokens_of(prompts.universal())
    assert show == universal + tokens_of(context_block(context))
    assert episode == show + tokens_of(prompt.episode)
    # The whole estimate is within 3 % of what the provider reports for that very request.
    estimate = caller.tokens.estimate(request, (universal, show, episode))
    await writer.write_scene(context, outline, 2, ["again"])
    reported = server.calls(ANTHROPIC_PATH)[-1].input_tokens
    assert abs(estimate - reported) / reported < 0.03
    assert abs(caller.tokens.tokens_per_char - 1 / 3.5) < 0.02  # calibrated from usage


async def test_openai_prefix_is_byte_stable_and_only_the_task_differs(server: LLMServer) -> None:
    settings = llm_settings(server)
    writer: Any = build_writers(settings, captured_telemetry(settings).telemetry)["openai"]
    context = story(scene_count=3)
    outline = await writer.write_outline(context)
    names = [c.name for c in context.cast]
    bodies, episodes = [], []
    for index in (0, 1):
        prompt = prompts.scene_request(names, outline, index, [], context.seed, [])
        request = ChatRequest(
            model="m", instructions=prompts.universal(), context=context_block(context),
            episode=prompt.episode, messages=(("user", prompt.task),), max_tokens=100,
            temperature=None, reply_schema=scene_schema(names),
        )  # fmt: skip
        bodies.append(writer._caller.provider.body(request))
        episodes.append(prompt.episode)
    first, second = bodies
    assert first["messages"][0] == second["messages"][0]  # universal, then the show
    assert first["messages"][0]["content"].startswith(prompts.INSTRUCTIONS)
    one, two = first["messages"][1]["content"], second["messages"][1]["content"]
    assert episodes[0] == episodes[1] and prompts.EPISODE_MARKER in episodes[0]
    assert one.startswith(episodes[0]) and two.startswith(episodes[0]) and one != two
    assert first["response_format"] == second["response_format"]

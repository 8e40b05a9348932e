"""A season through a provider batch (WriteSeason with batch=true) on real servers: the script
service (real cache on Redis, real scene service, a SQLite library) writes the outlines
interactively, one after another, then sends every scene of every episode in one batch through
the real anthropic and openai SDKs to the loopback provider's batch endpoints; the poller
assembles the episodes, stores them in the series with their numbers and grows the bible. A
restart in the middle resumes the job; the series takes no other season meanwhile."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from doppelganger.v1 import episode_pb2, script_pb2, series_pb2
from services.script import bible as bibles
from services.script import season_store
from services.script.library import Conflict, open_library
from shared.config import Settings
from shared.redis_server import RedisServer
from testkit.llm_server import ANTHROPIC_PATH, OPENAI_PATH, LLMServer
from tests.integration.batch_support import (
    backing,
    batch_settings,
    claim_as_crashed_replica,
    script,
    wait_for,
)

SHOW, SETTING = "I Love Lucy", "a Mars colony in 2157"


async def season(stub: Any, **fields: Any) -> list[script_pb2.SeasonEvent]:
    request = script_pb2.WriteSeasonRequest(batch=True, **fields)
    return [event async for event in stub.WriteSeason(request, timeout=60)]


async def series_drafts(config: Settings, series_id: str) -> dict[int, episode_pb2.Episode]:
    library = await open_library(config)
    try:
        page = await library.list_episodes(100, "", series_id=series_id)
        drafts = [await library.latest_draft(summary.id) for summary in page.items]
        return {d.episode.episode_number: d.episode for d in drafts}
    finally:
        await library.close()


def scene_calls(provider: LLMServer, path: str) -> int:
    return sum(1 for r in provider.calls(path) if r.task == "scene")


def outline_calls(provider: LLMServer, path: str) -> int:
    return sum(1 for r in provider.calls(path) if r.task == "outline")


@pytest.mark.parametrize(
    ("writer", "path"), [("anthropic", ANTHROPIC_PATH), ("openai", OPENAI_PATH)]
)
async def test_a_season_is_written_through_one_scene_batch_and_joins_the_bible(
    redis_server: RedisServer, writer: str, path: str
) -> None:
    with LLMServer() as provider:
        provider.batches.hold()  # The job stays unfinished until the checks below are done.
        async with (
            backing(batch_settings(provider), redis_server) as config,
            script(config) as (_, stub),
        ):
            events = await season(
                stub, show=SHOW, setting=SETTING, episodes=3, scene_count=2, writer=writer
            )
            last = events[-1]
            job = last.batch
            series_id = last.series.id
            # While the job is unfinished the series takes no other season.
            with pytest.raises(grpc.aio.AioRpcError) as busy:
                await season(stub, series_id=series_id, episodes=1, writer=writer)
            provider.batches.release()
            done = await wait_for(stub, job.id, {"assembled", "failed"})
            series = await stub.GetSeries(
                script_pb2.GetSeriesRequest(series_id=series_id), timeout=10
            )
        episodes = await series_drafts(config, series_id)
    outlines = [e.message for e in events if e.message.startswith("outline ")]
    assert len(outlines) == 3, [e.message for e in events]
    assert job.id.startswith("bj-") and job.series_id == series_id and job.stage == "scenes"
    assert job.requests == 6 and "6 scenes of episodes 1-3" in last.message
    assert busy.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert job.id in (busy.value.details() or "")
    assert done.status == "assembled", done.error
    # The outlines were interactive (each reads the ones before); every scene came from the
    # one batch; nothing was written twice.
    batches = provider.batches.created(writer)
    assert [len(b.results) for b in batches] == [6]
    assert outline_calls(provider, path) == 3 and scene_calls(provider, path) == 0
    assert sorted(episodes) == [1, 2, 3]
    assert sorted(done.episode_ids) == sorted(e.id for e in episodes.values())
    assert all(e.series_id == series_id and len(e.scenes) == 2 for e in episodes.values())
    # The bible grew one version per episode, in order, with each one's kernel and facts.
    bible = series.bible
    assert [(s.episode_number, s.episode_id) for s in bible.episodes] == [
        (n, episodes[n].id) for n in (1, 2, 3)
    ]
    assert series.version == last.series.version + 3
    assert len(set(bible.kernels_used)) == 3
    assert {f.episode_number for f in bible.facts} == {1, 2, 3}
    # Episodes 2 and 3 were outlined with a callback to an earlier episode's fact.
    for number in (2, 3):
        called = [c for a in episodes[number].outline.acts for b in a.beats for c in b.callbacks]
        facts = {f.id: f for f in bible.facts}
        assert called and all(facts[c.fact_id].episode_number < number for c in called)
    # ... and its script plays it (the loopback model says the fact in a line).
    for number in (2, 3):
        assert episodes[number].bible_callbacks, f"episode {number} plays no callback"


async def test_a_restart_in_the_middle_resumes_the_season_and_its_bible_once(
    redis_server: RedisServer,
) -> None:
    """The scene batch is held while the first server polls it; the server stops with the job
    claimed as a crashed replica would leave it; a new server on the same library resumes it."""
    with LLMServer() as provider:
        provider.batches.hold()
        async with backing(batch_settings(provider), redis_server) as config:
            async with script(config) as (_, stub):
                events = await season(
                    stub, show=SHOW, setting="a lighthouse", episodes=2, scene_count=2,
                    writer="anthropic",
                )  # fmt: skip
                job = await wait_for(stub, events[-1].batch.id, {"in_progress"})
            await claim_as_crashed_replica(config, job.id)
            provider.batches.release()
            async with script(config) as (_, stub):
                done = await wait_for(stub, job.id, {"assembled", "failed"})
                series = await stub.GetSeries(
                    script_pb2.GetSeriesRequest(series_id=job.series_id), timeout=10
                )
        episodes = await series_drafts(config, job.series_id)
    assert done.status == "assembled", done.error
    assert len(provider.batches.created()) == 1  # the same scene batch, polled again
    assert sorted(episodes) == [1, 2]
    assert [s.episode_number for s in series.bible.episodes] == [1, 2]
    assert series.version == events[-1].series.version + 2


async def test_season_batch_refusals_name_the_field(redis_server: RedisServer) -> None:
    with LLMServer() as provider:
        async with backing(batch_settings(provider), redis_server) as config:
            async with script(config) as (_, stub):
                with pytest.raises(grpc.aio.AioRpcError) as procedural:
                    await season(stub, show=SHOW, setting=SETTING, episodes=2)
            library = await open_library(config)
            try:
                listed = await library.list_series_records(10, "")
            finally:
                await library.close()
    assert procedural.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = procedural.value.details() or ""
    assert "batch: writer 'procedural' has no batch API" in details
    assert "anthropic" in details and "openai" in details
    assert provider.batches.created() == [] and not listed.items


async def test_the_bible_pass_skips_what_it_added_and_refuses_a_taken_number(
    settings: Settings,
) -> None:
    """season_store.grow_bible on a real SQLite library: run twice (as a resumed job would),
    the bible holds each episode once; an episode whose number another holds is refused."""
    library = await open_library(settings)
    try:
        made = await library.create_series_record(
            series_pb2.Series(title="t", show=episode_pb2.Show(id="i-love-lucy", title="Lucy"))
        )
        first = _episode("ep-" + "1" * 20, "Lucy sells algae loaf.")
        second = _episode("ep-" + "2" * 20, "Ricky buys a robot.")
        numbered = [(1, first), (2, second)]
        grown = [n async for n, _, _ in season_store.grow_bible(library, made, numbered)]
        assert grown == [1, 2]
        after = await library.get_series_record(made.id)
        again = [n async for n, _, _ in season_store.grow_bible(library, after, numbered)]
        assert again == [] and (await library.get_series_record(made.id)).version == after.version
        assert bibles.episode_count(after.bible) == 2
        other = _episode("ep-" + "3" * 20, "Fred paints the dome.")
        with pytest.raises(Conflict, match="episode 2 cannot join the bible"):
            async for _ in season_store.grow_bible(library, after, [(2, other)]):
                pass
    finally:
        await library.close()


def _episode(episode_id: str, title: str) -> episode_pb2.Episode:
    episode = episode_pb2.Episode(id=episode_id)
    episode.outline.title = title
    episode.outline.kernel = title
    return episode

"""ScriptService in-process with the real cache (on a real Redis) and the real scene service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from doppelganger.v1 import (
    cache_pb2,
    cache_pb2_grpc,
    script_pb2,
    script_pb2_grpc,
)
from services.script.server import create_script_server
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.server import ServiceServer
from shared.telemetry import Telemetry
from testkit import in_process_stack

Stage = script_pb2.Stage


@dataclass
class Studio:
    settings: Settings
    script: ServiceServer
    script_stub: script_pb2_grpc.ScriptServiceStub
    cache_stub: cache_pb2_grpc.CacheServiceStub


async def start(name: str, factory, settings: Settings) -> ServiceServer:
    return await factory(settings, Telemetry(name, settings))


@pytest.fixture
async def studio(settings: Settings, redis_server: RedisServer) -> AsyncIterator[Studio]:
    base = settings.with_changes(redis_url=redis_server.url)
    async with in_process_stack(base) as stack:
        yield Studio(stack.settings, stack.script, stack.script_stub, stack.cache_stub)


def request(**fields: object) -> script_pb2.GenerateEpisodeRequest:
    values: dict[str, object] = {
        "show": "I Love Lucy", "setting": "a Mars colony in 2157", "scene_count": 3, "seed": 7,
    }  # fmt: skip
    values.update(fields)
    return script_pb2.GenerateEpisodeRequest(**values)


async def collect(
    stub: script_pb2_grpc.ScriptServiceStub, message: script_pb2.GenerateEpisodeRequest
) -> list[script_pb2.GenerateEpisodeEvent]:
    return [event async for event in stub.GenerateEpisode(message)]


async def test_generates_a_complete_episode_with_progress(studio: Studio) -> None:
    events = await collect(studio.script_stub, request(seed=101))
    stages = [event.stage for event in events]
    assert stages[0] == Stage.STAGE_ACCEPTED and stages[-1] == Stage.STAGE_DONE
    assert stages.count(Stage.STAGE_SCENES) == 3
    assert stages.index(Stage.STAGE_OUTLINE) < stages.index(Stage.STAGE_SCENES)
    fractions = [event.fraction_done for event in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    episode = events[-1].episode
    assert [scene.index for scene in episode.scenes] == [0, 1, 2]
    streamed = sorted(e.scene.index for e in events if e.stage == Stage.STAGE_SCENES)
    assert streamed == [0, 1, 2]
    cast = {character.name for character in episode.cast}
    speakers = {
        element.dialogue.character
        for scene in episode.scenes
        for element in scene.elements
        if element.HasField("dialogue")
    }
    assert speakers and speakers <= cast
    assert episode.fountain.count("\nINT.") + episode.fountain.count("\nEXT.") >= 3
    assert episode.page_count >= 1 and not episode.render_error
    assert episode.validation.overall > 0


async def test_same_request_returns_the_same_episode_from_the_library(studio: Studio) -> None:
    first = (await collect(studio.script_stub, request(seed=202)))[-1]
    second_events = await collect(studio.script_stub, request(seed=202))
    second = second_events[-1]
    assert second.episode.SerializeToString(deterministic=True) == (
        first.episode.SerializeToString(deterministic=True)
    )
    assert "already written; returned from the library" in second.message
    assert not [e for e in second_events if e.stage == Stage.STAGE_SCENES]
    fetched = await studio.script_stub.GetEpisode(
        script_pb2.GetEpisodeRequest(episode_id=first.episode_id)
    )
    assert fetched.id == first.episode.id


async def test_a_retry_reuses_finished_scenes(studio: Studio, tmp_path: Path) -> None:
    first = (await collect(studio.script_stub, request(seed=303, scene_count=4)))[-1]
    # Forget the finished episode, as if the service had died before storing it: the cache
    # loses it, and the retry goes to a replica whose library never had it.
    await studio.cache_stub.Delete(
        cache_pb2.DeleteRequest(namespace="episodes", key=first.episode_id)
    )
    fresh = studio.settings.with_changes(data_dir=str(tmp_path / "another-library"))
    replica = await start("script", create_script_server, fresh)
    before = await studio.cache_stub.Stats(cache_pb2.StatsRequest())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{replica.port}") as channel:
        stub = script_pb2_grpc.ScriptServiceStub(channel)
        again = (await collect(stub, request(seed=303, scene_count=4)))[-1]
    await replica.stop(0)
    after = await studio.cache_stub.Stats(cache_pb2.StatsRequest())
    scenes_before = next(ns for ns in before.namespaces if ns.namespace == "scenes")
    scenes_after = next(ns for ns in after.namespaces if ns.namespace == "scenes")
    assert scenes_after.hits - scenes_before.hits == 4
    assert scenes_after.sets == scenes_before.sets  # Nothing was written again.
    assert again.episode.SerializeToString(deterministic=True) == (
        first.episode.SerializeToString(deterministic=True)
    )


@pytest.mark.parametrize(
    ("fields", "code", "named"),
    [
        ({"show": ""}, grpc.StatusCode.INVALID_ARGUMENT, "show"),
        ({"show": "   "}, grpc.StatusCode.INVALID_ARGUMENT, "show"),
        ({"scene_count": 0}, grpc.StatusCode.INVALID_ARGUMENT, "scene_count"),
        ({"scene_count": 1000}, grpc.StatusCode.INVALID_ARGUMENT, "scene_count"),
        ({"scene_count": -3}, grpc.StatusCode.INVALID_ARGUMENT, "scene_count"),
        ({"show": "The Wire of Dreams"}, grpc.StatusCode.NOT_FOUND, "show"),
        ({"setting": "x" * 1_000_000}, grpc.StatusCode.INVALID_ARGUMENT, "setting"),
        ({"setting": ""}, grpc.StatusCode.INVALID_ARGUMENT, "setting"),
        ({"request_id": "has spaces"}, grpc.StatusCode.INVALID_ARGUMENT, "request_id"),
        ({"writer": "shakespeare"}, grpc.StatusCode.INVALID_ARGUMENT, "writer"),
    ],
)
async def test_bad_requests_are_refused_with_the_field_named(
    studio: Studio, fields: dict[str, object], code: grpc.StatusCode, named: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await collect(studio.script_stub, request(**fields))
    assert raised.value.code() is code
    assert named in (raised.value.details() or "")
    # The service keeps serving.
    assert (await studio.script_stub.ListShows(script_pb2.ListShowsRequest())).shows


async def test_unset_scene_count_means_a_22_minute_episode_of_8_to_12_scenes(
    studio: Studio,
) -> None:
    message = script_pb2.GenerateEpisodeRequest(show="Cheers", setting="a Mars colony", seed=1)
    episode = (await collect(studio.script_stub, message))[-1].episode
    assert 8 <= len(episode.scenes) <= 12
    target = studio.settings.episode_minutes * 60
    assert episode.outline.target_runtime_seconds == target
    assert abs(episode.runtime_seconds / target - 1) <= 0.15
    assert episode.validation.passed
    explicit = (await collect(studio.script_stub, request(seed=1, scene_count=4)))[-1].episode
    assert explicit.outline.target_runtime_seconds == 4 * studio.settings.scene_seconds


async def test_request_id_cannot_be_reused_for_another_episode(studio: Studio) -> None:
    await collect(studio.script_stub, request(seed=404, request_id="job-404"))
    again = await collect(studio.script_stub, request(seed=404, request_id="job-404"))
    assert again[-1].stage == Stage.STAGE_DONE
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await collect(studio.script_stub, request(seed=405, request_id="job-404"))
    assert raised.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "request_id" in (raised.value.details() or "")


async def test_two_requests_racing_for_one_request_id_get_one_episode(studio: Studio) -> None:
    racers = [request(seed=seed, request_id="job-race") for seed in range(500, 508)]
    outcomes = await asyncio.gather(
        *(collect(studio.script_stub, racer) for racer in racers), return_exceptions=True
    )
    written = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(written) == 1 and written[0][-1].stage == Stage.STAGE_DONE
    assert len(refused) == 7
    assert {r.code() for r in refused} == {grpc.StatusCode.FAILED_PRECONDITION}


async def test_get_episode_errors(studio: Studio) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as malformed:
        await studio.script_stub.GetEpisode(script_pb2.GetEpisodeRequest(episode_id="nope"))
    assert malformed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "episode_id" in (malformed.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await studio.script_stub.GetEpisode(
            script_pb2.GetEpisodeRequest(episode_id="ep-" + "0" * 20)
        )
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND


async def test_list_shows_has_the_catalog(studio: Studio) -> None:
    response = await studio.script_stub.ListShows(script_pb2.ListShowsRequest())
    assert len(response.shows) >= 5
    assert all(len(show.characters) >= 4 for show in response.shows)
    assert "I Love Lucy" in {show.title for show in response.shows}


async def test_dead_dependencies_degrade_instead_of_failing(
    settings: Settings, redis_server: RedisServer
) -> None:
    """No cache and no scene service: the episode still comes, with a clear render error."""
    config = settings.with_changes(
        cache_target="127.0.0.1:1", scene_target="127.0.0.1:1", rpc_timeout_seconds=2.0
    )
    script = await start("script", create_script_server, config)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{script.port}") as channel:
            stub = script_pb2_grpc.ScriptServiceStub(channel)
            events = await collect(stub, request(seed=505))
        episode = events[-1].episode
        assert len(episode.scenes) == 3
        assert "scene service: UNAVAILABLE" in episode.render_error
        assert episode.fountain == ""
    finally:
        await script.stop(0)


async def test_graceful_stop_lets_an_episode_in_flight_finish(studio: Studio) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{studio.script.port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        statuses = watch.__aiter__()
        assert (await anext(statuses)).status == health_pb2.HealthCheckResponse.SERVING
        stream = studio.script_stub.GenerateEpisode(request(seed=606, scene_count=20)).__aiter__()
        first = await anext(stream)
        assert first.stage == Stage.STAGE_ACCEPTED
        stopping = asyncio.create_task(studio.script.stop(5.0))
        # Health flips first, so load balancers stop sending; the episode in flight goes on.
        assert (await anext(statuses)).status == health_pb2.HealthCheckResponse.NOT_SERVING
        events = [event async for event in stream]
        watch.cancel()  # The watch is a call in flight too; the grace period would wait for it.
        await stopping
    assert events[-1].stage == Stage.STAGE_DONE and len(events[-1].episode.scenes) == 20
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await studio.script_stub.ListShows(script_pb2.ListShowsRequest(), timeout=2)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE

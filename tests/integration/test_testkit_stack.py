"""The test kit's in-process stack: the per-test `stack` is wired (script reaches cache and
scene) and the session's `shared_stack` is one stack for every test that asks for it."""

from __future__ import annotations

from doppelganger.v1 import cache_pb2, script_pb2
from testkit import InProcessStack

FIRST_SEEN: dict[str, int] = {}


async def test_the_stack_writes_renders_and_caches_an_episode(stack: InProcessStack) -> None:
    request = script_pb2.GenerateEpisodeRequest(
        show="Cheers", setting="a Mars colony in 2157", scene_count=1, seed=4
    )
    events = [event async for event in stack.script_stub.GenerateEpisode(request)]
    episode = events[-1].episode
    assert episode.fountain and not episode.render_error  # The scene service rendered it.
    stats = await stack.cache_stub.Stats(cache_pb2.StatsRequest())
    assert any(ns.namespace == "scenes" and ns.sets for ns in stats.namespaces)
    assert stack.env()["DOPPEL_SCRIPT_TARGET"] == f"127.0.0.1:{stack.script.port}"
    assert stack.settings.cache_target == stack.cache_target


async def test_the_shared_stack_serves_first(shared_stack: InProcessStack) -> None:
    FIRST_SEEN.setdefault("port", shared_stack.script.port)
    shows = await shared_stack.script_stub.ListShows(script_pb2.ListShowsRequest())
    assert shows.shows


async def test_the_shared_stack_is_the_same_one_later(shared_stack: InProcessStack) -> None:
    assert FIRST_SEEN.get("port", shared_stack.script.port) == shared_stack.script.port

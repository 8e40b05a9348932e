"""Durability of the library on a real SQLite file and a real PostgreSQL server: a writer killed
with SIGKILL mid-write leaves only whole drafts and consistent episodes; 300 MB pushed through a
small LRU Redis leave every stored episode retrievable through GetEpisode."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time

import grpc
import redis
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from doppelganger.v1 import cache_pb2, cache_pb2_grpc, episode_pb2, script_pb2, script_pb2_grpc
from services.script.library import Library
from services.script.library.models import Draft, Episode
from services.script.server import create_script_server
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.telemetry import Telemetry
from testkit import in_process_stack

KILLS = 3
READ_TIMEOUT = 60.0


async def stored_ids_until_killed(url: URL, seed: int, kill_after: int) -> list[str]:
    """Runs the writer child until it has reported `kill_after` commits, SIGKILLs it at once
    (its four writers are mid-transaction), and returns the ids it reported."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.library_writer_child",
        url.render_as_string(hide_password=False), str(seed),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None
    reported: list[str] = []
    try:
        while len(reported) < kill_after:
            line = await asyncio.wait_for(child.stdout.readline(), READ_TIMEOUT)
            assert line, f"the writer exited with {await child.wait()}"
            if line.strip() != b"ready":
                reported.append(line.decode().strip())
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL
    return reported


async def assert_whole(library: Library, reported: list[str]) -> int:
    """Every reported draft is there; every draft there is whole; every episode's count and
    latest draft agree with its drafts. Returns the number of drafts."""
    async with library.engine.connect() as connection:
        draft_ids = set((await connection.scalars(select(Draft.id))).all())
        episodes = (await connection.execute(select(Episode))).all()
        counts = dict(
            (
                await connection.execute(
                    select(Draft.episode_id, func.count()).group_by(Draft.episode_id)
                )
            ).all()
        )
    assert set(reported) <= draft_ids  # Committed before it was reported: never lost.
    for draft in draft_ids:
        stored = await library.get_draft(draft)  # Parses, and checks bytes against SHA-256.
        assert stored.episode.id == draft
    assert {e.id for e in episodes} == set(counts)
    for episode in episodes:
        assert episode.draft_count == counts[episode.id]
        history = await library.history(episode.id)
        assert [d.position for d in history] == list(range(1, episode.draft_count + 1))
        assert history[-1].id == episode.latest_draft_id
    return len(draft_ids)


async def test_a_writer_killed_mid_write_leaves_only_whole_drafts(database_url: URL) -> None:
    rng = random.Random()
    reported: list[str] = []
    for seed in range(KILLS):
        reported += await stored_ids_until_killed(database_url, seed, rng.randrange(8, 40))
        library = await Library.open(database_url, migrate="check")
        try:
            total = await assert_whole(library, reported)
            assert total >= len(reported)
            if database_url.get_backend_name() == "sqlite":
                async with library.engine.connect() as connection:
                    check = await connection.exec_driver_sql("PRAGMA integrity_check")
                    assert check.scalar() == "ok"
        finally:
            await library.close()


async def test_300_mb_through_a_small_lru_cache_loses_no_stored_episode(
    settings: Settings, database_url: URL
) -> None:
    with RedisServer() as small_redis:
        direct = redis.Redis(unix_socket_path=str(small_redis.socket_path))
        direct.config_set("maxmemory", "32mb")
        assert direct.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"
        base = settings.with_changes(redis_url=small_redis.url, refinement_rounds=1)
        try:
            async with in_process_stack(base, script=False) as stack:
                config, cache = stack.settings, stack.cache
                episodes = await generate_and_flood(config, database_url, cache.port)
                info = direct.info("stats")
                assert info["evicted_keys"] > 250  # The LRU really threw things out.
                # A new script service on the same library, as after a restart.
                library = await Library.open(database_url, migrate="check")
                script = await create_script_server(config, Telemetry("script", config), library)
                try:
                    async with grpc.aio.insecure_channel(f"127.0.0.1:{script.port}") as channel:
                        stub = script_pb2_grpc.ScriptServiceStub(channel)
                        for episode in episodes:
                            request = script_pb2.GetEpisodeRequest(episode_id=episode.id)
                            assert await stub.GetEpisode(request) == episode
                finally:
                    await script.stop(0)
                    await library.close()
        finally:
            direct.close()


async def generate_and_flood(
    config: Settings, database_url: URL, cache_port: int
) -> list[episode_pb2.Episode]:
    """Five episodes written and stored, then 300 values of 1 MB set through CacheService."""
    library = await Library.open(database_url, migrate="auto")
    script = await create_script_server(config, Telemetry("script", config), library)
    episodes = []
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{script.port}") as script_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{cache_port}") as cache_channel,
        ):
            stub = script_pb2_grpc.ScriptServiceStub(script_channel)
            for seed in range(5):
                message = script_pb2.GenerateEpisodeRequest(
                    show="I Love Lucy", setting="a Mars colony", scene_count=3, seed=5100 + seed
                )
                events = [event async for event in stub.GenerateEpisode(message)]
                episodes.append(events[-1].episode)
            cache_stub = cache_pb2_grpc.CacheServiceStub(cache_channel)
            value = bytes(1024 * 1024)
            stamp = time.time_ns()
            for start in range(0, 300, 10):
                await asyncio.gather(
                    *(
                        cache_stub.Set(
                            cache_pb2.SetRequest(
                                namespace="pressure", key=f"{stamp}-{n}", value=value
                            )
                        )
                        for n in range(start, start + 10)
                    )
                )
    finally:
        await script.stop(0)
        await library.close()
    return episodes

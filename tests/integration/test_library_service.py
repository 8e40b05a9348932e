"""The script service and its library, through the real gRPC servers (cache on a real Redis, scene)
on a real SQLite file and a real PostgreSQL server: episodes outlive the script service and the
cache, a failed write fails the RPC, and a stale schema stops the service at start."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis
from sqlalchemy.engine import URL

from doppel.stack import wait_until_serving
from doppelganger.v1 import cache_pb2, cache_pb2_grpc, episode_pb2, script_pb2, script_pb2_grpc
from services.script.library import Library
from services.script.library.engine import parse_url
from services.script.server import create_script_server
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.server import ServiceServer
from shared.telemetry import Telemetry
from testkit import free_port, in_process_stack
from testkit.postgres import PostgresServer
from tests.integration.library_samples import draft_id, refuse_draft_inserts_sql, sample_episode

Stage = script_pb2.Stage


@dataclass
class Parts:
    """Cache and scene services, and the settings a script service needs to reach them."""

    settings: Settings
    cache: ServiceServer
    scene: ServiceServer


@pytest.fixture
async def parts(settings: Settings, redis_server: RedisServer) -> AsyncIterator[Parts]:
    base = settings.with_changes(redis_url=redis_server.url, refinement_rounds=1)
    async with in_process_stack(base, script=False) as stack:
        yield Parts(stack.settings, stack.cache, stack.scene)


class Script:
    """A script service on `library`, and a stub to call it."""

    def __init__(self, server: ServiceServer, channel: grpc.aio.Channel) -> None:
        self.server = server
        self.channel = channel
        self.stub = script_pb2_grpc.ScriptServiceStub(channel)

    @classmethod
    async def start(cls, settings: Settings, library: Library) -> Script:
        server = await create_script_server(settings, Telemetry("script", settings), library)
        return cls(server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}"))

    async def stop(self) -> None:
        await self.channel.close()
        await self.server.stop(0)

    async def generate(self, seed: int) -> list[script_pb2.GenerateEpisodeEvent]:
        message = script_pb2.GenerateEpisodeRequest(
            show="I Love Lucy", setting="a Mars colony in 2157", scene_count=3, seed=seed
        )
        return [event async for event in self.stub.GenerateEpisode(message)]

    async def get(self, episode_id: str) -> episode_pb2.Episode:
        return await self.stub.GetEpisode(script_pb2.GetEpisodeRequest(episode_id=episode_id))

    async def regenerate(
        self, episode_id: str, scene_index: int, notes: str
    ) -> episode_pb2.Episode:
        return await self.stub.RegenerateScene(
            script_pb2.RegenerateSceneRequest(
                episode_id=episode_id, scene_index=scene_index, notes=notes
            )
        )


def flush_cache(redis_server: RedisServer) -> None:
    client = redis.Redis(unix_socket_path=str(redis_server.socket_path))
    try:
        client.flushall()
    finally:
        client.close()


async def test_episodes_outlive_the_script_service_and_the_cache(
    parts: Parts, database_url: URL, redis_server: RedisServer
) -> None:
    library = await Library.open(database_url, migrate="auto")
    script = await Script.start(parts.settings, library)
    try:
        events = await script.generate(seed=4101)
    finally:
        await script.stop()
        await library.close()
    assert events[-1].stage == Stage.STAGE_DONE
    episode = events[-1].episode
    flush_cache(redis_server)  # Nothing left but the library.

    library = await Library.open(database_url, migrate="check")
    script = await Script.start(parts.settings, library)
    try:
        assert await script.get(episode.id) == episode
        revised = await script.regenerate(episode.id, 1, "Tighter")
        assert revised.parent_episode_id == episode.id
        # Any stored draft can be revised, not only the latest: a branch from the original.
        branch = await script.regenerate(episode.id, 0, "Let Ethel in on it")
        again = await script.regenerate(revised.id, 2, "Shorter tag")
        assert await script.get(revised.id) == revised

        history = await library.history(episode.id)
        assert [(d.id, d.kind, d.parent_id, d.notes) for d in history] == [
            (episode.id, "generated", None, ""),
            (revised.id, "regenerated", episode.id, "Tighter"),
            (branch.id, "regenerated", episode.id, "Let Ethel in on it"),
            (again.id, "regenerated", revised.id, "Shorter tag"),
        ]
        assert (await library.latest_draft(episode.id)).episode == again
        # The same regeneration again is the stored draft, not a fourth one.
        assert await script.regenerate(episode.id, 1, "Tighter") == revised
        assert len(await library.history(episode.id)) == 4
        # And the same GenerateEpisode request is answered from the library at once.
        repeat = await script.generate(seed=4101)
        assert [e.stage for e in repeat] == [Stage.STAGE_ACCEPTED, Stage.STAGE_DONE]
        assert "from the library" in repeat[-1].message
        assert repeat[-1].episode == episode
    finally:
        await script.stop()
        await library.close()


async def test_a_failed_library_write_fails_the_rpc(parts: Parts, database_url: URL) -> None:
    library = await Library.open(database_url, migrate="auto")
    script = await Script.start(parts.settings, library)
    backend = database_url.get_backend_name()
    try:
        stored = await script.generate(seed=4201)
        original = stored[-1].episode
        async with library.engine.begin() as connection:
            for statement in refuse_draft_inserts_sql(backend):
                await connection.exec_driver_sql(statement)

        events: list[script_pb2.GenerateEpisodeEvent] = []
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            async for event in script.stub.GenerateEpisode(
                script_pb2.GenerateEpisodeRequest(
                    show="I Love Lucy", setting="a Mars colony in 2157", scene_count=3, seed=4202
                )
            ):
                events.append(event)
        assert failed.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE)
        assert "could not be stored" in (failed.value.details() or "")
        assert events and not [e for e in events if e.stage == Stage.STAGE_DONE]
        lost_id = events[0].episode_id
        with pytest.raises(grpc.aio.AioRpcError) as revised:
            await script.regenerate(original.id, 0, "Tighter")
        assert revised.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE)
        assert "could not be stored" in (revised.value.details() or "")

        async with library.engine.begin() as connection:
            await connection.exec_driver_sql("DROP TRIGGER refuse_drafts" + (
                "" if backend == "sqlite" else " ON drafts"
            ))  # fmt: skip
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await script.get(lost_id)  # Not reported done, not stored: not there.
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        retried = await script.generate(seed=4202)
        assert retried[-1].stage == Stage.STAGE_DONE
        assert await script.get(lost_id) == retried[-1].episode
        assert len(await library.history(original.id)) == 1
    finally:
        await script.stop()
        await library.close()


async def test_an_episode_only_the_cache_holds_is_imported(parts: Parts, database_url: URL) -> None:
    """Episodes written before the library existed live in the cache for a week: reading one
    stores it, so it can be revised and outlives the cache."""
    library = await Library.open(database_url, migrate="auto")
    script = await Script.start(parts.settings, library)
    legacy = sample_episode(draft_id("legacy"))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{parts.cache.port}") as channel:
            await cache_pb2_grpc.CacheServiceStub(channel).Set(
                cache_pb2.SetRequest(
                    namespace="episodes", key=legacy.id, value=legacy.SerializeToString()
                )
            )
        assert await script.get(legacy.id) == legacy
        assert [d.kind for d in await library.history(legacy.id)] == ["imported"]
    finally:
        await script.stop()
        await library.close()


def script_service(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.script"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_the_service_refuses_to_start_on_a_stale_postgresql_schema(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url = asyncio.run(postgres_server.create_database(f"stale_{uuid.uuid4().hex[:12]}"))
    port = free_port()
    env = {
        **os.environ,
        "DOPPEL_DATABASE_URL": url,
        "DOPPEL_SCRIPT_PORT": str(port),
        "OTEL_SDK_DISABLED": "true",
    }
    refused = script_service(env)
    output = refused.communicate(timeout=120)[0]
    assert refused.returncode == 2, output
    assert "python -m services.script.library migrate" in output
    assert postgres_server.password not in output

    migrate = subprocess.run(
        [sys.executable, "-m", "services.script.library", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    started = script_service(env)
    try:
        wait_until_serving(f"127.0.0.1:{port}", 60, started)  # type: ignore[arg-type]
    finally:
        started.send_signal(signal.SIGTERM)
        output = started.communicate(timeout=60)[0]
    assert started.returncode == 0, output
    assert postgres_server.password not in output


def test_the_embedded_default_creates_its_library_in_the_data_dir(tmp_path: Path) -> None:
    """`doppel up` and `make demo`: no URL, no set-up; the library appears in DOPPEL_DATA_DIR."""
    port = free_port()
    data_dir = tmp_path / "data"
    env = {
        **os.environ,
        "DOPPEL_DATA_DIR": str(data_dir),
        "DOPPEL_SCRIPT_PORT": str(port),
        "OTEL_SDK_DISABLED": "true",
    }
    started = script_service(env)
    try:
        wait_until_serving(f"127.0.0.1:{port}", 60, started)  # type: ignore[arg-type]
        assert (data_dir / "library.db").is_file()
    finally:
        started.send_signal(signal.SIGTERM)
        output = started.communicate(timeout=60)[0]
    assert started.returncode == 0, output


async def test_a_vanished_database_is_unavailable_not_unknown(
    parts: Parts, postgres_server: PostgresServer
) -> None:
    """PostgreSQL drops the library's database under a running service: every RPC that needs
    it answers UNAVAILABLE with a clear message (and the password stays out of it)."""
    name = f"vanishing_{uuid.uuid4().hex[:12]}"
    library = await Library.open(
        parse_url(await postgres_server.create_database(name)), migrate="auto"
    )
    script = await Script.start(parts.settings, library)
    try:
        episode = (await script.generate(seed=4301))[-1].episode
        await postgres_server.drop_database(name)
        calls = {
            "GetEpisode": script.get(episode.id),
            "RegenerateScene": script.regenerate(episode.id, 0, "Tighter"),
            "GenerateEpisode": script.generate(seed=4302),
        }
        for rpc, call in calls.items():
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await call
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, rpc
            details = failed.value.details() or ""
            assert "library database unavailable" in details, (rpc, details)
            assert postgres_server.password not in details
    finally:
        await script.stop()
        await library.close()

"""Access control on real servers on loopback (script, scene, cache on a real Redis, monitor).

- The default stack has no FaultService: SetFaults on every port answers UNIMPLEMENTED.
- With faults enabled and tokens with roles: a writer gets PERMISSION_DENIED on SetFaults and
  UpdateThresholds (naming the role needed, never the token), an admin is served; a reader reads
  (GetEpisode, ListShows, GetHealth, RenderScene) and is refused GenerateEpisode.
- The cache checks tokens like every server: no token, UNAUTHENTICATED; an ordinary client's
  token, PERMISSION_DENIED; the script service's own token (role service) reads and writes.
- The statistics namespace is reserved; Stats keeps working.
- An accepted SetFaults is logged at WARNING with the caller's identity, counted, and shown by
  the server's own health status of FaultService.
- The script service refuses a message over its receive limit with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from doppelganger.v1 import (
    cache_pb2,
    cache_pb2_grpc,
    faults_pb2,
    faults_pb2_grpc,
    monitor_pb2,
    monitor_pb2_grpc,
    scene_pb2,
    scene_pb2_grpc,
    script_pb2,
    script_pb2_grpc,
)
from services.cache.server import stats_key
from services.monitor.server import create_monitor_server
from shared.config import Settings
from shared.faults import SERVICE_NAME as FAULT_SERVICE
from shared.redis_server import RedisServer
from shared.server import ServiceServer
from shared.telemetry import Telemetry
from testkit import in_process_stack

TOKENS = {
    "admin": "admin-token-5c1e9a",
    "service": "service-token-7d20b4",
    "writer": "writer-token-93af10",
    "reader": "reader-token-0e6c72",
}
# role:name:token; the names are the identities servers log.
AUTH_TOKENS = ",".join(f"{role}:{role}-caller:{token}" for role, token in TOKENS.items())
NAMES = ("script", "scene", "cache", "monitor")
Code: TypeAlias = grpc.StatusCode


@dataclass
class Studio:
    servers: dict[str, ServiceServer]

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.servers[name].port}"


@asynccontextmanager
async def studio(
    settings: Settings,
    redis_server: RedisServer,
    readers: dict[str, InMemoryMetricReader] | None = None,
) -> AsyncIterator[Studio]:
    """The four servers on loopback; the script service calls the others with `auth_token`."""
    base = settings.with_changes(redis_url=redis_server.url)

    def telemetry(name: str, settings: Settings) -> Telemetry:
        if readers is None:
            return Telemetry(name, settings)
        reader = readers.setdefault(name, InMemoryMetricReader())
        return Telemetry(
            name,
            settings.with_changes(telemetry_disabled=False),
            span_exporter=InMemorySpanExporter(),
            metric_readers=[reader],
        )

    monitor = await create_monitor_server(base, telemetry("monitor", base))
    try:
        async with in_process_stack(base, telemetry=telemetry) as stack:
            servers = {"script": stack.script, "scene": stack.scene, "cache": stack.cache}
            yield Studio({**servers, "monitor": monitor})
    finally:
        await monitor.stop(0)


def bearer(role: str | None) -> tuple[tuple[str, str], ...]:
    return () if role is None else (("authorization", f"Bearer {TOKENS[role]}"),)


async def status(call: object) -> tuple[Code, str]:
    """The status of an awaited unary call (OK and '' when it succeeded)."""
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return Code.OK, ""


def set_faults_request(**values: float) -> faults_pb2.SetFaultsRequest:
    switches = [faults_pb2.FaultSwitch(name=name, value=value) for name, value in values.items()]
    return faults_pb2.SetFaultsRequest(switches=switches)


def assert_refusal_names_the_role(details: str, needed: str, caller: str) -> None:
    assert f"needs the {needed} role" in details and caller in details, details
    assert not any(token in details for token in TOKENS.values()), details


async def fault_health(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=FAULT_SERVICE), timeout=5
        )
        return int((await check).status)


@pytest.fixture
def guarded(settings: Settings) -> Settings:
    """Tokens with roles, faults enabled; the script service sends the service token."""
    return settings.with_changes(
        auth_tokens=AUTH_TOKENS, auth_token=TOKENS["service"], faults_enabled=True
    )


# -- the default stack ----------------------------------------------------------------------------


async def test_the_default_stack_has_no_fault_service(
    settings: Settings, redis_server: RedisServer
) -> None:
    async with studio(settings, redis_server) as running:
        for name in NAMES:
            async with grpc.aio.insecure_channel(running.address(name)) as channel:
                faults = faults_pb2_grpc.FaultServiceStub(channel)
                code, _ = await status(faults.SetFaults(set_faults_request(cache_unavailable=1)))
                assert code == Code.UNIMPLEMENTED, name
                code, _ = await status(faults.GetFaults(faults_pb2.GetFaultsRequest()))
                assert code == Code.UNIMPLEMENTED, name
                reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
                listed = [
                    service.name
                    async for response in reflection.ServerReflectionInfo(
                        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
                    )
                    for service in response.list_services_response.service
                ]
                assert FAULT_SERVICE not in listed and listed, name
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await fault_health(running.address(name))
            assert unknown.value.code() == Code.NOT_FOUND


# -- roles ----------------------------------------------------------------------------------------


async def test_only_an_admin_sets_faults_and_thresholds(
    guarded: Settings, redis_server: RedisServer
) -> None:
    async with studio(guarded, redis_server) as running:
        for name in NAMES:
            async with grpc.aio.insecure_channel(running.address(name)) as channel:
                faults = faults_pb2_grpc.FaultServiceStub(channel)
                request = set_faults_request(render_delay_ms=1)
                code, details = await status(faults.SetFaults(request, metadata=bearer("writer")))
                assert code == Code.PERMISSION_DENIED, name
                assert_refusal_names_the_role(details, "admin", "writer-caller")
                code, _ = await status(faults.SetFaults(request))
                assert code == Code.UNAUTHENTICATED, name
                state = await faults.SetFaults(request, metadata=bearer("admin"))
                assert {s.name: s.value for s in state.switches}["render_delay_ms"] == 1
                reset = faults_pb2.SetFaultsRequest(reset=True)
                await faults.SetFaults(reset, metadata=bearer("admin"))
                read = await faults.GetFaults(
                    faults_pb2.GetFaultsRequest(), metadata=bearer("reader")
                )
                assert all(switch.value == 0 for switch in read.switches)
        async with grpc.aio.insecure_channel(running.address("monitor")) as channel:
            monitor = monitor_pb2_grpc.MonitorServiceStub(channel)
            silence = monitor_pb2.UpdateThresholdsRequest(
                thresholds=monitor_pb2.AlertThresholds(
                    error_rate_warning=0.99, error_rate_critical=1
                )
            )
            for role in ("writer", "reader", "service"):
                code, details = await status(
                    monitor.UpdateThresholds(silence, metadata=bearer(role))
                )
                assert code == Code.PERMISSION_DENIED, role
                assert_refusal_names_the_role(details, "admin", f"{role}-caller")
            updated = await monitor.UpdateThresholds(silence, metadata=bearer("admin"))
            assert updated.thresholds.error_rate_critical == 1.0


async def test_a_reader_reads_and_cannot_write(
    guarded: Settings, redis_server: RedisServer
) -> None:
    async with studio(guarded, redis_server) as running:
        async with grpc.aio.insecure_channel(running.address("script")) as channel:
            script = script_pb2_grpc.ScriptServiceStub(channel)
            shows = await script.ListShows(script_pb2.ListShowsRequest(), metadata=bearer("reader"))
            assert shows.shows
            request = script_pb2.GenerateEpisodeRequest(
                show="Taxi", setting="a lighthouse", scene_count=1, seed=3
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in script.GenerateEpisode(request, metadata=bearer("reader")):
                    pass
            assert refused.value.code() == Code.PERMISSION_DENIED
            assert_refusal_names_the_role(refused.value.details() or "", "writer", "reader-caller")
            events = [e async for e in script.GenerateEpisode(request, metadata=bearer("writer"))]
            episode = events[-1].episode
            assert episode.id and len(episode.scenes) == 1
            # Readable: the script service stored it in the cache with its own (service) token.
            got = await script.GetEpisode(
                script_pb2.GetEpisodeRequest(episode_id=episode.id), metadata=bearer("reader")
            )
            assert got.id == episode.id
            regenerate = script_pb2.RegenerateSceneRequest(episode_id=episode.id, scene_index=0)
            code, details = await status(
                script.RegenerateScene(regenerate, metadata=bearer("reader"))
            )
            assert code == Code.PERMISSION_DENIED
            assert_refusal_names_the_role(details, "writer", "reader-caller")
        async with grpc.aio.insecure_channel(running.address("scene")) as channel:
            scene = scene_pb2_grpc.SceneServiceStub(channel)
            rendered = await scene.RenderScene(
                scene_pb2.RenderSceneRequest(scene=episode.scenes[0], cast=episode.cast),
                metadata=bearer("reader"),
            )
            assert rendered.document
        async with grpc.aio.insecure_channel(running.address("monitor")) as channel:
            monitor = monitor_pb2_grpc.MonitorServiceStub(channel)
            report = await monitor.GetHealth(
                monitor_pb2.GetHealthRequest(), metadata=bearer("reader")
            )
            assert 0 <= report.score <= 100


async def test_the_cache_checks_tokens_and_wants_the_service_role(
    guarded: Settings, redis_server: RedisServer
) -> None:
    async with (
        studio(guarded, redis_server) as running,
        grpc.aio.insecure_channel(running.address("cache")) as channel,
    ):
        cache = cache_pb2_grpc.CacheServiceStub(channel)
        plant = cache_pb2.SetRequest(namespace="episodes", key="ep-planted", value=b"x")
        get = cache_pb2.GetRequest(namespace="episodes", key="ep-planted")
        delete = cache_pb2.DeleteRequest(namespace="episodes", key="ep-planted")
        for call in (cache.Set(plant), cache.Get(get), cache.Delete(delete)):
            code, details = await status(call)
            assert code == Code.UNAUTHENTICATED and "bearer token" in details
        code, _ = await status(cache.Stats(cache_pb2.StatsRequest()))
        assert code == Code.UNAUTHENTICATED
        for role in ("writer", "reader"):
            for call in (
                cache.Set(plant, metadata=bearer(role)),
                cache.Get(get, metadata=bearer(role)),
                cache.Delete(delete, metadata=bearer(role)),
            ):
                code, details = await status(call)
                assert code == Code.PERMISSION_DENIED, role
                assert_refusal_names_the_role(details, "service", f"{role}-caller")
        assert (await cache.Set(plant, metadata=bearer("service"))).stored
        assert (await cache.Get(get, metadata=bearer("service"))).found
        stats = await cache.Stats(cache_pb2.StatsRequest(), metadata=bearer("reader"))
        assert stats.sets >= 1


async def test_the_statistics_namespace_is_reserved_and_stats_keep_working(
    settings: Settings, redis_server: RedisServer
) -> None:
    async with (
        studio(settings, redis_server) as running,
        grpc.aio.insecure_channel(running.address("cache")) as channel,
    ):
        cache = cache_pb2_grpc.CacheServiceStub(channel)
        await cache.Set(cache_pb2.SetRequest(namespace="episodes", key="k", value=b"v"))
        for namespace in ("stats", "namespaces", "_internal"):
            for call in (
                cache.Set(cache_pb2.SetRequest(namespace=namespace, key="episodes", value=b"x")),
                cache.Get(cache_pb2.GetRequest(namespace=namespace, key="episodes")),
                cache.GetMany(cache_pb2.GetManyRequest(namespace=namespace, keys=["a"])),
                cache.Delete(cache_pb2.DeleteRequest(namespace=namespace, key="episodes")),
            ):
                code, details = await status(call)
                assert code == Code.INVALID_ARGUMENT, namespace
                assert details.startswith(f"namespace {namespace!r} is reserved"), details
        # A value where a statistics hash belongs, as an older cache let anyone plant: Stats
        # leaves that namespace out instead of failing as "redis unavailable".
        direct = redis.Redis.from_url(redis_server.url)
        direct.set(stats_key("planted-before"), b"not a hash")
        direct.sadd("doppel:v1:namespaces", "planted-before")
        try:
            stats = await cache.Stats(cache_pb2.StatsRequest())
        finally:
            direct.srem("doppel:v1:namespaces", "planted-before")
            direct.delete(stats_key("planted-before"))
            direct.close()
        names = {namespace.namespace for namespace in stats.namespaces}
        assert "episodes" in names and "planted-before" not in names
        assert stats.sets >= 1


# -- an accepted SetFaults is seen ----------------------------------------------------------------


def changes_by_caller(reader: InMemoryMetricReader) -> dict[str, int]:
    data = reader.get_metrics_data()
    counts: dict[str, int] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "doppel.faults.changes":
                    for point in metric.data.data_points:
                        assert isinstance(point, NumberDataPoint)  # A counter's points.
                        counts[str(dict(point.attributes or {})["doppel.caller"])] = int(
                            point.value
                        )
    return counts


async def test_an_accepted_set_faults_is_logged_counted_and_in_local_health(
    guarded: Settings, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    readers: dict[str, InMemoryMetricReader] = {}
    async with studio(guarded, redis_server, readers) as running:
        address = running.address("scene")
        serving, not_serving = (health_pb2.HealthCheckResponse.SERVING,
                                health_pb2.HealthCheckResponse.NOT_SERVING)  # fmt: skip
        assert await fault_health(address) == serving
        async with grpc.aio.insecure_channel(address) as channel:
            faults = faults_pb2_grpc.FaultServiceStub(channel)
            await faults.SetFaults(
                set_faults_request(monitor_unreachable=1, render_delay_ms=5),
                metadata=bearer("admin"),
            )
            # The exports are dropped now; the server itself still tells.
            assert await fault_health(address) == not_serving
            await faults.SetFaults(
                faults_pb2.SetFaultsRequest(reset=True), metadata=bearer("admin")
            )
            assert await fault_health(address) == serving
        assert changes_by_caller(readers["scene"]) == {"admin-caller": 2}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "fault switches set by admin-caller (token)" in line
        and "render_delay_ms=5" in line
        and "monitor_unreachable=1" in line
        for line in warnings
    ), warnings
    assert any("fault switches set by admin-caller (token): now all off" in w for w in warnings)
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert not any(token in logged for token in TOKENS.values())


async def test_a_threshold_change_is_logged_with_the_caller(
    guarded: Settings, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with (
        studio(guarded, redis_server) as running,
        grpc.aio.insecure_channel(running.address("monitor")) as channel,
    ):
        monitor = monitor_pb2_grpc.MonitorServiceStub(channel)
        await monitor.UpdateThresholds(
            monitor_pb2.UpdateThresholdsRequest(
                thresholds=monitor_pb2.AlertThresholds(min_calls=50)
            ),
            metadata=bearer("admin"),
        )
    assert any(
        r.levelno == logging.WARNING
        and "alert thresholds changed by admin-caller" in r.getMessage()
        for r in caplog.records
    )


# -- receive limits -------------------------------------------------------------------------------


async def test_the_script_service_refuses_a_message_over_its_limit(
    settings: Settings, redis_server: RedisServer
) -> None:
    async with studio(settings, redis_server) as running:
        limit = settings.script_max_receive_bytes
        async with grpc.aio.insecure_channel(running.address("script")) as channel:
            script = script_pb2_grpc.ScriptServiceStub(channel)
            too_big = script_pb2.GenerateEpisodeRequest(show="Taxi", setting="x" * (limit + 1))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in script.GenerateEpisode(too_big, timeout=30):
                    pass
            assert refused.value.code() == Code.RESOURCE_EXHAUSTED
            # Under the limit the service itself answers, naming the field.
            big = script_pb2.GenerateEpisodeRequest(show="Taxi", setting="x" * (limit // 2))
            with pytest.raises(grpc.aio.AioRpcError) as invalid:
                async for _ in script.GenerateEpisode(big, timeout=30):
                    pass
            assert invalid.value.code() == Code.INVALID_ARGUMENT
            assert "setting" in (invalid.value.details() or "")
            shows = await script.ListShows(script_pb2.ListShowsRequest(), timeout=10)
            assert shows.shows  # Still serving.


async def test_the_scene_service_takes_more_than_the_script_service(
    settings: Settings, redis_server: RedisServer
) -> None:
    """An episode between the two limits reaches the scene service; one over its own limit is
    refused by gRPC."""
    between = settings.script_max_receive_bytes + 1024 * 1024
    assert between < settings.scene_max_receive_bytes
    async with (
        studio(settings, redis_server) as running,
        grpc.aio.insecure_channel(running.address("scene")) as channel,
    ):
        scene = scene_pb2_grpc.SceneServiceStub(channel)
        request = scene_pb2.RenderEpisodeRequest()
        request.episode.fountain = "x" * between
        chunks = [chunk async for chunk in scene.RenderEpisode(request, timeout=30)]
        assert chunks and chunks[0].info.size_bytes > 0
        request.episode.fountain = "x" * (settings.scene_max_receive_bytes + 1)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in scene.RenderEpisode(request, timeout=30):
                pass
        assert refused.value.code() == Code.RESOURCE_EXHAUSTED


# -- start-up refusals ----------------------------------------------------------------------------


async def run_service(env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.scene", env={**os.environ, **env},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode()


async def test_a_server_will_not_start_open_off_loopback(tmp_path: Path) -> None:
    base = {"DOPPEL_SCENE_PORT": "0", "OTEL_SDK_DISABLED": "true", "DOPPEL_HOST": "0.0.0.0",
            "DOPPEL_AUTH_TOKENS": "", "DOPPEL_AUTH_TOKENS_FILE": ""}  # fmt: skip
    code, output = await run_service(base)
    assert code == 2 and "DOPPEL_ALLOW_OPEN" in output, output
    bad_file = tmp_path / "tokens"
    bad_file.write_text(f"writer:ci:{TOKENS['writer']}\nroot:ops:{TOKENS['admin']}\n")
    code, output = await run_service({**base, "DOPPEL_AUTH_TOKENS_FILE": str(bad_file)})
    assert code == 2 and f"DOPPEL_AUTH_TOKENS_FILE {bad_file} line 2: unknown role" in output
    assert not any(token in output for token in TOKENS.values()), output

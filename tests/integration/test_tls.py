"""TLS and mutual TLS on real servers on loopback, with throwaway certificates (tests/tls_certs.py).

Who is served and who is refused, an episode through script -> cache -> scene with every hop on
mutual TLS, spans and metrics reaching a mutual-TLS monitor over OTLP, and configuration errors
that name the variable.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from doppel.stack import Stack
from doppelganger.v1 import (
    cache_pb2,
    cache_pb2_grpc,
    episode_pb2,
    monitor_pb2,
    monitor_pb2_grpc,
    script_pb2,
    script_pb2_grpc,
)
from services.cache.server import create_cache_server
from services.monitor.server import create_monitor_server
from services.scene.server import create_scene_server
from services.script.server import create_script_server
from shared import healthcheck, security
from shared.config import ConfigError, Settings
from shared.redis_server import RedisServer
from shared.server import ServiceServer, create_channel
from shared.telemetry import Telemetry, trace_id_hex
from testkit import eventually
from tests.tls_certs import TlsFiles, make_tls_files

SETTING = "a lighthouse that only speaks TLS"  # Free text no other test asks for: fresh cache keys.


def server_side(settings: Settings, tls: TlsFiles, *, mutual: bool = False) -> Settings:
    """A server's settings: its certificate, and for mutual TLS the CA its clients must use."""
    return settings.with_changes(
        tls_cert=str(tls.server_cert),
        tls_key=str(tls.server_key),
        tls_ca=str(tls.ca) if mutual else "",
        tls_client_auth="require" if mutual else "none",
    )


def client_side(settings: Settings, ca: Path | None, cert: TlsFiles | None = None) -> Settings:
    """A client's settings: the CA it trusts (None: plaintext) and the certificate it presents."""
    return settings.with_changes(
        tls_ca=str(ca) if ca else "",
        tls_client_cert=str(cert.client_cert) if cert else "",
        tls_client_key=str(cert.client_key) if cert else "",
    )


def every_side(settings: Settings, tls: TlsFiles) -> Settings:
    """What a service of a mutual-TLS stack runs with: server and client halves together. The
    services share one certificate, which gets the service role (script -> cache needs it)."""
    mutual = server_side(settings, tls, mutual=True).with_changes(
        tls_client_roles=(("doppel client", "service"),)
    )
    return client_side(mutual, tls.ca, tls)


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "pki")


@pytest.fixture
def other_ca(tmp_path: Path) -> TlsFiles:
    """A second authority nobody trusts."""
    return make_tls_files(tmp_path / "other", ca_name="some other CA")


async def start_monitor(settings: Settings) -> ServiceServer:
    return await create_monitor_server(settings, Telemetry("monitor", settings))


@pytest.fixture
async def tls_monitor(settings: Settings, tls: TlsFiles) -> AsyncIterator[ServiceServer]:
    monitor = await start_monitor(server_side(settings, tls))
    yield monitor
    await monitor.stop(0)


@pytest.fixture
async def mtls_monitor(settings: Settings, tls: TlsFiles) -> AsyncIterator[ServiceServer]:
    monitor = await start_monitor(server_side(settings, tls, mutual=True))
    yield monitor
    await monitor.stop(0)


def address(server: ServiceServer) -> str:
    return f"127.0.0.1:{server.port}"


async def get_health(target: str, client: Settings) -> monitor_pb2.HealthReport:
    """MonitorService/GetHealth through the services' own channel factory."""
    telemetry = Telemetry("tls-test-client", client.with_changes(telemetry_disabled=True))
    async with create_channel(target, telemetry, client) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        return await stub.GetHealth(monitor_pb2.GetHealthRequest(), timeout=10)


async def refusal(target: str, client: Settings) -> grpc.StatusCode:
    """The status code of a GetHealth the server refuses (fails the test if it is served)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await get_health(target, client)
    return caught.value.code()


def blocking_health(target: str, client: Settings) -> monitor_pb2.HealthReport:
    """GetHealth on the CLI's blocking channel (run it off the event loop the server runs on)."""
    with security.blocking_channel(target, client) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        return stub.GetHealth(monitor_pb2.GetHealthRequest(), timeout=10)


def probe(target: str, client: Settings | None) -> str:
    """What the container health probe (python -m shared.healthcheck) reports."""
    return healthcheck.check(target, timeout=5, settings=client)


async def test_a_client_trusting_the_ca_is_served(
    settings: Settings, tls: TlsFiles, tls_monitor: ServiceServer
) -> None:
    client = client_side(settings, tls.ca)
    report = await get_health(address(tls_monitor), client)
    assert report.score == 100
    assert await asyncio.to_thread(probe, address(tls_monitor), client) == "SERVING"
    assert (await asyncio.to_thread(blocking_health, address(tls_monitor), client)).score == 100


async def test_a_plaintext_client_is_refused(
    settings: Settings, tls_monitor: ServiceServer
) -> None:
    assert await refusal(address(tls_monitor), settings) == grpc.StatusCode.UNAVAILABLE
    assert await asyncio.to_thread(probe, address(tls_monitor), None) == "UNAVAILABLE"


async def test_a_client_trusting_another_ca_is_refused(
    settings: Settings, other_ca: TlsFiles, tls_monitor: ServiceServer
) -> None:
    client = client_side(settings, other_ca.ca)
    assert await refusal(address(tls_monitor), client) == grpc.StatusCode.UNAVAILABLE
    assert await asyncio.to_thread(probe, address(tls_monitor), client) == "UNAVAILABLE"


async def test_mutual_tls_refuses_a_client_without_a_certificate(
    settings: Settings, tls: TlsFiles, mtls_monitor: ServiceServer
) -> None:
    client = client_side(settings, tls.ca)
    assert await refusal(address(mtls_monitor), client) == grpc.StatusCode.UNAVAILABLE
    assert await asyncio.to_thread(probe, address(mtls_monitor), client) == "UNAVAILABLE"


async def test_mutual_tls_refuses_a_certificate_from_another_ca(
    settings: Settings, tls: TlsFiles, other_ca: TlsFiles, mtls_monitor: ServiceServer
) -> None:
    client = client_side(settings, tls.ca, other_ca)
    assert await refusal(address(mtls_monitor), client) == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_serves_a_client_with_its_certificate(
    settings: Settings, tls: TlsFiles, mtls_monitor: ServiceServer
) -> None:
    client = client_side(settings, tls.ca, tls)
    assert (await get_health(address(mtls_monitor), client)).score == 100
    assert await asyncio.to_thread(probe, address(mtls_monitor), client) == "SERVING"


# The whole studio on mutual TLS ------------------------------------------------------------------


LAPTOP = "laptop"  # A client certificate DOPPEL_TLS_CLIENT_ROLES does not list.


@dataclass
class Studio:
    client: Settings  # CA and client certificate only, as the CLI would have.
    monitor: ServiceServer
    cache: ServiceServer
    script: ServiceServer
    tls: TlsFiles


async def start(name: str, factory: Callable[..., Any], settings: Settings) -> ServiceServer:
    server: ServiceServer = await factory(settings, Telemetry(name, settings))
    return server


@pytest.fixture(scope="module")
async def studio(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> AsyncIterator[Studio]:
    """Monitor, cache, scene and script, each serving mutual TLS and calling out over it."""
    tls = make_tls_files(tmp_path_factory.mktemp("pki"), other_clients=(LAPTOP,))
    base = Settings(
        script_port=0, scene_port=0, cache_port=0, monitor_port=0, monitor_http_port=0,
        telemetry_disabled=True, grace_seconds=2.0, redis_url=redis_server.url,
    )  # fmt: skip
    monitor = await start_monitor(every_side(base, tls))
    exporting = every_side(base, tls).with_changes(
        telemetry_disabled=False, monitor_port=monitor.port,
        bsp_schedule_delay_ms=100, metric_export_interval_ms=500,
    )  # fmt: skip
    cache = await start("cache", create_cache_server, exporting)
    scene = await start("scene", create_scene_server, exporting)
    script = await start(
        "script", create_script_server,
        exporting.with_changes(cache_port=cache.port, scene_port=scene.port),
    )  # fmt: skip
    yield Studio(client_side(exporting, tls.ca, tls), monitor, cache, script, tls)
    for server in (script, scene, cache, monitor):
        await server.stop(0)


async def cache_stats(studio: Studio) -> cache_pb2.StatsResponse:
    async with security.secure_channel(address(studio.cache), studio.client) as channel:
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        return await stub.Stats(cache_pb2.StatsRequest(), timeout=10)


async def generate(studio: Studio, telemetry: Telemetry, seed: int) -> episode_pb2.Episode:
    request = script_pb2.GenerateEpisodeRequest(
        show="I Love Lucy", setting=SETTING, scene_count=2, seed=seed
    )
    async with create_channel(address(studio.script), telemetry, studio.client) as channel:
        stub = script_pb2_grpc.ScriptServiceStub(channel)
        events = [event async for event in stub.GenerateEpisode(request, timeout=60)]
    episodes = [event.episode for event in events if event.HasField("episode")]
    assert len(episodes) == 1
    return episodes[0]


async def test_an_episode_goes_script_cache_scene_over_mutual_tls(studio: Studio) -> None:
    before = await cache_stats(studio)
    telemetry = Telemetry("tls-test-client", studio.client.with_changes(telemetry_disabled=True))
    episode = await generate(studio, telemetry, seed=4401)
    after = await cache_stats(studio)
    assert episode.fountain.startswith("Title:")
    assert len(episode.scenes) == 2
    assert episode.render_error == ""  # script -> scene answered (else the error is set).
    assert after.sets > before.sets  # script -> cache answered (its failures are swallowed).


async def test_a_certificate_gets_the_role_listed_for_it_or_the_default(studio: Studio) -> None:
    """`doppel client` is listed as service (it writes the cache); `laptop` is not: a writer."""
    certificate, key = studio.tls.others[LAPTOP]
    laptop = studio.client.with_changes(tls_client_cert=str(certificate), tls_client_key=str(key))
    plant = cache_pb2.SetRequest(namespace="episodes", key="ep-from-a-laptop", value=b"x")
    async with security.secure_channel(address(studio.cache), laptop) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await cache_pb2_grpc.CacheServiceStub(channel).Set(plant, timeout=10)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "needs the service role; caller cert:laptop has writer" in str(refused.value.details())
    async with security.secure_channel(address(studio.script), laptop) as channel:
        shows = await script_pb2_grpc.ScriptServiceStub(channel).ListShows(
            script_pb2.ListShowsRequest(), timeout=10
        )
        assert shows.shows
    async with security.secure_channel(address(studio.cache), studio.client) as channel:
        assert (await cache_pb2_grpc.CacheServiceStub(channel).Set(plant, timeout=10)).stored


async def test_spans_and_metrics_reach_the_monitor_over_mutual_tls(studio: Studio) -> None:
    telemetry = Telemetry("tls-cli", studio.client)
    try:
        with telemetry.tracer.start_as_current_span("tls generate"):
            trace_id = trace_id_hex()
            await generate(studio, telemetry, seed=4402)
        await asyncio.to_thread(telemetry.force_flush, 10_000)
        services = await wait_for_trace(studio, trace_id, {"tls-cli", "script", "cache", "scene"})
        stats = await wait_for_stats(studio, {"script", "cache", "scene"})
    finally:
        await asyncio.to_thread(telemetry.shutdown)
    assert {"tls-cli", "script", "cache", "scene"} <= services
    assert {"script", "cache", "scene"} <= stats


async def wait_for_trace(studio: Studio, trace_id: str, wanted: set[str]) -> set[str]:
    """Services with spans in the trace, asked of the monitor over mutual TLS until all came."""
    request = monitor_pb2.GetTraceRequest(trace_id=trace_id)
    async with security.secure_channel(address(studio.monitor), studio.client) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)

        async def all_came() -> set[str]:
            try:
                seen = {span.service for span in (await stub.GetTrace(request)).spans}
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.NOT_FOUND  # Not arrived yet.
                seen = set()
            assert wanted <= seen, f"spans from {seen}, not yet from all of {wanted}"
            return seen

        return await eventually(all_came, timeout=30, interval=0.1)


async def wait_for_stats(studio: Studio, wanted: set[str]) -> set[str]:
    """Services whose process metrics (OTLP metrics) the monitor reports, until all came."""

    async def all_came() -> set[str]:
        report = await get_health(address(studio.monitor), studio.client)
        seen = {row.service for row in report.service_stats if row.memory_rss_bytes > 0}
        assert wanted <= seen, f"stats from {seen}, not yet from all of {wanted}"
        return seen

    return await eventually(all_came, timeout=30, interval=0.1)


# Configuration errors ----------------------------------------------------------------------------

BAD_CONFIGS: list[tuple[str, dict[str, str], str]] = [
    ("cert without key", {"tls_cert": "server"}, "DOPPEL_TLS_CERT and DOPPEL_TLS_KEY"),
    ("key without cert", {"tls_key": "server_key"}, "DOPPEL_TLS_CERT and DOPPEL_TLS_KEY"),
    ("require without CA", {"tls_cert": "server", "tls_key": "server_key"}, "needs DOPPEL_TLS_CA"),
    ("require without cert", {"tls_ca": "ca"}, "require needs DOPPEL_TLS_CERT"),
    ("client cert, no key", {"tls_ca": "ca", "tls_client_cert": "client"}, "TLS_CLIENT_KEY must"),
    (
        "client cert, no CA",
        {"tls_client_cert": "client", "tls_client_key": "ck"},
        "needs DOPPEL_TLS_CA",
    ),
    (
        "missing key file",
        {"tls_cert": "server", "tls_key": "missing"},
        "DOPPEL_TLS_KEY: cannot read",
    ),
    ("CA is a directory", {"tls_ca": "directory"}, "DOPPEL_TLS_CA: cannot read"),
    (
        "cert not PEM",
        {"tls_cert": "garbage", "tls_key": "server_key"},
        "DOPPEL_TLS_CERT: .* not a PEM",
    ),
]
REQUIRE = {"require without CA", "require without cert"}
SECRET = "sk-not-a-pem-but-a-secret-3141"


def resolve(tls: TlsFiles, name: str) -> str:
    """A file name of BAD_CONFIGS as a path: one of the certificates, or a broken file."""
    files = {
        "server": tls.server_cert, "server_key": tls.server_key, "ca": tls.ca,
        "client": tls.client_cert, "ck": tls.client_key, "directory": tls.ca.parent,
        "missing": tls.ca.parent / "missing.pem", "garbage": tls.ca.parent / "garbage.pem",
    }  # fmt: skip
    files["garbage"].write_text(SECRET)
    return str(files[name])


@pytest.mark.parametrize(
    ("case", "changes", "variable"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_tls_configuration_names_the_variable(
    settings: Settings, tls: TlsFiles, case: str, changes: dict[str, str], variable: str
) -> None:
    paths = {field: resolve(tls, name) for field, name in changes.items()}
    auth = "require" if case in REQUIRE else "none"
    with pytest.raises(ConfigError, match=variable) as caught:
        security.check_tls(settings.with_changes(tls_client_auth=auth, **paths))
    assert SECRET not in str(caught.value)


def test_an_unknown_client_auth_mode_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="DOPPEL_TLS_CLIENT_AUTH"):
        Settings.from_env({"DOPPEL_TLS_CLIENT_AUTH": "optional"})


def test_doppel_up_refuses_bad_tls_before_starting_anything(
    settings: Settings, tls: TlsFiles
) -> None:
    stack = Stack(settings.with_changes(tls_cert=str(tls.server_cert)), services=("cache",))
    with pytest.raises(ConfigError, match="DOPPEL_TLS_KEY"):
        stack.start()
    assert stack.children == [] and stack.redis is None


async def test_a_service_with_a_bad_tls_file_stops_at_start_naming_it(tls: TlsFiles) -> None:
    """The real entry point: exit code 2, the variable named, the file's contents never shown."""
    garbage = tls.ca.parent / "key.txt"
    garbage.write_text(SECRET)
    env = {
        **os.environ, "DOPPEL_SCENE_PORT": "0", "OTEL_SDK_DISABLED": "true",
        "DOPPEL_TLS_CERT": str(tls.server_cert), "DOPPEL_TLS_KEY": str(garbage),
    }  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.scene", env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    text = output.decode()
    assert process.returncode == 2, text
    assert "configuration: DOPPEL_TLS_KEY" in text
    assert SECRET not in text

"""REDIS_URL with a password, an ACL user and TLS, against real redis-server processes.

The right credentials work end to end (Set/Get over gRPC); a wrong or missing password stops the
cache at start with a message that says so; a password rotated under a running cache makes calls
fail UNAVAILABLE saying so. In every case the password and the unredacted URL stay out of logs,
spans, metrics and gRPC error details. TLS runs on Debian's TLS-capable Redis (redis-tools):
`rediss://` with the test CA works, without it the certificate is not trusted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from doppelganger.v1 import cache_pb2, cache_pb2_grpc
from services.cache.redis_url import connect_redis, redact_url, refused_credentials
from services.cache.server import create_cache_server, entry_key
from shared.config import Settings
from shared.redis_server import RedisServer, RedisTls
from shared.server import ServiceServer
from shared.telemetry import Telemetry
from tests.tls_certs import make_tls_files

PASSWORD = "s3cret-redis-pw-41f7"
ROTATED = "rotated-redis-pw-9b2c"
WRONG = "wrong-redis-pw-0d6e"
USER = "doppel-cache"


@dataclass
class Captured:
    """What a cache server under test let out: spans and metrics."""

    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def text(self) -> str:
        spans = [span.to_json() for span in self.spans.get_finished_spans()]
        data = self.metrics.get_metrics_data()
        return "\n".join([*spans, data.to_json() if data else ""])


@pytest.fixture(scope="module")
def protected() -> Iterator[RedisServer]:
    """Redis with `requirepass` and an ACL user, both with PASSWORD."""
    with RedisServer(password=PASSWORD, username=USER) as server:
        yield server


@pytest.fixture
def captured() -> Captured:
    return Captured(InMemorySpanExporter(), InMemoryMetricReader())


async def start_cache(settings: Settings, url: str, captured: Captured) -> ServiceServer:
    config = settings.with_changes(redis_url=url, telemetry_disabled=False)
    telemetry = Telemetry(
        "cache", config, span_exporter=captured.spans, metric_readers=[captured.metrics]
    )
    return await create_cache_server(config, telemetry)


async def round_trip(port: int, key: str) -> cache_pb2.GetResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        cache = cache_pb2_grpc.CacheServiceStub(channel)
        await cache.Set(cache_pb2.SetRequest(namespace="auth", key=key, value=b"value"))
        return await cache.Get(cache_pb2.GetRequest(namespace="auth", key=key))


async def serving(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        return int((await check).status)


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(
        f"{record.getMessage()} {record.exc_text or ''} {record.args!r}"
        for record in caplog.records
    )


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text


def url_form(server: RedisServer, form: str, password: str = PASSWORD) -> str:
    """REDIS_URL in each form that carries a password: in the user part, with or without a
    user, or as query parameters (redis-py passes `password` and `username` on)."""
    if form == "requirepass":
        return server.url_with(username="", password=password)
    if form == "acl-user":
        return server.url_with(password=password)
    if form == "query":
        return f"unix://{server.socket_path}?password={password}"
    return f"unix://{server.socket_path}?db=0&username={USER}&password={password}"


URL_FORMS = ["requirepass", "acl-user", "query", "query-user"]


@pytest.mark.parametrize("form", URL_FORMS)
async def test_the_right_credentials_in_redis_url_work(
    settings: Settings,
    protected: RedisServer,
    captured: Captured,
    caplog: pytest.LogCaptureFixture,
    form: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = url_form(protected, form)
    assert PASSWORD in url  # The URL carries it as is: a leaked URL leaks the password.
    assert PASSWORD not in repr(settings.with_changes(redis_url=url))
    cache = await start_cache(settings, url, captured)
    try:
        got = await round_trip(cache.port, f"right-{form}")
        assert got.found and got.value == b"value"
        assert await serving(cache.port) == health_pb2.HealthCheckResponse.SERVING
    finally:
        await cache.stop(0)
    direct = redis.Redis.from_url(protected.url)
    assert direct.get(entry_key("auth", f"right-{form}")) == b"value"
    direct.close()
    assert f"Redis at {redact_url(url)}" in logged(caplog)
    assert_no_secret(logged(caplog) + captured.text(), PASSWORD, url)


@pytest.mark.parametrize(
    ("form", "password", "expected"),
    [
        *((form, WRONG, "refused the user/password") for form in URL_FORMS),
        ("requirepass", "", "requires a password and REDIS_URL has none"),
    ],
    ids=[*(f"wrong-{form}" for form in URL_FORMS), "missing"],
)
async def test_wrong_or_missing_password_stops_the_cache_at_start(
    settings: Settings,
    protected: RedisServer,
    captured: Captured,
    caplog: pytest.LogCaptureFixture,
    form: str,
    password: str,
    expected: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = url_form(protected, form, password)
    with pytest.raises(OSError, match=expected) as refused:
        await start_cache(settings, url, captured)
    assert redact_url(url) in str(refused.value)
    assert ("***" in str(refused.value)) == bool(password)
    everything = str(refused.value) + logged(caplog) + captured.text()
    assert_no_secret(everything, PASSWORD, WRONG, *([url] if password else []))


@pytest.mark.parametrize("form", ["requirepass", "acl-user"])
async def test_a_refused_log_in_is_an_error_not_a_wait(protected: RedisServer, form: str) -> None:
    """The pooled client's first command fails with Redis' refusal. (With redis-py's idle
    health check on, a refused log-in made the check reconnect and log in again, recursing
    until the caller's timeout: a cache start hung for two minutes in CI.)"""
    client = connect_redis(url_form(protected, form, "" if form == "requirepass" else WRONG),
                           max_connections=2)  # fmt: skip
    try:
        with pytest.raises(redis.RedisError) as refused:
            await asyncio.wait_for(client.ping(), 30)
    finally:
        await client.aclose()
    assert refused_credentials(refused.value), repr(refused.value)


@pytest.mark.parametrize("form", ["acl-user", "query-user"])
async def test_the_cache_process_exits_1_with_a_clear_message(
    protected: RedisServer, form: str
) -> None:
    url = url_form(protected, form, WRONG)
    env = {**os.environ, "REDIS_URL": url, "DOPPEL_CACHE_PORT": "0", "OTEL_SDK_DISABLED": "true"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cache", env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert "Redis refused the user/password in REDIS_URL" in err.decode()
    assert redact_url(url) in err.decode() and "***" in redact_url(url)
    assert_no_secret(out.decode() + err.decode(), PASSWORD, WRONG, url)


@pytest.fixture
def rotatable() -> Iterator[RedisServer]:
    with RedisServer(password=PASSWORD) as server:
        yield server


@pytest.fixture
async def rotated_cache(
    settings: Settings, rotatable: RedisServer, captured: Captured
) -> AsyncIterator[ServiceServer]:
    """A cache that started with the right password, whose Redis then changed it."""
    cache = await start_cache(settings, rotatable.url, captured)
    assert (await round_trip(cache.port, "before")).found
    admin = redis.Redis.from_url(rotatable.url)
    admin.config_set("requirepass", ROTATED)
    admin.client_kill_filter(_type="normal", skipme=True)  # Its connections must log in again.
    admin.close()
    yield cache
    await cache.stop(0)


async def test_a_rotated_password_fails_calls_unavailable_without_the_password(
    rotated_cache: ServiceServer,
    rotatable: RedisServer,
    captured: Captured,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{rotated_cache.port}") as channel:
        cache = cache_pb2_grpc.CacheServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await cache.Get(cache_pb2.GetRequest(namespace="auth", key="before"))
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    details = str(failed.value.details())
    assert "AuthenticationError: Redis refused the user/password in REDIS_URL" in details
    assert "redis get failed: AuthenticationError" in logged(caplog)
    rotated_cache.telemetry.force_flush()
    spans = captured.spans.get_finished_spans()
    assert any(span.name.endswith("CacheService/Get") and not span.status.is_ok for span in spans)
    everything = details + str(failed.value.debug_error_string()) + logged(caplog)
    assert_no_secret(everything + captured.text(), PASSWORD, ROTATED, rotatable.url)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    files = make_tls_files(tmp_path_factory.mktemp("redis-tls"))
    tls = RedisTls(cert=files.server_cert, key=files.server_key, ca=files.ca)
    with RedisServer(password=PASSWORD, tls=tls) as server:
        yield server


async def test_rediss_with_the_test_ca_works_over_tls(
    settings: Settings,
    tls_redis: RedisServer,
    captured: Captured,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = tls_redis.tls_url
    assert url.startswith("rediss://") and "ssl_ca_certs=" in url
    cache = await start_cache(settings, url, captured)
    try:
        got = await round_trip(cache.port, "over-tls")
    finally:
        await cache.stop(0)
    assert got.found and got.value == b"value"
    direct = redis.Redis.from_url(tls_redis.url)  # The Unix socket: plaintext, same server.
    assert direct.get(entry_key("auth", "over-tls")) == b"value"
    direct.close()
    assert_no_secret(logged(caplog) + captured.text(), PASSWORD, url)


async def test_rediss_without_the_ca_does_not_trust_the_server(
    settings: Settings, tls_redis: RedisServer, captured: Captured
) -> None:
    untrusted = tls_redis.tls_url.split("?")[0]  # The system's CAs only.
    cache = await start_cache(settings, untrusted, captured)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{cache.port}") as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await stub.Get(cache_pb2.GetRequest(namespace="auth", key="over-tls"))
    finally:
        await cache.stop(0)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "redis unavailable: ConnectionError" in str(failed.value.details())
    assert PASSWORD not in str(failed.value.details())


def test_redact_url_hides_only_the_password() -> None:
    cases = {
        f"redis://:{PASSWORD}@redis:6379/0": "redis://:***@redis:6379/0",
        f"rediss://{USER}:{PASSWORD}@h:6380/1?ssl_ca_certs=/ca.pem": (
            f"rediss://{USER}:***@h:6380/1?ssl_ca_certs=/ca.pem"
        ),
        f"unix://:{PASSWORD}@/run/redis.sock?db=2": "unix://:***@/run/redis.sock?db=2",
        "redis://redis:6379/0": "redis://redis:6379/0",
        "redis://[::1:6379/0": "<unparseable REDIS_URL>",
        f"redis://redis:6379/0?password={PASSWORD}": "redis://redis:6379/0?password=***",
        f"rediss://h/0?ssl_ca_certs=/ca.pem&username={USER}&password={PASSWORD}&db=1": (
            f"rediss://h/0?ssl_ca_certs=/ca.pem&username={USER}&password=***&db=1"
        ),
        f"rediss://h/0?ssl_password={PASSWORD}&Password={PASSWORD}": (
            "rediss://h/0?ssl_password=***&Password=***"
        ),
        f"redis://:{PASSWORD}@h/0?password={PASSWORD}": "redis://:***@h/0?password=***",
    }
    for url, redacted in cases.items():
        assert redact_url(url) == redacted

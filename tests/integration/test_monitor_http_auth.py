"""Bearer tokens on the monitor's HTTP port: the real monitor server, over real HTTP.

With `DOPPEL_AUTH_TOKENS` (and `_FILE`) set, every route but `/healthz` and the OTLP/HTTP
receivers answers 401 with `WWW-Authenticate: Bearer` unless the request carries an accepted
token; a browser logs in once with `/?token=` and gets a session cookie that is not the token.
The tokens never show up in a log record or a response.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from services.monitor.server import MonitorServer, create_monitor_server
from shared.config import Settings
from shared.telemetry import Telemetry

TOKEN = "monitor-http-token-5c1e9a"
FILE_TOKEN = "monitor-file-token-82d4f0"
WRONG = "monitor-http-token-5c1e9b"  # One character off.
GUARDED = ["/", "/api/health", "/api/alerts", "/api/operations", "/api/traces", "/metrics"]
PROTOBUF = {"Content-Type": "application/x-protobuf"}


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]  # Lowercase names.
    body: bytes

    def raw(self) -> str:
        """Every header and the body as one text, to look for tokens in."""
        lines = [f"{name}: {value}" for name, value in self.headers.items()]
        return "\n".join(lines) + "\n" + self.body.decode("latin-1")


def call(port: int, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body or None, headers=dict(headers))
        response = connection.getresponse()
        found = {name.lower(): value for name, value in response.getheaders()}
        return Reply(response.status, found, response.read())
    finally:
        connection.close()


async def request(
    port: int,
    path: str,
    headers: Mapping[str, str] | None = None,
    method: str = "GET",
    body: bytes = b"",
) -> Reply:
    return await asyncio.to_thread(call, port, method, path, headers or {}, body)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def start_guarded(settings: Settings, directory: Path) -> MonitorServer:
    """A monitor accepting TOKEN (DOPPEL_AUTH_TOKENS) and FILE_TOKEN (DOPPEL_AUTH_TOKENS_FILE)."""
    tokens_file = directory / "tokens"
    tokens_file.write_text(f"# monitor tokens\n{FILE_TOKEN}\n")
    guarded = settings.with_changes(auth_tokens=TOKEN, auth_tokens_file=str(tokens_file))
    return await create_monitor_server(guarded, Telemetry("monitor", guarded))


@pytest.fixture
async def monitor(settings: Settings, tmp_path: Path) -> AsyncIterator[MonitorServer]:
    server = await start_guarded(settings, tmp_path)
    yield server
    await server.stop(0)


def export(service: str) -> bytes:
    """An OTLP/HTTP body with one SERVER span of `service`."""
    span = trace_pb2.Span(
        trace_id=bytes(range(16)), span_id=bytes(range(8)), name="Probe/Call",
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=1_000_000_000, end_time_unix_nano=1_005_000_000,
    )  # fmt: skip
    name = common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value=service))
    spans = trace_pb2.ResourceSpans(
        resource=resource_pb2.Resource(attributes=[name]),
        scope_spans=[trace_pb2.ScopeSpans(spans=[span])],
    )
    message = trace_service_pb2.ExportTraceServiceRequest(resource_spans=[spans])
    return message.SerializeToString()


def assert_refused(reply: Reply) -> None:
    assert reply.status == 401
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert b"Authorization: Bearer <token>" in reply.body


async def test_every_guarded_route_refuses_a_request_without_a_token(
    monitor: MonitorServer,
) -> None:
    for path in GUARDED:
        assert_refused(await request(monitor.http_port, path))
    head = await request(monitor.http_port, "/api/health", method="HEAD")
    assert head.status == 401 and head.headers["www-authenticate"].startswith("Bearer")
    # A scheme other than Bearer is no token either.
    basic = {"Authorization": f"Basic {TOKEN}"}
    assert_refused(await request(monitor.http_port, "/metrics", basic))


async def test_a_wrong_token_is_refused_everywhere(monitor: MonitorServer) -> None:
    for token in (WRONG, TOKEN[:-1], f"{TOKEN}x", f"{TOKEN},{FILE_TOKEN}"):
        for path in GUARDED:
            assert_refused(await request(monitor.http_port, path, bearer(token)))
    forged_cookie = {"Cookie": f"doppel_monitor_token={TOKEN}"}
    assert_refused(await request(monitor.http_port, "/api/health", forged_cookie))


async def test_an_accepted_token_opens_every_guarded_route(monitor: MonitorServer) -> None:
    expected_types = {"/": "text/html", "/metrics": "text/plain", "/api/health": "application/json"}
    for token in (TOKEN, FILE_TOKEN):
        for path in GUARDED:
            reply = await request(monitor.http_port, path, bearer(token))
            assert reply.status == 200, path
            kind = expected_types.get(path, "application/json")
            assert reply.headers["content-type"].startswith(kind), path
    lowercase = {"authorization": f"bearer {TOKEN}"}
    metrics = await request(monitor.http_port, "/metrics", lowercase)
    assert metrics.status == 200 and b"doppel_health_score 100" in metrics.body


async def test_healthz_and_otlp_http_stay_open(monitor: MonitorServer) -> None:
    healthz = await request(monitor.http_port, "/healthz")
    assert (healthz.status, healthz.body) == (200, b"ok")
    body = export("open-exporter")
    accepted = await request(monitor.http_port, "/v1/traces", PROTOBUF, "POST", body)
    assert accepted.status == 200 and accepted.headers["content-type"] == PROTOBUF["Content-Type"]
    listed = await request(monitor.http_port, "/api/operations", bearer(TOKEN))
    assert b'"service": "open-exporter"' in listed.body


async def test_a_browser_logs_in_with_the_token_once_and_keeps_a_session_cookie(
    monitor: MonitorServer,
) -> None:
    login = await request(monitor.http_port, f"/?token={TOKEN}")
    assert login.status == 303 and login.headers["location"] == "/"
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    session = cookie.split(";")[0]
    assert session.startswith("doppel_monitor_token=") and TOKEN not in session
    for path in GUARDED:
        reply = await request(monitor.http_port, path, {"Cookie": f"theme=dark; {session}"})
        assert reply.status == 200, path
    wrong_login = await request(monitor.http_port, f"/?token={WRONG}")
    assert_refused(wrong_login)
    assert "set-cookie" not in wrong_login.headers
    # `?token=` is only the page's login: an API route does not take it.
    assert_refused(await request(monitor.http_port, f"/api/health?token={TOKEN}"))


async def test_without_tokens_every_route_is_open(settings: Settings) -> None:
    server = await create_monitor_server(settings, Telemetry("monitor", settings))
    try:
        for path in GUARDED:
            assert (await request(server.http_port, path)).status == 200, path
    finally:
        await server.stop(0)


async def exchange_every_way(port: int) -> list[Reply]:
    """Right, file and wrong tokens in the header, a cookie and the login query, on every route."""
    replies = []
    for token in (TOKEN, FILE_TOKEN, WRONG):
        for path in [*GUARDED, "/healthz", f"/?token={token}", f"/api/traces?token={token}"]:
            replies.append(await request(port, path, bearer(token)))
            replies.append(await request(port, path, {"Cookie": f"x={token}"}))
        replies.append(await request(port, f"/?token={token}"))
    return replies


async def test_tokens_never_reach_the_logs_or_a_response(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monitor = await start_guarded(settings.with_changes(log_level="DEBUG"), tmp_path)
    try:
        replies = await exchange_every_way(monitor.http_port)
    finally:
        await monitor.stop(0)
    assert {reply.status for reply in replies} >= {200, 303, 401}
    texts = [reply.raw() for reply in replies]
    logged = [record.getMessage() for record in caplog.records]
    assert any("monitor HTTP on" in line for line in logged)  # The capture does see the monitor.
    for secret in (TOKEN, FILE_TOKEN, WRONG):
        assert not [text for text in texts if secret in text]
        assert not [line for line in logged if secret in line]

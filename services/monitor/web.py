"""The monitor's HTTP routes (on DOPPEL_MONITOR_HTTP_PORT): the status page, `/healthz`, the
JSON API the page reads, `/metrics`, and the OTLP/HTTP receivers (`/v1/traces`, `/v1/metrics`).

Reads wait until the exports accepted before them are applied, so a test or a user sees what it
sent. With bearer tokens set every route but `/healthz` and the receivers needs a token or the
session cookie. Routes, status codes and the login flow: docs/monitor.md (Bearer tokens,
Ingestion).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from doppelganger.v1 import monitor_pb2
from services.monitor import otlp_http
from services.monitor.http import JSON, TEXT, Handler, HttpError, Request, Response, text
from services.monitor.prometheus import CONTENT_TYPE as PROMETHEUS
from services.monitor.prometheus import render_metrics
from services.monitor.state import MonitorState
from services.monitor.stats import WINDOWS_SECONDS
from services.monitor.status_page import STATUS_PAGE
from shared import security

MAX_TRACES_LISTED = 20
GET = frozenset({"GET"})
POST = frozenset({"POST"})

Routes = dict[str, tuple[frozenset[str], Handler]]

# Open with tokens configured: the liveness probe and the OTLP receivers (exporters carry no
# token, as on gRPC). Every other route, present or future, is guarded.
OPEN_PATHS = frozenset({"/healthz", "/v1/traces", "/v1/metrics", "/favicon.ico"})
LOGIN_PATH = "/"  # The only route that takes `?token=` (a browser's first visit).
TOKEN_COOKIE = "doppel_monitor_token"
UNAUTHORIZED = (
    "missing or invalid bearer token: send Authorization: Bearer <token> "
    "(in a browser, open /?token=<token> once)"
)


def _as_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )


def _json(payload: object) -> Response:
    return Response(HTTPStatus.OK, JSON, json.dumps(payload).encode())


def _int_param(query: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except ValueError as exc:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"{name} must be an integer") from exc


def _cookie(header: str, name: str) -> str:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


def _presented(request: Request) -> tuple[str, str]:
    """What the request carries and where: `header`, `query` (login on `/`), `cookie` or ``."""
    header = request.headers.get("authorization", "")
    token = security.presented_token([(security.AUTHORIZATION, header)])
    if token:
        return token, "header"
    if request.path == LOGIN_PATH and "token" in request.query:
        return request.query["token"], "query"
    cookie = _cookie(request.headers.get("cookie", ""), TOKEN_COOKIE)
    return cookie, "cookie" if cookie else ""


def _unauthorized() -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="doppelganger-monitor"'}
    return Response(HTTPStatus.UNAUTHORIZED, TEXT, (UNAUTHORIZED + "\n").encode(), headers)


class _Sessions:
    """Browser sessions: the cookie holds HMAC(key, token), never the token. The key is made
    at start, so a restart logs every browser out and a cookie reveals nothing of the token."""

    def __init__(self, tokens: frozenset[str]) -> None:
        self._key = secrets.token_bytes(32)
        self.values = frozenset(self.value(token) for token in tokens)

    def value(self, token: str) -> str:
        return hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()

    def login(self, token: str) -> Response:
        """303 to the page (no token in its address) with the session cookie."""
        cookie = f"{TOKEN_COOKIE}={self.value(token)}; Path=/; HttpOnly; SameSite=Strict"
        headers = {"Location": LOGIN_PATH, "Set-Cookie": cookie, "Referrer-Policy": "no-referrer"}
        return Response(HTTPStatus.SEE_OTHER, TEXT, b"logged in: see /\n", headers)


def _guarded(handler: Handler, tokens: frozenset[str], sessions: _Sessions) -> Handler:
    async def guarded(request: Request) -> Response:
        presented, source = _presented(request)
        accepted = sessions.values if source == "cookie" else tokens
        if not security.is_accepted(presented, accepted):
            return _unauthorized()
        if source == "query":
            return sessions.login(presented)
        return await handler(request)

    return guarded


def guard_routes(routes: Routes, tokens: frozenset[str]) -> Routes:
    """`routes` with every path outside `OPEN_PATHS` behind the token check (none: unchanged)."""
    if not tokens:
        return dict(routes)
    sessions = _Sessions(tokens)
    return {
        path: (methods, handler if path in OPEN_PATHS else _guarded(handler, tokens, sessions))
        for path, (methods, handler) in routes.items()
    }


def monitor_routes(state: MonitorState, tokens: frozenset[str] = frozenset()) -> Routes:
    """Every route of the monitor over its state; with `tokens`, guarded (`guard_routes`)."""

    async def page(request: Request) -> Response:
        return Response(HTTPStatus.OK, "text/html; charset=utf-8", STATUS_PAGE.encode())

    async def healthz(request: Request) -> Response:
        return Response(HTTPStatus.OK, TEXT, b"ok")

    async def api_health(request: Request) -> Response:
        await state.queue.settled()
        return _json(_as_dict(state.health_report()))

    async def api_alerts(request: Request) -> Response:
        await state.queue.settled()
        alerts = monitor_pb2.ListAlertsResponse(alerts=state.alerts(include_resolved=True))
        return _json(_as_dict(alerts))

    async def api_operations(request: Request) -> Response:
        window = _int_param(request.query, "window", WINDOWS_SECONDS[0])
        if window not in WINDOWS_SECONDS:
            raise HttpError(HTTPStatus.BAD_REQUEST, "window must be 60, 300 or 900")
        await state.queue.settled()
        listed = monitor_pb2.ListOperationsResponse(
            operations=state.operations("", window), window_seconds=window
        )
        return _json(_as_dict(listed))

    async def api_traces(request: Request) -> Response:
        limit = min(max(_int_param(request.query, "limit", 5), 1), MAX_TRACES_LISTED)
        await state.queue.settled()
        traces = [
            {"trace_id": spans[0].trace_id, "spans": [_as_dict(s) for s in spans]}
            for spans in state.latest_traces(limit)
        ]
        return _json({"traces": traces})

    async def metrics(request: Request) -> Response:
        await state.queue.settled()
        return Response(HTTPStatus.OK, PROMETHEUS, render_metrics(state).encode())

    async def otlp_traces(request: Request) -> Response:
        export, media = otlp_http.decode(request, trace_service_pb2.ExportTraceServiceRequest)
        as_received = request.body if media == otlp_http.PROTOBUF else b""
        rejected = state.accept_traces(export, as_received)
        if rejected is None:
            return Response(
                HTTPStatus.TOO_MANY_REQUESTS, TEXT, b"monitor overloaded\n", {"Retry-After": "1"}
            )
        response = trace_service_pb2.ExportTraceServiceResponse()
        if rejected:
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = (
                f"at most {state.max_spans_per_export} spans per export"
            )
        return otlp_http.encode(HTTPStatus.OK, response, media)

    async def otlp_metrics(request: Request) -> Response:
        export, media = otlp_http.decode(request, metrics_service_pb2.ExportMetricsServiceRequest)
        as_received = request.body if media == otlp_http.PROTOBUF else b""
        return otlp_http.encode(HTTPStatus.OK, state.accept_metrics(export, as_received), media)

    async def not_found(request: Request) -> Response:
        return text(HTTPStatus.NOT_FOUND, "not found")

    routes: Routes = {
        "/": (GET, page),
        "/healthz": (GET, healthz),
        "/api/health": (GET, api_health),
        "/api/alerts": (GET, api_alerts),
        "/api/operations": (GET, api_operations),
        "/api/traces": (GET, api_traces),
        "/metrics": (GET, metrics),
        "/v1/traces": (POST, otlp_traces),
        "/v1/metrics": (POST, otlp_metrics),
        "/favicon.ico": (GET, not_found),
    }
    return guard_routes(routes, tokens)

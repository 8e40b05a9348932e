"""The monitor's HTTP routes (on DOPPEL_MONITOR_HTTP_PORT).

- `GET /`: the status page (services/monitor/status_page.py), which reads the JSON below.
- `GET /healthz`: 200 `ok` while the process serves (a liveness probe).
- `GET /api/health`: the HealthReport; `/api/alerts`: active then resolved alerts;
  `/api/operations?window=60`: ListOperations; `/api/traces?limit=5`: the latest traces' spans.
  JSON with proto field names, every field present.
- `GET /metrics`: Prometheus text format (services/monitor/prometheus.py).
- `POST /v1/traces`, `POST /v1/metrics`: OTLP/HTTP with protobuf bodies (gzip allowed); JSON
  bodies get 415. Under overload 429 with Retry-After, as the OTLP/HTTP spec asks.
Reads wait until the exports accepted before them have been applied.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from doppelganger.v1 import monitor_pb2
from services.monitor.http import JSON, TEXT, Handler, HttpError, Request, Response, text
from services.monitor.prometheus import CONTENT_TYPE as PROMETHEUS
from services.monitor.prometheus import render_metrics
from services.monitor.state import MonitorState
from services.monitor.stats import WINDOWS_SECONDS
from services.monitor.status_page import STATUS_PAGE

PROTOBUF = "application/x-protobuf"
MAX_TRACES_LISTED = 20
GET = frozenset({"GET"})
POST = frozenset({"POST"})


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


def _protobuf_body(request: Request, message_type: type[Message]) -> Message:
    content_type = request.headers.get("content-type", PROTOBUF).split(";")[0].strip()
    if content_type != PROTOBUF:
        raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"send {PROTOBUF}, not {content_type}")
    try:
        return message_type.FromString(request.body)
    except DecodeError as exc:
        raise HttpError(HTTPStatus.BAD_REQUEST, "body is not a valid OTLP protobuf") from exc


def monitor_routes(state: MonitorState) -> dict[str, tuple[frozenset[str], Handler]]:
    """Every route of the monitor over its state."""

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
        export = _protobuf_body(request, trace_service_pb2.ExportTraceServiceRequest)
        rejected = state.accept_traces(export)  # type: ignore[arg-type]
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
        return Response(HTTPStatus.OK, PROTOBUF, response.SerializeToString())

    async def otlp_metrics(request: Request) -> Response:
        export = _protobuf_body(request, metrics_service_pb2.ExportMetricsServiceRequest)
        state.accept_metrics(export)  # type: ignore[arg-type]
        body = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
        return Response(HTTPStatus.OK, PROTOBUF, body)

    async def not_found(request: Request) -> Response:
        return text(HTTPStatus.NOT_FOUND, "not found")

    return {
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

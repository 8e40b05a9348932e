"""Hostile telemetry against the real monitor on loopback: what an intruder can send to the open
OTLP receivers (gRPC and OTLP/HTTP) must neither break nor skew the monitor.

- Poisoned metric points (NaN, +Inf, 1e19, negative counters, over-long labels) are rejected and
  counted in `doppel_monitor_points_rejected_total`; `/metrics`, `/api/health` and GetHealth keep
  answering 200/OK with the same score.
- Over-long names are cut; the health report, `/metrics` and the alerts hold only the cut names.
- OTLP/HTTP takes `application/x-protobuf` and `application/json` only: no Content-Type or
  another one gets 415, as from the OpenTelemetry Collector.
- A gzip bomb on OTLP/HTTP (about 125 KB that decodes to 128 MiB) gets 413 after at most the size
  bound was decoded; over gRPC an export over DOPPEL_MONITOR_MAX_EXPORT_BYTES is refused before it
  is parsed, and one over the 16 MiB message limit after decompression by gRPC itself.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import os
import tracemalloc
import zlib
from collections.abc import AsyncIterator

import grpc
import psutil
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from doppelganger.v1 import monitor_pb2
from services.monitor import http
from services.monitor.sanitize import MAX_NAME_CHARS
from services.monitor.server import MonitorServer
from shared.config import Settings
from testkit import eventually
from tests.integration.monitor_support import (
    NANOS,
    Monitor,
    exchange,
    export,
    get,
    kv,
    metrics_export,
    read_reply,
    samples,
    span,
    start_monitor,
)

PROTOBUF = "application/x-protobuf"
MiB = 1024 * 1024
TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture
async def monitor(settings: Settings) -> AsyncIterator[Monitor]:
    server, clock = await start_monitor(settings, monitor_thresholds=(("hold_seconds", 0.0),))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield Monitor(server, channel, clock)
    await server.stop(0)


def head(path: str, length: int, content_type: str | None = PROTOBUF, *extra: str) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: monitor", f"Content-Length: {length}"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    return "\r\n".join([*lines, *extra]) + "\r\n\r\n"


async def post(
    port: int, path: str, body: bytes, content_type: str | None = PROTOBUF, *extra: str
) -> tuple[int, dict[str, str], bytes]:
    return await exchange(port, head(path, len(body), content_type, *extra), body)


def spans_dropped(value: float, *, delta: bool = True) -> metrics_pb2.Metric:
    """`otel.sdk.processor.span.processed` with `error.type`: spans an exporter dropped."""
    temporality = (
        metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
        if delta
        else metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    )
    data = metrics_pb2.Sum(aggregation_temporality=temporality, is_monotonic=True)
    point = data.data_points.add(as_double=value, time_unix_nano=NANOS)
    point.attributes.append(kv("error.type", "queue_full"))
    return metrics_pb2.Metric(name="otel.sdk.processor.span.processed", sum=data)


def memory(value: float) -> metrics_pb2.Metric:
    point = metrics_pb2.NumberDataPoint(as_double=value, time_unix_nano=NANOS)
    return metrics_pb2.Metric(
        name="process.memory.usage", gauge=metrics_pb2.Gauge(data_points=[point])
    )


async def scrape(monitor: Monitor) -> dict[str, float]:
    status, _, body = await exchange(monitor.server.http_port, get("/metrics"))
    assert status == 200
    values = samples(body.decode())
    assert all(math.isfinite(v) for v in values.values())
    return values


async def api_health(monitor: Monitor) -> dict[str, object]:
    status, _, body = await exchange(monitor.server.http_port, get("/api/health"))
    assert status == 200
    report: dict[str, object] = json.loads(body)
    return report


# Poisoned values --------------------------------------------------------------------------------


async def test_three_poisoned_metric_posts_are_rejected_and_counted(monitor: Monitor) -> None:
    """The issue's reproduction: NaN, +Inf and 1e19 as spans an exporter dropped, over
    OTLP/HTTP. Before the fix every later /metrics and /api/health answered 500."""
    before = await monitor.health()
    port = monitor.server.http_port
    for value in (math.nan, math.inf, 1e19):
        body = metrics_export("intruder", [spans_dropped(value)]).SerializeToString()
        status, headers, answer = await post(port, "/v1/metrics", body)
        assert (status, headers["content-type"]) == (200, PROTOBUF)
        partial = metrics_service_pb2.ExportMetricsServiceResponse.FromString(answer)
        assert partial.partial_success.rejected_data_points == 1
    after = await monitor.health()  # GetHealth answers, unchanged.
    assert (after.score, after.exporter_spans_dropped) == (before.score, 0)
    assert "intruder" in after.services
    report = await api_health(monitor)
    assert report["score"] == before.score and report["exporter_spans_dropped"] == 0
    values = await scrape(monitor)
    assert values["doppel_health_score"] == before.score
    assert values['doppel_monitor_points_rejected_total{reason="non_finite"}'] == 2
    assert values['doppel_monitor_points_rejected_total{reason="out_of_range"}'] == 1
    assert values["doppel_monitor_exporter_spans_dropped_total"] == 0
    await monitor.tick(0.1)
    assert await monitor.alerts() == []  # No telemetry_loss from poison.
    # A real report afterwards counts exactly.
    await monitor.metrics.Export(metrics_export("script", [spans_dropped(7)]))
    assert (await monitor.health()).exporter_spans_dropped == 7


async def test_every_kind_of_bad_point_is_rejected_over_grpc(monitor: Monitor) -> None:
    before = await monitor.health()
    long_type = "e" * (MAX_NAME_CHARS + 1)
    long_label = spans_dropped(3)
    long_label.sum.data_points[0].attributes[0].value.string_value = long_type
    bad = [
        spans_dropped(-5),  # A counter never goes down.
        spans_dropped(-math.inf, delta=False),
        long_label,
        memory(math.nan),
        memory(-1.0),
        memory(math.inf),
    ]
    response = await monitor.metrics.Export(metrics_export("intruder", bad))
    assert response.partial_success.rejected_data_points == 6
    assert "rejected" in response.partial_success.error_message
    after = await monitor.health()
    assert after.score == before.score and after.resources == 1.0
    assert after.exporter_spans_dropped == 0
    assert all(math.isfinite(s.memory_rss_bytes) for s in after.service_stats)
    values = await scrape(monitor)
    for reason, count in (("negative_counter", 1), ("name_too_long", 1), ("non_finite", 3),
                          ("out_of_range", 1)):  # fmt: skip
        assert values[f'doppel_monitor_points_rejected_total{{reason="{reason}"}}'] == count
    assert not any(long_type in key for key in values)


async def test_points_beyond_the_per_export_cap_are_rejected(monitor: Monitor) -> None:
    many = spans_dropped(1)
    point = many.sum.data_points[0]
    many.sum.data_points.extend([point] * 10_999)  # 11,000 points; 10,000 are kept.
    response = await monitor.metrics.Export(metrics_export("busy", [many]))
    assert response.partial_success.rejected_data_points == 1000
    assert (await monitor.health()).exporter_spans_dropped == 10_000
    values = await scrape(monitor)
    assert values['doppel_monitor_points_rejected_total{reason="export_cap"}'] == 1000


async def test_over_long_names_are_cut(monitor: Monitor) -> None:
    service = "s" * 5000
    operation = "o" * 100_000
    await monitor.send(service, [span(operation) for _ in range(3)])
    health = await monitor.health()
    assert list(health.services) == ["s" * MAX_NAME_CHARS]
    (row,) = (await monitor.monitor.ListOperations(monitor_pb2.ListOperationsRequest())).operations
    assert (row.service, row.operation, row.count) == ("s" * MAX_NAME_CHARS, "o" * 256, 3)
    values = await scrape(monitor)
    assert values['doppel_monitor_names_truncated_total{field="service"}'] == 1
    assert values['doppel_monitor_names_truncated_total{field="operation"}'] == 3
    assert max(len(key) for key in values) < 3 * MAX_NAME_CHARS


# Content types ----------------------------------------------------------------------------------


async def test_otlp_http_needs_a_protobuf_or_json_content_type(monitor: Monitor) -> None:
    port = monitor.server.http_port
    body = metrics_export("typed", [spans_dropped(2)]).SerializeToString()
    for path in ("/v1/metrics", "/v1/traces"):
        for content_type in (None, "text/plain", "application/octet-stream", ""):
            status, _, answer = await post(port, path, body, content_type)
            assert status == 415, (path, content_type)
            assert b"send application/x-protobuf or application/json" in answer
    assert (await monitor.health()).exporter_spans_dropped == 0  # None of them was taken in.
    status, _, _ = await post(port, "/v1/metrics", body, "application/x-protobuf; charset=x")
    assert status == 200
    assert (await monitor.health()).exporter_spans_dropped == 2


async def test_otlp_json_with_hex_ids_is_taken_in(monitor: Monitor) -> None:
    port = monitor.server.http_port
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    traces = {
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "browser"}}]},
            "scopeSpans": [{"spans": [{
                "traceId": trace_id, "spanId": span_id, "name": "page load", "kind": 2,
                "startTimeUnixNano": str(NANOS), "endTimeUnixNano": str(NANOS + 10**8),
                "attributes": [{"key": "http.route", "value": {"stringValue": "/"}}],
                "someFutureField": True,
            }]}],
        }]
    }  # fmt: skip
    status, headers, answer = await post(
        port, "/v1/traces", json.dumps(traces).encode(), "application/json"
    )
    assert (status, headers["content-type"], answer) == (200, "application/json", b"{}")
    trace = await monitor.monitor.GetTrace(monitor_pb2.GetTraceRequest(trace_id=trace_id))
    (summary,) = trace.spans
    assert (summary.span_id, summary.name, summary.kind) == (span_id, "page load", "SERVER")
    assert summary.service == "browser" and summary.attributes["http.route"] == "/"
    metrics = {
        "resourceMetrics": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "browser"}}]},
            "scopeMetrics": [{"metrics": [{
                "name": "otel.sdk.processor.span.processed",
                "sum": {"aggregationTemporality": 1, "isMonotonic": True, "dataPoints": [
                    {"asInt": "4", "attributes": [
                        {"key": "error.type", "value": {"stringValue": "queue_full"}}]},
                    {"asDouble": "NaN", "attributes": [
                        {"key": "error.type", "value": {"stringValue": "queue_full"}}]},
                ]},
            }]}],
        }]
    }  # fmt: skip
    status, _, answer = await post(
        port, "/v1/metrics", json.dumps(metrics).encode(), "application/json"
    )
    assert status == 200
    assert json.loads(answer)["partialSuccess"]["rejectedDataPoints"] == "1"
    assert (await monitor.health()).exporter_spans_dropped == 4
    for bad in (b"{", b'{"resourceSpans": 3}', json.dumps({"resourceSpans": [{"scopeSpans": [
            {"spans": [{"traceId": "not hex"}]}]}]}).encode()):  # fmt: skip
        status, _, answer = await post(port, "/v1/traces", bad, "application/json")
        assert status == 400 and b"not valid OTLP JSON" in answer
    big = b" " * (1024 * 1024 + 1)
    assert (await post(port, "/v1/traces", big, "application/json"))[0] == 413


# Decoded size -----------------------------------------------------------------------------------


def gzip_bomb(decoded: int) -> bytes:
    """A gzip body of zeros that decodes to `decoded` bytes (about 1 KB on the wire per MB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(MiB)
    parts = [compressor.compress(block) for _ in range(decoded // MiB)]
    return b"".join([*parts, compressor.flush()])


async def test_a_gzip_bomb_is_refused_without_decoding_it(monitor: Monitor) -> None:
    server: MonitorServer = monitor.server
    bomb = gzip_bomb(128 * MiB)
    assert len(bomb) < 200_000
    gzip_head = head("/v1/traces", len(bomb), PROTOBUF, "Content-Encoding: gzip")
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        replies = await asyncio.gather(*(exchange(server.http_port, gzip_head, bomb)
                                          for _ in range(4)))  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    for status, _, body in replies:
        assert status == 413 and f"body over {server.http.max_body} bytes" in body.decode()
    # Four bombs of 128 MiB, decoded one after the other (decoding never awaits): each stopped
    # one chunk past the bound, so at most about that much was held at once.
    assert peak - baseline < 3 * server.http.max_body
    await eventually(lambda: server.http.budget.reserved == 0, what="budget given back")
    assert server.http.counters.too_large == 4
    values = await scrape(monitor)
    assert values['doppel_monitor_http_refused_total{reason="too_large"}'] == 4
    small = gzip.compress(export("zipped", [span("op")]).SerializeToString())
    assert (await exchange(server.http_port, gzip_head.replace(str(len(bomb)), str(len(small))),
                           small))[0] == 200  # fmt: skip
    assert (await monitor.health()).spans_received == 1


def field(tag: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, written by hand."""
    length, size = bytearray(), len(payload)
    while True:
        length.append((size & 0x7F) | (0x80 if size > 0x7F else 0))
        size >>= 7
        if not size:
            break
    return bytes([tag]) + bytes(length) + payload


def empty_spans(count: int) -> bytes:
    """An ExportTraceServiceRequest of `count` empty spans: 2 bytes a span on the wire, about
    170 once parsed."""
    scope_spans = field(0x12, b"\x12\x00" * count)  # ResourceSpans.scope_spans: spans
    return field(0x0A, scope_spans)  # ExportTraceServiceRequest.resource_spans


def empty_attributes(count: int) -> bytes:
    """An export of one span with `count` empty attributes: 2 bytes each on the wire, about 54
    once parsed (4 MiB of them: 108 MB, measured)."""
    span = field(0x12, b"\x4a\x00" * count)  # ScopeSpans.spans: Span.attributes (field 9)
    return field(0x0A, field(0x12, span))


async def test_a_small_body_of_a_huge_message_is_refused_before_parsing(monitor: Monitor) -> None:
    """15 KB of gzip that decodes to 14 MiB of empty spans (1.3 GB once parsed): 413 on
    OTLP/HTTP, and the monitor's memory does not jump."""
    bomb = gzip.compress(empty_spans(7 * MiB))
    assert len(bomb) < 100_000
    process = psutil.Process()
    before = process.memory_info().rss
    status, _, _ = await post(
        monitor.server.http_port, "/v1/traces", bomb, PROTOBUF, "Content-Encoding: gzip"
    )
    assert status == 413
    assert process.memory_info().rss - before < 400 * MiB
    assert (await monitor.health()).spans_received == 0


async def test_grpc_exports_over_the_size_bound_are_refused_before_parsing(
    monitor: Monitor,
) -> None:
    server: MonitorServer = monitor.server
    process = psutil.Process()
    bomb = empty_spans(7 * MiB)  # 14 MiB: 1.3 GB if it were parsed.
    assert trace_service_pb2.ExportTraceServiceRequest.FromString(empty_spans(10)).resource_spans
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        export_bytes = channel.unary_unary(TRACE_EXPORT)  # Bytes in, bytes out.
        before = process.memory_info().rss
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await export_bytes(bomb, compression=grpc.Compression.Gzip, timeout=30)
        assert process.memory_info().rss - before < 400 * MiB
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "DOPPEL_MONITOR_MAX_EXPORT_BYTES" in (refused.value.details() or "")
        assert server.state.exports_too_large["traces"] == 1
        # Beyond gRPC's own 16 MiB, gRPC refuses after decompressing at most that much.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await export_bytes(empty_spans(20 * MiB), compression=grpc.Compression.Gzip, timeout=30)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        ok = export("after", [span("op")]).SerializeToString()
        assert await export_bytes(ok, compression=grpc.Compression.Gzip, timeout=30) == b""
    health = await monitor.health()
    assert (health.spans_received, list(health.services)) == (1, ["after"])
    values = await scrape(monitor)
    assert values['doppel_monitor_exports_too_large_total{signal="traces"}'] == 1


async def test_json_and_protobuf_answers_for_refusals_are_plain(monitor: Monitor) -> None:
    """A refusal is text whatever the request's type; the connection is closed after it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", monitor.server.http_port)
    writer.write(head("/v1/metrics", 3, None).encode() + b"abc")
    status, headers, body = await read_reply(reader)
    writer.close()
    assert (status, headers["content-type"]) == (415, http.TEXT)
    assert body.decode().startswith("send application/x-protobuf or application/json, not no")


async def test_exports_wait_serialized_so_parsed_bloat_never_piles_up(monitor: Monitor) -> None:
    """Ten exports of one span with two million empty attributes (4 MiB each, about 108 MB
    once parsed) wait while the ingestion worker is held: the queue holds their 40 MiB, not a
    gigabyte of parsed messages; once the worker runs, each is parsed in turn and applied."""
    state = monitor.server.state
    bomb = empty_attributes(2 * MiB - 16)
    assert len(bomb) <= state.max_export_bytes
    await state.queue.close()  # The worker stops (nothing is queued yet).
    process = psutil.Process()
    before = process.memory_info().rss
    async with grpc.aio.insecure_channel(f"127.0.0.1:{monitor.server.port}") as channel:
        export_bytes = channel.unary_unary(TRACE_EXPORT)
        for _ in range(10):
            await export_bytes(bomb, timeout=30)
    assert state.queue.pending_bytes == 10 * len(bomb)
    assert process.memory_info().rss - before < 400 * MiB  # Parsed, they would be 1 GB.
    state.queue.start()
    health = await monitor.health()  # Waits until all ten are applied.
    assert (health.spans_received, health.spans_pending) == (10, 0)
    assert state.queue.pending_bytes == 0

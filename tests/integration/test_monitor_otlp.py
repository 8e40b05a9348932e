"""The monitor in-process, fed by the real OpenTelemetry SDK over OTLP gRPC."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from doppelganger.v1 import monitor_pb2, monitor_pb2_grpc
from services.monitor.health import MB
from services.monitor.server import MonitorServer, create_monitor_server
from shared.config import Settings
from shared.telemetry import Telemetry
from testkit import eventually, free_port

SERVICE = "test-client"


@pytest.fixture
async def monitor(settings: Settings) -> AsyncIterator[MonitorServer]:
    fast = settings.with_changes(
        monitor_eval_interval_seconds=0.02, monitor_thresholds=(("hold_seconds", 0.0),)
    )
    server = await create_monitor_server(fast, Telemetry("monitor", fast))
    yield server
    await server.stop(0)


@pytest.fixture
async def channel(monitor: MonitorServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{monitor.port}") as channel:
        yield channel


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> monitor_pb2_grpc.MonitorServiceStub:
    return monitor_pb2_grpc.MonitorServiceStub(channel)


def send_spans(port: int) -> str:
    """One trace: a SERVER span with 10 CLIENT calls, 4 of them UNAVAILABLE. Returns its id."""
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}", insecure=True)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("handle order", kind=SpanKind.SERVER) as root:
        for i in range(10):
            with tracer.start_as_current_span(
                "inventory.Stock/Reserve", kind=SpanKind.CLIENT
            ) as call:  # UNAVAILABLE (14) fails a CLIENT span; OK (0) does not.
                call.set_attribute("rpc.grpc.status_code", 14 if i < 4 else 0)
        with tracer.start_as_current_span("pack") as pack:
            pack.set_status(Status(StatusCode.ERROR, "box too small"))
        trace_id = format(root.get_span_context().trace_id, "032x")
    assert provider.force_flush(10_000)
    provider.shutdown()
    return trace_id


def send_metrics(port: int, rss_bytes: float, dropped_spans: int) -> None:
    def memory(_: CallbackOptions) -> Iterable[Observation]:
        yield Observation(rss_bytes, {"process.memory.type": "rss"})

    exporter = OTLPMetricExporter(endpoint=f"http://127.0.0.1:{port}", insecure=True)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        resource=Resource.create({"service.name": SERVICE}), metric_readers=[reader]
    )
    meter = provider.get_meter("test")
    meter.create_observable_gauge("process.memory.usage", [memory], unit="By")
    processed = meter.create_counter("otel.sdk.processor.span.processed", unit="{span}")
    processed.add(dropped_spans, {"error.type": "queue_full"})
    processed.add(1000)
    assert provider.force_flush(10_000)
    provider.shutdown()


async def test_spans_from_the_sdk_become_health_operations_and_traces(
    monitor: MonitorServer, stub: monitor_pb2_grpc.MonitorServiceStub
) -> None:
    trace_id = await asyncio.to_thread(send_spans, monitor.port)

    health = await stub.GetHealth(monitor_pb2.GetHealthRequest())
    assert health.spans_received == 12 and health.spans_dropped == 0
    assert list(health.services) == [SERVICE]
    assert health.errors == 0.0  # 5 errors in 12 spans is past the critical 20 %.
    assert health.score < 100

    listed = await stub.ListOperations(monitor_pb2.ListOperationsRequest(service=SERVICE))
    assert listed.window_seconds == 60
    rows = {(o.operation, o.kind): o for o in listed.operations}
    reserve = rows[("inventory.Stock/Reserve", "CLIENT")]
    assert (reserve.count, reserve.errors) == (10, 4)
    assert reserve.error_rate == pytest.approx(0.4) and reserve.throughput_per_second > 0
    assert 0 < reserve.p50_seconds <= reserve.p95_seconds <= reserve.p99_seconds < 1
    assert (rows[("handle order", "SERVER")].count, rows[("handle order", "SERVER")].errors) == (
        1,
        0,
    )
    assert rows[("pack", "INTERNAL")].errors == 1
    other = await stub.ListOperations(monitor_pb2.ListOperationsRequest(service="nobody"))
    assert list(other.operations) == []

    await stub.UpdateThresholds(
        monitor_pb2.UpdateThresholdsRequest(thresholds=monitor_pb2.AlertThresholds(min_calls=5))
    )

    async def reserve_alert() -> bool:
        alerts = (await stub.ListAlerts(monitor_pb2.ListAlertsRequest())).alerts
        return ("error_rate", "inventory.Stock/Reserve") in {(a.rule, a.operation) for a in alerts}

    await eventually(reserve_alert)

    spans = (await stub.GetTrace(monitor_pb2.GetTraceRequest(trace_id=trace_id))).spans
    assert len(spans) == 12 and {s.trace_id for s in spans} == {trace_id}
    root = next(s for s in spans if s.name == "handle order")
    assert root.parent_span_id == "" and root.service == SERVICE and root.kind == "SERVER"
    children = [s for s in spans if s is not root]
    assert all(s.parent_span_id == root.span_id for s in children)
    assert sum(s.error for s in children) == 5
    pack = next(s for s in spans if s.name == "pack")
    assert pack.status_message == "box too small"
    assert {s.attributes["rpc.grpc.status_code"] for s in children if s.kind == "CLIENT"} == {
        "0", "14",
    }  # fmt: skip


async def test_metrics_from_the_sdk_move_the_resources_score(
    monitor: MonitorServer, stub: monitor_pb2_grpc.MonitorServiceStub
) -> None:
    before = await stub.GetHealth(monitor_pb2.GetHealthRequest())
    assert before.resources == 1.0 and before.score == 100.0
    await asyncio.to_thread(send_metrics, monitor.port, 800 * MB, 7)
    after = await stub.GetHealth(monitor_pb2.GetHealthRequest())
    assert after.resources == pytest.approx(0.4)
    # The evaluator (every 20 ms, no hold) may already have fired the memory warning and the
    # telemetry_loss error these metrics call for, so the alerts sub-score is 1 or lower; the
    # resources term is 20 points x 0.4 either way.
    assert (after.errors, after.trends) == (1.0, 1.0)
    assert after.alerts in (1.0, pytest.approx(0.75), pytest.approx(0.65), pytest.approx(0.4))
    assert after.score == pytest.approx(30 + 30 * after.alerts + 20 * 0.4 + 20)
    assert after.exporter_spans_dropped == 7
    assert list(after.services) == [SERVICE]


@pytest.mark.parametrize("trace_id", ["", "xyz", "ABCDEF0123456789ABCDEF0123456789", "ab" * 17])
async def test_get_trace_rejects_malformed_ids(
    stub: monitor_pb2_grpc.MonitorServiceStub, trace_id: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetTrace(monitor_pb2.GetTraceRequest(trace_id=trace_id))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "trace_id" in (error.value.details() or "")


async def test_unknown_trace_and_bad_window(stub: monitor_pb2_grpc.MonitorServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetTrace(monitor_pb2.GetTraceRequest(trace_id=os.urandom(16).hex()))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.ListOperations(monitor_pb2.ListOperationsRequest(window_seconds=42))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "window_seconds" in (error.value.details() or "")
    for window in (0, 60, 300, 900):
        response = await stub.ListOperations(
            monitor_pb2.ListOperationsRequest(window_seconds=window)
        )
        assert response.window_seconds == (window or 60)


async def test_oversized_export_gets_partial_success(
    monitor: MonitorServer, channel: grpc.aio.Channel, stub: monitor_pb2_grpc.MonitorServiceStub
) -> None:
    monitor.state.max_spans_per_export = 3
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name").value.string_value = SERVICE
    for _ in range(5):
        resource_spans.scope_spans.add().spans.append(
            trace_pb2.Span(trace_id=os.urandom(16), span_id=os.urandom(8), name="op")
        )
    response = await trace_service_pb2_grpc.TraceServiceStub(channel).Export(request)
    assert response.partial_success.rejected_spans == 2
    assert "3 spans" in response.partial_success.error_message
    health = await stub.GetHealth(monitor_pb2.GetHealthRequest())
    assert (health.spans_received, health.spans_dropped) == (3, 2)


async def test_health_check_and_reflection(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "doppelganger.v1.MonitorService"):
        response = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name async for r in call for s in r.list_services_response.service}
    assert {
        "doppelganger.v1.MonitorService",
        "opentelemetry.proto.collector.trace.v1.TraceService",
        "opentelemetry.proto.collector.metrics.v1.MetricsService",
        "grpc.health.v1.Health",
    } <= names


def http_get(port: int, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


async def test_http_endpoints(monitor: MonitorServer) -> None:
    assert monitor.http_port > 0
    status, _, body = await asyncio.to_thread(http_get, monitor.http_port, "/healthz")
    assert (status, body) == (200, b"ok")
    await asyncio.to_thread(send_spans, monitor.port)
    status, content_type, body = await asyncio.to_thread(http_get, monitor.http_port, "/api/health")
    assert status == 200 and content_type == "application/json"
    report = json.loads(body)
    assert report["spans_received"] == 12 and report["services"] == [SERVICE]
    assert 0 <= report["score"] < 100 and report["resources"] == 1.0
    assert set(report) >= {"errors", "alerts", "trends", "spans_dropped", "exporter_spans_dropped"}
    status, _, _ = await asyncio.to_thread(http_get, monitor.http_port, "/nope")
    assert status == 404


async def test_the_http_port_closes_with_the_server(settings: Settings) -> None:
    server = await create_monitor_server(settings, Telemetry("monitor", settings))
    port = server.http_port
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    await eventually(lambda: server.http.open_connections == 1, what="the server accepted it")
    await server.stop(0)
    assert await asyncio.wait_for(idle_reader.read(), 2) == b""  # Closed, not left hanging.
    idle_writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_the_monitor_traces_itself_without_a_feedback_loop(settings: Settings) -> None:
    port = free_port()
    config = settings.with_changes(monitor_port=port, telemetry_disabled=False)
    telemetry = Telemetry("monitor", config)
    server = await create_monitor_server(config, telemetry)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = monitor_pb2_grpc.MonitorServiceStub(channel)
            for _ in range(3):
                await stub.GetHealth(monitor_pb2.GetHealthRequest())
            await asyncio.to_thread(telemetry.force_flush)
            await asyncio.to_thread(
                telemetry.force_flush
            )  # Exports of the first flush are not traced.
            operations = (await stub.ListOperations(monitor_pb2.ListOperationsRequest())).operations
        names = {(o.service, o.operation): o.count for o in operations}
        assert names[("monitor", "doppelganger.v1.MonitorService/GetHealth")] == 3
        assert not any(name.startswith("opentelemetry.proto") for _, name in names)
        assert "monitor" in server.state.metrics.memory_by_service()
    finally:
        await server.stop(0)

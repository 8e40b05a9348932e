"""Our telemetry bootstrap, exporting over real OTLP gRPC to the real monitor.

A burst far beyond the SDK's default queue (2048) must arrive whole; a queue made too small
must report what it dropped, not lose it silently.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from doppelganger.v1 import monitor_pb2, monitor_pb2_grpc
from services.monitor.server import create_monitor_server
from shared.config import Settings
from shared.server import ServiceServer
from shared.telemetry import Telemetry, final_flush_seconds
from testkit import eventually

BURST = 20_000


@pytest.fixture
async def monitor(settings: Settings) -> AsyncIterator[ServiceServer]:
    server = await create_monitor_server(settings, Telemetry("monitor", settings))
    yield server
    await server.stop(0)


def exporting(
    name: str, settings: Settings, monitor: ServiceServer, **changes: object
) -> Telemetry:
    config = settings.with_changes(
        telemetry_disabled=False, otlp_endpoint=f"http://127.0.0.1:{monitor.port}", **changes
    )
    return Telemetry(name, config)


async def health(monitor: ServiceServer) -> monitor_pb2.HealthReport:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{monitor.port}") as channel:
        return await monitor_pb2_grpc.MonitorServiceStub(channel).GetHealth(
            monitor_pb2.GetHealthRequest()
        )


def burst(telemetry: Telemetry, count: int) -> None:
    for index in range(count):
        with telemetry.tracer.start_as_current_span("burst") as span:
            span.set_attribute("index", index)


async def wait_for(
    monitor: ServiceServer,
    predicate: Callable[[monitor_pb2.HealthReport], bool],
    timeout: float = 30,
) -> monitor_pb2.HealthReport:
    async def report_once_met() -> monitor_pb2.HealthReport:
        report = await health(monitor)
        assert predicate(report), report
        return report

    return await eventually(report_once_met, timeout=timeout, interval=0.1)


async def test_a_burst_arrives_whole(settings: Settings, monitor: ServiceServer) -> None:
    telemetry = exporting("burst-client", settings, monitor)
    try:
        burst(telemetry, BURST)  # Ten times the SDK's default queue, in one go.
        await asyncio.to_thread(telemetry.force_flush, 30_000)
        report = await wait_for(monitor, lambda r: r.spans_received >= BURST)
    finally:
        await asyncio.to_thread(telemetry.shutdown)
    assert report.spans_received == BURST
    assert report.spans_dropped == 0
    assert "burst-client" in report.services


async def test_a_queue_too_small_counts_what_it_drops(
    settings: Settings, monitor: ServiceServer
) -> None:
    telemetry = exporting(
        "tiny-queue",
        settings,
        monitor,
        bsp_max_queue_size=64,
        bsp_max_export_batch_size=64,
        bsp_schedule_delay_ms=60_000,
    )
    try:
        burst(telemetry, 5_000)
        await asyncio.to_thread(telemetry.force_flush, 30_000)
        report = await wait_for(monitor, lambda r: r.exporter_spans_dropped > 0)
    finally:
        await asyncio.to_thread(telemetry.shutdown)
    lost = 5_000 - report.spans_received
    assert lost > 0
    # Every span that did not arrive was counted by the SDK and reported to the monitor. (The
    # SDK checks "queue full" and appends without a lock, so a race can count one drop that
    # did not happen: the count may be a little high, never low.)
    assert lost <= report.exporter_spans_dropped <= lost + 5


class _RefusingCollector(trace_service_pb2_grpc.TraceServiceServicer):
    """A collector that is always unavailable; records the deadline each export came with."""

    def __init__(self) -> None:
        self.deadlines: list[float] = []

    async def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.deadlines.append(context.time_remaining() or float("inf"))
        await context.abort(grpc.StatusCode.UNAVAILABLE, "collector is down")
        raise AssertionError("abort returns only by raising")


async def test_the_last_exports_to_a_refusing_collector_end_within_the_grace_budget(
    settings: Settings,
) -> None:
    collector = _RefusingCollector()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    config = settings.with_changes(
        telemetry_disabled=False, otlp_endpoint=f"http://127.0.0.1:{port}", grace_seconds=4.0
    )
    assert final_flush_seconds(config) == 1.0  # A quarter of the grace period.
    telemetry = Telemetry("script", config)
    with telemetry.tracer.start_as_current_span("last words"):
        pass
    await asyncio.to_thread(telemetry.shutdown)  # Flushes: the export is refused and retried.
    await server.stop(0)
    # Retries back off 1 s, then 2 s (+-20%): within the 1 s budget the exporter tries at most
    # twice; left alone it would go on for its 10 s (four attempts).
    assert 1 <= len(collector.deadlines) <= 2
    # While running, an export keeps the exporter's own 10 s for its retries.
    assert max(collector.deadlines) > final_flush_seconds(config)

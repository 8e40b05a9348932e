"""The monitor: an OTLP gRPC receiver (traces and metrics) and MonitorService on one port, plus
a small HTTP endpoint (services/monitor/http.py) on another."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence

import grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from doppelganger.v1 import monitor_pb2, monitor_pb2_grpc
from services.monitor.http import HttpServer, monitor_routes
from services.monitor.state import MonitorState
from services.monitor.stats import WINDOWS_SECONDS
from shared.config import Settings
from shared.server import Cleanup, ServiceServer, start_server
from shared.telemetry import Telemetry

log = logging.getLogger(__name__)

TRACE_SERVICE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name
METRICS_SERVICE = metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"].full_name
MONITOR_SERVICE = monitor_pb2.DESCRIPTOR.services_by_name["MonitorService"].full_name

TRACE_ID = re.compile(r"[0-9a-f]{32}")


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    """OTLP trace receiver: applies each export synchronously, never waits."""

    def __init__(self, state: MonitorState) -> None:
        self._state = state

    async def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        rejected = self._state.ingest_spans(request)
        if not rejected:
            return trace_service_pb2.ExportTraceServiceResponse()
        limit = self._state.max_spans_per_export
        return trace_service_pb2.ExportTraceServiceResponse(
            partial_success=trace_service_pb2.ExportTracePartialSuccess(
                rejected_spans=rejected,
                error_message=f"at most {limit} spans per export; send smaller batches",
            )
        )


class MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    """OTLP metrics receiver: keeps what the health score needs, ignores the rest."""

    def __init__(self, state: MonitorState) -> None:
        self._state = state

    async def Export(
        self,
        request: metrics_service_pb2.ExportMetricsServiceRequest,
        context: grpc.aio.ServicerContext,
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        self._state.ingest_metrics(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class MonitorService(monitor_pb2_grpc.MonitorServiceServicer):
    """Health, alerts, operation statistics and traces from what the receivers took in."""

    def __init__(self, state: MonitorState) -> None:
        self._state = state

    async def GetHealth(
        self, request: monitor_pb2.GetHealthRequest, context: grpc.aio.ServicerContext
    ) -> monitor_pb2.HealthReport:
        return self._state.health_report()

    async def ListAlerts(
        self, request: monitor_pb2.ListAlertsRequest, context: grpc.aio.ServicerContext
    ) -> monitor_pb2.ListAlertsResponse:
        return monitor_pb2.ListAlertsResponse(alerts=self._state.alerts())

    async def ListOperations(
        self, request: monitor_pb2.ListOperationsRequest, context: grpc.aio.ServicerContext
    ) -> monitor_pb2.ListOperationsResponse:
        window = request.window_seconds or WINDOWS_SECONDS[0]
        if window not in WINDOWS_SECONDS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"window_seconds must be 0, 60, 300 or 900, not {request.window_seconds}",
            )
        return monitor_pb2.ListOperationsResponse(
            operations=self._state.operations(request.service, window), window_seconds=window
        )

    async def GetTrace(
        self, request: monitor_pb2.GetTraceRequest, context: grpc.aio.ServicerContext
    ) -> monitor_pb2.GetTraceResponse:
        if not TRACE_ID.fullmatch(request.trace_id):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"trace_id must be 32 lowercase hex characters, got {request.trace_id[:64]!r}",
            )
        spans = self._state.trace(bytes.fromhex(request.trace_id))
        if spans is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"trace {request.trace_id} is not in the monitor's window",
            )
        return monitor_pb2.GetTraceResponse(spans=spans)


class MonitorServer(ServiceServer):
    """The running monitor: the gRPC server, its state and the bound HTTP port."""

    def __init__(
        self, base: ServiceServer, state: MonitorState, http_port: int, cleanups: Sequence[Cleanup]
    ) -> None:
        super().__init__(base.name, base.server, base.port, base.health, base.telemetry, cleanups)
        self.state = state
        self.http_port = http_port

    async def stop(self, grace: float) -> None:
        """Like ServiceServer.stop, but flushes the monitor's own telemetry first.

        By default the monitor exports to itself; flushed after the server stopped, the final
        export would retry against a closed port until the exporter's timeout (10 s). What calls
        still running during the grace period record is lost, as it would be anyway.
        """
        await asyncio.to_thread(self.telemetry.shutdown)
        await super().stop(grace)


async def create_monitor_server(
    settings: Settings,
    telemetry: Telemetry,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> MonitorServer:
    """Starts the HTTP endpoint, then the gRPC server; `clock` drives the statistics windows."""
    state = MonitorState(settings, clock=clock)
    http = HttpServer(monitor_routes(state))
    await http.start(settings.host, settings.monitor_http_port)
    log.info("monitor HTTP on %s:%d", settings.host, http.port)

    def register(server: grpc.aio.Server) -> list[str]:
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(state), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(MetricsService(state), server)
        monitor_pb2_grpc.add_MonitorServiceServicer_to_server(MonitorService(state), server)
        return [TRACE_SERVICE, METRICS_SERVICE, MONITOR_SERVICE]

    cleanups = [http.close]
    try:
        base = await start_server(
            name="monitor",
            settings=settings,
            telemetry=telemetry,
            port=settings.monitor_port,
            register=register,
            cleanups=cleanups,
        )
    except BaseException:
        await http.close()
        raise
    return MonitorServer(base, state, http.port, cleanups)

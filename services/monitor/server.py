"""The monitor: an OTLP gRPC receiver (traces and metrics) and MonitorService on one port, plus
HTTP (status page, /metrics, JSON API, OTLP/HTTP; services/monitor/web.py) on another.

Background tasks: the ingestion worker (services/monitor/ingest.py), the alert evaluator (every
DOPPEL_MONITOR_EVAL_INTERVAL_SECONDS) and, when configured, the forwarder.

The OTLP receivers are registered with their own deserializer, which hands them the export's
bytes: one whose decoded size (gRPC has already undone its compression, bounded by the 16 MiB
message limit) is over DOPPEL_MONITOR_MAX_EXPORT_BYTES is never parsed, and the others are parsed
by the receiver, which queues (and forwards) the bytes, not the parsed message. Parsing is where a
small message becomes a large one: 15 MiB of empty spans take 1.35 GB once parsed (measured), so
the bound is on what gets parsed, and only one parsed export at a time is kept waiting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError, Message
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from doppelganger.v1 import monitor_pb2, monitor_pb2_grpc
from services.monitor.alerts import MAX_SUBSCRIBERS, ThresholdError
from services.monitor.http import HttpServer
from services.monitor.state import MonitorState, alert_proto
from services.monitor.stats import WINDOWS_SECONDS
from services.monitor.web import monitor_routes
from shared import security
from shared.access import current_caller
from shared.config import Settings
from shared.server import Cleanup, ServiceServer, start_server
from shared.telemetry import Telemetry

log = logging.getLogger(__name__)

TRACE_SERVICE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name
METRICS_SERVICE = metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"].full_name
MONITOR_SERVICE = monitor_pb2.DESCRIPTOR.services_by_name["MonitorService"].full_name

TRACE_ID = re.compile(r"[0-9a-f]{32}")
FORWARD_FLUSH_SECONDS = 2.0
# OTLP exporters wait this long before retrying a RESOURCE_EXHAUSTED export.
RETRY_LATER = (
    ("google.rpc.retryinfo-bin", RetryInfo(retry_delay=Duration(seconds=1)).SerializeToString()),
)
# A WatchAlerts stream refused at the subscriber cap is told to come back after this long
# (`retry-after-ms` trailing metadata, as the script service does at its episode cap): watch
# streams last as long as their watcher, so a slot frees only when one of them leaves.
WATCH_RETRY_AFTER_MS = 5000


class Oversized:
    """What a receiver gets instead of an export over the size bound: its size, unparsed."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size


def bounded(limit: int) -> Callable[[bytes], Any]:
    """A request deserializer that hands over the export's bytes unparsed; over `limit` bytes,
    only their count (`Oversized`)."""

    def deserialize(data: bytes) -> bytes | Oversized:
        return Oversized(len(data)) if len(data) > limit else data

    return deserialize


M = TypeVar("M", bound=Message)


async def parse_export(
    state: MonitorState,
    signal: str,
    received: bytes | Oversized,
    message_type: type[M],
    context: grpc.aio.ServicerContext,
) -> tuple[M, bytes]:
    """The export, parsed, and as received. Over the size bound: RESOURCE_EXHAUSTED, as gRPC
    answers a message over its own limit (no RetryInfo: the same export would be refused
    again), counted by signal. Not a valid message: INVALID_ARGUMENT."""
    if isinstance(received, Oversized):
        state.exports_too_large[signal] += 1
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"export of {received.size} bytes is over the monitor's limit of "
            f"{state.max_export_bytes} bytes (DOPPEL_MONITOR_MAX_EXPORT_BYTES); "
            "send smaller batches",
        )
        raise AssertionError("unreachable: abort raises")
    try:
        return message_type.FromString(received), received
    except DecodeError as exc:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"request is not a valid {message_type.DESCRIPTOR.full_name}: {exc}",
        )
    raise AssertionError("unreachable: abort raises")


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    """OTLP trace receiver: admits each export to the ingestion queue and answers at once."""

    def __init__(self, state: MonitorState) -> None:
        self._state = state

    async def Export(
        self, request: bytes | Oversized, context: grpc.aio.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        export, received = await parse_export(
            self._state, "traces", request, trace_service_pb2.ExportTraceServiceRequest, context
        )
        rejected = self._state.accept_traces(export, received)
        del export  # Queued serialized: the parsed export is not kept while the call ends.
        if rejected is None:
            queue = self._state.queue
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"monitor overloaded: more than {queue.max_pending_spans} spans or "
                f"{queue.max_pending_bytes / 2**20:g} MiB of exports pending; retry later",
                trailing_metadata=RETRY_LATER,
            )
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
    """OTLP metrics receiver: keeps what the health score needs, ignores the rest. Points it
    rejects (services/monitor/sanitize.py) are reported as a partial success."""

    def __init__(self, state: MonitorState) -> None:
        self._state = state

    async def Export(
        self, request: bytes | Oversized, context: grpc.aio.ServicerContext
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        export, received = await parse_export(
            self._state, "metrics", request, metrics_service_pb2.ExportMetricsServiceRequest,
            context,
        )  # fmt: skip
        return self._state.accept_metrics(export, received)


def add_otlp_receivers(server: grpc.aio.Server, state: MonitorState) -> None:
    """TraceService and MetricsService, handed their requests' bytes (`bounded`)."""
    limit = state.max_export_bytes
    receivers = (
        (TRACE_SERVICE, TraceService(state).Export, trace_service_pb2.ExportTraceServiceResponse),
        (METRICS_SERVICE, MetricsService(state).Export,
         metrics_service_pb2.ExportMetricsServiceResponse),
    )  # fmt: skip
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                service,
                {
                    "Export": grpc.unary_unary_rpc_method_handler(
                        export,
                        request_deserializer=bounded(limit),
                        response_serializer=response.SerializeToString,
                    )
                },
            )
            for service, export, response in receivers
        ]
    )


class MonitorService(monitor_pb2_grpc.MonitorServiceServicer):
    """Health, alerts, operation statistics and traces from what the receivers took in.

    Reads first wait until the exports accepted before them have been applied.
    """

    def __init__(self, state: MonitorState) -> None:
        self._state = state

    async def GetHealth(
        self, request: monitor_pb2.GetHealthRequest, context: grpc.aio.ServicerContext
    ) -> monitor_pb2.HealthReport:
        await self._state.queue.settled()
        return self._state.health_report()

    async def ListAlerts(
        self, request: monitor_pb2.ListAlertsRequest, context: grpc.aio.ServicerContext
    ) -> monitor_pb2.ListAlertsResponse:
        await self._state.queue.settled()
        alerts = self._state.alerts(include_resolved=request.include_resolved)
        return monitor_pb2.ListAlertsResponse(alerts=alerts)

    async def ListOperations(
        self, request: monitor_pb2.ListOperationsRequest, context: grpc.aio.ServicerContext
    ) -> monitor_pb2.ListOperationsResponse:
        window = request.window_seconds or WINDOWS_SECONDS[0]
        if window not in WINDOWS_SECONDS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"window_seconds must be 0, 60, 300 or 900, not {request.window_seconds}",
            )
        await self._state.queue.settled()
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
        await self._state.queue.settled()
        spans = self._state.trace(bytes.fromhex(request.trace_id))
        if spans is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"trace {request.trace_id} is not in the monitor's window",
            )
        return monitor_pb2.GetTraceResponse(spans=spans)

    async def UpdateThresholds(
        self, request: monitor_pb2.UpdateThresholdsRequest, context: grpc.aio.ServicerContext
    ) -> monitor_pb2.UpdateThresholdsResponse:
        # ListFields has only the fields set: the others keep their value.
        changes = {f.name: value for f, value in request.thresholds.ListFields()}
        try:
            thresholds = self._state.update_thresholds(changes)
        except ThresholdError as error:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"thresholds.{error.field}: {error.reason}"
            )
        if changes:  # Admin only (shared/roles.py): thresholds can silence alerting.
            log.warning("alert thresholds changed by %s: %s", current_caller().name, changes)
        return monitor_pb2.UpdateThresholdsResponse(
            thresholds=monitor_pb2.AlertThresholds(**thresholds.as_dict())
        )

    async def WatchAlerts(
        self, request: monitor_pb2.WatchAlertsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[monitor_pb2.AlertEvent]:
        engine = self._state.engine
        subscriber = engine.subscribe(snapshot=not request.only_new)
        if subscriber is None:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"at most {MAX_SUBSCRIBERS} WatchAlerts streams at once; "
                f"retry in {WATCH_RETRY_AFTER_MS} ms",
                trailing_metadata=(("retry-after-ms", str(WATCH_RETRY_AFTER_MS)),),
            )
            return
        try:
            while (event := await subscriber.next()) is not None:
                yield monitor_pb2.AlertEvent(alert=alert_proto(event.alert), initial=event.initial)
        finally:
            engine.unsubscribe(subscriber)
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"this WatchAlerts stream fell more than {engine.subscriber_queue} events behind; "
            "reconnect",
        )


async def evaluate_periodically(state: MonitorState, interval: float) -> None:
    """Evaluates the alert rules every `interval` seconds until cancelled."""
    while True:
        try:
            state.evaluate()
        except Exception:
            log.exception("monitor: alert evaluation failed")
        await asyncio.sleep(interval)


class MonitorServer(ServiceServer):
    """The running monitor: the gRPC server, its state and the HTTP server (and its port)."""

    def __init__(
        self,
        base: ServiceServer,
        state: MonitorState,
        http: HttpServer,
        cleanups: Sequence[Cleanup],
    ) -> None:
        super().__init__(base.name, base.server, base.port, base.health, base.telemetry, cleanups)
        self.state = state
        self.http = http
        self.http_port = http.port

    async def stop(self, grace: float) -> None:
        """Like ServiceServer.stop, but flushes the monitor's own telemetry first.

        By default the monitor exports to itself; flushed after the server stopped, the final
        export would retry against a closed port until the exporter's timeout (10 s). What calls
        still running during the grace period record is lost, as it would be anyway.
        """
        await asyncio.to_thread(self.telemetry.shutdown)
        await super().stop(grace)


class BackgroundTasks:
    """The ingestion worker, the alert evaluator and the forwarder of one monitor."""

    def __init__(self, state: MonitorState, eval_interval: float) -> None:
        self._state = state
        self._eval_interval = eval_interval
        self._evaluator: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._state.queue.start()
        if self._state.forwarder is not None:
            self._state.forwarder.start()
        self._evaluator = asyncio.create_task(
            evaluate_periodically(self._state, self._eval_interval), name="monitor-alerts"
        )

    async def close(self) -> None:
        if self._evaluator is not None:
            self._evaluator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._evaluator
        await self._state.queue.close()
        if self._state.forwarder is not None:
            await self._state.forwarder.close(FORWARD_FLUSH_SECONDS)


async def create_monitor_server(
    settings: Settings,
    telemetry: Telemetry,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> MonitorServer:
    """Starts the HTTP endpoint, the background tasks, then the gRPC server.

    `clock` (monotonic seconds) drives the statistics windows and the alert hold times; tests
    pass one they can move. Raises alerts.ThresholdError for unusable configured thresholds.
    """
    state = MonitorState(settings, clock=clock)
    http = HttpServer(
        monitor_routes(state, security.accepted_tokens(settings)),
        max_body=settings.monitor_max_export_bytes,
        counters=state.http,
    )
    await http.start(settings.host, settings.monitor_http_port)
    log.info("monitor HTTP on %s:%d", settings.host, http.port)
    background = BackgroundTasks(state, settings.monitor_eval_interval_seconds)
    background.start()

    def register(server: grpc.aio.Server) -> list[str]:
        add_otlp_receivers(server, state)
        monitor_pb2_grpc.add_MonitorServiceServicer_to_server(MonitorService(state), server)
        return [TRACE_SERVICE, METRICS_SERVICE, MONITOR_SERVICE]

    cleanups = [http.close, background.close]
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
        await background.close()
        await http.close()
        raise
    return MonitorServer(base, state, http, cleanups)

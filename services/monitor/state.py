"""The monitor's in-memory state: OTLP ingestion writes it, MonitorService and HTTP read it.

Everything runs on the event loop and no method awaits, so an export is applied in one piece and
no lock is needed. Ingestion does per span only what the statistics need (a few fields, and the
attributes of RPC spans for their status code) plus one serialization for the trace store.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from doppelganger.v1 import episode_pb2, monitor_pb2
from services.monitor.health import (
    DerivedAlert,
    Health,
    HealthInputs,
    Severity,
    Thresholds,
    compute_health,
    evaluate_alerts,
)
from services.monitor.metrics_ingest import MetricsStore, resource_identity
from services.monitor.stats import (
    KIND_CLIENT,
    KIND_SERVER,
    STATUS_ERROR,
    OperationStatsStore,
    WindowStats,
    is_error,
)
from services.monitor.traces import RecentServices, StoredSpan, TraceStore, summarize
from shared.config import Settings

MAX_SPANS_PER_EXPORT = 100_000
HEALTH_WINDOW_SECONDS = 300
TREND_RECENT_SECONDS = 60  # Against the rest of the health window (4 minutes).
SERVICES_WINDOW_SECONDS = 900
DEFAULT_WINDOW_SECONDS = 60

_SEVERITIES = {
    Severity.WARNING: episode_pb2.SEVERITY_WARNING,
    Severity.CRITICAL: episode_pb2.SEVERITY_CRITICAL,
}


def _rpc_error(kind: int, attributes: RepeatedCompositeFieldContainer[KeyValue]) -> bool:
    grpc_code: int | None = None
    rpc_status: str | None = None
    for kv in attributes:
        key = kv.key
        if key == "rpc.grpc.status_code":
            grpc_code = kv.value.int_value
        elif key == "rpc.status_code":
            rpc_status = kv.value.string_value
    return is_error(kind, 0, grpc_code, rpc_status)


class MonitorState:
    """Operation statistics, recent traces, resource metrics and counters of one monitor."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        thresholds: Thresholds | None = None,
        max_spans_per_export: int = MAX_SPANS_PER_EXPORT,
    ) -> None:
        self._clock = clock
        self.thresholds = thresholds or Thresholds()
        self.max_spans_per_export = max_spans_per_export
        self.stats = OperationStatsStore(settings.monitor_max_operations, clock)
        self.traces = TraceStore(settings.monitor_max_traces)
        self.metrics = MetricsStore(clock)
        self.services = RecentServices()
        self.spans_received = 0
        self.spans_dropped = 0

    def ingest_spans(self, request: ExportTraceServiceRequest) -> int:
        """Applies one export; returns how many spans were rejected (beyond the per-export cap)."""
        now = self._clock()
        epoch = self.stats.epoch(now)
        record = self.stats.record_at
        keep = self.traces.add
        budget = self.max_spans_per_export
        rejected = 0
        for resource_spans in request.resource_spans:
            service, _ = resource_identity(resource_spans.resource)
            self.services.seen(service, now)
            for scope in resource_spans.scope_spans:
                spans = scope.spans
                if len(spans) > budget:
                    rejected += len(spans) - budget
                    spans = spans[:budget]  # type: ignore[assignment]
                budget -= len(spans)
                for span in spans:
                    kind = span.kind
                    error = span.status.code == STATUS_ERROR or (
                        kind in (KIND_SERVER, KIND_CLIENT) and _rpc_error(kind, span.attributes)
                    )
                    seconds = (span.end_time_unix_nano - span.start_time_unix_nano) * 1e-9
                    record(epoch, service, span.name, kind, seconds, error)
                    if span.trace_id:
                        keep(span.trace_id, StoredSpan(service, error, span.SerializeToString()))
        self.spans_received += self.max_spans_per_export - budget
        self.spans_dropped += rejected
        return rejected

    def ingest_metrics(self, request: ExportMetricsServiceRequest) -> None:
        now = self._clock()
        for service in self.metrics.ingest(request):
            self.services.seen(service, now)

    def health(self) -> Health:
        window, trends = self.stats.window_and_trends(HEALTH_WINDOW_SECONDS, TREND_RECENT_SECONDS)
        inputs = HealthInputs(window, trends, self.metrics.memory_by_service())
        return compute_health(inputs, self.thresholds)

    def health_report(self) -> monitor_pb2.HealthReport:
        health = self.health()
        return monitor_pb2.HealthReport(
            score=health.score,
            errors=health.errors,
            alerts=health.alerts,
            resources=health.resources,
            trends=health.trends,
            spans_received=self.spans_received,
            spans_dropped=self.spans_dropped,
            exporter_spans_dropped=self.metrics.exporter_spans_dropped,
            services=self.services.active(self._clock(), SERVICES_WINDOW_SECONDS),
        )

    def alerts(self) -> list[monitor_pb2.Alert]:
        """The alerts firing now (the simple evaluator keeps no history)."""
        firing = evaluate_alerts(self.stats.window(HEALTH_WINDOW_SECONDS), self.thresholds)
        return [_alert(a) for a in firing]

    def operations(self, service: str, window_seconds: int) -> list[monitor_pb2.OperationStats]:
        rows = self.stats.window(window_seconds or DEFAULT_WINDOW_SECONDS, service)
        return [_operation(row) for row in rows]

    def trace(self, trace_id: bytes) -> list[monitor_pb2.SpanSummary] | None:
        """The kept spans of a trace by start time; None when the trace is unknown."""
        stored = self.traces.get(trace_id)
        if stored is None:
            return None
        spans = [summarize(s) for s in stored]
        spans.sort(key=lambda s: (s.start_unix_nano, s.span_id))
        return spans


def _alert(alert: DerivedAlert) -> monitor_pb2.Alert:
    return monitor_pb2.Alert(
        id=alert.id,
        rule=alert.rule,
        severity=_SEVERITIES[alert.severity],
        state=monitor_pb2.ALERT_STATE_FIRING,
        service=alert.service,
        operation=alert.operation,
        message=alert.message,
        value=alert.value,
        threshold=alert.threshold,
    )


def _operation(row: WindowStats) -> monitor_pb2.OperationStats:
    return monitor_pb2.OperationStats(
        service=row.service,
        operation=row.operation,
        kind=row.kind,
        count=row.count,
        errors=row.errors,
        error_rate=row.error_rate,
        p50_seconds=row.p50_seconds,
        p95_seconds=row.p95_seconds,
        p99_seconds=row.p99_seconds,
        throughput_per_second=row.throughput_per_second,
    )

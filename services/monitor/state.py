"""The monitor's in-memory state: OTLP ingestion writes it, MonitorService and HTTP read it.

Everything runs on the event loop and no method awaits, so an export is applied in one piece and
no lock is needed. Ingestion does per span only what the statistics need (a few fields, the
attributes of RPC spans for their status code, the name of CLIENT spans for LLM calls, and the
attributes of those `chat {model}` spans for the per-model LLM statistics) plus one serialization
for the trace store. Names and metric values are checked on the way in
(services/monitor/sanitize.py). Alert rules are evaluated by `evaluate`, which the server
calls on a timer (every DOPPEL_MONITOR_EVAL_INTERVAL_SECONDS), never per span.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from doppelganger.v1 import monitor_pb2
from services.monitor.alerts import (
    Alert,
    AlertEngine,
    RuleInputs,
    Thresholds,
    evaluate_rules,
    silence_threshold,
)
from services.monitor.forward import Forwarder
from services.monitor.health import Health, HealthInputs, compute_health
from services.monitor.http import HttpCounters
from services.monitor.ingest import IngestQueue, count_spans
from services.monitor.llm import SPAN_PREFIX, LLMStats
from services.monitor.metrics_ingest import (
    CACHE_REQUESTS,
    SPANS_PROCESSED,
    TOKEN_USAGE,
    MetricsStore,
    resource_identity,
)
from services.monitor.rates import WindowedCounters
from services.monitor.sanitize import MAX_NAME_CHARS, Sanitizer
from services.monitor.stats import (
    KIND_CLIENT,
    KIND_SERVER,
    SLOT_SECONDS,
    STATUS_ERROR,
    OperationStatsStore,
    WindowStats,
    is_error,
)
from services.monitor.traces import RecentServices, StoredSpan, TraceStore, summarize
from shared.config import Settings

MAX_SPANS_PER_EXPORT = 100_000
INGEST_CHUNK_SPANS = 1024  # About 5 ms of the event loop; the worker yields between chunks.
SERVICES_WINDOW_SECONDS = 900
DEFAULT_WINDOW_SECONDS = 60
MONITOR = "monitor"  # The service named in alerts about the monitor's own losses.


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
    """Operation statistics, recent traces, resource metrics, counters and alerts of one monitor.

    Raises `alerts.ThresholdError` when DOPPEL_MONITOR_THRESHOLDS holds an unusable value.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_spans_per_export: int = MAX_SPANS_PER_EXPORT,
    ) -> None:
        self._clock = clock
        self.thresholds = Thresholds().updated(dict(settings.monitor_thresholds))
        self.slow_overrides = tuple(settings.monitor_slow_operations)
        self.window_seconds = settings.monitor_window_seconds
        self.max_spans_per_export = max_spans_per_export
        self.stats = OperationStatsStore(settings.monitor_max_operations, clock)
        self.traces = TraceStore(settings.monitor_max_traces)
        self.sanitizer = Sanitizer()  # What ingestion cut or rejected, for /metrics.
        self.llm = LLMStats(names=self.sanitizer)  # Per model: calls, latency, tokens, cost.
        self.metrics = MetricsStore(clock, llm=self.llm, sanitizer=self.sanitizer)
        self.services = RecentServices()
        self.silence_levels = tuple(settings.monitor_silent_services)
        self.max_export_bytes = settings.monitor_max_export_bytes
        self.exports_too_large = {"traces": 0, "metrics": 0}  # Refused before parsing.
        self._wall_offset = time.time() - clock()  # Monotonic clock -> unix seconds.
        self.llm_calls = WindowedCounters()  # By service.
        self.lost = WindowedCounters()  # By (service, why): the monitor's own losses.
        self.engine = AlertEngine(clock)
        self.queue = IngestQueue(self.ingest_serialized, settings.monitor_max_pending_spans)
        self.http = HttpCounters()  # The HTTP port's refusals (services/monitor/http.py).
        self.forwarder: Forwarder | None = None
        if settings.monitor_forward_endpoint:
            self.forwarder = Forwarder(
                settings.monitor_forward_endpoint, settings.monitor_forward_queue
            )
        self._forward_losses_seen = {"forward_dropped": 0, "forward_failed": 0}
        self.spans_received = 0
        self.spans_dropped = 0  # Refused under overload, or beyond the per-export cap.
        self.dropped_by_reason = {"overload": 0, "export_cap": 0}
        self.metric_exports = 0

    # Ingestion ---------------------------------------------------------------------------

    def accept_traces(self, request: ExportTraceServiceRequest, data: bytes = b"") -> int | None:
        """Admits an export for ingestion (and forwarding): None when refused under overload
        (counted), else how many of its spans are beyond the per-export cap. `data` is the
        export as received, when the receiver has it: both queues hold exports serialized (a
        parsed one can hold many times its size), so the parsed `request` is dropped on return."""
        spans = count_spans(request)
        data = data or request.SerializeToString()
        if not self.queue.offer(data, spans, len(data)):
            self.count_lost(spans, "overload")
            return None
        if self.forwarder is not None:
            self.forwarder.offer("traces", data, spans, len(data))
        return max(0, spans - self.max_spans_per_export)

    def accept_metrics(
        self, request: ExportMetricsServiceRequest, data: bytes = b""
    ) -> ExportMetricsServiceResponse:
        """Takes in (and forwards) an export (`data`: as received, if at hand); the answer
        reports the points it rejected (services/monitor/sanitize.py) as a partial success."""
        before = self.sanitizer.rejected
        self.ingest_metrics(request)
        if self.forwarder is not None:
            self.forwarder.offer("metrics", data or request.SerializeToString())
        response = ExportMetricsServiceResponse()
        rejected = self.sanitizer.rejected - before
        if rejected:
            response.partial_success.rejected_data_points = rejected
            response.partial_success.error_message = (
                f"{rejected} data points rejected: non-finite, out-of-range or negative counter "
                "values, over-long label values, or beyond the points kept per export"
            )
        return response

    def ingest_spans(self, request: ExportTraceServiceRequest) -> int:
        """Applies one export at once; returns how many spans were beyond the per-export cap."""
        for _ in self.ingest_in_chunks(request):
            pass
        return max(0, count_spans(request) - self.max_spans_per_export)

    def ingest_serialized(self, data: bytes) -> Iterator[int]:
        """`ingest_in_chunks` of a queued export, parsed now that its turn has come (the
        receiver parsed it once already, so it parses)."""
        yield from self.ingest_in_chunks(ExportTraceServiceRequest.FromString(data))

    def ingest_in_chunks(
        self, request: ExportTraceServiceRequest, chunk: int = INGEST_CHUNK_SPANS
    ) -> Iterator[int]:
        """Applies one export, yielding the number of spans just applied after every `chunk`
        of them, so that the ingestion worker can give the event loop back in between. Spans
        beyond the per-export cap are not applied and are counted as lost."""
        now = self._clock()
        epoch = self.stats.epoch(now)
        budget = self.max_spans_per_export
        rejected = 0
        for resource_spans in request.resource_spans:
            service, _ = resource_identity(resource_spans.resource, self.sanitizer)
            self.services.seen(service, now)
            for scope in resource_spans.scope_spans:
                spans = scope.spans
                if len(spans) > budget:
                    rejected += len(spans) - budget
                    spans = spans[:budget]  # type: ignore[assignment]
                budget -= len(spans)
                for start in range(0, len(spans), chunk):
                    part = spans if len(spans) <= chunk else spans[start : start + chunk]
                    self._record(service, part, epoch)
                    self.spans_received += len(part)
                    yield len(part)
        if rejected:
            self.count_lost(rejected, "export_cap")

    def _record(self, service: str, spans: Iterable[Span], epoch: int) -> None:
        """The per-span work: statistics, the trace store, LLM calls."""
        record = self.stats.record_at
        keep = self.traces.add
        llm_span = self.llm.record_span
        cut = self.sanitizer.name
        llm_calls = 0
        for span in spans:
            kind = span.kind
            name = span.name
            if len(name) > MAX_NAME_CHARS:
                name = cut(name, "operation")
            error = span.status.code == STATUS_ERROR or (
                kind in (KIND_SERVER, KIND_CLIENT) and _rpc_error(kind, span.attributes)
            )
            seconds = (span.end_time_unix_nano - span.start_time_unix_nano) * 1e-9
            record(epoch, service, name, kind, seconds, error)
            if kind == KIND_CLIENT and name.startswith(SPAN_PREFIX):
                llm_calls += 1
                llm_span(span, error)
            if span.trace_id:
                keep(span.trace_id, StoredSpan(service, error, span.SerializeToString()))
        if llm_calls:
            self.llm_calls.add(service, epoch, llm_calls)

    def count_lost(self, spans: int, reason: str) -> None:
        """Spans the monitor itself did not take in: `overload` (refused) or `export_cap`."""
        self.spans_dropped += spans
        self.dropped_by_reason[reason] = self.dropped_by_reason.get(reason, 0) + spans
        self.lost.add((MONITOR, reason), self.stats.epoch(), spans)

    def ingest_metrics(self, request: ExportMetricsServiceRequest) -> None:
        now = self._clock()
        self.metric_exports += 1
        for service in self.metrics.ingest(request):
            self.services.seen(service, now)

    # Alerts ----------------------------------------------------------------------------------

    def _epochs(self) -> tuple[int, int]:
        last = self.stats.epoch()
        return last - self.window_seconds // SLOT_SECONDS + 1, last

    def rule_inputs(self) -> RuleInputs:
        first, last = self._epochs()
        self._note_forward_losses()
        cache = {
            service: (labels.get("hit", 0.0), labels.get("miss", 0.0))
            for service, labels in self.metrics.window_total(CACHE_REQUESTS, first, last).items()
        }
        lost: dict[tuple[str, str], float] = {}
        for key, value in self.lost.totals(first, last).items():
            lost[key] = value  # type: ignore[index]
        for service, labels in self.metrics.window_total(SPANS_PROCESSED, first, last).items():
            for why, value in labels.items():
                lost[(service, f"exporter_{why}")] = value
        now = self._clock()
        return RuleInputs(
            window_seconds=self.window_seconds,
            operations=self.stats.window(self.window_seconds),
            memory_bytes=self.metrics.memory_by_service(),
            llm_calls={str(k): v for k, v in self.llm_calls.totals(first, last).items()},
            cache_lookups=cache,
            lost_spans=lost,
            service_silence={
                service: (now - seen, self.silence_threshold(service))
                for service, seen in self.watched_services().items()
            },
        )

    def silence_threshold(self, service: str) -> float:
        return silence_threshold(service, self.silence_levels)

    def watched_services(self) -> dict[str, float]:
        """Services watched for silence (`service_silent`) and when each was last heard from
        (the monitor's clock)."""
        return self.services.watched(self.silence_threshold)

    def last_seen_unix(self) -> dict[str, float]:
        """Watched services and when each was last heard from, in unix seconds (`/metrics`)."""
        return {s: self._wall_offset + t for s, t in self.watched_services().items()}

    def _note_forward_losses(self) -> None:
        if self.forwarder is None:
            return
        counts = self.forwarder.counts["traces"]
        for why, total in (
            ("forward_dropped", counts.spans_dropped),
            ("forward_failed", counts.spans_failed),
        ):
            increase = total - self._forward_losses_seen[why]
            if increase > 0:
                self.lost.add((MONITOR, why), self.stats.epoch(), increase)
                self._forward_losses_seen[why] = total

    def evaluate(self) -> list[Alert]:
        """One evaluation of every rule; returns the alert changes it published."""
        conditions = evaluate_rules(self.rule_inputs(), self.thresholds, self.slow_overrides)
        return self.engine.evaluate(conditions, self.thresholds.hold_seconds)

    def update_thresholds(self, changes: Mapping[str, float]) -> Thresholds:
        """Applies changes (ThresholdError names a bad field); effective at the next evaluation."""
        self.thresholds = self.thresholds.updated(changes)
        return self.thresholds

    def alerts(self, include_resolved: bool = False) -> list[monitor_pb2.Alert]:
        """Pending and firing alerts (firing and most severe first), then resolved ones."""
        listed = self.engine.active()
        if include_resolved:
            listed += self.engine.history()
        return [alert_proto(a) for a in listed]

    # Health ----------------------------------------------------------------------------------

    def health(self) -> Health:
        window, pairs = self.stats.window_with_previous(self.window_seconds)
        inputs = HealthInputs(window, pairs, self.metrics.memory_by_service(), self.engine.firing())
        return compute_health(inputs, self.thresholds)

    def health_report(self) -> monitor_pb2.HealthReport:
        health = self.health()
        forwarded = self.forwarder.counts["traces"] if self.forwarder else None
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
            spans_pending=self.queue.pending_spans,
            spans_forwarded=forwarded.spans_sent if forwarded else 0,
            forward_spans_failed=forwarded.spans_failed if forwarded else 0,
            forward_spans_dropped=forwarded.spans_dropped if forwarded else 0,
            window_seconds=self.window_seconds,
            firing=[alert_proto(a) for a in self.engine.firing()],
            service_stats=self.service_stats(),
        )

    def service_stats(self) -> list[monitor_pb2.ServiceStats]:
        first, last = self._epochs()
        minutes = self.window_seconds / 60.0
        memory = self.metrics.memory_by_service()
        cpu = self.metrics.cpu_by_service()
        llm = {str(k): v for k, v in self.llm_calls.totals(first, last).items()}
        tokens = self.metrics.window_total(TOKEN_USAGE, first, last)
        cache = self.metrics.window_total(CACHE_REQUESTS, first, last)
        rows = []
        for service in sorted(set(memory) | set(cpu) | set(llm) | set(tokens) | set(cache)):
            hits = cache.get(service, {}).get("hit", 0.0)
            lookups = hits + cache.get(service, {}).get("miss", 0.0)
            rows.append(
                monitor_pb2.ServiceStats(
                    service=service,
                    memory_rss_bytes=memory.get(service, 0.0),
                    cpu_utilization=cpu.get(service, 0.0),
                    llm_calls_per_minute=llm.get(service, 0.0) / minutes,
                    tokens_per_minute=sum(tokens.get(service, {}).values()) / minutes,
                    cache_hit_rate=hits / lookups if lookups else 0.0,
                    cache_lookups=int(lookups),
                )
            )
        return rows

    # Reads -----------------------------------------------------------------------------------

    def operations(self, service: str, window_seconds: int) -> list[monitor_pb2.OperationStats]:
        rows = self.stats.window(window_seconds or DEFAULT_WINDOW_SECONDS, service)
        return [operation_proto(row) for row in rows]

    def trace(self, trace_id: bytes) -> list[monitor_pb2.SpanSummary] | None:
        """The kept spans of a trace by start time; None when the trace is unknown."""
        stored = self.traces.get(trace_id)
        if stored is None:
            return None
        spans = [summarize(s) for s in stored]
        spans.sort(key=lambda s: (s.start_unix_nano, s.span_id))
        return spans

    def latest_traces(self, count: int) -> list[list[monitor_pb2.SpanSummary]]:
        """The spans of the `count` most recently updated traces, newest first."""
        found = []
        for trace_id in self.traces.latest(count):
            spans = self.trace(trace_id)
            if spans:
                found.append(spans)
        return found


def alert_proto(alert: Alert) -> monitor_pb2.Alert:
    return monitor_pb2.Alert(
        id=alert.id,
        rule=alert.rule,
        severity=int(alert.severity),  # type: ignore[arg-type]
        state=int(alert.state),  # type: ignore[arg-type]
        service=alert.service,
        operation=alert.operation,
        message=alert.message,
        value=alert.value,
        threshold=alert.threshold,
        started_unix_nano=alert.started_unix_nano,
        fired_unix_nano=alert.fired_unix_nano,
        resolved_unix_nano=alert.resolved_unix_nano,
    )


def operation_proto(row: WindowStats) -> monitor_pb2.OperationStats:
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

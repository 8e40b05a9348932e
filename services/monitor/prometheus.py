"""`GET /metrics`: the monitor's view in the Prometheus text exposition format 0.0.4.

The families, their labels and their bounds are listed once, in docs/monitor.md (a test checks
that list against what this module emits). Names differ from the collector's exporter's
(`doppel_llm_model_*`, not `doppel_llm_*`), so a Prometheus scraping both never adds them up twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from services.monitor.alerts import Severity, State
from services.monitor.state import MonitorState
from services.monitor.stats import PROMETHEUS_BUCKETS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = Mapping[str, str]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


class Exposition:
    """Collects families and renders them."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(
        self, name: str, kind: str, help_text: str, samples: Iterable[tuple[Labels, float]]
    ) -> None:
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self._lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def histogram(
        self,
        name: str,
        help_text: str,
        series: Iterable[tuple[Labels, list[int] | tuple[int, ...], float, int]],
    ) -> None:
        """`series`: (labels, counts per PROMETHEUS_BUCKETS then +Inf, sum, count)."""
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} histogram")
        for labels, buckets, total, count in series:
            cumulative = 0
            for bound, in_bucket in zip((*PROMETHEUS_BUCKETS, math.inf), buckets, strict=True):
                cumulative += in_bucket
                le = {**labels, "le": _number(bound)}
                self._lines.append(f"{name}_bucket{_labels(le)} {cumulative}")
            self._lines.append(f"{name}_sum{_labels(labels)} {_number(total)}")
            self._lines.append(f"{name}_count{_labels(labels)} {count}")

    def render(self) -> str:
        return "\n".join(self._lines) + "\n"


def render_metrics(state: MonitorState) -> str:
    out = Exposition()
    _health(out, state)
    _alerts(out, state)
    _operations(out, state)
    _services(out, state)
    _llm(out, state)
    _ingestion(out, state)
    return out.render()


def _health(out: Exposition, state: MonitorState) -> None:
    health = state.health()
    out.family("doppel_health_score", "gauge", "Health score 0-100.", [({}, health.score)])
    components = {
        "errors": health.errors,
        "alerts": health.alerts,
        "resources": health.resources,
        "trends": health.trends,
    }
    out.family(
        "doppel_health_subscore",
        "gauge",
        "Sub-scores of the health score, 0-1 (score = 30 errors + 30 alerts + 20 resources "
        "+ 20 trends).",
        [({"component": name}, value) for name, value in components.items()],
    )


def _alerts(out: Exposition, state: MonitorState) -> None:
    active = state.engine.active()
    firing = [a for a in active if a.state == State.FIRING]
    out.family(
        "doppel_alerts_firing",
        "gauge",
        "Firing alerts by severity.",
        [({"severity": s.name.lower()}, sum(a.severity == s for a in firing)) for s in Severity],
    )
    out.family(
        "doppel_alert_active",
        "gauge",
        "1 for each pending or firing alert.",
        [
            (
                {
                    "rule": a.rule,
                    "service": a.service,
                    "operation": a.operation,
                    "severity": a.severity.name.lower(),
                    "state": a.state.name.lower(),
                },
                1,
            )
            for a in active
        ],
    )


def _operations(out: Exposition, state: MonitorState) -> None:
    rows = state.stats.cumulative()
    labelled = [({"service": r.service, "operation": r.operation, "kind": r.kind}, r) for r in rows]
    out.family(
        "doppel_operation_calls_total",
        "counter",
        "Spans per operation since the monitor started.",
        [(labels, r.count) for labels, r in labelled],
    )
    out.family(
        "doppel_operation_errors_total",
        "counter",
        "Spans per operation that were errors (span status or gRPC status code).",
        [(labels, r.errors) for labels, r in labelled],
    )
    out.histogram(
        "doppel_operation_duration_seconds",
        "Span durations per operation.",
        [(labels, list(r.buckets), r.seconds, r.count) for labels, r in labelled],
    )


def _services(out: Exposition, state: MonitorState) -> None:
    rows = state.service_stats()
    families = (
        ("doppel_service_memory_rss_bytes", "Resident set size (highest live instance).",
         "memory_rss_bytes"),
        ("doppel_service_cpu_utilization_ratio", "CPU utilization, 0-1 of all cores.",
         "cpu_utilization"),
        ("doppel_service_llm_calls_per_minute", "LLM calls a minute over the window.",
         "llm_calls_per_minute"),
        ("doppel_service_llm_tokens_per_minute", "LLM tokens a minute over the window.",
         "tokens_per_minute"),
        ("doppel_service_cache_hit_ratio", "Cache get hit ratio over the window.",
         "cache_hit_rate"),
    )  # fmt: skip
    for name, help_text, attribute in families:
        samples = [({"service": r.service}, getattr(r, attribute)) for r in rows]
        out.family(name, "gauge", help_text, samples)
    out.family(
        "doppel_service_last_seen_timestamp_seconds",
        "gauge",
        "Unix time the monitor last heard from a service (spans or metrics), for the services "
        "watched for silence (DOPPEL_MONITOR_SILENT_SERVICES).",
        [({"service": service}, seen) for service, seen in sorted(state.last_seen_unix().items())],
    )


def _llm(out: Exposition, state: MonitorState) -> None:
    llm = state.llm
    calls = []
    for (provider, model, error_type), count in sorted(llm.calls.items()):
        labels = {"provider": provider, "model": model, "outcome": "error" if error_type else "ok"}
        if error_type:
            labels["error_type"] = error_type
        calls.append((labels, count))
    out.family(
        "doppel_llm_model_calls_total",
        "counter",
        "LLM requests (chat CLIENT spans, every attempt) by provider, model and outcome; "
        "error_type (the span's error.type) on errors.",
        calls,
    )
    out.histogram(
        "doppel_llm_model_call_duration_seconds",
        "Durations of LLM requests (chat CLIENT spans) by provider and model.",
        [
            ({"provider": provider, "model": model}, list(t.buckets), t.seconds, t.count)
            for (provider, model), t in sorted(llm.latency.items())
        ],
    )
    out.family(
        "doppel_llm_model_tokens_total",
        "counter",
        "LLM tokens by provider, model and type (gen_ai.client.token.usage sums).",
        [
            ({"provider": provider, "model": model, "type": kind}, tokens)
            for (provider, model, kind), tokens in sorted(llm.tokens.items())
        ],
    )
    out.family(
        "doppel_llm_model_cost_usd_total",
        "counter",
        "Estimated LLM cost in USD by provider and model (doppel.llm.cost).",
        [
            ({"provider": provider, "model": model}, usd)
            for (provider, model), usd in sorted(llm.cost.items())
        ],
    )


def _ingestion(out: Exposition, state: MonitorState) -> None:
    queue = state.queue
    out.family(
        "doppel_monitor_spans_received_total", "counter", "Spans taken in.",
        [({}, state.spans_received)],
    )  # fmt: skip
    out.family(
        "doppel_monitor_spans_dropped_total",
        "counter",
        "Spans the monitor did not take in, by reason.",
        [({"reason": why}, n) for why, n in sorted(state.dropped_by_reason.items())],
    )
    out.family(
        "doppel_monitor_exporter_spans_dropped_total",
        "counter",
        "Spans exporters reported dropping (otel.sdk.processor.span.processed with error.type).",
        [({}, state.metrics.exporter_spans_dropped)],
    )
    out.family(
        "doppel_monitor_spans_pending", "gauge", "Spans accepted, not yet applied.",
        [({}, queue.pending_spans)],
    )  # fmt: skip
    out.family(
        "doppel_monitor_metric_exports_total", "counter", "OTLP metric exports taken in.",
        [({}, state.metric_exports)],
    )  # fmt: skip
    sanitizer = state.sanitizer
    out.family(
        "doppel_monitor_points_rejected_total",
        "counter",
        "OTLP metric points rejected at ingestion, never added: non_finite, out_of_range, "
        "negative_counter, name_too_long, export_cap.",
        [({"reason": why}, n) for why, n in sorted(sanitizer.points_rejected.items())],
    )
    out.family(
        "doppel_monitor_names_truncated_total",
        "counter",
        "Names cut to the length limit at ingestion, by field.",
        [({"field": name}, n) for name, n in sorted(sanitizer.names_truncated.items())],
    )
    out.family(
        "doppel_monitor_exports_too_large_total",
        "counter",
        "OTLP gRPC exports refused unparsed: over DOPPEL_MONITOR_MAX_EXPORT_BYTES.",
        [({"signal": signal}, n) for signal, n in sorted(state.exports_too_large.items())],
    )
    out.family(
        "doppel_monitor_operations", "gauge", "Operations tracked (capped).",
        [({}, len(state.stats))],
    )  # fmt: skip
    out.family(
        "doppel_monitor_llm_models", "gauge", "LLM (provider, model) pairs tracked (capped).",
        [({}, state.llm.models)],
    )  # fmt: skip
    forwarder = state.forwarder
    counts = forwarder.counts if forwarder else {}
    out.family(
        "doppel_monitor_forward_exports_total",
        "counter",
        "Exports forwarded upstream, by signal and result (sent, failed, dropped).",
        [
            ({"signal": signal, "result": result}, getattr(c, f"exports_{result}"))
            for signal, c in counts.items()
            for result in ("sent", "failed", "dropped")
        ],
    )
    out.family(
        "doppel_monitor_forward_spans_total",
        "counter",
        "Spans forwarded upstream, by result (sent, failed, dropped).",
        [
            ({"result": result}, getattr(counts["traces"], f"spans_{result}"))
            for result in ("sent", "failed", "dropped")
        ]
        if forwarder
        else [],
    )
    out.family(
        "doppel_monitor_forward_queue_exports", "gauge", "Exports waiting to be forwarded.",
        [({}, forwarder.queued)] if forwarder else [],
    )  # fmt: skip
    out.family(
        "doppel_monitor_forward_dropped_bytes_total", "counter",
        "Bytes of exports dropped from the forward queue (full in exports or in bytes).",
        [({}, sum(c.bytes_dropped for c in counts.values()))] if forwarder else [],
    )  # fmt: skip
    http = state.http
    out.family(
        "doppel_monitor_http_refused_total",
        "counter",
        "HTTP requests refused: connections over the cap or the per-peer cap (503), idle "
        "connections closed, bodies over the budget (429) or the size limit (413), responses "
        "past the respond timeout.",
        [({"reason": "connections"}, http.refused_connections),
         ({"reason": "peer_connections"}, http.refused_peer_connections),
         ({"reason": "idle"}, http.idle_closed),
         ({"reason": "body_budget"}, http.refused_bodies),
         ({"reason": "too_large"}, http.too_large),
         ({"reason": "timeout"}, http.timed_out)],
    )  # fmt: skip
    engine = state.engine
    out.family(
        "doppel_monitor_watch_subscribers", "gauge", "Open WatchAlerts streams.",
        [({}, engine.subscriber_count)],
    )  # fmt: skip
    out.family(
        "doppel_monitor_watch_subscribers_dropped_total",
        "counter",
        "WatchAlerts streams closed because they fell too far behind.",
        [({}, engine.subscribers_dropped)],
    )
    out.family(
        "doppel_monitor_alert_evaluations_total", "counter", "Alert rule evaluations.",
        [({}, engine.evaluations)],
    )  # fmt: skip

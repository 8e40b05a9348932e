"""Monitor state: OTLP span and metric ingestion, the trace store and the per-export span cap."""

from __future__ import annotations

import os

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from doppelganger.v1 import episode_pb2, monitor_pb2
from services.monitor.health import MB
from services.monitor.metrics_ingest import MAX_TOTAL_LABELS, MetricsStore
from services.monitor.state import MonitorState
from services.monitor.stats import OTHER
from services.monitor.traces import StoredSpan, TraceStore, value_text
from shared.config import Settings
from tests.unit.otlp_builders import (
    NANOS,
    Clock,
    counter_metric,
    export,
    gauge_metric,
    kv,
    metrics_export,
    span,
)


def test_ingestion_feeds_statistics_traces_and_services() -> None:
    state = MonitorState(Settings(), clock=Clock())
    trace_id = os.urandom(16)
    root = span(trace_id, "doppelganger.v1.SceneService/RenderScene", grpc_code=0, millis=40)
    child = span(trace_id, "render", kind=trace_pb2.Span.SPAN_KIND_INTERNAL, parent=root.span_id)
    child.start_time_unix_nano += 1_000_000  # Spans come back by start time.
    child.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    child.status.message = "layout failed"
    failed = span(os.urandom(16), "doppelganger.v1.SceneService/RenderScene", grpc_code=13)
    assert state.ingest_spans(export("scene", [root, child, failed])) == 0

    rows = {(o.operation, o.kind): o for o in state.operations("", 60)}
    render = rows[("doppelganger.v1.SceneService/RenderScene", "SERVER")]
    assert (render.count, render.errors, render.error_rate) == (2, 1, 0.5)
    assert (rows[("render", "INTERNAL")].count, rows[("render", "INTERNAL")].errors) == (1, 1)

    spans = state.trace(trace_id)
    assert spans is not None
    assert [s.name for s in spans] == ["doppelganger.v1.SceneService/RenderScene", "render"]
    assert spans[1].parent_span_id == root.span_id.hex() and spans[1].error
    assert spans[1].status_message == "layout failed" and spans[0].trace_id == trace_id.hex()
    assert spans[0].attributes["rpc.grpc.status_code"] == "0" and spans[0].kind == "SERVER"
    assert spans[0].end_unix_nano - spans[0].start_unix_nano == 40_000_000
    assert state.trace(os.urandom(16)) is None

    report = state.health_report()
    assert (report.spans_received, report.spans_dropped, list(report.services)) == (3, 0, ["scene"])
    assert report.errors == 0.0  # 2 errors in 3 spans.
    assert state.alerts() == []  # Rules run on the evaluator's timer, not per span...
    state.update_thresholds({"min_calls": 1, "hold_seconds": 0})
    state.evaluate()  # ...and need enough calls.
    alerts = state.alerts()
    assert {(a.rule, a.operation) for a in alerts} == {
        ("error_rate", "doppelganger.v1.SceneService/RenderScene"),
        ("error_rate", "render"),
    }
    assert all(a.state == monitor_pb2.ALERT_STATE_FIRING for a in alerts)
    assert all(a.severity == episode_pb2.SEVERITY_CRITICAL for a in alerts)
    assert [a.rule for a in state.health_report().firing] == ["error_rate", "error_rate"]


def test_an_oversized_export_is_accepted_in_part() -> None:
    state = MonitorState(Settings(), clock=Clock(), max_spans_per_export=5)
    spans = [span(os.urandom(16), "op") for _ in range(8)]
    assert state.ingest_spans(export("svc", spans)) == 3
    assert state.ingest_spans(export("svc", spans[:2])) == 0
    report = state.health_report()
    assert (report.spans_received, report.spans_dropped) == (7, 3)
    assert state.operations("svc", 60)[0].count == 7


def test_spans_without_a_service_name_are_unknown_service() -> None:
    state = MonitorState(Settings(), clock=Clock())
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.append(span(os.urandom(16), "op"))
    state.ingest_spans(request)
    assert [o.service for o in state.operations("", 0)] == ["unknown_service"]


def test_trace_store_bounds_traces_spans_and_bytes() -> None:
    store = TraceStore(max_traces=2, max_spans_per_trace=3, max_bytes=1000)
    a, b, c = b"a" * 16, b"b" * 16, b"c" * 16
    for _ in range(5):
        store.add(a, StoredSpan("svc", False, b"x" * 10))
    assert len(store.get(a) or []) == 3 and store.spans_not_kept == 2
    store.add(b, StoredSpan("svc", False, b"x" * 10))
    store.add(a, StoredSpan("svc", False, b"x" * 10))  # a is now the most recently updated.
    store.add(c, StoredSpan("svc", False, b"x" * 10))
    assert store.get(b) is None and store.get(a) is not None and store.get(c) is not None
    store.add(c, StoredSpan("svc", False, b"x" * 990))
    assert store.get(a) is None and len(store) == 1 and store.total_bytes == 1000


def test_attribute_values_render_as_text() -> None:
    array = AnyValue(
        array_value=ArrayValue(values=[AnyValue(int_value=1), AnyValue(bool_value=False)])
    )
    assert value_text(array) == "[1, false]"
    assert value_text(AnyValue(double_value=0.5)) == "0.5"
    assert value_text(AnyValue(bytes_value=b"\x01\xff")) == "01ff"
    assert value_text(AnyValue()) == ""


def test_memory_is_the_latest_rss_per_service_and_goes_stale() -> None:
    clock = Clock()
    store = MetricsStore(clock, stale_seconds=300)
    rss = [kv("process.memory.type", "rss")]
    store.ingest(metrics_export("script", [gauge_metric("process.memory.usage", 900 * MB, rss)]))
    store.ingest(metrics_export("script", [gauge_metric("process.memory.usage", 700 * MB, rss)]))
    vms = [kv("process.memory.type", "vms")]
    store.ingest(metrics_export("script", [gauge_metric("process.memory.usage", 9e12, vms)]))
    store.ingest(metrics_export("script", [gauge_metric("process.memory.usage", 300 * MB)], "i-2"))
    store.ingest(metrics_export("scene", [gauge_metric("process.cpu.utilization", 0.25)]))
    store.ingest(metrics_export("scene", [gauge_metric("some.other.metric", 1.0)]))
    assert store.memory_by_service() == {"script": 700 * MB}  # Highest live instance.
    assert store.cpu_by_service() == {"scene": 0.25}
    clock.now += 301
    assert store.memory_by_service() == {}


def test_counters_total_cumulative_and_delta_points() -> None:
    store = MetricsStore(Clock())
    dropped = [
        kv("error.type", "queue_full"),
        kv("otel.component.name", "batching_span_processor/0"),
    ]
    done = [kv("otel.component.name", "batching_span_processor/0")]
    name = "otel.sdk.processor.span.processed"
    store.ingest(metrics_export("script", [counter_metric(name, [(5, dropped), (100, done)])]))
    store.ingest(metrics_export("script", [counter_metric(name, [(12, dropped), (900, done)])]))
    assert store.exporter_spans_dropped == 12  # Cumulative: the latest value, not 5 + 12.
    store.ingest(metrics_export("script", [counter_metric(name, [(3, dropped)])], "i-restarted"))
    assert store.exporter_spans_dropped == 15
    store.ingest(metrics_export("scene", [counter_metric(name, [(4, dropped)], delta=True)]))
    store.ingest(metrics_export("scene", [counter_metric(name, [(4, dropped)], delta=True)]))
    assert store.exporter_spans_dropped == 23

    hit, miss = kv("doppel.cache.result", "hit"), kv("doppel.cache.result", "miss")
    requests = counter_metric(
        "doppel.cache.requests", [(7, [hit]), (3, [miss]), (2, [kv("doppel.cache.result", "ok")])]
    )
    store.ingest(metrics_export("cache", [requests]))
    assert store.cache_lookups() == (7, 3)


def test_totals_keep_a_bounded_number_of_labels_and_fold_the_rest() -> None:
    store = MetricsStore(Clock())
    name = "otel.sdk.processor.span.processed"
    points = [(1.0, [kv("error.type", f"made-up-{i}")]) for i in range(MAX_TOTAL_LABELS + 50)]
    store.ingest(metrics_export("script", [counter_metric(name, points, delta=True)]))
    totals = store.total(name)
    assert len(totals) == MAX_TOTAL_LABELS + 1
    assert totals[OTHER] == 50  # Nothing is lost: later labels are counted under _other.
    assert sum(totals.values()) == MAX_TOTAL_LABELS + 50


def test_token_usage_sums_histograms_by_token_type() -> None:
    store = MetricsStore(Clock())
    histogram = metrics_pb2.Histogram(
        aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    )
    for token_type, total in (("input", 1200.0), ("output", 300.0)):
        point = histogram.data_points.add(sum=total, count=2, time_unix_nano=NANOS)
        point.attributes.append(kv("gen_ai.token.type", token_type))
    metric = metrics_pb2.Metric(name="gen_ai.client.token.usage", histogram=histogram)
    store.ingest(metrics_export("script", [metric]))
    store.ingest(metrics_export("script", [metric]))
    assert store.token_usage() == {"input": 2400.0, "output": 600.0}


def test_metrics_mark_services_seen_and_feed_resources() -> None:
    state = MonitorState(Settings(), clock=Clock())
    state.ingest_metrics(metrics_export("cache", [gauge_metric("process.memory.usage", 750 * MB)]))
    report = state.health_report()
    assert list(report.services) == ["cache"]
    assert report.resources == 0.5 and report.score == 90.0

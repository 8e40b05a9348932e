"""What the monitor refuses from the wire (services/monitor/sanitize.py and where it applies), the
service_silent rule, the OTLP/HTTP body decoding and the bounded gzip decoding, as pure logic."""

from __future__ import annotations

import gzip
import json
import math
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from services.monitor import http, otlp_http
from services.monitor.alerts import (
    RuleInputs,
    Severity,
    Thresholds,
    evaluate_rules,
    service_silent_rule,
    silence_threshold,
)
from services.monitor.http import BodyBudget, HttpError, Request, _gunzip, _Reservation
from services.monitor.metrics_ingest import MetricsStore
from services.monitor.rates import WindowedCounters
from services.monitor.sanitize import (
    MAX_NAME_CHARS,
    MAX_POINT_VALUE,
    MAX_TOTAL,
    Sanitizer,
    clamp_total,
    value_problem,
)
from services.monitor.state import MonitorState
from services.monitor.traces import RecentServices, StoredSpan, summarize
from shared.config import ConfigError, Settings
from tests.unit.otlp_builders import NANOS, Clock, export, kv, metrics_export, span

DROPPED = "otel.sdk.processor.span.processed"


def dropped(values: list[float], *, delta: bool = True) -> metrics_pb2.Metric:
    temporality = (
        metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
        if delta
        else metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    )
    data = metrics_pb2.Sum(aggregation_temporality=temporality, is_monotonic=True)
    for value in values:
        point = data.data_points.add(as_double=value, time_unix_nano=NANOS)
        point.attributes.append(kv("error.type", "queue_full"))
    return metrics_pb2.Metric(name=DROPPED, sum=data)


# Values ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "counter", "reason"),
    [
        (math.nan, True, "non_finite"),
        (math.inf, False, "non_finite"),
        (-math.inf, True, "non_finite"),
        (1e19, True, "out_of_range"),
        (MAX_POINT_VALUE * 1.0001, False, "out_of_range"),
        (-1.0, True, "negative_counter"),
        (-1.0, False, "out_of_range"),
        (0.0, True, None),
        (MAX_POINT_VALUE, True, None),
        (0.25, False, None),
    ],
)
def test_value_problem(value: float, counter: bool, reason: str | None) -> None:
    assert value_problem(value, counter=counter) == reason


def test_totals_are_clamped() -> None:
    assert clamp_total(MAX_TOTAL * 4) == MAX_TOTAL and clamp_total(-3.0) == 0.0
    assert int(MAX_TOTAL) < 2**63  # Fits the report's int64 fields.


def test_names_are_cut_and_counted() -> None:
    names = Sanitizer()
    assert names.name("short", "service") == "short"
    assert names.name("x" * (MAX_NAME_CHARS + 5), "operation") == "x" * MAX_NAME_CHARS
    assert names.names_truncated["operation"] == 1 and names.names_truncated["service"] == 0


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=30))
def test_no_value_poisons_the_totals(values: list[float]) -> None:
    """Whatever the points, every total stays finite, in range, and the report can be made."""
    store = MetricsStore(Clock())
    store.ingest(metrics_export("svc", [dropped(values)]))
    store.ingest(metrics_export("svc", [dropped(values, delta=False)]))
    good = [v for v in values if value_problem(v, counter=True) is None]
    assert store.sanitizer.rejected == 2 * (len(values) - len(good))
    total = store.exporter_spans_dropped
    assert 0 <= total <= MAX_TOTAL
    expected = clamp_total(sum(good) + _cumulative(good))  # The delta, then cumulative points.
    assert total == pytest.approx(expected, rel=1e-9, abs=1)


def _cumulative(values: list[float]) -> float:
    """What a cumulative series of these values adds: each rise, and a fall counts in full."""
    added, previous = 0.0, None
    for value in values:
        added += value if previous is None or value < previous else value - previous
        previous = value
    return added


def test_totals_stop_at_the_clamp() -> None:
    store = MetricsStore(Clock())
    for _ in range(20):
        store.ingest(metrics_export("svc", [dropped([MAX_POINT_VALUE] * 10)]))
    assert store.exporter_spans_dropped == int(MAX_TOTAL)
    counters = WindowedCounters()
    for _ in range(20):
        counters.add("k", 1, MAX_TOTAL)
    assert counters.total("k", 1, 1) == MAX_TOTAL


def test_a_gauge_keeps_its_last_good_value() -> None:
    store = MetricsStore(Clock())
    gauge = metrics_pb2.Gauge()
    for value, at in ((300.0, 1), (math.nan, 2), (-5.0, 3)):
        gauge.data_points.add(as_double=value, time_unix_nano=NANOS + at)
    store.ingest(metrics_export("svc", [metrics_pb2.Metric(name="process.memory.usage",
                                                           gauge=gauge)]))  # fmt: skip
    assert store.memory_by_service() == {"svc": 300.0}
    assert store.sanitizer.points_rejected["non_finite"] == 1
    assert store.sanitizer.points_rejected["out_of_range"] == 1


def test_long_labels_reject_the_point_and_series_keys_stay_small() -> None:
    store = MetricsStore(Clock())
    usage = metrics_pb2.Histogram(aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_DELTA)
    point = usage.data_points.add(sum=10.0, count=1, time_unix_nano=NANOS)
    point.attributes.extend([kv("gen_ai.token.type", "input"),
                             kv("gen_ai.request.model", "m" * (MAX_NAME_CHARS + 1))])  # fmt: skip
    fine = usage.data_points.add(sum=5.0, count=1, time_unix_nano=NANOS)
    fine.attributes.extend([kv("gen_ai.token.type", "input"), kv("unrelated", "u" * 100_000)])
    store.ingest(
        metrics_export("svc", [metrics_pb2.Metric(name="gen_ai.client.token.usage",
                                                  histogram=usage)])
    )  # fmt: skip
    assert store.token_usage() == {"input": 5.0}
    assert store.sanitizer.points_rejected["name_too_long"] == 1
    cumulative = dropped([1.0], delta=False)
    cumulative.sum.data_points[0].attributes.append(kv("huge", "h" * 100_000))
    store.ingest(metrics_export("svc", [cumulative]))
    assert all(len(key[3]) == 16 for key in store._series)  # A digest, not 100 KB of text.


def test_the_state_cuts_span_and_service_names_and_llm_labels() -> None:
    state = MonitorState(Settings(), clock=Clock())
    chat = span(os.urandom(16), "chat " + "m" * 1000, kind=trace_pb2.Span.SPAN_KIND_CLIENT)
    chat.attributes.extend([kv("gen_ai.provider.name", "p" * 1000), kv("error.type", "e" * 999)])
    state.ingest_spans(export("s" * 1000, [chat]))
    (row,) = state.stats.window(60)
    assert (len(row.service), len(row.operation)) == (MAX_NAME_CHARS, MAX_NAME_CHARS)
    ((provider, model, error_type),) = state.llm.calls
    assert (len(provider), len(model), len(error_type)) == (MAX_NAME_CHARS,) * 3
    assert state.sanitizer.names_truncated == {
        "service": 1, "instance": 0, "operation": 1, "provider": 1, "model": 1, "error_type": 1,
    }  # fmt: skip


def test_span_summaries_are_cut_when_read() -> None:
    long = span(os.urandom(16), "n" * 1000)
    long.attributes.extend([kv("k" * 1000, "v" * 100_000)])
    summary = summarize(StoredSpan("svc", False, long.SerializeToString()))
    assert len(summary.name) == MAX_NAME_CHARS + 1 and summary.name.endswith("\u2026")
    ((key, value),) = summary.attributes.items()
    assert (len(key), len(value)) == (MAX_NAME_CHARS + 1, 4097)


# Silent services -------------------------------------------------------------------------------


def test_silence_thresholds_first_match_wins() -> None:
    levels = (("doppel-cli", math.inf), ("scene*", 60.0), ("*", 120.0))
    assert silence_threshold("doppel-cli", levels) == math.inf
    assert silence_threshold("scene-2", levels) == 60.0
    assert silence_threshold("cache", levels) == 120.0
    assert silence_threshold("cache", ()) == math.inf


def test_only_services_heard_from_over_their_threshold_are_watched() -> None:
    services = RecentServices(max_services=3, max_watched=2)
    thresholds = {"cli": math.inf}.get
    for now in (0.0, 30.0, 60.0):
        services.seen("steady", now)
        services.seen("cli", now)
    services.seen("once", 60.0)
    assert services.watched(lambda s: thresholds(s, 60.0)) == {"steady": 60.0}
    for i in range(10):  # A flood of new names does not push the watched service out.
        services.seen(f"flood-{i}", 70.0 + i)
    assert services.watched(lambda s: thresholds(s, 60.0)) == {"steady": 60.0}
    services.seen("steady", 100.0)
    assert services.watched(lambda s: 60.0) == {"steady": 100.0}


def test_the_service_silent_rule() -> None:
    inputs = RuleInputs(service_silence={"scene": (121.0, 120.0), "cache": (119.0, 120.0)})
    (found,) = service_silent_rule(inputs, Thresholds())
    assert (found.rule, found.severity, found.service, found.value, found.threshold) == (
        "service_silent", Severity.ERROR, "scene", 121.0, 120.0,
    )  # fmt: skip
    assert found.message == "scene: no spans or metrics for 121 s (error after 120 s of silence)"
    assert [c.rule for c in evaluate_rules(inputs, Thresholds())] == ["service_silent"]


def test_the_state_feeds_silence_to_the_rules_and_to_prometheus() -> None:
    clock = Clock()
    settings = Settings(monitor_silent_services=(("*", 30.0),))
    state = MonitorState(settings, clock=clock)
    for _ in range(4):
        state.ingest_metrics(metrics_export("scene", []))
        clock.now += 10
    assert state.rule_inputs().service_silence == {"scene": (10.0, 30.0)}
    clock.now += 25
    assert state.rule_inputs().service_silence == {"scene": (35.0, 30.0)}
    (seen,) = state.last_seen_unix().values()
    assert seen == pytest.approx(state._wall_offset + clock.now - 35.0)


def test_silent_services_setting() -> None:
    parsed = Settings.from_env(
        {"DOPPEL_MONITOR_SILENT_SERVICES": "doppel-cli=off, scene*=60,*=300"}
    )
    assert parsed.monitor_silent_services == (
        ("doppel-cli", math.inf), ("scene*", 60.0), ("*", 300.0),
    )  # fmt: skip
    assert Settings().monitor_silent_services == (("doppel-cli", math.inf), ("*", 120.0))
    for bad in ("scene", "*=5", "=60", "*=soon", "*=nan"):
        with pytest.raises(ConfigError, match="DOPPEL_MONITOR_SILENT_SERVICES"):
            Settings.from_env({"DOPPEL_MONITOR_SILENT_SERVICES": bad})


def test_max_export_bytes_setting() -> None:
    assert Settings().monitor_max_export_bytes == 4 * 1024 * 1024
    assert Settings.from_env({"DOPPEL_MONITOR_MAX_EXPORT_BYTES": "65536"}).monitor_max_export_bytes
    for bad in ("1024", str(16 * 1024 * 1024 + 1), "lots"):
        with pytest.raises(ConfigError, match="DOPPEL_MONITOR_MAX_EXPORT_BYTES"):
            Settings.from_env({"DOPPEL_MONITOR_MAX_EXPORT_BYTES": bad})


# OTLP/HTTP bodies ------------------------------------------------------------------------------


def request(body: bytes, content_type: str | None) -> Request:
    headers = {} if content_type is None else {"content-type": content_type}
    return Request("POST", "/v1/traces", {}, headers, body)


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/protobuf", "json"])
def test_unknown_content_types_get_415(content_type: str | None) -> None:
    with pytest.raises(HttpError) as refused:
        otlp_http.decode(request(b"", content_type), ExportTraceServiceRequest)
    assert refused.value.status == 415


def test_json_ids_are_hex_and_names_camel_case() -> None:
    trace_id = os.urandom(16)
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": trace_id.hex(), "parent_span_id": "", "name": "x", "kind": "SPAN_KIND_SERVER"}
    ]}]}]}).encode()  # fmt: skip
    message, media = otlp_http.decode(request(body, "Application/JSON; charset=utf-8"),
                                      ExportTraceServiceRequest)  # fmt: skip
    (parsed,) = message.resource_spans[0].scope_spans[0].spans
    assert (parsed.trace_id, parsed.name, parsed.kind, media) == (
        trace_id, "x", 2, otlp_http.JSON,
    )  # fmt: skip
    answer = otlp_http.encode(200, message, media)
    assert answer.content_type == otlp_http.JSON and json.loads(answer.body)


# Gzip ------------------------------------------------------------------------------------------


def test_gunzip_stops_one_chunk_past_the_limit() -> None:
    budget = BodyBudget(64 * 1024 * 1024)
    reservation = _Reservation(budget)
    with pytest.raises(HttpError) as refused:
        _gunzip(gzip.compress(bytes(50 * 1024 * 1024)), reservation, 1024 * 1024)
    assert refused.value.status == 413
    assert reservation.held <= 1024 * 1024 + http.GUNZIP_CHUNK_BYTES


def test_gunzip_reads_every_member_and_refuses_truncated_bodies() -> None:
    budget = BodyBudget(1024 * 1024)
    two = gzip.compress(b"a" * 300_000) + gzip.compress(b"b" * 300_000)
    assert _gunzip(two, _Reservation(budget), 1024 * 1024) == b"a" * 300_000 + b"b" * 300_000
    for broken in (gzip.compress(b"c" * 1000)[:-12], b"not gzip"):
        with pytest.raises(HttpError) as refused:
            _gunzip(broken, _Reservation(BodyBudget(1024 * 1024)), 1024 * 1024)
        assert refused.value.status == 400
    with pytest.raises(HttpError) as refused:  # Over the budget while decoding: 429.
        _gunzip(gzip.compress(bytes(2 * 1024 * 1024)), _Reservation(budget), 4 * 1024 * 1024)
    assert refused.value.status == 429

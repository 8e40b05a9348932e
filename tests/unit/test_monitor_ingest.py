"""Ingestion admission, windowed counters, what the state derives per window, and the
Prometheus exposition format."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from services.monitor.ingest import IngestQueue, count_spans
from services.monitor.metrics_ingest import MetricsStore
from services.monitor.prometheus import Exposition, render_metrics
from services.monitor.rates import WindowedCounters
from services.monitor.state import MonitorState
from shared.config import Settings
from tests.unit.otlp_builders import NANOS, Clock, export, kv, metrics_export, span


def spans(count: int, name: str = "op") -> list[trace_pb2.Span]:
    return [span(os.urandom(16), name) for _ in range(count)]


async def test_the_queue_refuses_beyond_its_budget_but_never_an_export_into_empty() -> None:
    applied: list[int] = []

    def apply(request: ExportTraceServiceRequest) -> Iterator[int]:
        applied.append(count_spans(request))
        yield count_spans(request)

    queue = IngestQueue(apply, max_pending_spans=10)
    assert queue.offer(export("svc", spans(25)), 25)  # Larger than the budget, queue empty.
    assert not queue.offer(export("svc", spans(1)), 1)
    queue.drain()
    assert queue.offer(export("svc", spans(6)), 6)
    assert queue.offer(export("svc", spans(4)), 4)  # Exactly full.
    assert not queue.offer(export("svc", spans(1)), 1)
    assert (queue.pending_spans, queue.refused_spans, queue.refused_exports) == (10, 2, 2)
    queue.start()
    await queue.settled()
    assert applied == [25, 6, 4] and queue.pending_spans == 0
    await queue.close()


async def test_a_failing_export_does_not_stop_the_worker() -> None:
    applied: list[int] = []

    def apply(request: ExportTraceServiceRequest) -> Iterator[int]:
        if count_spans(request) == 13:
            raise ValueError("bad export")
        applied.append(count_spans(request))
        yield count_spans(request)

    queue = IngestQueue(apply, max_pending_spans=100)
    queue.start()
    for count in (1, 13, 2):
        assert queue.offer(export("svc", spans(count)), count)
    await queue.settled()
    assert applied == [1, 2] and queue.pending_spans == 0
    await queue.close()


async def test_a_large_export_is_applied_in_chunks_and_counts_as_pending_until_done() -> None:
    state = MonitorState(Settings(max_concurrent_rpcs=1), clock=Clock())
    request = export("svc", spans(2500))
    chunks = list(state.ingest_in_chunks(request, chunk=1000))
    assert chunks == [1000, 1000, 500] and state.spans_received == 2500
    queue = IngestQueue(lambda r: state.ingest_in_chunks(r, chunk=1000), max_pending_spans=3000)
    assert queue.offer(request, 2500)
    steps = queue._step()
    next(steps)  # One chunk applied...
    assert queue.pending_spans == 1500
    assert not queue.offer(export("svc", spans(1600)), 1600)  # ...the rest still counts.
    assert queue.offer(export("svc", spans(1500)), 1500)
    queue.drain()
    assert queue.pending_spans == 0 and state.spans_received == 2500 + 2500 + 1500


def test_windowed_counters_sum_slots_and_forget_the_oldest_key() -> None:
    counters = WindowedCounters(max_keys=2)
    counters.add("a", epoch=100, value=2)
    counters.add("a", epoch=105)
    counters.add("b", epoch=105, value=4)
    assert counters.total("a", 100, 105) == 3 and counters.total("a", 101, 105) == 1
    assert counters.totals(104, 105) == {"a": 1.0, "b": 4.0}
    counters.add("a", epoch=100 + 90, value=7)  # Epoch 100's slot, reused 90 slots on.
    assert counters.total("a", 100, 190) == 7 + 1  # Epoch 105 is still within the ring.
    counters.add("c", epoch=190)  # "b" is the least recently updated.
    assert counters.total("b", 0, 200) == 0 and len(counters) == 2


def test_llm_calls_count_chat_client_spans_per_service() -> None:
    clock = Clock()
    state = MonitorState(Settings(), clock=clock)
    chat = [span(os.urandom(16), "chat claude", kind=trace_pb2.Span.SPAN_KIND_CLIENT)] * 3
    internal_chat = [span(os.urandom(16), "chat claude", kind=trace_pb2.Span.SPAN_KIND_INTERNAL)]
    state.ingest_spans(export("script", chat + internal_chat + spans(2, "chatter")))
    assert state.rule_inputs().llm_calls == {"script": 3.0}
    (stats,) = state.service_stats()
    assert stats.llm_calls_per_minute == 3.0
    clock.now += 61
    assert state.rule_inputs().llm_calls == {}


def cumulative_lookups(hits: int, start_unix_nano: int) -> metrics_pb2.Metric:
    data = metrics_pb2.Sum(
        aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE, is_monotonic=True
    )
    point = data.data_points.add(
        as_int=hits, start_time_unix_nano=start_unix_nano, time_unix_nano=NANOS
    )
    point.attributes.append(kv("doppel.cache.result", "hit"))
    return metrics_pb2.Metric(name="doppel.cache.requests", sum=data)


def test_windowed_lookups_skip_counts_from_before_the_monitor_started() -> None:
    clock = Clock()
    store = MetricsStore(clock)
    old = 1  # A series that began long before the monitor.
    store.ingest(metrics_export("cache", [cumulative_lookups(1_000_000, old)]))
    store.ingest(metrics_export("cache", [cumulative_lookups(1_000_030, old)]))
    assert store.cache_lookups() == (1_000_030, 0)  # Totals count everything...
    epoch = store.epoch()
    assert store.window_total("doppel.cache.requests", epoch, epoch) == {"cache": {"hit": 30.0}}
    new = 2**62  # ...a series that began after the monitor counts from its first point.
    store.ingest(metrics_export("cache2", [cumulative_lookups(5, new)]))
    assert store.window_total("doppel.cache.requests", epoch, epoch)["cache2"] == {"hit": 5.0}


def test_exposition_escapes_labels_and_formats_numbers() -> None:
    out = Exposition()
    out.family(
        "x_total", "counter", "Things.", [({"name": 'a"b\\c\nd'}, 3), ({}, 0.25), ({}, 1e20)]
    )
    assert out.render().splitlines() == [
        "# HELP x_total Things.",
        "# TYPE x_total counter",
        'x_total{name="a\\"b\\\\c\\nd"} 3',
        "x_total 0.25",
        "x_total 1e+20",
    ]


def test_histogram_buckets_are_cumulative_and_end_at_inf() -> None:
    state = MonitorState(Settings(), clock=Clock())
    state.ingest_spans(export("svc", [span(os.urandom(16), "op", millis=m) for m in (3, 40, 40)]))
    text = render_metrics(state)
    labels = 'service="svc",operation="op",kind="SERVER"'
    assert f'doppel_operation_duration_seconds_bucket{{{labels},le="0.005"}} 1' in text
    assert f'doppel_operation_duration_seconds_bucket{{{labels},le="0.05"}} 3' in text
    assert f'doppel_operation_duration_seconds_bucket{{{labels},le="120"}} 3' in text
    assert f'doppel_operation_duration_seconds_bucket{{{labels},le="+Inf"}} 3' in text
    assert f"doppel_operation_duration_seconds_sum{{{labels}}} 0.083" in text
    assert "doppel_health_score 100" in text


@pytest.mark.parametrize("reason", ["overload", "export_cap"])
def test_lost_spans_are_counted_by_reason(reason: str) -> None:
    state = MonitorState(Settings(), clock=Clock())
    state.count_lost(7, reason)
    assert state.rule_inputs().lost_spans == {("monitor", reason): 7.0}
    assert state.dropped_by_reason[reason] == 7 and state.spans_dropped == 7
